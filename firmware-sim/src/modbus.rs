//! A simulated Modbus LED controller: the register map its profile describes, and how such a
//! device behaves — levels, master dimmer, enable switch, its own fades, readings of status,
//! power and uptime, exceptions for what it does not do — plus the tokio-modbus server that
//! puts one or more of them (units) behind one TCP endpoint.
//!
//! The device is plain state driven by requests and a monotonic time, so its behaviour is
//! tested without sockets; [`serve`] is the thin socket layer.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use nightscape_core::codec::modbus::{channels_from_registers, lamp_words, level_registers};
use nightscape_core::model::{Profile, StatusBit, WordOrder};
use tokio::net::TcpListener;
use tokio_modbus::server::tcp::Server;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_util::sync::CancellationToken;

use crate::state::{ControllerSim, Device};

/// Most registers one write may carry (Modbus application protocol, FC16).
const MAX_WRITE: usize = 123;
/// Most registers one read may ask for (FC03/FC04).
const MAX_READ: usize = 125;
/// The simulated firmware: version 1.2.
const FIRMWARE: u16 = 0x0102;

/// One fixture hanging on the controller: its channels (0-based, in the profile's channel
/// numbering) and rated power.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub channels: Range<usize>,
    pub watts: f64,
}

/// Faults a test or scenario puts on the device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceFaults {
    /// Loads (by index) whose lamp failed: they stay dark and the lamp-fault bit is set.
    pub lamp_failed: Vec<usize>,
    pub over_temperature: bool,
    /// The output stage reports a short or a fault (the outputs go dark).
    pub output_short: bool,
    pub output_fault: bool,
    /// The power meter reads this factor of the true draw (1.0 when unset).
    pub power_drift: Option<f64>,
}

/// What the device holds and does.
#[derive(Debug, Clone)]
pub struct ModbusDevice {
    profile: Arc<Profile>,
    levels: Vec<u16>,
    enable: u16,
    master: u16,
    fade: u16,
    /// Channel bytes the output moves from and to, and when the move started and lasts.
    from: Vec<u8>,
    target: Vec<u8>,
    fade_start: Duration,
    fade_len: Duration,
    booted: Duration,
    loads: Vec<Load>,
    pub faults: DeviceFaults,
}

