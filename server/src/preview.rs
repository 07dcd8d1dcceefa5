//! Pictures of a site for the dashboard: what its fixtures show, computed by the core from
//! the library (the same files as the gateways' plans) and the cue — the one the site's
//! gateway reports when it does, else the schedule's — and labelled as computed, not seen.
//! Also each scene as a short looping animation in its site's layout, for the scene library,
//! and the PNG and GIF encoders the command line's `scene render` shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nightscape_core::colour::Rgb;
use nightscape_core::model::Level;
use nightscape_core::preview::{self, Image, View};
use nightscape_core::render::{CompiledScene, Layout, decode, render_channels};
use nightscape_core::show::ShowLibrary;
use nightscape_core::sun::Almanac;
use nightscape_core::{SceneId, SiteId};
use serde::Serialize;

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

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Reported => "reported",
            Source::Schedule => "scheduled",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("encoding the picture: {0}")]
pub struct EncodeError(String);

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("drawing the animation: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A picture as PNG bytes.
pub fn png_bytes(image: &Image) -> Result<Vec<u8>, EncodeError> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(&image.rgb))
        .map_err(|e| EncodeError(e.to_string()))?;
    Ok(bytes)
}

/// Pictures of one size as a looping GIF, `delay_cs` hundredths of a second each.
pub fn gif_bytes(
    frames: impl IntoIterator<Item = Image>,
    width: u32,
    height: u32,
    delay_cs: u16,
) -> Result<Vec<u8>, EncodeError> {
    let size = |v: u32| {
        u16::try_from(v).map_err(|_| EncodeError(format!("{v} pixels is too large for a GIF")))
    };
    let (w, h) = (size(width)?, size(height)?);
    let mut bytes = Vec::new();
    let mut encoder =
        gif::Encoder::new(&mut bytes, w, h, &[]).map_err(|e| EncodeError(e.to_string()))?;
    encoder
        .set_repeat(gif::Repeat::Infinite)
        .map_err(|e| EncodeError(e.to_string()))?;
    for image in frames {
        let mut frame = gif::Frame::from_rgb_speed(w, h, &image.rgb, 10);
        frame.delay = delay_cs;
        encoder
            .write_frame(&frame)
            .map_err(|e| EncodeError(e.to_string()))?;
    }
    drop(encoder);
    Ok(bytes)
}

/// Pictures narrower than this carry a short title and caption.
const NARROW: u32 = 600;

/// What a site shows at an instant, before it is drawn.
pub struct SiteLight {
    pub layout: Layout,
    pub colours: Vec<Rgb>,
    pub scene: Option<SceneId>,
    pub brightness: Level,
    pub source: Source,
    /// The site's English name (the font has no Hangul), and the scene's id or "dark".
    site_name: String,
    scene_label: String,
    /// The instant in the site's time zone.
    local: Option<jiff::civil::DateTime>,
}

