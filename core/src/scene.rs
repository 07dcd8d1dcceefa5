//! Scenes: what a site looks like, as ordered layers of effects on groups of fixtures.
//!
//! A scene is data; [`crate::render`] turns it into light. Timing parameters are kept in
//! milliseconds and metres so that phases can be computed exactly from integer time.

use std::time::Duration;

use crate::colour::Rgb;
use crate::model::{GroupId, Name, Role, SiteId};

pub use crate::ids::SceneId;

/// Which fixtures a layer lights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Group(GroupId),
    Role(Role),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blend {
    /// Replaces what is under it.
    Over,
    Add,
    Max,
    Multiply,
}

/// Colours of a gradient or a cycle: never empty, so an effect always has a colour to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Palette(Vec<Rgb>);

impl Palette {
    /// `None` for an empty list.
    pub fn new(colours: Vec<Rgb>) -> Option<Palette> {
        (!colours.is_empty()).then_some(Palette(colours))
    }

    pub fn colours(&self) -> &[Rgb] {
        &self.0
    }

    /// Never 0.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false; here for the convention that goes with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The colour at `s` (0–1) along the palette, blended between neighbours.
    pub fn at(&self, s: f32) -> Rgb {
        let c = &self.0;
        let n = c.len();
        if n == 1 {
            return c[0];
        }
        let x = s.clamp(0.0, 1.0) * (n - 1) as f32;
        let i = (x as usize).min(n - 2);
        c[i].lerp(c[i + 1], x - i as f32)
    }

    /// The colour at phase `s` (0–1) of a round through the palette and back to its first.
    pub fn around(&self, s: f32) -> Rgb {
        let c = &self.0;
        let n = c.len();
        let x = s.clamp(0.0, 1.0) * n as f32;
        let i = (x as usize).min(n - 1);
        c[i].lerp(c[(i + 1) % n], x - i as f32)
    }
}

/// A moving-along-space effect's geometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Travel {
    pub speed_mps: f64,
    pub wavelength_m: f64,
    pub direction_deg: f64,
}

impl Travel {
    /// Time for the pattern to move one wavelength, in milliseconds (infinite when still).
    pub fn period_ms(&self) -> f64 {
        if self.speed_mps == 0.0 {
            f64::INFINITY
        } else {
            1000.0 * self.wavelength_m / self.speed_mps.abs()
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Static {
        colour: Rgb,
    },
    /// A white of this colour temperature.
    Kelvin {
        kelvin: f64,
    },
    /// Colours spread evenly across the layer's extent along `direction_deg`.
    Gradient {
        colours: Palette,
        direction_deg: f64,
    },
    /// Cross-fades through `colours`, one full round per period.
    Cycle {
        colours: Palette,
        period_ms: f64,
    },
    /// Dims by `depth` and back once per period.
    Breathe {
        colour: Rgb,
        period_ms: f64,
        depth: f32,
    },
    /// Pulses of `width_m` every `spacing_m`, travelling at `speed_mps`.
    Chase {
        colour: Rgb,
        background: Rgb,
        speed_mps: f64,
        width_m: f64,
        spacing_m: f64,
        direction_deg: f64,
    },
    /// A sine between two colours, travelling.
    Wave {
        colours: [Rgb; 2],
        travel: Travel,
    },
    Rainbow {
        travel: Travel,
        saturation: f32,
    },
    /// Pixels light up at random (but reproducible) moments, each once per period at most.
    Twinkle {
        colour: Rgb,
        background: Rgb,
        density: f32,
        period_ms: f64,
    },
    /// Follows a palette through the evening by local clock time: `(minute of day, colour)`.
    Sky {
        stops: Vec<(f64, Rgb)>,
    },
}

impl Effect {
    /// How often, at most, the effect changes the light at any one point, in hertz. This
    /// is what a site's flash limit is checked against.
    pub fn change_hz(&self) -> f64 {
        let per = |ms: f64| {
            if ms.is_finite() && ms > 0.0 {
                1000.0 / ms
            } else {
                0.0
            }
        };
        match self {
            Effect::Static { .. } | Effect::Kelvin { .. } | Effect::Gradient { .. } => 0.0,
            Effect::Sky { .. } => 0.0,
            Effect::Cycle { colours, period_ms } => per(*period_ms) * colours.len() as f64,
            Effect::Breathe { period_ms, .. } | Effect::Twinkle { period_ms, .. } => {
                per(*period_ms)
            }
            Effect::Chase {
                speed_mps,
                spacing_m,
                ..
            } => speed_mps.abs() / spacing_m,
            Effect::Wave { travel, .. } | Effect::Rainbow { travel, .. } => per(travel.period_ms()),
        }
    }

    /// Slows the effect so it changes no faster than `max_hz` (the site's flash limit).
    pub fn slowed_to(&self, max_hz: f64) -> Effect {
        let hz = self.change_hz();
        if hz <= max_hz || hz == 0.0 {
            return self.clone();
        }
        let k = max_hz / hz; // < 1; 0 freezes the effect
        let mut slowed = self.clone();
        match &mut slowed {
            Effect::Cycle { period_ms, .. }
            | Effect::Breathe { period_ms, .. }
            | Effect::Twinkle { period_ms, .. } => *period_ms /= k,
            Effect::Chase { speed_mps, .. } => *speed_mps *= k,
            Effect::Wave { travel, .. } | Effect::Rainbow { travel, .. } => travel.speed_mps *= k,
            Effect::Static { .. }
            | Effect::Kelvin { .. }
            | Effect::Gradient { .. }
            | Effect::Sky { .. } => {}
        }
        slowed
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub target: Target,
    pub effect: Effect,
    /// 0–1.
    pub brightness: f32,
    pub blend: Blend,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub id: SceneId,
    pub site: SiteId,
    pub name: Name,
    /// Cross-fade into this scene.
    pub fade: Duration,
    pub layers: Vec<Layer>,
}
