//! The value helpers of lowering: names, ranges, times of day, curfews, IP addresses, Modbus
//! registers, Art-Net port-addresses, universe counts and id lists, each reporting what is
//! wrong with its value at the value's field path.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::addr::{ArtNetPortAddress, RegisterAddr, RegisterTable};
use crate::diag::{Code, FieldPath};
use crate::model::{Curfew, Name, TimeOfDay};
use crate::show::file::{NameFile, RegisterFile, UniverseFile};
use crate::show::{Problems, bad_id_message};

/// Universes one controller may carry; pixel controllers have up to a few dozen.
const MAX_UNIVERSES_PER_CONTROLLER: i64 = 256;

pub(super) fn root() -> FieldPath {
    FieldPath::root()
}

pub(in crate::show) fn name(file: NameFile, path: &FieldPath, p: &mut Problems) -> Name {
    if file.ko.trim().is_empty() {
        p.error(
            Code::Missing,
            &path.key("ko"),
            "the Korean name is empty; staff read names in Korean first",
        );
    }
    Name {
        ko: file.ko,
        en: file.en,
    }
}

pub(super) fn in_range(
    value: f64,
    lo: f64,
    hi: f64,
    path: &FieldPath,
    what: &str,
    p: &mut Problems,
) -> bool {
    let ok = value.is_finite() && value >= lo && value <= hi;
    if !ok {
        p.error(
            Code::OutOfRange,
            path,
            format!("{what} is {value}; it must be between {lo} and {hi}"),
        );
    }
    ok
}

pub(super) fn int_in<T: TryFrom<i64>>(
    value: i64,
    lo: i64,
    hi: i64,
    path: &FieldPath,
    what: &str,
    p: &mut Problems,
) -> Option<T> {
    if value < lo || value > hi {
        p.error(
            Code::OutOfRange,
            path,
            format!("{what} is {value}; it must be between {lo} and {hi}"),
        );
        return None;
    }
    T::try_from(value).ok()
}

pub(in crate::show) fn time_of_day(
    text: &str,
    path: &FieldPath,
    p: &mut Problems,
) -> Option<TimeOfDay> {
    TimeOfDay::parse(text)
        .map_err(|e| p.error(Code::BadValue, path, e.to_string()))
        .ok()
}

pub(super) fn curfew(text: &str, path: &FieldPath, p: &mut Problems) -> Option<Curfew> {
    let parsed = Curfew::parse(text);
    if parsed.is_none() {
        p.error(
            Code::BadValue,
            path,
            format!("`{text}` is not a curfew; write HH:MM (e.g. \"23:00\") or \"none\""),
        );
    }
    parsed
}

pub(super) fn ip(text: &str, path: &FieldPath, p: &mut Problems) -> Option<IpAddr> {
    let parsed = text.parse().ok();
    if parsed.is_none() {
        p.error(
            Code::BadValue,
            path,
            format!("`{text}` is not an IP address, e.g. \"10.20.1.21\""),
        );
    }
    parsed
}

pub(super) fn register(
    file: &RegisterFile,
    table: RegisterTable,
    path: &FieldPath,
    p: &mut Problems,
) -> Option<RegisterAddr> {
    let parsed = match file {
        RegisterFile::Number(n) => RegisterAddr::new(*n).map(|r| (r, None)),
        RegisterFile::Text(t) => RegisterAddr::parse(t),
    };
    match parsed {
        Err(e) => {
            p.error(Code::RegisterRange, path, e.to_string());
            None
        }
        Ok((_, Some(named))) if named != table => {
            let (want, got) = match table {
                RegisterTable::Holding => ("a holding register (4xxxx)", "an input register"),
                RegisterTable::Input => ("an input register (3xxxx)", "a holding register"),
            };
            p.error(
                Code::BadValue,
                path,
                format!("this must be {want}, but the notation names {got}"),
            );
            None
        }
        Ok((r, _)) => Some(r),
    }
}

/// Checks ids for form and uniqueness within one list.
pub(super) struct IdSet {
    what: &'static str,
    seen: HashSet<String>,
}

impl IdSet {
    pub(super) fn new(what: &'static str) -> Self {
        IdSet {
            what,
            seen: HashSet::new(),
        }
    }

