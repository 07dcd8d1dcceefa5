//! Simulated DMX-over-MQTT controllers: each its own client of the broker, subscribed to its
//! universes' topics, taking each payload (sequence byte and slots) through the core's
//! codec. A controller logs in as its own broker user when given one, as a real one does, so
//! a broker with the city's access control lets it read its own topics only. Each client
//! reconnects with back-off and subscribes again after every connection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nightscape_core::ControllerId;
use nightscape_core::clock::Clock;
use nightscape_core::codec::dmx_mqtt::DmxMessage;
use nightscape_core::model::Universe;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

use crate::state::{ControllerSim, Device};

/// Largest MQTT packet the client takes: a plan's size, far beyond any DMX payload (at most
/// 513 bytes), so a wrong-sized one is counted as malformed by the codec rather than ending
/// the connection.
const MAX_PACKET: usize = 1024 * 1024;

/// Where the broker is, the prefix of every topic, and how each controller logs in.
#[derive(Debug, Clone)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub topic_prefix: String,
    /// Each DMX-over-MQTT controller's broker user (`nightscape server mqtt-acl` makes them);
    /// a controller without one connects anonymously.
    pub logins: BTreeMap<ControllerId, Login>,
}

impl Broker {
    /// A broker on `host:port` that takes anonymous clients.
    pub fn anonymous(host: &str, port: u16, topic_prefix: &str) -> Broker {
        Broker {
            host: host.to_owned(),
            port,
            topic_prefix: topic_prefix.to_owned(),
            logins: BTreeMap::new(),
        }
    }
}

/// A broker user and its password.
#[derive(Clone)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &"…")
            .finish()
    }
}

/// One controller's client, subscribed to its own topics and applying what arrives, until
/// `shutdown`.
pub async fn serve(
    broker: Broker,
    controller: Arc<ControllerSim>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let login = broker.logins.get(&controller.id);
    // A logged-in controller is known to the broker by its user alone (a broker may bind
    // the two); an anonymous one is told apart from other simulators on a shared broker.
    let client_id = match login {
        Some(l) => l.username.clone(),
        None => format!("nightscape-sim-{}-{}", std::process::id(), controller.id),
    };
    let by_id = BTreeMap::from([(controller.id.clone(), controller.clone())]);
    let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    if let Some(l) = login {
        options.set_credentials(l.username.clone(), l.password.clone());
    }
    options.set_keep_alive(Duration::from_secs(10));
    options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    let (client, mut events) = AsyncClient::new(options, 64);
    // Frames are applied the moment they arrive; acks are not held back by Nagle either.
    let mut network = events.network_options();
    network.set_tcp_nodelay(true);
    events.set_network_options(network);
    let prefix = format!("{}nightscape/v1/dmx/", broker.topic_prefix);
    let filter = format!("{prefix}{}/+", controller.id);
    let mut backoff = Duration::from_millis(200);
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = events.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if client.try_subscribe(&filter, QoS::AtMostOnce).is_err() {
                    tracing::warn!("simulator could not subscribe to {filter}");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                backoff = Duration::from_millis(200);
                apply(&by_id, &prefix, &p.topic, &p.payload, clock.now_ms());
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(
                    controller = %controller.id,
                    "simulator's MQTT connection to {}:{}: {e}; retrying in {backoff:?}",
                    broker.host,
                    broker.port
                );
                let jitter = Duration::from_millis(u64::from(clock.now_ms().rem_euclid(97) as u32));
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff + jitter) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Applies one message on `topic` (shared with tests).
pub fn apply(
    controllers: &BTreeMap<ControllerId, Arc<ControllerSim>>,
    prefix: &str,
    topic: &str,
    payload: &[u8],
    now_ms: i64,
) {
    let Some((id, universe)) = topic
        .strip_prefix(prefix)
        .and_then(|rest| rest.split_once('/'))
    else {
        return;
    };
    let Some(controller) = id
        .parse()
        .ok()
        .and_then(|id: ControllerId| controllers.get(&id))
    else {
        return;
    };
    if !controller.admit(now_ms) {
        return;
    }
    let Ok(universe) = universe.parse::<u16>() else {
        controller
            .counters
            .count_malformed(&format!("topic universe `{universe}`"));
        return;
    };
    let message = match DmxMessage::decode(payload) {
        Ok(m) => m,
        Err(e) => {
            controller.counters.count_malformed(&e.to_string());
            return;
        }
    };
    let carried = controller.with_device(|d| {
        let Device::Dmx(d) = d else { return false };
        let Some(u) = d.universes.get_mut(&Universe::DmxMqtt(universe)) else {
            return false;
        };
        let mut slots = [0u8; 512];
        let n = message.slots.len().min(512);
        slots[..n].copy_from_slice(&message.slots[..n]);
        u.show(slots, now_ms);
        true
    });
    if carried {
        controller.accepted(now_ms);
    } else {
        controller.counters.count_ignored();
    }
}
