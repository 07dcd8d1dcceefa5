//! The HTTP API. Every route is a row of [`routes`]: method, path, who may call it, and the
//! types it takes and gives. The router, the access check, the OpenAPI document and the
//! role-matrix test are all built from that one table, so a route cannot exist without
//! saying who may call it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Extension, Json, Router};
use nightscape_core::diag::{Lang, Severity as DiagSeverity};
use nightscape_core::show::{self, SourceFile};
use nightscape_core::{SceneId, SiteId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::auth::{self, Principal, Role, Via};
use crate::commands;
use crate::edge::ClientAddr;
use crate::overrides::{self, Kind, Override, Scope};
use crate::store::{Audit, Library, StoreError};
use crate::{AppState, read};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Public,
    /// Logged in, any role.
    Viewer,
    /// Operators (for their own sites, checked by the handler) and admins.
    Operator,
    Admin,
}

impl Access {
    fn allows(self, role: Role) -> bool {
        match self {
            Access::Public | Access::Viewer => true,
            Access::Operator => role >= Role::Operator,
            Access::Admin => role == Role::Admin,
        }
    }
}

type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// One row of the route table.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    pub request: Option<SchemaFn>,
    pub response: Option<SchemaFn>,
    /// The query parameters' type, for the OpenAPI document.
    pub query: Option<SchemaFn>,
    /// A dashboard page: HTML, and a visitor who is not logged in is sent to the login page.
    pub page: bool,
    /// What a success answers with besides (or instead of) JSON: `image/png`, `text/csv`, ….
    pub produces: &'static [&'static str],
    handler: MethodRouter<Arc<AppState>>,
}

impl Route {
    fn page(mut self) -> Route {
        self.page = true;
        self
    }

    fn query<T: JsonSchema>(mut self) -> Route {
        self.query = Some(schema_inline::<T> as SchemaFn);
        self
    }

    fn produces(mut self, types: &'static [&'static str]) -> Route {
        self.produces = types;
        self
    }
}

/// A type's schema by reference, or none for `()` (no body). Decided by type, not by the
/// macro's tokens: a type captured by a macro no longer matches a literal `()`, which once
/// gave every route without a body a required `null` one in the OpenAPI document.
fn schema_of<T: JsonSchema + 'static>() -> Option<SchemaFn> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<()>() {
        None
    } else {
        Some(schema::<T> as SchemaFn)
    }
}

/// A type's schema written out in full (its properties become query parameters).
fn schema_inline<T: JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    T::json_schema(g)
}

fn schema<T: JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

macro_rules! route {
    ($method:ident $path:literal, $access:ident, $summary:literal, $handler:expr, $req:ty, $resp:ty) => {
        Route {
            method: Method::$method,
            path: $path,
            access: Access::$access,
            summary: $summary,
            request: schema_of::<$req>(),
            response: schema_of::<$resp>(),
            query: None,
            page: false,
            produces: &[],
            handler: route!(@method $method, $handler),
        }
    };
    (@method GET, $h:expr) => { get($h) };
    (@method POST, $h:expr) => { post($h) };
    (@method PUT, $h:expr) => { put($h) };
    (@method DELETE, $h:expr) => { delete($h) };
}

/// Every route of the API.
pub fn routes() -> Vec<Route> {
    vec![
        route!(GET "/", Viewer, "The dashboard: to the city overview", crate::web::root, (), ()).page().produces(&["text/html"]),
        route!(GET "/login", Public, "The login page (?next= the page to go on to)", crate::web::login_page, (), ()).query::<crate::web::LoginQuery>().page().produces(&["text/html"]),
        route!(POST "/login", Public, "The login form", crate::web::login_submit, (), ()).page().produces(&["text/html"]),
        route!(GET "/overview", Viewer, "The city overview page", crate::web::overview, (), ()).page().produces(&["text/html"]),
        route!(GET "/sites/{site}", Viewer, "A site's page: now, tonight, the week, limits, compliance; actions for its operators", crate::web::site, (), ()).page().produces(&["text/html"]),
        route!(GET "/library", Viewer, "The scene library page: every scene animated, every file", crate::web::library, (), ()).page().produces(&["text/html"]),
        route!(GET "/library/{*path}", Viewer, "A library file's page: the editor, checked before saving", crate::web::library_file, (), ()).page().produces(&["text/html"]),
        route!(GET "/schedule", Viewer, "The schedules and calendars page: a month, adding a date, each site's rules", crate::web::schedule, (), ()).page().produces(&["text/html"]),
        route!(GET "/faults", Viewer, "The faults page: open faults to acknowledge, and their history", crate::web::faults, (), ()).page().produces(&["text/html"]),
        route!(GET "/energy", Viewer, "The energy page: each site's use and lit hours in a month", crate::web::energy, (), ()).page().produces(&["text/html"]),
        route!(GET "/city", Admin, "The city-wide action page: dim or darken every site for a range of nights", crate::web::city, (), ()).page().produces(&["text/html"]),
        route!(GET "/audit", Admin, "The audit log page", crate::web::audit, (), ()).page().produces(&["text/html"]),
        route!(GET "/healthz", Public, "Liveness and store reachability", healthz, (), Health),
        route!(GET "/metrics", Public, "Prometheus metrics", metrics, (), ()).produces(&["text/plain"]),
        route!(GET "/api/openapi.json", Public, "This API's OpenAPI document", openapi, (), ()),
        route!(POST "/api/login", Public, "Log in; sets the session cookie", login, LoginRequest, Me),
        route!(POST "/api/logout", Viewer, "End this session", logout, (), ()),
        route!(GET "/api/me", Viewer, "Who is logged in", me, (), Me),
        route!(GET "/tokens", Viewer, "The API tokens page: your bearer tokens (admins: everyone's), each to revoke", crate::web::tokens, (), ()).page().produces(&["text/html"]),
        route!(GET "/static/app.css", Public, "The dashboard's style sheet (?v= its version: kept for a year)", crate::web::app_css, (), ()).query::<crate::web::AssetQuery>().produces(&["text/css"]),
        route!(GET "/static/app.js", Public, "The dashboard's script (?v= its version: kept for a year)", crate::web::app_js, (), ()).query::<crate::web::AssetQuery>().produces(&["text/javascript"]),
        route!(POST "/api/tokens", Viewer, "A bearer token for the API (shown once)", issue_token, TokenRequest, TokenIssued),
        route!(GET "/api/tokens", Viewer, "Your bearer tokens: label, created, last used, expiry (never the secret)", my_tokens, (), Vec<auth::TokenView>),
        route!(DELETE "/api/tokens/{token}", Viewer, "Revoke one of your bearer tokens", revoke_my_token, (), ()),
        route!(GET "/api/sites", Viewer, "City overview: every site's state tonight", sites, (), Vec<read::SiteOverview>),
        route!(GET "/api/sites/{site}/transitions", Viewer, "What will happen at a site in a range", transitions, (), Vec<read::TransitionView>).query::<Span>(),
        route!(GET "/api/sites/{site}/compliance", Viewer, "Per night: output against the cap in the legal window, minutes lit after curfew, exceptions (?from=&to= dates; ?format=csv)", site_compliance, (), Vec<crate::compliance::Night>).query::<Range>().produces(&["text/csv"]),
        route!(GET "/api/sites/{site}/preview.png", Viewer, "A picture of the site computed from the library and its reported cue (or the schedule's at ?at=)", site_preview, (), ()).query::<PreviewQuery>().produces(&["image/png"]),
        route!(GET "/api/sites/{site}/preview.json", Viewer, "The picture of preview.png as data: where each fixture is drawn and the colour it emits", site_preview_fixtures, (), crate::preview::SitePicture).query::<PreviewQuery>(),
        route!(GET "/api/scenes/{scene}/animation.gif", Viewer, "A scene at full brightness in its site's layout: a six-second looping animation", scene_animation, (), ()).query::<WidthQuery>().produces(&["image/gif"]),
        route!(GET "/api/gateways", Viewer, "Every gateway: documents published and acknowledged, state", gateways, (), Vec<read::GatewayView>),
        route!(POST "/api/gateways/{gateway}/commands", Operator, "Identify, channel test, resync or discover at one gateway (sent once, valid a minute)", send_command, nightscape_core::wire::Action, commands::CommandView),
        route!(GET "/api/commands", Viewer, "Recent commands and their acks", list_commands, (), Vec<commands::CommandView>),
        route!(GET "/api/faults", Viewer, "Faults, open first", faults, (), Vec<read::FaultView>),
        route!(POST "/api/faults/{id}/acknowledge", Operator, "Acknowledge an open fault", acknowledge_fault, (), ()),
        route!(GET "/api/energy", Viewer, "Energy and lit minutes per site and day (JSON, or CSV with ?format=csv)", energy, (), Vec<read::EnergyRow>).query::<Range>().produces(&["text/csv"]),
        route!(GET "/api/events", Viewer, "Recent gateway events", events, (), Vec<read::EventView>),
        route!(GET "/api/library", Viewer, "The show library's files", library_index, (), Vec<LibraryEntry>),
        route!(GET "/api/library/export", Viewer, "Every file of the show library", library_export, (), Vec<FileBody>),
        route!(POST "/api/library/check", Viewer, "Check changes without applying them", library_check, LibraryChange, CheckReport),
        route!(POST "/api/library/import", Admin, "Replace the whole library: the diff, applied in one transaction or refused", library_import, ImportRequest, ImportReport),
        route!(GET "/api/library/files/{*path}", Viewer, "One file of the show library", library_get, (), FileBody),
        route!(PUT "/api/library/files/{*path}", Operator, "Create or replace a file (operators: their sites' scenes and schedules)", library_put, FileText, CheckReport),
        route!(DELETE "/api/library/files/{*path}", Operator, "Delete a file (operators: their sites' scenes)", library_delete, (), CheckReport),
        route!(POST "/api/calendars/{calendar}/dates", Admin, "Add dates to a calendar (a temporary holiday: one date)", add_calendar_dates, CalendarDates, CheckReport),
        route!(POST "/api/calendars/{calendar}/kasi", Admin, "Add the holidays of special-day service responses (getRestDeInfo, XML or JSON) to a calendar", import_kasi, KasiImport, CheckReport),
        route!(GET "/api/overrides", Viewer, "Overrides and blackouts, recent first", list_overrides, (), Vec<Override>),
        route!(POST "/api/sites/{site}/override", Operator, "Play a scene at a site until a time", site_override, SiteOverride, Created),
        route!(POST "/api/sites/{site}/blackout", Operator, "Black out a site until released or a time", site_blackout, Blackout, Created),
        route!(POST "/api/overrides", Admin, "Override, blackout or curfew exception for many sites or the city", city_override, CityOverride, Created),
        route!(DELETE "/api/overrides/{id}", Operator, "Release an override or blackout", release_override, (), ()),
        route!(GET "/api/users", Admin, "Users", list_users, (), Vec<auth::UserView>),
        route!(PUT "/api/users/{name}", Admin, "Create or change a user (a new password or role revokes their tokens)", put_user, UserRequest, ()),
        route!(DELETE "/api/users/{name}", Admin, "Delete a user (and revoke their tokens)", delete_user, (), ()),
        route!(GET "/api/users/{name}/tokens", Admin, "A user's bearer tokens: label, created, last used, expiry (never the secret)", user_tokens, (), Vec<auth::TokenView>),
        route!(DELETE "/api/users/{name}/tokens/{token}", Admin, "Revoke one of a user's bearer tokens", revoke_user_token, (), ()),
        route!(GET "/api/audit", Admin, "The audit log, recent first", audit_log, (), Vec<crate::store::AuditEntry>),
    ]
}

