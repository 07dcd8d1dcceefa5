//! Addressing and profile checks on small libraries built in memory.
#![allow(clippy::unwrap_used)]

use nightscape_core::addr::RegisterAddr;
use nightscape_core::diag::Diagnostic;
use nightscape_core::model::{ProfileId, RegisterPart, RegisterSlot};
use nightscape_core::show::{Checked, SourceFile, check};

const ZONES: &str = include_str!("../../../scenes/zones.toml");
const PROFILES: [(&str, &str); 3] = [
    (
        "ns-led-v1",
        include_str!("../../../scenes/profiles/ns-led-v1.toml"),
    ),
    (
        "pxm-px333",
        include_str!("../../../scenes/profiles/pxm-px333.toml"),
    ),
    (
        "wb-mrgbw-d",
        include_str!("../../../scenes/profiles/wb-mrgbw-d.toml"),
    ),
];

const SITE_HEAD: &str = r#"
name = { ko = "시험" }
kind = "building"
location = { lat = 36.19, lon = 127.1 }
time_zone = "Asia/Seoul"
zone = 3

[[gateways]]
id = "gw"

[[controllers]]
id = "px"
gateway = "gw"
sacn = { universe = 1, universes = 2 }

[[controllers]]
id = "art"
gateway = "gw"
artnet = { ip = "10.0.0.7", port_address = "0:1:0", universes = 2 }

[[controllers]]
id = "ref"
gateway = "gw"
modbus = { host = "10.0.0.9", profile = "ns-led-v1" }

[[controllers]]
id = "px333"
gateway = "gw"
modbus = { host = "10.0.0.10", profile = "pxm-px333" }
"#;

/// Checks a library of the shipped zones and profiles plus one site made of `SITE_HEAD`
/// and `fixtures`; every fixture id listed in `members` goes into one group.
fn check_site(fixtures: &str, members: &[&str]) -> Checked {
    let group = format!(
        "\n[[groups]]\nid = \"all\"\nfixtures = [{}]\n",
        members
            .iter()
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut sources = vec![
        SourceFile {
            path: "zones.toml".into(),
            text: ZONES.into(),
        },
        SourceFile {
            path: "sites/test/site.toml".into(),
            text: format!("{SITE_HEAD}{fixtures}{group}"),
        },
    ];
    for (id, text) in PROFILES {
        sources.push(SourceFile {
            path: format!("profiles/{id}.toml"),
            text: text.into(),
        });
    }
    check(&sources)
}

/// The diagnostics as `line:col code` strings, errors and warnings alike, leaving out the
/// "controller has no fixtures" warnings that the shared head causes in every test.
fn found(checked: &Checked) -> Vec<String> {
    relevant(checked)
        .into_iter()
        .map(|d| {
            let lc = d.location.line_col.unwrap();
            format!("{}:{} {}", lc.line, lc.col, d.code)
        })
        .collect()
}

fn relevant(checked: &Checked) -> Vec<&Diagnostic> {
    let unused = nightscape_core::diag::Code::Unused;
    checked
        .diagnostics
        .iter()
        .filter(|d| d.code != unused)
        .collect()
}

fn line_of(text: &str, needle: &str) -> usize {
    format!("{SITE_HEAD}{text}")
        .lines()
        .position(|l| l.contains(needle))
        .unwrap()
        + 1
}

#[test]
fn a_clean_site_lowers_with_its_layout() {
    let fixtures = r#"
[[fixtures]]
id = "strip"
type = "pixel-strip"
controller = "px"
universe = 1
address = 4
pixels = 200
line = [[0.0, 0.0], [60.0, 0.0]]
power_w = 60.0
"#;
    let checked = check_site(fixtures, &["strip"]);
    assert_eq!(found(&checked), Vec::<String>::new());
    let site = &checked.library.sites.values().next().unwrap();
    let runs = site.fixtures[0].dmx_runs().unwrap();
    // From slot 4, 169 whole RGB pixels fit (slots 4–510); the rest start the next universe.
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].slots.clone(), runs[0].pixels), (4..511, 169));
    assert_eq!(
        (runs[1].slots.clone(), runs[1].first_pixel, runs[1].pixels),
        (1..94, 169, 31)
    );
}