    pub(super) fn take<T>(
        &mut self,
        text: &str,
        make: fn(&str) -> Result<T, crate::ids::IdError>,
        path: &FieldPath,
        p: &mut Problems,
    ) -> Option<T> {
        let Ok(id) = make(text) else {
            p.error(Code::BadId, path, bad_id_message(text));
            return None;
        };
        if !self.seen.insert(text.to_owned()) {
            p.error(
                Code::DuplicateId,
                path,
                format!("{} `{text}` is defined twice", self.what),
            );
            return None;
        }
        Some(id)
    }
}

pub(super) fn count(value: Option<i64>, path: &FieldPath, p: &mut Problems) -> Option<u16> {
    int_in(
        value.unwrap_or(1),
        1,
        MAX_UNIVERSES_PER_CONTROLLER,
        path,
        "the number of universes",
        p,
    )
}

pub(super) fn artnet_address(
    file: &UniverseFile,
    path: &FieldPath,
    p: &mut Problems,
) -> Option<ArtNetPortAddress> {
    let parsed = match file {
        UniverseFile::Number(n) => ArtNetPortAddress::new(*n),
        UniverseFile::Text(t) => t.parse(),
    };
    parsed
        .map_err(|e| p.error(Code::UniverseRange, path, e.to_string()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{found, pending};
    use super::*;
    use crate::model::GatewayId;

    #[test]
    fn times_of_day_are_hh_mm_on_a_24_hour_clock() {
        let mut p = Problems::default();
        let at = root().key("at");
        assert_eq!(
            time_of_day("23:30", &at, &mut p),
            TimeOfDay::from_minutes(23 * 60 + 30)
        );
        assert_eq!(time_of_day("00:00", &at, &mut p), Some(TimeOfDay::MIDNIGHT));
        assert_eq!(pending(&p), []);
        for bad in ["24:00", "7:30", "23:60", "dusk"] {
            assert_eq!(time_of_day(bad, &at, &mut p), None, "{bad}");
        }
        let found_now = pending(&p);
        assert_eq!(found_now.len(), 4);
        assert_eq!(
            found_now[0],
            found(
                "bad-value",
                "at",
                "`24:00` is not a time of day; write HH:MM on a 24-hour clock, e.g. \"23:30\""
            )
        );
    }

    #[test]
    fn curfews_are_a_time_or_none() {
        let mut p = Problems::default();
        let path = root().key("limits").key("curfew");
        assert_eq!(curfew("none", &path, &mut p), Some(Curfew::None));
        assert_eq!(
            curfew("23:00", &path, &mut p),
            TimeOfDay::from_minutes(23 * 60).map(Curfew::At)
        );
        assert_eq!(pending(&p), []);
        assert_eq!(curfew("None", &path, &mut p), None);
        assert_eq!(
            pending(&p),
            [found(
                "bad-value",
                "limits.curfew",
                "`None` is not a curfew; write HH:MM (e.g. \"23:00\") or \"none\""
            )]
        );
    }

    #[test]
    fn registers_must_be_in_range_and_in_the_right_table() {
        let mut p = Problems::default();
        let path = root().key("enable").key("register");
        let text = |t: &str| RegisterFile::Text(t.to_owned());
        let holding = RegisterTable::Holding;
        let input = RegisterTable::Input;
        let at = |n| RegisterAddr::new(n).ok();
        assert_eq!(register(&text("40001"), holding, &path, &mut p), at(0));
        assert_eq!(register(&text("30010"), input, &path, &mut p), at(9));
        assert_eq!(register(&text("0x1000"), input, &path, &mut p), at(4096));
        assert_eq!(
            register(&RegisterFile::Number(7), holding, &path, &mut p),
            at(7)
        );
        assert_eq!(pending(&p), []);

        assert_eq!(register(&text("30001"), holding, &path, &mut p), None);
        assert_eq!(register(&text("40001"), input, &path, &mut p), None);
        assert_eq!(
            register(&RegisterFile::Number(70_000), holding, &path, &mut p),
            None
        );
        assert_eq!(register(&text("forty"), holding, &path, &mut p), None);
        assert_eq!(
            pending(&p),
            [
                found(
                    "bad-value",
                    "enable.register",
                    "this must be a holding register (4xxxx), but the notation names an input register"
                ),
                found(
                    "bad-value",
                    "enable.register",
                    "this must be an input register (3xxxx), but the notation names a holding register"
                ),
                found(
                    "register-range",
                    "enable.register",
                    "register 70000 is outside 0–65535"
                ),
                found(
                    "register-range",
                    "enable.register",
                    "`forty` is not a register: write a 0-based number (0x1000 or 4096) or 4xxxx/3xxxx notation (40001 = holding 0)"
                ),
            ]
        );
    }

    #[test]
    fn numbers_out_of_range_name_their_bounds() {
        let mut p = Problems::default();
        let path = root().key("x");
        assert_eq!(int_in::<u8>(255, 0, 255, &path, "x", &mut p), Some(255));
        assert!(in_range(0.5, 0.0, 1.0, &path, "x", &mut p));
        assert_eq!(count(None, &path, &mut p), Some(1));
        assert_eq!(pending(&p), []);

        assert_eq!(int_in::<u8>(300, 0, 255, &path, "bits", &mut p), None);
        assert!(!in_range(f64::NAN, 0.0, 1.0, &path, "gamma", &mut p));
        assert_eq!(count(Some(0), &path, &mut p), None);
        assert_eq!(
            pending(&p),
            [
                found(
                    "out-of-range",
                    "x",
                    "bits is 300; it must be between 0 and 255"
                ),
                found(
                    "out-of-range",
                    "x",
                    "gamma is NaN; it must be between 0 and 1"
                ),
                found(
                    "out-of-range",
                    "x",
                    "the number of universes is 0; it must be between 1 and 256"
                ),
            ]
        );
    }

    #[test]
    fn addresses_say_how_to_write_them() {
        let mut p = Problems::default();
        let path = root().key("ip");
        assert_eq!(
            ip("10.20.1.21", &path, &mut p),
            Some(IpAddr::from([10, 20, 1, 21]))
        );
        assert_eq!(ip("10.20.1.256", &path, &mut p), None);
        let universe = |t: &str| UniverseFile::Text(t.to_owned());
        assert_eq!(
            artnet_address(&universe("0:1:2"), &path, &mut p).map(|a| a.get()),
            Some(0x12)
        );
        assert_eq!(artnet_address(&universe("0:16:0"), &path, &mut p), None);
        assert_eq!(
            artnet_address(&UniverseFile::Number(40_000), &path, &mut p),
            None
        );
        assert_eq!(
            pending(&p),
            [
                found(
                    "bad-value",
                    "ip",
                    "`10.20.1.256` is not an IP address, e.g. \"10.20.1.21\""
                ),
                found(
                    "universe-range",
                    "ip",
                    "Art-Net `0:16:0` is not `net:subnet:universe` (net 0–127, subnet 0–15, universe 0–15)"
                ),
                found(
                    "universe-range",
                    "ip",
                    "Art-Net port-address 40000 is outside 0–32767"
                ),
            ]
        );
    }

    #[test]
    fn id_sets_take_each_slug_once() {
        let mut p = Problems::default();
        let mut ids = IdSet::new("gateway");
        let path = root().key("gateways").index(1).key("id");
        assert!(ids.take("gw-1", GatewayId::new, &path, &mut p).is_some());
        assert!(ids.take("gw-2", GatewayId::new, &path, &mut p).is_some());
        assert!(ids.take("gw-1", GatewayId::new, &path, &mut p).is_none());
        assert!(ids.take("GW", GatewayId::new, &path, &mut p).is_none());
        assert_eq!(
            pending(&p),
            [
                found(
                    "duplicate-id",
                    "gateways[1].id",
                    "gateway `gw-1` is defined twice"
                ),
                found("bad-id", "gateways[1].id", &bad_id_message("GW")),
            ]
        );
    }

    #[test]
    fn names_need_korean() {
        let mut p = Problems::default();
        let file = NameFile {
            ko: " ".to_owned(),
            en: Some("Bridge".to_owned()),
        };
        let lowered = name(file, &root().key("name"), &mut p);
        assert_eq!(lowered.en.as_deref(), Some("Bridge"));
        assert_eq!(
            pending(&p),
            [found(
                "missing",
                "name.ko",
                "the Korean name is empty; staff read names in Korean first"
            )]
        );
    }
}
