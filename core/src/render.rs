//! The renderer: scene + layout + time → channel values.
//!
//! [`Layout`] is a site compiled for output: every pixel's position, every fixture's slice
//! of the channel buffer and how colour becomes its channels. [`CompiledScene`] is a scene
//! bound to a layout, with each layer's pixels and projected coordinates precomputed and
//! its effects slowed to the site's flash limit. [`render`] fills a [`Frame`] of linear
//! colours for an instant; [`encode`] applies the site's limits and writes channel values.
//! Everything is a pure function of its arguments: time is integer milliseconds since the
//! Unix epoch, and phases are taken as exact remainders in `f64` before any `f32` maths, so a
//! wave has the same phase in 2040 as a hand computation says.

use std::ops::Range;
use std::sync::Arc;

use crate::colour::{self, Rgb};
use crate::limits::ColourLimits;
use crate::model::{
    Bits, Emitter, FixtureId, FixtureKind, GroupId, Level, Role, Shape, Site, SiteId, ZoneRule,
};
use crate::scene::{Blend, Effect, Layer, Scene, SceneId, Target};

/// The linear RGB of an amber emitter at full.
const AMBER: Rgb = Rgb::new(1.0, 0.45, 0.0);
/// The white of a dimmer or W emitter whose file gives none.
const DEFAULT_WHITE_K: f64 = 4000.0;
/// Resolution of the output curve, in steps of √level.
const CURVE_STEPS: usize = 1024;

/// How a fixture turns light into channel values: emitters, order, bit depth, curve, cap.
#[derive(Debug, Clone)]
pub struct Encoder {
    mix: Mix,
    /// For each emitter of `mix` (in its canonical order), its position in the pixel's slots.
    position: [u8; 4],
    emitters: u8,
    sixteen: bool,
    curve: Arc<Curve>,
    gamma: f32,
    /// Highest emitter level, 0–1: the site's maximum output and the zone's luminance cap.
    cap: f32,
}

/// The emitters of a pixel, in canonical order, with what each emits at full.
#[derive(Debug, Clone)]
enum Mix {
    Dimmer {
        white: Rgb,
        luminance: f32,
    },
    /// `mireds[k]` is the colour temperature (in mireds) that the fixture shows with a
    /// share `k / CCT_STEPS` of cool white; mixing is linear in light, not in mireds.
    Cct {
        warm: Rgb,
        cool: Rgb,
        mireds: Arc<[f64]>,
    },
    Rgb,
    Rgbw {
        white: Rgb,
    },
    Rgba,
}

impl Mix {
    fn canonical(&self) -> &'static [Emitter] {
        use Emitter::*;
        match self {
            Mix::Dimmer { .. } => &[Intensity],
            Mix::Cct { .. } => &[Warm, Cool],
            Mix::Rgb => &[Red, Green, Blue],
            Mix::Rgbw { .. } => &[Red, Green, Blue, White],
            Mix::Rgba => &[Red, Green, Blue, Amber],
        }
    }

    /// Emitter levels (linear, 0–1 before capping) that show `c`.
    #[inline]
    fn levels(&self, c: Rgb) -> [f32; 4] {
        match self {
            Mix::Rgb => [c.r, c.g, c.b, 0.0],
            Mix::Rgbw { white } => {
                let w = (c.r / white.r)
                    .min(c.g / white.g)
                    .min(c.b / white.b)
                    .clamp(0.0, 1.0);
                [c.r - w * white.r, c.g - w * white.g, c.b - w * white.b, w]
            }
            Mix::Rgba => {
                let a = c.r.min(c.g / AMBER.g).clamp(0.0, 1.0);
                [c.r - a, c.g - a * AMBER.g, c.b, a]
            }
            Mix::Dimmer { luminance, .. } => [c.luminance() / luminance, 0.0, 0.0, 0.0],
            Mix::Cct { warm, cool, mireds } => {
                let y = c.luminance();
                if y <= 0.0 {
                    return [0.0; 4];
                }
                let mired = colour::cct_of(c).map_or(mireds[0], |k| 1e6 / k);
                let f = cool_share(mireds, mired);
                let mix = warm.lerp(*cool, f);
                let level = y / mix.luminance();
                let (w, k) = (level * (1.0 - f), level * f);
                let top = w.max(k);
                if top > 1.0 {
                    [w / top, k / top, 0.0, 0.0]
                } else {
                    [w, k, 0.0, 0.0]
                }
            }
        }
    }

    /// What the emitters at `levels` show together.
    fn emitted(&self, levels: [f32; 4]) -> Rgb {
        let add = |a: Rgb, b: Rgb, k: f32| Rgb::new(a.r + b.r * k, a.g + b.g * k, a.b + b.b * k);
        match self {
            Mix::Rgb => Rgb::new(levels[0], levels[1], levels[2]),
            Mix::Rgbw { white } => {
                add(Rgb::new(levels[0], levels[1], levels[2]), *white, levels[3])
            }
            Mix::Rgba => add(Rgb::new(levels[0], levels[1], levels[2]), AMBER, levels[3]),
            Mix::Dimmer { white, .. } => white.scale(levels[0]),
            Mix::Cct { warm, cool, .. } => add(warm.scale(levels[0]), *cool, levels[1]),
        }
    }
}

