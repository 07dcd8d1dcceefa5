//! Nothing panics on live input or a plan change: arbitrary bytes into `decode` and through
//! the output map's sinks, and arbitrary plans swapped in the middle of a fade.
//!
//! The case counts are small for CI; run many more by hand with
//! `PROPTEST_CASES=100000 cargo test --release -p nightscape-core --test it live::`.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use nightscape_core::colour::Rgb;
use nightscape_core::model::{GroupId, Level, Name, SiteId};
use nightscape_core::output::OutputMap;
use nightscape_core::playback::Playback;
use nightscape_core::render::{CompiledScene, Frame, Layout, decode};
use nightscape_core::scene::{Blend, Layer, Scene, SceneId, Target};
use nightscape_core::show::{ShowLibrary, SourceFile, check};
use proptest::prelude::*;

use crate::caps::effect;
use crate::common;

/// `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// The shipped sites' layouts and output maps, built once.
static SHIPPED: LazyLock<Vec<(Layout, OutputMap)>> = LazyLock::new(|| {
    let checked = check(&common::shipped_library());
    let lib = checked.library;
    lib.sites
        .keys()
        .map(|id| (lib.layout(id).unwrap(), lib.output_map(id).unwrap()))
        .collect()
});

/// One fixture of a random site: which id of a shared pool, its kind and size, where.
#[derive(Debug, Clone)]
struct FixtureSpec {
    id: usize,
    kind: usize,
    pixels: u32,
    x: f64,
}

const KINDS: [&str; 6] = ["rgb", "rgbw", "rgba", "cct", "dimmer", "pixel-strip"];

fn fixture_spec() -> impl Strategy<Value = FixtureSpec> {
    (0usize..16, 0usize..KINDS.len(), 1u32..400, -50.0f64..50.0).prop_map(
        |(id, kind, pixels, x)| FixtureSpec {
            id,
            kind,
            pixels,
            x,
        },
    )
}

/// A site made of `specs` (ids drawn from a pool of 16, so two sites share some fixtures,
/// sometimes with another kind or size), all in group `all`, on one sACN controller.
fn random_site(specs: &[FixtureSpec]) -> ShowLibrary {
    let mut seen = std::collections::BTreeSet::new();
    let mut text = String::from(
        "[[controllers]]\nid = \"px\"\ngateway = \"gw\"\nsacn = { universe = 1, universes = 64 }\n",
    );
    let (mut universe, mut address) = (1u32, 1u32);
    let mut ids = Vec::new();
    for f in specs.iter().filter(|f| seen.insert(f.id)) {
        let kind = KINDS[f.kind];
        let extra = match kind {
            "pixel-strip" => format!(
                "pixels = {}\nline = [[{}, 0.0], [{}, 3.0]]\n",
                f.pixels,
                f.x,
                f.x + 10.0
            ),
            "cct" => format!("white_k = [2700.0, 6500.0]\nat = [{}, 1.0]\n", f.x),
            _ => format!("at = [{}, 1.0]\n", f.x),
        };
        // Strips start a universe of their own; the others take the next free slots.
        if kind == "pixel-strip" || address + 4 > 512 {
            universe += if address > 1 { 1 } else { 0 };
            address = 1;
        }
        text += &format!(
            "[[fixtures]]\nid = \"f{}\"\ntype = \"{kind}\"\ncontroller = \"px\"\nuniverse = {universe}\naddress = {address}\npower_w = 10.0\n{extra}",
            f.id
        );
        if kind == "pixel-strip" {
            universe += f.pixels.div_ceil(170);
            address = 1;
        } else {
            address += 4;
        }
        ids.push(format!("\"f{}\"", f.id));
    }
    text += &format!(
        "[[groups]]\nid = \"all\"\nfixtures = [{}]\n",
        ids.join(", ")
    );
    let checked = check(&[
        common::zones(),
        SourceFile {
            path: "sites/s/site.toml".into(),
            text: common::site_toml(
                "park",
                (36.2, 127.1, "Asia/Seoul"),
                3,
                "curfew = \"none\"",
                &text,
            ),
        },
    ]);
    assert_eq!(
        checked.error_count(),
        0,
        "{:#?}\n{text}",
        checked.diagnostics
    );
    checked.library
}

fn scene(id: &str, layers: Vec<Layer>) -> Scene {
    Scene {
        id: SceneId::new(id).unwrap(),
        site: SiteId::new("s").unwrap(),
        name: Name {
            ko: "임의".into(),
            en: None,
        },
        fade: Duration::ZERO,
        layers,
    }
}

fn layer() -> impl Strategy<Value = Layer> {
    (effect(), 0.0f32..=1.0).prop_map(|(effect, brightness)| Layer {
        target: Target::Group(GroupId::new("all").unwrap()),
        effect,
        brightness,
        blend: Blend::Over,
    })
}

fn layout_of(lib: &ShowLibrary) -> Layout {
    let site = lib.sites.values().next().unwrap();
    Layout::new(site, lib.zone_rule(site))
}