/// The router: every route behind its access check, JSON errors, a body limit, and the
/// edge (`crate::edge`) around all of it. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`, so the login limit knows each
/// client's address.
pub fn router(state: Arc<AppState>) -> Router {
    let mut router: Router<Arc<AppState>> = Router::new();
    for r in routes() {
        let access = (r.access, r.page);
        let mut checked = r.handler.route_layer(middleware::from_fn_with_state(
            (state.clone(), access),
            check_access,
        ));
        if r.page {
            checked = checked.route_layer(middleware::from_fn(crate::web::html_errors));
        }
        router = router.route(r.path, checked);
    }
    router
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not take that method; /api/openapi.json lists what each takes",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::edge::edge,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .with_state(state)
}

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;
pub const SESSION_COOKIE: &str = "nightscape_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

async fn count_responses(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    state.metrics.http(response.status().as_u16());
    response
}

// ---- errors ----

/// The one error shape: `{"error": {"code", "message", "diagnostics"?}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    diagnostics: Option<Vec<DiagnosticView>>,
    retry_after_s: Option<i64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Vec<DiagnosticView>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            diagnostics: None,
            retry_after_s: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error's code, as the JSON body names it.
    pub fn code(&self) -> &'static str {
        self.code
    }

    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
            diagnostics: self.diagnostics,
        }});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after_s
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<crate::preview::PreviewError> for ApiError {
    fn from(e: crate::preview::PreviewError) -> ApiError {
        match e {
            crate::preview::PreviewError::Store(e) => e.into(),
            other => {
                tracing::error!("preview: {other}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not draw the picture; it is logged",
                )
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            other => {
                // In full in the log, inside the request's span; generic to the client.
                tracing::error!("store: {other}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not complete the request; it is logged",
                )
            }
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A JSON body whose problems (syntax, types, unknown fields, size) come back as
/// [`ApiError`]s that say what to fix.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                format!(
                    "the request body does not fit: {}",
                    e.body_text().trim_start_matches(
                        "Failed to deserialize the JSON body into the target type: "
                    )
                ),
            )),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::bad(format!(
                "the request body is not JSON: {}",
                e.body_text()
            ))),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-type",
                "send the body as JSON with Content-Type: application/json",
            )),
            Err(JsonRejection::BytesRejection(e)) => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!(
                    "the request body could not be read ({}); the limit is {BODY_LIMIT} bytes",
                    e.body_text()
                ),
            )),
            Err(e) => Err(ApiError::bad(e.body_text())),
        }
    }
}

/// The language asked for: `?lang=ko|en`, else `Accept-Language`, else Korean.
pub struct Language(pub Lang);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Language {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let asked = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("lang="))
            .map(str::to_owned)
            .or_else(|| {
                parts
                    .headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        Ok(Language(Lang::pick(&asked)))
    }
}

/// Query parameters whose problems come back as [`ApiError`]s naming the parameter.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Q(v)),
            Err(e) => Err(ApiError::bad(
                e.body_text()
                    .trim_start_matches("Failed to deserialize query string: ")
                    .to_owned(),
            )),
        }
    }
}

// ---- access ----

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn principal(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<Principal>> {
    let now = state.clock.now_ms();
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "write the header as `Authorization: Bearer <token>`",
                )
            })?;
        return match auth::from_token(&state.store, token.trim(), now).await? {
            Some(p) => Ok(Some(p)),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer token is unknown, revoked or expired; issue a new one",
            )),
        };
    }
    match cookie(headers, SESSION_COOKIE) {
        Some(session) => Ok(auth::from_session(&state.store, session, now).await?),
        None => Ok(None),
    }
}