const CCT_STEPS: usize = 64;

/// The colour temperature, in mireds, of each mix of a warm and a cool white.
fn cct_table(warm: Rgb, cool: Rgb) -> Arc<[f64]> {
    (0..=CCT_STEPS)
        .map(|k| {
            let mix = warm.lerp(cool, k as f32 / CCT_STEPS as f32);
            colour::cct_of(mix).map_or(0.0, |kelvin| 1e6 / kelvin)
        })
        .collect()
}

/// The share of cool white that shows `mired`, interpolated in the table (which falls from
/// the warm end to the cool end); targets beyond the fixture's range clamp to its ends.
fn cool_share(mireds: &[f64], mired: f64) -> f32 {
    let n = mireds.len() - 1;
    if mired >= mireds[0] {
        return 0.0;
    }
    if mired <= mireds[n] {
        return 1.0;
    }
    let k = mireds.partition_point(|&m| m > mired).clamp(1, n);
    let (a, b) = (mireds[k - 1], mireds[k]);
    let within = if a > b { (a - mired) / (a - b) } else { 0.0 };
    ((k - 1) as f64 + within) as f32 / n as f32
}

/// Channel value (0–65535) as a function of √level, sampled; interpolated between samples.
#[derive(Debug)]
struct Curve {
    gamma_bits: u32,
    samples: Vec<f32>,
    /// 8-bit values directly, on a grid fine enough that its steps are a small fraction of
    /// one output step (the curve is nearly straight in √level).
    bytes: Vec<u8>,
}

const BYTE_STEPS: usize = 4096;

impl Curve {
    fn new(gamma: f64) -> Self {
        let samples = (0..=CURVE_STEPS)
            .map(|i| {
                let s = i as f64 / CURVE_STEPS as f64;
                (65535.0 * colour::powf_pos(s, 2.0 / gamma)) as f32
            })
            .collect();
        let bytes = (0..=BYTE_STEPS)
            .map(|i| {
                let s = i as f64 / BYTE_STEPS as f64;
                (255.0 * colour::powf_pos(s, 2.0 / gamma) + 0.5) as u8
            })
            .collect();
        Curve {
            gamma_bits: (gamma as f32).to_bits(),
            samples,
            bytes,
        }
    }

    #[inline]
    fn byte(&self, level: f32) -> u8 {
        let i = (level.clamp(0.0, 1.0).sqrt() * BYTE_STEPS as f32 + 0.5) as usize;
        self.bytes[i.min(BYTE_STEPS)]
    }

    #[inline]
    fn value(&self, level: f32) -> u16 {
        let x = level.clamp(0.0, 1.0).sqrt() * CURVE_STEPS as f32;
        let i = (x as usize).min(CURVE_STEPS - 1);
        let f = x - i as f32;
        let v = self.samples[i] + (self.samples[i + 1] - self.samples[i]) * f;
        (v + 0.5) as u16
    }
}

impl Encoder {
    /// Channels one pixel takes.
    pub fn slots(&self) -> usize {
        usize::from(self.emitters) * if self.sixteen { 2 } else { 1 }
    }

    /// Writes the channels of one pixel showing `c` (already within the colour limits).
    #[inline]
    pub fn write(&self, c: Rgb, out: &mut [u8]) {
        let levels = self.mix.levels(c);
        let n = usize::from(self.emitters);
        // Over the cap, all emitters dim together so the colour stays what it was.
        let top = levels[..n].iter().copied().fold(0.0f32, f32::max);
        let k = if top > self.cap { self.cap / top } else { 1.0 };
        for (e, level) in levels.iter().enumerate().take(n) {
            let p = usize::from(self.position[e]);
            if self.sixteen {
                let v = self.curve.value(level * k);
                out[2 * p] = (v >> 8) as u8;
                out[2 * p + 1] = v as u8;
            } else {
                out[p] = self.curve.byte(level * k);
            }
        }
    }

