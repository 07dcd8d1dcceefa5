//! Modbus for LED controllers, under a controller profile: channel levels to holding-register
//! writes (packing, scaling, batching within the device's request size, FC16 or FC06 only),
//! the start-up sequence (fade, levels, master, enable), the fade register when the
//! controller fades, the reads of status, power, uptime and readback with their answers
//! decoded, and exception codes. Framing (MBAP, transaction ids) is tokio-modbus's: the
//! gateway is its client, the simulator its server; the PDUs here are for tests and tools.

use std::ops::Range;
use std::time::Duration;

use super::{DecodeError, be16, need};
use crate::addr::{RegisterAddr, RegisterTable};
use crate::model::{Pack, Power, Profile, StatusBit, Uptime, WordOrder};

/// A write request, as Modbus function 06 (one register) or 16 (several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    WriteSingle {
        register: RegisterAddr,
        value: u16,
    },
    WriteMultiple {
        start: RegisterAddr,
        values: Vec<u16>,
    },
}

impl Request {
    /// The protocol data unit (function code and data), as on the wire.
    pub fn pdu(&self) -> Vec<u8> {
        match self {
            Request::WriteSingle { register, value } => {
                let mut out = vec![0x06];
                out.extend_from_slice(&register.get().to_be_bytes());
                out.extend_from_slice(&value.to_be_bytes());
                out
            }
            Request::WriteMultiple { start, values } => {
                // Modbus carries at most 123 registers a write; more are not sent.
                let values = &values[..values.len().min(123)];
                let mut out = vec![0x10];
                out.extend_from_slice(&start.get().to_be_bytes());
                out.extend_from_slice(&(values.len() as u16).to_be_bytes());
                out.push((values.len() * 2) as u8);
                for v in values {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                out
            }
        }
    }

    /// Reads a write request PDU (what the simulator receives).
    pub fn from_pdu(b: &[u8]) -> Result<Request, DecodeError> {
        need(b, 5)?;
        match b[0] {
            0x06 => Ok(Request::WriteSingle {
                register: reg(be16(b, 1)),
                value: be16(b, 3),
            }),
            0x10 => {
                need(b, 6)?;
                let count = usize::from(be16(b, 3));
                if !(1..=123).contains(&count) {
                    return Err(DecodeError::OutOfRange {
                        field: "register count",
                        value: count as u32,
                        allowed: "1–123",
                    });
                }
                if usize::from(b[5]) != 2 * count {
                    return Err(DecodeError::Malformed(
                        "byte count is not twice the register count",
                    ));
                }
                need(b, 6 + 2 * count)?;
                let values = (0..count).map(|i| be16(b, 6 + 2 * i)).collect();
                Ok(Request::WriteMultiple {
                    start: reg(be16(b, 1)),
                    values,
                })
            }
            f => Err(DecodeError::Unsupported {
                what: "Modbus function",
                value: u32::from(f),
            }),
        }
    }

    pub fn registers(&self) -> std::ops::Range<u32> {
        match self {
            Request::WriteSingle { register, .. } => {
                u32::from(register.get())..u32::from(register.get()) + 1
            }
            Request::WriteMultiple { start, values } => {
                u32::from(start.get())..u32::from(start.get()) + values.len() as u32
            }
        }
    }
}

fn reg(v: u16) -> RegisterAddr {
    RegisterAddr::from_u16(v)
}

/// The values of the profile's level registers for `channels` (one byte a channel, as the
/// renderer writes them; missing channels are 0). Values are scaled to the profile's
/// full-output value and packed two to a register where the profile says so.
pub fn level_registers(profile: &Profile, channels: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    level_registers_into(profile, channels, &mut out);
    out
}

/// [`level_registers`] into a reused buffer.
pub fn level_registers_into(profile: &Profile, channels: &[u8], out: &mut Vec<u16>) {
    let levels = &profile.levels;
    let scale = |v: u8| ((u32::from(v) * levels.max + 127) / 255) as u16;
    let get = |k: usize| channels.get(k).copied().unwrap_or(0);
    let n = usize::from(levels.channels);
    out.clear();
    match levels.pack {
        None => out.extend((0..n).map(|k| scale(get(k)))),
        Some(pack) => out.extend((0..n.div_ceil(2)).map(|r| {
            let (first, second) = (scale(get(2 * r)), scale(get(2 * r + 1)));
            match pack {
                Pack::HighFirst => first << 8 | second,
                Pack::LowFirst => second << 8 | first,
            }
        })),
    }
}

/// Unchanged registers between two changed ones that are cheaper to write again than to
/// start another request for.
const GAP: usize = 2;

/// The requests that bring the device from `previous` (or an unknown state: write all) to
/// `next` level registers: changed runs, joined across small gaps, split at the device's
/// request size, one register each without FC16.
pub fn plan_writes(profile: &Profile, previous: Option<&[u16]>, next: &[u16]) -> Vec<Request> {
    let start = usize::from(profile.levels.start.get());
    let changed: Vec<bool> = match previous {
        Some(prev) if prev.len() == next.len() => {
            prev.iter().zip(next).map(|(a, b)| a != b).collect()
        }
        _ => vec![true; next.len()],
    };
    let mut runs: Vec<(usize, usize)> = Vec::new(); // [from, to)
    for (i, &c) in changed.iter().enumerate() {
        if !c {
            continue;
        }
        match runs.last_mut() {
            Some(last) if i <= last.1 + GAP => last.1 = i + 1,
            _ => runs.push((i, i + 1)),
        }
    }
    let max = if profile.write.fc16 {
        usize::from(profile.write.max_registers).max(1)
    } else {
        1
    };
    let mut out = Vec::new();
    for (from, to) in runs {
        let mut at = from;
        while at < to {
            let end = (at + max).min(to);
            let Ok(first) = RegisterAddr::new((start + at) as i64) else {
                break;
            };
            out.push(if end - at == 1 && !profile.write.fc16 {
                Request::WriteSingle {
                    register: first,
                    value: next[at],
                }
            } else {
                Request::WriteMultiple {
                    start: first,
                    values: next[at..end].to_vec(),
                }
            });
            at = end;
        }
    }
    out
}

fn words(values: &[u16], count: u8, order: WordOrder) -> Option<u32> {
    match (count, values) {
        (1, [v, ..]) => Some(u32::from(*v)),
        (2, [a, b, ..]) => Some(match order {
            WordOrder::Big => u32::from(*a) << 16 | u32::from(*b),
            WordOrder::Little => u32::from(*b) << 16 | u32::from(*a),
        }),
        _ => None,
    }
}

/// Power draw from the input registers starting at the profile's power register.
pub fn power_watts(power: &Power, order: WordOrder, values: &[u16]) -> Option<f64> {
    words(values, power.words, order).map(|raw| f64::from(raw) * power.watts_per_unit)
}

/// Uptime from the input registers starting at the profile's uptime register.
pub fn uptime(uptime: &Uptime, order: WordOrder, values: &[u16]) -> Option<Duration> {
    words(values, uptime.words, order)
        .map(|raw| Duration::from_secs_f64(f64::from(raw) * uptime.seconds_per_unit))
}

/// Whether the device restarted between two uptime readings (and so lost its levels and
/// needs every register written again).
pub fn rebooted(before: Duration, now: Duration) -> bool {
    now < before
}

/// A read request, as Modbus function 03 (holding registers) or 04 (input registers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub table: RegisterTable,
    pub start: RegisterAddr,
    pub count: u16,
}

