//! What the simulated controllers hold, shared between the protocol tasks (which write it)
//! and the state API (which reads it). One lock per controller, never held across `.await`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nightscape_core::clock::Clock;
use nightscape_core::codec::sacn;
use nightscape_core::colour::Rgb;
use nightscape_core::model::{OnLoss, Site, Universe};
use nightscape_core::output::{OutputMap, SinkAddress};
use nightscape_core::render::{Layout, decode};
use nightscape_core::{ControllerId, SiteId};
use serde::Serialize;
use tokio::sync::watch;

use crate::faults::{ActiveFaults, Dice, Fault, FaultKind};
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
    dropped: AtomicU64,
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
    /// Lost on purpose by an injected fault (offline, dropped share).
    pub dropped: u64,
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
            dropped: self.dropped.load(Ordering::Relaxed),
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

    pub fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// One universe as a DMX controller holds it.
#[derive(Debug, Clone)]
pub struct UniverseIn {
    /// What Art-Net or DMX over MQTT last delivered (sACN goes through `receiver`).
    pub slots: [u8; 512],
    pub receiver: Option<sacn::Receiver>,
    /// sACN data waiting for its synchronization packet, with when it arrived.
    pub pending: Vec<(sacn::DataPacket, i64)>,
    /// Art-Net frames held until the next ArtSync (the node is in synchronous mode).
    pub held: Option<[u8; 512]>,
    /// When the last Art-Net or MQTT frame was shown.
    pub last_frame_ms: Option<i64>,
    pub on_loss: OnLoss,
}

impl UniverseIn {
    pub fn new(universe: Universe, on_loss: OnLoss) -> UniverseIn {
        UniverseIn {
            slots: [0; 512],
            receiver: match universe {
                Universe::Sacn(u) => Some(sacn::Receiver::with_loss(u, on_loss)),
                _ => None,
            },
            pending: Vec::new(),
            held: None,
            last_frame_ms: None,
            on_loss,
        }
    }

    /// Shows a frame that arrived at `now_ms` (Art-Net, DMX over MQTT).
    pub fn show(&mut self, slots: [u8; 512], now_ms: i64) {
        self.slots = slots;
        self.last_frame_ms = Some(now_ms);
    }

    /// The slots the controller outputs at `now_ms`: for sACN the receiver's merge; otherwise
    /// the last frame, or 0 once frames have stopped for 2.5 s on a controller set to go dark.
    pub fn output(&mut self, now_ms: i64) -> [u8; 512] {
        match &mut self.receiver {
            Some(r) => {
                // No sync packet for the data-loss timeout: process what waited, as E1.31
                // asks of a receiver whose synchronization source has gone.
                if self
                    .pending
                    .first()
                    .is_some_and(|(_, at)| now_ms.saturating_sub(*at) >= sacn::DATA_LOSS_MS)
                {
                    for (p, _) in std::mem::take(&mut self.pending) {
                        r.feed(&p, now_ms);
                    }
                }
                r.output(now_ms).0
            }
            None => {
                let lost = self
                    .last_frame_ms
                    .is_none_or(|t| now_ms.saturating_sub(t) >= sacn::DATA_LOSS_MS);
                if lost && self.on_loss == OnLoss::Dark {
                    [0; 512]
                } else {
                    self.slots
                }
            }
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
    faults: Mutex<ActiveFaults>,
    dice: Dice,
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
            faults: Mutex::new(ActiveFaults::default()),
            dice: Dice::new(0x9e37_79b9_7f4a_7c15),
        }
    }

    /// The faults on the controller now.
    pub fn faults(&self) -> ActiveFaults {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn with_faults<T>(&self, f: impl FnOnce(&mut ActiveFaults) -> T) -> T {
        let mut guard = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut guard);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        out
    }

    /// Whether the controller is without power or network at `now_ms`.
    pub fn is_offline(&self, now_ms: i64) -> bool {
        let f = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        f.offline || f.down_until_ms.is_some_and(|t| now_ms < t)
    }

    /// Whether an arriving packet or request is taken (not lost to an offline or dropping
    /// fault); a lost one is counted.
    pub fn admit(&self, now_ms: i64) -> bool {
        let share = self
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drop_share;
        let lost = self.is_offline(now_ms) || self.dice.roll(share);
        if lost {
            self.counters.count_dropped();
        }
        !lost
    }