    /// [`write`](Self::write) for an RGB pixel at 8 bits ([`is_rgb8`](Self::is_rgb8)): the same
    /// arithmetic, without the dispatch on mix and depth.
    #[inline(always)]
    fn write_rgb8(&self, c: Rgb, out: &mut [u8]) {
        let top = 0.0f32.max(c.r).max(c.g).max(c.b);
        let k = if top > self.cap { self.cap / top } else { 1.0 };
        let curve = &*self.curve;
        out[usize::from(self.position[0])] = curve.byte(c.r * k);
        out[usize::from(self.position[1])] = curve.byte(c.g * k);
        out[usize::from(self.position[2])] = curve.byte(c.b * k);
    }

    fn is_rgb8(&self) -> bool {
        matches!(self.mix, Mix::Rgb) && !self.sixteen
    }

    /// What one pixel shows for its channel values: the inverse of [`write`](Self::write).
    pub fn read(&self, channels: &[u8]) -> Rgb {
        self.mix.emitted(self.levels_of(channels))
    }

    /// How hard one pixel drives its emitters for its channel values: their mean linear
    /// level, 0–1 — what its power draw follows (a rated wattage is all emitters at full).
    pub fn drive(&self, channels: &[u8]) -> f32 {
        let n = usize::from(self.emitters).max(1);
        self.levels_of(channels)[..n].iter().sum::<f32>() / n as f32
    }

    /// Each emitter's linear level for the pixel's channel values.
    fn levels_of(&self, channels: &[u8]) -> [f32; 4] {
        let mut levels = [0.0f32; 4];
        for (e, level) in levels
            .iter_mut()
            .enumerate()
            .take(usize::from(self.emitters))
        {
            let p = usize::from(self.position[e]);
            let fraction = if self.sixteen {
                f64::from(u16::from_be_bytes([channels[2 * p], channels[2 * p + 1]])) / 65535.0
            } else {
                f64::from(channels[p]) / 255.0
            };
            *level = colour::powf_pos(fraction, f64::from(self.gamma)) as f32;
        }
        levels
    }
}

/// Pixels of a fixture [`Layout::fixture_drive`] reads at most.
pub const DRIVE_SAMPLES: usize = 64;

/// One fixture's share of the pixel list and the channel buffer.
#[derive(Debug, Clone)]
pub struct FixtureOut {
    pub id: FixtureId,
    pub pixels: Range<usize>,
    pub channels: Range<usize>,
    pub encoder: Encoder,
}

#[derive(Debug, Clone)]
struct GroupOut {
    id: GroupId,
    role: Option<Role>,
    fixtures: Vec<usize>,
}

/// A site compiled for output. Its channel numbering is the [`OutputMap`]'s: fixtures in the
/// site's order, each fixture's pixels one after another.
///
/// [`OutputMap`]: crate::output::OutputMap
#[derive(Debug, Clone)]
pub struct Layout {
    site: SiteId,
    time_zone: jiff::tz::TimeZone,
    fixtures: Vec<FixtureOut>,
    /// Position of every pixel in metres, in fixture order.
    positions: Vec<[f32; 2]>,
    channel_count: usize,
    limits: ColourLimits,
    max_flash_hz: f64,
    groups: Vec<GroupOut>,
    fingerprint: u64,
}

/// A scene compiled for one layout was rendered on another (a plan changed under it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("scene `{0}` was compiled for another layout; compile it again for this one")]
pub struct LayoutMismatch(pub u64);

/// Channel values that do not fit a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{got} channel values for a layout of {expected}")]
pub struct FrameLengthError {
    pub expected: usize,
    pub got: usize,
}

/// FNV-1a, for layout fingerprints: the same layout gives the same number on any machine.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(mut self, bytes: &[u8]) -> Fnv {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    fn num(self, n: u64) -> Fnv {
        self.bytes(&n.to_le_bytes())
    }
}