/// Most registers one read may ask for (Modbus application protocol, FC03/FC04).
pub const MAX_READ: u16 = 125;

impl Read {
    pub fn function(&self) -> u8 {
        match self.table {
            RegisterTable::Holding => 0x03,
            RegisterTable::Input => 0x04,
        }
    }

    pub fn pdu(&self) -> Vec<u8> {
        let mut out = vec![self.function()];
        out.extend_from_slice(&self.start.get().to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out
    }

    /// Registers asked for, as 0-based addresses.
    pub fn registers(&self) -> Range<u32> {
        let start = u32::from(self.start.get());
        start..start + u32::from(self.count)
    }

    /// Reads the register values of this request's answer PDU (function code, byte count,
    /// values), or the controller's exception.
    pub fn answer(&self, pdu: &[u8]) -> Result<Vec<u16>, AnswerError> {
        need(pdu, 2)?;
        if pdu[0] == self.function() | 0x80 {
            return Err(AnswerError::Exception(Exception::from_code(pdu[1])));
        }
        if pdu[0] != self.function() {
            return Err(AnswerError::Mismatch(format!(
                "function {:#04x} answered a read with function {:#04x}",
                self.function(),
                pdu[0]
            )));
        }
        let bytes = usize::from(pdu[1]);
        if bytes != 2 * usize::from(self.count) {
            return Err(AnswerError::Mismatch(format!(
                "{} registers asked for, {bytes} bytes answered",
                self.count
            )));
        }
        need(pdu, 2 + bytes)?;
        Ok((0..usize::from(self.count))
            .map(|i| be16(pdu, 2 + 2 * i))
            .collect())
    }
}

/// A Modbus exception code, as a controller answers a request it refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exception {
    /// 01: the device does not implement the function (FC16 on a device without it).
    IllegalFunction,
    /// 02: the register is past the device's map.
    IllegalDataAddress,
    /// 03: a value or count the device refuses (too many registers in one request).
    IllegalDataValue,
    /// 04: the device failed while acting on the request.
    ServerDeviceFailure,
    /// 05: accepted, still working.
    Acknowledge,
    /// 06: busy with something else.
    ServerDeviceBusy,
    /// 0A: a Modbus TCP gateway has no path to the unit.
    GatewayPathUnavailable,
    /// 0B: the unit behind a Modbus TCP gateway did not answer.
    GatewayTargetNoResponse,
    Other(u8),
}