async fn check_access(
    State((state, (access, page))): State<(Arc<AppState>, (Access, bool))>,
    mut request: Request,
    next: Next,
) -> Response {
    if access == Access::Public {
        return next.run(request).await;
    }
    let who = match principal(&state, request.headers()).await {
        Ok(Some(p)) => p,
        // A page asked for without a session: the login page, which leads back to it.
        Ok(None) if page => {
            let back = match request.method() {
                &Method::GET => request.uri().path_and_query().map(|p| p.as_str()),
                _ => None,
            };
            return axum::response::Redirect::to(&crate::web::login_leading_to(back))
                .into_response();
        }
        Ok(None) => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "log in first (POST /api/login) or send a bearer token",
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    };
    if !access.allows(who.role) {
        return ApiError::forbidden(format!(
            "this needs the {} role; `{}` is {}",
            match access {
                Access::Admin => "admin",
                _ => "operator",
            },
            who.name,
            who.role.as_str()
        ))
        .into_response();
    }
    // A change carried by the session cookie must echo the session's CSRF token, which a
    // page of another origin cannot read (the cookie is SameSite=Strict as well).
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if let Via::Cookie { csrf } = &who.via
        && !safe
        && request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            != Some(csrf.as_str())
    {
        return ApiError::forbidden(format!(
            "a change made with the session cookie must carry the session's CSRF token in `{CSRF_HEADER}`"
        ))
        .into_response();
    }
    let actor = who.name.clone();
    request.extensions_mut().insert(who);
    if safe || !request.headers().contains_key(IDEMPOTENCY_HEADER) {
        return next.run(request).await;
    }
    idempotent(&state, &actor, request, next)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The header a client sends with a change to make it at most once: the same key again
/// (same user) gets the first answer again instead of a second change.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// A request with a key still running this long after it began is taken as cut off.
const IDEMPOTENCY_RUNNING_MS: i64 = 60_000;

/// 409 for a key whose first request still runs.
fn in_progress() -> ApiError {
    let mut e = ApiError::new(
        StatusCode::CONFLICT,
        "in-progress",
        "a request with this Idempotency-Key is still running; try again in a moment",
    );
    e.retry_after_s = Some(2);
    e
}

/// A change sent with `Idempotency-Key`. The first request with a key reserves it and
/// runs; its audit rows carry the key, in the change's own transaction; its answer is kept.
/// The same key again, for the same request, gets that answer (`idempotent-replayed:
/// true`); for another request, 422. A request whose answer was never kept (the server
/// stopped meanwhile) is looked up in the audit log: when its change was made, 409 says
/// so; when not, it runs again. While the first still runs, 409 asks to retry.
async fn idempotent(
    state: &Arc<AppState>,
    actor: &str,
    request: Request,
    next: Next,
) -> ApiResult<Response> {
    let key = request
        .headers()
        .get(IDEMPOTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| (1..=100).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad(
                "Idempotency-Key: give 1 to 100 visible ASCII characters (a UUID is good)",
            )
        })?
        .to_owned();
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("the request body is over {BODY_LIMIT} bytes"),
        )
    })?;
    let hash = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(parts.method.as_str());
        h.update([0]);
        h.update(parts.uri.to_string());
        h.update([0]);
        h.update(&bytes);
        nightscape_core::plan::hex(&h.finalize())
    };
    let now = state.clock.now_ms();
    let pool = state.store.pool();
    let earlier = sqlx::query(
        "SELECT request_hash, created_at_ms, status, content_type, body FROM idempotency WHERE actor = $1 AND key = $2",
    )
    .bind(actor)
    .bind(&key)
    .fetch_optional(pool)
    .await
    .map_err(StoreError::from)?;
    if let Some(row) = earlier {
        let same: String = row.try_get("request_hash").map_err(StoreError::from)?;
        if same != hash {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "this Idempotency-Key was sent with another request; use a new key for a new change",
            ));
        }
        let status: Option<i64> = row.try_get("status").map_err(StoreError::from)?;
        if let Some(status) = status {
            let content_type: Option<String> =
                row.try_get("content_type").map_err(StoreError::from)?;
            let body: Option<String> = row.try_get("body").map_err(StoreError::from)?;
            let mut response = Response::new(axum::body::Body::from(body.unwrap_or_default()));
            *response.status_mut() = StatusCode::from_u16(u16::try_from(status).unwrap_or(500))
                .unwrap_or(StatusCode::OK);
            if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
        let made: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT id, action, target FROM audit WHERE actor = $1 AND idempotency_key = $2 ORDER BY id LIMIT 1",
        )
        .bind(actor)
        .bind(&key)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::from)?;
        if let Some((id, action, target)) = made {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already-applied",
                format!(
                    "the change with this Idempotency-Key was made ({action} {target}, audit entry {id}) but its answer was lost; read the result instead of sending it again"
                ),
            ));
        }
        let began: i64 = row.try_get("created_at_ms").map_err(StoreError::from)?;
        if now - began < IDEMPOTENCY_RUNNING_MS {
            return Err(in_progress());
        }
        // Cut off before its change was made: it runs again.
        sqlx::query("UPDATE idempotency SET created_at_ms = $1 WHERE actor = $2 AND key = $3")
            .bind(now)
            .bind(actor)
            .bind(&key)
            .execute(pool)
            .await
            .map_err(StoreError::from)?;
    } else {
        let reserved = sqlx::query(
            "INSERT INTO idempotency (actor, key, request_hash, created_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (actor, key) DO NOTHING",
        )
        .bind(actor)
        .bind(&key)
        .bind(&hash)
        .bind(now)
        .execute(pool)
        .await
        .map_err(StoreError::from)?
        .rows_affected();
        if reserved == 0 {
            return Err(in_progress());
        }
    }
    let request = Request::from_parts(parts, axum::body::Body::from(bytes));
    let response = crate::store::IDEMPOTENCY_KEY
        .scope(Some(key.clone()), next.run(request))
        .await;
    let status = response.status();
    if status.is_server_error() {
        // Nothing to give again: a retry runs (or finds the change in the audit log).
        let _ =
            sqlx::query("DELETE FROM idempotency WHERE actor = $1 AND key = $2 AND status IS NULL")
                .bind(actor)
                .bind(&key)
                .execute(pool)
                .await;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    sqlx::query(
        "UPDATE idempotency SET status = $1, content_type = $2, body = $3 WHERE actor = $4 AND key = $5",
    )
    .bind(i64::from(status.as_u16()))
    .bind(content_type)
    .bind(String::from_utf8_lossy(&bytes).into_owned())
    .bind(actor)
    .bind(&key)
    .execute(pool)
    .await
    .map_err(StoreError::from)?;
    Ok(Response::from_parts(parts, axum::body::Body::from(bytes)))
}

// ---- handlers: health, metrics, session ----

#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    pub ok: bool,
    pub store: &'static str,
    pub broker_connected: bool,
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let store = sqlx::query("SELECT 1")
        .fetch_one(state.store.pool())
        .await
        .is_ok();
    let body = Health {
        ok: store,
        store: if store { "ok" } else { "unreachable" },
        broker_connected: state.publisher.mqtt.as_ref().is_some_and(|m| m.connected()),
    };
    let status = if store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document(&routes()))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Me {
    pub name: String,
    pub role: Role,
    pub sites: Vec<SiteId>,
    /// Send this in `x-csrf-token` with every change made through the session cookie.
    pub csrf: Option<String>,
}

impl From<&Principal> for Me {
    fn from(p: &Principal) -> Me {
        Me {
            name: p.name.clone(),
            role: p.role,
            sites: p.sites.clone(),
            csrf: match &p.via {
                Via::Cookie { csrf } => Some(csrf.clone()),
                Via::Bearer => None,
            },
        }
    }
}

const SESSION_MS: i64 = 12 * 3600 * 1000;

async fn login(
    State(state): State<Arc<AppState>>,
    client: ClientAddr,
    headers: HeaderMap,
    Body(req): Body<LoginRequest>,
) -> ApiResult<Response> {
    let (who, cookie) = log_in(&state, &headers, client, &req.name, &req.password).await?;
    let mut response = Json(Me::from(&who)).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// Checks a login against where it came from, the limit and the password: the user and
/// the session cookie to set (for the API's login and the login page alike).
pub async fn log_in(
    state: &AppState,
    headers: &HeaderMap,
    client: ClientAddr,
    name: &str,
    password: &str,
) -> ApiResult<(Principal, String)> {
    crate::edge::same_origin(headers)?;
    let now = state.clock.now_ms();
    let address_key = auth::address_key(&client.bucket());
    let name_key = auth::name_key(name);
    let wait = auth::login_wait(
        auth::failures(&state.store, &address_key, now).await?,
        auth::failures(&state.store, &name_key, now).await?,
        now,
    );
    if let Some(wait) = wait {
        state.metrics.login_failed();
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            format!("too many failed logins; try again in {} s", wait / 1000 + 1),
        );
        e.retry_after_s = Some(wait / 1000 + 1);
        return Err(e);
    }
    match auth::login(&state.store, name, password, now, SESSION_MS).await? {
        Some((who, session)) => {
            // The name's guesses no longer matter once its password was given; the
            // address's stay until their window passes, so a login to one's own account
            // does not wipe the count of guesses made at another's.
            auth::succeeded(&state.store, &name_key).await?;
            let secure = if state.secure_cookies { "; Secure" } else { "" };
            let cookie = format!(
                "{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
                SESSION_MS / 1000
            );
            Ok((who, cookie))
        }
        None => {
            auth::failed(&state.store, &[address_key, name_key], now).await?;
            state.metrics.login_failed();
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad-login",
                "the name or the password is wrong",
            ))
        }
    }
}

