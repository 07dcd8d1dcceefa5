//! The dashboard for facility staff: server-rendered pages in Korean or English (switchable,
//! remembered in a cookie), on the same route table and access checks as the API. Pages
//! are plain functions that write escaped HTML; the wording lives in `ko.toml` and
//! `en.toml`, which must have the same keys.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use axum::Extension;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use nightscape_core::diag::Lang;
use serde::Deserialize;

use crate::AppState;
use crate::api::ApiError;
use crate::auth::{Principal, Role};
use crate::read;

mod audit;
mod city;
mod faults;
mod library;
mod schedule;
mod tokens;

pub use audit::audit;
pub use city::city;
pub use faults::{energy, faults};
pub use library::{library, library_file};
pub use schedule::schedule;
pub use tokens::tokens;

pub const LANG_COOKIE: &str = "nightscape_lang";

type Catalog = BTreeMap<String, String>;

fn parse(text: &str) -> Catalog {
    toml::from_str(text).unwrap_or_default()
}

pub fn catalogs() -> &'static (Catalog, Catalog) {
    static BOTH: OnceLock<(Catalog, Catalog)> = OnceLock::new();
    BOTH.get_or_init(|| {
        (
            parse(include_str!("ko.toml")),
            parse(include_str!("en.toml")),
        )
    })
}

/// The wording of `key` in `lang` (the key itself if a catalogue lacks it, which a test
/// forbids).
pub fn t(lang: Lang, key: &'static str) -> &'static str {
    let (ko, en) = catalogs();
    let catalog = if lang == Lang::En { en } else { ko };
    catalog.get(key).map_or(key, String::as_str)
}

/// HTML-escapes text for element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page language: `?lang=` (then remembered in a cookie), the cookie, else Korean.
pub struct PageLang {
    pub lang: Lang,
    /// Set when `?lang=` chose it: the response remembers it.
    pub chosen: bool,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PageLang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        if let Some(l) = query.split('&').find_map(|kv| kv.strip_prefix("lang=")) {
            return Ok(PageLang {
                lang: Lang::pick(l),
                chosen: true,
            });
        }
        // Korean unless the user chose English here: staff read Korean first, whatever
        // language their browser was set up with.
        let asked = crate::api::cookie(&parts.headers, LANG_COOKIE)
            .unwrap_or("ko")
            .to_owned();
        Ok(PageLang {
            lang: Lang::pick(&asked),
            chosen: false,
        })
    }
}

fn code(lang: Lang) -> &'static str {
    if lang == Lang::En { "en" } else { "ko" }
}