#[test]
fn overlapping_slots_are_reported_on_the_later_fixture() {
    let fixtures = r#"
[[fixtures]]
id = "a"
type = "rgb"
controller = "px"
universe = 2
address = 10
at = [0.0, 0.0]
power_w = 10.0

[[fixtures]]
id = "b"
type = "dimmer"
bits = 16
controller = "px"
universe = 2
address = 12
at = [1.0, 0.0]
power_w = 10.0

[[fixtures]]
id = "c"
type = "dimmer"
controller = "px"
universe = 1
address = 12
at = [2.0, 0.0]
power_w = 10.0
"#;
    let checked = check_site(fixtures, &["a", "b", "c"]);
    let line = line_of(fixtures, "address = 12");
    assert_eq!(found(&checked), vec![format!("{line}:11 dmx-overlap")]);
    let message = &relevant(&checked)[0].message;
    assert!(
        message.contains("slot 12 of universe 2 on `px` is already"),
        "{message}"
    );
    assert!(
        message.contains("fixture `a`'s (it takes 10–12)"),
        "{message}"
    );
}

#[test]
fn a_fixed_pixel_count_that_splits_a_pixel_is_reported() {
    let fixtures = r#"
[[fixtures]]
id = "strip"
type = "pixel-strip"
pixel = "rgbw"
controller = "art"
universe = "0:1:0"
address = 1
pixels = 200
pixels_per_universe = 129
line = [[0.0, 0.0], [60.0, 0.0]]
power_w = 60.0
"#;
    let checked = check_site(fixtures, &["strip"]);
    let line = line_of(fixtures, "pixels_per_universe");
    assert_eq!(found(&checked), vec![format!("{line}:23 pixel-split")]);
    assert!(relevant(&checked)[0].message.contains("pixel 129"));
}

#[test]
fn universes_out_of_protocol_or_controller_range_are_reported() {
    let fixtures = r#"
[[fixtures]]
id = "far"
type = "rgb"
controller = "px"
universe = 64000
address = 1
at = [0.0, 0.0]
power_w = 10.0

[[fixtures]]
id = "other"
type = "rgb"
controller = "art"
universe = "0:1:2"
address = 1
at = [0.0, 0.0]
power_w = 10.0

[[fixtures]]
id = "long"
type = "pixel-strip"
controller = "px"
universe = 2
address = 1
pixels = 171
line = [[0.0, 0.0], [60.0, 0.0]]
power_w = 60.0
"#;
    let checked = check_site(fixtures, &["far", "other", "long"]);
    let codes: Vec<String> = found(&checked);
    assert_eq!(
        codes,
        vec![
            format!(
                "{}:12 universe-range",
                line_of(fixtures, "universe = 64000")
            ),
            format!(
                "{}:12 universe-range",
                line_of(fixtures, "universe = \"0:1:2\"")
            ),
            format!("{}:10 universe-range", line_of(fixtures, "pixels = 171")),
        ]
    );
    assert!(relevant(&checked)[0].message.contains("outside 1–63999"));
    assert!(
        relevant(&checked)[1]
            .message
            .contains("does not carry universe 0:1:2 (it has 0:1:0 to 0:1:1)")
    );
    assert!(
        relevant(&checked)[2].message.contains("pixel 171")
            || relevant(&checked)[2].message.contains("pixels 171–171")
    );
}

#[test]
fn registers_out_of_range_and_overlapping_are_reported() {
    let fixtures = r#"
[[fixtures]]
id = "end"
type = "rgbw"
controller = "px333"
channel = 510
at = [0.0, 0.0]
power_w = 10.0

[[fixtures]]
id = "a"
type = "dimmer"
controller = "ref"
channel = 1
at = [0.0, 0.0]
power_w = 10.0

[[fixtures]]
id = "b"
type = "dimmer"
controller = "ref"
channel = 2
at = [0.0, 0.0]
power_w = 10.0

[[fixtures]]
id = "c"
type = "cct"
controller = "ref"
channel = 2
at = [0.0, 0.0]
power_w = 10.0
white_k = [2700.0, 5000.0]
"#;
    let checked = check_site(fixtures, &["end", "a", "b", "c"]);
    // a and b share register 256 (high and low byte): that is packing, not an overlap.
    // c's channel 2 is b's low byte.
    assert_eq!(
        found(&checked),
        vec![
            format!("{}:11 register-range", line_of(fixtures, "channel = 510")),
            format!(
                "{}:11 register-overlap",
                line_of(fixtures, "type = \"cct\"") + 2
            ),
        ]
    );
    assert!(
        relevant(&checked)[0]
            .message
            .contains("channels 510–513 run past the 512 channels")
    );
    assert!(relevant(&checked)[1].message.contains("register 256"));
}

