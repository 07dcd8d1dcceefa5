//! Simulated DMX-over-MQTT controllers: subscribed on a broker to their universes'
//! topics, taking each payload (sequence byte and slots) through the core's codec.
//! The client reconnects with back-off and subscribes again after every connection.

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

/// Where the broker is, and the prefix of every topic.
#[derive(Debug, Clone)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub topic_prefix: String,
}

/// Subscribes every DMX-over-MQTT controller and applies what arrives, until `shutdown`.
pub async fn serve(
    broker: Broker,
    controllers: Vec<Arc<ControllerSim>>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    if controllers.is_empty() {
        return;
    }
    let by_id: BTreeMap<ControllerId, Arc<ControllerSim>> = controllers
        .iter()
        .map(|c| (c.id.clone(), c.clone()))
        .collect();
    let mut options = MqttOptions::new(
        format!("nightscape-sim-{}", std::process::id()),
        broker.host.clone(),
        broker.port,
    );
    options.set_keep_alive(Duration::from_secs(10));
    options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    let (client, mut events) = AsyncClient::new(options, 64);
    // Frames are applied the moment they arrive; acks are not held back by Nagle either.
    let mut network = events.network_options();
    network.set_tcp_nodelay(true);
    events.set_network_options(network);
    let prefix = format!("{}nightscape/v1/dmx/", broker.topic_prefix);
    let mut backoff = Duration::from_millis(200);
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = events.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // One subscription for every controller (messages for others are ignored):
                // a request per controller could fill the client's queue while this task,
                // which also drives the event loop, waits on it.
                if client
                    .try_subscribe(format!("{prefix}+/+"), QoS::AtMostOnce)
                    .is_err()
                {
                    tracing::warn!("simulator could not subscribe to {prefix}+/+");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                backoff = Duration::from_millis(200);
                apply(&by_id, &prefix, &p.topic, &p.payload, clock.now_ms());
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(
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
