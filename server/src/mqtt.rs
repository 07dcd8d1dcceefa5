//! The server's MQTT connection: one task owns rumqttc's event loop. Publishes go in
//! through a channel and are answered once the broker has acknowledged them (PUBACK), so
//! the publisher marks a document published only when the broker holds it. Messages on the
//! gateways' upward topics come out through another channel.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Documents may be up to 1 MiB (the plan budget is far below); the broker is set alike.
pub const MAX_PACKET: usize = 1024 * 1024 + 4096;

/// Where the broker is.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A CA certificate (PEM): connect with TLS and trust only it.
    pub ca: Option<Vec<u8>>,
    pub topic_prefix: String,
    pub client_id: String,
}

impl BrokerConfig {
    /// A broker on 127.0.0.1:`port` without credentials or TLS.
    pub fn local(port: u16, topic_prefix: &str, client_id: String) -> BrokerConfig {
        BrokerConfig {
            host: "127.0.0.1".into(),
            port,
            username: None,
            password: None,
            ca: None,
            topic_prefix: topic_prefix.to_owned(),
            client_id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the broker did not acknowledge within {0:?}")]
    Timeout(Duration),
    #[error("the connection to the broker dropped before the broker acknowledged")]
    Dropped,
}

struct Job {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    qos: QoS,
    done: oneshot::Sender<()>,
}

/// A message from a gateway.
#[derive(Debug)]
pub struct Inbound {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Connection changes and messages.
#[derive(Debug)]
pub enum Up {
    Connected,
    Disconnected(String),
    Message(Inbound),
}

#[derive(Debug, Clone)]
pub struct MqttHandle {
    jobs: mpsc::Sender<Job>,
    /// Connections made so far (0: none yet).
    connected: tokio::sync::watch::Receiver<u64>,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

const ACK_DEADLINE: Duration = Duration::from_secs(10);
/// Publishes handed to the client and not yet acknowledged, at most: below the client's
/// request queue (1024), so a burst (every document of a city after a restart) waits in
/// the job queue instead of failing to queue.
const OUTSTANDING: usize = 512;

impl MqttHandle {
    pub fn connected(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Which connection this is: it changes at every (re)connection, when a broker may
    /// have lost its retained messages.
    pub fn epoch(&self) -> u64 {
        *self.connected.borrow()
    }

    /// Waits up to `within` for the first connection; whether there is one.
    pub async fn first_connection(&self, within: Duration) -> bool {
        let mut connections = self.connected.clone();
        tokio::time::timeout(within, connections.wait_for(|n| *n > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Publishes and waits for the broker's PUBACK (QoS 1) or for the packet to leave (QoS 0).
    pub async fn publish(
        &self,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
        qos: QoS,
    ) -> Result<(), PublishError> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job {
                topic,
                payload,
                retain,
                qos,
                done,
            })
            .await
            .map_err(|_| PublishError::Dropped)?;
        match tokio::time::timeout(ACK_DEADLINE, wait).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(PublishError::Dropped),
            Err(_) => Err(PublishError::Timeout(ACK_DEADLINE)),
        }
    }
}

pub fn options(config: &BrokerConfig) -> MqttOptions {
    let mut o = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    o.set_keep_alive(Duration::from_secs(15));
    // As many publishes in flight as are handed to the client, so a city's documents
    // stream out instead of waiting a round trip per hundred.
    o.set_inflight(OUTSTANDING as u16);
    // A persistent session: while the server is away (a restart, a crash) the broker keeps
    // what gateways send at QoS 1 — events, acks, state — and hands it over when the same
    // client id comes back. Events are stored once by id, so nothing is counted twice.
    o.set_clean_session(false);
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        o.set_credentials(user.clone(), password.clone());
    }
    if let Some(ca) = &config.ca {
        o.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
            ca: ca.clone(),
            alpn: None,
            client_auth: None,
        }));
    }
    o
}

/// Starts the connection task; `subscriptions` are (re)made at every connection.
pub fn start(
    config: &BrokerConfig,
    subscriptions: Vec<String>,
    shutdown: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> (MqttHandle, mpsc::Receiver<Up>) {
    let (client, mut eventloop) = AsyncClient::new(options(config), 1024);
    // Packets leave the moment they are written: with Nagle's algorithm a document waits
    // behind the ack the server just sent for the broker's delayed ACK (up to 40 ms).
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let (jobs_tx, jobs_rx) = mpsc::channel(1024);
    // Room for a city's answers to one order (an ack and a state from each of ten
    // thousand gateways) while the intake stores them; beyond it the loop waits.
    let (up_tx, up_rx) = mpsc::channel(65_536);
    let (connected_tx, connected) = tokio::sync::watch::channel(0);
    let is_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    tracker.spawn(run(
        client,
        eventloop,
        subscriptions,
        jobs_rx,
        Links {
            up: up_tx,
            connected: connected_tx,
            is_up: is_up.clone(),
        },
        shutdown,
    ));
    (
        MqttHandle {
            jobs: jobs_tx,
            connected,
            up: is_up,
        },
        up_rx,
    )
}

struct Links {
    up: mpsc::Sender<Up>,
    connected: tokio::sync::watch::Sender<u64>,
    is_up: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

async fn run(
    client: AsyncClient,
    mut eventloop: EventLoop,
    subscriptions: Vec<String>,
    mut jobs: mpsc::Receiver<Job>,
    links: Links,
    shutdown: CancellationToken,
) {
    let up = links.up;
    // Publishes handed to the client, in order, until the event loop says which packet id
    // each got; then by packet id until the broker acknowledges.
    let mut sent: VecDeque<(QoS, oneshot::Sender<()>)> = VecDeque::new();
    let mut by_pkid: HashMap<u16, oneshot::Sender<()>> = HashMap::new();
    let mut connected = false;
    let mut backoff = Duration::from_millis(200);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = client.try_disconnect();
                // Give the DISCONNECT a moment to leave.
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    while let Ok(e) = eventloop.poll().await {
                        if matches!(e, Event::Outgoing(Outgoing::Disconnect)) {
                            break;
                        }
                    }
                }).await;
                return;
            }
            job = jobs.recv(), if connected && sent.len() + by_pkid.len() < OUTSTANDING => {
                let Some(job) = job else { return };
                match client.try_publish(job.topic, job.qos, job.retain, job.payload) {
                    Ok(()) => sent.push_back((job.qos, job.done)),
                    Err(e) => tracing::warn!("MQTT publish not queued: {e}"),
                }
            }
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    links.is_up.store(true, std::sync::atomic::Ordering::Relaxed);
                    links.connected.send_modify(|n| *n += 1);
                    backoff = Duration::from_millis(200);
                    let filters = subscriptions.iter().map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                    if let Err(e) = client.try_subscribe_many(filters) {
                        tracing::warn!("MQTT subscribe not queued: {e}");
                    }
                    let _ = up.send(Up::Connected).await;
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Some((qos, done)) = sent.pop_front() {
                        if qos == QoS::AtMostOnce {
                            let _ = done.send(());
                        } else {
                            by_pkid.insert(pkid, done);
                        }
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(done) = by_pkid.remove(&ack.pkid) {
                        let _ = done.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let message = Up::Message(Inbound { topic: p.topic, payload: p.payload.to_vec() });
                    // When the intake is behind, wait for it: the broker keeps what comes
                    // meanwhile (the session is persistent), where dropping would lose acks
                    // and events for good.
                    if up.send(message).await.is_err() {
                        tracing::warn!("the intake has stopped; a gateway message was dropped");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if connected {
                        tracing::warn!("MQTT connection lost: {e}");
                        let _ = up.send(Up::Disconnected(e.to_string())).await;
                    }
                    connected = false;
                    links.is_up.store(false, std::sync::atomic::Ordering::Relaxed);
                    // Whatever was waiting fails, queued or sent; the publisher tries again.
                    // Nothing is retransmitted behind its back, so packet ids stay matched.
                    while jobs.try_recv().is_ok() {}
                    sent.clear();
                    by_pkid.clear();
                    eventloop.pending.clear();
                    let jitter = Duration::from_millis(u64::from(crate::jitter_ms(100)));
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff + jitter) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}