/// The light of `site` at `t_ms`; `None` when the site is not in the library.
pub async fn site_light(
    state: &Arc<AppState>,
    site: &SiteId,
    t_ms: i64,
    use_reported: bool,
) -> Result<Option<SiteLight>, StoreError> {
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
    let ((scene, brightness), source) = match reported {
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
    let channels = match scene.as_ref().and_then(|id| library.scenes.get(id)) {
        Some(sc) => render_channels(&CompiledScene::new(sc, &layout), &layout, t_ms, brightness),
        None => vec![0; layout.channel_count()],
    };
    let colours = decode(&layout, &channels).unwrap_or_default();
    let local = jiff::Timestamp::from_millisecond(t_ms)
        .ok()
        .map(|ts| s.time_zone.to_datetime(ts));
    Ok(Some(SiteLight {
        layout,
        colours,
        site_name: s.name.en.clone().unwrap_or_else(|| site.to_string()),
        scene_label: scene.as_ref().map_or("dark", |x| x.as_str()).to_owned(),
        scene,
        brightness,
        source,
        local,
    }))
}

impl SiteLight {
    fn local(&self, format: &str) -> String {
        self.local
            .map(|t| t.strftime(format).to_string())
            .unwrap_or_default()
    }

    /// The picture, `width` pixels wide. The captions are English: the core's font has no
    /// Hangul, and the page around the picture carries the Korean. A narrow picture (the
    /// overview's cards, beside the site's name) says the scene, the time and the level only.
    pub fn draw(&self, width: u32) -> Image {
        let (title, caption) = if width < NARROW {
            (
                self.scene_label.clone(),
                format!(
                    "computed  |  {}  |  {} %",
                    self.local("%H:%M"),
                    self.brightness.pct().round()
                ),
            )
        } else {
            (
                format!("{} - {}", self.site_name, self.scene_label),
                format!(
                    "computed, not measured  |  {} cue  |  {}  |  {} %",
                    self.source.as_str(),
                    self.local("%Y-%m-%d %H:%M:%S"),
                    self.brightness.pct().round()
                ),
            )
        };
        let view = View::fit(&self.layout, width);
        preview::draw(&self.layout, &view, &self.colours, &title, &caption)
    }

    /// Every fixture with where the picture `width` wide draws it and the colour it emits.
    pub fn fixtures(&self, width: u32) -> SitePicture {
        let view = View::fit(&self.layout, width);
        let fixtures = self
            .layout
            .fixtures()
            .iter()
            .map(|out| {
                let p = self.layout.positions().get(out.pixels.start).copied();
                let (x, y) = p.map_or((0.0, 0.0), |p| view.project(p));
                FixtureLight {
                    id: out.id.to_string(),
                    x: x.round(),
                    y: y.round(),
                    colour: self
                        .colours
                        .get(out.pixels.start)
                        .map_or_else(String::new, Rgb::to_string),
                }
            })
            .collect();
        SitePicture {
            width: view.width,
            height: view.height,
            source: self.source.as_str(),
            scene: self.scene.as_ref().map(|s| s.to_string()),
            brightness_pct: self.brightness.pct(),
            fixtures,
        }
    }
}

/// A site's computed picture as data: where each fixture is drawn and its colour.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SitePicture {
    pub width: u32,
    pub height: u32,
    /// `reported` (the gateway's cue) or `scheduled`.
    pub source: &'static str,
    pub scene: Option<String>,
    pub brightness_pct: f64,
    pub fixtures: Vec<FixtureLight>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FixtureLight {
    pub id: String,
    /// Pixels from the picture's left edge.
    pub x: f32,
    /// Pixels from the picture's top edge.
    pub y: f32,
    /// The first pixel's colour as emitted, `#rrggbb` sRGB.
    pub colour: String,
}

/// A PNG of `site` at `t_ms`, `width` pixels wide; `None` when the site is not in the library.
pub async fn site_png(
    state: &Arc<AppState>,
    site: &SiteId,
    t_ms: i64,
    width: u32,
    use_reported: bool,
) -> Result<Option<(Vec<u8>, Source)>, PreviewError> {
    let Some(light) = site_light(state, site, t_ms, use_reported).await? else {
        return Ok(None);
    };
    Ok(Some((png_bytes(&light.draw(width))?, light.source)))
}

/// How the scene library animates a scene: frames 0.15 s apart for six seconds, long enough
/// for slow effects to show their movement, short enough to make quickly.
const ANIMATION_DELAY_CS: u16 = 15;
const ANIMATION_FRAMES: i64 = 40;

/// Draws `scene` at full brightness in its site's layout at `t`; `None` if either is missing.
pub fn scene_frames(
    library: &ShowLibrary,
    scene: &SceneId,
    width: u32,
    caption: impl Fn(&Layout, jiff::Timestamp) -> String,
) -> Option<(View, impl Fn(jiff::Timestamp) -> Image)> {
    let sc = library.scenes.get(scene)?;
    let site = library.sites.get(&sc.site)?;
    let layout = Layout::new(site, library.zone_rule(site));
    let compiled = CompiledScene::new(sc, &layout);
    let view = View::fit(&layout, width);
    let title = format!(
        "{} - {}",
        site.name.en.as_deref().unwrap_or(site.id.as_str()),
        sc.name.en.as_deref().unwrap_or(scene.as_str())
    );
    let draw = move |t: jiff::Timestamp| {
        let channels = render_channels(&compiled, &layout, t.as_millisecond(), Level::FULL);
        // The channels come from this layout, so their count is the layout's.
        let colours = decode(&layout, &channels).unwrap_or_default();
        preview::draw(&layout, &view, &colours, &title, &caption(&layout, t))
    };
    Some((view, draw))
}

/// A GIF and the address of the checked library it was made from.
type Made = (u64, Arc<Vec<u8>>);

/// What a scene's animation is drawn from — the scene, its site (fixtures, limits, names)
/// and the site's zone rule — as a number that changes when any of it does; `None` for a scene
/// the library does not have. Pages put it in the animation's address, so a browser keeps a
/// picture exactly as long as it is right.
pub fn scene_version(library: &ShowLibrary, scene: &SceneId) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let sc = library.scenes.get(scene)?;
    let site = library.sites.get(&sc.site)?;
    // The model as read, not the layout compiled from it: a page asks this for every scene.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{sc:?}{site:?}{:?}", library.zone_rule(site)).hash(&mut h);
    Some(h.finish())
}

