//! Lowering scene files, and checking them against their site: targets, effect parameters,
//! colour and flash limits.

use std::time::Duration;

use super::Problems;
use super::file::{BlendFile, EffectFile, LayerFile, SceneFile};
use crate::colour::Rgb;
use crate::diag::{Code, FieldPath};
use crate::limits::ColourLimits;
use crate::model::{GroupId, Role, Site};
use crate::scene::{Blend, Effect, Layer, Palette, Scene, SceneId, Target, Travel};

const DEFAULT_FADE_MS: i64 = 3000;

/// Parameters each effect takes: `(key, required)`. Keys not listed do nothing for it.
fn parameters(effect: EffectFile) -> &'static [(&'static str, bool)] {
    match effect {
        EffectFile::Static => &[("colour", true)],
        EffectFile::Kelvin => &[("kelvin", true)],
        EffectFile::Gradient => &[("colours", true), ("direction_deg", false)],
        EffectFile::Cycle => &[("colours", true), ("period_s", true)],
        EffectFile::Breathe => &[("colour", true), ("period_s", true), ("depth_pct", false)],
        EffectFile::Chase => &[
            ("colour", true),
            ("background", false),
            ("speed_mps", true),
            ("width_m", true),
            ("spacing_m", true),
            ("direction_deg", false),
        ],
        EffectFile::Wave => &[
            ("colours", true),
            ("speed_mps", true),
            ("wavelength_m", true),
            ("direction_deg", false),
        ],
        EffectFile::Rainbow => &[
            ("speed_mps", true),
            ("wavelength_m", true),
            ("direction_deg", false),
            ("saturation_pct", false),
        ],
        EffectFile::Twinkle => &[
            ("colour", true),
            ("background", false),
            ("density_pct", true),
            ("period_s", true),
        ],
        EffectFile::Sky => &[("stops", true)],
    }
}

fn given(layer: &LayerFile) -> Vec<&'static str> {
    let keys: [(&'static str, bool); 14] = [
        ("colour", layer.colour.is_some()),
        ("colours", layer.colours.is_some()),
        ("background", layer.background.is_some()),
        ("kelvin", layer.kelvin.is_some()),
        ("period_s", layer.period_s.is_some()),
        ("speed_mps", layer.speed_mps.is_some()),
        ("wavelength_m", layer.wavelength_m.is_some()),
        ("width_m", layer.width_m.is_some()),
        ("spacing_m", layer.spacing_m.is_some()),
        ("direction_deg", layer.direction_deg.is_some()),
        ("depth_pct", layer.depth_pct.is_some()),
        ("density_pct", layer.density_pct.is_some()),
        ("saturation_pct", layer.saturation_pct.is_some()),
        ("stops", layer.stops.is_some()),
    ];
    keys.into_iter()
        .filter(|(_, g)| *g)
        .map(|(k, _)| k)
        .collect()
}

/// Checks one colour against the site's limits; `Some` when it may be shown.
fn colour(text: &str, limits: &ColourLimits, path: &FieldPath, p: &mut Problems) -> Option<Rgb> {
    match Rgb::parse(text) {
        Err(e) => {
            p.error(Code::BadValue, path, e.to_string());
            None
        }
        Ok(c) => {
            if let Some(breach) = limits.breach(c) {
                let nearest = limits.clamp(c);
                p.error(
                    Code::LimitBroken,
                    path,
                    format!("colour `{text}` {breach}; the nearest allowed is \"{nearest}\""),
                );
                return None;
            }
            Some(c)
        }
    }
}

/// Blends between allowed colours can pass through forbidden ones (cyan to yellow passes
/// green); check the way between each pair.
fn blends(
    colours: &[Rgb],
    texts: &[String],
    wraps: bool,
    limits: &ColourLimits,
    path: &FieldPath,
    p: &mut Problems,
) -> bool {
    let n = colours.len();
    let pairs = if wraps { n } else { n.saturating_sub(1) };
    for i in 0..pairs {
        let j = (i + 1) % n;
        for step in 1..20 {
            let c = colours[i].lerp(colours[j], step as f32 / 20.0);
            if let Some(breach) = limits.breach(c) {
                p.error(
                    Code::LimitBroken,
                    &path.index(j),
                    format!(
                        "the blend from `{}` to `{}` passes through {c}, which {breach}",
                        texts[i], texts[j]
                    ),
                );
                return false;
            }
        }
    }
    true
}

