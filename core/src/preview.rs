//! Pictures of a site's light: every fixture drawn at its position in the colour it emits,
//! with a scale bar and a caption, so a person can judge a scene without hardware. Pure: it
//! returns pixels; the edges encode them as PNG or GIF.

use crate::colour::Rgb;
use crate::render::Layout;

/// An 8-bit sRGB picture, rows top to bottom.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

const BACKGROUND: Rgb = Rgb::new(0.004, 0.005, 0.012);
const MARGIN: f32 = 60.0;
const CAPTION: u32 = 64;
const FOOTER: u32 = 48;
const MAX_HEIGHT: u32 = 800;

/// How drawing coordinates map to the site's metres.
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub width: u32,
    pub height: u32,
    min: [f32; 2],
    scale: f32,
    top: f32,
}

impl View {
    /// Fits the layout's pixels into a picture `width` wide, keeping the site's aspect.
    pub fn fit(layout: &Layout, width: u32) -> View {
        let (mut min, mut max) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
        for p in layout.positions() {
            for k in 0..2 {
                min[k] = min[k].min(p[k]);
                max[k] = max[k].max(p[k]);
            }
        }
        if !min[0].is_finite() {
            (min, max) = ([0.0; 2], [1.0; 2]);
        }
        let span = [(max[0] - min[0]).max(1.0), (max[1] - min[1]).max(1.0)];
        let inner_w = width as f32 - 2.0 * MARGIN;
        // Very long sites (bridges) would be a sliver; keep at least a third of the width.
        let inner_h = MAX_HEIGHT as f32 - (CAPTION + FOOTER) as f32 - 2.0 * MARGIN;
        let scale = (inner_w / span[0])
            .min(inner_w / span[1].max(span[0] / 3.0))
            .min(inner_h / span[1]);
        let body = (span[1] * scale + 2.0 * MARGIN).max(220.0);
        let height = CAPTION + body as u32 + FOOTER;
        let top = CAPTION as f32 + (body - span[1] * scale) / 2.0;
        let left_pad = (inner_w - span[0] * scale) / 2.0;
        View {
            width,
            height,
            min: [min[0] - left_pad / scale, min[1]],
            scale,
            top,
        }
    }

    /// Where a point of the site (metres) lands in the picture (pixels from the top left).
    pub fn project(self, p: [f32; 2]) -> (f32, f32) {
        let x = MARGIN + (p[0] - self.min[0]) * self.scale;
        // y grows upwards on site, downwards in the picture.
        let y = self.height as f32
            - FOOTER as f32
            - (self.top - CAPTION as f32)
            - (p[1] - self.min[1]) * self.scale;
        (x, y)
    }
}

/// Draws `colours` (one per layout pixel, linear light as emitted) with `title` and
/// `caption` above and a scale bar below.
pub fn draw(layout: &Layout, view: &View, colours: &[Rgb], title: &str, caption: &str) -> Image {
    let (w, h) = (view.width as usize, view.height as usize);
    let mut canvas = Canvas {
        light: vec![BACKGROUND; w * h],
        w,
        h,
    };
    for f in layout.fixtures() {
        let n = f.pixels.len();
        // Strips are rows of small dots; single fixtures are floods with a wide glow.
        let (core, glow) = if n > 1 { (1.6, 5.0) } else { (4.0, 26.0) };
        for p in f.pixels.clone() {
            let (x, y) = view.project(layout.positions()[p]);
            let c = colours.get(p).copied().unwrap_or(Rgb::BLACK);
            if c.max_component() < 0.002 {
                canvas.ring(x, y, core + 1.5, Rgb::new(0.03, 0.03, 0.035));
            }
            canvas.splat(x, y, (core, glow), c);
        }
    }
    let mut rgb = Vec::with_capacity(w * h * 3);
    for c in &canvas.light {
        // Soft shoulder so overlapping glows saturate gracefully instead of clipping.
        let t = |v: f32| 1.0 - (-1.6 * v).exp();
        rgb.extend_from_slice(&Rgb::new(t(c.r), t(c.g), t(c.b)).to_srgb8());
    }
    let mut image = Image {
        width: view.width,
        height: view.height,
        rgb,
    };
    // Text keeps a 16 px margin on both sides: a title too long for its size is drawn
    // smaller, and whatever still does not fit ends in "..".
    let room = i64::from(view.width) - 32;
    let (scale, title) = fit(title, room, 2);
    text(&mut image, 16, 14, scale, &title, [235, 235, 240]);
    let (_, caption) = fit(caption, room, 1);
    text(&mut image, 16, 40, 1, &caption, [150, 155, 170]);
    scale_bar(&mut image, view);
    image
}