impl Exception {
    pub fn from_code(code: u8) -> Exception {
        match code {
            0x01 => Exception::IllegalFunction,
            0x02 => Exception::IllegalDataAddress,
            0x03 => Exception::IllegalDataValue,
            0x04 => Exception::ServerDeviceFailure,
            0x05 => Exception::Acknowledge,
            0x06 => Exception::ServerDeviceBusy,
            0x0a => Exception::GatewayPathUnavailable,
            0x0b => Exception::GatewayTargetNoResponse,
            other => Exception::Other(other),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Exception::IllegalFunction => 0x01,
            Exception::IllegalDataAddress => 0x02,
            Exception::IllegalDataValue => 0x03,
            Exception::ServerDeviceFailure => 0x04,
            Exception::Acknowledge => 0x05,
            Exception::ServerDeviceBusy => 0x06,
            Exception::GatewayPathUnavailable => 0x0a,
            Exception::GatewayTargetNoResponse => 0x0b,
            Exception::Other(code) => code,
        }
    }

    /// Whether trying the same request again later can succeed. The others mean the profile
    /// does not match the device: retrying cannot help, the profile must be fixed.
    pub fn transient(self) -> bool {
        matches!(
            self,
            Exception::ServerDeviceFailure
                | Exception::Acknowledge
                | Exception::ServerDeviceBusy
                | Exception::GatewayPathUnavailable
                | Exception::GatewayTargetNoResponse
        )
    }
}

impl std::fmt::Display for Exception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Exception::IllegalFunction => "illegal function: the device lacks this function code",
            Exception::IllegalDataAddress => {
                "illegal data address: the register is not in the device's map"
            }
            Exception::IllegalDataValue => {
                "illegal data value: the device refuses the value or register count"
            }
            Exception::ServerDeviceFailure => "server device failure",
            Exception::Acknowledge => "acknowledge: the device is still working on it",
            Exception::ServerDeviceBusy => "server device busy",
            Exception::GatewayPathUnavailable => "gateway path unavailable",
            Exception::GatewayTargetNoResponse => "gateway target device failed to respond",
            Exception::Other(_) => "unknown exception",
        };
        write!(f, "exception {:02x} ({what})", self.code())
    }
}

/// Why an answer could not be used. An exception is the controller saying no; the others
/// mean the answer is not one to this request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the controller answered {0}")]
    Exception(Exception),
    #[error("answer does not match the request: {0}")]
    Mismatch(String),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Reads a write request's answer PDU: an echo of the function code (and, for FC06 and
/// FC16, of the address), or the controller's exception.
pub fn write_answer(request: &Request, pdu: &[u8]) -> Result<(), AnswerError> {
    // FC06 echoes register and value; FC16 echoes start and count.
    let (function, first, second) = match request {
        Request::WriteSingle { register, value } => (0x06, register.get(), *value),
        Request::WriteMultiple { start, values } => {
            (0x10, start.get(), values.len().min(123) as u16)
        }
    };
    need(pdu, 2)?;
    if pdu[0] == function | 0x80 {
        return Err(AnswerError::Exception(Exception::from_code(pdu[1])));
    }
    need(pdu, 5)?;
    let echo = (pdu[0], be16(pdu, 1), be16(pdu, 3));
    if echo != (function, first, second) {
        return Err(AnswerError::Mismatch(format!(
            "function {function:#04x} for register {first} ({second}) answered with {:#04x} for {} ({})",
            echo.0, echo.1, echo.2
        )));
    }
    Ok(())
}

/// What a controller's status register says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub raw: u16,
    /// The faults the profile names for the set bits; bits it does not name are in
    /// `unnamed`.
    pub faults: Vec<StatusBit>,
    pub unnamed: u16,
}

impl Status {
    /// No named fault and no unnamed bit set (bits the profile marks `unused` do not count).
    pub fn ok(&self) -> bool {
        self.faults.is_empty() && self.unnamed == 0
    }
}

/// Reads the status register under the profile's bit names.
pub fn status(bits: &[StatusBit], raw: u16) -> Status {
    let mut faults = Vec::new();
    let mut unnamed = 0;
    for bit in 0..16 {
        if raw & (1 << bit) == 0 {
            continue;
        }
        match bits.get(bit) {
            Some(StatusBit::Unused) => {}
            Some(b) => faults.push(*b),
            None => unnamed |= 1 << bit,
        }
    }
    Status {
        raw,
        faults,
        unnamed,
    }
}

/// What one poll of a controller asks for, and which reading each answer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub reads: Vec<Read>,
}