/// A whole page: header (the user's name and role, the language switch), then `main`.
pub(crate) fn page(
    lang: PageLang,
    who: Option<&Principal>,
    title: &str,
    path: &str,
    main: &str,
) -> Response {
    let l = lang.lang;
    let other = if l == Lang::En { "ko" } else { "en" };
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} · {}</title><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/static/app.css?v={}\"></head><body>",
        code(l),
        esc(title),
        esc(t(l, "app-name")),
        assets().css_version
    );
    let _ = write!(
        html,
        "<a class=\"skip\" href=\"#main\">{}</a><header><strong>{}</strong>",
        esc(t(l, "skip-to-content")),
        esc(t(l, "app-name"))
    );
    if let Some(p) = who {
        html.push_str("<nav>");
        for (href, key) in NAV {
            let admin_only = matches!(*href, "/city" | "/audit");
            if admin_only && p.role != Role::Admin {
                continue;
            }
            let here = path == *href || (*href != "/" && path.starts_with(&format!("{href}/")));
            let _ = write!(
                html,
                "<a href=\"{href}\"{}>{}</a>",
                if here { " aria-current=\"page\"" } else { "" },
                esc(t(l, key))
            );
        }
        html.push_str("</nav>");
    }
    let _ = write!(
        html,
        "<span class=\"spacer\"></span><a href=\"{path}?lang={other}\" hreflang=\"{other}\" lang=\"{other}\">{}</a>",
        esc(t(l, "other-lang"))
    );
    if let Some(p) = who {
        let role = match p.role {
            Role::Viewer => "role-viewer",
            Role::Operator => "role-operator",
            Role::Admin => "role-admin",
        };
        let _ = write!(
            html,
            "<span class=\"who\" data-user=\"{}\">{} ({})</span><button type=\"button\" id=\"logout\" data-csrf=\"{}\">{}</button>",
            esc(&p.name),
            esc(&p.name),
            esc(t(l, role)),
            esc(match &p.via {
                crate::auth::Via::Cookie { csrf } => csrf,
                crate::auth::Via::Bearer => "",
            }),
            esc(t(l, "logout"))
        );
    }
    let _ = write!(
        html,
        "</header><main id=\"main\">{main}</main><script src=\"/static/app.js?v={}\"></script></body></html>",
        assets().js_version
    );
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response();
    if lang.chosen
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Strict",
            code(l)
        ))
    {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// The pages every logged-in user reaches from the header; the last two are the admins'.
const NAV: &[(&str, &str)] = &[
    ("/overview", "nav-overview"),
    ("/library", "nav-library"),
    ("/schedule", "nav-schedule"),
    ("/faults", "nav-faults"),
    ("/energy", "nav-energy"),
    ("/tokens", "nav-tokens"),
    ("/city", "nav-city"),
    ("/audit", "nav-audit"),
];

/// A name in the page's language (Korean when there is no English).
pub fn name_in(l: Lang, name: &nightscape_core::model::Name) -> &str {
    if l == Lang::En {
        name.en.as_deref().unwrap_or(&name.ko)
    } else {
        &name.ko
    }
}

/// The start of a table that may be wider than a phone: it scrolls sideways inside a region
/// the keyboard can reach, and the page itself does not. Close it with [`TABLE_END`].
pub fn table_open(label: &str) -> String {
    format!(
        "<div class=\"table-wrap\" role=\"region\" tabindex=\"0\" aria-label=\"{}\"><table>",
        esc(label)
    )
}

pub const TABLE_END: &str = "</table></div>";

/// Where a page's actions say how they went (`sent` on success), read out by screen readers;
/// `app.js` fills it.
pub fn action_result(l: Lang, sent: &'static str) -> String {
    format!(
        "<p id=\"action-result\" role=\"status\" data-sent=\"{}\" data-failed=\"{}\" data-conflict=\"{}\" data-forbidden=\"{}\"></p>",
        esc(t(l, sent)),
        esc(t(l, "action-failed")),
        esc(t(l, "action-conflict")),
        esc(t(l, "action-forbidden"))
    )
}

/// A scene's name in the page's language (its id when the library does not have it).
pub fn scene_name(
    l: Lang,
    library: &nightscape_core::ShowLibrary,
    scene: &nightscape_core::SceneId,
) -> String {
    library
        .scenes
        .get(scene)
        .map_or_else(|| scene.to_string(), |sc| name_in(l, &sc.name).to_owned())
}

/// An instant as the sites' local date and time.
pub fn local_time(tz: &jiff::tz::TimeZone, ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|ts| tz.to_datetime(ts).strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// The city's time zone: the sites share one, and the first names it.
pub fn city_zone(library: &nightscape_core::ShowLibrary) -> jiff::tz::TimeZone {
    library
        .sites
        .values()
        .next()
        .map_or(jiff::tz::TimeZone::UTC, |s| s.time_zone.clone())
}

/// The query of pages that show a month (`?month=2026-12`) and may carry `?lang=`.
#[derive(Debug, Default, Deserialize)]
pub struct MonthQuery {
    pub month: Option<String>,
}

/// The first day of the month asked for, else of the month of `now` in `tz`.
pub fn month_of(q: &MonthQuery, tz: &jiff::tz::TimeZone, now_ms: i64) -> jiff::civil::Date {
    let asked = q
        .month
        .as_deref()
        .and_then(|m| format!("{m}-01").parse::<jiff::civil::Date>().ok());
    asked.unwrap_or_else(|| {
        let today = jiff::Timestamp::from_millisecond(now_ms)
            .map(|t| tz.to_datetime(t).date())
            .unwrap_or_default();
        today.first_of_month()
    })
}

/// Links to the month before and after, keeping the page's other query empty.
pub fn month_nav(l: Lang, path: &str, month: jiff::civil::Date) -> String {
    let prev = month
        .checked_sub(jiff::Span::new().months(1))
        .unwrap_or(month);
    let next = month
        .checked_add(jiff::Span::new().months(1))
        .unwrap_or(month);
    format!(
        "<p class=\"month-nav\"><a href=\"{path}?month={}\" rel=\"prev\">← {}</a> <strong>{}</strong> <a href=\"{path}?month={}\" rel=\"next\">{} →</a></p>",
        prev.strftime("%Y-%m"),
        esc(t(l, "month-prev")),
        esc(&month_title(l, month)),
        next.strftime("%Y-%m"),
        esc(t(l, "month-next")),
    )
}

pub fn month_title(l: Lang, month: jiff::civil::Date) -> String {
    if l == Lang::En {
        month.strftime("%B %Y").to_string()
    } else {
        format!("{}년 {}월", month.year(), month.month())
    }
}

// ---- the style sheet and the script ----

const CSS: &str = include_str!("app.css");
const JS: &str = include_str!("app.js");

/// The versions the pages name the style sheet and the script by: the start of each one's
/// SHA-256, so a new build's pages ask for a new address and a browser may keep the old
/// one for a year.
struct Assets {
    css_version: String,
    js_version: String,
}

fn assets() -> &'static Assets {
    static ASSETS: OnceLock<Assets> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let version = |text: &str| {
            use sha2::Digest;
            nightscape_core::plan::hex(&sha2::Sha256::digest(text.as_bytes()))[..16].to_owned()
        };
        Assets {
            css_version: version(CSS),
            js_version: version(JS),
        }
    })
}

/// The query of `/static/…`: the version the page asked for.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct AssetQuery {
    /// The file's version as the pages name it; any value is accepted, and only the
    /// current one may be kept.
    pub v: Option<String>,
}

fn asset(
    content_type: &'static str,
    body: &'static str,
    version: &str,
    query: Result<Query<AssetQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let asked = query.ok().and_then(|Query(q)| q.v);
    // An address with an old version is answered with today's file, which must then not
    // be kept under it.
    let cache = if asked.as_deref() == Some(version) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

pub async fn app_css(
    query: Result<Query<AssetQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    asset("text/css; charset=utf-8", CSS, &assets().css_version, query)
}

pub async fn app_js(
    query: Result<Query<AssetQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    asset(
        "text/javascript; charset=utf-8",
        JS,
        &assets().js_version,
        query,
    )
}

// ---- login ----

/// The login page's query: the page to go on to once logged in.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct LoginQuery {
    /// A path of this dashboard (`/sites/nonsan-city-hall`); anything else leads to the
    /// overview.
    pub next: Option<String>,
}

