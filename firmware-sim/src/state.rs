//! What the simulated controllers hold, shared between the protocol tasks (which write it)
//! and the state API (which reads it). One lock per controller, never held across `.await`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nightscape_core::clock::Clock;
use nightscape_core::codec::sacn;
use nightscape_core::colour::Rgb;
use nightscape_core::model::{Site, Universe};
use nightscape_core::output::{OutputMap, SinkAddress};
use nightscape_core::render::{Layout, decode};
use nightscape_core::{ControllerId, SiteId};
use serde::Serialize;
use tokio::sync::watch;

use crate::modbus::ModbusDevice;

/// How often one source's bad input is logged at most; every one is counted.
const LOG_EVERY_MS: i64 = 10_000;

/// What a controller counted.
#[derive(Debug, Default)]
pub struct Counters {
    accepted: AtomicU64,
    malformed: AtomicU64,
    rejected: AtomicU64,
    out_of_sequence: AtomicU64,
    ignored: AtomicU64,
    last_logged_ms: AtomicI64,
    controller: String,
}

/// The counters as the state API shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CountersView {
    pub accepted: u64,
    pub malformed: u64,
    pub rejected: u64,
    pub out_of_sequence: u64,
    pub ignored: u64,
}

impl Counters {
    fn new(controller: &ControllerId) -> Counters {
        Counters {
            controller: controller.to_string(),
            last_logged_ms: AtomicI64::new(i64::MIN),
            ..Counters::default()
        }
    }

    pub fn view(&self) -> CountersView {
        CountersView {
            accepted: self.accepted.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            out_of_sequence: self.out_of_sequence.load(Ordering::Relaxed),
            ignored: self.ignored.load(Ordering::Relaxed),
        }
    }

    /// Logs at most once per [`LOG_EVERY_MS`] for this controller.
    fn log(&self, what: &str, detail: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let last = self.last_logged_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= LOG_EVERY_MS
            && self
                .last_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(controller = %self.controller, "{what}: {detail} (further ones counted, logged again in 10 s)");
        }
    }

    pub fn count_malformed(&self, detail: &str) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
        self.log("malformed input", detail);
    }

    pub fn count_rejected(&self, detail: &str) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.log("rejected request", detail);
    }

    pub fn count_out_of_sequence(&self) {
        self.out_of_sequence.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_ignored(&self) {
        self.ignored.fetch_add(1, Ordering::Relaxed);
    }
}

/// One universe as a DMX controller holds it.
#[derive(Debug, Clone)]
pub struct UniverseIn {
    /// What Art-Net or DMX over MQTT last delivered (sACN goes through `receiver`).
    pub slots: [u8; 512],
    pub receiver: Option<sacn::Receiver>,
    /// sACN data waiting for its synchronization packet: the sync address and the packet.
    pub pending: Vec<sacn::DataPacket>,
    /// Art-Net frames held until the next ArtSync (the node is in synchronous mode).
    pub held: Option<[u8; 512]>,
}

impl UniverseIn {
    pub fn new(universe: Universe) -> UniverseIn {
        UniverseIn {
            slots: [0; 512],
            receiver: match universe {
                Universe::Sacn(u) => Some(sacn::Receiver::new(u)),
                _ => None,
            },
            pending: Vec::new(),
            held: None,
        }
    }

    /// The slots the controller outputs at `now_ms`.
    pub fn output(&mut self, now_ms: i64) -> [u8; 512] {
        match &mut self.receiver {
            Some(r) => r.output(now_ms).0,
            None => self.slots,
        }
    }
}

/// A controller's own state, by kind.
#[derive(Debug)]
pub enum Device {
    /// Art-Net, sACN or DMX over MQTT: the universes it carries.
    Dmx(DmxDevice),
    Modbus(ModbusDevice),
}

#[derive(Debug, Clone)]
pub struct DmxDevice {
    pub universes: BTreeMap<Universe, UniverseIn>,
    /// Art-Net: in synchronous mode until this wall time (ArtSync seen in the last 4 s).
    pub sync_until_ms: i64,
}

/// One simulated controller.
#[derive(Debug)]
pub struct ControllerSim {
    pub id: ControllerId,
    pub site: SiteId,
    pub protocol: &'static str,
    device: Mutex<Device>,
    pub counters: Counters,
    last_update_ms: AtomicI64,
    changes: watch::Sender<u64>,
}

impl ControllerSim {
    pub fn new(
        id: ControllerId,
        site: SiteId,
        protocol: &'static str,
        device: Device,
        changes: watch::Sender<u64>,
    ) -> ControllerSim {
        ControllerSim {
            counters: Counters::new(&id),
            id,
            site,
            protocol,
            device: Mutex::new(device),
            last_update_ms: AtomicI64::new(i64::MIN),
            changes,
        }
    }

    /// Runs `f` on the device under its lock (never across an `.await`).
    pub fn with_device<T>(&self, f: impl FnOnce(&mut Device) -> T) -> T {
        let mut guard = self.device.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Counts an accepted frame or request and tells followers something changed.
    pub fn accepted(&self, now_ms: i64) {
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        self.last_update_ms.store(now_ms, Ordering::Relaxed);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn last_update_ms(&self) -> Option<i64> {
        let v = self.last_update_ms.load(Ordering::Relaxed);
        (v != i64::MIN).then_some(v)
    }

    /// The bytes this controller outputs for one sink at `now`.
    fn sink_bytes(&self, address: SinkAddress, now: Duration, now_ms: i64) -> Vec<u8> {
        self.with_device(|device| match (device, address) {
            (Device::Dmx(d), SinkAddress::Universe(u)) => d
                .universes
                .get_mut(&u)
                .map_or(vec![0; 512], |u| u.output(now_ms).to_vec()),
            (Device::Modbus(m), SinkAddress::ModbusChannels { .. }) => m.output(now),
            _ => Vec::new(),
        })
    }
}

/// One site: its layout and output map, and its controllers in the map's order.
#[derive(Debug)]
pub struct SiteSim {
    pub site: Site,
    pub layout: Layout,
    pub map: OutputMap,
    pub controllers: Vec<Arc<ControllerSim>>,
}

impl SiteSim {
    /// The layout channels the controllers output at this instant.
    pub fn channels(&self, clock: &dyn Clock) -> Vec<u8> {
        let (now, now_ms) = (clock.monotonic(), clock.now_ms());
        let mut channels = vec![0u8; self.layout.channel_count()];
        for (map, controller) in self.map.controllers().iter().zip(&self.controllers) {
            for sink in &map.sinks {
                let bytes = controller.sink_bytes(sink.address, now, now_ms);
                sink.scatter(&bytes, &mut channels);
            }
        }
        channels
    }

    /// What every pixel emits now.
    pub fn emitted(&self, clock: &dyn Clock) -> (Vec<u8>, Vec<Rgb>) {
        let channels = self.channels(clock);
        let colours = decode(&self.layout, &channels).unwrap_or_default();
        (channels, colours)
    }
}

/// Everything the simulator runs.
pub struct SimState {
    pub sites: BTreeMap<SiteId, SiteSim>,
    pub clock: Arc<dyn Clock>,
    pub changes: watch::Receiver<u64>,
}

impl std::fmt::Debug for SimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimState")
            .field("sites", &self.sites.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SimState {
    pub fn controller(&self, id: &ControllerId) -> Option<&Arc<ControllerSim>> {
        self.sites
            .values()
            .flat_map(|s| &s.controllers)
            .find(|c| &c.id == id)
    }
}