fn positive(
    value: Option<f64>,
    key: &str,
    max: f64,
    path: &FieldPath,
    p: &mut Problems,
) -> Option<f64> {
    let v = value?;
    if !(v.is_finite() && v > 0.0 && v <= max) {
        p.error(
            Code::OutOfRange,
            &path.key(key),
            format!("{key} is {v}; it must be above 0 and at most {max}"),
        );
        return None;
    }
    Some(v)
}

fn pct(
    value: Option<f64>,
    default: f64,
    key: &str,
    path: &FieldPath,
    p: &mut Problems,
) -> Option<f32> {
    let v = value.unwrap_or(default);
    if !(0.0..=100.0).contains(&v) {
        p.error(
            Code::OutOfRange,
            &path.key(key),
            format!("{key} is {v}; it must be between 0 and 100"),
        );
        return None;
    }
    Some((v / 100.0) as f32)
}

pub(crate) fn scene(id: SceneId, site: &Site, file: SceneFile, p: &mut Problems) -> Option<Scene> {
    let root = FieldPath::root();
    let name = super::lower::name(file.name, &root.key("name"), p);
    let fade_ms = file.fade_ms.unwrap_or(DEFAULT_FADE_MS);
    if !(0..=600_000).contains(&fade_ms) {
        p.error(
            Code::OutOfRange,
            &root.key("fade_ms"),
            format!("fade_ms is {fade_ms}; it must be 0 to 600000 (10 minutes)"),
        );
    }
    if file.layers.is_empty() {
        p.error(
            Code::Missing,
            &root,
            "a scene needs at least one [[layers]]",
        );
    }
    let limits = ColourLimits::new(&site.limits);
    let mut layers = Vec::new();
    for (i, layer) in file.layers.iter().enumerate() {
        let path = root.key("layers").index(i);
        if let Some(l) = lower_layer(layer, site, &limits, &path, p) {
            layers.push(l);
        }
    }
    if p.has_errors() {
        return None;
    }
    Some(Scene {
        id,
        site: site.id.clone(),
        name,
        fade: Duration::from_millis(fade_ms as u64),
        layers,
    })
}