    /// The exception to answer instead, when an exception fault says so this time.
    pub fn injected_exception(&self) -> Option<u8> {
        let exception = self
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .exception;
        exception.and_then(|(code, share)| self.dice.roll(share).then_some(code))
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(
            self.faults
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .latency_ms,
        )
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
            for failed in controller.faults().lamp_failed {
                let ranges = self.map.fixture_channels();
                if let Some(k) = self.site.fixtures.iter().position(|f| f.id == failed)
                    && let Some(span) = ranges.get(k).and_then(|r| channels.get_mut(r.clone()))
                {
                    span.fill(0);
                }
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

    /// Checks that a fault can be applied, without applying it.
    pub fn validate(&self, fault: &Fault) -> Result<(), String> {
        let (site, index) = self.locate(&fault.controller)?;
        let in_share = |s: f64| (0.0..=1.0).contains(&s);
        match &fault.kind {
            FaultKind::Drop { share } | FaultKind::Exception { share, .. } if !in_share(*share) => {
                Err(format!("share {share} must be between 0 and 1"))
            }
            FaultKind::Exception { code: 0, .. } => {
                Err("exception code 0 is not an exception; use 1–255".into())
            }
            FaultKind::Reboot { down_ms } if *down_ms > 600_000 => Err(format!(
                "a reboot of {down_ms} ms is more than ten minutes; use `offline`"
            )),
            FaultKind::Latency { ms } if *ms > 60_000 => Err(format!(
                "latency {ms} ms is more than a minute; a controller that slow is offline"
            )),
            FaultKind::PowerDrift { factor } if !(factor.is_finite() && *factor > 0.0) => {
                Err(format!("power drift factor {factor} must be above 0"))
            }
            FaultKind::LampFailure { fixture }
                if !site
                    .site
                    .fixtures
                    .iter()
                    .any(|f| &f.id == fixture && f.controller == site.controllers[index].id) =>
            {
                Err(format!(
                    "fixture `{fixture}` does not hang on controller `{}`",
                    fault.controller
                ))
            }
            _ => Ok(()),
        }
    }

    fn locate(&self, controller: &ControllerId) -> Result<(&SiteSim, usize), String> {
        self.sites
            .values()
            .find_map(|s| {
                s.controllers
                    .iter()
                    .position(|c| &c.id == controller)
                    .map(|i| (s, i))
            })
            .ok_or_else(|| format!("no controller `{controller}` in this simulator"))
    }

    /// Applies a scenario: every fault is checked first, and none is applied if one is wrong.
    pub fn apply_all(&self, faults: &[Fault]) -> Result<(), String> {
        for (k, f) in faults.iter().enumerate() {
            self.validate(f).map_err(|e| format!("faults[{k}]: {e}"))?;
        }
        for f in faults {
            self.apply(f)?;
        }
        Ok(())
    }

    /// Puts a fault on its controller; says what is wrong with one that cannot be applied.
    pub fn apply(&self, fault: &Fault) -> Result<(), String> {
        self.validate(fault)?;
        let (site, index) = self
            .sites
            .values()
            .find_map(|s| {
                s.controllers
                    .iter()
                    .position(|c| c.id == fault.controller)
                    .map(|i| (s, i))
            })
            .ok_or_else(|| format!("no controller `{}` in this simulator", fault.controller))?;
        let c = &site.controllers[index];
        let share = |s: f64| {
            if (0.0..=1.0).contains(&s) {
                Ok(s)
            } else {
                Err(format!("share {s} must be between 0 and 1"))
            }
        };
        let now = self.clock.monotonic();
        match &fault.kind {
            FaultKind::Offline => c.with_faults(|f| f.offline = true),
            FaultKind::Latency { ms } => c.with_faults(|f| f.latency_ms = *ms),
            FaultKind::Drop { share: s } => {
                let s = share(*s)?;
                c.with_faults(|f| f.drop_share = s);
            }
            FaultKind::Exception { code, share: s } => {
                let s = share(*s)?;
                if *code == 0 {
                    return Err("exception code 0 is not an exception; use 1–255".into());
                }
                c.with_faults(|f| f.exception = Some((*code, s)));
            }
            FaultKind::LampFailure { fixture } => {
                let k = site
                    .site
                    .fixtures
                    .iter()
                    .position(|f| &f.id == fixture && f.controller == c.id)
                    .ok_or_else(|| {
                        format!("fixture `{fixture}` does not hang on controller `{}`", c.id)
                    })?;
                let load = site.map.controllers()[index]
                    .sinks
                    .iter()
                    .flat_map(|s| &s.runs)
                    .position(|r| r.fixture == k);
                c.with_device(|d| {
                    if let (Device::Modbus(m), Some(load)) = (d, load)
                        && !m.faults.lamp_failed.contains(&load)
                    {
                        m.faults.lamp_failed.push(load);
                    }
                });
                c.with_faults(|f| {
                    if !f.lamp_failed.contains(fixture) {
                        f.lamp_failed.push(fixture.clone());
                    }
                });
            }
            FaultKind::OverTemperature => {
                c.with_device(|d| {
                    if let Device::Modbus(m) = d {
                        m.faults.over_temperature = true;
                    }
                });
                c.with_faults(|f| f.over_temperature = true);
            }
            FaultKind::OutputShort | FaultKind::OutputFault => {
                let short = matches!(fault.kind, FaultKind::OutputShort);
                c.with_device(|d| {
                    if let Device::Modbus(m) = d {
                        if short {
                            m.faults.output_short = true;
                        } else {
                            m.faults.output_fault = true;
                        }
                    }
                });
                c.with_faults(|f| {
                    if short {
                        f.output_short = true;
                    } else {
                        f.output_fault = true;
                    }
                });
            }
            FaultKind::Reboot { down_ms } => c.with_device(|d| match d {
                Device::Modbus(m) => {
                    let down = Duration::from_millis(*down_ms);
                    c.with_faults(|f| {
                        f.down_until_ms = Some(
                            self.clock
                                .now_ms()
                                .saturating_add(i64::try_from(*down_ms).unwrap_or(i64::MAX)),
                        );
                    });
                    m.reboot(now + down);
                }
                Device::Dmx(d) => {
                    for (u, state) in d.universes.iter_mut() {
                        *state = UniverseIn::new(*u, state.on_loss);
                    }
                    d.sync_until_ms = i64::MIN;
                }
            }),
            FaultKind::PowerDrift { factor } => {
                if !(factor.is_finite() && *factor > 0.0) {
                    return Err(format!("power drift factor {factor} must be above 0"));
                }
                c.with_device(|d| {
                    if let Device::Modbus(m) = d {
                        m.faults.power_drift = Some(*factor);
                    }
                });
                c.with_faults(|f| f.power_drift = Some(*factor));
            }
        }
        tracing::info!(controller = %c.id, "fault applied: {:?}", fault.kind);
        Ok(())
    }

    /// Clears the faults of one controller, or of all.
    pub fn clear(&self, controller: Option<&ControllerId>) {
        for c in self.sites.values().flat_map(|s| &s.controllers) {
            if controller.is_some_and(|id| id != &c.id) {
                continue;
            }
            c.with_faults(|f| *f = ActiveFaults::default());
            c.with_device(|d| {
                if let Device::Modbus(m) = d {
                    m.faults = crate::modbus::DeviceFaults::default();
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightscape_core::addr::ArtNetPortAddress;

    #[test]
    fn an_art_net_node_set_to_go_dark_does_so_when_frames_stop() {
        let u = Universe::ArtNet(ArtNetPortAddress::new(0).unwrap());
        let (mut hold, mut dark) = (
            UniverseIn::new(u, OnLoss::Hold),
            UniverseIn::new(u, OnLoss::Dark),
        );
        for n in [&mut hold, &mut dark] {
            n.show([70; 512], 1_000);
            assert_eq!(n.output(3_400)[0], 70);
        }
        assert_eq!(hold.output(3_600)[0], 70);
        assert_eq!(dark.output(3_600)[0], 0);
        dark.show([71; 512], 3_700);
        assert_eq!(dark.output(3_800)[0], 71);
    }
}
