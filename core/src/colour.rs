//! Colour: linear RGB, sRGB notation, colour temperature, hue and saturation.
//!
//! Everything inside Nightscape is linear-light RGB (sRGB primaries, D65 white), because
//! light from several emitters adds linearly. Files write colours in the sRGB notation people
//! know (`"#ff8000"`) or as a white (`"2700K"`); previews convert back to sRGB for screens.
//! The maths is plain `f32`/`f64` arithmetic with no platform library calls, so the same
//! inputs give the same bits on every machine.

use std::fmt;

/// Linear-light RGB, each component 0.0–1.0 (renders may briefly exceed 1 before clamping).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rgb {
    pub r: f32,
    pub g: f32,
    pub b: f32,
}

impl Rgb {
    pub const BLACK: Rgb = Rgb::new(0.0, 0.0, 0.0);
    pub const WHITE: Rgb = Rgb::new(1.0, 1.0, 1.0);

    pub const fn new(r: f32, g: f32, b: f32) -> Self {
        Rgb { r, g, b }
    }

    pub fn scale(self, k: f32) -> Self {
        Rgb::new(self.r * k, self.g * k, self.b * k)
    }

    pub fn lerp(self, other: Rgb, t: f32) -> Self {
        Rgb::new(
            self.r + (other.r - self.r) * t,
            self.g + (other.g - self.g) * t,
            self.b + (other.b - self.b) * t,
        )
    }

    pub fn max_component(self) -> f32 {
        self.r.max(self.g).max(self.b)
    }

    pub fn min_component(self) -> f32 {
        self.r.min(self.g).min(self.b)
    }

    /// Relative luminance Y (Rec. 709 weights).
    pub fn luminance(self) -> f32 {
        0.212_672_9 * self.r + 0.715_152_2 * self.g + 0.072_175 * self.b
    }

    /// HSV saturation: 0 for greys and whites of equal components, 1 for pure colours.
    pub fn saturation(self) -> f32 {
        let max = self.max_component();
        if max <= 0.0 {
            0.0
        } else {
            (max - self.min_component()) / max
        }
    }

    /// HSV hue in degrees 0–360, or `None` for a grey.
    pub fn hue(self) -> Option<f32> {
        let max = self.max_component();
        let min = self.min_component();
        let d = max - min;
        if d <= 1e-6 {
            return None;
        }
        let h = if max == self.r {
            60.0 * ((self.g - self.b) / d)
        } else if max == self.g {
            60.0 * ((self.b - self.r) / d + 2.0)
        } else {
            60.0 * ((self.r - self.g) / d + 4.0)
        };
        Some(if h < 0.0 { h + 360.0 } else { h })
    }

    /// The same hue and value with saturation lowered to `saturation` (never raised).
    pub fn desaturate_to(self, saturation: f32) -> Self {
        let s = self.saturation();
        if s <= saturation || s <= 0.0 {
            return self;
        }
        let max = self.max_component();
        let k = saturation.max(0.0) / s;
        Rgb::new(
            max - (max - self.r) * k,
            max - (max - self.g) * k,
            max - (max - self.b) * k,
        )
    }

    /// Fully saturated colour of hue `h` degrees with value 1 (for rainbows).
    pub fn from_hue(h: f32) -> Self {
        let h = h.rem_euclid(360.0) / 60.0;
        let sector = h as u32;
        let f = h - sector as f32;
        match sector {
            0 => Rgb::new(1.0, f, 0.0),
            1 => Rgb::new(1.0 - f, 1.0, 0.0),
            2 => Rgb::new(0.0, 1.0, f),
            3 => Rgb::new(0.0, 1.0 - f, 1.0),
            4 => Rgb::new(f, 0.0, 1.0),
            _ => Rgb::new(1.0, 0.0, 1.0 - f),
        }
    }