async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(session) = cookie(&headers, SESSION_COOKIE) {
        auth::logout(&state.store, session).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "nightscape_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    Ok(response)
}

async fn me(Extension(who): Extension<Principal>) -> Json<Me> {
    Json(Me::from(&who))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub label: String,
    /// Days until it expires (1–365).
    pub days: u32,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TokenIssued {
    pub token: String,
    /// What the token is listed and revoked by (`/api/tokens/{token}`).
    pub id: String,
    pub expires_at_ms: i64,
}

async fn issue_token(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Body(req): Body<TokenRequest>,
) -> ApiResult<Json<TokenIssued>> {
    if !(1..=365).contains(&req.days) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            "days: give 1 to 365",
        ));
    }
    let now = state.clock.now_ms();
    let expires_at_ms = now + i64::from(req.days) * 86_400_000;
    let token = auth::issue_token(&state.store, &who.name, &req.label, now, expires_at_ms).await?;
    Ok(Json(TokenIssued {
        id: auth::token_id(&token),
        token,
        expires_at_ms,
    }))
}

async fn my_tokens(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<Vec<auth::TokenView>>> {
    Ok(Json(auth::tokens(&state.store, &who.name).await?))
}

async fn revoke_my_token(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(token): Path<String>,
) -> ApiResult<StatusCode> {
    revoke(&state, &who, &who.name, &token).await
}

async fn user_tokens(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<auth::TokenView>>> {
    if !auth::users(&state.store)
        .await?
        .iter()
        .any(|u| u.name == name)
    {
        return Err(ApiError::not_found(format!("no user `{name}`")));
    }
    Ok(Json(auth::tokens(&state.store, &name).await?))
}

async fn revoke_user_token(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path((name, token)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    revoke(&state, &who, &name, &token).await
}

async fn revoke(state: &AppState, who: &Principal, owner: &str, id: &str) -> ApiResult<StatusCode> {
    if auth::revoke_token(&state.store, owner, id, &who.name, state.clock.now_ms()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "`{owner}` has no token `{id}`; GET the list for the ids"
        )))
    }
}

// ---- read side ----

async fn sites(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<read::SiteOverview>>> {
    Ok(Json(read::overview(&state).await?))
}

/// Days by date, both included; as JSON or CSV.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// YYYY-MM-DD.
    #[schemars(schema_with = "date")]
    pub from: Option<String>,
    /// YYYY-MM-DD.
    #[schemars(schema_with = "date")]
    pub to: Option<String>,
    pub format: Option<Format>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Csv,
}

/// A span of time at a site, at most a year: RFC 3339 instants, or dates (the site's
/// midnight); from now for a week by default.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Span {
    #[schemars(schema_with = "date_or_instant")]
    pub from: Option<String>,
    #[schemars(schema_with = "date_or_instant")]
    pub to: Option<String>,
}

fn date(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "date"})
}

fn date_or_instant(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [
            {"type": "string", "format": "date"},
            {"type": "string", "format": "date-time"}
        ]
    })
}

async fn transitions(
    State(state): State<Arc<AppState>>,
    Path(site): Path<String>,
    Q(range): Q<Span>,
) -> ApiResult<Json<Vec<read::TransitionView>>> {
    let site: SiteId = site
        .parse()
        .map_err(|e| ApiError::bad(format!("site: {e}")))?;
    Ok(Json(
        read::transitions(&state, &site, range.from.as_deref(), range.to.as_deref()).await?,
    ))
}

async fn site_compliance(
    State(state): State<Arc<AppState>>,
    Path(site): Path<String>,
    Q(range): Q<Range>,
) -> ApiResult<Response> {
    let site: SiteId = site
        .parse()
        .map_err(|e| ApiError::bad(format!("site: {e}")))?;
    let date = |t: &str| {
        t.parse::<jiff::civil::Date>()
            .map_err(|_| ApiError::bad(format!("`{t}`: give a date, 2026-12-24")))
    };
    let from = range.from.as_deref().map(date).transpose()?;
    let to = range.to.as_deref().map(date).transpose()?;
    let nights = crate::compliance::report(&state, &site, from, to)
        .await
        .map_err(|e| match e {
            crate::compliance::Error::Range(m) => ApiError::bad(m),
            crate::compliance::Error::Store(e) => e.into(),
        })?
        .ok_or_else(|| ApiError::not_found(format!("no site `{site}` in the library")))?;

    match range.format {
        None | Some(Format::Json) => Ok(Json(nights).into_response()),
        Some(Format::Csv) => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"nightscape-compliance.csv\"",
                ),
            ],
            crate::compliance::csv(&nights),
        )
            .into_response()),
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    /// An instant (RFC 3339): the schedule's cue then, instead of what the gateway reports now.
    pub at: Option<String>,
    /// 200–2000 pixels; 960 by default.
    #[schemars(range(min = 200, max = 2000))]
    pub width: Option<u32>,
}

/// The site, width and instant a picture is asked for.
async fn picture_request(
    state: &AppState,
    site: &str,
    q: &PreviewQuery,
) -> ApiResult<(SiteId, u32, Option<i64>)> {
    let site: SiteId = site
        .parse()
        .map_err(|e| ApiError::bad(format!("site: {e}")))?;
    let width = q.width.unwrap_or(960);
    if !(200..=2000).contains(&width) {
        return Err(ApiError::bad("width: give 200 to 2000 pixels"));
    }
    let lib = state.store.checked_library().await?;
    let tz = lib
        .checked
        .library
        .sites
        .get(&site)
        .map(|s| s.time_zone.clone())
        .ok_or_else(|| ApiError::not_found(format!("no site `{site}` in the library")))?;
    let at = q.at.as_deref().map(|t| read::instant(t, &tz)).transpose()?;
    Ok((site, width, at))
}

async fn site_preview(
    State(state): State<Arc<AppState>>,
    Path(site): Path<String>,
    Q(q): Q<PreviewQuery>,
) -> ApiResult<Response> {
    let (site, width, at) = picture_request(&state, &site, &q).await?;
    let (png, source) = crate::preview::site_png(
        &state,
        &site,
        at.unwrap_or_else(|| state.clock.now_ms()),
        width,
        at.is_none(),
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no site `{site}` in the library")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        [(
            "x-nightscape-preview",
            format!("computed; {} cue", source.as_str()),
        )],
        png,
    )
        .into_response())
}

async fn site_preview_fixtures(
    State(state): State<Arc<AppState>>,
    Path(site): Path<String>,
    Q(q): Q<PreviewQuery>,
) -> ApiResult<Json<crate::preview::SitePicture>> {
    let (site, width, at) = picture_request(&state, &site, &q).await?;
    let light = crate::preview::site_light(
        &state,
        &site,
        at.unwrap_or_else(|| state.clock.now_ms()),
        at.is_none(),
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no site `{site}` in the library")))?;
    Ok(Json(light.fixtures(width)))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WidthQuery {
    /// 200–640 pixels, 480 by default; drawn at 320, 480 or 640, the first at least as wide.
    #[schemars(range(min = 200, max = 640))]
    pub width: Option<u32>,
    /// The scene's version as a page names it: an address that changes with the scene, so
    /// the answer may be kept for a day. Any value is accepted.
    pub v: Option<String>,
}

async fn scene_animation(
    State(state): State<Arc<AppState>>,
    Path(scene): Path<String>,
    Q(q): Q<WidthQuery>,
) -> ApiResult<Response> {
    let scene: SceneId = scene
        .parse()
        .map_err(|e| ApiError::bad(format!("scene: {e}")))?;
    let width = q.width.unwrap_or(480);
    if !(200..=640).contains(&width) {
        return Err(ApiError::bad("width: give 200 to 640 pixels"));
    }
    let gif = state
        .animations
        .scene_gif(&state, &scene, width, state.clock.now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no scene `{scene}` in the library")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/gif"),
            (
                header::CACHE_CONTROL,
                if q.v.is_some() {
                    "private, max-age=86400"
                } else {
                    "private, no-cache"
                },
            ),
        ],
        gif.as_ref().clone(),
    )
        .into_response())
}

