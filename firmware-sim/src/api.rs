//! The simulator's HTTP state API (JSON): sites → controllers → fixtures with the levels
//! each fixture receives and the colour it emits, the last update and the counters of every
//! controller. What it shows is what the wire carried, decoded through the core.
//!
//! Every request must name the simulator by a loopback `Host` (`localhost`, 127.0.0.0/8,
//! `[::1]`) or one the engineer configured, so a web page in a browser on the same machine
//! cannot reach it through DNS rebinding (its requests carry the page's own host name). What
//! changes the simulator — faults and scenarios — also needs its token as a bearer token,
//! so another page's form or script cannot post one either.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use nightscape_core::{ControllerId, SiteId};
use serde::Serialize;

use crate::faults::{ActiveFaults, Fault, Scenario};
use crate::state::{ControllerSim, CountersView, SimState, SiteSim};

/// Who may use the API.
#[derive(Clone)]
pub struct Access {
    /// Host names the API answers to besides the loopback ones, e.g. a name in `/etc/hosts`
    /// for 127.0.0.1 (lowercase, without port).
    pub hosts: Vec<String>,
    /// The bearer token of every request that changes the simulator (faults, scenarios).
    pub token: String,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("hosts", &self.hosts)
            .field("token", &"…")
            .finish()
    }
}

impl Access {
    /// Whether `host` (a `Host` header's value: a name or address, maybe a port) is this
    /// simulator's.
    pub fn host_allowed(&self, host: &str) -> bool {
        nightscape_core::endpoints::host_allowed(host, &self.hosts)
    }

    /// Whether `header` (an `Authorization` value) carries the token; compared in constant
    /// time so the answer's timing does not give the token away byte by byte.
    fn token_given(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        let (given, token) = (given.trim().as_bytes(), self.token.as_bytes());
        given.len() == token.len()
            && !token.is_empty()
            && given.iter().zip(token).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    }
}

/// The `Host` check on every request, then the token on every one that is not a read.
async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    match host {
        Some(h) if access.host_allowed(h) => {}
        Some(h) => {
            return problem(
                StatusCode::FORBIDDEN,
                format!(
                    "Host `{h}` is not this simulator's: open it at 127.0.0.1 or localhost                      (or start it with --allow-host NAME)"
                ),
            );
        }
        None => {
            return problem(
                StatusCode::FORBIDDEN,
                "no Host header: say which host you asked for".into(),
            );
        }
    }
    let reads = [Method::GET, Method::HEAD];
    if !reads.contains(request.method()) {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok());
        if !access.token_given(given) {
            let mut response = problem(
                StatusCode::UNAUTHORIZED,
                "changing the simulator needs its token: send `Authorization: Bearer TOKEN` \
                 with the token it printed at start (also in its token file)"
                    .into(),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

/// The API's routes over the simulator's state, behind the `Host` check and, for changes,
/// the token.
pub fn router(state: Arc<SimState>, access: Access) -> Router {
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
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(access),
            guard,
        ))
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

fn problem(status: StatusCode, error: String) -> Response {
    (status, Json(Problem { error })).into_response()
}

fn not_found(what: String) -> Response {
    problem(StatusCode::NOT_FOUND, what)
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

#[cfg(test)]
mod tests {
    use super::Access;

    #[test]
    fn only_loopback_and_configured_hosts_are_this_simulators() {
        let access = Access {
            hosts: vec!["sim.test".into()],
            token: "t0ken".into(),
        };
        for (host, ok) in [
            ("127.0.0.1:8090", true),
            ("127.9.9.9", true),
            ("localhost", true),
            ("LocalHost:1", true),
            ("localhost.", true),
            ("[::1]:8090", true),
            ("[::1]", true),
            ("sim.test:8090", true),
            ("evil.example", false),
            ("evil.example:8090", false),
            ("127.0.0.1.evil.example", false),
            ("localhost.evil.example:8090", false),
            ("10.0.0.1:8090", false),
            ("0.0.0.0:8090", false),
            ("127.0.0.1:80x", false),
            ("[::1]x", false),
            ("[::2]:8090", false),
            ("", false),
        ] {
            assert_eq!(access.host_allowed(host), ok, "{host:?}");
        }
    }

    #[test]
    fn the_token_is_the_whole_bearer_value() {
        let access = Access {
            hosts: Vec::new(),
            token: "t0ken".into(),
        };
        assert!(access.token_given(Some("Bearer t0ken")));
        for wrong in [
            "Bearer t0ke",
            "Bearer t0ken2",
            "Bearer T0KEN",
            "t0ken",
            "Basic t0ken",
        ] {
            assert!(!access.token_given(Some(wrong)), "{wrong}");
        }
        assert!(!access.token_given(None));
        let empty = Access {
            hosts: Vec::new(),
            token: String::new(),
        };
        assert!(
            !empty.token_given(Some("Bearer ")),
            "no token opens nothing"
        );
    }
}