    /// Parses `#rrggbb` (sRGB) or `NNNNK` (a white of that colour temperature at full).
    pub fn parse(text: &str) -> Result<Self, ColourError> {
        let text = text.trim();
        if let Some(hex) = text.strip_prefix('#') {
            if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ColourError::Hex(text.to_owned()));
            }
            let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0);
            return Ok(Rgb::new(
                srgb_to_linear(byte(0)),
                srgb_to_linear(byte(2)),
                srgb_to_linear(byte(4)),
            ));
        }
        if let Some(k) = text.strip_suffix('K').or_else(|| text.strip_suffix('k')) {
            let k: f64 = k
                .trim()
                .parse()
                .map_err(|_| ColourError::Kelvin(text.to_owned()))?;
            if !(KELVIN_MIN..=KELVIN_MAX).contains(&k) {
                return Err(ColourError::Kelvin(text.to_owned()));
            }
            return Ok(kelvin_to_rgb(k));
        }
        Err(ColourError::Unknown(text.to_owned()))
    }

    /// The sRGB bytes a screen shows for this colour (components clamped to 0–1).
    pub fn to_srgb8(self) -> [u8; 3] {
        [
            linear_to_srgb8(self.r),
            linear_to_srgb8(self.g),
            linear_to_srgb8(self.b),
        ]
    }
}

impl fmt::Display for Rgb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, g, b] = self.to_srgb8();
        write!(f, "#{r:02x}{g:02x}{b:02x}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColourError {
    #[error("`{0}` is not a colour: write #rrggbb with six hex digits, e.g. \"#1e90ff\"")]
    Hex(String),
    #[error("`{0}` is not a white: write kelvin from 1667 to 25000, e.g. \"2700K\"")]
    Kelvin(String),
    #[error("`{0}` is not a colour: write \"#rrggbb\" or a white such as \"3000K\"")]
    Unknown(String),
}

pub const KELVIN_MIN: f64 = 1667.0;
pub const KELVIN_MAX: f64 = 25000.0;

fn srgb_to_linear(byte: u8) -> f32 {
    let c = f64::from(byte) / 255.0;
    let linear = if c <= 0.040_45 {
        c / 12.92
    } else {
        powf_pos((c + 0.055) / 1.055, 2.4)
    };
    linear as f32
}

fn linear_to_srgb8(c: f32) -> u8 {
    let c = f64::from(c.clamp(0.0, 1.0));
    let s = if c <= 0.003_130_8 {
        c * 12.92
    } else {
        1.055 * powf_pos(c, 1.0 / 2.4) - 0.055
    };
    (s * 255.0 + 0.5) as u8
}

/// `x^y` for `x > 0`, through `exp2(y·log2 x)` in plain arithmetic so every platform gives
/// the same bits (libm `pow` may differ by an ulp between systems).
pub fn powf_pos(x: f64, y: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    exp2(y * log2(x))
}

fn log2(x: f64) -> f64 {
    // x = m · 2^e with m in [1, 2); log2(m) by the series of atanh.
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let (m, exponent) = if m > std::f64::consts::SQRT_2 {
        (m / 2.0, exponent + 1)
    } else {
        (m, exponent)
    };
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut term = z;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 40.0 {
        sum += term / k;
        term *= z2;
        k += 2.0;
    }
    exponent as f64 + 2.0 * sum / std::f64::consts::LN_2
}

fn exp2(x: f64) -> f64 {
    if x < -1022.0 {
        return 0.0;
    }
    let whole = x.floor();
    let frac = x - whole; // in [0, 1)
    let y = frac * std::f64::consts::LN_2;
    let mut term = 1.0;
    let mut sum = 1.0;
    for n in 1..30 {
        term *= y / f64::from(n);
        sum += term;
    }
    sum * f64::from_bits(((whole as i64 + 1023) as u64) << 52)
}

/// Chromaticity `(x, y)` of a Planckian radiator at `kelvin` (Kim et al. cubic fit,
/// 1667–25000 K).
pub fn planckian_xy(kelvin: f64) -> (f64, f64) {
    let t = kelvin.clamp(KELVIN_MIN, KELVIN_MAX);
    let (t2, t3) = (t * t, t * t * t);
    let x = if t <= 4000.0 {
        -0.266_123_9e9 / t3 - 0.234_358_9e6 / t2 + 0.877_695_6e3 / t + 0.179_910
    } else {
        -3.025_846_9e9 / t3 + 2.107_037_9e6 / t2 + 0.222_634_7e3 / t + 0.240_390
    };
    let (x2, x3) = (x * x, x * x * x);
    let y = if t <= 2222.0 {
        -1.106_381_4 * x3 - 1.348_110_20 * x2 + 2.185_558_32 * x - 0.202_196_83
    } else if t <= 4000.0 {
        -0.954_947_6 * x3 - 1.374_185_93 * x2 + 2.091_370_15 * x - 0.167_488_67
    } else {
        3.081_758_0 * x3 - 5.873_386_70 * x2 + 3.751_129_97 * x - 0.370_014_83
    };
    (x, y)
}