impl Layout {
    /// Compiles `site` for output. `zone` (the site's zone rule) caps fixtures whose
    /// commissioning luminance would exceed the zone's maximum.
    pub fn new(site: &Site, zone: Option<&ZoneRule>) -> Layout {
        let mut curves: Vec<Arc<Curve>> = Vec::new();
        let mut fixtures = Vec::new();
        let mut positions = Vec::new();
        let channel_ranges = crate::output::fixture_channels(&site.fixtures);
        let site_cap = site.limits.max_output.get();
        for (f, channels) in site.fixtures.iter().zip(channel_ranges) {
            let white =
                |k: Option<(f64, f64)>| colour::kelvin_to_rgb(k.map_or(DEFAULT_WHITE_K, |w| w.0));
            let mix = match f.kind {
                FixtureKind::Dimmer => {
                    let white = white(f.white_k);
                    Mix::Dimmer {
                        white,
                        luminance: white.luminance(),
                    }
                }
                FixtureKind::Cct => {
                    let (warm_k, cool_k) = f.white_k.unwrap_or((2700.0, 6500.0));
                    let warm = colour::kelvin_to_rgb(warm_k);
                    let cool = colour::kelvin_to_rgb(cool_k);
                    Mix::Cct {
                        warm,
                        cool,
                        mireds: cct_table(warm, cool),
                    }
                }
                FixtureKind::Rgb => Mix::Rgb,
                FixtureKind::Rgbw => Mix::Rgbw {
                    white: white(f.white_k),
                },
                FixtureKind::Rgba => Mix::Rgba,
                FixtureKind::PixelStrip { .. } => {
                    if f.kind.default_order().len() == 4 {
                        Mix::Rgbw {
                            white: white(f.white_k),
                        }
                    } else {
                        Mix::Rgb
                    }
                }
            };
            let mut position = [0u8; 4];
            for (e, emitter) in mix.canonical().iter().enumerate() {
                position[e] = f.order.iter().position(|o| o == emitter).unwrap_or(e) as u8;
            }
            let gamma_bits = (f.gamma as f32).to_bits();
            let curve = match curves.iter().find(|c| c.gamma_bits == gamma_bits) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(Curve::new(f.gamma));
                    curves.push(c.clone());
                    c
                }
            };
            let zone_cap = match (zone, f.luminance_cd_m2) {
                (Some(z), Some(l)) if l > 0.0 => (z.max_cd_m2 / l).min(1.0),
                _ => 1.0,
            };
            let encoder = Encoder {
                emitters: mix.canonical().len() as u8,
                mix,
                position,
                sixteen: f.bits == Bits::Sixteen,
                curve,
                gamma: f.gamma as f32,
                cap: site_cap.min(zone_cap) as f32,
            };
            let first_pixel = positions.len();
            let count = f.kind.pixels() as usize;
            match &f.shape {
                Shape::Point(p) => positions.extend((0..count).map(|_| [p[0] as f32, p[1] as f32])),
                Shape::Line(points) => positions.extend(spread(points, count)),
            }
            debug_assert_eq!(encoder.slots() * count, channels.len());
            fixtures.push(FixtureOut {
                id: f.id.clone(),
                pixels: first_pixel..positions.len(),
                channels,
                encoder,
            });
        }
        let channel_count = fixtures.last().map_or(0, |f| f.channels.end);
        let groups: Vec<GroupOut> = site
            .groups
            .iter()
            .map(|g| GroupOut {
                id: g.id.clone(),
                role: g.role.clone(),
                fixtures: g
                    .fixtures
                    .iter()
                    .filter_map(|id| site.fixtures.iter().position(|f| &f.id == id))
                    .collect(),
            })
            .collect();
        let mut print = Fnv::new()
            .bytes(site.id.as_str().as_bytes())
            .num(positions.len() as u64)
            .num(channel_count as u64)
            .num(site.limits.max_flash_hz.to_bits());
        for f in &fixtures {
            print = print
                .bytes(f.id.as_str().as_bytes())
                .num(f.pixels.start as u64)
                .num(f.pixels.end as u64)
                .num(f.channels.start as u64)
                .num(f.channels.end as u64);
        }
        for p in &positions {
            print = print.num(u64::from(p[0].to_bits()) << 32 | u64::from(p[1].to_bits()));
        }
        for g in &groups {
            print = print
                .bytes(g.id.as_str().as_bytes())
                .bytes(g.role.as_ref().map_or("", |r| r.as_str()).as_bytes())
                .num(g.fixtures.len() as u64);
            for i in &g.fixtures {
                print = print.num(*i as u64);
            }
        }
        Layout {
            site: site.id.clone(),
            time_zone: site.time_zone.clone(),
            fixtures,
            positions,
            channel_count,
            limits: ColourLimits::new(&site.limits),
            max_flash_hz: site.limits.max_flash_hz,
            groups,
            fingerprint: print.0,
        }
    }

    pub fn site(&self) -> &SiteId {
        &self.site
    }

    pub fn time_zone(&self) -> &jiff::tz::TimeZone {
        &self.time_zone
    }

    /// Every fixture's pixels, channels and encoder, in the site's order.
    pub fn fixtures(&self) -> &[FixtureOut] {
        &self.fixtures
    }

    /// Position of every pixel in metres, in fixture order.
    pub fn positions(&self) -> &[[f32; 2]] {
        &self.positions
    }

    pub fn channel_count(&self) -> usize {
        self.channel_count
    }

    pub fn limits(&self) -> &ColourLimits {
        &self.limits
    }

    pub fn max_flash_hz(&self) -> f64 {
        self.max_flash_hz
    }

    /// The same layout without the site's colour limits (the fixtures' caps stay): what a
    /// scene asks for, for comparisons and benchmarks. Scenes compiled for `self` render on it.
    pub fn without_limits(&self) -> Layout {
        Layout {
            limits: ColourLimits::none(),
            ..self.clone()
        }
    }

    /// A number that changes whenever anything a compiled scene depends on changes (fixture
    /// ranges, positions, groups, the flash limit): scenes carry it and are rendered only on
    /// a layout with the same one.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub fn pixel_count(&self) -> usize {
        self.positions.len()
    }

    /// The fixture (index into [`fixtures`](Self::fixtures)) with this id.
    /// How hard fixture `index` drives its emitters for the layout channels `channels`:
    /// the mean of its pixels' [`Encoder::drive`], 0–1 (what its power draw follows). A long
    /// strip is sampled at [`DRIVE_SAMPLES`] pixels spread evenly along it.
    pub fn fixture_drive(&self, index: usize, channels: &[u8]) -> Option<f64> {
        let f = self.fixtures.get(index)?;
        let slots = f.encoder.slots().max(1);
        let own = channels.get(f.channels.clone())?;
        let pixels = own.len() / slots;
        if pixels == 0 {
            return None;
        }
        let (mut drive, mut n) = (0.0, 0u32);
        for px in own
            .chunks_exact(slots)
            .step_by(pixels.div_ceil(DRIVE_SAMPLES))
        {
            drive += f64::from(f.encoder.drive(px));
            n += 1;
        }
        Some(drive / f64::from(n.max(1)))
    }

    pub fn fixture_index(&self, id: &FixtureId) -> Option<usize> {
        self.fixtures.iter().position(|f| &f.id == id)
    }

    /// Fixture indices a target reaches, in layout order, each once.
    fn targets(&self, target: &Target) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .groups
            .iter()
            .filter(|g| match target {
                Target::Group(id) => &g.id == id,
                Target::Role(role) => g.role.as_ref() == Some(role),
            })
            .flat_map(|g| g.fixtures.iter().copied())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// `count` points spread evenly along a polyline, each at the middle of its share.
