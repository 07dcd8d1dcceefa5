//! Property: whatever the scene — even one the checker would reject — no rendered channel
//! exceeds its fixture's cap and no emitted colour breaks the site's colour limits.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::LazyLock;
use std::time::Duration;

use nightscape_core::colour::Rgb;
use nightscape_core::model::{GroupId, Level, SiteId};
use nightscape_core::render::{CompiledScene, Layout, decode, render_channels};
use nightscape_core::scene::{Blend, Effect, Layer, Palette, Scene, SceneId, Target, Travel};
use nightscape_core::show::{ShowLibrary, SourceFile, check};
use proptest::prelude::*;

const FIXTURES: &str = r#"
[[controllers]]
id = "px"
gateway = "gw"
sacn = { universe = 1, universes = 2 }
[[fixtures]]
id = "rgb"
type = "rgb"
controller = "px"
universe = 1
address = 1
at = [0.0, 0.0]
power_w = 10.0
luminance_cd_m2 = 100.0
[[fixtures]]
id = "rgbw"
type = "rgbw"
bits = 16
white_k = [3000.0, 3000.0]
controller = "px"
universe = 1
address = 10
at = [3.0, 0.0]
power_w = 10.0
[[fixtures]]
id = "rgba"
type = "rgba"
controller = "px"
universe = 1
address = 20
at = [6.0, 0.0]
power_w = 10.0
[[fixtures]]
id = "cct"
type = "cct"
white_k = [2200.0, 4000.0]
controller = "px"
universe = 1
address = 30
at = [9.0, 0.0]
power_w = 10.0
[[fixtures]]
id = "dim"
type = "dimmer"
gamma = 1.0
white_k = [2700.0, 2700.0]
controller = "px"
universe = 1
address = 40
at = [12.0, 0.0]
power_w = 10.0
[[fixtures]]
id = "strip"
type = "pixel-strip"
controller = "px"
universe = 2
address = 1
pixels = 40
line = [[0.0, 5.0], [20.0, 5.0]]
power_w = 10.0
[[groups]]
id = "all"
fixtures = ["rgb", "rgbw", "rgba", "cct", "dim", "strip"]
"#;

/// A bridge-like site (signal colours forbidden, saturation cap, 70 % output, zone 2 holds
/// the 100 cd/m² fixture to 60 %) and a heritage-like one (warm whites only, 50 %).
fn sites() -> ShowLibrary {
    let head = |id: &str, kind: &str, limits: &str| SourceFile {
        path: format!("sites/{id}/site.toml"),
        text: common::site_toml(kind, (36.2, 127.1, "Asia/Seoul"), 2, limits, FIXTURES),
    };
    let checked = check(&[
        common::zones(),
        head(
            "road",
            "bridge",
            "max_output_pct = 70\nsaturation_max = 0.8\nmax_flash_hz = 0.5",
        ),
        head(
            "old",
            "heritage",
            "max_output_pct = 50\ncct_k = [2200.0, 3000.0]\nmax_flash_hz = 0.05",
        ),
    ]);
    assert_eq!(checked.error_count(), 0, "{:#?}", checked.diagnostics);
    checked.library
}

/// The two sites and their layouts, built once: a layout builds its clamp table.
static SITES: LazyLock<(ShowLibrary, Vec<Layout>)> = LazyLock::new(|| {
    let lib = sites();
    let layouts = lib
        .sites
        .values()
        .map(|s| Layout::new(s, lib.zone_rule(s)))
        .collect();
    (lib, layouts)
});

fn colour() -> impl Strategy<Value = Rgb> {
    (0.0f32..=1.0, 0.0f32..=1.0, 0.0f32..=1.0).prop_map(|(r, g, b)| Rgb::new(r, g, b))
}

fn travel() -> impl Strategy<Value = Travel> {
    (-50.0f64..50.0, 0.5f64..100.0, -180.0f64..180.0).prop_map(|(s, w, d)| Travel {
        speed_mps: s,
        wavelength_m: w,
        direction_deg: d,
    })
}

pub(crate) fn effect() -> impl Strategy<Value = Effect> {
    let period = 10.0f64..200_000.0;
    prop_oneof![
        colour().prop_map(|colour| Effect::Static { colour }),
        (1667.0f64..25_000.0).prop_map(|kelvin| Effect::Kelvin { kelvin }),
        (prop::collection::vec(colour(), 1..5), -180.0f64..180.0).prop_map(
            |(colours, direction_deg)| Effect::Gradient {
                colours: Palette::new(colours).unwrap(),
                direction_deg
            }
        ),
        (prop::collection::vec(colour(), 1..5), period.clone()).prop_map(|(colours, period_ms)| {
            Effect::Cycle {
                colours: Palette::new(colours).unwrap(),
                period_ms,
            }
        }),
        (colour(), period.clone(), 0.0f32..=1.0).prop_map(|(colour, period_ms, depth)| {
            Effect::Breathe {
                colour,
                period_ms,
                depth,
            }
        }),
        (
            colour(),
            colour(),
            -50.0f64..50.0,
            0.1f64..10.0,
            1.0f64..50.0,
            -180.0f64..180.0
        )
            .prop_map(
                |(colour, background, speed_mps, width_m, spacing_m, direction_deg)| {
                    Effect::Chase {
                        colour,
                        background,
                        speed_mps,
                        width_m,
                        spacing_m,
                        direction_deg,
                    }
                }
            ),
        (colour(), colour(), travel()).prop_map(|(a, b, travel)| Effect::Wave {
            colours: [a, b],
            travel
        }),
        (travel(), 0.0f32..=1.0)
            .prop_map(|(travel, saturation)| Effect::Rainbow { travel, saturation }),
        (colour(), colour(), 0.0f32..=1.0, period.clone()).prop_map(
            |(colour, background, density, period_ms)| {
                Effect::Twinkle {
                    colour,
                    background,
                    density,
                    period_ms,
                }
            }
        ),
        prop::collection::vec((0.0f64..1440.0, colour()), 1..4).prop_map(|mut stops| {
            stops.sort_by(|a, b| a.0.total_cmp(&b.0));
            Effect::Sky { stops }
        }),
    ]
}

