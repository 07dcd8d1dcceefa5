//! `nightscape scene render`: a scene drawn as a PNG at one instant or as a GIF over time.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nightscape_core::model::Level;
use nightscape_core::preview::{self, Image, View};
use nightscape_core::render::{CompiledScene, Layout, decode, render_channels};
use nightscape_core::scene::SceneId;
use nightscape_core::show::ShowLibrary;

/// What to draw.
pub struct Request<'a> {
    pub scene: &'a str,
    pub at: &'a str,
    pub duration: Option<Duration>,
    pub fps: u32,
    pub width: u32,
    pub out: &'a Path,
}

/// Parses `--at`: an instant with an offset (`2026-12-24T19:30:00+09:00`, `…Z`) or a local
/// date and time at the site (`2026-12-24T19:30`).
pub fn parse_at(text: &str, tz: &jiff::tz::TimeZone) -> Result<jiff::Timestamp> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts);
    }
    let civil: jiff::civil::DateTime = text.parse().map_err(|_| {
        anyhow::anyhow!("`{text}` is not a time: write 2026-12-24T19:30 (site time) or 2026-12-24T19:30:00+09:00")
    })?;
    tz.to_ambiguous_timestamp(civil)
        .compatible()
        .with_context(|| format!("`{text}` does not exist in the site's time zone"))
}

/// Parses `10s`, `500ms`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len()),
    );
    let value: f64 = number
        .parse()
        .with_context(|| format!("`{text}` is not a duration such as 10s"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" | "min" => value * 60.0,
        other => bail!("unknown unit `{other}` in `{text}`: use ms, s or m"),
    };
    if !(seconds > 0.0 && seconds <= 3600.0) {
        bail!("duration `{text}` must be above 0 and at most an hour");
    }
    Ok(Duration::from_secs_f64(seconds))
}

pub fn run(library: &ShowLibrary, request: &Request<'_>) -> Result<String> {
    let id = SceneId::new(request.scene)
        .with_context(|| format!("`{}` is not a scene id", request.scene))?;
    let Some(scene) = library.scenes.get(&id) else {
        let known: Vec<&str> = library.scenes.keys().map(|k| k.as_str()).collect();
        bail!(
            "no scene `{id}` in the library (it has: {})",
            known.join(", ")
        );
    };
    let site = library
        .sites
        .get(&scene.site)
        .context("the scene's site is missing")?;
    let layout = Layout::new(site, library.zone_rule(site));
    let compiled = CompiledScene::new(scene, &layout);
    let start = parse_at(request.at, &site.time_zone)?;
    let view = View::fit(&layout, request.width);
    let title = format!(
        "{} - {}",
        site.name.en.as_deref().unwrap_or(site.id.as_str()),
        scene.name.en.as_deref().unwrap_or(id.as_str())
    );
    let draw = |t: jiff::Timestamp| -> Image {
        let channels = render_channels(&compiled, &layout, t.as_millisecond(), Level::FULL);
        // The channels come from this layout, so their count is the layout's.
        let colours = decode(&layout, &channels).unwrap_or_default();
        let local = site.time_zone.to_datetime(t);
        let caption = format!(
            "scene {}  |  {} {}  |  {} fixtures, {} pixels, {} channels",
            id,
            local.strftime("%Y-%m-%d %H:%M:%S"),
            site.time_zone.iana_name().unwrap_or("local"),
            layout.fixtures().len(),
            layout.pixel_count(),
            layout.channel_count()
        );
        preview::draw(&layout, &view, &colours, &title, &caption)
    };
    let extension = request
        .out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("");
    // Everything is made in memory and written at the end: a mistake never leaves an empty
    // or half-written file in place of a good one.
    let mut bytes = Vec::new();
    let local = site
        .time_zone
        .to_datetime(start)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    let summary = match (extension, request.duration) {
        ("png", None) => {
            let image = draw(start);
            let mut encoder = png::Encoder::new(&mut bytes, image.width, image.height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut png = encoder.write_header().context("encoding PNG")?;
            png.write_image_data(&image.rgb).context("encoding PNG")?;
            drop(png);
            format!(
                "wrote {} ({}x{}) of {id} at {local} site time",
                request.out.display(),
                image.width,
                image.height
            )
        }
        ("gif", Some(duration)) => {
            // GIF delays are whole hundredths of a second.
            let delay = (100.0 / f64::from(request.fps)).round().clamp(2.0, 100.0) as u16;
            let step_ms = u64::from(delay) * 10;
            let frames = (duration.as_millis() as u64 / step_ms).max(1);
            let (w, h) = (u16::try_from(view.width)?, u16::try_from(view.height)?);
            let mut encoder = gif::Encoder::new(&mut bytes, w, h, &[]).context("encoding GIF")?;
            encoder
                .set_repeat(gif::Repeat::Infinite)
                .context("encoding GIF")?;
            for k in 0..frames {
                let t = start + jiff::SignedDuration::from_millis((k * step_ms) as i64);
                let image = draw(t);
                let mut frame = gif::Frame::from_rgb_speed(w, h, &image.rgb, 10);
                frame.delay = delay;
                encoder.write_frame(&frame).context("encoding GIF")?;
            }
            drop(encoder);
            format!(
                "wrote {} ({frames} frames, {:.1} fps) of {id} from {local} site time",
                request.out.display(),
                100.0 / f64::from(delay)
            )
        }
        ("png", Some(_)) => bail!("--duration makes an animation: write to a .gif file"),
        ("gif", None) => bail!("a .gif needs --duration, e.g. --duration 10s"),
        _ => bail!("--out must end in .png (one instant) or .gif (with --duration)"),
    };
    std::fs::write(request.out, &bytes)
        .with_context(|| format!("writing {}", request.out.display()))?;
    Ok(summary)
}