async fn gateways(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<read::GatewayView>>> {
    Ok(Json(read::gateways(&state.store).await?))
}

async fn faults(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<read::FaultView>>> {
    Ok(Json(read::faults(&state.store).await?))
}

async fn acknowledge_fault(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no fault `{id}`: faults are numbered")))?;
    let row = sqlx::query("SELECT f.gateway, g.site FROM faults f LEFT JOIN gateways g ON g.gateway = f.gateway WHERE f.id = $1")
        .bind(id)
        .fetch_optional(state.store.pool())
        .await
        .map_err(StoreError::from)?
        .ok_or_else(|| ApiError::not_found(format!("no fault {id}")))?;
    let site: Option<String> = row.try_get("site").map_err(StoreError::from)?;
    let site: Option<SiteId> = site.and_then(|s| s.parse().ok());
    if !site.as_ref().is_some_and(|s| who.may_operate(s)) && who.role != Role::Admin {
        return Err(ApiError::forbidden(
            "this fault is at a site you do not operate",
        ));
    }
    if read::acknowledge_fault(&state.store, id, &who.name, state.clock.now_ms()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("fault {id} is not open"),
        ))
    }
}

async fn energy(State(state): State<Arc<AppState>>, Q(range): Q<Range>) -> ApiResult<Response> {
    for (name, value) in [("from", &range.from), ("to", &range.to)] {
        if let Some(v) = value
            && v.parse::<jiff::civil::Date>().is_err()
        {
            return Err(ApiError::bad(format!(
                "{name} `{v}`: give a date, 2026-12-24"
            )));
        }
    }
    let rows = read::energy(&state.store, range.from.as_deref(), range.to.as_deref()).await?;
    match range.format {
        None | Some(Format::Json) => Ok(Json(rows).into_response()),
        Some(Format::Csv) => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"nightscape-energy.csv\"",
                ),
            ],
            read::energy_csv(&rows),
        )
            .into_response()),
    }
}