/// Scene animations already made, by scene and width, with the version they were drawn
/// from: a page of thumbnails asks for each again on every visit, and a change to one scene
/// must not throw away the others.
pub struct Animations {
    made: Mutex<HashMap<(SceneId, u32), Made>>,
    /// One animation is drawn at a time: a page of thumbnails, or anyone asking for many,
    /// must not take every core from the API and the publisher.
    drawing: tokio::sync::Semaphore,
}

/// The widths animations are drawn at; a request gets the smallest that is at least as
/// wide as it asked (so a scene has at most three, whatever is asked).
pub const ANIMATION_WIDTHS: [u32; 3] = [320, 480, 640];

impl std::fmt::Debug for Animations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Animations")
    }
}

impl Default for Animations {
    fn default() -> Animations {
        Animations {
            made: Mutex::default(),
            drawing: tokio::sync::Semaphore::new(1),
        }
    }
}

impl Animations {
    /// A looping GIF of `scene` from `t_ms`, or `None` when the library has no such scene.
    pub async fn scene_gif(
        &self,
        state: &Arc<AppState>,
        scene: &SceneId,
        width: u32,
        t_ms: i64,
    ) -> Result<Option<Arc<Vec<u8>>>, PreviewError> {
        let lib = state.store.checked_library().await?;
        let Some(version) = scene_version(&lib.checked.library, scene) else {
            return Ok(None);
        };
        let width = ANIMATION_WIDTHS
            .into_iter()
            .find(|w| *w >= width)
            .unwrap_or(ANIMATION_WIDTHS[2]);
        let key = (scene.clone(), width);
        let cached = || {
            self.made
                .lock()
                .ok()
                .and_then(|made| made.get(&key).cloned())
                .filter(|(v, _)| *v == version)
                .map(|(_, gif)| gif)
        };
        if let Some(gif) = cached() {
            return Ok(Some(gif));
        }
        let _turn = self.drawing.acquire().await;
        // Someone else may have drawn it while this waited.
        if let Some(gif) = cached() {
            return Ok(Some(gif));
        }
        let scene = scene.clone();
        let library = lib.clone();
        let made = tokio::task::spawn_blocking(move || {
            let caption = |_: &Layout, _: jiff::Timestamp| "computed, full brightness".to_owned();
            let (view, draw) = scene_frames(&library.checked.library, &scene, width, caption)?;
            let start = jiff::Timestamp::from_millisecond(t_ms).unwrap_or_default();
            let step = i64::from(ANIMATION_DELAY_CS) * 10;
            let frames = (0..ANIMATION_FRAMES)
                .map(|k| draw(start + jiff::SignedDuration::from_millis(k * step)));
            Some(gif_bytes(
                frames,
                view.width,
                view.height,
                ANIMATION_DELAY_CS,
            ))
        })
        .await?;
        let Some(gif) = made else { return Ok(None) };
        let gif = Arc::new(gif?);
        if let Ok(mut made) = self.made.lock() {
            made.retain(|(id, _), (v, _)| id != &key.0 || *v == version);
            made.insert(key, (version, gif.clone()));
        }
        Ok(Some(gif))
    }
}