/// Bytes kept as they are in the `next` of a login address: the rest is percent-encoded.
fn kept_in_query(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~/".contains(&b)
}

/// The login page's address, leading back to `back` (a path with its query) when given.
pub fn login_leading_to(back: Option<&str>) -> String {
    match back.and_then(dashboard_page) {
        Some(back) if back != "/" && back != "/overview" => {
            let mut url = String::from("/login?next=");
            for b in back.bytes() {
                if kept_in_query(b) {
                    url.push(char::from(b));
                } else {
                    let _ = write!(url, "%{b:02X}");
                }
            }
            url
        }
        _ => "/login".into(),
    }
}

/// `next` when it is a page of this dashboard: a path on this host (not `//host`, not
/// `/\host`, which browsers read as another site), not the login page or the API, and
/// printable; otherwise nothing.
fn dashboard_page(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next != "/login"
        && !next.starts_with("/login?")
        && !next.starts_with("/api/")
        && next.len() <= 2048
        && next.bytes().all(|b| (0x21..0x7f).contains(&b));
    ok.then_some(next)
}

pub async fn login_page(
    lang: PageLang,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let next = query.map(|Query(q)| q.next).unwrap_or_default();
    login_form(lang, None, next.as_deref(), StatusCode::OK)
}

fn login_form(
    lang: PageLang,
    problem: Option<&str>,
    next: Option<&str>,
    status: StatusCode,
) -> Response {
    let l = lang.lang;
    let mut main = format!("<h1>{}</h1>", esc(t(l, "login-title")));
    if let Some(p) = problem {
        let _ = write!(main, "<p class=\"problem\" role=\"alert\">{}</p>", esc(p));
    }
    let next = next
        .and_then(dashboard_page)
        .map(|n| format!("<input type=\"hidden\" name=\"next\" value=\"{}\">", esc(n)))
        .unwrap_or_default();
    let _ = write!(
        main,
        "<form method=\"post\" action=\"/login\" class=\"login\">{next}<label for=\"name\">{}</label><input id=\"name\" name=\"name\" autocomplete=\"username\" required><label for=\"password\">{}</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required><button type=\"submit\">{}</button></form>",
        esc(t(l, "login-name")),
        esc(t(l, "login-password")),
        esc(t(l, "login-submit"))
    );
    let title = t(l, "login-title");
    let mut r = page(lang, None, title, "/login", &main);
    *r.status_mut() = status;
    r
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    pub name: String,
    pub password: String,
    /// The page to go on to (from the login page's `?next=`).
    #[serde(default)]
    pub next: Option<String>,
}

pub async fn login_submit(
    State(state): State<Arc<AppState>>,
    lang: PageLang,
    client: crate::edge::ClientAddr,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    // A form that is not one (no fields, another content type) gets the page again, not
    // axum's plain-text refusal.
    let Ok(Form(form)) = form else {
        let l = lang.lang;
        return login_form(
            lang,
            Some(t(l, "login-failed")),
            None,
            StatusCode::BAD_REQUEST,
        );
    };
    let next = form.next.as_deref().and_then(dashboard_page);
    match crate::api::log_in(&state, &headers, client, &form.name, &form.password).await {
        Ok((_, cookie)) => {
            let mut r = Redirect::to(next.unwrap_or("/overview")).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => {
            let (status, key) = match (e.status(), e.code()) {
                (StatusCode::TOO_MANY_REQUESTS, _) => {
                    (StatusCode::TOO_MANY_REQUESTS, "login-locked")
                }
                (_, "cross-origin-login") => (StatusCode::FORBIDDEN, "login-cross-origin"),
                _ => (StatusCode::UNAUTHORIZED, "login-failed"),
            };
            let l = lang.lang;
            login_form(lang, Some(t(l, key)), next, status)
        }
    }
}

/// A page's refusal or failure as a page: the API's JSON error becomes a page in the
/// visitor's language with the header to go on from, keeping its status.
pub async fn html_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let Ok(lang) =
        <PageLang as axum::extract::FromRequestParts<()>>::from_request_parts(&mut parts, &())
            .await;
    let path = parts.uri.path().to_owned();
    let response = next
        .run(axum::extract::Request::from_parts(parts, body))
        .await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || !json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let detail = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let l = lang.lang;
    let key = match status {
        StatusCode::FORBIDDEN => "error-forbidden",
        StatusCode::NOT_FOUND => "error-not-found",
        s if s.is_server_error() => "error-server",
        _ => "error-request",
    };
    let main = format!(
        "<h1>{}</h1><p>{}</p><p><a href=\"/overview\">{}</a></p>",
        esc(t(l, key)),
        esc(&detail),
        esc(t(l, "nav-back"))
    );
    let mut page = page(lang, None, t(l, key), &path, &main);
    *page.status_mut() = status;
    page
}

pub async fn root() -> Redirect {
    Redirect::to("/overview")
}

// ---- the city overview ----

