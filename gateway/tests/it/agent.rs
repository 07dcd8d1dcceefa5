//! The MQTT agent through the machine's Mosquitto, under a topic prefix of this run: a
//! retained plan arrives after connecting, acks and state go out, and the last will says
//! offline when the gateway vanishes.

use std::time::Duration;

use nightscape_core::GatewayId;
use nightscape_core::wire::{self, About, Ack, AckResult, State, Topic};
use nightscape_gateway::agent::{Inbound, Outbound, Settings, client, run};
use nightscape_gateway::config::Mqtt;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// A client that records every message under the prefix.
pub async fn observer(prefix: &str) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    observer_on(prefix, 1883).await
}

/// The same on a broker at `port` of loopback.
pub async fn observer_on(
    prefix: &str,
    port: u16,
) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    observer_with(prefix, port, 1 << 20).await
}

/// The same, taking packets up to `max_packet` bytes.
pub async fn observer_with(
    prefix: &str,
    port: u16,
    max_packet: usize,
) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut options =
        MqttOptions::new(format!("obs-{}-{n}", std::process::id()), "127.0.0.1", port);
    options.set_max_packet_size(max_packet, max_packet);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(options, 64);
    client
        .subscribe(format!("{prefix}nightscape/v1/gw/+/+"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
            }
        }
    });
    (client, rx)
}

pub async fn next_on(
    rx: &mut mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    topic: &str,
    wanted: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (t, payload) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing on {topic}"))
            .unwrap();
        if t == topic && wanted(&payload) {
            return payload;
        }
    }
}

/// An agent's settings for `gateway` on the broker at `port` of loopback.
fn settings(gateway: &GatewayId, port: u16, prefix: &str) -> Settings {
    Settings {
        gateway: gateway.clone(),
        mqtt: Mqtt {
            host: "127.0.0.1".into(),
            port,
            username: None,
            password_file: None,
            ca_file: None,
            topic_prefix: prefix.into(),
        },
        password: None,
        ca: None,
        keep_alive: Duration::from_secs(5),
        socket: crate::temp_dir("agent").join("broker.sock"),
    }
}

/// A running agent and its channels.
struct Agent {
    inbound: mpsc::Receiver<Inbound>,
    outbound: mpsc::Sender<Outbound>,
    connected: watch::Receiver<bool>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn spawn_agent(settings: Settings) -> Agent {
    let (in_tx, inbound) = mpsc::channel(16);
    let (outbound, out_rx) = mpsc::channel(16);
    let (connected_tx, connected) = watch::channel(false);
    let shutdown = CancellationToken::new();
    let mqtt = client(&settings);
    let task = tokio::spawn(run(
        settings,
        mqtt,
        in_tx,
        out_rx,
        connected_tx,
        shutdown.clone(),
    ));
    Agent {
        inbound,
        outbound,
        connected,
        shutdown,
        task,
    }
}

#[tokio::test]
async fn the_agent_routes_both_ways_and_its_will_says_offline() {
    let prefix = format!("agent-{}/", std::process::id());
    let gw: GatewayId = "donam-gw".parse().unwrap();
    let (obs, mut seen) = observer(&prefix).await;
    let plan_topic = wire::topic(&prefix, &gw, Topic::Plan);
    obs.publish(&plan_topic, QoS::AtLeastOnce, true, b"plan-1".to_vec())
        .await
        .unwrap();
    next_on(&mut seen, &plan_topic, |_| true).await;

    let Agent {
        mut inbound,
        outbound: out_tx,
        mut connected,
        shutdown: _,
        task: agent,
    } = spawn_agent(settings(&gw, 1883, &prefix));
    tokio::time::timeout(Duration::from_secs(10), connected.wait_for(|c| *c))
        .await
        .unwrap()
        .unwrap();
    // The retained plan arrives once subscribed.
    let got = tokio::time::timeout(Duration::from_secs(10), inbound.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, Inbound::Plan(b"plan-1".to_vec()));

    let ack = Ack {
        schema: wire::SCHEMA,
        gateway: gw.clone(),
        about: About::Plan,
        id: "1".into(),
        result: AckResult::Rejected,
        reason: Some("malformed plan".into()),
    };
    out_tx.send(Outbound::Ack(ack.clone())).await.unwrap();
    let bytes = next_on(&mut seen, &wire::topic(&prefix, &gw, Topic::Ack), |_| true).await;
    assert_eq!(wire::decode::<Ack>(&bytes).unwrap(), ack);
    let mut state = nightscape_gateway::agent::offline_state(&gw);
    state.online = true;
    out_tx.send(Outbound::State(state)).await.unwrap();
    let state_topic = wire::topic(&prefix, &gw, Topic::State);
    next_on(&mut seen, &state_topic, |b| {
        wire::decode::<State>(b).is_ok_and(|s| s.online)
    })
    .await;

    // Gone without a goodbye: the broker publishes the will.
    agent.abort();
    let will = next_on(&mut seen, &state_topic, |b| {
        wire::decode::<State>(b).is_ok_and(|s| !s.online)
    })
    .await;
    assert!(!wire::decode::<State>(&will).unwrap().online);
    // Leave no retained messages behind.
    for topic in [plan_topic, state_topic] {
        obs.publish(topic, QoS::AtLeastOnce, true, Vec::new())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_broker_that_drops_every_connection_is_retried_ever_more_slowly() {
    // Seen: the back-off started again at every CONNACK, so a broker that took the
    // connection and dropped it at once (as it did for an oversized message) was dialled
    // every ~250 ms for as long as it went on. A broker here that answers CONNECT with a
    // CONNACK and closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counting = accepted.clone();
    let broker = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            counting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut connect = [0u8; 256];
            let _ = s.read(&mut connect).await;
            let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]).await;
            drop(s);
        }
    });
    let agent = spawn_agent(settings(&"donam-gw".parse().unwrap(), port, "dropping/"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let n = accepted.load(std::sync::atomic::Ordering::Relaxed);
    // 0.2, 0.4, 0.8, 1.6 s (each up to half again for jitter): at most 5 connections in 4 s;
    // a back-off that starts again at each CONNACK makes 14 or more.
    assert!((2..=5).contains(&n), "{n} connections in 4 s");
    agent.shutdown.cancel();
    broker.abort();
}