fn lower_layer(
    l: &LayerFile,
    site: &Site,
    limits: &ColourLimits,
    path: &FieldPath,
    p: &mut Problems,
) -> Option<Layer> {
    let target = match (&l.group, &l.role) {
        (Some(_), Some(_)) => {
            p.error(
                Code::Conflict,
                &path.key("role"),
                "a layer targets a `group` or a `role`, not both",
            );
            None
        }
        (None, None) => {
            p.error(
                Code::Missing,
                path,
                "say what the layer lights: `group = \"…\"` or `role = \"…\"`",
            );
            None
        }
        (Some(g), None) => {
            let id = GroupId::new(g)
                .ok()
                .filter(|id| site.groups.iter().any(|x| &x.id == id));
            if id.is_none() {
                let known: Vec<&str> = site.groups.iter().map(|g| g.id.as_str()).collect();
                p.error(
                    Code::UnknownRef,
                    &path.key("group"),
                    format!(
                        "site `{}` has no group `{g}` (it has {})",
                        site.id,
                        known.join(", ")
                    ),
                );
            }
            id.map(Target::Group)
        }
        (None, Some(r)) => {
            let role = Role::new(r)
                .ok()
                .filter(|role| site.groups.iter().any(|g| g.role.as_ref() == Some(role)));
            if role.is_none() {
                p.error(
                    Code::UnknownRef,
                    &path.key("role"),
                    format!("no group of site `{}` has role `{r}`", site.id),
                );
            }
            role.map(Target::Role)
        }
    };
    let Some(effect_kind) = super::file::variant::<EffectFile>(&l.effect) else {
        p.error(
            Code::BadValue,
            &path.key("effect"),
            super::not_one_of(&l.effect, "an effect", &super::file::EFFECTS),
        );
        return None;
    };
    let params = parameters(effect_kind);
    let effect_name = l.effect.clone();
    for key in given(l) {
        if !params.iter().any(|(k, _)| *k == key) {
            p.error(
                Code::Conflict,
                &path.key(key),
                format!("`{key}` does nothing for a {effect_name} layer; remove it"),
            );
        }
    }
    for (key, required) in params {
        if *required && !given(l).contains(key) {
            p.error(
                Code::Missing,
                path,
                format!("a {effect_name} layer needs `{key}`"),
            );
        }
    }
    let brightness = pct(l.brightness_pct, 100.0, "brightness_pct", path, p);
    // Only a brightness someone wrote is worth a warning; the cap applies either way.
    if let Some(b) = brightness
        && l.brightness_pct.is_some()
        && f64::from(b) > site.limits.max_output.get() + 1e-6
    {
        p.warning(
            Code::LimitClamped,
            &path.key("brightness_pct"),
            format!("{:.0} % is above the site's maximum output of {:.0} %; the light will be held there", b * 100.0, site.limits.max_output.get() * 100.0),
        );
    }
    let blend = match l.blend {
        None | Some(BlendFile::Over) => Blend::Over,
        Some(BlendFile::Add) => Blend::Add,
        Some(BlendFile::Max) => Blend::Max,
        Some(BlendFile::Multiply) => Blend::Multiply,
    };
    let one = |p: &mut Problems| {
        l.colour
            .as_ref()
            .and_then(|c| colour(c, limits, &path.key("colour"), p))
    };
    let background = |p: &mut Problems| match &l.background {
        None => Some(Rgb::BLACK),
        Some(c) => colour(c, limits, &path.key("background"), p),
    };
    let many = |p: &mut Problems, min: usize, max: usize, wraps: bool| -> Option<Vec<Rgb>> {
        let texts = l.colours.as_ref()?;
        let cp = path.key("colours");
        if texts.len() < min || texts.len() > max {
            let want = if min == max {
                format!("exactly {min}")
            } else {
                format!("{min} to {max}")
            };
            p.error(
                Code::OutOfRange,
                &cp,
                format!(
                    "{effect_name} takes {want} colours; there are {}",
                    texts.len()
                ),
            );
            return None;
        }
        let parsed: Vec<Option<Rgb>> = texts
            .iter()
            .enumerate()
            .map(|(k, t)| colour(t, limits, &cp.index(k), p))
            .collect();
        let colours: Vec<Rgb> = parsed.into_iter().collect::<Option<_>>()?;
        blends(&colours, texts, wraps, limits, &cp, p).then_some(colours)
    };
    let direction = l.direction_deg.unwrap_or(0.0);
    if !(direction.is_finite() && (-360.0..=360.0).contains(&direction)) {
        p.error(
            Code::OutOfRange,
            &path.key("direction_deg"),
            "direction_deg must be between -360 and 360",
        );
    }
    let period_ms =
        |p: &mut Problems| positive(l.period_s, "period_s", 86_400.0, path, p).map(|s| s * 1000.0);
    let speed = |p: &mut Problems| {
        let v = l.speed_mps?;
        if !(v.is_finite() && v.abs() <= 1000.0) {
            p.error(
                Code::OutOfRange,
                &path.key("speed_mps"),
                "speed_mps must be between -1000 and 1000",
            );
            return None;
        }
        Some(v)
    };
    let travel = |p: &mut Problems| {
        Some(Travel {
            speed_mps: speed(p)?,
            wavelength_m: positive(l.wavelength_m, "wavelength_m", 100_000.0, path, p)?,
            direction_deg: direction,
        })
    };
    let effect = match effect_kind {
        EffectFile::Static => one(p).map(|colour| Effect::Static { colour }),
        EffectFile::Kelvin => l.kelvin.and_then(|k| {
            let text = format!("{k}K");
            colour(&text, limits, &path.key("kelvin"), p).map(|_| Effect::Kelvin { kelvin: k })
        }),
        EffectFile::Gradient => {
            many(p, 2, 16, false)
                .and_then(Palette::new)
                .map(|colours| Effect::Gradient {
                    colours,
                    direction_deg: direction,
                })
        }
        EffectFile::Cycle => {
            let colours = many(p, 2, 16, true).and_then(Palette::new);
            let period = period_ms(p);
            Some(Effect::Cycle {
                colours: colours?,
                period_ms: period?,
            })
        }
        EffectFile::Breathe => {
            let c = one(p);
            let period = period_ms(p);
            let depth = pct(l.depth_pct, 50.0, "depth_pct", path, p);
            Some(Effect::Breathe {
                colour: c?,
                period_ms: period?,
                depth: depth?,
            })
        }
        EffectFile::Chase => {
            let c = one(p);
            let bg = background(p);
            let speed = speed(p);
            let width = positive(l.width_m, "width_m", 10_000.0, path, p);
            let spacing = positive(l.spacing_m, "spacing_m", 100_000.0, path, p);
            if let (Some(c), Some(bg)) = (c, bg) {
                blends(
                    &[bg, c],
                    &[
                        l.background.clone().unwrap_or("#000000".into()),
                        l.colour.clone().unwrap_or_default(),
                    ],
                    false,
                    limits,
                    &path.key("colour"),
                    p,
                );
            }
            Some(Effect::Chase {
                colour: c?,
                background: bg?,
                speed_mps: speed?,
                width_m: width?,
                spacing_m: spacing?,
                direction_deg: direction,
            })
        }
        EffectFile::Wave => {
            let colours = many(p, 2, 2, false);
            let travel = travel(p);
            let colours = colours?;
            Some(Effect::Wave {
                colours: [colours[0], colours[1]],
                travel: travel?,
            })
        }
        EffectFile::Rainbow => {
            let travel = travel(p);
            let saturation = pct(l.saturation_pct, 100.0, "saturation_pct", path, p)?;
            let hue = (0..72).map(|k| k as f32 * 5.0).find_map(|h| {
                limits
                    .breach(Rgb::from_hue(h).desaturate_to(saturation))
                    .map(|b| (h, b))
            });
            if let Some((h, breach)) = hue {
                p.error(
                    Code::LimitBroken,
                    &path.key("effect"),
                    format!("a rainbow passes through every hue; at {h:.0}° it {breach}"),
                );
                return None;
            }
            Some(Effect::Rainbow {
                travel: travel?,
                saturation,
            })
        }
        EffectFile::Twinkle => {
            let c = one(p);
            let bg = background(p);
            let density = pct(l.density_pct, 10.0, "density_pct", path, p);
            let period = period_ms(p);
            Some(Effect::Twinkle {
                colour: c?,
                background: bg?,
                density: density?,
                period_ms: period?,
            })
        }
        EffectFile::Sky => {
            let stops = l.stops.as_ref()?;
            let mut out = Vec::new();
            for (k, stop) in stops.iter().enumerate() {
                let sp = path.key("stops").index(k);
                let at = super::lower::time_of_day(&stop.at, &sp.key("at"), p);
                let c = colour(&stop.colour, limits, &sp.key("colour"), p);
                if let (Some(at), Some(c)) = (at, c) {
                    out.push((f64::from(at.minutes()), c, stop.colour.clone()));
                }
            }
            if stops.is_empty() {
                p.error(
                    Code::Missing,
                    &path.key("stops"),
                    "a sky needs at least one stop",
                );
            }
            out.sort_by(|a, b| a.0.total_cmp(&b.0));
            if out.windows(2).any(|w| w[0].0 == w[1].0) {
                p.error(
                    Code::DuplicateId,
                    &path.key("stops"),
                    "two stops are at the same time",
                );
            }
            let colours: Vec<Rgb> = out.iter().map(|s| s.1).collect();
            let texts: Vec<String> = out.iter().map(|s| s.2.clone()).collect();
            blends(&colours, &texts, true, limits, &path.key("stops"), p);
            Some(Effect::Sky {
                stops: out.into_iter().map(|(m, c, _)| (m, c)).collect(),
            })
        }
    };
    let effect = effect?;
    let hz = effect.change_hz();
    let max = site.limits.max_flash_hz;
    if hz > max + 1e-9 {
        let key = match effect_kind {
            EffectFile::Chase | EffectFile::Wave | EffectFile::Rainbow => "speed_mps",
            _ => "period_s",
        };
        p.error(
            Code::LimitBroken,
            &path.key(key),
            format!(
                "the {effect_name} changes the light {hz:.2} times a second; the site allows at most {max} (flash limit): {}",
                match effect_kind {
                    EffectFile::Chase | EffectFile::Wave | EffectFile::Rainbow => format!(
                        "slow it to speed_mps = {:.2} or less",
                        l.speed_mps.unwrap_or(0.0).abs() * max / hz
                    ),
                    _ => format!("make period_s {:.1} or more", l.period_s.unwrap_or(0.0) * hz / max.max(1e-9)),
                }
            ),
        );
        return None;
    }
    Some(Layer {
        target: target?,
        effect,
        brightness: brightness?,
        blend,
    })
}