/// The linear RGB of a white at `kelvin`, scaled so its largest component is 1.
pub fn kelvin_to_rgb(kelvin: f64) -> Rgb {
    let (x, y) = planckian_xy(kelvin);
    let (cx, cy, cz) = (x / y, 1.0, (1.0 - x - y) / y);
    let r = 3.240_454_2 * cx - 1.537_138_5 * cy - 0.498_531_4 * cz;
    let g = -0.969_266_0 * cx + 1.876_010_8 * cy + 0.041_556_0 * cz;
    let b = 0.055_643_4 * cx - 0.204_025_9 * cy + 1.057_225_2 * cz;
    let (r, g, b) = (r.max(0.0), g.max(0.0), b.max(0.0));
    let m = r.max(g).max(b);
    Rgb::new((r / m) as f32, (g / m) as f32, (b / m) as f32)
}

/// Correlated colour temperature of a colour (McCamy's approximation), or `None` for black.
/// Meaningful near the white locus; far from it, it is only the nearest-looking white.
pub fn cct_of(c: Rgb) -> Option<f64> {
    let (r, g, b) = (f64::from(c.r), f64::from(c.g), f64::from(c.b));
    let x = 0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b;
    let y = 0.212_672_9 * r + 0.715_152_2 * g + 0.072_175 * b;
    let z = 0.019_333_9 * r + 0.119_192_0 * g + 0.950_304_1 * b;
    let sum = x + y + z;
    if sum <= 1e-9 {
        return None;
    }
    let (cx, cy) = (x / sum, y / sum);
    let n = (cx - 0.3320) / (0.1858 - cy);
    let cct = 449.0 * n * n * n + 3525.0 * n * n + 6823.3 * n + 5520.33;
    Some(cct.clamp(KELVIN_MIN, KELVIN_MAX))
}

/// `sin(2π·turns)` by a polynomial on a reduced argument: identical on every platform,
/// accurate to about 1e-6, and fast enough for every pixel of every frame.
pub fn sin_turns(turns: f32) -> f32 {
    // Reduce to [-0.5, 0.5) turns, then fold into [-0.25, 0.25].
    let t = turns - (turns + 0.5).floor();
    let t = if t > 0.25 {
        0.5 - t
    } else if t < -0.25 {
        -0.5 - t
    } else {
        t
    };
    let x = t * std::f32::consts::TAU;
    let x2 = x * x;
    x * (1.0
        + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362_880.0)))))
}

/// Whites in this range count as unsaturated; colours are measured from the nearest of them.
/// Below 2700 K a white has almost no blue, and measuring from it would call every blue
/// infinitely saturated; such warm whites count as slightly saturated instead.
pub const NEUTRAL_KELVIN: (f64, f64) = (2700.0, 10000.0);

/// How far (in CIE 1960 uv) from the white locus a colour still takes the nearest white
/// as its reference.
const LOCUS_REACH: f32 = 0.03;
/// The reference white of colours far from the locus.
const FAR_WHITE_K: f64 = 5000.0;

/// CIE 1960 (u, v) chromaticity of a linear RGB colour, or `None` for black.
pub fn uv(c: Rgb) -> Option<(f32, f32)> {
    let x = 0.412_456_4 * c.r + 0.357_576_1 * c.g + 0.180_437_5 * c.b;
    let y = 0.212_672_9 * c.r + 0.715_152_2 * c.g + 0.072_175 * c.b;
    let z = 0.019_333_9 * c.r + 0.119_192 * c.g + 0.950_304_1 * c.b;
    let d = x + 15.0 * y + 3.0 * z;
    (d > 1e-9).then(|| (4.0 * x / d, 6.0 * y / d))
}