fn layer() -> impl Strategy<Value = Layer> {
    let blend = prop_oneof![
        Just(Blend::Over),
        Just(Blend::Add),
        Just(Blend::Max),
        Just(Blend::Multiply)
    ];
    (effect(), 0.0f32..=1.5, blend).prop_map(|(effect, brightness, blend)| Layer {
        target: Target::Group(GroupId::new("all").unwrap()),
        effect,
        brightness,
        blend,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_rendered_level_exceeds_the_site_caps(
        layers in prop::collection::vec(layer(), 1..4),
        t_ms in 0i64..4_102_444_800_000,
        master in 0.0f64..=1.0,
    ) {
        let (lib, layouts) = &*SITES;
        for (site, layout) in lib.sites.values().zip(layouts) {
            let scene = Scene {
                id: SceneId::new("any").unwrap(),
                site: SiteId::new(site.id.as_str()).unwrap(),
                name: nightscape_core::model::Name { ko: "임의".into(), en: None },
                fade: Duration::ZERO,
                layers: layers.clone(),
            };
            let compiled = CompiledScene::new(&scene, layout);
            let channels = render_channels(&compiled, layout, t_ms, Level::from_pct(master * 100.0).unwrap());
            let max = site.limits.max_output.get();
            for f in layout.fixtures() {
                // Every emitter's light (channel fraction through the fixture's curve) stays
                // under the cap: the site's maximum, and the zone's for the 100 cd/m² fixture
                // (zone 2 allows 60 cd/m²).
                let cap = if f.id.as_str() == "rgb" { max.min(0.6) } else { max };
                let one = decode(layout, &{
                    let mut c = vec![0u8; layout.channel_count()];
                    c[f.channels.clone()].copy_from_slice(&channels[f.channels.clone()]);
                    c
                }).unwrap()[f.pixels.start];
                // The brightest emitter alone cannot exceed the cap: check each slot.
                let slots = f.encoder.slots();
                for k in 0..slots {
                    let mut only = vec![0u8; slots];
                    only[k] = channels[f.channels.start + k];
                    let light = f.encoder.read(&only).max_component();
                    prop_assert!(light <= cap as f32 + 0.01, "{} slot {k}: {light} > {cap} ({one:?})", f.id);
                }
            }
            let shown = decode(layout, &channels).unwrap();
            for (p, c) in shown.into_iter().enumerate() {
                let f = layout.fixtures().iter().find(|f| f.pixels.contains(&p)).unwrap();
                // Near the bottom of the range one 8-bit step moves a colour by more than the
                // limits' tolerances; the levels there are checked above.
                if c.max_component() < 0.2 {
                    continue;
                }
                // Emitted light is checked with the slack that 8-bit steps and emitter mixing need
                // (the clamp itself is exact: see `clamped_colours_break_no_limit`).
                let breach = layout.limits().breach_by(c, 0.03);
                prop_assert!(breach.is_none(), "{} {}: {c:?} breaks {breach:?}", site.id, f.id);
            }
        }
    }

    #[test]
    fn slowed_effects_respect_the_flash_limit(effect in effect(), max in 0.0f64..3.0) {
        prop_assert!(effect.slowed_to(max).change_hz() <= max + 1e-9);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn clamped_colours_break_no_limit(c in colour(), k in 0.0f32..=1.0) {
        // Inputs may be any light up to full; the renderer scales brighter light down first.
        let (lib, layouts) = &*SITES;
        for (site, layout) in lib.sites.values().zip(layouts) {
            let limits = layout.limits();
            let c = c.scale(k);
            let clamped = limits.clamp(c);
            prop_assert!(limits.breach(clamped).is_none(), "{}: {c:?} → {clamped:?} breaks {:?}", site.id, limits.breach(clamped));
            // The frame path's table breaks no limit either. (It differs from the exact clamp
            // only next to a band's edge, where it blends towards the safer side.)
            let fast = limits.apply(c);
            let breach = limits.breach_by(fast, 0.01);
            prop_assert!(breach.is_none(), "{}: {c:?}: table {fast:?} breaks {breach:?}", site.id);
        }
    }
}
