//! Pictures of a site for the dashboard: what its fixtures show, computed by the core from
//! the library (the same files as the gateways' plans) and the cue — the one the site's
//! gateway reports when it does, else the schedule's — and labelled as computed, not seen.

use std::sync::Arc;

use nightscape_core::model::Level;
use nightscape_core::preview::{self, View};
use nightscape_core::render::{CompiledScene, Layout, decode, render_channels};
use nightscape_core::sun::Almanac;
use nightscape_core::{SceneId, SiteId};

use crate::AppState;
use crate::store::StoreError;

/// Where the cue of a picture came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The cue the gateway reported playing.
    Reported,
    /// The cue the schedule gives for the instant.
    Schedule,
}

/// A PNG of `site` at `t_ms`, `width` pixels wide; `None` when the site is not in the library.
pub async fn site_png(
    state: &Arc<AppState>,
    site: &SiteId,
    t_ms: i64,
    width: u32,
    use_reported: bool,
) -> Result<Option<(Vec<u8>, Source)>, StoreError> {
    let lib = state.store.checked_library().await?;
    let library = &lib.checked.library;
    let Some(s) = library.sites.get(site) else {
        return Ok(None);
    };
    let reported = if use_reported {
        crate::read::gateways(&state.store)
            .await?
            .into_iter()
            .find(|g| g.site == site.as_str())
            .and_then(|g| g.state)
            .and_then(|st| st.cue)
            .map(|c| (c.scene, c.brightness_pct))
    } else {
        None
    };
    let (cue, source) = match reported {
        Some(c) => (c, Source::Reported),
        None => {
            let day = t_ms.div_euclid(86_400_000);
            let cue = library
                .evaluator(site, Arc::new(Almanac::new(day - 2, day + 2)))
                .map(|ev| ev.cue_at(t_ms))
                .map_or((None, Level::ZERO), |c| (c.scene, c.brightness));
            (cue, Source::Schedule)
        }
    };
    let layout = Layout::new(s, library.zone_rule(s));
    let (scene, brightness): (Option<SceneId>, Level) = cue;
    let channels = match scene.as_ref().and_then(|id| library.scenes.get(id)) {
        Some(sc) => render_channels(&CompiledScene::new(sc, &layout), &layout, t_ms, brightness),
        None => vec![0; layout.channel_count()],
    };
    let colours = decode(&layout, &channels).unwrap_or_default();
    let local = jiff::Timestamp::from_millisecond(t_ms)
        .map(|ts| {
            s.time_zone
                .to_datetime(ts)
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    let title = format!(
        "{} - {}",
        s.name.en.as_deref().unwrap_or(site.as_str()),
        scene.as_ref().map_or("dark", |x| x.as_str())
    );
    let caption = format!(
        "computed, not measured  |  {} cue  |  {local}  |  {} %",
        match source {
            Source::Reported => "reported",
            Source::Schedule => "scheduled",
        },
        brightness.pct().round()
    );
    let view = View::fit(&layout, width);
    let image = preview::draw(&layout, &view, &colours, &title, &caption);
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let written = encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(&image.rgb));
    if let Err(e) = written {
        return Err(StoreError::Conflict(format!("encoding the preview: {e}")));
    }
    Ok(Some((bytes, source)))
}
