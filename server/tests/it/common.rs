//! Helpers: a fresh database of each kind, the shipped library, an app to call with
//! `oneshot`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use nightscape_core::clock::{Clock, VirtualClock};
use nightscape_core::show::SourceFile;
use nightscape_server::metrics::Metrics;
use nightscape_server::publish::Publisher;
use nightscape_server::store::Store;
use nightscape_server::{AppState, auth};
use sqlx::Connection;
use tower::ServiceExt;

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// 2026-11-27 20:00 in Korea (a Friday evening).
pub const NOW_MS: i64 = 1_795_777_200_000;

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "nightscape-server-{name}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A database made for one test; PostgreSQL ones are dropped by [`Db::drop_now`].
pub struct Db {
    pub url: String,
    pub label: &'static str,
    pg_name: Option<String>,
}

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";

impl Db {
    pub async fn sqlite(name: &str) -> Db {
        let dir = scratch(name);
        Db {
            url: format!("sqlite://{}?mode=rwc", dir.join("store.db").display()),
            label: "sqlite",
            pg_name: None,
        }
    }

    pub async fn postgres(name: &str) -> Db {
        let db = format!(
            "nstest_{}_{}_{}",
            name.replace('-', "_"),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = sqlx::PgConnection::connect(PG_ADMIN)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (see .ci/run)");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut c)
            .await
            .unwrap();
        Db {
            url: format!("postgres://postgres@127.0.0.1:5432/{db}"),
            label: "postgres",
            pg_name: Some(db),
        }
    }

    /// One of each kind.
    pub async fn both(name: &str) -> [Db; 2] {
        [Db::sqlite(name).await, Db::postgres(name).await]
    }

    pub async fn drop_now(self) {
        if let Some(db) = self.pg_name {
            let mut c = sqlx::PgConnection::connect(PG_ADMIN).await.unwrap();
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&mut c)
                .await;
        }
    }
}

pub fn shipped_library() -> Vec<SourceFile> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenes");
    nightscape_server::files::read_dir(&dir).unwrap()
}

pub fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
}

/// An app on `url` with the shipped library and an admin, and no broker.
pub async fn app_state(url: &str) -> (Arc<AppState>, Arc<VirtualClock>) {
    let clock = Arc::new(VirtualClock::new(NOW_MS));
    let store = Store::open(url).await.unwrap();
    if auth::user_count(&store).await.unwrap() == 0 {
        auth::put_user(
            &store,
            "admin",
            Some(ADMIN_PASSWORD),
            auth::Role::Admin,
            &[],
            "test",
            NOW_MS,
        )
        .await
        .unwrap();
        let changes: Vec<(String, Option<String>)> = shipped_library()
            .into_iter()
            .map(|f| (f.path, Some(f.text)))
            .collect();
        store
            .write_library(&changes, "test", NOW_MS, &[])
            .await
            .unwrap();
    }
    let metrics = Arc::new(Metrics::default());
    let publisher = Arc::new(Publisher::new(
        store.clone(),
        None,
        key(),
        clock.clone() as Arc<dyn Clock>,
        String::new(),
        metrics.clone(),
    ));
    let state = Arc::new(AppState {
        store,
        clock: clock.clone(),
        publisher,
        metrics,
        secure_cookies: false,
        edge: Default::default(),
        animations: Default::default(),
    });
    (state, clock)
}

/// A response: status, headers, body as JSON (or `null`) and as text.
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: serde_json::Value,
    pub text: String,
    pub bytes: Vec<u8>,
}

pub async fn call(state: &Arc<AppState>, request: Request<Body>) -> Reply {
    let app = nightscape_server::api::router(state.clone());
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Reply {
        status,
        headers,
        json: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        text,
        bytes: bytes.to_vec(),
    }
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum As {
    Nobody,
    Bearer(String),
    /// Session cookie and CSRF token.
    Cookie(String, String),
}

pub fn request(
    method: &str,
    path: &str,
    who: &As,
    body: Option<serde_json::Value>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    match who {
        As::Nobody => {}
        As::Bearer(t) => b = b.header("authorization", format!("Bearer {t}")),
        As::Cookie(s, csrf) => {
            b = b
                .header("cookie", format!("nightscape_session={s}"))
                .header("x-csrf-token", csrf)
        }
    }
    match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

/// Logs in and returns a session (cookie secret, CSRF token).
pub async fn login(state: &Arc<AppState>, name: &str, password: &str) -> As {
    let r = call(
        state,
        request(
            "POST",
            "/api/login",
            &As::Nobody,
            Some(serde_json::json!({"name": name, "password": password})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let cookie = r
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let secret = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    As::Cookie(secret, r.json["csrf"].as_str().unwrap().to_owned())
}

/// A bearer token for a new user of `role` (operators scoped to `sites`).
pub async fn user(state: &Arc<AppState>, name: &str, role: auth::Role, sites: &[&str]) -> As {
    let sites: Vec<_> = sites.iter().map(|s| s.parse().unwrap()).collect();
    auth::put_user(
        &state.store,
        name,
        Some("a-long-password-1"),
        role,
        &sites,
        "test",
        NOW_MS,
    )
    .await
    .unwrap();
    let token = auth::issue_token(&state.store, name, "test", NOW_MS, NOW_MS + 86_400_000)
        .await
        .unwrap();
    As::Bearer(token)
}

/// A whole server (`nightscape_server::start`) on a free port with the shipped library, the
/// test key and an admin, on the test clock; with a broker when given one.
pub async fn running(
    name: &str,
    broker: Option<nightscape_server::mqtt::BrokerConfig>,
) -> (
    nightscape_server::Server,
    tokio_util::sync::CancellationToken,
    tokio_util::task::TaskTracker,
) {
    let dir = scratch(name);
    std::fs::write(
        dir.join("signing.key"),
        nightscape_core::plan::secret_key_text(&key()),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.join("signing.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let server = nightscape_server::start(
        nightscape_server::Config {
            admin_password: Some(ADMIN_PASSWORD.into()),
            seed_library: Some(shipped_library()),
            ..nightscape_server::Config::local(dir, broker)
        },
        Arc::new(VirtualClock::new(NOW_MS)) as Arc<dyn Clock>,
        shutdown.clone(),
        &tracker,
    )
    .await
    .unwrap();
    (server, shutdown, tracker)
}
