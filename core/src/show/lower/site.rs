//! A site (`sites/<id>/site.toml`): its place, limits and tariff, its gateways and the
//! controllers they reach with each one's output (Modbus, Art-Net, sACN, DMX over MQTT), and
//! the check that no two controllers listen to the same output. Fixtures and groups are
//! lowered in [`super::fixtures`], the cross-checks in [`super::checks`].

use std::collections::{HashMap, HashSet};

use super::checks::{limit_check, usage_check};
use super::fixtures::{fixtures, groups, patch_check};
use super::values::{
    IdSet, artnet_address, count, curfew, in_range, int_in, ip, name, root, time_of_day,
};
use super::{Indexed, SiteContext};
use crate::addr::{ArtNetPortAddress, SacnUniverse};
use crate::diag::{Code, FieldPath};
use crate::model::{
    Controller, ControllerId, Curfew, FadeBy, ForbiddenColour, Gateway, GatewayId, LatLon, Level,
    LightZone, Limits, Name, OnLoss, Output, ProfileId, Site, SiteId, SiteKind, Tariff, TariffBand,
    ZoneRule,
};
use crate::show::file::{
    ArtNetFile, ControllerFile, DmxMqttFile, FadeByFile, ForbiddenColourFile, GatewayFile,
    LimitsFile, ModbusFile, OnLossFile, SITE_KINDS, SacnFile, SiteFile, SiteKindFile, TariffFile,
    variant,
};
use crate::show::{Problems, not_one_of};

/// Photosensitive-safety ceiling for flashing anywhere (ITU-R BT.1702 uses 3 flashes/s).
const DEFAULT_FLASH_HZ: f64 = 3.0;
/// Sites that drivers see flash no faster than once a second unless the site says so.
const TRAFFIC_FLASH_HZ: f64 = 1.0;

pub(in crate::show) fn site(
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
            let kind = variant::<SiteKindFile>(text);
            if kind.is_none() {
                p.error(
                    Code::BadValue,
                    &root().key("kind"),
                    not_one_of(text, "a kind of site", &SITE_KINDS),
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
            .then(|| Level::from_pct(value).ok())
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
        let gateway = GatewayId::new(&c.gateway)
            .ok()
            .filter(|g| gateways.iter().any(|(_, x)| &x.id == g));
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
    let profile = ProfileId::new(&m.profile)
        .ok()
        .and_then(|id| context.profiles.get(&id));
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
        on_loss: on_loss(a.on_loss),
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
        on_loss: on_loss(s.on_loss),
    })
}

fn on_loss(file: Option<OnLossFile>) -> OnLoss {
    match file {
        Some(OnLossFile::Dark) => OnLoss::Dark,
        Some(OnLossFile::Hold) | None => OnLoss::Hold,
    }
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

#[cfg(test)]
mod tests {
    use super::super::testing::{Found, check_site, found};

    fn errors(found_now: Vec<Found>) -> Vec<Found> {
        found_now
            .into_iter()
            .filter(|(code, ..)| *code != "unused")
            .collect()
    }

    fn controller(id: &str, output: &str) -> String {
        format!("[[controllers]]\nid = \"{id}\"\ngateway = \"gw\"\n{output}\n")
    }

    #[test]
    fn artnet_universes_on_one_ip_overlap() {
        let a = controller(
            "a",
            "artnet = { ip = \"10.0.0.7\", port_address = \"0:1:0\", universes = 2 }",
        );
        let b = controller(
            "b",
            "artnet = { ip = \"10.0.0.7\", port_address = \"0:1:1\", universes = 2 }",
        );
        assert_eq!(
            check_site("", &format!("{a}{b}")),
            [found(
                "output-overlap",
                "controllers[1].artnet",
                "Art-Net 0:1:1 at 10.0.0.7 is already controller `a`'s"
            )]
        );
        // The same universes on another node are another output.
        let c = b.replace("10.0.0.7", "10.0.0.8");
        assert_eq!(errors(check_site("", &format!("{a}{c}"))), []);
    }

    #[test]
    fn modbus_units_on_one_host_overlap() {
        let a = controller("a", "modbus = { host = \"10.0.0.9\", profile = \"io16\" }");
        let b = controller(
            "b",
            "modbus = { host = \"10.0.0.9\", unit = 1, profile = \"io16\" }",
        );
        assert_eq!(
            check_site("", &format!("{a}{b}")),
            [found(
                "output-overlap",
                "controllers[1].modbus",
                "unit 1 at 10.0.0.9:502 is already controller `a`'s"
            )]
        );
        let c = b.replace("unit = 1", "unit = 2");
        assert_eq!(errors(check_site("", &format!("{a}{c}"))), []);
    }

    #[test]
    fn controllers_speak_one_known_protocol() {
        let two = controller(
            "two",
            "sacn = { universe = 1 }\nartnet = { ip = \"10.0.0.7\", port_address = 0 }",
        );
        let unknown = controller(
            "odd",
            "modbus = { host = \"10.0.0.9\", unit = 0, profile = \"nope\" }",
        );
        assert_eq!(
            check_site("", &format!("{two}{unknown}")),
            [
                found(
                    "conflict",
                    "controllers[0].sacn",
                    "a controller speaks one protocol; it has artnet and sacn"
                ),
                found(
                    "out-of-range",
                    "controllers[1].modbus.unit",
                    "unit 0 is the broadcast address: devices never answer it; use the device's id, 1–247"
                ),
                found(
                    "unknown-ref",
                    "controllers[1].modbus.profile",
                    "profile `nope` is not in profiles/ (known: io16)"
                ),
            ]
        );
    }

    #[test]
    fn limits_are_checked_against_each_other() {
        assert_eq!(
            check_site(
                "max_output_pct = 50\ncurfew_level_pct = 60\ncct_k = [4000, 3000]",
                ""
            ),
            [
                found(
                    "conflict",
                    "limits.curfew_level_pct",
                    "the curfew level is above the site's maximum output"
                ),
                found(
                    "conflict",
                    "limits.cct_k",
                    "write the range low to high: [3000, 4000]"
                ),
            ]
        );
    }
}