impl ModbusDevice {
    /// A device just powered on at `now`: levels 0, master at full, output disabled (when the
    /// profile has an enable switch), no fade.
    pub fn new(profile: Arc<Profile>, loads: Vec<Load>, now: Duration) -> ModbusDevice {
        let channels = usize::from(profile.levels.channels);
        let registers = level_registers(&profile, &[]);
        ModbusDevice {
            enable: profile.enable.map_or(0, |e| e.off),
            master: profile.master.map_or(0, |m| m.max),
            fade: 0,
            levels: registers,
            from: vec![0; channels],
            target: vec![0; channels],
            fade_start: now,
            fade_len: Duration::ZERO,
            booted: now,
            loads,
            faults: DeviceFaults::default(),
            profile,
        }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Power lost and back: levels, switches and fade are gone, uptime starts again.
    pub fn reboot(&mut self, now: Duration) {
        let faults = std::mem::take(&mut self.faults);
        let loads = std::mem::take(&mut self.loads);
        *self = ModbusDevice::new(self.profile.clone(), loads, now);
        self.faults = faults;
    }

    /// The channel levels the device emits at `now`, one byte a channel: its fade position,
    /// times the master, zero when disabled; failed lamps are dark.
    pub fn output(&self, now: Duration) -> Vec<u8> {
        let enabled = self.profile.enable.is_none_or(|e| self.enable == e.on);
        if !enabled || self.faults.output_short || self.faults.output_fault {
            return vec![0; self.target.len()];
        }
        let master = self.profile.master.map_or(1.0, |m| {
            f64::from(self.master.min(m.max)) / f64::from(m.max.max(1))
        });
        let mut out: Vec<u8> = self
            .fading(now)
            .map(|v| (v * master).round().clamp(0.0, 255.0) as u8)
            .collect();
        for &load in &self.faults.lamp_failed {
            if let Some(l) = self.loads.get(load)
                && let Some(span) = out.get_mut(l.channels.clone())
            {
                span.fill(0);
            }
        }
        out
    }

    /// Electrical draw at `now`: each load's rated power times its mean level.
    pub fn power_watts(&self, now: Duration) -> f64 {
        let out = self.output(now);
        let draw: f64 = self
            .loads
            .iter()
            .filter_map(|l| {
                let span = out.get(l.channels.clone())?;
                let mean = span.iter().map(|&v| f64::from(v)).sum::<f64>()
                    / (255.0 * span.len().max(1) as f64);
                Some(l.watts * mean)
            })
            .sum();
        draw * self.faults.power_drift.unwrap_or(1.0)
    }

    fn status_word(&self) -> u16 {
        let Some(status) = &self.profile.status else {
            return 0;
        };
        let bit_of = |wanted: StatusBit| {
            status
                .bits
                .iter()
                .position(|b| *b == wanted)
                .map_or(0, |k| 1u16 << k)
        };
        let mut word = 0;
        if !self.faults.lamp_failed.is_empty() {
            word |= bit_of(StatusBit::LampFault);
        }
        if self.faults.over_temperature {
            word |= bit_of(StatusBit::OverTemperature);
        }
        if self.faults.output_short {
            word |= bit_of(StatusBit::OutputShort);
        }
        if self.faults.output_fault {
            word |= bit_of(StatusBit::OutputFault);
        }
        word
    }

    fn words(value: u32, count: u8, order: WordOrder) -> Vec<u16> {
        match (count, order) {
            (1, _) => vec![value.min(0xffff) as u16],
            (_, WordOrder::Big) => vec![(value >> 16) as u16, value as u16],
            (_, WordOrder::Little) => vec![value as u16, (value >> 16) as u16],
        }
    }

    /// Input registers: status, power and uptime where the profile puts them.
    fn input_map(&self, now: Duration) -> BTreeMap<u16, u16> {
        let p = &self.profile;
        let mut map = BTreeMap::new();
        if let Some(s) = &p.status {
            map.insert(s.register.get(), self.status_word());
        }
        if let Some(pw) = &p.power {
            let raw = (self.power_watts(now) / pw.watts_per_unit).round().max(0.0) as u32;
            for (k, w) in Self::words(raw, pw.words, p.word_order)
                .into_iter()
                .enumerate()
            {
                map.insert(pw.register.get().wrapping_add(k as u16), w);
            }
        }
        if let Some(t) = &p.temperature {
            // 35 °C in a cabinet at night; 85 °C when over-temperature.
            let celsius = if self.faults.over_temperature {
                85.0
            } else {
                35.0
            };
            map.insert(
                t.register.get(),
                (celsius / t.degrees_per_unit).round() as i16 as u16,
            );
        }
        if let Some(f) = p.firmware {
            map.insert(f.get(), FIRMWARE);
        }
        if let Some(first) = p.lamp_faults {
            let mut words = vec![0u16; lamp_words(p) as usize];
            for load in &self.faults.lamp_failed {
                for ch in self.loads.get(*load).map_or(0..0, |l| l.channels.clone()) {
                    if let Some(w) = words.get_mut(ch / 16) {
                        *w |= 1 << (ch % 16);
                    }
                }
            }
            for (k, w) in words.into_iter().enumerate() {
                map.insert(first.get().wrapping_add(k as u16), w);
            }
        }
        if let Some(u) = &p.uptime {
            let up = now.saturating_sub(self.booted).as_secs_f64() / u.seconds_per_unit;
            let raw = up.floor().min(f64::from(u32::MAX)) as u32;
            for (k, w) in Self::words(raw, u.words, p.word_order)
                .into_iter()
                .enumerate()
            {
                map.insert(u.register.get().wrapping_add(k as u16), w);
            }
        }
        map
    }

    fn level_range(&self) -> Range<u32> {
        self.profile.level_registers()
    }

    fn holding(&self, register: u16, now: Duration) -> Option<u16> {
        let r = u32::from(register);
        let levels = self.level_range();
        if levels.contains(&r) {
            return self.levels.get((r - levels.start) as usize).copied();
        }
        let p = &self.profile;
        if p.enable.is_some_and(|e| e.register.get() == register) {
            return Some(self.enable);
        }
        if p.master.is_some_and(|m| m.register.get() == register) {
            return Some(self.master);
        }
        if p.fade.is_some_and(|f| f.register.get() == register) {
            return Some(self.fade);
        }
        if let Some(rb) = &p.readback
            && rb.table == nightscape_core::addr::RegisterTable::Holding
        {
            let start = u32::from(rb.start.get());
            if (start..start + levels.len() as u32).contains(&r) {
                let shown = level_registers(p, &self.output(now));
                return shown.get((r - start) as usize).copied();
            }
        }
        None
    }

    /// `count` registers from `start` through `lookup`: 03 for a count Modbus does not
    /// allow, 02 when any of them is not in the map.
    fn read(
        start: u16,
        count: u16,
        lookup: impl Fn(u16) -> Option<u16>,
    ) -> Result<Vec<u16>, ExceptionCode> {
        if count == 0 || usize::from(count) > MAX_READ {
            return Err(ExceptionCode::IllegalDataValue);
        }
        (0..count)
            .map(|k| {
                start
                    .checked_add(k)
                    .and_then(&lookup)
                    .ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect()
    }

    /// FC03.
    pub fn read_holding(
        &self,
        start: u16,
        count: u16,
        now: Duration,
    ) -> Result<Vec<u16>, ExceptionCode> {
        Self::read(start, count, |r| self.holding(r, now))
    }

    /// FC04.
    pub fn read_input(
        &self,
        start: u16,
        count: u16,
        now: Duration,
    ) -> Result<Vec<u16>, ExceptionCode> {
        let map = self.input_map(now);
        Self::read(start, count, |r| map.get(&r).copied())
    }

    /// FC06 (`multiple` false) or FC16/FC23: writes `values` from `start`, all or nothing.
    pub fn write(
        &mut self,
        start: u16,
        values: &[u16],
        multiple: bool,
        now: Duration,
    ) -> Result<(), ExceptionCode> {
        let p = self.profile.clone();
        if multiple && !p.write.fc16 {
            return Err(ExceptionCode::IllegalFunction);
        }
        let limit = usize::from(p.write.max_registers).clamp(1, MAX_WRITE);
        if values.is_empty() || (multiple && values.len() > limit) {
            return Err(ExceptionCode::IllegalDataValue);
        }
        // Check every address first: a refused write changes nothing.
        let levels = self.level_range();
        let writable = |r: u32| {
            levels.contains(&r)
                || p.enable.is_some_and(|e| u32::from(e.register.get()) == r)
                || p.master.is_some_and(|m| u32::from(m.register.get()) == r)
                || p.fade.is_some_and(|f| u32::from(f.register.get()) == r)
        };
        let first = u32::from(start);
        if (first..first + values.len() as u32).any(|r| r > 0xffff || !writable(r)) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let mut levels_changed = false;
        for (k, &v) in values.iter().enumerate() {
            let r = first + k as u32;
            if levels.contains(&r) {
                let i = (r - levels.start) as usize;
                if self.levels[i] != v {
                    self.levels[i] = v;
                    levels_changed = true;
                }
            } else if p.enable.is_some_and(|e| u32::from(e.register.get()) == r) {
                self.enable = v;
            } else if p.master.is_some_and(|m| u32::from(m.register.get()) == r) {
                self.master = v.min(p.master.map_or(v, |m| m.max));
            } else if let Some(f) = p.fade.filter(|f| u32::from(f.register.get()) == r) {
                self.fade = v.min(f.max);
            }
        }
        if levels_changed {
            self.retarget(now);
        }
        Ok(())
    }

    /// New level registers: fade to them over the fade register's time, from where the
    /// output is now (also mid-fade).
    fn retarget(&mut self, now: Duration) {
        let current = self.position(now);
        self.from = current;
        self.target = channels_from_registers(&self.profile, &self.levels);
        self.fade_start = now;
        self.fade_len = self.profile.fade.map_or(Duration::ZERO, |f| {
            f.unit.saturating_mul(u32::from(self.fade))
        });
    }

    /// The fade position at `now`, before master and enable.
    fn position(&self, now: Duration) -> Vec<u8> {
        self.fading(now).map(|v| v.round() as u8).collect()
    }

    /// Each channel's place on its fade at `now`, unrounded.
    fn fading(&self, now: Duration) -> impl Iterator<Item = f64> + '_ {
        let k = if self.fade_len.is_zero() {
            1.0
        } else {
            let into = now.saturating_sub(self.fade_start);
            (into.as_secs_f64() / self.fade_len.as_secs_f64()).min(1.0)
        };
        self.from
            .iter()
            .zip(&self.target)
            .map(move |(&a, &b)| f64::from(a) + (f64::from(b) - f64::from(a)) * k)
    }

    /// Answers one request as the device would.
    pub fn handle(
        &mut self,
        request: &Request<'_>,
        now: Duration,
    ) -> Result<Response, ExceptionCode> {
        match request {
            Request::ReadHoldingRegisters(start, count) => self
                .read_holding(*start, *count, now)
                .map(Response::ReadHoldingRegisters),
            Request::ReadInputRegisters(start, count) => self
                .read_input(*start, *count, now)
                .map(Response::ReadInputRegisters),
            Request::WriteSingleRegister(register, value) => self
                .write(*register, &[*value], false, now)
                .map(|()| Response::WriteSingleRegister(*register, *value)),
            Request::WriteMultipleRegisters(start, values) => self
                .write(*start, values, true, now)
                .map(|()| Response::WriteMultipleRegisters(*start, values.len() as u16)),
            Request::ReadWriteMultipleRegisters(read, count, write, values) => {
                // The write happens first (Modbus application protocol, FC23), but only when
                // the read is one the device can answer: a refused request changes nothing.
                self.read_holding(*read, *count, now)?;
                self.write(*write, values, true, now)?;
                self.read_holding(*read, *count, now)
                    .map(Response::ReadWriteMultipleRegisters)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

/// What a Modbus device's own registers say now, for the state API.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceView {
    pub enabled: bool,
    /// The master dimmer, 0–100 %.
    pub master_pct: f64,
    /// The device's own fade time.
    pub fade_ms: u64,
    pub power_w: f64,
    pub uptime_s: u64,
    /// The status register as the device answers it.
    pub status: u16,
    /// The channel bytes the output shows, or fades to while a fade runs.
    pub fading_to: Vec<u8>,
}

impl ModbusDevice {
    pub fn view(&self, now: Duration) -> DeviceView {
        let p = &self.profile;
        DeviceView {
            enabled: p.enable.is_none_or(|e| self.enable == e.on),
            master_pct: p.master.map_or(100.0, |m| {
                100.0 * f64::from(self.master.min(m.max)) / f64::from(m.max.max(1))
            }),
            fade_ms: p.fade.map_or(0, |f| {
                u64::try_from(f.unit.saturating_mul(u32::from(self.fade)).as_millis())
                    .unwrap_or(u64::MAX)
            }),
            power_w: (self.power_watts(now) * 10.0).round() / 10.0,
            uptime_s: now.saturating_sub(self.booted).as_secs(),
            status: self.status_word(),
            fading_to: self.target.clone(),
        }
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

/// The tokio-modbus service of one endpoint: its units by id.
struct Endpoint {
    units: Arc<BTreeMap<u8, Arc<ControllerSim>>>,
    clock: Arc<dyn nightscape_core::clock::Clock>,
    /// For devices behind an RS-485 bridge (`serialize_host`): one request on the line at a
    /// time, taking the time its bytes need at 115,200 baud.
    line: Option<Arc<tokio::sync::Semaphore>>,
}

/// Bits a byte takes on an RS-485 line (start, 8 data, stop) and the line's speed.
const LINE_BITS_PER_BYTE: u64 = 10;
const LINE_BAUD: u64 = 115_200;

/// How long a request and its answer take on the serial line behind a Modbus TCP bridge:
/// the RTU frames (address, function, CRC) with their data.
fn line_time(request: &Request<'_>) -> Duration {
    let bytes: u64 = match request {
        Request::WriteMultipleRegisters(_, v) => 9 + 2 * v.len() as u64 + 8,
        Request::ReadHoldingRegisters(_, n) | Request::ReadInputRegisters(_, n) => {
            8 + 5 + 2 * u64::from(*n)
        }
        Request::ReadWriteMultipleRegisters(_, n, _, v) => {
            13 + 2 * v.len() as u64 + 5 + 2 * u64::from(*n)
        }
        _ => 16,
    };
    Duration::from_micros(bytes * LINE_BITS_PER_BYTE * 1_000_000 / LINE_BAUD)
}

impl tokio_modbus::server::Service for Endpoint {
    type Request = SlaveRequest<'static>;
    /// `None`: no answer at all (an offline controller, a lost request).
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Answer;

    fn call(&self, req: Self::Request) -> Self::Future {
        // A device addressed by IP answers unit 0 and 255 as itself (Modbus TCP).
        let single = (self.units.len() == 1 && matches!(req.slave, 0 | 255))
            .then(|| self.units.values().next().cloned())
            .flatten();
        let Some(unit) = self.units.get(&req.slave).cloned().or(single) else {
            // A unit nobody answers for, as a Modbus TCP gateway reports it.
            if let Some(any) = self.units.values().next() {
                any.counters.count_rejected("unknown unit id");
            }
            return Box::pin(std::future::ready(Err(ExceptionCode::GatewayTargetDevice)));
        };
        if !unit.admit(self.clock.now_ms()) {
            return Box::pin(std::future::ready(Ok(None)));
        }
        let latency = unit.latency();
        let clock = self.clock.clone();
        let line = self.line.clone();
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            // A closed semaphore never happens here; without a permit the request just goes.
            let _turn = match &line {
                Some(line) => {
                    let turn = line.clone().acquire_owned().await.ok();
                    tokio::time::sleep(line_time(&req.request)).await;
                    turn
                }
                None => None,
            };
            if let Some(code) = unit.injected_exception() {
                unit.counters.count_rejected("injected exception");
                return Err(ExceptionCode::new(code));
            }
            let now = clock.monotonic();
            let answer = unit.with_device(|device| match device {
                Device::Modbus(d) => d.handle(&req.request, now),
                Device::Dmx(_) => Err(ExceptionCode::ServerDeviceFailure),
            });
            match &answer {
                Ok(_) => unit.accepted(clock.now_ms()),
                Err(_) => unit.counters.count_rejected("exception"),
            }
            answer.map(Some)
        })
    }
}

/// Serves `units` on `listener` until `shutdown`. Frames tokio-modbus cannot decode close
/// the connection (as devices do) and are counted as malformed on the first unit.
pub async fn serve(
    listener: TcpListener,
    units: BTreeMap<u8, Arc<ControllerSim>>,
    clock: Arc<dyn nightscape_core::clock::Clock>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let serial = units.values().any(|u| {
        u.with_device(|d| matches!(d, Device::Modbus(m) if m.profile().write.serialize_host))
    });
    let line = serial.then(|| Arc::new(tokio::sync::Semaphore::new(1)));
    let units = Arc::new(units);
    let first = units.values().next().cloned();
    let server = Server::new(listener);
    let on_connected = |stream, _addr: SocketAddr| {
        // An endpoint whose every unit is offline takes no connection.
        let now_ms = clock.now_ms();
        let offline = units.values().all(|u| u.is_offline(now_ms));
        let service = Endpoint {
            units: units.clone(),
            clock: clock.clone(),
            line: line.clone(),
        };
        async move { Ok((!offline).then_some((service, stream))) }
    };
    let on_error = move |e: io::Error| {
        if let Some(unit) = &first {
            unit.counters.count_malformed(&e.to_string());
        }
    };
    server
        .serve_until(&on_connected, on_error, async move {
            shutdown.cancelled().await;
        })
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightscape_core::show::{SourceFile, check};

    fn profile(name: &str) -> Arc<Profile> {
        let text = std::fs::read_to_string(format!(
            "{}/../scenes/profiles/{name}.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let checked = check(&[SourceFile {
            path: format!("profiles/{name}.toml"),
            text,
        }]);
        Arc::new(checked.library.profiles.into_values().next().unwrap())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ns_led_v1_is_dark_until_enabled_then_shows_its_levels_under_the_master() {
        let p = profile("ns-led-v1");
        let load = Load {
            channels: 0..3,
            watts: 100.0,
        };
        let mut d = ModbusDevice::new(p, vec![load], ms(0));
        d.write(0x100, &[0xff80, 0x4000], true, ms(10)).unwrap();
        assert_eq!(&d.output(ms(20))[..3], [0, 0, 0], "disabled at power-on");
        d.write(0, &[1], false, ms(30)).unwrap();
        assert_eq!(&d.output(ms(40))[..4], [255, 128, 64, 0]);
        d.write(1, &[51], false, ms(50)).unwrap(); // master 20 %
        assert_eq!(&d.output(ms(60))[..3], [51, 26, 13]);
        // Power: (51 + 26 + 13) / (3 × 255) × 100 W = 11.8 W, in 0.1 W.
        assert_eq!(d.read_input(1, 1, ms(60)).unwrap(), [118]);
        // Uptime in seconds, two words, high first.
        assert_eq!(d.read_input(2, 2, ms(70_000)).unwrap(), [0, 70]);
        assert_eq!(d.read_holding(0, 3, ms(70)).unwrap(), [1, 51, 0]);
    }

    #[test]
    fn the_controller_fades_when_its_fade_register_says_so() {
        let p = profile("ns-led-v1");
        let mut d = ModbusDevice::new(p, vec![], ms(0));
        d.write(0, &[1], false, ms(0)).unwrap();
        d.write(2, &[100], false, ms(0)).unwrap(); // 100 × 10 ms = 1 s
        d.write(0x100, &[0xc800], false, ms(1000)).unwrap();
        assert_eq!(d.output(ms(1000))[0], 0);
        assert_eq!(d.output(ms(1500))[0], 100);
        assert_eq!(d.output(ms(2000))[0], 200);
        // A new level mid-fade starts from where the output is.
        d.write(0x100, &[0x0000], false, ms(1500)).unwrap();
        assert_eq!(d.output(ms(1500))[0], 100);
        assert_eq!(d.output(ms(2000))[0], 50);
    }

    #[test]
    fn requests_the_device_does_not_take_are_exceptions_and_change_nothing() {
        let p = profile("ns-led-v1");
        let mut d = ModbusDevice::new(p, vec![], ms(0));
        // Past the map.
        assert_eq!(
            d.read_holding(0x300, 1, ms(0)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            d.read_input(9, 1, ms(0)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        // Too many registers.
        assert_eq!(
            d.read_holding(0x100, 126, ms(0)),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            d.write(0x100, &[1; 121], true, ms(0)),
            Err(ExceptionCode::IllegalDataValue)
        );
        // A write that runs past the levels is refused whole.
        assert_eq!(
            d.write(0x1ff, &[7, 7], true, ms(0)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(d.read_holding(0x1ff, 1, ms(0)).unwrap(), [0]);
        // FC23 whose read is refused writes nothing either.
        let rw = Request::ReadWriteMultipleRegisters(0x100, 200, 0x100, vec![0xffff].into());
        assert_eq!(d.handle(&rw, ms(0)), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(d.read_holding(0x100, 1, ms(0)).unwrap(), [0]);
        let rw = Request::ReadWriteMultipleRegisters(0, 2, 0x100, vec![0x1234].into());
        assert!(matches!(
            d.handle(&rw, ms(0)),
            Ok(Response::ReadWriteMultipleRegisters(_))
        ));
        assert_eq!(d.read_holding(0x100, 1, ms(0)).unwrap(), [0x1234]);
        // A function the device lacks.
        assert_eq!(
            d.handle(&Request::ReadCoils(0, 1), ms(0)),
            Err(ExceptionCode::IllegalFunction)
        );
    }

    #[test]
    fn faults_show_in_status_and_output_and_reboots_lose_the_levels() {
        let p = profile("ns-led-v1");
        let loads = vec![
            Load {
                channels: 0..3,
                watts: 10.0,
            },
            Load {
                channels: 3..6,
                watts: 10.0,
            },
        ];
        let mut d = ModbusDevice::new(p, loads, ms(0));
        d.write(0, &[1], false, ms(0)).unwrap();
        d.write(0x100, &[0xffff, 0xffff, 0xffff], true, ms(0))
            .unwrap();
        d.faults.lamp_failed = vec![1];
        d.faults.over_temperature = true;
        assert_eq!(&d.output(ms(1))[..6], [255, 255, 255, 0, 0, 0]);
        // ns-led-v1 names bit 1 over-temperature and bit 2 lamp fault; 85.0 °C; channels
        // 4–6 (the second load) failed; firmware 1.2.
        assert_eq!(d.read_input(0, 1, ms(1)).unwrap(), [0b110]);
        assert_eq!(d.read_input(4, 2, ms(1)).unwrap(), [850, 0x0102]);
        assert_eq!(d.read_input(16, 1, ms(1)).unwrap(), [0b111000]);
        d.faults.output_short = true;
        assert_eq!(&d.output(ms(1))[..3], [0, 0, 0], "a shorted output is dark");
        assert_eq!(d.read_input(0, 1, ms(1)).unwrap(), [0b1110]);
        d.faults.output_short = false;
        d.reboot(ms(5000));
        assert_eq!(&d.output(ms(5001))[..3], [0, 0, 0]);
        assert_eq!(d.read_input(2, 2, ms(6000)).unwrap(), [0, 1]);
        assert_eq!(d.read_holding(0x100, 1, ms(6000)).unwrap(), [0]);
    }

    #[test]
    fn wb_style_units_take_no_more_than_their_registers_and_no_master() {
        let p = profile("wb-mrgbw-d");
        let mut d = ModbusDevice::new(p, vec![], ms(0));
        d.write(0, &[255, 128, 0, 64], true, ms(0)).unwrap();
        assert_eq!(d.output(ms(0)), [255, 128, 0, 64]);
        assert_eq!(
            d.write(0, &[1; 5], true, ms(0)),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(d.write(1, &[9], false, ms(0)), Ok(()));
        assert_eq!(
            d.write(4, &[9], false, ms(0)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        let mut no_fc16 = d.profile().clone();
        no_fc16.write.fc16 = false;
        let mut e = ModbusDevice::new(Arc::new(no_fc16), vec![], ms(0));
        assert_eq!(
            e.write(0, &[1, 2], true, ms(0)),
            Err(ExceptionCode::IllegalFunction)
        );
    }
}
