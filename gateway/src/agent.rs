//! The MQTT agent: the one task that owns the gateway's rumqttc event loop.
//!
//! It subscribes to the gateway's plan, overrides and cmd topics after every connection
//! (rumqttc does not resubscribe), hands what arrives to the gateway as [`Inbound`] bytes
//! (the gateway opens and checks them; the agent only routes), and publishes what the
//! gateway sends as [`Outbound`] messages on the wire protocol's topics: state retained with
//! a last will saying offline, acks and events at QoS 1, telemetry at QoS 0. The last state
//! is published again after every reconnect. rumqttc reaches the broker through the
//! [`sieve`](crate::sieve), which drops a message over [`MAX_PACKET`] — acknowledged to the
//! broker, reported to the gateway as [`Inbound::Oversized`] — where rumqttc would end the
//! connection. A lost connection is retried with back-off and jitter, the back-off growing
//! until a connection has lasted [`STABLE`]; nothing here ever waits on the network while
//! holding anything.

use std::time::{Duration, Instant};

use nightscape_core::GatewayId;
use nightscape_core::wire::{self, Topic};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Mqtt;

/// Plans may be large: the broker and clients are set to 1 MiB packets (DESIGN).
pub const MAX_PACKET: usize = 1024 * 1024;

/// A message for the gateway, as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Plan(Vec<u8>),
    Overrides(Vec<u8>),
    Command(Vec<u8>),
    /// A message over [`MAX_PACKET`], dropped by the sieve: its topic and size in bytes.
    Oversized {
        topic: String,
        bytes: usize,
    },
}

/// A connection that lasted this long was good: the back-off starts again from its least.
/// One that ends sooner (a broker that takes the connection and then drops it) makes the
/// back-off grow, so a gateway never reconnects in a tight loop.
pub const STABLE: Duration = Duration::from_secs(30);

/// The least and the most back-off between connection attempts.
const BACKOFF_LEAST: Duration = Duration::from_millis(200);
const BACKOFF_MOST: Duration = Duration::from_secs(30);

/// A message from the gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    State(wire::State),
    Ack(wire::Ack),
    Telemetry(wire::Telemetry),
    Event(wire::Event),
}

/// How the agent connects.
#[derive(Debug, Clone)]
pub struct Settings {
    pub gateway: GatewayId,
    pub mqtt: Mqtt,
    /// The password, read from the configured file by the caller.
    pub password: Option<String>,
    /// The CA certificate(s) (PEM) the broker's certificate must chain to: TLS when given.
    pub ca: Option<Vec<u8>>,
    pub keep_alive: Duration,
    /// The Unix socket the sieve listens on for rumqttc ([`crate::sieve::socket_path`]).
    pub socket: std::path::PathBuf,
}

/// The retained state that says the gateway is gone (its last will).
pub fn offline_state(gateway: &GatewayId) -> wire::State {
    wire::State {
        schema: wire::SCHEMA,
        gateway: gateway.clone(),
        online: false,
        plan_version: None,
        plan_hash: None,
        cue: None,
        overrides: Vec::new(),
        blackout: false,
        uptime_s: 0,
        clock_trusted: false,
    }
}

/// How any Nightscape client reaches the gateway's broker: credentials when given, TLS
/// with the pinned CA when given, packets up to [`MAX_PACKET`]: how the command-line tools
/// that talk to a running gateway connect. (The agent itself goes through the sieve, which
/// dials the broker with the same address and CA.)
pub fn broker_options(
    client_id: String,
    mqtt: &Mqtt,
    password: Option<&str>,
    ca: Option<&[u8]>,
) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, mqtt.host.clone(), mqtt.port);
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if let (Some(user), Some(password)) = (&mqtt.username, password) {
        o.set_credentials(user.clone(), password.to_owned());
    }
    if let Some(ca) = ca {
        // The broker's certificate must name `mqtt.host` and chain to this CA (rustls, ring).
        o.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
            ca: ca.to_vec(),
            alpn: None,
            client_auth: None,
        }));
    }
    o
}

/// The MQTT client id of `gateway`'s agent under `topic_prefix`; a broker that binds client
/// ids to users (`nightscape up`'s embedded one) is told it.
pub fn client_id(topic_prefix: &str, gateway: &GatewayId) -> String {
    // Unique per topic prefix too, so runs sharing a broker do not take each other's session.
    let scope: String = topic_prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("nightscape-gw-{scope}{gateway}")
}

