//! Modbus for LED controllers: channel levels to holding-register writes under a controller
//! profile (packing, scaling, batching within the device's limits), the request PDUs, and the
//! profile's readings (status, power, uptime).

use std::time::Duration;

use super::{DecodeError, be16, need};
use crate::addr::RegisterAddr;
use crate::model::{Pack, Power, Profile, Uptime, WordOrder};

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
                if !(1..=123).contains(&count) || usize::from(b[5]) != 2 * count {
                    return Err(DecodeError::Invalid(format!(
                        "write of {count} registers with {} data bytes",
                        b[5]
                    )));
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
    let levels = &profile.levels;
    let scale = |v: u8| ((u32::from(v) * levels.max + 127) / 255) as u16;
    let get = |k: usize| channels.get(k).copied().unwrap_or(0);
    let n = usize::from(levels.channels);
    match levels.pack {
        None => (0..n).map(|k| scale(get(k))).collect(),
        Some(pack) => (0..n.div_ceil(2))
            .map(|r| {
                let (first, second) = (scale(get(2 * r)), scale(get(2 * r + 1)));
                match pack {
                    Pack::HighFirst => first << 8 | second,
                    Pack::LowFirst => second << 8 | first,
                }
            })
            .collect(),
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
            Err(DecodeError::Invalid(_))
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
}
