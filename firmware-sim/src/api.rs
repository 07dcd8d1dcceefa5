//! The simulator's HTTP state API (JSON): sites → controllers → fixtures with the levels
//! each fixture receives and the colour it emits, the last update and the counters of every
//! controller. What it shows is what the wire carried, decoded through the core.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use nightscape_core::{ControllerId, SiteId};
use serde::Serialize;

use crate::faults::{ActiveFaults, Fault, Scenario};
use crate::state::{ControllerSim, CountersView, SimState, SiteSim};

/// The API's routes over the simulator's state.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/", get(preview))
        .route("/api/sites", get(sites))
        .route("/api/sites/{site}/layout", get(site_layout))
        .route("/api/stats", get(stats))
        .route("/api/sites/{site}", get(site))
        .route("/api/controllers/{controller}", get(controller))
        .route(
            "/api/faults",
            get(faults).post(add_fault).delete(clear_faults),
        )
        .route("/api/faults/{controller}", delete(clear_controller))
        .route("/api/scenario", post(scenario))
        .route("/api/events", get(events))
        .with_state(state)
}

#[derive(Debug, Serialize)]
struct SiteSummary {
    id: SiteId,
    name: String,
    controllers: usize,
    fixtures: usize,
}

#[derive(Debug, Serialize)]
pub struct ControllerView {
    pub id: ControllerId,
    pub site: SiteId,
    pub protocol: &'static str,
    pub last_update_ms: Option<i64>,
    pub counters: CountersView,
    pub faults: ActiveFaults,
    /// A Modbus device's own registers: enable, master, fade, power, uptime, status.
    pub device: Option<crate::modbus::DeviceView>,
}

#[derive(Debug, Serialize)]
pub struct FixtureView {
    pub id: String,
    pub controller: String,
    /// The channel values the fixture receives, in its channel order.
    pub channels: Vec<u8>,
    /// What its first pixel emits, as sRGB `#rrggbb`.
    pub colour: String,
    /// Every pixel's colour, for strips (one entry for other fixtures).
    pub pixels: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SiteView {
    pub id: SiteId,
    pub name: String,
    pub name_en: Option<String>,
    pub at_ms: i64,
    pub controllers: Vec<ControllerView>,
    pub fixtures: Vec<FixtureView>,
}

#[derive(Debug, Serialize)]
struct Problem {
    error: String,
}

fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, Json(Problem { error: what })).into_response()
}

fn hex(c: nightscape_core::colour::Rgb) -> String {
    let [r, g, b] = c.to_srgb8();
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn controller_view(c: &ControllerSim, now: std::time::Duration) -> ControllerView {
    ControllerView {
        device: c.with_device(|d| match d {
            crate::state::Device::Modbus(m) => Some(m.view(now)),
            crate::state::Device::Dmx(_) => None,
        }),
        id: c.id.clone(),
        site: c.site.clone(),
        protocol: c.protocol,
        last_update_ms: c.last_update_ms(),
        counters: c.counters.view(),
        faults: c.faults(),
    }
}

/// A site as the controllers show it now.
pub fn site_view(s: &SiteSim, state: &SimState) -> SiteView {
    let (channels, colours) = s.emitted(state.clock.as_ref());
    let fixtures = s
        .layout
        .fixtures()
        .iter()
        .zip(&s.site.fixtures)
        .map(|(out, f)| FixtureView {
            id: f.id.to_string(),
            controller: f.controller.to_string(),
            channels: channels
                .get(out.channels.clone())
                .unwrap_or_default()
                .to_vec(),
            colour: colours
                .get(out.pixels.start)
                .copied()
                .map_or_else(String::new, hex),
            pixels: colours
                .get(out.pixels.clone())
                .unwrap_or_default()
                .iter()
                .map(|c| hex(*c))
                .collect(),
        })
        .collect();
    SiteView {
        id: s.site.id.clone(),
        name: s.site.name.ko.clone(),
        name_en: s.site.name.en.clone(),
        at_ms: state.clock.now_ms(),
        controllers: s
            .controllers
            .iter()
            .map(|c| controller_view(c, state.clock.monotonic()))
            .collect(),
        fixtures,
    }
}

async fn sites(State(state): State<Arc<SimState>>) -> Json<Vec<SiteSummary>> {
    Json(
        state
            .sites
            .values()
            .map(|s| SiteSummary {
                id: s.site.id.clone(),
                name: s.site.name.ko.clone(),
                controllers: s.controllers.len(),
                fixtures: s.site.fixtures.len(),
            })
            .collect(),
    )
}

async fn site(State(state): State<Arc<SimState>>, Path(id): Path<String>) -> Response {
    let found = id
        .parse::<SiteId>()
        .ok()
        .and_then(|id| state.sites.get(&id));
    match found {
        Some(s) => Json(site_view(s, &state)).into_response(),
        None => not_found(format!("no site `{id}` in this simulator")),
    }
}

async fn controller(State(state): State<Arc<SimState>>, Path(id): Path<String>) -> Response {
    let found = id
        .parse::<ControllerId>()
        .ok()
        .and_then(|id| state.controller(&id).cloned());
    match found {
        Some(c) => Json(controller_view(&c, state.clock.monotonic())).into_response(),
        None => not_found(format!("no controller `{id}` in this simulator")),
    }
}

fn unprocessable(error: String) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(Problem { error })).into_response()
}