/// The white locus sampled every 10 mireds, for finding the white nearest a colour by
/// chromaticity. This stays well defined for colours far from white, where a CCT formula
/// such as McCamy's is not.
#[derive(Debug, Clone)]
pub struct WhiteLocus {
    /// `(mired, u, v)`, from warm to cool.
    points: Vec<(f32, f32, f32)>,
}

impl WhiteLocus {
    pub fn new() -> Self {
        let points = (4..=60)
            .rev()
            .map(|step| {
                let mired = step as f64 * 10.0;
                let (u, v) = uv(kelvin_to_rgb(1e6 / mired)).unwrap_or((0.0, 0.0));
                (mired as f32, u, v)
            })
            .collect();
        WhiteLocus { points }
    }

    /// The colour temperature of the white nearest `c` in chromaticity, within `range`
    /// (kelvin), or `None` for black.
    pub fn nearest_kelvin(&self, c: Rgb, range: (f64, f64)) -> Option<f64> {
        let (u, v) = uv(c)?;
        Some(self.project(u, v).0.clamp(range.0, range.1))
    }

    /// The nearest white's temperature in kelvin and the distance in uv to the locus (to
    /// the segments on either side of the nearest sample), in one pass over the samples.
    fn project(&self, u: f32, v: f32) -> (f64, f32) {
        let d2 = |i: usize| {
            let p = self.points[i];
            (p.1 - u) * (p.1 - u) + (p.2 - v) * (p.2 - v)
        };
        let n = self.points.len();
        let mut best = 0;
        let mut best_d2 = f32::INFINITY;
        for i in 0..n {
            let d = d2(i);
            if d < best_d2 {
                (best, best_d2) = (i, d);
            }
        }
        // Refine between samples with the parabola through the best one and its neighbours.
        let offset = if best > 0 && best + 1 < n {
            let (a, b, c) = (d2(best - 1), best_d2, d2(best + 1));
            let curve = a - 2.0 * b + c;
            if curve > 0.0 {
                (0.5 * (a - c) / curve).clamp(-0.5, 0.5)
            } else {
                0.0
            }
        } else {
            0.0
        };
        let mired = f64::from(self.points[best].0 - 10.0 * offset);
        let segment = |i: usize, j: usize| {
            let (a, b) = (self.points[i], self.points[j]);
            let (du, dv) = (b.1 - a.1, b.2 - a.2);
            let len = du * du + dv * dv;
            let t = if len > 0.0 {
                (((u - a.1) * du + (v - a.2) * dv) / len).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let (pu, pv) = (a.1 + t * du, a.2 + t * dv);
            (pu - u) * (pu - u) + (pv - v) * (pv - v)
        };
        let mut nearest = best_d2;
        if best > 0 {
            nearest = nearest.min(segment(best - 1, best));
        }
        if best + 1 < n {
            nearest = nearest.min(segment(best, best + 1));
        }
        (1e6 / mired, nearest.sqrt())
    }

    /// The white a colour's saturation is measured from, as linear RGB with largest
    /// component 1, or `None` for black. Near the white locus it is the nearest neutral
    /// white (kept within [`NEUTRAL_KELVIN`]), so tinted whites count as barely saturated;
    /// further away it blends into a fixed 5000 K white. The blend keeps the measure
    /// continuous: far from the locus the nearest point can jump from one end to the other
    /// (magentas are about as far from warm as from cool white), and a measure that jumped
    /// with it would let one output step turn an allowed colour into a forbidden one.
    pub fn nearest_white(&self, c: Rgb) -> Option<Rgb> {
        let (u, v) = uv(c)?;
        let (kelvin, distance) = self.project(u, v);
        let near = kelvin_to_rgb(kelvin.clamp(NEUTRAL_KELVIN.0, NEUTRAL_KELVIN.1));
        let t = (1.0 - distance / LOCUS_REACH).clamp(0.0, 1.0);
        let white = kelvin_to_rgb(FAR_WHITE_K).lerp(near, t);
        Some(white.scale(1.0 / white.max_component()))
    }
}

impl Default for WhiteLocus {
    fn default() -> Self {
        WhiteLocus::new()
    }
}

/// Saturation measured from the nearest white rather than from equal RGB, on the square
/// root of linear light (close to the gamma-encoded values a colour picker shows): a 2700 K
/// white has none, a pure red has 1. This is what a site's saturation cap and the
/// signal-colour bands compare against, so whites are never mistaken for colours.
pub fn white_saturation(c: Rgb, white: Rgb) -> f32 {
    balanced(c, white).saturation()
}

/// Hue as a colour picker shows it (on the square root of linear light), in degrees.
pub fn perceptual_hue(c: Rgb) -> Option<f32> {
    perceptual(c).hue()
}

/// `c` with its saturation from `white` lowered to `saturation`, keeping hue and value.
pub fn desaturate_from_white(c: Rgb, white: Rgb, saturation: f32) -> Rgb {
    let w = perceptual(white);
    let b = balanced(c, white).desaturate_to(saturation);
    let back = |v: f32, w: f32| (v * w) * (v * w);
    Rgb::new(back(b.r, w.r), back(b.g, w.g), back(b.b, w.b))
}

fn perceptual(c: Rgb) -> Rgb {
    Rgb::new(
        c.r.max(0.0).sqrt(),
        c.g.max(0.0).sqrt(),
        c.b.max(0.0).sqrt(),
    )
}

fn balanced(c: Rgb, white: Rgb) -> Rgb {
    let (c, w) = (perceptual(c), perceptual(white));
    let safe = |w: f32| if w > 1e-3 { w } else { 1e-3 };
    Rgb::new(c.r / safe(w.r), c.g / safe(w.g), c.b / safe(w.b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srgb_round_trips_every_byte() {
        for byte in 0..=255u8 {
            let c = Rgb::parse(&format!("#{byte:02x}{byte:02x}{byte:02x}")).unwrap();
            assert_eq!(c.to_srgb8(), [byte; 3]);
        }
    }

    #[test]
    fn pow_matches_std_closely() {
        for &(x, y) in &[
            (0.5, 2.2),
            (0.01, 2.4),
            (0.9, 1.0 / 2.4),
            (1.0, 3.0),
            (0.2, 0.5),
        ] {
            let ours = powf_pos(x, y);
            let std = f64::powf(x, y);
            assert!((ours - std).abs() < 1e-12, "{x}^{y}: {ours} vs {std}");
        }
    }

    #[test]
    fn sine_is_accurate() {
        for i in -2000..2000 {
            let turns = i as f32 / 997.0;
            let err = (sin_turns(turns) - (turns * std::f32::consts::TAU).sin()).abs();
            assert!(err < 2e-5, "{turns}: {err}");
        }
    }

    #[test]
    fn whites_have_the_expected_tint_and_temperature() {
        let warm = kelvin_to_rgb(2700.0);
        let daylight = kelvin_to_rgb(6500.0);
        assert!(warm.r == 1.0 && warm.g < 0.7 && warm.b < 0.4, "{warm:?}");
        // 6500 K is close to D65, the white of sRGB.
        assert!(daylight.min_component() > 0.9, "{daylight:?}");
        for k in [2200.0, 2700.0, 3000.0, 4000.0, 5000.0, 6500.0] {
            let back = cct_of(kelvin_to_rgb(k)).unwrap();
            assert!((back - k).abs() / k < 0.03, "{k} K came back as {back}");
        }
    }

    #[test]
    fn hue_and_desaturation_keep_value_and_hue() {
        let c = Rgb::new(1.0, 0.2, 0.1);
        assert!((c.hue().unwrap() - 6.666).abs() < 0.01);
        let d = c.desaturate_to(0.3);
        assert!((d.saturation() - 0.3).abs() < 1e-5);
        assert!((d.hue().unwrap() - c.hue().unwrap()).abs() < 0.01);
        assert_eq!(d.max_component(), 1.0);
        assert_eq!(Rgb::parse("#00ff00").unwrap().hue(), Some(120.0));
        assert!(Rgb::parse("#12345").is_err());
        assert!(Rgb::parse("900K").is_err());
    }
}