/// `s` at the largest scale up to `scale` at which it fits in `room` pixels, else at
/// scale 1, cut to fit and ending in "..".
fn fit(s: &str, room: i64, scale: i64) -> (i64, String) {
    let n = i64::try_from(s.chars().count()).unwrap_or(i64::MAX);
    if let Some(k) = (1..=scale).rev().find(|k| n.saturating_mul(8 * k) <= room) {
        return (k, s.to_owned());
    }
    let keep = usize::try_from(room / 8 - 2).unwrap_or(0);
    (1, s.chars().take(keep).chain("..".chars()).collect())
}

/// Linear light being accumulated for a picture.
struct Canvas {
    light: Vec<Rgb>,
    w: usize,
    h: usize,
}

impl Canvas {
    /// Adds `c` times `weight(distance)` to every picture pixel within `radius` of (x, y).
    fn add_around(&mut self, x: f32, y: f32, radius: f32, c: Rgb, weight: impl Fn(f32) -> f32) {
        let r = radius.ceil() as i32 + 1;
        let (cx, cy) = (x.round() as i32, y.round() as i32);
        for py in (cy - r).max(0)..=(cy + r).min(self.h as i32 - 1) {
            for px in (cx - r).max(0)..=(cx + r).min(self.w as i32 - 1) {
                let d = ((px as f32 - x).powi(2) + (py as f32 - y).powi(2)).sqrt();
                let k = weight(d);
                if k > 0.0 {
                    let o = &mut self.light[py as usize * self.w + px as usize];
                    *o = Rgb::new(o.r + c.r * k, o.g + c.g * k, o.b + c.b * k);
                }
            }
        }
    }

    /// A lit fixture: a bright core and a glow that fades to nothing at `glow`.
    fn splat(&mut self, x: f32, y: f32, (core, glow): (f32, f32), c: Rgb) {
        if c.max_component() <= 0.0 {
            return;
        }
        self.add_around(x, y, glow, c, |d| {
            if d <= core {
                1.6
            } else {
                0.35 * (1.0 - (d - core) / (glow - core)).max(0.0).powi(2)
            }
        });
    }

    /// A dark fixture: a faint outline, so people see it is there.
    fn ring(&mut self, x: f32, y: f32, radius: f32, c: Rgb) {
        self.add_around(x, y, radius, c, |d| {
            if (d - radius).abs() < 0.7 { 1.0 } else { 0.0 }
        });
    }
}

fn set(image: &mut Image, x: i64, y: i64, c: [u8; 3]) {
    if x < 0 || y < 0 || x >= i64::from(image.width) || y >= i64::from(image.height) {
        return;
    }
    let i = (y as usize * image.width as usize + x as usize) * 3;
    image.rgb[i..i + 3].copy_from_slice(&c);
}

/// Writes ASCII `s` with the 8×8 font at `scale`; other characters show as `?`.
pub fn text(image: &mut Image, x: i64, y: i64, scale: i64, s: &str, c: [u8; 3]) {
    for (i, ch) in s.chars().enumerate() {
        let code = if ch.is_ascii() {
            ch as usize
        } else {
            b'?' as usize
        };
        let glyph = font8x8::legacy::BASIC_LEGACY[code];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits >> col & 1 == 1 {
                    for sy in 0..scale {
                        for sx in 0..scale {
                            let px = x + (i as i64 * 8 + col) * scale + sx;
                            set(image, px, y + row as i64 * scale + sy, c);
                        }
                    }
                }
            }
        }
    }
}

fn scale_bar(image: &mut Image, view: &View) {
    let target = image.width as f32 * 0.15 / view.scale;
    let metres = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]
        .into_iter()
        .rev()
        .find(|&m| m <= target)
        .unwrap_or(1.0);
    let len = (metres * view.scale) as i64;
    let (x0, y0) = (16i64, i64::from(image.height) - 22);
    let grey = [190, 190, 200];
    for x in x0..=x0 + len {
        set(image, x, y0, grey);
    }
    for y in y0 - 5..=y0 {
        set(image, x0, y, grey);
        set(image, x0 + len, y, grey);
    }
    text(
        image,
        x0 + len + 10,
        y0 - 7,
        1,
        &format!("{metres} m"),
        grey,
    );
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn text_is_drawn_smaller_then_cut_to_fit_its_room() {
        assert_eq!(
            fit("cityhall-blue-hour", 288, 2),
            (2, "cityhall-blue-hour".into())
        );
        let long = "Nonsan City Hall - cityhall-blue-hour";
        assert_eq!(fit(long, 768, 2), (2, long.into()));
        assert_eq!(fit(long, 400, 2), (1, long.into()));
        let (scale, cut) = fit(long, 288, 2);
        assert_eq!(
            (scale, cut.as_str()),
            (1, "Nonsan City Hall - cityhall-blue-h..")
        );
        assert!(cut.chars().count() * 8 <= 288);
        assert_eq!(fit("anything", 8, 1), (1, "..".into()));
    }
}
