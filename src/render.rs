//! `nightscape scene render`: a scene drawn as a PNG at one instant or as a GIF over time.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nightscape_core::render::Layout;
use nightscape_core::scene::SceneId;
use nightscape_core::show::ShowLibrary;
use nightscape_server::preview::{gif_bytes, png_bytes, scene_frames};

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
    let start = parse_at(request.at, &site.time_zone)?;
    let caption = |layout: &Layout, t: jiff::Timestamp| {
        format!(
            "scene {}  |  {} {}  |  {} fixtures, {} pixels, {} channels",
            id,
            site.time_zone.to_datetime(t).strftime("%Y-%m-%d %H:%M:%S"),
            site.time_zone.iana_name().unwrap_or("local"),
            layout.fixtures().len(),
            layout.pixel_count(),
            layout.channel_count()
        )
    };
    let (view, draw) = scene_frames(library, &id, request.width, caption)
        .context("the scene's site is missing")?;
    let extension = request
        .out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("");
    // Everything is made in memory and written at the end: a mistake never leaves an empty
    // or half-written file in place of a good one.
    let local = site
        .time_zone
        .to_datetime(start)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    let (bytes, summary) = match (extension, request.duration) {
        ("png", None) => {
            let image = draw(start);
            let summary = format!(
                "wrote {} ({}x{}) of {id} at {local} site time",
                request.out.display(),
                image.width,
                image.height
            );
            (png_bytes(&image)?, summary)
        }
        ("gif", Some(duration)) => {
            // GIF delays are whole hundredths of a second.
            let delay = (100.0 / f64::from(request.fps)).round().clamp(2.0, 100.0) as u16;
            let step_ms = i64::from(delay) * 10;
            let frames = (duration.as_millis() as i64 / step_ms).max(1);
            let images =
                (0..frames).map(|k| draw(start + jiff::SignedDuration::from_millis(k * step_ms)));
            let bytes = gif_bytes(images, view.width, view.height, delay)?;
            let summary = format!(
                "wrote {} ({frames} frames, {:.1} fps) of {id} from {local} site time",
                request.out.display(),
                100.0 / f64::from(delay)
            );
            (bytes, summary)
        }
        ("png", Some(_)) => bail!("--duration makes an animation: write to a .gif file"),
        ("gif", None) => bail!("a .gif needs --duration, e.g. --duration 10s"),
        _ => bail!("--out must end in .png (one instant) or .gif (with --duration)"),
    };
    std::fs::write(request.out, &bytes)
        .with_context(|| format!("writing {}", request.out.display()))?;
    Ok(summary)
}