/// Controllers with faults now.
async fn faults(State(state): State<Arc<SimState>>) -> Json<Vec<ControllerView>> {
    Json(
        state
            .sites
            .values()
            .flat_map(|s| &s.controllers)
            .filter(|c| !c.faults().is_clear())
            .map(|c| controller_view(c, state.clock.monotonic()))
            .collect(),
    )
}

async fn add_fault(State(state): State<Arc<SimState>>, body: String) -> Response {
    let fault: Fault = match serde_json::from_str(&body) {
        Ok(f) => f,
        Err(e) => return unprocessable(format!("not a fault: {e}")),
    };
    match state.apply(&fault) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => unprocessable(e),
    }
}

/// A scenario file's text (TOML): every fault checked, then all applied, or none.
async fn scenario(State(state): State<Arc<SimState>>, body: String) -> Response {
    let scenario = match Scenario::parse(&body) {
        Ok(s) => s,
        Err(e) => return unprocessable(format!("not a scenario file: {e}")),
    };
    match state.apply_all(&scenario.faults) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => unprocessable(e),
    }
}

async fn clear_faults(State(state): State<Arc<SimState>>) -> StatusCode {
    state.clear(None);
    StatusCode::NO_CONTENT
}

async fn clear_controller(State(state): State<Arc<SimState>>, Path(id): Path<String>) -> Response {
    match id
        .parse::<ControllerId>()
        .ok()
        .filter(|id| state.controller(id).is_some())
    {
        Some(id) => {
            state.clear(Some(&id));
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(format!("no controller `{id}` in this simulator")),
    }
}

/// Server-sent events: `change` with a counter whenever any controller took something or a
/// fault changed, at most 20 a second; a page or test follows it and fetches what it shows.
async fn events(State(state): State<Arc<SimState>>) -> Response {
    let changes = state.changes.clone();
    let stream = futures_util::stream::unfold(changes, |mut rx| async move {
        rx.changed().await.ok()?;
        let n = *rx.borrow_and_update();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let event = axum::response::sse::Event::default()
            .event("change")
            .data(n.to_string());
        Some((Ok::<_, std::convert::Infallible>(event), rx))
    });
    axum::response::sse::Sse::new(stream)
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response()
}

/// Totals over every controller, by protocol: what was taken, refused and lost.
#[derive(Debug, Default, Serialize)]
struct Stats {
    controllers: usize,
    by_protocol: std::collections::BTreeMap<&'static str, CountersView>,
}

async fn stats(State(state): State<Arc<SimState>>) -> Json<Stats> {
    let mut out = Stats::default();
    for c in state.sites.values().flat_map(|s| &s.controllers) {
        out.controllers += 1;
        let v = c.counters.view();
        let t = out.by_protocol.entry(c.protocol).or_default();
        t.accepted += v.accepted;
        t.malformed += v.malformed;
        t.rejected += v.rejected;
        t.out_of_sequence += v.out_of_sequence;
        t.ignored += v.ignored;
        t.dropped += v.dropped;
    }
    Json(out)
}

/// The live preview page: the site drawn from fixture positions in the colours the
/// controllers emit, following the change stream.
async fn preview() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("preview.html"))
}

#[derive(Debug, Serialize)]
struct LayoutFixture {
    id: String,
    controller: String,
    /// Each pixel's position in metres in the site's drawing plane.
    points: Vec<[f32; 2]>,
}

#[derive(Debug, Serialize)]
struct LayoutView {
    id: SiteId,
    name: String,
    fixtures: Vec<LayoutFixture>,
}

async fn site_layout(State(state): State<Arc<SimState>>, Path(id): Path<String>) -> Response {
    let Some(s) = id
        .parse::<SiteId>()
        .ok()
        .and_then(|id| state.sites.get(&id))
    else {
        return not_found(format!("no site `{id}` in this simulator"));
    };
    let positions = s.layout.positions();
    Json(LayoutView {
        id: s.site.id.clone(),
        name: s.site.name.ko.clone(),
        fixtures: s
            .layout
            .fixtures()
            .iter()
            .zip(&s.site.fixtures)
            .map(|(out, f)| LayoutFixture {
                id: f.id.to_string(),
                controller: f.controller.to_string(),
                points: positions
                    .get(out.pixels.clone())
                    .unwrap_or_default()
                    .to_vec(),
            })
            .collect(),
    })
    .into_response()
}
