//! The library-wide tables a site is checked against: the zone table (`zones.toml`) and the
//! Modbus controller profiles (`profiles/<id>.toml`).

use std::time::Duration;

use super::values::{curfew, in_range, int_in, name, register, root};
use crate::addr::RegisterTable;
use crate::diag::{Code, FieldPath};
use crate::model::{
    Bits, Enable, Fade, Levels, LightZone, Master, Pack, Power, Profile, ProfileId, Readback,
    StatusBit, StatusRegister, Temperature, Uptime, WordOrder, WritePolicy, ZoneRule, ZoneTable,
};
use crate::show::Problems;
use crate::show::file::{
    PackFile, ProfileFile, StatusBitFile, TableFile, WordOrderFile, ZonesFile,
};

pub(in crate::show) fn zones(file: ZonesFile, p: &mut Problems) -> Option<ZoneTable> {
    if file.source.trim().is_empty() {
        p.error(
            Code::Missing,
            &root().key("source"),
            "say where the zone figures come from",
        );
    }
    let minutes = |value: i64, key: &str, p: &mut Problems| {
        int_in::<u64>(value, 0, 240, &root().key(key), key, p).map(|m| Duration::from_secs(m * 60))
    };
    let after = minutes(file.applies_after_sunset_min, "applies_after_sunset_min", p);
    let before = minutes(
        file.applies_before_sunrise_min,
        "applies_before_sunrise_min",
        p,
    );
    let mut rules: Vec<ZoneRule> = Vec::new();
    for (i, z) in file.zones.into_iter().enumerate() {
        let path = root().key("zones").index(i);
        let Some(zone) = LightZone::new(z.zone) else {
            p.error(
                Code::OutOfRange,
                &path.key("zone"),
                format!("zone {} does not exist; zones are 1 to 4", z.zone),
            );
            continue;
        };
        if rules.iter().any(|r| r.zone == zone) {
            p.error(
                Code::DuplicateId,
                &path.key("zone"),
                format!("zone {} is listed twice", z.zone),
            );
            continue;
        }
        let avg_ok = in_range(
            z.decorative_avg_cd_m2,
            0.0,
            10_000.0,
            &path.key("decorative_avg_cd_m2"),
            "the average luminance",
            p,
        );
        let max_ok = in_range(
            z.decorative_max_cd_m2,
            0.0,
            10_000.0,
            &path.key("decorative_max_cd_m2"),
            "the maximum luminance",
            p,
        );
        if avg_ok && max_ok && z.decorative_avg_cd_m2 > z.decorative_max_cd_m2 {
            p.error(
                Code::Conflict,
                &path.key("decorative_avg_cd_m2"),
                "the average luminance is above the maximum",
            );
        }
        let name = name(z.name, &path.key("name"), p);
        if let Some(curfew) = curfew(&z.curfew, &path.key("curfew"), p) {
            rules.push(ZoneRule {
                zone,
                name,
                avg_cd_m2: z.decorative_avg_cd_m2,
                max_cd_m2: z.decorative_max_cd_m2,
                curfew,
            });
        }
    }
    for zone in 1..=4 {
        if !rules.iter().any(|r| i64::from(r.zone.get()) == zone) && !p.has_errors() {
            p.error(
                Code::Missing,
                &root().key("zones"),
                format!("zone {zone} is missing; the table must give zones 1 to 4"),
            );
        }
    }
    rules.sort_by_key(|r| r.zone);
    if p.has_errors() {
        return None;
    }
    Some(ZoneTable {
        source: file.source,
        applies_after_sunset: after?,
        applies_before_sunrise: before?,
        zones: rules,
    })
}