async fn events(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<read::EventView>>> {
    Ok(Json(read::events(&state.store, 500).await?))
}

// ---- the show library ----

#[derive(Debug, Serialize, JsonSchema)]
pub struct LibraryEntry {
    pub path: String,
    pub bytes: usize,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileBody {
    pub path: String,
    pub text: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileText {
    pub text: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LibraryChange {
    /// Files to write; `text: null` deletes.
    pub files: Vec<FileChange>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileChange {
    pub path: String,
    pub text: Option<String>,
}

/// A problem the core found, placed in its file.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DiagnosticView {
    pub severity: String,
    pub code: String,
    /// The problem in a few words, in the language asked for (`?lang=` or
    /// `Accept-Language`; Korean by default); `message` gives the details in English.
    pub title: String,
    pub file: String,
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CheckReport {
    pub ok: bool,
    pub errors: usize,
    pub warnings: usize,
    pub diagnostics: Vec<DiagnosticView>,
    /// Adding dates: those the calendar already held, left as they were (YYYY-MM-DD).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub already: Vec<String>,
}

pub(crate) fn diagnostics(checked: &show::Checked, lang: Lang) -> CheckReport {
    let views: Vec<DiagnosticView> = checked
        .diagnostics
        .iter()
        .map(|d| DiagnosticView {
            severity: match d.severity {
                DiagSeverity::Error => "error".into(),
                DiagSeverity::Warning => "warning".into(),
            },
            code: d.code.to_string(),
            title: d.code.title(lang).to_owned(),
            file: d.location.file.clone(),
            path: d.path.to_string(),
            line: d.location.line_col.map(|lc| lc.line as usize),
            column: d.location.line_col.map(|lc| lc.col as usize),
            message: d.message.clone(),
        })
        .collect();
    let errors = views.iter().filter(|d| d.severity == "error").count();
    CheckReport {
        ok: errors == 0,
        errors,
        warnings: views.len() - errors,
        diagnostics: views,
        already: Vec::new(),
    }
}

/// A library path must be one the show library reads, relative, without `..`.
fn check_path(path: &str) -> ApiResult<()> {
    let ok_ext = path.ends_with(".toml") || path.ends_with(".ics");
    let ok_chars = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
    if !ok_ext
        || !ok_chars
        || path.starts_with('/')
        || path
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(ApiError::bad(format!(
            "library path `{path}`: give a relative path of .toml or .ics files, e.g. sites/city-hall/scenes/warm.toml"
        )));
    }
    Ok(())
}

/// Operators may change their own sites' scenes and schedules; the rest is for admins.
pub(crate) fn may_edit(who: &Principal, path: &str) -> bool {
    if who.role == Role::Admin {
        return true;
    }
    let mut parts = path.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("sites"), Some(site), Some("schedule.toml"), None)
        | (Some("sites"), Some(site), Some("scenes"), Some(_)) => {
            site.parse::<SiteId>().is_ok_and(|s| who.may_operate(&s))
        }
        _ => false,
    }
}

/// The library with `changes` applied, checked.
async fn with_changes(
    state: &AppState,
    changes: &[(String, Option<String>)],
) -> ApiResult<(Vec<SourceFile>, show::Checked)> {
    let mut files: BTreeMap<String, String> = state
        .store
        .library()
        .await?
        .into_iter()
        .map(|f| (f.path, f.text))
        .collect();
    for (path, text) in changes {
        match text {
            Some(t) => {
                files.insert(path.clone(), t.clone());
            }
            None => {
                files.remove(path);
            }
        }
    }
    let sources: Vec<SourceFile> = files
        .into_iter()
        .map(|(path, text)| SourceFile { path, text })
        .collect();
    let checked = show::check(&sources);
    Ok((sources, checked))
}

fn refused(report: CheckReport) -> ApiError {
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid-library",
        message: format!(
            "the change leaves the library with {} errors; nothing was saved",
            report.errors
        ),
        diagnostics: Some(
            report
                .diagnostics
                .into_iter()
                .filter(|d| d.severity == "error")
                .collect(),
        ),
        retry_after_s: None,
    }
}

async fn library_index(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<LibraryEntry>>> {
    let rows = state.store.library_index().await?;
    Ok(Json(
        rows.into_iter()
            .map(|(path, updated_at_ms, updated_by, bytes)| LibraryEntry {
                path,
                bytes,
                updated_at_ms,
                updated_by,
            })
            .collect(),
    ))
}

async fn library_export(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<FileBody>>> {
    Ok(Json(
        state
            .store
            .library()
            .await?
            .into_iter()
            .map(|f| FileBody {
                path: f.path,
                text: f.text,
            })
            .collect(),
    ))
}

async fn library_get(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
) -> ApiResult<Json<FileBody>> {
    check_path(&path)?;
    let text: Option<String> = sqlx::query("SELECT text FROM library_files WHERE path = $1")
        .bind(&path)
        .fetch_optional(state.store.pool())
        .await
        .map_err(StoreError::from)?
        .map(|r| r.try_get("text"))
        .transpose()
        .map_err(StoreError::from)?;
    let text = text.ok_or_else(|| ApiError::not_found(format!("no library file `{path}`")))?;
    Ok(Json(FileBody { path, text }))
}

async fn library_check(
    State(state): State<Arc<AppState>>,
    Language(lang): Language,
    Body(req): Body<LibraryChange>,
) -> ApiResult<Json<CheckReport>> {
    let changes = req
        .files
        .into_iter()
        .map(|f| (f.path, f.text))
        .collect::<Vec<_>>();
    for (p, _) in &changes {
        check_path(p)?;
    }
    let (_, checked) = with_changes(&state, &changes).await?;
    Ok(Json(diagnostics(&checked, lang)))
}

/// Applies `changes` if the library stays free of errors; the audit row names each file.
async fn apply(
    state: &AppState,
    who: &Principal,
    changes: Vec<(String, Option<String>)>,
    action: &str,
    lang: Lang,
) -> ApiResult<CheckReport> {
    let (_, checked) = with_changes(state, &changes).await?;
    let report = diagnostics(&checked, lang);
    if !report.ok {
        return Err(refused(report));
    }
    let before: BTreeMap<String, String> = state
        .store
        .library()
        .await?
        .into_iter()
        .map(|f| (f.path, f.text))
        .collect();
    let audits: Vec<Audit<'_>> = changes
        .iter()
        .filter(|(p, t)| before.get(p) != t.as_ref())
        .map(|(p, t)| Audit {
            actor: &who.name,
            action,
            target: format!("library:{p}"),
            before: before.get(p).map(|b| serde_json::Value::String(b.clone())),
            after: t.as_ref().map(|t| serde_json::Value::String(t.clone())),
        })
        .collect();
    state
        .store
        .write_library(&changes, &who.name, state.clock.now_ms(), &audits)
        .await?;
    state.publisher.kick.notify_one();
    Ok(report)
}

async fn library_put(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Language(lang): Language,
    Path(path): Path<String>,
    Body(req): Body<FileText>,
) -> ApiResult<Json<CheckReport>> {
    check_path(&path)?;
    if !may_edit(&who, &path) {
        return Err(ApiError::forbidden(format!(
            "`{}` may not change `{path}`: operators change their own sites' scenes and schedules",
            who.name
        )));
    }
    Ok(Json(
        apply(
            &state,
            &who,
            vec![(path, Some(req.text))],
            "library.put",
            lang,
        )
        .await?,
    ))
}

async fn library_delete(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Language(lang): Language,
    Path(path): Path<String>,
) -> ApiResult<Json<CheckReport>> {
    check_path(&path)?;
    if !may_edit(&who, &path) {
        return Err(ApiError::forbidden(format!(
            "`{}` may not delete `{path}`",
            who.name
        )));
    }
    let exists = state.store.library().await?.iter().any(|f| f.path == path);
    if !exists {
        return Err(ApiError::not_found(format!("no library file `{path}`")));
    }
    Ok(Json(
        apply(&state, &who, vec![(path, None)], "library.delete", lang).await?,
    ))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The whole library: files not listed are removed.
    pub files: Vec<FileBody>,
    /// false: only show the diff and the diagnostics.
    pub apply: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ImportReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
    pub applied: bool,
    pub check: CheckReport,
}

async fn library_import(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Language(lang): Language,
    Body(req): Body<ImportRequest>,
) -> ApiResult<Json<ImportReport>> {
    let before: BTreeMap<String, String> = state
        .store
        .library()
        .await?
        .into_iter()
        .map(|f| (f.path, f.text))
        .collect();
    let mut after = BTreeMap::new();
    for f in req.files {
        check_path(&f.path)?;
        if after.insert(f.path.clone(), f.text).is_some() {
            return Err(ApiError::bad(format!("`{}` is listed twice", f.path)));
        }
    }
    let added: Vec<String> = after
        .keys()
        .filter(|p| !before.contains_key(*p))
        .cloned()
        .collect();
    let changed: Vec<String> = after
        .iter()
        .filter(|(p, t)| before.get(*p).is_some_and(|b| b != *t))
        .map(|(p, _)| p.clone())
        .collect();
    let removed: Vec<String> = before
        .keys()
        .filter(|p| !after.contains_key(*p))
        .cloned()
        .collect();
    let unchanged = after.len() - added.len() - changed.len();
    let changes: Vec<(String, Option<String>)> = added
        .iter()
        .chain(&changed)
        .map(|p| (p.clone(), after.get(p).cloned()))
        .chain(removed.iter().map(|p| (p.clone(), None)))
        .collect();
    let (_, checked) = with_changes(&state, &changes).await?;
    let check = diagnostics(&checked, lang);
    if !check.ok {
        return Err(refused(check));
    }
    let applied = req.apply && !changes.is_empty();
    if applied {
        apply(&state, &who, changes, "library.import", lang).await?;
    }
    Ok(Json(ImportReport {
        added,
        changed,
        removed,
        unchanged,
        applied,
        check,
    }))
}

// ---- calendars ----

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarDates {
    pub dates: Vec<CalendarDate>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarDate {
    /// YYYY-MM-DD.
    pub date: String,
    pub name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KasiImport {
    /// Bodies of `getRestDeInfo` responses as they came (XML, or JSON with `_type=json`).
    pub responses: Vec<String>,
}

/// Adds `dates` to the TOML calendar `calendar` through the library's checks and audit.
async fn add_dates(
    state: &AppState,
    who: &Principal,
    calendar: &str,
    dates: Vec<(jiff::civil::Date, String)>,
    action: &str,
    lang: Lang,
) -> ApiResult<Json<CheckReport>> {
    let id: nightscape_core::CalendarId = calendar
        .parse()
        .map_err(|e| ApiError::bad(format!("calendar: {e}")))?;
    let lib = state.store.checked_library().await?;
    let today = nightscape_core::schedule::local_date(
        state.clock.now_ms(),
        &crate::web::city_zone(&lib.checked.library),
    );
    let window = nightscape_core::calendar::addable(today);
    let mut outside: Vec<String> = dates
        .iter()
        .filter(|(d, _)| !window.contains(d))
        .map(|(d, _)| d.to_string())
        .collect();
    if !outside.is_empty() {
        outside.sort();
        outside.dedup();
        let (list, first, last) = (outside.join(", "), window.start(), window.end());
        let years = nightscape_core::calendar::ADD_YEARS;
        return Err(invalid(match lang {
            Lang::Ko => format!(
                "{list}: 올해({})에서 {years}년 넘게 떨어진 날짜는 추가할 수 없습니다. 연도를 확인하세요 — {first}부터 {last}까지 넣을 수 있습니다.",
                today.year()
            ),
            Lang::En => format!(
                "{list}: more than {years} years from this year ({}); check the year — dates from {first} to {last} can be added.",
                today.year()
            ),
        }));
    }
    let path = format!("calendars/{id}.toml");
    let Some(file) = lib.files.iter().find(|f| f.path == path) else {
        let ics = lib
            .files
            .iter()
            .any(|f| f.path == format!("calendars/{id}.ics"));
        return Err(if ics {
            invalid(format!(
                "`{id}` is an iCalendar file: edit it in a calendar program and PUT it to /api/library/files/calendars/{id}.ics"
            ))
        } else {
            ApiError::not_found(format!("no calendar `{id}` in the library"))
        });
    };
    let known = |d| {
        lib.checked
            .library
            .calendars
            .get(&id)
            .is_some_and(|c| c.contains(d))
    };
    let (text, added) = nightscape_core::calendar::kasi::add_dates(&file.text, &known, &dates)
        .ok_or_else(|| invalid(format!("{path} has no `dates = [` list to add to")))?;
    let mut already: Vec<String> = dates
        .iter()
        .filter(|(d, _)| !added.contains(d))
        .map(|(d, _)| d.to_string())
        .collect();
    already.sort();
    already.dedup();
    let mut report = if added.is_empty() {
        CheckReport {
            ok: true,
            errors: 0,
            warnings: 0,
            diagnostics: Vec::new(),
            already: Vec::new(),
        }
    } else {
        apply(state, who, vec![(path, Some(text))], action, lang).await?
    };
    report.already = already;
    Ok(Json(report))
}

async fn add_calendar_dates(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Language(lang): Language,
    Path(calendar): Path<String>,
    Body(req): Body<CalendarDates>,
) -> ApiResult<Json<CheckReport>> {
    let mut dates = Vec::new();
    for d in req.dates {
        let date: jiff::civil::Date = d
            .date
            .parse()
            .map_err(|_| invalid(format!("date `{}`: write YYYY-MM-DD", d.date)))?;
        if d.name.trim().is_empty() {
            return Err(invalid(format!(
                "{date}: give the day a name (e.g. 임시공휴일 temporary holiday)"
            )));
        }
        dates.push((date, d.name));
    }
    add_dates(&state, &who, &calendar, dates, "calendar.add-dates", lang).await
}

async fn import_kasi(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Language(lang): Language,
    Path(calendar): Path<String>,
    Body(req): Body<KasiImport>,
) -> ApiResult<Json<CheckReport>> {
    let mut dates = Vec::new();
    for (i, text) in req.responses.iter().enumerate() {
        let days = nightscape_core::calendar::kasi::parse(text)
            .map_err(|e| invalid(format!("responses[{i}]: {e}")))?;
        dates.extend(
            days.into_iter()
                .filter(|d| d.holiday)
                .map(|d| (d.date, d.name)),
        );
    }
    add_dates(&state, &who, &calendar, dates, "calendar.import-kasi", lang).await
}

// ---- overrides ----

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteOverride {
    pub scene: SceneId,
    /// 100 when left out.
    pub brightness_pct: Option<f64>,
    /// How long from now, in minutes (1 to 7 days), or an absolute end.
    #[schemars(range(min = 1, max = 10080))]
    pub minutes: Option<u32>,
    pub until_ms: Option<i64>,
    pub reason: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Blackout {
    /// Left out: latched until released.
    pub until_ms: Option<i64>,
    pub reason: String,
    /// Must be true: a blackout darkens the site at once.
    pub confirm: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CityOverride {
    pub scope: Scope,
    pub kind: Kind,
    pub scene: Option<SceneId>,
    pub brightness_pct: Option<f64>,
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Instead of `from_ms` and `until_ms`: the nights of these dates, from noon on the
    /// first to noon after the last, in the sites' time zone.
    pub nights: Option<Nights>,
    pub reason: String,
}

/// Nights by date, both included.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nights {
    /// YYYY-MM-DD: the first evening.
    pub from: String,
    /// YYYY-MM-DD: the last evening.
    pub to: String,
}

impl Nights {
    /// From noon on the first date to noon after the last, in `tz`.
    fn span(&self, tz: &jiff::tz::TimeZone) -> ApiResult<(i64, i64)> {
        let date = |field: &str, text: &str| {
            text.parse::<jiff::civil::Date>()
                .map_err(|_| invalid(format!("nights.{field} `{text}`: write YYYY-MM-DD")))
        };
        let (first, last) = (date("from", &self.from)?, date("to", &self.to)?);
        if last < first {
            return Err(invalid("nights: `to` is before `from`"));
        }
        let noon = |d: jiff::civil::Date| {
            tz.to_ambiguous_timestamp(d.at(12, 0, 0, 0))
                .compatible()
                .map(|t| t.as_millisecond())
                .map_err(|e| invalid(format!("nights: {e}")))
        };
        let after = last
            .tomorrow()
            .map_err(|_| invalid("nights.to: too far in the future"))?;
        Ok((noon(first)?, noon(after)?))
    }
}

const MAX_OVERRIDE_MS: i64 = 7 * 86_400_000;
const MAX_EXCEPTION_MS: i64 = 86_400_000;
const MAX_DIM_MS: i64 = 92 * 86_400_000;

fn new_id(now: i64) -> String {
    format!("ov-{now:x}-{}", &auth::secret()[..8])
}

async fn site_known(state: &AppState, site: &str) -> ApiResult<(SiteId, Arc<Library>)> {
    let site: SiteId = site
        .parse()
        .map_err(|e| ApiError::bad(format!("site: {e}")))?;
    let lib = state.store.checked_library().await?;
    let checked = &lib.checked;
    if !checked.library.sites.contains_key(&site) {
        return Err(ApiError::not_found(format!(
            "no site `{site}` in the library"
        )));
    }
    Ok((site, lib))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body", message)
}

/// An override as made, with what staff should know about it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Created {
    #[serde(flatten)]
    pub made: Override,
    /// Why it may not show as asked (a site in its curfew).
    pub warnings: Vec<String>,
}

async fn create_override(state: &AppState, lang: Lang, o: Override) -> ApiResult<Json<Created>> {
    if o.reason.trim().is_empty() || o.reason.chars().count() > 500 {
        return Err(invalid(
            "reason: say why in 1 to 500 characters (it goes into the audit log and the gateways' documents)",
        ));
    }
    let warnings = curfew_warnings(state, lang, &o).await?;
    overrides::insert(&state.store, &o).await?;
    state.publisher.kick.notify_one();
    Ok(Json(Created { made: o, warnings }))
}

/// A scene override that starts inside a site's curfew plays at the curfew level (dark by
/// default) unless a curfew exception is in force, and one under a blackout shows nothing
/// until it is released: say so, instead of a silent success, in the asker's language.
async fn curfew_warnings(state: &AppState, lang: Lang, o: &Override) -> ApiResult<Vec<String>> {
    if o.kind != Kind::Scene {
        return Ok(Vec::new());
    }
    let lib = state.store.checked_library().await?;
    let in_force = overrides::active(&state.store, o.from_ms).await?;
    let day = o.from_ms.div_euclid(86_400_000);
    let almanac = Arc::new(nightscape_core::sun::Almanac::new(day - 2, day + 2));
    let mut out = Vec::new();
    for site in lib
        .checked
        .library
        .sites
        .values()
        .filter(|s| o.scope.covers(&s.id))
    {
        let Some(ev) = lib.checked.library.evaluator(&site.id, almanac.clone()) else {
            continue;
        };
        let mut list: Vec<nightscape_core::schedule::Override> = in_force
            .iter()
            .filter(|x| x.scope.covers(&site.id))
            .chain([o])
            .filter_map(|x| x.entry().to_override().ok())
            .collect();
        list.retain(|x| x.from_ms <= o.from_ms);
        let cue = ev.cue_with(o.from_ms, &list);
        let level = site.limits.curfew_level.pct();
        let name = &site.name.ko;
        match (cue.cause, lang) {
            (nightscape_core::schedule::Cause::Curfew { .. }, Lang::Ko) => out.push(format!(
                "{name}: 소등 시각 제한 중이라 일출까지 제한 밝기({level:.0} %)로만 켜집니다. 관리자가 예외를 허가하면 지정한 대로 켜집니다."
            )),
            (nightscape_core::schedule::Cause::Curfew { .. }, Lang::En) => out.push(format!(
                "`{}` is in its curfew: the override plays at the curfew level ({level:.0} %) until sunrise, unless an admin grants a curfew exception",
                site.id,
            )),
            (nightscape_core::schedule::Cause::Blackout, Lang::Ko) => out.push(format!(
                "{name}: 긴급 소등 중이라 소등을 해제해야 지정한 장면이 보입니다."
            )),
            (nightscape_core::schedule::Cause::Blackout, Lang::En) => out.push(format!(
                "`{}` is blacked out: the override shows only once the blackout is released",
                site.id
            )),
            _ => {}
        }
    }
    Ok(out)
}

async fn site_override(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Language(lang): Language,
    Path(site): Path<String>,
    Body(req): Body<SiteOverride>,
) -> ApiResult<Json<Created>> {
    let (site, lib) = site_known(&state, &site).await?;
    let checked = &lib.checked;
    if !who.may_operate(&site) {
        return Err(ApiError::forbidden(format!(
            "`{}` does not operate `{site}`",
            who.name
        )));
    }
    if !checked.library.scenes_of(&site).any(|s| s.id == req.scene) {
        return Err(invalid(format!(
            "scene: `{}` is not a scene of `{site}`",
            req.scene
        )));
    }
    if let Some(b) = req.brightness_pct
        && !(0.0..=100.0).contains(&b)
    {
        return Err(invalid("brightness_pct: give 0 to 100"));
    }
    let now = state.clock.now_ms();
    let until = match (req.minutes, req.until_ms) {
        (Some(m), None) => now + i64::from(m) * 60_000,
        (None, Some(u)) => u,
        _ => return Err(invalid("give either minutes or until_ms")),
    };
    if until <= now || until - now > MAX_OVERRIDE_MS {
        return Err(invalid(
            "the override must end in the future and within 7 days",
        ));
    }
    create_override(
        &state,
        lang,
        Override {
            scene: Some(req.scene),
            brightness_pct: req.brightness_pct,
            until_ms: Some(until),
            ..Override::new(
                new_id(now),
                Scope::Sites(vec![site]),
                Kind::Scene,
                &who.name,
                req.reason,
                now,
            )
        },
    )
    .await
}

async fn site_blackout(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Language(lang): Language,
    Path(site): Path<String>,
    Body(req): Body<Blackout>,
) -> ApiResult<Json<Created>> {
    let (site, _) = site_known(&state, &site).await?;
    if !who.may_operate(&site) {
        return Err(ApiError::forbidden(format!(
            "`{}` does not operate `{site}`",
            who.name
        )));
    }
    if !req.confirm {
        return Err(invalid(
            "confirm: a blackout darkens the site at once; send confirm: true",
        ));
    }
    let now = state.clock.now_ms();
    if req.until_ms.is_some_and(|u| u <= now) {
        return Err(invalid("until_ms is in the past"));
    }
    create_override(
        &state,
        lang,
        Override {
            until_ms: req.until_ms,
            ..Override::new(
                new_id(now),
                Scope::Sites(vec![site]),
                Kind::Blackout,
                &who.name,
                req.reason,
                now,
            )
        },
    )
    .await
}

async fn city_override(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Language(lang): Language,
    Body(mut req): Body<CityOverride>,
) -> ApiResult<Json<Created>> {
    let lib = state.store.checked_library().await?;
    let checked = &lib.checked;
    if let Scope::Sites(list) = &req.scope {
        if list.is_empty() {
            return Err(invalid("scope: name at least one site, or use the city"));
        }
        if let Some(s) = list
            .iter()
            .find(|s| !checked.library.sites.contains_key(*s))
        {
            return Err(invalid(format!("scope: no site `{s}` in the library")));
        }
    }
    let now = state.clock.now_ms();
    if let Some(nights) = &req.nights {
        if req.from_ms.is_some() || req.until_ms.is_some() {
            return Err(invalid(
                "nights: give either nights or from_ms and until_ms, not both",
            ));
        }
        // The sites share one zone in a city; the first site of the scope names it.
        let first = match &req.scope {
            Scope::Sites(list) => list.first().and_then(|s| checked.library.sites.get(s)),
            Scope::City => checked.library.sites.values().next(),
        };
        let tz = first.map_or(jiff::tz::TimeZone::UTC, |s| s.time_zone.clone());
        let (from, until) = nights.span(&tz)?;
        if until <= now {
            return Err(invalid(
                "nights: those nights are over; give dates from tonight on",
            ));
        }
        req.from_ms = Some(from.max(now));
        req.until_ms = Some(until);
    }
    let from = req.from_ms.unwrap_or(now);
    match req.kind {
        Kind::Scene => {
            let Scope::Sites(list) = &req.scope else {
                return Err(invalid(
                    "a scene belongs to one site; a city-wide override is a blackout",
                ));
            };
            let Some(scene) = &req.scene else {
                return Err(invalid("scene: a scene override names its scene"));
            };
            if let Some(s) = list
                .iter()
                .find(|s| !checked.library.scenes_of(s).any(|x| &x.id == scene))
            {
                return Err(invalid(format!("scene: `{scene}` is not a scene of `{s}`")));
            }
            if req
                .until_ms
                .is_none_or(|u| u <= from || u - from > MAX_OVERRIDE_MS)
            {
                return Err(invalid(
                    "until_ms: a scene override ends within 7 days of its start",
                ));
            }
        }
        Kind::CurfewException => {
            // Limits are the city's promise to its residents: an exception is short and named.
            if req
                .until_ms
                .is_none_or(|u| u <= from || u - from > MAX_EXCEPTION_MS)
            {
                return Err(invalid(
                    "until_ms: a curfew exception ends within 24 hours of its start",
                ));
            }
        }
        Kind::Dim => {
            if req
                .brightness_pct
                .is_none_or(|b| !(0.0..=100.0).contains(&b))
            {
                return Err(invalid(
                    "brightness_pct: a dim says how bright, 0 to 100 % of what would play",
                ));
            }
            if req
                .until_ms
                .is_none_or(|u| u <= from || u - from > MAX_DIM_MS)
            {
                return Err(invalid("until_ms: a dim ends within 92 days of its start"));
            }
        }
        Kind::Blackout => {
            if req.until_ms.is_some_and(|u| u <= from) {
                return Err(invalid("until_ms is before the start"));
            }
        }
    }
    create_override(
        &state,
        lang,
        Override {
            scene: req.scene,
            brightness_pct: req.brightness_pct,
            from_ms: from,
            until_ms: req.until_ms,
            ..Override::new(new_id(now), req.scope, req.kind, &who.name, req.reason, now)
        },
    )
    .await
}

async fn list_overrides(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<Override>>> {
    Ok(Json(overrides::recent(&state.store, 500).await?))
}

async fn release_override(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let o = overrides::get(&state.store, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no override `{id}`")))?;
    let allowed = match &o.scope {
        Scope::City => who.role == Role::Admin,
        Scope::Sites(list) => list.iter().all(|s| who.may_operate(s)),
    };
    if !allowed {
        return Err(ApiError::forbidden(format!(
            "`{}` may not release `{id}`",
            who.name
        )));
    }
    if overrides::release(&state.store, &id, &who.name, state.clock.now_ms()).await? {
        state.publisher.kick.notify_one();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("`{id}` was already released"),
        ))
    }
}

// ---- commands ----

async fn send_command(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(gateway): Path<String>,
    Body(action): Body<nightscape_core::wire::Action>,
) -> ApiResult<Json<commands::CommandView>> {
    let gateway: nightscape_core::GatewayId = gateway
        .parse()
        .map_err(|e| ApiError::bad(format!("gateway: {e}")))?;
    let site: Option<String> =
        sqlx::query("SELECT site FROM gateways WHERE gateway = $1 AND removed = 0")
            .bind(gateway.as_str())
            .fetch_optional(state.store.pool())
            .await
            .map_err(StoreError::from)?
            .map(|r| r.try_get("site"))
            .transpose()
            .map_err(StoreError::from)?;
    let site: SiteId = site
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::not_found(format!("no gateway `{gateway}`")))?;
    if !who.may_operate(&site) {
        return Err(ApiError::forbidden(format!(
            "`{}` does not operate `{site}`",
            who.name
        )));
    }
    action.check().map_err(invalid)?;
    let mqtt = state
        .publisher
        .mqtt
        .as_ref()
        .filter(|m| m.connected())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "broker-down",
                "the server is not connected to the broker; nothing was sent, try again shortly",
            )
        })?;
    let now = state.clock.now_ms();
    let sent = commands::send(
        &state.store,
        mqtt,
        &state.publisher.topic_prefix,
        &gateway,
        action,
        &who.name,
        now,
    )
    .await?;
    Ok(Json(sent))
}

async fn list_commands(
    State(state): State<Arc<AppState>>,
) -> ApiResult<Json<Vec<commands::CommandView>>> {
    Ok(Json(commands::recent(&state.store, 200).await?))
}

// ---- users and audit ----

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    /// Required to create a user; changes the password when given (at least 12 characters).
    pub password: Option<String>,
    pub role: Role,
    /// For operators: the sites they may change (empty: all).
    #[serde(default)]
    pub sites: Vec<SiteId>,
}