/// The readings of one poll, decoded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Readings {
    pub status: Option<Status>,
    pub power_w: Option<f64>,
    pub uptime: Option<Duration>,
    pub temperature_c: Option<f64>,
    /// `(major, minor)`.
    pub firmware: Option<(u8, u8)>,
    /// Channels (1-based) whose output the device reports failed.
    pub failed_channels: Option<Vec<u16>>,
    /// The levels the device says it outputs, one byte a channel, as the gateway writes them.
    pub readback: Option<Vec<u8>>,
}

impl Poll {
    /// The reads that cover the profile's readings: status, power, uptime, temperature and
    /// firmware (neighbours joined into one request, a reading never split between two), the
    /// failed-output bitmap, and (when `readback`) the readback registers, those two in
    /// requests of at most [`MAX_READ`] registers.
    pub fn new(profile: &Profile, readback: bool) -> Poll {
        let input = RegisterTable::Input;
        let mut wanted: Vec<(RegisterTable, u32, u32)> = Vec::new();
        let mut one = |register: RegisterAddr, words: u8| {
            wanted.push((input, u32::from(register.get()), u32::from(words)));
        };
        if let Some(s) = &profile.status {
            one(s.register, 1);
        }
        if let Some(p) = &profile.power {
            one(p.register, p.words);
        }
        if let Some(u) = &profile.uptime {
            one(u.register, u.words);
        }
        if let Some(t) = &profile.temperature {
            one(t.register, 1);
        }
        if let Some(f) = profile.firmware {
            one(f, 1);
        }
        wanted.sort();
        // Join what touches or overlaps in one table.
        let mut joined: Vec<(RegisterTable, u32, u32)> = Vec::new();
        for (table, start, count) in wanted {
            match joined.last_mut() {
                Some((t, s, c)) if *t == table && start <= *s + *c => {
                    *c = (*c).max(start + count - *s);
                }
                _ => joined.push((table, start, count)),
            }
        }
        let mut reads: Vec<Read> = joined
            .into_iter()
            .filter(|(_, start, count)| start + count <= 0x1_0000)
            .map(|(table, start, count)| Read {
                table,
                start: RegisterAddr::from_u16(start as u16),
                count: count.min(u32::from(MAX_READ)) as u16,
            })
            .collect();
        if let Some(first) = profile.lamp_faults {
            span_reads(&mut reads, input, first, lamp_words(profile));
        }
        if readback && let Some(r) = &profile.readback {
            span_reads(
                &mut reads,
                r.table,
                r.start,
                profile.level_registers().len() as u32,
            );
        }
        Poll { reads }
    }

    /// `words` registers of `table` from `first`, as the answers in order hold them.
    fn span(
        &self,
        answers: &[Option<Vec<u16>>],
        table: RegisterTable,
        first: u32,
        words: u32,
    ) -> Option<Vec<u16>> {
        let mut values = Vec::with_capacity(words as usize);
        for (read, answer) in self.reads.iter().zip(answers) {
            let regs = read.registers();
            if read.table != table || regs.end <= first || regs.start >= first + words {
                continue;
            }
            let a = answer.as_ref().filter(|a| a.len() == regs.len())?;
            let from = first.max(regs.start);
            let to = (first + words).min(regs.end);
            values.extend_from_slice(&a[(from - regs.start) as usize..(to - regs.start) as usize]);
        }
        (values.len() == words as usize).then_some(values)
    }

    /// Decodes the answers, one per read in order (a read that failed is `None`, and the
    /// readings it carried stay unknown).
    pub fn readings(&self, profile: &Profile, answers: &[Option<Vec<u16>>]) -> Readings {
        let input = RegisterTable::Input;
        let at = |register: RegisterAddr, words: u8| {
            self.span(answers, input, u32::from(register.get()), u32::from(words))
        };
        let status_bits = profile.status.as_ref().map_or(&[][..], |s| &s.bits[..]);
        Readings {
            status: profile
                .status
                .as_ref()
                .and_then(|s| at(s.register, 1).map(|v| status(status_bits, v[0]))),
            power_w: profile.power.as_ref().and_then(|p| {
                at(p.register, p.words).and_then(|v| power_watts(p, profile.word_order, &v))
            }),
            uptime: profile.uptime.as_ref().and_then(|u| {
                at(u.register, u.words).and_then(|v| uptime(u, profile.word_order, &v))
            }),
            temperature_c: profile.temperature.as_ref().and_then(|t| {
                at(t.register, 1).map(|v| f64::from(v[0] as i16) * t.degrees_per_unit)
            }),
            firmware: profile
                .firmware
                .and_then(|f| at(f, 1).map(|v| ((v[0] >> 8) as u8, v[0] as u8))),
            failed_channels: profile.lamp_faults.and_then(|f| {
                let words = self.span(answers, input, u32::from(f.get()), lamp_words(profile))?;
                Some(failed_channels(&words, profile.levels.channels))
            }),
            readback: profile.readback.as_ref().and_then(|r| {
                let count = profile.level_registers().len() as u32;
                self.span(answers, r.table, u32::from(r.start.get()), count)
                    .map(|v| channels_from_registers(profile, &v))
            }),
        }
    }
}