pub(in crate::show) fn profile(
    id: ProfileId,
    file: ProfileFile,
    p: &mut Problems,
) -> Option<Profile> {
    let holding = RegisterTable::Holding;
    let input = RegisterTable::Input;
    let lv = root().key("levels");
    let start = register(&file.levels.start, holding, &lv.key("start"), p);
    let channels = int_in::<u16>(
        file.levels.channels,
        1,
        4096,
        &lv.key("channels"),
        "channels",
        p,
    );
    let bits = match file.levels.bits {
        8 => Some(Bits::Eight),
        16 => Some(Bits::Sixteen),
        other => {
            p.error(
                Code::OutOfRange,
                &lv.key("bits"),
                format!("bits is {other}; a channel value is 8 or 16 bits"),
            );
            None
        }
    };
    let pack = file.levels.pack.map(|pack| match pack {
        PackFile::HighFirst => Pack::HighFirst,
        PackFile::LowFirst => Pack::LowFirst,
    });
    if pack.is_some() && bits == Some(Bits::Sixteen) {
        p.error(
            Code::Conflict,
            &lv.key("pack"),
            "two channels fit in one register only at 8 bits",
        );
    }
    let full = if bits == Some(Bits::Sixteen) {
        65535
    } else {
        255
    };
    let value_max = if pack.is_some() { 255 } else { 65535 };
    let max = match file.levels.max {
        None => Some(full),
        Some(m) => int_in::<u32>(m, 1, value_max, &lv.key("max"), "the full-output value", p),
    };

    let wr = root().key("write");
    let max_registers = int_in::<u16>(
        file.write.max_registers,
        1,
        123,
        &wr.key("max_registers"),
        "max_registers",
        p,
    );
    if !file.write.fc16 && file.write.max_registers > 1 {
        p.error(
            Code::Conflict,
            &wr.key("max_registers"),
            "without FC16 every write is one register (FC06); set max_registers = 1",
        );
    }
    let min_interval = int_in::<u64>(
        file.write.min_interval_ms.unwrap_or(0),
        0,
        60_000,
        &wr.key("min_interval_ms"),
        "min_interval_ms",
        p,
    )
    .map(Duration::from_millis);
    let refresh = int_in::<u64>(
        file.write.refresh_s.unwrap_or(0),
        0,
        3600,
        &wr.key("refresh_s"),
        "refresh_s",
        p,
    )
    .map(|s| (s > 0).then(|| Duration::from_secs(s)));

    let u16_value = |v: i64, path: &FieldPath, what: &str, p: &mut Problems| {
        int_in::<u16>(v, 0, 65535, path, what, p)
    };
    let enable = file.enable.as_ref().and_then(|e| {
        let path = root().key("enable");
        Some(Enable {
            register: register(&e.register, holding, &path.key("register"), p)?,
            on: u16_value(e.on, &path.key("on"), "on", p)?,
            off: u16_value(e.off.unwrap_or(0), &path.key("off"), "off", p)?,
        })
    });
    let master = file.master.as_ref().and_then(|m| {
        let path = root().key("master");
        Some(Master {
            register: register(&m.register, holding, &path.key("register"), p)?,
            max: int_in(m.max, 1, 65535, &path.key("max"), "max", p)?,
        })
    });
    let fade = file.fade.as_ref().and_then(|f| {
        let path = root().key("fade");
        Some(Fade {
            register: register(&f.register, holding, &path.key("register"), p)?,
            unit: Duration::from_millis(int_in(
                f.unit_ms,
                1,
                60_000,
                &path.key("unit_ms"),
                "unit_ms",
                p,
            )?),
            max: int_in(f.max, 1, 65535, &path.key("max"), "max", p)?,
        })
    });
    let status = file.status.as_ref().and_then(|s| {
        let path = root().key("status");
        let bits = s.bits.clone().unwrap_or_default();
        if bits.len() > 16 {
            p.error(
                Code::OutOfRange,
                &path.key("bits"),
                format!(
                    "{} bits named; a register has 16 (name bits from 0 up)",
                    bits.len()
                ),
            );
        }
        Some(StatusRegister {
            register: register(&s.register, input, &path.key("register"), p)?,
            bits: bits
                .into_iter()
                .take(16)
                .map(|b| match b {
                    StatusBitFile::OutputFault => StatusBit::OutputFault,
                    StatusBitFile::OverTemperature => StatusBit::OverTemperature,
                    StatusBitFile::LampFault => StatusBit::LampFault,
                    StatusBitFile::OutputShort => StatusBit::OutputShort,
                    StatusBitFile::Unused => StatusBit::Unused,
                })
                .collect(),
        })
    });
    let words = |w: Option<i64>, default: i64, path: &FieldPath, p: &mut Problems| {
        int_in::<u8>(w.unwrap_or(default), 1, 2, path, "words", p)
    };
    let power = file.power.as_ref().and_then(|w| {
        let path = root().key("power");
        let ok = in_range(
            w.watts_per_unit,
            0.0,
            1e6,
            &path.key("watts_per_unit"),
            "watts_per_unit",
            p,
        );
        Some(Power {
            register: register(&w.register, input, &path.key("register"), p)?,
            words: words(w.words, 1, &path.key("words"), p)?,
            watts_per_unit: ok.then_some(w.watts_per_unit)?,
        })
    });
    let uptime = file.uptime.as_ref().and_then(|u| {
        let path = root().key("uptime");
        let scale = u.seconds_per_unit.unwrap_or(1.0);
        let ok = in_range(
            scale,
            0.001,
            86_400.0,
            &path.key("seconds_per_unit"),
            "seconds_per_unit",
            p,
        );
        Some(Uptime {
            register: register(&u.register, input, &path.key("register"), p)?,
            words: words(u.words, 2, &path.key("words"), p)?,
            seconds_per_unit: ok.then_some(scale)?,
        })
    });
    let temperature = file.temperature.as_ref().and_then(|t| {
        let path = root().key("temperature");
        let scale = t.degrees_per_unit.unwrap_or(0.1);
        let ok = in_range(
            scale,
            0.001,
            10.0,
            &path.key("degrees_per_unit"),
            "degrees_per_unit",
            p,
        );
        Some(Temperature {
            register: register(&t.register, input, &path.key("register"), p)?,
            degrees_per_unit: ok.then_some(scale)?,
        })
    });
    let firmware = file.firmware.as_ref().and_then(|f| {
        register(
            &f.register,
            input,
            &root().key("firmware").key("register"),
            p,
        )
    });
    let lamp_faults = file.lamp_faults.as_ref().and_then(|f| {
        register(
            &f.register,
            input,
            &root().key("lamp_faults").key("register"),
            p,
        )
    });
    let readback = file.readback.as_ref().and_then(|r| {
        let table = match r.table {
            TableFile::Holding => holding,
            TableFile::Input => input,
        };
        Some(Readback {
            start: register(&r.start, table, &root().key("readback").key("start"), p)?,
            table,
        })
    });
    let word_order = match file.word_order {
        Some(WordOrderFile::Little) => WordOrder::Little,
        _ => WordOrder::Big,
    };
    if file.name.trim().is_empty() {
        p.error(
            Code::Missing,
            &root().key("name"),
            "the profile needs a name",
        );
    }
    // Where the levels sit, checked against the controls even when other fields have errors.
    if let (Some(start), Some(channels)) = (start, channels) {
        let count = match pack {
            None => u32::from(channels),
            Some(_) => u32::from(channels).div_ceil(2),
        };
        let levels = u32::from(start.get())..u32::from(start.get()) + count;
        if levels.end > 65536 {
            p.error(
                Code::RegisterRange,
                &lv.key("channels"),
                format!(
                    "{channels} channels from register {} run past register 65535",
                    levels.start
                ),
            );
        }
        let holding_controls = [
            ("enable", enable.map(|e| e.register)),
            ("master", master.map(|m| m.register)),
            ("fade", fade.map(|f| f.register)),
        ];
        for (key, reg) in holding_controls {
            if let Some(reg) = reg
                && levels.contains(&u32::from(reg.get()))
            {
                p.error(
                    Code::RegisterOverlap,
                    &root().key(key).key("register"),
                    format!(
                        "register {} is also a channel level (levels take {}–{})",
                        reg.get(),
                        levels.start,
                        levels.end - 1
                    ),
                );
            }
        }
    }
    if p.has_errors() {
        return None;
    }
    let profile = Profile {
        id,
        name: file.name,
        vendor: file.vendor,
        source: file.source,
        levels: Levels {
            start: start?,
            channels: channels?,
            bits: bits?,
            max: max?,
            pack,
        },
        write: WritePolicy {
            max_registers: max_registers?,
            fc16: file.write.fc16,
            min_interval: min_interval?,
            refresh: refresh?,
            serialize_host: file.write.serialize_host.unwrap_or(false),
        },
        word_order,
        enable,
        master,
        fade,
        status,
        power,
        uptime,
        temperature,
        firmware,
        lamp_faults,
        readback,
    };
    (!p.has_errors()).then_some(profile)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Found, found, found_in, profile as io16, zones as zone_table};
    use crate::show::{SourceFile, check};

    /// The diagnostics of profile `test`, and whether it joined the library.
    fn check_profile(text: &str) -> (Vec<Found>, bool) {
        let file = SourceFile {
            path: "profiles/test.toml".to_owned(),
            text: text.to_owned(),
        };
        let checked = check(&[zone_table(), file]);
        let joined = checked
            .library
            .profiles
            .keys()
            .any(|id| id.as_str() == "test");
        (found_in(&checked.diagnostics, "profiles/test.toml"), joined)
    }

    const LEVELS: &str = "name = \"test\"\n[levels]\nstart = 0\nchannels = 16\nbits = 8\n[write]\nmax_registers = 16\nfc16 = true\n";

    #[test]
    fn a_good_profile_joins_the_library() {
        assert_eq!(check_profile(LEVELS), (vec![], true));
        assert_eq!(check_profile(&io16().text), (vec![], true));
    }

    #[test]
    fn a_profile_with_a_bad_register_is_reported_and_left_out() {
        let (found_now, joined) = check_profile(&format!(
            "{LEVELS}[enable]\nregister = \"30001\"\non = 1\n[status]\nregister = 70000\n"
        ));
        assert!(!joined);
        assert_eq!(
            found_now,
            [
                found(
                    "bad-value",
                    "enable.register",
                    "this must be a holding register (4xxxx), but the notation names an input register"
                ),
                found(
                    "register-range",
                    "status.register",
                    "register 70000 is outside 0–65535"
                ),
            ]
        );
    }

    #[test]
    fn control_registers_must_not_be_channel_levels() {
        let (found_now, joined) =
            check_profile(&format!("{LEVELS}[master]\nregister = 15\nmax = 255\n"));
        assert!(!joined);
        assert_eq!(
            found_now,
            [found(
                "register-overlap",
                "master.register",
                "register 15 is also a channel level (levels take 0–15)"
            )]
        );
    }

    #[test]
    fn levels_must_end_by_register_65535() {
        let (found_now, joined) = check_profile(&LEVELS.replace("start = 0", "start = 65530"));
        assert!(!joined);
        assert_eq!(
            found_now,
            [found(
                "register-range",
                "levels.channels",
                "16 channels from register 65530 run past register 65535"
            )]
        );
    }

    #[test]
    fn the_zone_table_must_give_all_four_zones() {
        let mut zones = zone_table();
        let cut = zones
            .text
            .find("[[zones]]\nzone = 4")
            .unwrap_or(zones.text.len());
        zones.text.truncate(cut);
        let checked = check(&[zones]);
        assert!(checked.library.zones.is_none());
        assert_eq!(
            found_in(&checked.diagnostics, "zones.toml"),
            [found(
                "missing",
                "zones",
                "zone 4 is missing; the table must give zones 1 to 4"
            )]
        );
    }
}