fn close(a: Rgb, b: Rgb) -> bool {
    (a.r - b.r).abs() < 1e-5 && (a.g - b.g).abs() < 1e-5 && (a.b - b.b).abs() < 1e-5
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(500)))]

    #[test]
    fn any_bytes_decode_or_are_refused(
        site in 0usize..12,
        bytes in prop::collection::vec(any::<u8>(), 0..4000),
        received in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let (layout, map) = &SHIPPED[site];
        // Exactly the layout's length decodes; anything else is a typed refusal.
        let n = layout.channel_count();
        let mut frame = bytes.clone();
        frame.resize(n, 0);
        prop_assert!(decode(layout, &frame).is_ok());
        if bytes.len() != n {
            prop_assert!(decode(layout, &bytes).is_err());
        }
        // Whatever a controller receives, of whatever length, lands in place.
        let mut channels = vec![0u8; n];
        for controller in map.controllers() {
            for sink in &controller.sinks {
                sink.scatter(&received, &mut channels);
                sink.gather(&bytes, &mut frame);
            }
        }
        prop_assert_eq!(decode(layout, &channels).unwrap().len(), layout.pixel_count());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(40)))]

    #[test]
    fn plans_swapped_mid_fade_continue_from_what_is_on_output(
        old in prop::collection::vec(fixture_spec(), 1..8),
        new in prop::collection::vec(fixture_spec(), 1..8),
        first in prop::collection::vec(layer(), 1..3),
        second in prop::collection::vec(layer(), 1..3),
        fade_ms in 0u64..20_000,
        swap_after_ms in 0i64..25_000,
        rebind in any::<bool>(),
    ) {
        let (lib_a, lib_b) = (random_site(&old), random_site(&new));
        let (la, lb) = (layout_of(&lib_a), layout_of(&lib_b));
        let (s1, s2) = (scene("one", first), scene("two", second));
        let t0 = 1_798_000_000_000i64;
        let mut playback = Playback::new();
        playback.cue(Some(Arc::new(CompiledScene::new(&s1, &la))), Level::FULL, t0, Duration::ZERO);
        playback.cue(
            Some(Arc::new(CompiledScene::new(&s2, &la))),
            Level::FULL,
            t0 + 1000,
            Duration::from_millis(fade_ms),
        );
        let t1 = t0 + 1000 + swap_after_ms;
        let mut before = Frame::new(&la);
        playback.render(&la, t1, &mut before);

        let on_b = |id: &SceneId| {
            rebind.then(|| {
                let s = if id.as_str() == "one" { &s1 } else { &s2 };
                Arc::new(CompiledScene::new(s, &lb))
            })
        };
        playback.change_layout(&la, &lb, t1, on_b);
        let mut after = Frame::new(&lb);
        playback.render(&lb, t1, &mut after);
        prop_assert_eq!(after.pixels.len(), lb.pixel_count());

        if rebind {
            // The same cues, re-bound: exactly what a playback that always ran on the new
            // layout shows.
            let mut fresh = Playback::new();
            fresh.cue(Some(Arc::new(CompiledScene::new(&s1, &lb))), Level::FULL, t0, Duration::ZERO);
            fresh.cue(
                Some(Arc::new(CompiledScene::new(&s2, &lb))),
                Level::FULL,
                t0 + 1000,
                Duration::from_millis(fade_ms),
            );
            let mut expected = Frame::new(&lb);
            fresh.render(&lb, t1, &mut expected);
            prop_assert_eq!(&after, &expected);
        } else {
            // Held as it was: fixtures of the same id and size keep their light, others are
            // dark until the next cue.
            for f in lb.fixtures() {
                let old = la
                    .fixture_index(&f.id)
                    .map(|i| &la.fixtures()[i])
                    .filter(|o| o.pixels.len() == f.pixels.len());
                for (k, p) in f.pixels.clone().enumerate() {
                    let want = old.map_or(Rgb::BLACK, |o| before.pixels[o.pixels.start + k]);
                    prop_assert!(close(after.pixels[p], want), "{}: {:?} != {:?}", f.id, after.pixels[p], want);
                }
            }
        }
        // A new cue on the new layout fades from there, and nothing is ever rendered on a
        // layout it was not compiled for.
        playback.cue(Some(Arc::new(CompiledScene::new(&s1, &lb))), Level::FULL, t1, Duration::from_millis(fade_ms));
        for dt in [0, 1, fade_ms as i64 / 2, fade_ms as i64, fade_ms as i64 + 1000] {
            playback.render(&lb, t1 + dt, &mut after);
        }
        prop_assert_eq!(playback.mismatches(), 0);
        // A scene of the old layout handed to the new one by mistake is dark, not a panic.
        playback.cue(Some(Arc::new(CompiledScene::new(&s2, &la))), Level::FULL, t1 + 50_000, Duration::ZERO);
        playback.render(&lb, t1 + 50_000, &mut after);
        if la.fingerprint() != lb.fingerprint() {
            prop_assert!(after.pixels.iter().all(|c| *c == Rgb::BLACK));
            prop_assert_eq!(playback.mismatches(), 1);
        }
    }
}