#[test]
fn shipped_profiles_map_channels_to_registers() {
    let checked = check_site("", &[]);
    let profiles = &checked.library.profiles;
    assert_eq!(profiles.len(), 3, "{:?}", checked.diagnostics);
    let slot = |profile: &str, channel: u16| {
        profiles[&ProfileId::new(profile).unwrap()].channel_slot(channel)
    };
    let at = |register: u16, part: RegisterPart| {
        Some(RegisterSlot {
            register: RegisterAddr::new(i64::from(register)).unwrap(),
            part,
        })
    };
    use RegisterPart::*;
    // ns-led-v1: two channels a register from 0x0100, odd channel in the high byte.
    assert_eq!(slot("ns-led-v1", 1), at(0x100, High));
    assert_eq!(slot("ns-led-v1", 2), at(0x100, Low));
    assert_eq!(slot("ns-led-v1", 3), at(0x101, High));
    assert_eq!(slot("ns-led-v1", 512), at(0x1FF, Low));
    assert_eq!(slot("ns-led-v1", 513), None);
    // PX333-style: channel k in holding register k−1.
    assert_eq!(slot("pxm-px333", 1), at(0, Whole));
    assert_eq!(slot("pxm-px333", 300), at(299, Whole));
    assert_eq!(slot("pxm-px333", 512), at(511, Whole));
    assert_eq!(slot("pxm-px333", 513), None);
    // WB-MRGBW-D-style: four channels in holding 0–3.
    assert_eq!(slot("wb-mrgbw-d", 1), at(0, Whole));
    assert_eq!(slot("wb-mrgbw-d", 4), at(3, Whole));
    assert_eq!(slot("wb-mrgbw-d", 5), None);
    assert_eq!(slot("wb-mrgbw-d", 0), None);

    let wb = &profiles[&ProfileId::new("wb-mrgbw-d").unwrap()];
    let fade = wb.fade.unwrap();
    assert_eq!((fade.register.get(), fade.unit.as_millis()), (13, 10));
    let px = &profiles[&ProfileId::new("pxm-px333").unwrap()];
    assert_eq!(px.readback.unwrap().start.get(), 0x2000);
    assert!(px.write.serialize_host);
}

#[test]
fn a_profile_whose_controls_overlap_its_levels_is_rejected() {
    let profile = r#"
name = "broken"
[levels]
start = "40001"
channels = 16
bits = 8
[write]
max_registers = 200
fc16 = true
[master]
register = 5
max = 255
"#;
    let sources = vec![
        SourceFile {
            path: "zones.toml".into(),
            text: ZONES.into(),
        },
        SourceFile {
            path: "profiles/broken.toml".into(),
            text: profile.into(),
        },
    ];
    // Both problems at once: a bad request size does not hide the overlap.
    let checked = check(&sources);
    assert_eq!(
        found(&checked),
        vec![
            "8:17 out-of-range".to_owned(),
            "11:12 register-overlap".to_owned()
        ],
        "{:#?}",
        checked.diagnostics
    );
    let fixed = profile.replace("200", "100");
    let sources = vec![
        SourceFile {
            path: "zones.toml".into(),
            text: ZONES.into(),
        },
        SourceFile {
            path: "profiles/broken.toml".into(),
            text: fixed,
        },
    ];
    assert_eq!(
        found(&check(&sources)),
        vec!["11:12 register-overlap".to_owned()]
    );
}

#[test]
fn every_unknown_key_is_reported_not_just_the_first() {
    let fixtures = r#"
[[fixtures]]
id = "a"
type = "rgb"
controller = "px"
adress = 1
at = [0.0, 0.0]
power_w = 10.0
colour = "red"
"#;
    let checked = check_site(fixtures, &["a"]);
    let codes = found(&checked);
    assert!(
        codes.contains(&format!("{}:1 unknown-key", line_of(fixtures, "adress"))),
        "{codes:?}"
    );
    assert!(
        codes.contains(&format!("{}:1 unknown-key", line_of(fixtures, "colour"))),
        "{codes:?}"
    );
    // The misspelt address also leaves the fixture without one.
    assert!(codes.iter().any(|c| c.ends_with("missing")), "{codes:?}");
}