fn options(s: &Settings) -> MqttOptions {
    // rumqttc dials the sieve's socket; the sieve dials the broker (with TLS when a CA is
    // given).
    let mut o = MqttOptions::new(
        client_id(&s.mqtt.topic_prefix, &s.gateway),
        s.socket.to_string_lossy(),
        0,
    );
    o.set_transport(rumqttc::Transport::Unix);
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if let (Some(user), Some(password)) = (&s.mqtt.username, &s.password) {
        o.set_credentials(user.clone(), password.clone());
    }
    o.set_keep_alive(s.keep_alive);
    // A persistent session: what was in flight when the connection dropped (acks, events)
    // is sent again after the reconnect instead of being forgotten with a clean session;
    // commands queued by the broker meanwhile arrive and are acked expired if they are.
    o.set_clean_session(false);
    o.set_last_will(LastWill::new(
        wire::topic(&s.mqtt.topic_prefix, &s.gateway, Topic::State),
        wire::encode(&offline_state(&s.gateway)),
        QoS::AtLeastOnce,
        true,
    ));
    o
}

/// The gateway's MQTT client and its event loop (not yet connected): the client handle is
/// shared with the DMX-over-MQTT publisher; the event loop goes to [`run`].
pub fn client(s: &Settings) -> (AsyncClient, EventLoop) {
    client_for(options(s), 256)
}

/// A client on `options` whose packets leave the moment they are written. Without it,
/// Nagle's algorithm holds a publish while an earlier small packet (an ack, a state) waits
/// for the broker's delayed ACK: up to 40 ms on an otherwise idle link.
pub fn client_for(options: MqttOptions, capacity: usize) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(options, capacity);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// Runs the agent until `shutdown`; `connected` follows the broker connection.
pub async fn run(
    s: Settings,
    (client, mut events): (AsyncClient, EventLoop),
    inbound: mpsc::Sender<Inbound>,
    mut outbound: mpsc::Receiver<Outbound>,
    connected: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let prefix = s.mqtt.topic_prefix.clone();
    let (dropped_tx, mut dropped) = mpsc::channel::<crate::sieve::Dropped>(16);
    let broker = crate::sieve::Broker {
        host: s.mqtt.host.clone(),
        port: s.mqtt.port,
        ca: s.ca.clone(),
    };
    let sieve_stop = shutdown.child_token();
    // The sieve outlives the agent's goodbye below, so it stops when the agent returns.
    let _sieve_stop = sieve_stop.clone().drop_guard();
    if let Err(e) = crate::sieve::listen(&s.socket, broker, MAX_PACKET, dropped_tx, sieve_stop) {
        tracing::error!(
            "MQTT: cannot listen on {}: {e}; the gateway plays without its broker",
            s.socket.display()
        );
        return;
    }
    let mut last_state: Option<wire::State> = None;
    let mut retry = std::collections::VecDeque::new();
    let mut backoff = BACKOFF_LEAST;
    let mut connected_at: Option<Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                // What the gateway said last (its "stopped" event among it) goes out first.
                while let Ok(message) = outbound.try_recv() {
                    publish_or_keep(&client, &prefix, &s.gateway, message, &mut retry);
                }
                // A clean goodbye: the state says offline (the will is for unclean ones).
                let _ = client.try_publish(
                    wire::topic(&prefix, &s.gateway, Topic::State),
                    QoS::AtLeastOnce,
                    true,
                    wire::encode(&offline_state(&s.gateway)),
                );
                let _ = client.try_disconnect();
                // Let the event loop send them, briefly.
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    while events.poll().await.is_ok() {}
                })
                .await;
                return;
            }
            message = outbound.recv() => {
                let Some(message) = message else { return };
                if let Outbound::State(state) = &message {
                    last_state = Some(state.clone());
                }
                publish_or_keep(&client, &prefix, &s.gateway, message, &mut retry);
            }
            Some(d) = dropped.recv() => {
                let message = Inbound::Oversized { topic: d.topic, bytes: d.bytes };
                if inbound.try_send(message).is_err() {
                    tracing::warn!("MQTT: the gateway is not taking messages; one dropped");
                }
            }
            event = events.poll() => {
                publish_kept(&client, &prefix, &s.gateway, &mut retry);
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected_at = Some(Instant::now());
                        on_connected(&client, &prefix, &s.gateway, &last_state, &mut retry);
                        connected.send_replace(true);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        deliver(&prefix, &s.gateway, &p, &inbound);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        connected.send_replace(false);
                        // Only a connection that lasted starts the back-off again: a broker
                        // that takes the connection and drops it at once is not hammered.
                        if connected_at.take().is_some_and(|at| at.elapsed() >= STABLE) {
                            backoff = BACKOFF_LEAST;
                        }
                        // Random jitter, so a city's gateways do not come back in step after
                        // the broker restarts.
                        let jitter =
                            backoff.mul_f64(f64::from(crate::modbus::jitter_percent()) / 200.0);
                        tracing::warn!(
                            "MQTT {}:{}: {e}; again in {:?}",
                            s.mqtt.host,
                            s.mqtt.port,
                            backoff + jitter
                        );
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(backoff + jitter) => {}
                        }
                        backoff = (backoff * 2).min(BACKOFF_MOST);
                    }
                }
            }
        }
    }
}