pub async fn overview(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    lang: PageLang,
) -> Result<Response, ApiError> {
    let l = lang.lang;
    let sites = read::overview(&state).await?;
    let lib = state.store.checked_library().await?;
    let mut main = format!("<h1>{}</h1>", esc(t(l, "overview-title")));
    // The map: sites placed by latitude and longitude in a box around them.
    let (min_lat, max_lat) = sites.iter().fold((f64::MAX, f64::MIN), |(a, b), s| {
        (a.min(s.lat), b.max(s.lat))
    });
    let (min_lon, max_lon) = sites.iter().fold((f64::MAX, f64::MIN), |(a, b), s| {
        (a.min(s.lon), b.max(s.lon))
    });
    let span = |a: f64, b: f64| if b - a > 1e-9 { b - a } else { 1.0 };
    let _ = write!(
        main,
        "<section aria-labelledby=\"map-h\"><h2 id=\"map-h\">{}</h2><svg class=\"map\" viewBox=\"0 0 1000 600\" role=\"group\" aria-labelledby=\"map-h\">",
        esc(t(l, "overview-map"))
    );
    let points: Vec<(f64, f64)> = sites
        .iter()
        .map(|s| {
            (
                60.0 + 880.0 * (s.lon - min_lon) / span(min_lon, max_lon),
                550.0 - 500.0 * (s.lat - min_lat) / span(min_lat, max_lat),
            )
        })
        .collect();
    let placed = spread(&points, 36.0);
    for (n, ((s, (x, y)), (x0, y0))) in sites.iter().zip(&placed).zip(&points).enumerate() {
        let name = if l == Lang::En {
            s.name_en.as_deref().unwrap_or(&s.name)
        } else {
            &s.name
        };
        let lit = s.cue.as_ref().is_some_and(|c| c.scene.is_some());
        // Downtown sites sit close together: each has its number, and its name only where
        // no other site is near enough for the labels to run into each other.
        let crowded = placed
            .iter()
            .enumerate()
            .any(|(m, (x2, y2))| m != n && (x - x2).abs() < 220.0 && (y - y2).abs() < 36.0);
        let _ = write!(
            main,
            "<a href=\"/sites/{id}\"><title>{label}</title><g data-site=\"{id}\">{leader}<circle cx=\"{x:.0}\" cy=\"{y:.0}\" r=\"15\" class=\"{class}\"/><text x=\"{x:.0}\" y=\"{ty:.0}\" class=\"num\">{num}</text>{name_label}</g></a>",
            id = esc(s.site.as_str()),
            label = esc(&format!("{} {name}: {}", n + 1, status_text(l, s))),
            // Filled as the site is lit; ringed as it needs looking at (an offline site's
            // light is not known: a hollow ring).
            class = match s.status {
                read::SiteStatus::Offline => "offline".to_owned(),
                status => format!(
                    "{} {}",
                    if lit { "lit" } else { "dark" },
                    status_class(status)
                ),
            },
            ty = y + 6.0,
            num = n + 1,
            // A marker moved off a crowded spot keeps a line to where the site is.
            leader = if (x - x0).hypot(y - y0) > 1.0 {
                format!(
                    "<line x1=\"{x0:.0}\" y1=\"{y0:.0}\" x2=\"{x:.0}\" y2=\"{y:.0}\" class=\"leader\"/><circle cx=\"{x0:.0}\" cy=\"{y0:.0}\" r=\"3\" class=\"spot\"/>"
                )
            } else {
                String::new()
            },
            // Right of the marker, or left of it where the name would run off the map
            // (a Hangul syllable is about as wide as the 20 px font is tall).
            name_label = if crowded {
                String::new()
            } else if x + 20.0 + 20.0 * name.chars().count() as f64 > 1000.0 {
                format!(
                    "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>",
                    x - 20.0,
                    y + 6.0,
                    esc(name)
                )
            } else {
                format!(
                    "<text x=\"{:.0}\" y=\"{:.0}\">{}</text>",
                    x + 20.0,
                    y + 6.0,
                    esc(name)
                )
            },
        );
    }
    main.push_str("</svg>");
    // What the markers' fills and rings say, in words as well as in colour.
    let _ = write!(main, "<ul class=\"legend\">");
    for (class, words) in [
        ("lit", t(l, "legend-lit")),
        ("dark", t(l, "legend-dark")),
        ("dark fault", t(l, "status-fault")),
        ("dark unreachable", t(l, "legend-unreachable")),
        ("offline", t(l, "status-offline")),
    ] {
        let _ = write!(
            main,
            "<li><svg viewBox=\"0 0 40 40\" width=\"20\" height=\"20\" aria-hidden=\"true\"><circle cx=\"20\" cy=\"20\" r=\"14\" class=\"{class}\"/></svg> {}</li>",
            esc(words)
        );
    }
    main.push_str("</ul></section>");
    let _ = write!(
        main,
        "<section aria-labelledby=\"sites-h\"><h2 id=\"sites-h\">{}</h2><ul class=\"cards\">",
        esc(t(l, "overview-sites"))
    );
    for (n, s) in sites.iter().enumerate() {
        let name = if l == Lang::En {
            s.name_en.as_deref().unwrap_or(&s.name)
        } else {
            &s.name
        };
        let cue = match &s.cue {
            Some(c) => {
                let cause = match &c.cause {
                    nightscape_core::wire::Cause::Rule { .. } => "cause-rule",
                    nightscape_core::wire::Cause::Curfew { .. } => "cause-curfew",
                    nightscape_core::wire::Cause::Override => "cause-override",
                    nightscape_core::wire::Cause::Blackout => "cause-blackout",
                    nightscape_core::wire::Cause::Idle => "cause-idle",
                };
                match &c.scene {
                    Some(scene) => format!(
                        "{} {:.0} % · {}",
                        esc(&scene_name(l, &lib.checked.library, scene)),
                        c.brightness_pct.pct(),
                        esc(t(l, cause))
                    ),
                    None => format!("{} · {}", esc(t(l, "site-dark")), esc(t(l, cause))),
                }
            }
            None => "–".into(),
        };
        let unacked = s.gateways.iter().any(|g| !g.in_sync);
        let _ = write!(
            main,
            "<li class=\"card\" id=\"site-{id}\" data-site=\"{id}\"><h3><span class=\"num\">{num}</span> <a href=\"/sites/{id}\">{name}</a></h3><img src=\"/api/sites/{id}/preview.png?width=320\" data-live=\"/api/sites/{id}/preview.png?width=320\" width=\"320\" alt=\"{alt}\" loading=\"lazy\"><dl><dt>{st}</dt><dd class=\"{oc}\">{online}</dd><dt>{now}</dt><dd>{cue}</dd><dt>{tonight}</dt><dd>{on} {on_t} · {off} {off_t}</dd><dt>{faults}</dt><dd>{nf}</dd></dl>{ack}</li>",
            id = esc(s.site.as_str()),
            num = n + 1,
            name = esc(name),
            alt = esc(&format!("{name}: {}", t(l, "preview-alt"))),
            st = esc(t(l, "site-status")),
            oc = status_class(s.status),
            online = esc(&status_text(l, s)),
            now = esc(t(l, "site-cue")),
            cue = cue,
            tonight = esc(t(l, "site-tonight")),
            on = esc(t(l, "site-on")),
            on_t = s.on_local.as_deref().unwrap_or("–"),
            off = esc(t(l, "site-off")),
            off_t = s.off_local.as_deref().unwrap_or("–"),
            faults = esc(t(l, "site-faults")),
            nf = if s.open_faults == 0 {
                esc(t(l, "site-none"))
            } else {
                format!("<strong class=\"offline\">{}</strong>", s.open_faults)
            },
            ack = if unacked {
                format!("<p class=\"unacked\">{}</p>", esc(t(l, "site-unacked")))
            } else {
                String::new()
            },
        );
    }
    main.push_str("</ul></section>");
    let title = t(l, "overview-title");
    Ok(page(lang, Some(&who), title, "/overview", &main))
}

