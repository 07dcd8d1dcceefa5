//! The DMX-over-MQTT publisher, for controllers on cellular links: each universe's slots,
//! gathered through the output map, published retained at QoS 0 on
//! `{prefix}nightscape/v1/dmx/{controller}/{universe}` — when they change, at most
//! [`MAX_RATE_HZ`] times a second, and every [`KEEP_ALIVE`] otherwise.
//!
//! It publishes through the gateway's MQTT client handle and never waits on the network: a
//! full request queue drops the message (the next change or keep-alive carries the state).

use std::time::{Duration, Instant};

use nightscape_core::codec::dmx_mqtt;
use nightscape_core::model::Universe;
use nightscape_core::output::{OutputMap, SinkAddress};
use rumqttc::{AsyncClient, QoS};

/// Changes are published at most this often per universe.
pub const MAX_RATE_HZ: u32 = 10;
/// An unchanged universe is published again this often.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Outgoing {
    controller: usize,
    sink: usize,
    topic: String,
    sequence: u8,
    last: Option<(Vec<u8>, Instant)>,
}

/// What one call published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    pub messages: usize,
    /// Dropped because the client's queue was full.
    pub dropped: usize,
}

/// The publisher of one gateway's DMX-over-MQTT universes.
#[derive(Debug)]
pub struct Publisher {
    out: Vec<Outgoing>,
    slots: Vec<u8>,
    payload: Vec<u8>,
}

impl Publisher {
    /// Every DMX-over-MQTT universe of `map` whose controller `include` accepts.
    pub fn new(
        map: &OutputMap,
        topic_prefix: &str,
        include: impl Fn(&nightscape_core::ControllerId) -> bool,
    ) -> Publisher {
        let mut out = Vec::new();
        for (ci, cm) in map.controllers().iter().enumerate() {
            if !include(&cm.controller) {
                continue;
            }
            for (si, sink) in cm.sinks.iter().enumerate() {
                if let SinkAddress::Universe(Universe::DmxMqtt(u)) = sink.address {
                    out.push(Outgoing {
                        controller: ci,
                        sink: si,
                        topic: dmx_mqtt::topic(topic_prefix, &cm.controller, u),
                        sequence: 0,
                        last: None,
                    });
                }
            }
        }
        Publisher {
            out,
            slots: vec![0; 512],
            payload: Vec::with_capacity(513),
        }
    }

    pub fn universes(&self) -> usize {
        self.out.len()
    }

    /// Publishes what is due for the layout channels `channels`.
    pub fn publish(&mut self, client: &AsyncClient, map: &OutputMap, channels: &[u8]) -> Published {
        let now = Instant::now();
        let min_gap = Duration::from_secs(1) / MAX_RATE_HZ;
        let mut done = Published::default();
        for o in &mut self.out {
            let sink = &map.controllers()[o.controller].sinks[o.sink];
            sink.gather(channels, &mut self.slots);
            // Only the slots up to the last patched one travel (cellular data is paid for).
            let used = sink
                .runs
                .iter()
                .map(|r| r.positions().end.saturating_sub(1) as usize)
                .max()
                .unwrap_or(0)
                .clamp(1, 512);
            let slots = &self.slots[..used];
            let due = match &o.last {
                None => true,
                Some((last, at)) => {
                    let since = now.duration_since(*at);
                    (last.as_slice() != slots && since >= min_gap) || since >= KEEP_ALIVE
                }
            };
            if !due {
                continue;
            }
            o.sequence = o.sequence.wrapping_add(1);
            dmx_mqtt::encode_into(o.sequence, slots, &mut self.payload);
            match client.try_publish(&o.topic, QoS::AtMostOnce, true, self.payload.clone()) {
                Ok(()) => {
                    o.last = Some((slots.to_vec(), now));
                    done.messages += 1;
                }
                Err(_) => done.dropped += 1,
            }
        }
        done
    }
}