async fn list_users(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<auth::UserView>>> {
    Ok(Json(auth::users(&state.store).await?))
}

async fn put_user(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Body(req): Body<UserRequest>,
) -> ApiResult<StatusCode> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid("name: 1–64 letters, digits, '-', '_' or '.'"));
    }
    if req
        .password
        .as_ref()
        .is_some_and(|p| p.chars().count() < 12)
    {
        return Err(invalid("password: at least 12 characters"));
    }
    let lib = state.store.checked_library().await?;
    if let Some(s) = req
        .sites
        .iter()
        .find(|s| !lib.checked.library.sites.contains_key(*s))
    {
        return Err(invalid(format!("sites: no site `{s}` in the library")));
    }
    auth::put_user(
        &state.store,
        &name,
        req.password.as_deref(),
        req.role,
        &req.sites,
        &who.name,
        state.clock.now_ms(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_user(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if name == who.name {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "you cannot delete yourself",
        ));
    }
    if auth::delete_user(&state.store, &name, &who.name, state.clock.now_ms()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no user `{name}`")))
    }
}

async fn audit_log(
    State(state): State<Arc<AppState>>,
) -> ApiResult<Json<Vec<crate::store::AuditEntry>>> {
    Ok(Json(state.store.audit_log(1000).await?))
}
