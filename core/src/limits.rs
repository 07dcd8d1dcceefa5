//! The colour side of a site's limits, applied to every pixel of every frame: whites only
//! within a CCT range, a saturation cap, and no traffic-signal look-alikes. Output level caps
//! are applied per emitter when channels are encoded ([`crate::render`]); flash limits slow
//! effects down when a scene is compiled ([`crate::scene::Effect::slowed_to`]).

use crate::colour::{self, Rgb};
use crate::model::{ForbiddenColour, Limits};

/// Pixels whose saturation is within this of a limit count as within it (float noise).
const SATURATION_SLACK: f32 = 0.005;
/// The clamp treats forbidden hue bands as this much wider (degrees), so that output steps
/// cannot carry a colour from just outside a band to just inside it.
const HUE_MARGIN: f32 = 3.0;
/// A forbidden band is left this far below its saturation floor.
const BAND_MARGIN: f32 = 0.9;

/// What a colour broke, for validation messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Breach {
    NotWhite {
        saturation: f32,
    },
    Kelvin {
        kelvin: f64,
        range: (f64, f64),
    },
    Saturation {
        saturation: f32,
        max: f32,
    },
    Forbidden {
        colour: ForbiddenColour,
        hue: f32,
        saturation: f32,
    },
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Breach::NotWhite { saturation } => write!(
                f,
                "is a colour (saturation {saturation:.2} from white); the site allows whites only"
            ),
            Breach::Kelvin { kelvin, range } => write!(
                f,
                "is a {kelvin:.0} K white; the site allows {:.0}–{:.0} K",
                range.0, range.1
            ),
            Breach::Saturation { saturation, max } => write!(
                f,
                "has saturation {saturation:.2}; the site's limit is {max:.2}"
            ),
            Breach::Forbidden {
                colour,
                hue,
                saturation,
            } => write!(
                f,
                "looks like a traffic signal ({}: hue {hue:.0}°, saturation {saturation:.2}); the site forbids it",
                match colour {
                    ForbiddenColour::SignalRed => "signal-red",
                    ForbiddenColour::SignalAmber => "signal-amber",
                    ForbiddenColour::SignalGreen => "signal-green",
                }
            ),
        }
    }
}

/// A site's colour limits, ready to apply per pixel.
#[derive(Debug, Clone)]
pub struct ColourLimits {
    cct: Option<(f64, f64)>,
    saturation_max: f32,
    bands: Vec<(ForbiddenColour, f32, f32, f32)>,
    locus: colour::WhiteLocus,
    /// Built at the first [`apply`](Self::apply), shared by clones: checking a library
    /// lowers every scene with its site's limits and never applies them per pixel, and a
    /// city of thousands of sites must not build a map for each.
    map: std::sync::Arc<std::sync::OnceLock<ClampMap>>,
}

/// Cells per side of each face of the clamp map.
const MAP_STEPS: usize = 64;

/// Where on the RGB cube the clamp changes nothing. The clamp does not care how bright a
/// colour is (hue, saturation and colour temperature are the same at any level), so every
/// colour is a point on one of the three faces where its largest component is 1, times
/// that component. Each face is cut into cells, evenly in √light where hue and saturation
/// are measured; a cell is free when the clamp changes neither its corners nor its centre.
/// Colours in free cells — nearly all of a checked scene's — pass untouched; the others get
/// the exact clamp.
#[derive(Debug)]
struct ClampMap {
    free: [Vec<bool>; 3],
}

impl ClampMap {
    fn new(limits: &ColourLimits) -> Self {
        let n = MAP_STEPS;
        let point = |k: usize, x: f32, y: f32| {
            let (a, b) = ((x / n as f32).powi(2), (y / n as f32).powi(2));
            match k {
                0 => Rgb::new(1.0, a, b),
                1 => Rgb::new(a, 1.0, b),
                _ => Rgb::new(a, b, 1.0),
            }
        };
        let unchanged = |c: Rgb| limits.clamp_unit(c) == c;
        let free = std::array::from_fn(|k| {
            let corners: Vec<bool> = (0..(n + 1) * (n + 1))
                .map(|index| {
                    unchanged(point(k, (index / (n + 1)) as f32, (index % (n + 1)) as f32))
                })
                .collect();
            let mut cells = Vec::with_capacity(n * n);
            for i in 0..n {
                for j in 0..n {
                    let corners_free = [(i, j), (i, j + 1), (i + 1, j), (i + 1, j + 1)]
                        .iter()
                        .all(|&(i, j)| corners[i * (n + 1) + j]);
                    cells.push(corners_free && unchanged(point(k, i as f32 + 0.5, j as f32 + 0.5)));
                }
            }
            cells
        });
        ClampMap { free }
    }