/// Registers the failed-output bitmap of a profile takes: one bit a channel.
pub fn lamp_words(profile: &Profile) -> u32 {
    u32::from(profile.levels.channels).div_ceil(16)
}

/// The channels (1-based, at most `channels`) whose bits are set.
pub fn failed_channels(words: &[u16], channels: u16) -> Vec<u16> {
    (0..channels)
        .filter(|k| {
            words
                .get(usize::from(k / 16))
                .is_some_and(|w| w & (1 << (k % 16)) != 0)
        })
        .map(|k| k + 1)
        .collect()
}

/// Reads of `words` registers from `first`, at most [`MAX_READ`] each.
fn span_reads(reads: &mut Vec<Read>, table: RegisterTable, first: RegisterAddr, words: u32) {
    let start = u32::from(first.get());
    let mut at = start;
    while at < (start + words).min(0x1_0000) {
        let n = (start + words - at)
            .min(u32::from(MAX_READ))
            .min(0x1_0000 - at);
        reads.push(Read {
            table,
            start: RegisterAddr::from_u16(at as u16),
            count: n as u16,
        });
        at += n;
    }
}

/// The channel bytes (as the gateway writes them) that level register values stand for: the
/// inverse of [`level_registers`], for the simulator and for readback.
pub fn channels_from_registers(profile: &Profile, registers: &[u16]) -> Vec<u8> {
    let levels = &profile.levels;
    let max = levels.max.max(1);
    let unscale = |v: u16| ((u32::from(v).min(max) * 255 + max / 2) / max) as u8;
    let n = usize::from(levels.channels);
    let reg = |r: usize| registers.get(r).copied().unwrap_or(0);
    (0..n)
        .map(|k| match levels.pack {
            None => unscale(reg(k)),
            Some(pack) => {
                let v = reg(k / 2);
                let high = matches!(
                    (pack, k % 2 == 0),
                    (Pack::HighFirst, true) | (Pack::LowFirst, false)
                );
                let byte = if high { v >> 8 } else { v & 0xff };
                unscale(byte)
            }
        })
        .collect()
}

/// Who fades on a Modbus controller: the gateway (frames every tick; the controller's fade
/// register is held at 0) or the controller (the gateway writes the fade time, then the
/// target levels once).
pub fn fade_value(profile: &Profile, fade: Duration) -> Option<(RegisterAddr, u16)> {
    let f = profile.fade?;
    let units = (fade.as_secs_f64() / f.unit.as_secs_f64()).round();
    Some((f.register, units.clamp(0.0, f64::from(f.max)) as u16))
}

/// The longest fade the controller can make itself (none without a fade register).
pub fn longest_fade(profile: &Profile) -> Option<Duration> {
    profile.fade.map(|f| f.unit * u32::from(f.max))
}

/// One register write as the profile allows it: FC16 where the device takes it, FC06 where
/// it does not.
pub fn write_one(profile: &Profile, register: RegisterAddr, value: u16) -> Request {
    if profile.write.fc16 {
        Request::WriteMultiple {
            start: register,
            values: vec![value],
        }
    } else {
        Request::WriteSingle { register, value }
    }
}

/// The write that sets the controller's fade register to `fade` (when it has one).
pub fn fade_write(profile: &Profile, fade: Duration) -> Option<Request> {
    fade_value(profile, fade).map(|(register, value)| write_one(profile, register, value))
}