/// The class a site's status is drawn with, in its card and on the map's marker.
fn status_class(status: read::SiteStatus) -> &'static str {
    match status {
        read::SiteStatus::Ok => "ok",
        read::SiteStatus::Fault => "fault",
        read::SiteStatus::NotSending | read::SiteStatus::Unreachable => "unreachable",
        read::SiteStatus::Offline => "offline",
    }
}

/// A site's status in words, with the counts that matter.
fn status_text(l: Lang, s: &read::SiteOverview) -> String {
    match s.status {
        read::SiteStatus::Ok => t(l, "status-ok").to_owned(),
        read::SiteStatus::Fault => t(l, "status-fault").to_owned(),
        read::SiteStatus::Unreachable => {
            t(l, "status-unreachable").replace("{n}", &s.unreachable_controllers.to_string())
        }
        read::SiteStatus::NotSending => t(l, "status-not-sending").to_owned(),
        // One gateway of several: say how many, the rest may be playing.
        read::SiteStatus::Offline if s.gateways_online > 0 => {
            let total = i64::try_from(s.gateways.len()).unwrap_or(i64::MAX);
            t(l, "status-offline-some")
                .replace("{n}", &(total - s.gateways_online).to_string())
                .replace("{total}", &total.to_string())
        }
        read::SiteStatus::Offline => t(l, "status-offline").to_owned(),
    }
}