    /// Whether the clamp leaves `c` as it is (`c` not black).
    #[inline]
    fn is_free(&self, c: Rgb) -> bool {
        let m = c.max_component();
        let (k, a, b) = if m == c.r {
            (0, c.g, c.b)
        } else if m == c.g {
            (1, c.r, c.b)
        } else {
            (2, c.r, c.g)
        };
        let n = MAP_STEPS;
        let i = (((a / m).clamp(0.0, 1.0).sqrt() * n as f32) as usize).min(n - 1);
        let j = (((b / m).clamp(0.0, 1.0).sqrt() * n as f32) as usize).min(n - 1);
        self.free[k][i * n + j]
    }
}

/// A white this close outside a site's range still counts as inside: CCT estimation and
/// 8-bit steps move a white by a few tens of kelvin, far below what an eye can tell.
const KELVIN_SLACK: f64 = 75.0;
/// Whites outside the range are moved this far inside it, so quantization keeps them there.
const KELVIN_MARGIN: f64 = 25.0;
/// Two-channel tunable whites mix along a chord below the white locus; that is still white.
const WHITE_SATURATION: f32 = 0.15;

impl ColourLimits {
    pub fn new(limits: &Limits) -> Self {
        ColourLimits {
            cct: limits.cct_k,
            saturation_max: limits.saturation_max as f32,
            bands: limits
                .forbidden
                .iter()
                .map(|&c| {
                    let ((from, to), floor) = c.hue_band();
                    (c, from as f32, to as f32, floor as f32)
                })
                .collect(),
            locus: colour::WhiteLocus::new(),
            map: std::sync::Arc::default(),
        }
    }

    /// Limits that change nothing.
    pub fn none() -> Self {
        ColourLimits {
            cct: None,
            saturation_max: 1.0,
            bands: Vec::new(),
            locus: colour::WhiteLocus::new(),
            map: std::sync::Arc::default(),
        }
    }

    /// Whether [`clamp`](Self::clamp) can change anything.
    pub fn is_noop(&self) -> bool {
        self.cct.is_none() && self.saturation_max >= 1.0 && self.bands.is_empty()
    }

    /// The first limit `c` breaks, if any.
    pub fn breach(&self, c: Rgb) -> Option<Breach> {
        self.breach_by(c, 0.0)
    }

    /// The first limit `c` breaks by more than `slack` (in saturation; ten thousand times
    /// that in kelvin). Output quantization and emitter mixing move colours a little; this
    /// is how far a check of emitted light should allow.
    pub fn breach_by(&self, c: Rgb, slack: f32) -> Option<Breach> {
        if c.max_component() <= 0.0 {
            return None;
        }
        if let Some(range) = self.cct {
            // Whites-only sites measure from the white at the colour's own temperature,
            // however warm: 2200 K is a white there.
            let own = colour::kelvin_to_rgb(colour::cct_of(c)?);
            let saturation = colour::white_saturation(c, own);
            if saturation > WHITE_SATURATION + slack {
                return Some(Breach::NotWhite { saturation });
            }
            let kelvin = colour::cct_of(c)?;
            let kelvin_slack = KELVIN_SLACK + 10_000.0 * f64::from(slack);
            if kelvin < range.0 - kelvin_slack || kelvin > range.1 + kelvin_slack {
                return Some(Breach::Kelvin { kelvin, range });
            }
            return None;
        }
        let white = self.locus.nearest_white(c)?;
        let saturation = colour::white_saturation(c, white);
        if saturation > self.saturation_max + SATURATION_SLACK + slack {
            return Some(Breach::Saturation {
                saturation,
                max: self.saturation_max,
            });
        }
        let hue = colour::perceptual_hue(c)?;
        self.bands
            .iter()
            .find(|&&(_, from, to, floor)| in_band(hue, from, to) && saturation >= floor + slack)
            .map(|&(colour, ..)| Breach::Forbidden {
                colour,
                hue,
                saturation,
            })
    }

    /// The nearest colour that breaks no limit: whites are moved into the allowed range
    /// at the same luminance, colours are desaturated towards their nearest white.
    pub fn clamp(&self, c: Rgb) -> Rgb {
        fit(self.clamp_unit(c))
    }

    /// [`clamp`](Self::clamp) for every pixel of a frame: colours the limits cannot touch
    /// are recognised from a map built with the limits and pass at once.
    #[inline]
    pub fn apply(&self, c: Rgb) -> Rgb {
        if self.is_noop() {
            return c;
        }
        let map = self.map.get_or_init(|| ClampMap::new(self));
        if c.max_component() > 0.0 && map.is_free(c) {
            c
        } else {
            self.clamp(c)
        }
    }

