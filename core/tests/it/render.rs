//! The renderer: effects, encodings, limits and transitions on small sites built in memory,
//! snapshots of the shipped scenes, and a property test of the caps.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use nightscape_core::colour::{Rgb, kelvin_to_rgb};
use nightscape_core::model::Level;
use nightscape_core::playback::Playback;
use nightscape_core::render::{CompiledScene, Frame, Layout, decode, render, render_channels};
use nightscape_core::scene::SceneId;
use nightscape_core::show::{ShowLibrary, SourceFile, check};

/// A library of one site (`site` is the body after its header) and its `scenes`.
fn library(limits: &str, fixtures: &str, scenes: &[(&str, &str)]) -> ShowLibrary {
    let rest = format!(
        "[[controllers]]\nid = \"px\"\ngateway = \"gw\"\nsacn = {{ universe = 1, universes = 8 }}\n{fixtures}"
    );
    let site = common::site_toml("building", (36.19, 127.1, "Asia/Seoul"), 4, limits, &rest);
    let mut sources = vec![
        common::zones(),
        SourceFile {
            path: "sites/test/site.toml".into(),
            text: site,
        },
    ];
    for (id, text) in scenes {
        sources.push(SourceFile {
            path: format!("sites/test/scenes/{id}.toml"),
            text: (*text).into(),
        });
    }
    let checked = check(&sources);
    let errors: Vec<String> = checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == nightscape_core::diag::Severity::Error)
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    checked.library
}

/// Four RGB point fixtures at x = 0, 7.5, 15, 22.5 m with the default curve (light ∝
/// value^2.2, so half the light is 186 of 255), in group `row`.
fn row(kind: &str, extra: &str) -> String {
    let mut out = String::new();
    for (i, x) in [0.0, 7.5, 15.0, 22.5].iter().enumerate() {
        out += &format!(
            "[[fixtures]]\nid = \"f{i}\"\ntype = \"{kind}\"\ncontroller = \"px\"\nuniverse = 1\naddress = {}\nat = [{x}, 0.0]\npower_w = 10.0\n{extra}\n",
            1 + 16 * i
        );
    }
    out + "[[groups]]\nid = \"row\"\nrole = \"facade\"\nfixtures = [\"f0\", \"f1\", \"f2\", \"f3\"]\n"
}

fn scene(layer: &str) -> String {
    format!("name = {{ ko = \"장면\" }}\n[[layers]]\ngroup = \"row\"\n{layer}\n")
}

fn compiled(lib: &ShowLibrary, id: &str) -> (Layout, CompiledScene) {
    let scene = &lib.scenes[&SceneId::new(id).unwrap()];
    let site = &lib.sites[&scene.site];
    let layout = Layout::new(site, lib.zone_rule(site));
    let compiled = CompiledScene::new(scene, &layout);
    (layout, compiled)
}