/// Markers at `points`, moved apart until none is nearer than `gap` to another, each as
/// little as it takes: downtown sites sit a few hundred metres apart, which a city-wide map
/// draws on top of each other.
fn spread(points: &[(f64, f64)], gap: f64) -> Vec<(f64, f64)> {
    let mut placed = points.to_vec();
    for _ in 0..200 {
        let mut moved = false;
        for a in 0..placed.len() {
            for b in a + 1..placed.len() {
                let (dx, dy) = (placed[b].0 - placed[a].0, placed[b].1 - placed[a].1);
                let d = dx.hypot(dy);
                if d >= gap {
                    continue;
                }
                // Coincident markers part along a fixed direction per pair.
                let (ux, uy) = if d > 1e-6 {
                    (dx / d, dy / d)
                } else {
                    let angle = (a * 7 + b * 13) as f64;
                    (angle.cos(), angle.sin())
                };
                let push = (gap - d) / 2.0 + 0.01;
                placed[a].0 -= ux * push;
                placed[a].1 -= uy * push;
                placed[b].0 += ux * push;
                placed[b].1 += uy * push;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    placed
        .into_iter()
        .map(|(x, y)| (x.clamp(20.0, 980.0), y.clamp(20.0, 580.0)))
        .collect()
}

// ---- a site ----

fn site_time(tz: &jiff::tz::TimeZone, ms: i64, with_date: bool) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|ts| {
            tz.to_datetime(ts)
                .strftime(if with_date { "%m-%d %H:%M" } else { "%H:%M" })
                .to_string()
        })
        .unwrap_or_default()
}

pub async fn site(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    axum::extract::Path(site): axum::extract::Path<String>,
    lang: PageLang,
) -> Result<Response, ApiError> {
    let l = lang.lang;
    let id: nightscape_core::SiteId = site
        .parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such site"))?;
    let lib = state.store.checked_library().await?;
    let library = &lib.checked.library;
    let s = library.sites.get(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no site `{id}`"),
        )
    })?;
    let tz = &s.time_zone;
    let name = if l == Lang::En {
        s.name.en.as_deref().unwrap_or(&s.name.ko)
    } else {
        &s.name.ko
    };
    let now = state.clock.now_ms();
    let id_text = esc(id.as_str());
    let mut main = format!(
        "<p><a href=\"/overview\">← {}</a></p><h1>{}</h1>",
        esc(t(l, "nav-back")),
        esc(name)
    );

    // Now: the computed picture, refreshed, and the gateways' acknowledgement.
    let gateways: Vec<read::GatewayView> = read::gateways(&state.store)
        .await?
        .into_iter()
        .filter(|g| g.site == id.as_str())
        .collect();
    let _ = write!(
        main,
        "<section aria-labelledby=\"now-h\"><h2 id=\"now-h\">{}</h2><img id=\"preview\" src=\"/api/sites/{id_text}/preview.png?width=800\" data-live=\"/api/sites/{id_text}/preview.png?width=800\" width=\"800\" alt=\"{}\" data-site=\"{id_text}\"><p id=\"gateways\" role=\"status\" data-site=\"{id_text}\" data-acked=\"{}\" data-waiting=\"{}\">",
        esc(t(l, "site-preview")),
        esc(&format!("{name}: {}", t(l, "preview-alt"))),
        esc(t(l, "gw-acked")),
        esc(t(l, "gw-waiting"))
    );
    for g in &gateways {
        let _ = write!(
            main,
            "<span data-gateway=\"{}\">{} {}<span>: {}</span></span> ",
            esc(&g.gateway),
            esc(t(l, "site-gateways")),
            esc(&g.gateway),
            esc(t(l, if g.in_sync { "gw-acked" } else { "gw-waiting" }))
        );
    }
    let _ = write!(
        main,
        "</p><details><summary>{}</summary><ul id=\"fixture-list\" class=\"fixtures\" data-site=\"{id_text}\"></ul></details></section>",
        esc(t(l, "site-fixtures"))
    );

    // Actions, for those who may operate the site: the buttons are not in the page otherwise.
    if who.may_operate(&id) {
        let _ = write!(
            main,
            "<section aria-labelledby=\"act-h\"><h2 id=\"act-h\">{}</h2><form id=\"override\" data-site=\"{id_text}\"><label for=\"scene\">{}</label><select id=\"scene\" name=\"scene\">",
            esc(t(l, "action-override")),
            esc(t(l, "action-scene"))
        );
        for sc in library.scenes_of(&id) {
            let label = if l == Lang::En {
                sc.name.en.as_deref().unwrap_or(&sc.name.ko)
            } else {
                &sc.name.ko
            };
            let _ = write!(
                main,
                "<option value=\"{}\">{}</option>",
                esc(sc.id.as_str()),
                esc(label)
            );
        }
        let _ = write!(
            main,
            "</select><label for=\"minutes\">{}</label><input id=\"minutes\" name=\"minutes\" type=\"number\" min=\"1\" max=\"10080\" value=\"60\" required><label for=\"reason\">{}</label><input id=\"reason\" name=\"reason\" maxlength=\"500\" required><button type=\"submit\">{}</button></form><p><button type=\"button\" id=\"blackout\" class=\"danger\" data-site=\"{id_text}\" data-confirm=\"{}\" data-need-reason=\"{}\">{}</button></p>{}",
            esc(t(l, "action-minutes")),
            esc(t(l, "action-reason")),
            esc(t(l, "action-apply")),
            esc(t(l, "action-blackout-confirm")),
            esc(t(l, "action-need-reason")),
            esc(t(l, "action-blackout")),
            action_result(l, "action-sent")
        );
        main.push_str("</section>");
    }

    // What overrides the schedule now or later, for everyone; its operators may release a
    // site's own (a city-wide order is released on the city page).
    let active: Vec<crate::overrides::Override> = crate::overrides::active(&state.store, now)
        .await?
        .into_iter()
        .filter(|o| o.scope.covers(&id))
        .collect();
    if !active.is_empty() {
        let _ = write!(
            main,
            "<section aria-labelledby=\"force-h\"><h2 id=\"force-h\">{}</h2><ul class=\"in-force\">",
            esc(t(l, "site-in-force"))
        );
        for o in &active {
            let what = match o.kind {
                crate::overrides::Kind::Scene => o
                    .scene
                    .as_ref()
                    .map(|sc| scene_name(l, library, sc))
                    .unwrap_or_default(),
                crate::overrides::Kind::Blackout => t(l, "city-dark").to_owned(),
                crate::overrides::Kind::Dim => format!(
                    "{} {:.0} %",
                    t(l, "city-dim"),
                    o.brightness_pct.unwrap_or(100.0)
                ),
                crate::overrides::Kind::CurfewException => t(l, "city-exception").to_owned(),
            };
            let city = matches!(o.scope, crate::overrides::Scope::City);
            let until = o
                .until_ms
                .map(|u| site_time(tz, u, true))
                .unwrap_or_else(|| t(l, "site-until-released").to_owned());
            let from = if o.from_ms > now {
                format!("{} ", site_time(tz, o.from_ms, true))
            } else {
                String::new()
            };
            let release = if city {
                if who.role == Role::Admin {
                    format!("<a href=\"/city\">{}</a>", esc(t(l, "nav-city")))
                } else {
                    String::new()
                }
            } else if who.may_operate(&id) {
                format!(
                    "<button type=\"button\" class=\"release\" data-override=\"{}\">{}</button>",
                    esc(&o.id),
                    esc(t(l, "action-release"))
                )
            } else {
                String::new()
            };
            let _ = write!(
                main,
                "<li><strong>{}</strong>{} · {}{}→ {} · {} ({}) {release}</li>",
                esc(&what),
                if city {
                    format!(" · {}", esc(t(l, "site-city-wide")))
                } else {
                    String::new()
                },
                esc(&from),
                if from.is_empty() { "" } else { " " },
                esc(&until),
                esc(&o.reason),
                esc(&o.created_by)
            );
        }
        let _ = write!(
            main,
            "</ul><p class=\"muted\">{}</p></section>",
            esc(t(l, "site-in-force-note"))
        );
    }

    // Open faults at the site's gateways and controllers.
    let site_gateways: Vec<&str> = gateways.iter().map(|g| g.gateway.as_str()).collect();
    let open: Vec<read::FaultView> = read::faults(&state.store)
        .await?
        .into_iter()
        .filter(|f| f.status != "closed" && site_gateways.contains(&f.gateway.as_str()))
        .collect();
    if !open.is_empty() {
        let _ = write!(
            main,
            "<section aria-labelledby=\"faults-h\"><h2 id=\"faults-h\">{}</h2><ul class=\"faults\">",
            esc(t(l, "faults-open"))
        );
        for f in &open {
            let _ = write!(
                main,
                "<li class=\"offline\">{} · {} · {}</li>",
                esc(&f.source),
                esc(&site_time(tz, f.opened_at_ms, true)),
                faults::fault_problem(l, f)
            );
        }
        let _ = write!(
            main,
            "</ul><p><a href=\"/faults\">{}</a></p></section>",
            esc(t(l, "nav-faults"))
        );
    }

    // Tonight and the week ahead, from the schedule.
    let day = now.div_euclid(86_400_000);
    let almanac = Arc::new(nightscape_core::sun::Almanac::new(day - 2, day + 9));
    let place = nightscape_core::sun::Place::new(s.location.lat, s.location.lon);
    let zones = library.zones.as_ref();
    let sunset = almanac
        .event(place, day, nightscape_core::sun::Event::Sunset)
        .ok();
    let sunrise = almanac
        .event(place, day + 1, nightscape_core::sun::Event::Sunrise)
        .ok();
    let _ = write!(
        main,
        "<section aria-labelledby=\"tonight-h\"><h2 id=\"tonight-h\">{}</h2><ul class=\"timeline\">",
        esc(t(l, "site-timeline"))
    );
    if let Some(ss) = sunset {
        let _ = write!(
            main,
            "<li><time>{}</time> {}</li>",
            site_time(tz, ss, false),
            esc(t(l, "site-sunset"))
        );
    }
    if let (Some(ss), Some(sr), Some(z)) = (sunset, sunrise, zones) {
        let _ = write!(
            main,
            "<li><time>{}–{}</time> {}</li>",
            site_time(tz, ss + z.applies_after_sunset.as_millis() as i64, false),
            site_time(tz, sr - z.applies_before_sunrise.as_millis() as i64, false),
            esc(t(l, "site-legal"))
        );
    }
    if let Some(ev) = library.evaluator(&id, almanac.clone()) {
        // The week's transitions once; tonight is its first day.
        let (week, _) = ev.transitions(now, now + 7 * 86_400_000);
        let what = |tr: &nightscape_core::schedule::Transition| match &tr.cue.scene {
            Some(sc) => format!(
                "{} {:.0} %",
                scene_name(l, library, sc),
                tr.cue.brightness.pct()
            ),
            None => t(l, "site-dark").to_owned(),
        };
        for tr in week.iter().take_while(|tr| tr.at_ms < now + 86_400_000) {
            let _ = write!(
                main,
                "<li><time>{}</time> {}</li>",
                site_time(tz, tr.at_ms, false),
                esc(&what(tr))
            );
        }
        main.push_str("</ul></section>");
        let _ = write!(
            main,
            "<section aria-labelledby=\"week-h\"><h2 id=\"week-h\">{}</h2><table><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
            esc(t(l, "site-week")),
            esc(t(l, "col-time")),
            esc(t(l, "col-what"))
        );
        for tr in &week {
            let _ = write!(
                main,
                "<tr><td>{}</td><td>{}</td></tr>",
                site_time(tz, tr.at_ms, true),
                esc(&what(tr))
            );
        }
        main.push_str("</tbody></table></section>");
    } else {
        main.push_str("</ul></section>");
    }

    // Limits and zone, and the recent nights.
    let curfew = match s.limits.curfew {
        nightscape_core::model::Curfew::At(t) => {
            format!("{:02}:{:02}", t.minutes() / 60, t.minutes() % 60)
        }
        nightscape_core::model::Curfew::None => "–".into(),
    };
    let zone = library
        .zone_rule(s)
        .map(|z| {
            if l == Lang::En {
                z.name.en.clone().unwrap_or_else(|| z.name.ko.clone())
            } else {
                z.name.ko.clone()
            }
        })
        .unwrap_or_default();
    let _ = write!(
        main,
        "<section aria-labelledby=\"limits-h\"><h2 id=\"limits-h\">{}</h2><dl class=\"limits\"><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{:.0} %</dd><dt>{}</dt><dd>{}</dd></dl></section>",
        esc(t(l, "site-limits")),
        esc(t(l, "site-zone")),
        esc(&zone),
        esc(t(l, "site-cap")),
        s.limits.max_output.pct(),
        esc(t(l, "site-curfew")),
        esc(&curfew)
    );
    if let Ok(Some(nights)) = crate::compliance::report(&state, &id, None, None).await {
        use crate::compliance::NightStatus;
        let _ = write!(
            main,
            "<section aria-labelledby=\"comp-h\"><h2 id=\"comp-h\">{}</h2><p class=\"muted\">{}</p><table><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
            esc(t(l, "site-compliance")),
            esc(t(l, "site-compliance-note")),
            esc(t(l, "col-date")),
            esc(t(l, "col-lit")),
            esc(t(l, "col-after-curfew")),
            esc(t(l, "col-not-reported")),
            esc(t(l, "col-max")),
            esc(t(l, "col-exceptions"))
        );
        for n in nights.iter().rev() {
            // A night still going says so beside its date, and up to when it is counted:
            // its figures will grow, and staff must not read them as the night's total.
            let date = match n.status {
                NightStatus::InProgress => format!(
                    "{}<br><small class=\"in-progress\">{}</small>",
                    esc(&n.date),
                    esc(&t(l, "night-in-progress")
                        .replace("{time}", &site_time(&s.time_zone, n.counted_to_ms, false)))
                ),
                NightStatus::NotBegun => format!(
                    "{}<br><small>{}</small>",
                    esc(&n.date),
                    esc(t(l, "night-not-begun"))
                ),
                NightStatus::Over => esc(&n.date),
            };
            if !n.reported {
                let _ = write!(
                    main,
                    "<tr><td>{date}</td><td colspan=\"5\" class=\"muted\">{}</td></tr>",
                    esc(t(l, "site-not-reported"))
                );
                continue;
            }
            let _ = write!(
                main,
                "<tr><td>{date}</td><td>{:.0}</td><td>{:.0}</td><td>{}</td><td>{:.0} / {:.0} %{}</td><td>{}</td></tr>",
                n.lit_minutes,
                n.lit_after_curfew_minutes,
                if n.not_reported_minutes >= 0.5 {
                    format!("{:.0}", n.not_reported_minutes)
                } else {
                    "0".to_owned()
                },
                n.max_output_pct,
                n.cap_pct,
                if n.clamped {
                    format!(" · {}", esc(t(l, "site-clamped")))
                } else {
                    String::new()
                },
                esc(&n.exceptions.join("; "))
            );
        }
        main.push_str("</tbody></table></section>");
    }
    let path = format!("/sites/{id}");
    Ok(page(lang, Some(&who), name, &path, &main))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_catalogues_have_the_same_keys_and_no_empty_text() {
        let (ko, en) = catalogs();
        assert!(!ko.is_empty());
        let missing_en: Vec<&String> = ko.keys().filter(|k| !en.contains_key(*k)).collect();
        let missing_ko: Vec<&String> = en.keys().filter(|k| !ko.contains_key(*k)).collect();
        assert!(missing_en.is_empty(), "missing in en.toml: {missing_en:?}");
        assert!(missing_ko.is_empty(), "missing in ko.toml: {missing_ko:?}");
        assert!(ko.values().chain(en.values()).all(|v| !v.trim().is_empty()));
    }

    #[test]
    fn every_key_the_pages_ask_for_is_in_the_catalogues() {
        let (ko, _) = catalogs();
        let sources = [
            include_str!("mod.rs"),
            include_str!("library.rs"),
            include_str!("schedule.rs"),
            include_str!("faults.rs"),
            include_str!("city.rs"),
            include_str!("audit.rs"),
            include_str!("tokens.rs"),
        ];
        let mut asked = 0;
        for source in sources {
            for piece in source.split("t(l, \"").skip(1) {
                let key = piece.split('"').next().unwrap_or_default();
                assert!(ko.contains_key(key), "`{key}` is in no catalogue");
                asked += 1;
            }
        }
        assert!(
            asked > 100,
            "only {asked} keys found: the pattern is out of date"
        );
    }

    #[test]
    fn crowded_markers_are_spread_apart_and_lone_ones_stay() {
        let points = [
            (500.0, 300.0),
            (505.0, 302.0),
            (500.0, 300.0),
            (900.0, 100.0),
        ];
        let placed = spread(&points, 36.0);
        for a in 0..placed.len() {
            for b in a + 1..placed.len() {
                let d = (placed[a].0 - placed[b].0).hypot(placed[a].1 - placed[b].1);
                assert!(d >= 35.9, "{a} and {b} are {d} apart: {placed:?}");
            }
        }
        assert_eq!(placed[3], points[3], "a lone marker does not move");
        let drift = |k: usize| (placed[k].0 - points[k].0).hypot(placed[k].1 - points[k].1);
        assert!((0..3).all(|k| drift(k) < 60.0), "{placed:?}");
    }

    #[test]
    fn a_login_leads_only_to_pages_of_this_dashboard() {
        for page in [
            "/faults",
            "/schedule?month=2027-01",
            "/library/a/%ED%95%9C.toml",
        ] {
            assert_eq!(dashboard_page(page), Some(page));
        }
        for elsewhere in [
            "",
            "faults",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/\t/evil.example",
            "/a\r\nb",
            "/sites/한",
            "/api/me",
            "/login",
            "/login?next=/faults",
        ] {
            assert_eq!(dashboard_page(elsewhere), None, "{elsewhere:?}");
        }
        assert_eq!(dashboard_page(&format!("/{}", "a".repeat(2048))), None);
        assert_eq!(login_leading_to(None), "/login");
        assert_eq!(login_leading_to(Some("/overview")), "/login");
        assert_eq!(login_leading_to(Some("//evil.example")), "/login");
        assert_eq!(
            login_leading_to(Some("/energy?month=2026-11&lang=en")),
            "/login?next=/energy%3Fmonth%3D2026-11%26lang%3Den"
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