/// A new connection: the subscriptions (rumqttc does not resubscribe), the last state
/// again, then what waits.
fn on_connected(
    client: &AsyncClient,
    prefix: &str,
    gateway: &GatewayId,
    last_state: &Option<wire::State>,
    retry: &mut std::collections::VecDeque<Outbound>,
) {
    let topics = [Topic::Plan, Topic::Overrides, Topic::Cmd]
        .map(|t| rumqttc::SubscribeFilter::new(wire::topic(prefix, gateway, t), QoS::AtLeastOnce));
    if client.try_subscribe_many(topics).is_err() {
        tracing::warn!("MQTT: could not queue the subscriptions");
    }
    if let Some(state) = last_state {
        publish(client, prefix, gateway, &Outbound::State(state.clone()));
    }
    publish_kept(client, prefix, gateway, retry);
}

/// Hands a message on the gateway's plan, overrides or cmd topic to the gateway.
fn deliver(
    prefix: &str,
    gateway: &GatewayId,
    p: &rumqttc::Publish,
    inbound: &mpsc::Sender<Inbound>,
) {
    let Some((to, leaf)) = wire::parse_topic(prefix, &p.topic) else {
        return;
    };
    if &to != gateway {
        return;
    }
    let message = match leaf {
        Topic::Plan => Inbound::Plan(p.payload.to_vec()),
        Topic::Overrides => Inbound::Overrides(p.payload.to_vec()),
        Topic::Cmd => Inbound::Command(p.payload.to_vec()),
        _ => return,
    };
    if inbound.try_send(message).is_err() {
        tracing::warn!("MQTT: the gateway is not taking messages; one dropped");
    }
}

/// Messages kept for another try when the client's queue was full (acks and events; state
/// and telemetry are sent again anyway).
const RETRY_KEEP: usize = 1000;

/// Publishes, or keeps an ack or event for another try.
fn publish_or_keep(
    client: &AsyncClient,
    prefix: &str,
    gateway: &GatewayId,
    message: Outbound,
    retry: &mut std::collections::VecDeque<Outbound>,
) {
    let keepable = matches!(message, Outbound::Ack(_) | Outbound::Event(_));
    // Acks and events keep their order behind those already waiting.
    let waiting = keepable && !retry.is_empty();
    if waiting || (!publish(client, prefix, gateway, &message) && keepable) {
        if retry.len() >= RETRY_KEEP {
            retry.pop_front();
            tracing::warn!(
                "MQTT: {RETRY_KEEP} messages wait for the broker; the oldest was dropped"
            );
        }
        retry.push_back(message);
    }
}

/// Sends what waits, in order, until the queue is full again.
fn publish_kept(
    client: &AsyncClient,
    prefix: &str,
    gateway: &GatewayId,
    retry: &mut std::collections::VecDeque<Outbound>,
) {
    while let Some(message) = retry.front() {
        if !publish(client, prefix, gateway, message) {
            return;
        }
        retry.pop_front();
    }
}

/// Whether the client took the message.
fn publish(client: &AsyncClient, prefix: &str, gateway: &GatewayId, message: &Outbound) -> bool {
    let (leaf, bytes, qos, retain) = match message {
        Outbound::State(m) => (Topic::State, wire::encode(m), QoS::AtLeastOnce, true),
        Outbound::Ack(m) => (Topic::Ack, wire::encode(m), QoS::AtLeastOnce, false),
        Outbound::Telemetry(m) => (Topic::Telemetry, wire::encode(m), QoS::AtMostOnce, false),
        Outbound::Event(m) => (Topic::Event, wire::encode(m), QoS::AtLeastOnce, false),
    };
    client
        .try_publish(wire::topic(prefix, gateway, leaf), qos, retain, bytes)
        .is_ok()
}