fn spread(points: &[[f64; 2]], count: usize) -> Vec<[f32; 2]> {
    let lengths: Vec<f64> = points
        .windows(2)
        .map(|w| ((w[1][0] - w[0][0]).powi(2) + (w[1][1] - w[0][1]).powi(2)).sqrt())
        .collect();
    let total: f64 = lengths.iter().sum();
    let mut out = Vec::with_capacity(count);
    let mut segment = 0;
    let mut before = 0.0;
    for i in 0..count {
        let at = total * (i as f64 + 0.5) / count as f64;
        while segment + 1 < lengths.len() && at > before + lengths[segment] {
            before += lengths[segment];
            segment += 1;
        }
        let t = if lengths[segment] > 0.0 {
            (at - before) / lengths[segment]
        } else {
            0.0
        };
        let (a, b) = (points[segment], points[segment + 1]);
        out.push([
            (a[0] + (b[0] - a[0]) * t) as f32,
            (a[1] + (b[1] - a[1]) * t) as f32,
        ]);
    }
    out
}

/// Linear colour of every pixel of a layout at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub pixels: Vec<Rgb>,
}

impl Frame {
    pub fn new(layout: &Layout) -> Frame {
        Frame {
            pixels: vec![Rgb::BLACK; layout.pixel_count()],
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledLayer {
    /// Layout pixel ranges the layer lights.
    ranges: Vec<Range<usize>>,
    /// Each of those pixels' coordinate along the effect's direction, in order.
    u: Vec<f32>,
    u_min: f32,
    u_max: f32,
    effect: Effect,
    brightness: f32,
    blend: Blend,
}

/// A scene bound to a layout, ready to render many frames.
#[derive(Debug, Clone)]
pub struct CompiledScene {
    pub id: SceneId,
    pub name: crate::model::Name,
    layers: Vec<CompiledLayer>,
    local_time: bool,
    layout: u64,
}

impl CompiledScene {
    pub fn new(scene: &Scene, layout: &Layout) -> CompiledScene {
        let layers = scene
            .layers
            .iter()
            .map(|layer| compile_layer(layer, layout))
            .collect();
        CompiledScene {
            id: scene.id.clone(),
            name: scene.name.clone(),
            layers,
            local_time: scene
                .layers
                .iter()
                .any(|l| matches!(l.effect, Effect::Sky { .. })),
            layout: layout.fingerprint,
        }
    }

    /// The fingerprint of the layout this scene was compiled for.
    pub fn layout(&self) -> u64 {
        self.layout
    }
}

fn compile_layer(layer: &Layer, layout: &Layout) -> CompiledLayer {
    let direction = match &layer.effect {
        Effect::Gradient { direction_deg, .. } | Effect::Chase { direction_deg, .. } => {
            *direction_deg
        }
        Effect::Wave { travel, .. } | Effect::Rainbow { travel, .. } => travel.direction_deg,
        _ => 0.0,
    };
    let (sin, cos) = direction.to_radians().sin_cos();
    let ranges: Vec<Range<usize>> = layout
        .targets(&layer.target)
        .into_iter()
        .map(|f| layout.fixtures[f].pixels.clone())
        .collect();
    // Waves and rainbows measure position in wavelengths, divided once here in f64 so that
    // pixels a whole number of quarter-waves apart land on exact phases.
    let unit = match &layer.effect {
        Effect::Wave { travel, .. } | Effect::Rainbow { travel, .. } => travel.wavelength_m,
        _ => 1.0,
    };
    let u: Vec<f32> = ranges
        .iter()
        .flat_map(|r| layout.positions[r.clone()].iter())
        .map(|p| ((f64::from(p[0]) * cos + f64::from(p[1]) * sin) / unit) as f32)
        .collect();
    let u_min = u.iter().copied().fold(f32::INFINITY, f32::min);
    let u_max = u.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    CompiledLayer {
        ranges,
        u,
        u_min,
        u_max,
        effect: layer.effect.slowed_to(layout.max_flash_hz),
        brightness: layer.brightness,
        blend: layer.blend,
    }
}

/// Where `t_ms` falls in a cycle of `period_ms`, 0–1, taken as an exact remainder.
#[inline]
fn phase(t_ms: i64, period_ms: f64) -> f32 {
    if !period_ms.is_finite() || period_ms <= 0.0 {
        return 0.0;
    }
    ((t_ms as f64).rem_euclid(period_ms) / period_ms) as f32
}

/// 32-bit mix (splitmix-style) for reproducible randomness from pixel and time.
#[inline]
fn hash(mut x: u64) -> u32 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) as u32
}

/// Local minute of the day (with fraction) at `t_ms` in `tz`.
fn local_minute(t_ms: i64, tz: &jiff::tz::TimeZone) -> f64 {
    let Ok(ts) = jiff::Timestamp::from_millisecond(t_ms) else {
        return 0.0;
    };
    let dt = tz.to_datetime(ts);
    f64::from(dt.hour()) * 60.0
        + f64::from(dt.minute())
        + (f64::from(dt.second()) + f64::from(dt.subsec_nanosecond()) / 1e9) / 60.0
}

fn sky(stops: &[(f64, Rgb)], minute: f64) -> Rgb {
    match stops {
        [] => Rgb::BLACK,
        [only] => only.1,
        _ => {
            // Stops are sorted; find the pair around `minute`, wrapping over midnight.
            let next = stops.iter().position(|s| s.0 > minute).unwrap_or(0);
            let prev = if next == 0 { stops.len() - 1 } else { next - 1 };
            let (a, b) = (stops[prev], stops[next]);
            let span = (b.0 - a.0).rem_euclid(1440.0);
            let into = (minute - a.0).rem_euclid(1440.0);
            let t = if span > 0.0 {
                (into / span) as f32
            } else {
                0.0
            };
            a.1.lerp(b.1, t)
        }
    }
}

/// Fills `frame` with what `scene` shows at `t_ms` (milliseconds since the Unix epoch).
/// Pixels no layer lights are black. A scene compiled for another layout leaves the frame
/// black and says so.
pub fn render(
    scene: &CompiledScene,
    layout: &Layout,
    t_ms: i64,
    frame: &mut Frame,
) -> Result<(), LayoutMismatch> {
    frame.pixels.clear();
    frame.pixels.resize(layout.pixel_count(), Rgb::BLACK);
    if scene.layout != layout.fingerprint {
        return Err(LayoutMismatch(scene.layout));
    }
    let minute = if scene.local_time {
        local_minute(t_ms, &layout.time_zone)
    } else {
        0.0
    };
    for layer in &scene.layers {
        render_layer(layer, t_ms, minute, &mut frame.pixels);
    }
    Ok(())
}

#[inline]
fn put(pixels: &mut [Rgb], p: usize, c: Rgb, blend: Blend) {
    let old = pixels[p];
    pixels[p] = match blend {
        Blend::Over => c,
        Blend::Add => Rgb::new(old.r + c.r, old.g + c.g, old.b + c.b),
        Blend::Max => Rgb::new(old.r.max(c.r), old.g.max(c.g), old.b.max(c.b)),
        Blend::Multiply => Rgb::new(old.r * c.r, old.g * c.g, old.b * c.b),
    };
}

/// Calls `f(pixel, u)` for every pixel of the layer and blends what it returns. Generic, so
/// each effect's pixel function is inlined into its own loop.
#[inline]
fn each(layer: &CompiledLayer, pixels: &mut [Rgb], mut f: impl FnMut(usize, f32) -> Rgb) {
    let mut k = 0;
    for range in &layer.ranges {
        for p in range.clone() {
            let c = f(p, layer.u[k]);
            put(pixels, p, c, layer.blend);
            k += 1;
        }
    }
}

fn render_layer(layer: &CompiledLayer, t_ms: i64, minute: f64, pixels: &mut [Rgb]) {
    let b = layer.brightness;
    match &layer.effect {
        Effect::Static { colour } => {
            let c = colour.scale(b);
            each(layer, pixels, |_, _| c);
        }
        Effect::Kelvin { kelvin } => {
            let c = colour::kelvin_to_rgb(*kelvin).scale(b);
            each(layer, pixels, |_, _| c);
        }
        Effect::Gradient { colours, .. } => {
            let span = layer.u_max - layer.u_min;
            let inv = if span > 0.0 { 1.0 / span } else { 0.0 };
            each(layer, pixels, |_, u| {
                colours.at((u - layer.u_min) * inv).scale(b)
            });
        }
        Effect::Cycle { colours, period_ms } => {
            let c = colours.around(phase(t_ms, *period_ms)).scale(b);
            each(layer, pixels, |_, _| c);
        }
        Effect::Breathe {
            colour,
            period_ms,
            depth,
        } => {
            let p = phase(t_ms, *period_ms);
            // Full at phase 0, dimmest at half a period.
            let level = 1.0 - depth * (0.5 - 0.5 * colour::sin_turns(p + 0.25));
            let c = colour.scale(b * level);
            each(layer, pixels, |_, _| c);
        }
        Effect::Chase {
            colour,
            background,
            speed_mps,
            width_m,
            spacing_m,
            ..
        } => {
            let period = 1000.0 * spacing_m / speed_mps.abs();
            let shift = phase(t_ms, period) * *spacing_m as f32 * speed_mps.signum() as f32;
            let spacing = *spacing_m as f32;
            let half = (*width_m as f32 / 2.0).max(1e-3);
            let (fg, bg) = (colour.scale(b), background.scale(b));
            each(layer, pixels, |_, u| {
                let d = (u - shift).rem_euclid(spacing);
                let d = d.min(spacing - d);
                bg.lerp(fg, (1.0 - d / half).max(0.0))
            });
        }
        Effect::Wave { colours, travel } => {
            let tp = phase(t_ms, travel.period_ms()) * travel.speed_mps.signum() as f32;
            let (a, c) = (colours[0].scale(b), colours[1].scale(b));
            each(layer, pixels, |_, u| {
                let v = 0.5 + 0.5 * colour::sin_turns(u - tp);
                a.lerp(c, v)
            });
        }
        Effect::Rainbow { travel, saturation } => {
            let tp = phase(t_ms, travel.period_ms()) * travel.speed_mps.signum() as f32;
            let s = *saturation;
            each(layer, pixels, |_, u| {
                let hue = (u - tp) * 360.0;
                Rgb::from_hue(hue).desaturate_to(s).scale(b)
            });
        }
        Effect::Twinkle {
            colour,
            background,
            density,
            period_ms,
        } => {
            let period = period_ms.round().max(1.0) as i64;
            let (fg, bg) = (colour.scale(b), background.scale(b));
            let threshold = (*density as f64 * f64::from(u32::MAX)) as u32;
            each(layer, pixels, |p, _| {
                let offset = i64::from(hash(p as u64)) % period;
                let local = t_ms + offset;
                let slot = local.div_euclid(period);
                if hash((p as u64) << 32 ^ slot as u64) > threshold {
                    return bg;
                }
                let f = local.rem_euclid(period) as f32 / period as f32;
                bg.lerp(fg, colour::sin_turns(f * 0.5))
            });
        }
        Effect::Sky { stops } => {
            let c = sky(stops, minute).scale(b);
            each(layer, pixels, |_, _| c);
        }
    }
}

/// Applies `master` (0–1) and the site's limits to `frame` and writes every fixture's
/// channels into `out` (`layout.channel_count()` bytes, 16-bit values big-endian). Pixels
/// missing from a short frame are dark; fixtures past the end of a short `out` are left out.
pub fn encode(layout: &Layout, frame: &Frame, master: Level, out: &mut [u8]) {
    encode_with(layout, frame, master, out, true);
}

/// [`encode`] without its fast paths: the reference they are tested and measured against.
#[doc(hidden)]
pub fn encode_reference(layout: &Layout, frame: &Frame, master: Level, out: &mut [u8]) {
    encode_with(layout, frame, master, out, false);
}

fn encode_with(layout: &Layout, frame: &Frame, master: Level, out: &mut [u8], fast: bool) {
    let master = master.get() as f32;
    let clamp = !layout.limits.is_noop();
    for f in &layout.fixtures {
        let slots = f.encoder.slots();
        let Some(out) = out.get_mut(f.channels.clone()) else {
            continue;
        };
        // Pixel strips are mostly RGB at 8 bits: written without the dispatch on mix and depth.
        let rgb8 = fast && f.encoder.is_rgb8();
        // Neighbouring pixels are often the same colour: clamp once for a run of them.
        let mut last_in = Rgb::new(-1.0, -1.0, -1.0);
        let mut last_out = Rgb::BLACK;
        for (p, out) in f.pixels.clone().zip(out.chunks_exact_mut(slots)) {
            // Light beyond full cannot be emitted; dim it as a whole rather than clip each
            // channel, which would shift its hue.
            let c = frame.pixels.get(p).copied().unwrap_or(Rgb::BLACK);
            let top = c.max_component();
            let c = c.scale(if top > 1.0 { master / top } else { master });
            let c = if !clamp {
                c
            } else if c == last_in {
                last_out
            } else {
                last_in = c;
                last_out = layout.limits.apply(c);
                last_out
            };
            if rgb8 {
                f.encoder.write_rgb8(c, out);
            } else {
                f.encoder.write(c, out);
            }
        }
    }
}

/// What each pixel emits for the channel values `channels`: the inverse of [`encode`], for
/// the simulator and previews. `channels` must be exactly the layout's channels.
pub fn decode(layout: &Layout, channels: &[u8]) -> Result<Vec<Rgb>, FrameLengthError> {
    let mut out = Vec::with_capacity(layout.pixel_count());
    decode_into(layout, channels, &mut out)?;
    Ok(out)
}

/// [`decode`] into a reused buffer.
pub fn decode_into(
    layout: &Layout,
    channels: &[u8],
    out: &mut Vec<Rgb>,
) -> Result<(), FrameLengthError> {
    if channels.len() != layout.channel_count {
        return Err(FrameLengthError {
            expected: layout.channel_count,
            got: channels.len(),
        });
    }
    out.clear();
    for f in &layout.fixtures {
        let slots = f.encoder.slots();
        let ch = &channels[f.channels.clone()];
        out.extend(ch.chunks_exact(slots).map(|pixel| f.encoder.read(pixel)));
    }
    Ok(())
}

/// Renders and encodes one instant: the convenience form of [`render`] + [`encode`].
pub fn render_channels(
    scene: &CompiledScene,
    layout: &Layout,
    t_ms: i64,
    master: Level,
) -> Vec<u8> {
    let mut frame = Frame::new(layout);
    // A scene of another layout renders dark, which is what the channels then say.
    let _ = render(scene, layout, t_ms, &mut frame);
    let mut out = vec![0; layout.channel_count];
    encode(layout, &frame, master, &mut out);
    out
}