/// The writes a gateway sends to a controller it has just connected to (or that rebooted):
/// the fade time (0 when the gateway fades), every level register, the master dimmer at
/// full, and the enable switch last, so the controller switches on to the intended look
/// rather than whatever it held.
pub fn start_up(
    profile: &Profile,
    controller_fade: Option<Duration>,
    levels: &[u16],
) -> Vec<Request> {
    let mut out = Vec::new();
    out.extend(fade_write(
        profile,
        controller_fade.unwrap_or(Duration::ZERO),
    ));
    out.extend(plan_writes(profile, None, levels));
    if let Some(m) = profile.master {
        out.push(write_one(profile, m.register, m.max));
    }
    if let Some(e) = profile.enable {
        out.push(write_one(profile, e.register, e.on));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::show::{SourceFile, check};

    fn profile(name: &str) -> Profile {
        let text = match name {
            "ns-led-v1" => include_str!("../../../scenes/profiles/ns-led-v1.toml"),
            "pxm-px333" => include_str!("../../../scenes/profiles/pxm-px333.toml"),
            _ => include_str!("../../../scenes/profiles/wb-mrgbw-d.toml"),
        };
        let checked = check(&[SourceFile {
            path: format!("profiles/{name}.toml"),
            text: text.into(),
        }]);
        checked.library.profiles.into_values().next().unwrap()
    }

    #[test]
    fn packed_levels_and_their_fc16_bytes() {
        let p = profile("ns-led-v1");
        let regs = level_registers(&p, &[0x12, 0x34, 0x56]);
        assert_eq!(regs.len(), 256);
        assert_eq!(&regs[..3], &[0x1234, 0x5600, 0x0000]);
        let writes = plan_writes(&p, None, &regs);
        assert_eq!(writes.len(), 3, "256 registers in requests of at most 120");
        assert_eq!(
            writes
                .iter()
                .map(|w| w.registers().len())
                .collect::<Vec<_>>(),
            [120, 120, 16]
        );
        // FC16 to 0x0100, 120 registers (0x78), 240 bytes (0xf0), then 0x1234 0x5600 …
        let pdu = writes[0].pdu();
        assert_eq!(
            &pdu[..10],
            &[0x10, 0x01, 0x00, 0x00, 0x78, 0xf0, 0x12, 0x34, 0x56, 0x00]
        );
        assert_eq!(Request::from_pdu(&pdu).unwrap(), writes[0]);
    }

    #[test]
    fn only_changes_are_written_joined_over_small_gaps() {
        let p = profile("pxm-px333");
        let before = level_registers(&p, &[0; 512]);
        let mut channels = [0u8; 512];
        channels[0] = 255;
        channels[2] = 10; // one unchanged register between: joined
        channels[100] = 7; // far: its own request
        let after = level_registers(&p, &channels);
        let writes = plan_writes(&p, Some(&before), &after);
        assert_eq!(
            writes,
            [
                Request::WriteMultiple {
                    start: RegisterAddr::new(0).unwrap(),
                    values: vec![255, 0, 10]
                },
                Request::WriteMultiple {
                    start: RegisterAddr::new(100).unwrap(),
                    values: vec![7]
                },
            ]
        );
        assert!(plan_writes(&p, Some(&after), &after).is_empty());
    }

    #[test]
    fn without_fc16_every_register_is_an_fc06() {
        let mut p = profile("wb-mrgbw-d");
        p.write.fc16 = false;
        p.write.max_registers = 1;
        let writes = plan_writes(&p, None, &level_registers(&p, &[1, 2, 3, 4]));
        assert_eq!(writes.len(), 4);
        assert_eq!(writes[2].pdu(), [0x06, 0x00, 0x02, 0x00, 0x03]);
        assert_eq!(
            Request::from_pdu(&[0x06, 0x00, 0x02, 0x00, 0x03]).unwrap(),
            writes[2]
        );
    }

    #[test]
    fn uptime_power_and_reboots() {
        let p = profile("ns-led-v1");
        let up = uptime(&p.uptime.unwrap(), p.word_order, &[0x0001, 0x0002]).unwrap();
        assert_eq!(up, Duration::from_secs(65538));
        assert_eq!(
            uptime(&p.uptime.unwrap(), WordOrder::Little, &[0x0001, 0x0002]).unwrap(),
            Duration::from_secs(0x0002_0001)
        );
        assert_eq!(
            power_watts(&p.power.unwrap(), p.word_order, &[1234]),
            Some(123.4)
        );
        assert!(
            uptime(&p.uptime.unwrap(), p.word_order, &[1]).is_none(),
            "too few registers"
        );
        assert!(rebooted(Duration::from_secs(100), Duration::from_secs(3)));
        assert!(!rebooted(
            Duration::from_secs(100),
            Duration::from_secs(101)
        ));
    }

    #[test]
    fn bad_pdus_are_typed_errors() {
        assert!(matches!(
            Request::from_pdu(&[0x10, 0, 0, 0, 2, 3, 0, 0, 0]),
            Err(DecodeError::OutOfRange { .. } | DecodeError::Malformed(_))
        ));
        assert!(matches!(
            Request::from_pdu(&[0x10, 0, 0, 0, 2, 4, 0, 0]),
            Err(DecodeError::TooShort { .. })
        ));
        assert!(matches!(
            Request::from_pdu(&[0x03, 0, 0, 0, 1]),
            Err(DecodeError::Unsupported { .. })
        ));
        assert!(matches!(
            Request::from_pdu(&[0x06]),
            Err(DecodeError::TooShort { .. })
        ));
    }

    /// The bytes of a run of FC16 requests, each as (start register, values).
    fn fc16(start: u16, values: &[u16]) -> Vec<u8> {
        let mut out = vec![0x10];
        out.extend_from_slice(&start.to_be_bytes());
        out.extend_from_slice(&(values.len() as u16).to_be_bytes());
        out.push((values.len() * 2) as u8);
        for v in values {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    #[test]
    fn ns_led_v1_start_up_bytes() {
        // Profile: fade at holding 2 (10 ms units), levels from 0x0100 packed high-first,
        // 512 channels = 256 registers, at most 120 a request; master at 1 (max 255);
        // enable at 0 (on = 1). The gateway fades, so the controller's fade is set to 0.
        let p = profile("ns-led-v1");
        let mut channels = [0u8; 512];
        channels[..3].copy_from_slice(&[0xff, 0x80, 0x40]);
        let levels = level_registers(&p, &channels);
        let pdus: Vec<Vec<u8>> = start_up(&p, None, &levels)
            .iter()
            .map(Request::pdu)
            .collect();
        assert_eq!(pdus.len(), 6);
        assert_eq!(pdus[0], [0x10, 0x00, 0x02, 0x00, 0x01, 0x02, 0x00, 0x00]);
        assert_eq!(
            &pdus[1][..10],
            [0x10, 0x01, 0x00, 0x00, 0x78, 0xf0, 0xff, 0x80, 0x40, 0x00]
        );
        assert_eq!(pdus[1].len(), 6 + 240);
        assert_eq!(&pdus[2][..6], [0x10, 0x01, 0x78, 0x00, 0x78, 0xf0]);
        assert_eq!(pdus[3], fc16(0x01f0, &[0; 16]));
        assert_eq!(pdus[4], [0x10, 0x00, 0x01, 0x00, 0x01, 0x02, 0x00, 0xff]);
        assert_eq!(pdus[5], [0x10, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x01]);
        // When the controller fades, 1.5 s is 150 units of 10 ms.
        let fading = start_up(&p, Some(Duration::from_millis(1500)), &levels);
        assert_eq!(
            fading[0].pdu(),
            [0x10, 0x00, 0x02, 0x00, 0x01, 0x02, 0x00, 0x96]
        );
        // …and past its maximum (6000 units, 60 s) it is held at the maximum.
        assert_eq!(
            fade_value(&p, Duration::from_secs(90)),
            Some((RegisterAddr::new(2).unwrap(), 6000))
        );
    }

    #[test]
    fn pxm_px333_start_up_bytes() {
        // No fade, master or enable: only the 512 level registers from 0x0000, one channel
        // each, 0–255, in requests of at most 64.
        let p = profile("pxm-px333");
        let mut channels = [0u8; 512];
        channels[0] = 0xff;
        channels[511] = 0x11;
        let writes = start_up(&p, None, &level_registers(&p, &channels));
        assert_eq!(writes.len(), 8);
        let first = writes[0].pdu();
        assert_eq!(
            &first[..8],
            [0x10, 0x00, 0x00, 0x00, 0x40, 0x80, 0x00, 0xff]
        );
        let last = writes[7].pdu();
        assert_eq!(&last[..6], [0x10, 0x01, 0xc0, 0x00, 0x40, 0x80]);
        assert_eq!(&last[last.len() - 2..], [0x00, 0x11]);
    }

    #[test]
    fn wb_mrgbw_d_start_up_bytes() {
        // Fade at holding 13 in 10 ms units (max 255), four levels from holding 0.
        let p = profile("wb-mrgbw-d");
        let levels = level_registers(&p, &[0xff, 0x80, 0x00, 0x40]);
        let pdus: Vec<Vec<u8>> = start_up(&p, Some(Duration::from_secs(2)), &levels)
            .iter()
            .map(Request::pdu)
            .collect();
        assert_eq!(
            pdus,
            [
                vec![0x10, 0x00, 0x0d, 0x00, 0x01, 0x02, 0x00, 0xc8],
                vec![
                    0x10, 0x00, 0x00, 0x00, 0x04, 0x08, 0x00, 0xff, 0x00, 0x80, 0x00, 0x00, 0x00,
                    0x40
                ],
            ]
        );
        // Five seconds is past the register's 2.55 s: held at 255.
        assert_eq!(fade_value(&p, Duration::from_secs(5)).unwrap().1, 255);
    }

    #[test]
    fn ns_led_v1_poll_and_its_answers() {
        let p = profile("ns-led-v1");
        let poll = Poll::new(&p, false);
        // Status (input 0), power (1), uptime (2–3), temperature (4) and firmware (5) in one
        // FC04; the failed-output bitmap (16–47) in another.
        assert_eq!(poll.reads.len(), 2);
        assert_eq!(poll.reads[0].pdu(), [0x04, 0x00, 0x00, 0x00, 0x06]);
        assert_eq!(poll.reads[1].pdu(), [0x04, 0x00, 0x10, 0x00, 0x20]);
        let answer = [
            0x04, 0x0c, 0x00, 0x05, 0x04, 0xd2, 0x00, 0x01, 0x00, 0x02, 0xff, 0x9c, 0x01, 0x02,
        ];
        let values = poll.reads[0].answer(&answer).unwrap();
        let mut bitmap = vec![0u16; 32];
        bitmap[0] = 0b101; // channels 1 and 3
        bitmap[31] = 0x8000; // channel 512
        let r = poll.readings(&p, &[Some(values), Some(bitmap)]);
        assert_eq!(r.temperature_c, Some(-10.0));
        assert_eq!(r.firmware, Some((1, 2)));
        assert_eq!(r.failed_channels.as_deref(), Some(&[1, 3, 512][..]));
        let status = r.status.unwrap();
        assert_eq!(
            status.faults,
            [StatusBit::OutputFault, StatusBit::LampFault]
        );
        assert!(!status.ok());
        assert_eq!(r.power_w, Some(123.4));
        assert_eq!(r.uptime, Some(Duration::from_secs(65538)));
        // Bits marked unused are not faults; bits the profile does not name are kept apart.
        let quiet = super::status(&[StatusBit::Unused, StatusBit::LampFault], 0b0101);
        assert_eq!(quiet.faults, []);
        assert_eq!(quiet.unnamed, 0b0100);
        assert!(!quiet.ok());
        assert!(super::status(&[StatusBit::Unused], 1).ok());
        // A failed read leaves its readings unknown.
        assert_eq!(poll.readings(&p, &[None, None]), Readings::default());
        // Exceptions are told apart from garbage.
        assert_eq!(
            poll.reads[0].answer(&[0x84, 0x02]),
            Err(AnswerError::Exception(Exception::IllegalDataAddress))
        );
        assert!(matches!(
            poll.reads[0].answer(&[0x04, 0x06, 0, 0, 0, 0, 0, 0]),
            Err(AnswerError::Mismatch(_))
        ));
        assert!(matches!(
            poll.reads[0].answer(&[0x04, 0x0c, 0, 0]),
            Err(AnswerError::Decode(DecodeError::TooShort { .. }))
        ));
    }

    #[test]
    fn readback_spans_reads_and_gives_the_channels_back() {
        let p = profile("pxm-px333");
        let poll = Poll::new(&p, true);
        // 512 holding registers from 0x2000, at most 125 a request.
        assert_eq!(poll.reads.len(), 5);
        assert_eq!(poll.reads[1].pdu(), [0x03, 0x20, 0x7d, 0x00, 0x7d]);
        assert_eq!(poll.reads[4].count, 12);
        let channels: Vec<u8> = (0..512).map(|k| (k * 7 % 256) as u8).collect();
        let regs = level_registers(&p, &channels);
        let answers: Vec<Option<Vec<u16>>> = regs.chunks(125).map(|c| Some(c.to_vec())).collect();
        let r = poll.readings(&p, &answers);
        assert_eq!(r.readback.as_deref(), Some(&channels[..]));
        // Packed and scaled profiles invert too.
        let ns = profile("ns-led-v1");
        let regs = level_registers(&ns, &channels);
        assert_eq!(channels_from_registers(&ns, &regs), channels);
        // The WB's uptime is input 104–105, read whole even when the device writes one
        // register at a time.
        let mut wb = profile("wb-mrgbw-d");
        wb.write.fc16 = false;
        wb.write.max_registers = 1;
        let poll = Poll::new(&wb, false);
        assert_eq!(poll.reads.len(), 1);
        assert_eq!(poll.reads[0].pdu(), [0x04, 0x00, 0x68, 0x00, 0x02]);
        let r = poll.readings(&wb, &[Some(vec![0, 90])]);
        assert_eq!(r.uptime, Some(Duration::from_secs(90)));
    }

    #[test]
    fn exceptions_and_write_answers() {
        for code in 0..=255u8 {
            assert_eq!(Exception::from_code(code).code(), code);
        }
        assert!(!Exception::IllegalFunction.transient());
        assert!(Exception::ServerDeviceBusy.transient());
        assert_eq!(
            Exception::IllegalDataValue.to_string(),
            "exception 03 (illegal data value: the device refuses the value or register count)"
        );
        let w = Request::WriteSingle {
            register: RegisterAddr::new(13).unwrap(),
            value: 200,
        };
        assert_eq!(write_answer(&w, &[0x06, 0x00, 0x0d, 0x00, 0xc8]), Ok(()));
        assert!(matches!(
            write_answer(&w, &[0x06, 0x00, 0x0d, 0x00, 0xc9]),
            Err(AnswerError::Mismatch(_))
        ));
        let m = Request::WriteMultiple {
            start: RegisterAddr::new(256).unwrap(),
            values: vec![0; 120],
        };
        assert_eq!(write_answer(&m, &[0x10, 0x01, 0x00, 0x00, 0x78]), Ok(()));
        assert!(matches!(
            write_answer(&m, &[0x10, 0x01, 0x00, 0x00, 0x77]),
            Err(AnswerError::Mismatch(_))
        ));
        assert_eq!(
            write_answer(&w, &[0x86, 0x01]),
            Err(AnswerError::Exception(Exception::IllegalFunction))
        );
        assert!(matches!(
            write_answer(&w, &[0x06, 0x00, 0x0e, 0x00, 0xc8]),
            Err(AnswerError::Mismatch(_))
        ));
    }
}
