//! Lowering: from the serde types of the show files to the checked domain model, reporting
//! every problem on the way with its field path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use super::Problems;
use super::file::*;
use crate::addr::{ArtNetPortAddress, DmxAddress, RegisterAddr, RegisterTable, SacnUniverse};
use crate::diag::{Code, FieldPath};
use crate::model::*;

/// Pixels-per-universe and strip lengths beyond this are certainly typos.
const MAX_PIXELS: i64 = 100_000;
/// Universes one controller may carry; pixel controllers have up to a few dozen.
const MAX_UNIVERSES_PER_CONTROLLER: i64 = 256;
const DEFAULT_GAMMA: f64 = 2.2;
/// Photosensitive-safety ceiling for flashing anywhere (ITU-R BT.1702 uses 3 flashes/s).
const DEFAULT_FLASH_HZ: f64 = 3.0;
/// Sites that drivers see flash no faster than once a second unless the site says so.
const TRAFFIC_FLASH_HZ: f64 = 1.0;

fn root() -> FieldPath {
    FieldPath::root()
}

pub(crate) fn name(file: NameFile, path: &FieldPath, p: &mut Problems) -> Name {
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

fn in_range(value: f64, lo: f64, hi: f64, path: &FieldPath, what: &str, p: &mut Problems) -> bool {
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

fn int_in<T: TryFrom<i64>>(
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

pub(crate) fn time_of_day(text: &str, path: &FieldPath, p: &mut Problems) -> Option<TimeOfDay> {
    let parsed = TimeOfDay::parse(text);
    if parsed.is_none() {
        p.error(
            Code::BadValue,
            path,
            format!(
                "`{text}` is not a time of day; write HH:MM on a 24-hour clock, e.g. \"23:30\""
            ),
        );
    }
    parsed
}

fn curfew(text: &str, path: &FieldPath, p: &mut Problems) -> Option<Curfew> {
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

fn ip(text: &str, path: &FieldPath, p: &mut Problems) -> Option<IpAddr> {
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

fn register(
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
struct IdSet {
    what: &'static str,
    seen: HashSet<String>,
}

impl IdSet {
    fn new(what: &'static str) -> Self {
        IdSet {
            what,
            seen: HashSet::new(),
        }
    }

    fn take<T>(
        &mut self,
        text: &str,
        make: fn(&str) -> Option<T>,
        path: &FieldPath,
        p: &mut Problems,
    ) -> Option<T> {
        let Some(id) = make(text) else {
            p.error(Code::BadId, path, super::bad_id_message(text));
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

pub(crate) fn zones(file: ZonesFile, p: &mut Problems) -> Option<ZoneTable> {
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

pub(crate) fn profile(id: ProfileId, file: ProfileFile, p: &mut Problems) -> Option<Profile> {
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
    let status = file
        .status
        .as_ref()
        .and_then(|s| register(&s.register, input, &root().key("status").key("register"), p));
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
        readback,
    };
    let levels = profile.level_registers();
    if levels.end > 65536 {
        p.error(
            Code::RegisterRange,
            &lv.key("channels"),
            format!(
                "{} channels from register {} run past register 65535",
                profile.levels.channels, levels.start
            ),
        );
        return None;
    }
    let holding_controls = [
        ("enable", profile.enable.map(|e| e.register)),
        ("master", profile.master.map(|m| m.register)),
        ("fade", profile.fade.map(|f| f.register)),
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
    (!p.has_errors()).then_some(profile)
}

/// What a site is checked against besides itself.
pub(crate) struct SiteContext<'a> {
    pub zones: Option<&'a ZoneTable>,
    pub profiles: &'a BTreeMap<ProfileId, Profile>,
}

pub(crate) fn site(
    id: SiteId,
    file: SiteFile,
    context: &SiteContext<'_>,
    p: &mut Problems,
) -> Option<(Site, bool)> {
    let missing = |key: &str, what: &str, p: &mut Problems| {
        p.error(
            Code::Missing,
            &root(),
            format!("the site needs `{key}`: {what}"),
        );
    };
    let site_name = match file.name {
        Some(n) => name(n, &root().key("name"), p),
        None => {
            missing("name", "name = { ko = \"…\", en = \"…\" }", p);
            Name {
                ko: String::new(),
                en: None,
            }
        }
    };
    let kind_file = match file.kind.as_deref() {
        None => {
            missing(
                "kind",
                "one of building, bridge, heritage, park, road-structure",
                p,
            );
            None
        }
        Some(text) => {
            let kind = super::file::variant::<SiteKindFile>(text);
            if kind.is_none() {
                p.error(
                    Code::BadValue,
                    &root().key("kind"),
                    super::not_one_of(text, "a kind of site", &super::file::SITE_KINDS),
                );
            }
            kind
        }
    };
    // The checks below still run on a site whose kind is unknown, with a building's defaults.
    let kind = match kind_file.unwrap_or(SiteKindFile::Building) {
        SiteKindFile::Building => SiteKind::Building,
        SiteKindFile::Bridge => SiteKind::Bridge,
        SiteKindFile::Heritage => SiteKind::Heritage,
        SiteKindFile::Park => SiteKind::Park,
        SiteKindFile::RoadStructure => SiteKind::RoadStructure,
    };
    let loc = root().key("location");
    let (lat, lon) = match &file.location {
        Some(l) => (l.lat, l.lon),
        None => {
            missing("location", "location = { lat = …, lon = … } in degrees", p);
            (0.0, 0.0)
        }
    };
    let lat_ok = in_range(lat, -90.0, 90.0, &loc.key("lat"), "latitude", p);
    let lon_ok = in_range(lon, -180.0, 180.0, &loc.key("lon"), "longitude", p);
    let time_zone = match file
        .time_zone
        .as_deref()
        .map(|t| (t, jiff::tz::db().get(t)))
    {
        Some((_, Ok(tz))) => Some(tz),
        Some((text, Err(_))) => {
            p.error(
                Code::BadValue,
                &root().key("time_zone"),
                format!("`{text}` is not an IANA time zone; write one such as \"Asia/Seoul\""),
            );
            None
        }
        None => {
            missing("time_zone", "an IANA time zone such as \"Asia/Seoul\"", p);
            None
        }
    };
    let zone = match file.zone {
        Some(z) => {
            let zone = LightZone::new(z);
            if zone.is_none() {
                p.error(
                    Code::OutOfRange,
                    &root().key("zone"),
                    format!("zone {z} does not exist; lighting-environment zones are 1 to 4"),
                );
            }
            zone
        }
        None => {
            missing("zone", "the lighting-environment zone, 1 to 4", p);
            None
        }
    };
    let zone_rule = zone.and_then(|z| context.zones.and_then(|t| t.rule(z)));
    let limits = limits(file.limits, kind, zone_rule, p);
    let tariff = file.tariff.and_then(|t| tariff(t, p));

    let gateways = gateways(file.gateways, p);
    let controllers = controllers(file.controllers, &gateways, context, p);
    // Groups are checked against every declared fixture, also those with errors of their
    // own, so that one mistake is not reported again as a missing reference.
    let declared: HashSet<String> = file.fixtures.iter().filter_map(|f| f.id.clone()).collect();
    let fixtures = fixtures(file.fixtures, &controllers, p);
    let patched = patch_check(&fixtures, &controllers, context, p);
    let groups = groups(file.groups, &declared, p);
    if let Some(limits) = &limits {
        limit_check(&fixtures, limits, zone_rule, p);
    }
    usage_check(&gateways, &controllers, &fixtures, &groups, p);

    // A site with errors is still built from what lowered, so that its scenes and schedule
    // can be checked in the same run; only a complete one joins the library.
    let complete = !p.has_errors() && lat_ok && lon_ok && patched;
    let site = Site {
        id,
        name: site_name,
        kind,
        location: LatLon { lat, lon },
        time_zone: time_zone?,
        zone: zone?,
        limits: limits?,
        tariff,
        gateways: gateways.into_iter().map(|(_, g)| g).collect(),
        controllers: controllers.into_iter().map(|(_, c)| c).collect(),
        fixtures: fixtures.into_iter().map(|(_, f)| f).collect(),
        groups: groups.into_iter().map(|(_, g)| g).collect(),
    };
    Some((site, complete))
}

fn limits(
    file: LimitsFile,
    kind: SiteKind,
    zone: Option<&ZoneRule>,
    p: &mut Problems,
) -> Option<Limits> {
    let path = root().key("limits");
    let pct = |value: Option<f64>, default: f64, key: &str, p: &mut Problems| {
        let value = value.unwrap_or(default);
        in_range(value, 0.0, 100.0, &path.key(key), key, p)
            .then(|| Level::from_pct(value))
            .flatten()
    };
    let max_output = pct(file.max_output_pct, 100.0, "max_output_pct", p);
    let curfew_level = pct(file.curfew_level_pct, 0.0, "curfew_level_pct", p);
    if let (Some(max), Some(level)) = (max_output, curfew_level)
        && level > max
    {
        p.error(
            Code::Conflict,
            &path.key("curfew_level_pct"),
            "the curfew level is above the site's maximum output",
        );
    }
    let cct_k = file.cct_k.and_then(|[lo, hi]| {
        let lo_ok = in_range(
            lo,
            1000.0,
            20_000.0,
            &path.key("cct_k"),
            "the lowest white",
            p,
        );
        let hi_ok = in_range(
            hi,
            1000.0,
            20_000.0,
            &path.key("cct_k"),
            "the highest white",
            p,
        );
        if lo_ok && hi_ok && lo > hi {
            p.error(
                Code::Conflict,
                &path.key("cct_k"),
                format!("write the range low to high: [{hi}, {lo}]"),
            );
            return None;
        }
        (lo_ok && hi_ok).then_some((lo, hi))
    });
    let saturation_max = file.saturation_max.unwrap_or(1.0);
    let saturation_ok = in_range(
        saturation_max,
        0.0,
        1.0,
        &path.key("saturation_max"),
        "saturation_max",
        p,
    );
    let forbidden = match file.forbidden_colours {
        Some(list) => list
            .into_iter()
            .map(|c| match c {
                ForbiddenColourFile::SignalRed => ForbiddenColour::SignalRed,
                ForbiddenColourFile::SignalAmber => ForbiddenColour::SignalAmber,
                ForbiddenColourFile::SignalGreen => ForbiddenColour::SignalGreen,
            })
            .collect(),
        None if kind.faces_traffic() => ForbiddenColour::ALL.to_vec(),
        None => Vec::new(),
    };
    let default_flash = if kind.faces_traffic() {
        TRAFFIC_FLASH_HZ
    } else {
        DEFAULT_FLASH_HZ
    };
    let max_flash_hz = file.max_flash_hz.unwrap_or(default_flash);
    let flash_ok = in_range(
        max_flash_hz,
        0.0,
        DEFAULT_FLASH_HZ,
        &path.key("max_flash_hz"),
        "max_flash_hz",
        p,
    );
    let curfew = match &file.curfew {
        Some(text) => curfew(text, &path.key("curfew"), p),
        None => Some(zone.map_or(Curfew::None, |z| z.curfew)),
    };
    Some(Limits {
        max_output: max_output?,
        cct_k,
        saturation_max: saturation_ok.then_some(saturation_max)?,
        forbidden,
        max_flash_hz: flash_ok.then_some(max_flash_hz)?,
        curfew: curfew?,
        curfew_level: curfew_level?,
    })
}

fn tariff(file: TariffFile, p: &mut Problems) -> Option<Tariff> {
    let path = root().key("tariff");
    let currency = file.currency.unwrap_or_else(|| "KRW".to_owned());
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        p.error(
            Code::BadValue,
            &path.key("currency"),
            format!("`{currency}` is not an ISO 4217 currency code such as \"KRW\""),
        );
    }
    in_range(file.per_kwh, 0.0, 1e6, &path.key("per_kwh"), "per_kwh", p);
    let mut bands = Vec::new();
    for (i, band) in file.bands.into_iter().enumerate() {
        let bp = path.key("bands").index(i);
        let from = time_of_day(&band.from, &bp.key("from"), p);
        let to = time_of_day(&band.to, &bp.key("to"), p);
        in_range(band.per_kwh, 0.0, 1e6, &bp.key("per_kwh"), "per_kwh", p);
        if let (Some(from), Some(to)) = (from, to) {
            bands.push(TariffBand {
                from,
                to,
                per_kwh: band.per_kwh,
            });
        }
    }
    Some(Tariff {
        currency,
        per_kwh: file.per_kwh,
        bands,
    })
}

/// Items are kept with their index in the file so later checks can name the field.
type Indexed<T> = Vec<(usize, T)>;

fn gateways(files: Vec<GatewayFile>, p: &mut Problems) -> Indexed<Gateway> {
    let mut ids = IdSet::new("gateway");
    let mut out = Vec::new();
    for (i, g) in files.into_iter().enumerate() {
        let path = root().key("gateways").index(i);
        let name = g.name.map(|n| name(n, &path.key("name"), p));
        if let Some(id) = ids.take(&g.id, GatewayId::new, &path.key("id"), p) {
            out.push((i, Gateway { id, name }));
        }
    }
    out
}

fn count(value: Option<i64>, path: &FieldPath, p: &mut Problems) -> Option<u16> {
    int_in(
        value.unwrap_or(1),
        1,
        MAX_UNIVERSES_PER_CONTROLLER,
        path,
        "the number of universes",
        p,
    )
}

fn controllers(
    files: Vec<ControllerFile>,
    gateways: &Indexed<Gateway>,
    context: &SiteContext<'_>,
    p: &mut Problems,
) -> Indexed<Controller> {
    let mut ids = IdSet::new("controller");
    let mut out = Vec::new();
    for (i, c) in files.into_iter().enumerate() {
        let path = root().key("controllers").index(i);
        let id = ids.take(&c.id, ControllerId::new, &path.key("id"), p);
        let gateway =
            GatewayId::new(&c.gateway).filter(|g| gateways.iter().any(|(_, x)| &x.id == g));
        if gateway.is_none() {
            p.error(
                Code::UnknownRef,
                &path.key("gateway"),
                format!(
                    "gateway `{}` is not defined in this site's [[gateways]]",
                    c.gateway
                ),
            );
        }
        let given: Vec<&str> = [
            c.modbus.as_ref().map(|_| "modbus"),
            c.artnet.as_ref().map(|_| "artnet"),
            c.sacn.as_ref().map(|_| "sacn"),
            c.dmx_mqtt.as_ref().map(|_| "dmx_mqtt"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if given.is_empty() {
            p.error(
                Code::Missing,
                &path,
                "say how the gateway reaches this controller: add one of `modbus`, `artnet`, `sacn`, `dmx_mqtt`",
            );
            continue;
        }
        if given.len() > 1 {
            p.error(
                Code::Conflict,
                &path.key(given[1]),
                format!(
                    "a controller speaks one protocol; it has {}",
                    given.join(" and ")
                ),
            );
            continue;
        }
        let output = if let Some(m) = c.modbus {
            modbus(m, &path.key("modbus"), context, p)
        } else if let Some(a) = c.artnet {
            artnet(a, &path.key("artnet"), p)
        } else if let Some(s) = c.sacn {
            sacn(s, &path.key("sacn"), p)
        } else if let Some(d) = c.dmx_mqtt {
            dmx_mqtt(d, &path.key("dmx_mqtt"), p)
        } else {
            None
        };
        if let (Some(id), Some(gateway), Some(output)) = (id, gateway, output) {
            out.push((
                i,
                Controller {
                    id,
                    gateway,
                    name: c.name,
                    output,
                },
            ));
        }
    }
    output_overlap_check(&out, p);
    out
}

fn modbus(
    m: ModbusFile,
    path: &FieldPath,
    context: &SiteContext<'_>,
    p: &mut Problems,
) -> Option<Output> {
    if m.host.trim().is_empty() || m.host.contains(char::is_whitespace) {
        p.error(
            Code::BadValue,
            &path.key("host"),
            "the host must be an IP address or a host name",
        );
    }
    let port = int_in(
        m.port.unwrap_or(502),
        1,
        65535,
        &path.key("port"),
        "the port",
        p,
    );
    let unit = match m.unit.unwrap_or(1) {
        0 => {
            p.error(
                Code::OutOfRange,
                &path.key("unit"),
                "unit 0 is the broadcast address: devices never answer it; use the device's id, 1–247",
            );
            None
        }
        u => int_in(u, 1, 247, &path.key("unit"), "the unit id", p),
    };
    let profile = ProfileId::new(&m.profile).and_then(|id| context.profiles.get(&id));
    if profile.is_none() {
        let known: Vec<&str> = context.profiles.keys().map(ProfileId::as_str).collect();
        p.error(
            Code::UnknownRef,
            &path.key("profile"),
            format!(
                "profile `{}` is not in profiles/ (known: {})",
                m.profile,
                known.join(", ")
            ),
        );
    }
    let fade_by = match m.fade_by {
        Some(FadeByFile::Controller) => FadeBy::Controller,
        _ => FadeBy::Gateway,
    };
    if let Some(profile) = profile
        && fade_by == FadeBy::Controller
        && profile.fade.is_none()
    {
        p.error(
            Code::Conflict,
            &path.key("fade_by"),
            format!(
                "profile `{}` has no fade register; let the gateway fade",
                profile.id
            ),
        );
    }
    Some(Output::Modbus {
        host: m.host,
        port: port?,
        unit: unit?,
        profile: profile?.id.clone(),
        fade_by,
    })
}

fn artnet_address(
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

fn artnet(a: ArtNetFile, path: &FieldPath, p: &mut Problems) -> Option<Output> {
    let ip = ip(&a.ip, &path.key("ip"), p);
    let first = artnet_address(&a.port_address, &path.key("port_address"), p);
    let count = count(a.universes, &path.key("universes"), p);
    if let (Some(first), Some(count)) = (first, count)
        && u32::from(first.get()) + u32::from(count) - 1 > u32::from(ArtNetPortAddress::MAX)
    {
        p.error(
            Code::UniverseRange,
            &path.key("universes"),
            format!("{count} port-addresses from {first} run past 127:15:15"),
        );
        return None;
    }
    Some(Output::ArtNet {
        ip: ip?,
        first: first?,
        count: count?,
    })
}

fn sacn(s: SacnFile, path: &FieldPath, p: &mut Problems) -> Option<Output> {
    let first = SacnUniverse::new(s.universe)
        .map_err(|e| p.error(Code::UniverseRange, &path.key("universe"), e.to_string()))
        .ok();
    let count = count(s.universes, &path.key("universes"), p);
    if let (Some(first), Some(count)) = (first, count)
        && u32::from(first.get()) + u32::from(count) - 1 > u32::from(SacnUniverse::MAX)
    {
        p.error(
            Code::UniverseRange,
            &path.key("universes"),
            format!("{count} universes from {} run past 63999", first.get()),
        );
        return None;
    }
    let priority = int_in(
        s.priority.unwrap_or(100),
        0,
        200,
        &path.key("priority"),
        "the priority",
        p,
    );
    let unicast = match &s.unicast {
        Some(text) => Some(ip(text, &path.key("unicast"), p)?),
        None => None,
    };
    Some(Output::Sacn {
        first: first?,
        count: count?,
        priority: priority?,
        unicast,
    })
}

fn dmx_mqtt(d: DmxMqttFile, path: &FieldPath, p: &mut Problems) -> Option<Output> {
    let first = int_in::<u16>(
        d.universe.unwrap_or(1),
        1,
        64,
        &path.key("universe"),
        "the universe",
        p,
    );
    let count = count(d.universes, &path.key("universes"), p);
    if let (Some(first), Some(count)) = (first, count)
        && first + count - 1 > 64
    {
        p.error(
            Code::UniverseRange,
            &path.key("universes"),
            format!("{count} universes from {first} run past 64"),
        );
        return None;
    }
    Some(Output::DmxMqtt {
        first: first?,
        count: count?,
    })
}

/// Two controllers must not listen to the same universe on the same destination, nor share
/// a Modbus unit: the second would show the first one's fixtures.
fn output_overlap_check(controllers: &Indexed<Controller>, p: &mut Problems) {
    let mut claimed: HashMap<String, &ControllerId> = HashMap::new();
    for (i, c) in controllers {
        let keys: Vec<(String, String)> = match &c.output {
            Output::Modbus {
                host, port, unit, ..
            } => {
                vec![(
                    format!("modbus {host}:{port} unit {unit}"),
                    format!("unit {unit} at {host}:{port}"),
                )]
            }
            Output::ArtNet { ip, .. } => c
                .output
                .universes()
                .into_iter()
                .map(|u| (format!("artnet {ip} {u}"), format!("Art-Net {u} at {ip}")))
                .collect(),
            Output::Sacn { unicast, .. } => {
                let dest = unicast.map_or("multicast".to_owned(), |ip| ip.to_string());
                c.output
                    .universes()
                    .into_iter()
                    .map(|u| {
                        (
                            format!("sacn {dest} {u}"),
                            format!("sACN universe {u} ({dest})"),
                        )
                    })
                    .collect()
            }
            Output::DmxMqtt { .. } => Vec::new(),
        };
        for (key, what) in keys {
            if let Some(other) = claimed.get(&key) {
                let path = root()
                    .key("controllers")
                    .index(*i)
                    .key(c.output.protocol().replace('-', "_"));
                p.error(
                    Code::OutputOverlap,
                    &path,
                    format!("{what} is already controller `{other}`'s"),
                );
                break;
            }
            claimed.insert(key, &c.id);
        }
    }
}

fn order(
    text: &str,
    kind: FixtureKind,
    path: &FieldPath,
    p: &mut Problems,
) -> Option<Vec<Emitter>> {
    let default = kind.default_order();
    let mut order = Vec::new();
    for ch in text.chars() {
        match default
            .iter()
            .find(|e| e.letter() == ch.to_ascii_lowercase())
        {
            Some(e) if !order.contains(e) => order.push(*e),
            _ => break,
        }
    }
    if order.len() != default.len() || text.chars().count() != default.len() {
        let letters: String = default.iter().map(|e| e.letter()).collect();
        p.error(
            Code::BadValue,
            path,
            format!("`{text}` is not a channel order for this fixture: use each of `{letters}` once, e.g. \"{letters}\""),
        );
        return None;
    }
    Some(order)
}

fn fixtures(
    files: Vec<FixtureFile>,
    controllers: &Indexed<Controller>,
    p: &mut Problems,
) -> Indexed<Fixture> {
    let mut ids = IdSet::new("fixture");
    let mut out = Vec::new();
    for (i, f) in files.into_iter().enumerate() {
        let path = root().key("fixtures").index(i);
        if let Some(fixture) = fixture(f, &path, &mut ids, controllers, p) {
            out.push((i, fixture));
        }
    }
    out
}

fn fixture(
    f: FixtureFile,
    path: &FieldPath,
    ids: &mut IdSet,
    controllers: &Indexed<Controller>,
    p: &mut Problems,
) -> Option<Fixture> {
    let required = |key: &str, what: &str, given: bool, p: &mut Problems| {
        if !given {
            p.error(
                Code::Missing,
                path,
                format!("a fixture needs `{key}`, {what}"),
            );
        }
    };
    required("id", "its name in groups and messages", f.id.is_some(), p);
    required(
        "type",
        "one of dimmer, cct, rgb, rgbw, rgba, pixel-strip",
        f.kind.is_some(),
        p,
    );
    required(
        "controller",
        "the controller that drives it",
        f.controller.is_some(),
        p,
    );
    required(
        "power_w",
        "its rated power at full output in watts",
        f.power_w.is_some(),
        p,
    );
    let kind_file = match f.kind.as_deref() {
        Some(text) => {
            let kind = super::file::variant::<FixtureTypeFile>(text);
            if kind.is_none() {
                p.error(
                    Code::BadValue,
                    &path.key("type"),
                    super::not_one_of(text, "a fixture type", &super::file::FIXTURE_TYPES),
                );
            }
            kind
        }
        None => None,
    };
    let (Some(id_text), Some(kind_file), Some(controller_text), Some(power_w)) =
        (f.id.clone(), kind_file, f.controller.clone(), f.power_w)
    else {
        return None;
    };
    let id = ids.take(&id_text, FixtureId::new, &path.key("id"), p);
    let is_strip = kind_file == FixtureTypeFile::PixelStrip;
    let pixels = match (is_strip, f.pixels) {
        (true, Some(n)) => int_in::<u32>(n, 1, MAX_PIXELS, &path.key("pixels"), "pixels", p),
        (true, None) => {
            p.error(
                Code::Missing,
                path,
                "a pixel-strip needs `pixels`, its pixel count",
            );
            None
        }
        (false, Some(_)) => {
            p.error(
                Code::Conflict,
                &path.key("pixels"),
                "`pixels` is for pixel-strip fixtures only",
            );
            None
        }
        (false, None) => Some(1),
    };
    if !is_strip && f.pixel.is_some() {
        p.error(
            Code::Conflict,
            &path.key("pixel"),
            "`pixel` is for pixel-strip fixtures only",
        );
    }
    let kind = match kind_file {
        FixtureTypeFile::Dimmer => FixtureKind::Dimmer,
        FixtureTypeFile::Cct => FixtureKind::Cct,
        FixtureTypeFile::Rgb => FixtureKind::Rgb,
        FixtureTypeFile::Rgbw => FixtureKind::Rgbw,
        FixtureTypeFile::Rgba => FixtureKind::Rgba,
        FixtureTypeFile::PixelStrip => FixtureKind::PixelStrip {
            pixel: match f.pixel {
                Some(PixelFile::Rgbw) => PixelKind::Rgbw,
                _ => PixelKind::Rgb,
            },
            pixels: pixels.unwrap_or(1),
        },
    };
    let order = match &f.order {
        Some(text) => order(text, kind, &path.key("order"), p),
        None => Some(kind.default_order()),
    };
    let bits = match f.bits.unwrap_or(8) {
        8 => Some(Bits::Eight),
        16 => Some(Bits::Sixteen),
        other => {
            p.error(
                Code::OutOfRange,
                &path.key("bits"),
                format!("bits is {other}; fixtures take 8 or 16 bits per colour"),
            );
            None
        }
    };
    let gamma = f.gamma.unwrap_or(DEFAULT_GAMMA);
    let gamma_ok = in_range(gamma, 0.5, 4.0, &path.key("gamma"), "gamma", p);
    let controller = ControllerId::new(&controller_text)
        .and_then(|id| controllers.iter().find(|(_, c)| c.id == id))
        .map(|(_, c)| c);
    if controller.is_none() {
        p.error(
            Code::UnknownRef,
            &path.key("controller"),
            format!(
                "controller `{}` is not defined in this site's [[controllers]]",
                controller_text
            ),
        );
    }
    let patch = controller.and_then(|c| patch(&f, is_strip, c, path, p));
    let shape = shape(&f, is_strip, path, p);
    let power_ok = in_range(power_w, 0.0, 20_000.0, &path.key("power_w"), "power_w", p);
    if let Some(l) = f.luminance_cd_m2 {
        in_range(
            l,
            0.0,
            1e7,
            &path.key("luminance_cd_m2"),
            "luminance_cd_m2",
            p,
        );
    }
    let white_k = white(&f, kind, path, p);
    Some(Fixture {
        id: id?,
        name: f.name,
        kind: pixels.map(|_| kind)?,
        order: order?,
        bits: bits?,
        gamma: gamma_ok.then_some(gamma)?,
        controller: controller?.id.clone(),
        patch: patch?,
        shape: shape?,
        power_w: power_ok.then_some(power_w)?,
        luminance_cd_m2: f.luminance_cd_m2,
        white_k: white_k?,
    })
}

fn patch(
    f: &FixtureFile,
    is_strip: bool,
    controller: &Controller,
    path: &FieldPath,
    p: &mut Problems,
) -> Option<Patch> {
    if let Output::Modbus { .. } = controller.output {
        for (key, given) in [
            ("universe", f.universe.is_some()),
            ("address", f.address.is_some()),
            ("pixels_per_universe", f.pixels_per_universe.is_some()),
        ] {
            if given {
                p.error(
                    Code::Conflict,
                    &path.key(key),
                    format!(
                        "`{}` is a Modbus controller: give `channel`, not `{key}`",
                        controller.id
                    ),
                );
            }
        }
        let Some(channel) = f.channel else {
            p.error(
                Code::Missing,
                path,
                "a fixture on a Modbus controller needs `channel` (1-based)",
            );
            return None;
        };
        let channel = int_in(channel, 1, 65535, &path.key("channel"), "the channel", p)?;
        return Some(Patch::Modbus { channel });
    }
    if f.channel.is_some() {
        p.error(
            Code::Conflict,
            &path.key("channel"),
            format!(
                "`{}` is a {} controller: give `universe` and `address`, not `channel`",
                controller.id,
                controller.output.protocol()
            ),
        );
    }
    if !is_strip && f.pixels_per_universe.is_some() {
        p.error(
            Code::Conflict,
            &path.key("pixels_per_universe"),
            "`pixels_per_universe` is for pixel-strip fixtures only",
        );
    }
    let Some(address) = f.address else {
        p.error(
            Code::Missing,
            path,
            "a DMX fixture needs `address`, its first slot (1–512)",
        );
        return None;
    };
    let address = DmxAddress::new(address)
        .map_err(|e| p.error(Code::OutOfRange, &path.key("address"), e.to_string()))
        .ok();
    let carried = controller.output.universes();
    let universe_path = path.key("universe");
    let universe = match (&f.universe, &controller.output) {
        (None, _) if carried.len() == 1 => Some(carried[0]),
        (None, _) => {
            p.error(
                Code::Missing,
                path,
                format!(
                    "`{}` carries {} universes: say which with `universe`",
                    controller.id,
                    carried.len()
                ),
            );
            None
        }
        (Some(u), Output::ArtNet { .. }) => {
            artnet_address(u, &universe_path, p).map(Universe::ArtNet)
        }
        (Some(UniverseFile::Number(n)), Output::Sacn { .. }) => SacnUniverse::new(*n)
            .map_err(|e| p.error(Code::UniverseRange, &universe_path, e.to_string()))
            .ok()
            .map(Universe::Sacn),
        (Some(UniverseFile::Number(n)), _) => {
            int_in(*n, 1, 64, &universe_path, "the universe", p).map(Universe::DmxMqtt)
        }
        (Some(UniverseFile::Text(t)), _) => {
            p.error(
                Code::BadValue,
                &universe_path,
                format!("`{t}`: only Art-Net universes are written as text; write a number"),
            );
            None
        }
    };
    if let Some(u) = universe
        && !carried.contains(&u)
    {
        p.error(
            Code::UniverseRange,
            &universe_path,
            format!(
                "controller `{}` does not carry universe {u} (it has {})",
                controller.id,
                span_text(&carried)
            ),
        );
        return None;
    }
    let pixels_per_universe = match f.pixels_per_universe {
        Some(n) if is_strip => Some(int_in(
            n,
            1,
            512,
            &path.key("pixels_per_universe"),
            "pixels_per_universe",
            p,
        )?),
        _ => None,
    };
    Some(Patch::Dmx {
        universe: universe?,
        address: address?,
        pixels_per_universe,
    })
}

/// "slot 12" or "slots 12–14".
fn slot_text(first: u16, last: u16) -> String {
    if first == last {
        format!("slot {first}")
    } else {
        format!("slots {first}–{last}")
    }
}

fn span_text(universes: &[Universe]) -> String {
    match universes {
        [] => "none".to_owned(),
        [one] => one.to_string(),
        [first, .., last] => format!("{first} to {last}"),
    }
}

fn shape(f: &FixtureFile, is_strip: bool, path: &FieldPath, p: &mut Problems) -> Option<Shape> {
    let finite = |pt: &[f64; 2]| pt.iter().all(|v| v.is_finite() && v.abs() <= 100_000.0);
    match (&f.at, &f.line) {
        (Some(_), Some(_)) => {
            p.error(
                Code::Conflict,
                &path.key("line"),
                "give `at` (a point) or `line` (a polyline), not both",
            );
            None
        }
        (None, None) => {
            p.error(
                Code::Missing,
                path,
                "give the fixture's position: `at = [x, y]` or `line = [[x, y], …]` in metres",
            );
            None
        }
        (Some(_), None) if is_strip => {
            p.error(
                Code::Missing,
                &path.key("at"),
                "a pixel-strip is drawn along `line = [[x, y], …]`, not at a point",
            );
            None
        }
        (Some(at), None) => {
            if !finite(at) {
                p.error(
                    Code::OutOfRange,
                    &path.key("at"),
                    "positions are metres within 100 km of the site origin",
                );
                return None;
            }
            Some(Shape::Point(*at))
        }
        (None, Some(line)) => {
            if line.len() < 2 {
                p.error(
                    Code::Missing,
                    &path.key("line"),
                    "a line needs at least two points",
                );
                return None;
            }
            if !line.iter().all(finite) {
                p.error(
                    Code::OutOfRange,
                    &path.key("line"),
                    "positions are metres within 100 km of the site origin",
                );
                return None;
            }
            Some(Shape::Line(line.clone()))
        }
    }
}

/// Returns `Some(white)` when the fixture's whites are valid (which may be no white).
fn white(
    f: &FixtureFile,
    kind: FixtureKind,
    path: &FieldPath,
    p: &mut Problems,
) -> Option<Option<(f64, f64)>> {
    let wp = path.key("white_k");
    let has_white = matches!(
        kind,
        FixtureKind::Dimmer
            | FixtureKind::Cct
            | FixtureKind::Rgbw
            | FixtureKind::PixelStrip {
                pixel: PixelKind::Rgbw,
                ..
            }
    );
    match f.white_k {
        None if kind == FixtureKind::Cct => {
            p.error(
                Code::Missing,
                path,
                "a cct fixture needs `white_k = [warm, cool]` in kelvin",
            );
            None
        }
        None => Some(None),
        Some(_) if !has_white => {
            p.error(
                Code::Conflict,
                &wp,
                "this fixture has no white emitter; leave `white_k` out",
            );
            None
        }
        Some([a, b]) => {
            let ok = in_range(a, 1000.0, 20_000.0, &wp, "the white", p)
                && in_range(b, 1000.0, 20_000.0, &wp, "the white", p);
            if !ok {
                return None;
            }
            if kind == FixtureKind::Cct && a >= b {
                p.error(
                    Code::Conflict,
                    &wp,
                    "write `[warm, cool]`: the warm white has the lower kelvin",
                );
                return None;
            }
            if kind != FixtureKind::Cct && a != b {
                p.error(Code::Conflict, &wp, "only cct fixtures have two whites; write the one white twice, e.g. [3000, 3000]");
                return None;
            }
            Some(Some((a, b)))
        }
    }
}

/// DMX slots one fixture takes in one universe: `(slots, fixture index in the file, id)`.
type SlotUse<'a> = (std::ops::Range<u16>, usize, &'a FixtureId);
/// The part of one register a fixture writes: `(part, fixture index in the file, id)`.
type RegisterUse<'a> = (RegisterPart, usize, &'a FixtureId);

/// Lays out every fixture's channels and reports overruns, split pixels and overlaps.
/// Returns false when a fixture cannot be laid out.
fn patch_check(
    fixtures: &Indexed<Fixture>,
    controllers: &Indexed<Controller>,
    context: &SiteContext<'_>,
    p: &mut Problems,
) -> bool {
    let mut ok = true;
    let mut dmx: BTreeMap<(&ControllerId, Universe), Vec<SlotUse<'_>>> = BTreeMap::new();
    let mut registers: BTreeMap<(&ControllerId, RegisterAddr), Vec<RegisterUse<'_>>> =
        BTreeMap::new();
    for (i, f) in fixtures {
        let path = root().key("fixtures").index(*i);
        let Some((_, controller)) = controllers.iter().find(|(_, c)| c.id == f.controller) else {
            continue;
        };
        match (&f.patch, &controller.output) {
            (Patch::Modbus { channel }, Output::Modbus { profile, .. }) => {
                let Some(profile) = context.profiles.get(profile) else {
                    continue;
                };
                let last = u32::from(*channel) + f.channel_count() - 1;
                if last > u32::from(profile.levels.channels) {
                    p.error(
                        Code::RegisterRange,
                        &path.key("channel"),
                        format!(
                            "channels {channel}–{last} run past the {} channels of profile `{}` (registers {}–{})",
                            profile.levels.channels,
                            profile.id,
                            profile.level_registers().start,
                            profile.level_registers().end - 1
                        ),
                    );
                    ok = false;
                    continue;
                }
                for ch in *channel..=last as u16 {
                    if let Some(slot) = profile.channel_slot(ch) {
                        registers
                            .entry((&controller.id, slot.register))
                            .or_default()
                            .push((slot.part, *i, &f.id));
                    }
                }
            }
            (Patch::Dmx { .. }, _) => match f.dmx_runs() {
                Ok(runs) => {
                    let carried = controller.output.universes();
                    for run in runs {
                        if !carried.contains(&run.universe) {
                            p.error(
                                Code::UniverseRange,
                                &path.key("pixels"),
                                format!(
                                    "pixels {}–{} need universe {}, which controller `{}` does not carry (it has {})",
                                    run.first_pixel + 1,
                                    run.first_pixel + run.pixels,
                                    run.universe,
                                    controller.id,
                                    span_text(&carried)
                                ),
                            );
                            ok = false;
                            break;
                        }
                        dmx.entry((&controller.id, run.universe))
                            .or_default()
                            .push((run.slots, *i, &f.id));
                    }
                }
                Err(LayoutError::Overrun { last_slot }) => {
                    p.error(
                        Code::UniverseOverrun,
                        &path.key("address"),
                        format!(
                            "the fixture takes {} channels, so it would end at slot {last_slot}, past 512; move it to a lower address or the next universe",
                            f.channel_count()
                        ),
                    );
                    ok = false;
                }
                Err(LayoutError::PixelSplit { pixel, universe }) => {
                    p.error(
                        Code::PixelSplit,
                        &path.key("pixels_per_universe"),
                        format!(
                            "pixel {pixel} would be split between universe {universe} and the next: at {} channels a pixel, only {} fit from this address",
                            f.channels_per_pixel(),
                            pixel - 1
                        ),
                    );
                    ok = false;
                }
                Err(LayoutError::NoNextUniverse { after }) => {
                    p.error(
                        Code::UniverseRange,
                        &path.key("pixels"),
                        format!("the strip continues past universe {after}, the protocol's last"),
                    );
                    ok = false;
                }
            },
            (Patch::Modbus { .. }, _) => {}
        }
    }
    for ((controller, universe), mut uses) in dmx {
        uses.sort_by_key(|(slots, i, _)| (slots.start, *i));
        for (n, (slots, i, id)) in uses.iter().enumerate() {
            if let Some((other, _, other_id)) =
                uses[..n].iter().find(|(o, _, _)| o.end > slots.start)
            {
                p.error(
                    Code::DmxOverlap,
                    &root().key("fixtures").index(*i).key("address"),
                    format!(
                        "{} of universe {universe} on `{controller}` {} already fixture `{other_id}`'s (it takes {}–{}); `{id}` must start at {} or later",
                        slot_text(slots.start, (slots.end - 1).min(other.end - 1)),
                        if (slots.end - 1).min(other.end - 1) > slots.start { "are" } else { "is" },
                        other.start,
                        other.end - 1,
                        other.end
                    ),
                );
                ok = false;
            }
        }
    }
    let mut reported = HashSet::new();
    for ((controller, register), uses) in registers {
        for (n, (part, i, id)) in uses.iter().enumerate() {
            let clash = uses[..n].iter().find(|(other, oi, _)| {
                oi != i
                    && (*other == *part
                        || *other == RegisterPart::Whole
                        || *part == RegisterPart::Whole)
            });
            if let Some((_, _, other_id)) = clash
                && reported.insert((*i, (*other_id).clone()))
            {
                p.error(
                    Code::RegisterOverlap,
                    &root().key("fixtures").index(*i).key("channel"),
                    format!(
                        "register {} on `{controller}` is written for both `{other_id}` and `{id}`",
                        register.get()
                    ),
                );
                ok = false;
            }
        }
    }
    ok
}

fn groups(files: Vec<GroupFile>, declared: &HashSet<String>, p: &mut Problems) -> Indexed<Group> {
    let mut ids = IdSet::new("group");
    let mut out = Vec::new();
    for (i, g) in files.into_iter().enumerate() {
        let path = root().key("groups").index(i);
        let id = ids.take(&g.id, GroupId::new, &path.key("id"), p);
        let role = match &g.role {
            Some(text) => {
                let role = Role::new(text);
                if role.is_none() {
                    p.error(Code::BadId, &path.key("role"), super::bad_id_message(text));
                }
                role
            }
            None => None,
        };
        let name = g.name.map(|n| name(n, &path.key("name"), p));
        let mut members = Vec::new();
        for (k, text) in g.fixtures.iter().enumerate() {
            let fp = path.key("fixtures").index(k);
            match FixtureId::new(text).filter(|_| declared.contains(text)) {
                None => p.error(
                    Code::UnknownRef,
                    &fp,
                    format!("fixture `{text}` is not defined in this site's [[fixtures]]"),
                ),
                Some(id) if members.contains(&id) => p.warning(
                    Code::DuplicateId,
                    &fp,
                    format!("fixture `{text}` is listed twice in this group"),
                ),
                Some(id) => members.push(id),
            }
        }
        if g.fixtures.is_empty() {
            p.warning(
                Code::Unused,
                &path.key("fixtures"),
                "the group has no fixtures; scenes that target it light nothing",
            );
        }
        if let Some(id) = id {
            out.push((
                i,
                Group {
                    id,
                    role,
                    name,
                    fixtures: members,
                },
            ));
        }
    }
    out
}

/// Fixtures whose capabilities break the site's limits, and fixtures that will be clamped.
fn limit_check(
    fixtures: &Indexed<Fixture>,
    limits: &Limits,
    zone: Option<&ZoneRule>,
    p: &mut Problems,
) {
    for (i, f) in fixtures {
        let path = root().key("fixtures").index(*i);
        if let (Some((lo, hi)), Some((warm, cool))) = (limits.cct_k, f.white_k)
            && (cool < lo || warm > hi)
        {
            let what = if warm == cool {
                format!("its white is {warm} K")
            } else {
                format!("its whites span {warm}–{cool} K")
            };
            p.error(
                Code::LimitBroken,
                &path.key("white_k"),
                format!("the site allows whites of {lo}–{hi} K only, but {what}: it can show nothing allowed"),
            );
        }
        if limits.cct_k.is_some() && !f.kind.has_white() {
            p.warning(
                Code::WhiteApproximate,
                &path.key("type"),
                "the site allows whites only, and this fixture mixes white from colour: its whites will be approximate",
            );
        }
        if let (Some(zone), Some(lum)) = (zone, f.luminance_cd_m2) {
            let at_max = lum * limits.max_output.get();
            if at_max > zone.max_cd_m2 {
                p.warning(
                    Code::LimitClamped,
                    &path.key("luminance_cd_m2"),
                    format!(
                        "at the site's maximum output it reaches {at_max:.0} cd/m², above zone {}'s {} cd/m²; its output will be held to {:.0} %",
                        zone.zone.get(),
                        zone.max_cd_m2,
                        100.0 * zone.max_cd_m2 / lum
                    ),
                );
            }
        }
    }
}

fn usage_check(
    gateways: &Indexed<Gateway>,
    controllers: &Indexed<Controller>,
    fixtures: &Indexed<Fixture>,
    groups: &Indexed<Group>,
    p: &mut Problems,
) {
    if gateways.is_empty() && !p.has_errors() {
        p.error(
            Code::Missing,
            &root(),
            "the site has no [[gateways]]; nothing would play it",
        );
    }
    // With errors in the site, things look unused only because their users failed to lower;
    // those warnings would be noise until the errors are fixed.
    if p.has_errors() {
        return;
    }
    for (i, g) in gateways {
        if !controllers.iter().any(|(_, c)| c.gateway == g.id) {
            p.warning(
                Code::Unused,
                &root().key("gateways").index(*i).key("id"),
                format!("gateway `{}` drives no controller", g.id),
            );
        }
    }
    for (i, c) in controllers {
        if !fixtures.iter().any(|(_, f)| f.controller == c.id) {
            p.warning(
                Code::Unused,
                &root().key("controllers").index(*i).key("id"),
                format!("controller `{}` has no fixtures", c.id),
            );
        }
    }
    for (i, f) in fixtures {
        if !groups.iter().any(|(_, g)| g.fixtures.contains(&f.id)) {
            p.warning(
                Code::Unused,
                &root().key("fixtures").index(*i).key("id"),
                format!(
                    "fixture `{}` is in no group, so no scene can light it",
                    f.id
                ),
            );
        }
    }
}