    /// The clamp before bright whites are brought back under full: exactly proportional to
    /// the colour's level, which is what lets [`ClampMap`] sample it on one level.
    fn clamp_unit(&self, c: Rgb) -> Rgb {
        if self.is_noop() || c.max_component() <= 0.0 {
            return c;
        }
        if let Some((lo, hi)) = self.cct {
            // An allowed white stays exactly as it is.
            if self.breach_by(c, 0.0).is_none()
                && colour::cct_of(c).is_some_and(|k| (lo..=hi).contains(&k))
            {
                return c;
            }
            let y = c.luminance();
            let Some(kelvin) = self
                .locus
                .nearest_kelvin(c, (colour::KELVIN_MIN, colour::KELVIN_MAX))
            else {
                return Rgb::BLACK;
            };
            let inside = if kelvin < lo {
                (lo + KELVIN_MARGIN).min(hi)
            } else if kelvin > hi {
                (hi - KELVIN_MARGIN).max(lo)
            } else {
                kelvin
            };
            let white = colour::kelvin_to_rgb(inside);
            return white.scale(y / white.luminance());
        }
        // Desaturating moves a colour's nearest white a little, so a second pass settles
        // what the first one left on the edge.
        let mut out = c;
        for _ in 0..3 {
            let Some(white) = self.locus.nearest_white(out) else {
                return out;
            };
            let mut changed = false;
            if colour::white_saturation(out, white) > self.saturation_max {
                out = colour::desaturate_from_white(out, white, self.saturation_max);
                changed = true;
            }
            if let Some(hue) = colour::perceptual_hue(out) {
                for &(_, from, to, floor) in &self.bands {
                    let (from, to) = (from - HUE_MARGIN, to + HUE_MARGIN);
                    if in_band(hue, from, to) && colour::white_saturation(out, white) >= floor {
                        out = colour::desaturate_from_white(out, white, floor * BAND_MARGIN);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        out
    }
}

/// Brings light above full back under it, keeping its colour.
#[inline]
fn fit(c: Rgb) -> Rgb {
    let max = c.max_component();
    if max > 1.0 { c.scale(1.0 / max) } else { c }
}

fn in_band(hue: f32, from: f32, to: f32) -> bool {
    let (from, to) = (from.rem_euclid(360.0), to.rem_euclid(360.0));
    if from <= to {
        hue >= from && hue <= to
    } else {
        hue >= from || hue <= to
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Curfew, Level};

    fn limits(cct: Option<(f64, f64)>, saturation: f64, forbidden: Vec<ForbiddenColour>) -> Limits {
        Limits {
            max_output: Level::FULL,
            cct_k: cct,
            saturation_max: saturation,
            forbidden,
            max_flash_hz: 3.0,
            curfew: Curfew::None,
            curfew_level: Level::ZERO,
        }
    }

    #[test]
    fn signal_colours_are_desaturated_but_warm_whites_pass() {
        let l = ColourLimits::new(&limits(None, 1.0, ForbiddenColour::ALL.to_vec()));
        let red = Rgb::parse("#ff0000").unwrap();
        assert!(matches!(
            l.breach(red),
            Some(Breach::Forbidden {
                colour: ForbiddenColour::SignalRed,
                ..
            })
        ));
        let clamped = l.clamp(red);
        assert_eq!(l.breach(clamped), None, "{clamped:?}");
        for white in ["2200K", "2700K", "4000K", "6500K"] {
            let c = Rgb::parse(white).unwrap();
            assert_eq!(l.breach(c), None, "{white}");
            assert_eq!(l.clamp(c), c, "{white}");
        }
        let blue = Rgb::parse("#1040ff").unwrap();
        assert_eq!(l.clamp(blue), blue);
    }

    #[test]
    fn whites_only_sites_get_whites_in_range() {
        let l = ColourLimits::new(&limits(Some((2200.0, 3000.0)), 0.1, vec![]));
        assert!(matches!(
            l.breach(Rgb::parse("#2060ff").unwrap()),
            Some(Breach::NotWhite { .. })
        ));
        assert!(matches!(
            l.breach(Rgb::parse("5000K").unwrap()),
            Some(Breach::Kelvin { .. })
        ));
        assert_eq!(l.breach(Rgb::parse("2700K").unwrap().scale(0.5)), None);
        let cool = l.clamp(Rgb::parse("5000K").unwrap().scale(0.4));
        let k = colour::cct_of(cool).unwrap();
        assert!((k - 3000.0).abs() < 60.0, "{k}");
        assert_eq!(l.breach(cool), None);
    }
}