fn at(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// The first channel of each fixture (red for RGB).
fn reds(lib: &ShowLibrary, id: &str, t: i64) -> Vec<u8> {
    let (layout, scene) = compiled(lib, id);
    let ch = render_channels(&scene, &layout, t, Level::FULL);
    layout
        .fixtures()
        .iter()
        .map(|f| ch[f.channels.start])
        .collect()
}

#[test]
fn wave_phase_in_2040_matches_a_hand_computation() {
    // λ = 30 m at 2 m/s: one period is 15 s. 2040-01-01T00:00:00Z is 2 208 988 800 000 ms
    // since the epoch = 147 265 920 whole periods, so the phase there is exactly 0 and
    // v(x) = ½ + ½·sin(2π·x/30): x = 0, 7.5, 15, 22.5 → ½, 1, ½, 0 → 186, 255, 186, 0.
    let lib = library(
        "",
        &row("rgb", ""),
        &[(
            "w",
            &scene(
                "effect = \"wave\"\ncolours = [\"#000000\", \"#ffffff\"]\nwavelength_m = 30.0\nspeed_mps = 2.0",
            ),
        )],
    );
    let t = at("2040-01-01T00:00:00Z");
    assert_eq!(t, 2_208_988_800_000);
    assert_eq!(reds(&lib, "w", t), vec![186, 255, 186, 0]);
    // A quarter period later the wave has moved 7.5 m east.
    assert_eq!(reds(&lib, "w", t + 3750), vec![0, 186, 255, 186]);
    // And it is the same at the same phase 15 years earlier: nothing drifts.
    let earlier = at("2025-01-01T00:00:00Z");
    assert_eq!((t - earlier) % 15_000, 0);
    assert_eq!(reds(&lib, "w", earlier + 3750), vec![0, 186, 255, 186]);
}

#[test]
fn each_effect_does_what_it_says() {
    let effects = [
        (
            "st",
            "effect = \"static\"\ncolour = \"#ff0000\"\nbrightness_pct = 50",
        ),
        (
            "gr",
            "effect = \"gradient\"\ncolours = [\"#000000\", \"#ff0000\"]",
        ),
        (
            "cy",
            "effect = \"cycle\"\ncolours = [\"#ff0000\", \"#000000\"]\nperiod_s = 2.0",
        ),
        (
            "br",
            "effect = \"breathe\"\ncolour = \"#ff0000\"\nperiod_s = 2.0\ndepth_pct = 100",
        ),
        (
            "ch",
            "effect = \"chase\"\ncolour = \"#ff0000\"\nspeed_mps = 7.5\nwidth_m = 2.0\nspacing_m = 15.0",
        ),
        (
            "tw",
            "effect = \"twinkle\"\ncolour = \"#ff0000\"\ndensity_pct = 50\nperiod_s = 1.0",
        ),
        (
            "sk",
            "effect = \"sky\"\nstops = [{ at = \"18:00\", colour = \"#ff0000\" }, { at = \"20:00\", colour = \"#000000\" }]",
        ),
    ];
    let scenes: Vec<(&str, String)> = effects.iter().map(|(id, l)| (*id, scene(l))).collect();
    let refs: Vec<(&str, &str)> = scenes.iter().map(|(i, s)| (*i, s.as_str())).collect();
    let lib = library("", &row("rgb", ""), &refs);
    let t0 = at("2026-12-24T09:00:00Z"); // 18:00 in Seoul; a whole number of 2 s periods
    assert_eq!(t0 % 2000, 0);
    assert_eq!(reds(&lib, "st", t0), vec![186; 4]);
    // Gradient: from black at the west end to red at the east end, linearly in light
    // (0, ⅓, ⅔, 1 of the light).
    assert_eq!(reds(&lib, "gr", t0), vec![0, 155, 212, 255]);
    // Cycle: red at the start of a period, black half way, red again at the end.
    assert_eq!(reds(&lib, "cy", t0), vec![255; 4]);
    assert_eq!(reds(&lib, "cy", t0 + 1000), vec![0; 4]);
    assert_eq!(reds(&lib, "cy", t0 + 500), vec![186; 4]);
    // Breathe: full, then dark at half a period with full depth.
    assert_eq!(reds(&lib, "br", t0), vec![255; 4]);
    assert_eq!(reds(&lib, "br", t0 + 1000), vec![0; 4]);
    // Chase: pulses every 15 m moving at 7.5 m/s; at t0 (a whole period) centred on 0 and 15.
    assert_eq!(reds(&lib, "ch", t0), vec![255, 0, 255, 0]);
    assert_eq!(reds(&lib, "ch", t0 + 1000), vec![0, 255, 0, 255]);
    // Twinkle is reproducible: the same instant gives the same frame.
    assert_eq!(reds(&lib, "tw", t0 + 123), reds(&lib, "tw", t0 + 123));
    // Sky: at a stop its colour; half way between stops, half way in light.
    assert_eq!(reds(&lib, "sk", t0), vec![255; 4]);
    assert_eq!(reds(&lib, "sk", t0 + 3_600_000), vec![186; 4]);
    assert_eq!(reds(&lib, "sk", t0 + 7_200_000), vec![0; 4]);
    // … and it wraps over midnight back to the first stop (at 18:00 next day = red).
    assert_eq!(reds(&lib, "sk", t0 + 86_400_000), vec![255; 4]);
}

#[test]
fn twinkle_lights_about_its_density_and_rainbow_turns_through_hues() {
    let strip = "[[fixtures]]\nid = \"s\"\ntype = \"pixel-strip\"\ngamma = 1.0\ncontroller = \"px\"\nuniverse = 1\naddress = 1\npixels = 1000\nline = [[0.0, 0.0], [100.0, 0.0]]\npower_w = 100.0\n[[groups]]\nid = \"row\"\nfixtures = [\"s\"]\n";
    let tw = scene("effect = \"twinkle\"\ncolour = \"#ffffff\"\ndensity_pct = 30\nperiod_s = 2.0");
    let rb = scene("effect = \"rainbow\"\nwavelength_m = 100.0\nspeed_mps = 0.0\n");
    let lib = library("", strip, &[("tw", &tw), ("rb", &rb)]);
    let (layout, scene) = compiled(&lib, "tw");
    let mut frame = Frame::new(&layout);
    let mut lit = 0;
    for k in 0..20 {
        render(&scene, &layout, 1_000_000 + k * 1000, &mut frame).unwrap();
        lit += frame
            .pixels
            .iter()
            .filter(|c| c.max_component() > 0.0)
            .count();
    }
    let share = lit as f64 / 20_000.0;
    assert!((0.25..0.35).contains(&share), "{share}");
    let (layout, scene) = compiled(&lib, "rb");
    render(&scene, &layout, 0, &mut frame).unwrap();
    let hue = |i: usize| frame.pixels[i].hue().unwrap();
    assert!(hue(0) < 2.0 && (hue(250) - 90.0).abs() < 2.0 && (hue(500) - 180.0).abs() < 2.0);
}

#[test]
fn encodings_respect_kind_order_bits_and_gamma() {
    let fixtures = r#"
[[fixtures]]
id = "grb"
type = "rgb"
order = "grb"
gamma = 1.0
controller = "px"
universe = 1
address = 1
at = [0.0, 0.0]
power_w = 10.0

[[fixtures]]
id = "wide"
type = "rgb"
bits = 16
gamma = 1.0
controller = "px"
universe = 1
address = 10
at = [1.0, 0.0]
power_w = 10.0

[[fixtures]]
id = "rgbw"
type = "rgbw"
gamma = 1.0
white_k = [4000.0, 4000.0]
controller = "px"
universe = 1
address = 20
at = [2.0, 0.0]
power_w = 10.0

[[fixtures]]
id = "rgba"
type = "rgba"
gamma = 1.0
controller = "px"
universe = 1
address = 30
at = [3.0, 0.0]
power_w = 10.0

[[fixtures]]
id = "cct"
type = "cct"
gamma = 1.0
white_k = [2700.0, 6500.0]
controller = "px"
universe = 1
address = 40
at = [4.0, 0.0]
power_w = 10.0

[[fixtures]]
id = "curve"
type = "dimmer"
white_k = [3000.0, 3000.0]
controller = "px"
universe = 1
address = 50
at = [5.0, 0.0]
power_w = 10.0

[[groups]]
id = "all"
fixtures = ["grb", "wide", "rgbw", "rgba", "cct", "curve"]
"#;
    let lib = library("", fixtures, &[]);
    let site = lib.sites.values().next().unwrap();
    let layout = Layout::new(site, None);
    let encode = |fixture: usize, c: Rgb| {
        let f = &layout.fixtures()[fixture];
        let mut out = vec![0; f.encoder.slots()];
        f.encoder.write(c, &mut out);
        out
    };
    // Order: red goes to the second slot of a GRB fixture.
    assert_eq!(encode(0, Rgb::new(1.0, 0.0, 0.0)), vec![0, 255, 0]);
    // 16-bit: coarse then fine, big-endian; ¼ is 16384 = 0x40 0x00.
    assert_eq!(
        encode(1, Rgb::new(0.25, 0.0, 1.0)),
        vec![0x40, 0x00, 0, 0, 0xff, 0xff]
    );
    // RGBW: the W emitter's own white comes out of W alone.
    assert_eq!(
        encode(2, kelvin_to_rgb(4000.0).scale(0.25)),
        vec![0, 0, 0, 64]
    );
    // RGBA: amber comes out of A alone.
    assert_eq!(encode(3, Rgb::new(1.0, 0.45, 0.0)), vec![0, 0, 0, 255]);
    // CCT: the warm white is all warm, the cool white all cool, a middle white both.
    // (McCamy's estimate of a 2700 K white is a few kelvin off, hence "almost".)
    let warm = encode(4, kelvin_to_rgb(2700.0));
    assert!(warm[0] >= 250 && warm[1] <= 3, "{warm:?}");
    assert_eq!(encode(4, kelvin_to_rgb(6500.0))[0], 0);
    let mid = encode(4, kelvin_to_rgb(4000.0).scale(0.5));
    assert!(mid[0] > 30 && mid[1] > 30, "{mid:?}");
    // Gamma 2.2 (the default): half the light is 0.5^(1/2.2) = 0.73 of the range = 186.
    let half = kelvin_to_rgb(3000.0).scale(0.5);
    assert_eq!(encode(5, half), vec![186]);
    // Decoding gives back what was encoded, within a step of 8-bit quantization.
    for (i, c) in [
        (0, Rgb::new(0.2, 0.5, 0.9)),
        (2, Rgb::new(0.6, 0.5, 0.4)),
        (3, Rgb::new(0.9, 0.5, 0.1)),
        (5, half),
    ] {
        let f = &layout.fixtures()[i];
        let back = f.encoder.read(&encode(i, c));
        for (a, b) in [(back.r, c.r), (back.g, c.g), (back.b, c.b)] {
            assert!(
                (a - b).abs() < 0.01,
                "fixture {i}: {c:?} came back as {back:?}"
            );
        }
    }
}

#[test]
fn cross_fades_start_from_what_is_on_output_even_mid_fade() {
    let red = scene("effect = \"static\"\ncolour = \"#ff0000\"");
    let black = scene("effect = \"static\"\ncolour = \"#000000\"");
    let wave = scene(
        "effect = \"wave\"\ncolours = [\"#000000\", \"#ffffff\"]\nwavelength_m = 30.0\nspeed_mps = 2.0",
    );
    let lib = library(
        "",
        &row("rgb", ""),
        &[("red", &red), ("black", &black), ("wave", &wave)],
    );
    let (layout, red) = compiled(&lib, "red");
    let black = Arc::new(compiled(&lib, "black").1);
    let wave = Arc::new(compiled(&lib, "wave").1);
    let mut playback = Playback::new();
    let mut frame = Frame::new(&layout);
    let mut sample = |p: &mut Playback, t: i64| {
        p.render(&layout, t, &mut frame);
        frame.pixels.clone()
    };
    playback.cue(Some(Arc::new(red)), Level::FULL, 0, Duration::ZERO);
    assert_eq!(sample(&mut playback, 0)[0], Rgb::new(1.0, 0.0, 0.0));
    playback.cue(Some(black), Level::FULL, 1000, Duration::from_millis(1000));
    let half = sample(&mut playback, 1500);
    assert!((half[0].r - 0.5).abs() < 1e-6);
    // A new cue in the middle of that fade starts from exactly what is shown.
    let before = sample(&mut playback, 1600);
    playback.cue(
        Some(wave.clone()),
        Level::FULL,
        1600,
        Duration::from_millis(2000),
    );
    let after = sample(&mut playback, 1600);
    assert_eq!(before, after);
    // Both old scenes keep contributing while the new one fades in …
    let during = sample(&mut playback, 2600);
    let mut alone = Frame::new(&layout);
    render(&wave, &layout, 2600, &mut alone).unwrap();
    for (d, w) in during.iter().zip(&alone.pixels) {
        // black is fully in by now (its fade ended at 2000), so out = ½·black + ½·wave.
        assert!((d.r - 0.5 * w.r).abs() < 1e-6, "{d:?} vs {w:?}");
    }
    // … and when the fade is over only the new one is left, still moving.
    assert_eq!(sample(&mut playback, 3600), {
        render(&wave, &layout, 3600, &mut alone).unwrap();
        alone.pixels.clone()
    });
    assert!(!playback.fading(3600));
}

#[test]
fn zone_luminance_and_site_maximum_cap_every_emitter() {
    // Zone 4 allows 300 cd/m² at most; a fixture reaching 600 at full is held to half,
    // below the site's own 80 %.
    let lib = library(
        "max_output_pct = 80",
        &row("rgb", "luminance_cd_m2 = 600.0"),
        &[("white", &scene("effect = \"static\"\ncolour = \"#ffffff\""))],
    );
    assert_eq!(reds(&lib, "white", 0), vec![186; 4]);
    let lib = library(
        "max_output_pct = 80",
        &row("rgb", ""),
        &[("white", &scene("effect = \"static\"\ncolour = \"#ffffff\""))],
    );
    assert_eq!(reds(&lib, "white", 0), vec![230; 4]);
}

#[test]
fn shipped_scenes_render_as_recorded() {
    let sources = common::shipped_library();
    let checked = check(&sources);
    assert_eq!(checked.error_count(), 0);
    let lib = &checked.library;
    let t = at("2026-12-24T11:00:00Z"); // 20:00 in Seoul, Christmas Eve
    let mut text = String::new();
    for (id, scene) in &lib.scenes {
        let site = &lib.sites[&scene.site];
        let layout = Layout::new(site, lib.zone_rule(site));
        let compiled = CompiledScene::new(scene, &layout);
        let channels = render_channels(&compiled, &layout, t, Level::FULL);
        let shown = decode(&layout, &channels).unwrap();
        text += &format!("{id} ({} channels)\n", channels.len());
        for f in layout.fixtures() {
            let ch = &channels[f.channels.clone()];
            let head: Vec<String> = ch.iter().take(9).map(|v| format!("{v:02x}")).collect();
            let sum: u64 = ch.iter().map(|&v| u64::from(v)).sum();
            text += &format!(
                "  {:<12} {} … sum {sum:>6}  shows {}\n",
                f.id.as_str(),
                head.join(" "),
                shown[f.pixels.start]
            );
        }
    }
    expect_test::expect_file!["snapshots/shipped-scenes.txt"].assert_eq(&text);
}

/// The drive an encoder reads back from its channels is the linear light it was asked for:
/// half light on a 16-bit dimmer and on an RGB strip drives their emitters at half, not at
/// the gamma-encoded channel value (what a power estimate must follow).
#[test]
fn drive_read_back_is_linear_light_for_16_bit_dimmers_and_rgb_pixels() {
    let checked = check(&common::shipped_library());
    let lib = checked.library;
    let site = &lib.sites[&"nonsan-culture-center".parse().unwrap()];
    let layout = Layout::new(site, None).without_limits();
    let mut frame = Frame::new(&layout);
    // Each fixture at half of its own full white (a warm dimmer's white is not grey).
    for f in layout.fixtures() {
        let half = f.encoder.read(&vec![255; f.encoder.slots()]).scale(0.5);
        for p in f.pixels.clone() {
            frame.pixels[p] = half;
        }
    }
    let mut channels = vec![0; layout.channel_count()];
    nightscape_core::render::encode(&layout, &frame, Level::FULL, &mut channels);
    for id in ["flood-1", "eaves"] {
        let f = &layout.fixtures()[layout.fixture_index(&id.parse().unwrap()).unwrap()];
        let own = &channels[f.channels.clone()];
        let slots = f.encoder.slots();
        let drive: f32 = own
            .chunks_exact(slots)
            .map(|px| f.encoder.drive(px))
            .sum::<f32>()
            / (own.len() / slots) as f32;
        let full = f.encoder.drive(&vec![255; slots]);
        // A dimmer's luminance scale and an RGB pixel's white both put half light at half drive
        // of what full white drives.
        assert!(
            (drive / full - 0.5).abs() < 0.02,
            "{id}: drive {drive} of {full}"
        );
        assert!(
            own.iter().step_by(slots.min(2)).any(|&v| v > 140),
            "{id}: gamma-encoded above half"
        );
    }
}

/// `encode`'s fast paths write exactly what the reference does, byte for byte, for every
/// fixture of every shipped site, with and without limits, on frames of any colours
/// (beyond full and negative included).
#[test]
fn encode_fast_paths_match_the_reference_byte_for_byte() {
    let lib = check(&common::shipped_library()).library;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 * 1.6 - 0.2
    };
    for site in lib.sites.values() {
        let limited = Layout::new(site, lib.zone_rule(site));
        for layout in [limited.without_limits(), limited] {
            let mut frame = Frame::new(&layout);
            for _ in 0..20 {
                for p in frame.pixels.iter_mut() {
                    *p = Rgb::new(next(), next(), next());
                }
                // Runs of equal neighbours too (the clamp's cache).
                let n = frame.pixels.len();
                for p in (0..n).step_by(3).filter(|p| p + 1 < n) {
                    frame.pixels[p + 1] = frame.pixels[p];
                }
                for master in [Level::FULL, Level::from_pct(37.0).unwrap()] {
                    let mut fast = vec![0; layout.channel_count()];
                    let mut reference = vec![0; layout.channel_count()];
                    nightscape_core::render::encode(&layout, &frame, master, &mut fast);
                    nightscape_core::render::encode_reference(
                        &layout,
                        &frame,
                        master,
                        &mut reference,
                    );
                    assert_eq!(fast, reference, "{}", site.id);
                }
            }
        }
    }
}
