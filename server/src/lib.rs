//! Nightscape's server: the store, the HTTP API, users, and the publisher of signed plans.
//!
//! - `store` — sqlx on SQLite (default) or PostgreSQL, embedded migrations, the audit log;
//! - `auth` — users, roles, argon2id, sessions with CSRF, bearer tokens, the login limit;
//! - `api` — the route table (access, types) from which the router, the access check and
//!   the OpenAPI document (`openapi`) are built; `read` is the read side; `edge` is what
//!   every request and answer passes (the Host check, the client's address, the security
//!   headers);
//! - `overrides` — overrides and blackouts by site, group or city;
//! - `publish` — compiles, signs and publishes each gateway's plan and overrides document,
//!   once per change across replicas; `mqtt` owns the broker connection; `intake` stores
//!   what gateways send (state, acks, telemetry, events → faults, energy).
//!
//! [`start`] runs all of it on one shutdown tree and returns the bound address.

pub mod api;
pub mod auth;
pub mod broker_acl;
pub mod commands;
pub mod compliance;
pub mod edge;
pub mod files;
pub mod intake;
pub mod metrics;
pub mod mqtt;
pub mod openapi;
pub mod overrides;
pub mod preview;
pub mod publish;
pub mod read;
pub mod store;
pub mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ed25519_dalek::SigningKey;
use nightscape_core::clock::Clock;
use nightscape_core::plan;
use nightscape_core::show::SourceFile;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::mqtt::BrokerConfig;
use crate::publish::Publisher;
use crate::store::Store;

/// What the HTTP handlers share.
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub publisher: Arc<Publisher>,
    pub metrics: Arc<metrics::Metrics>,
    pub secure_cookies: bool,
    /// The names the server answers to and the proxies it believes.
    pub edge: edge::Policy,
    /// Scene animations made for the library, kept until it changes.
    pub animations: preview::Animations,
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds the signing key (and the SQLite database unless `database_url` says otherwise).
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: `nightscape.db` in the data directory.
    pub database_url: Option<String>,
    pub listen: SocketAddr,
    /// No broker: documents are stored and wait (for tests of the API alone).
    pub broker: Option<BrokerConfig>,
    /// The first admin's password; generated and reported once when not given.
    pub admin_password: Option<String>,
    /// Mark the session cookie Secure (behind HTTPS).
    pub secure_cookies: bool,
    /// Names (or addresses) browsers reach the server by, besides loopback and the listen
    /// address: a request naming any other host is refused.
    pub allowed_hosts: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How often publishers look for changes they were not told about.
    pub publish_every: Duration,
    /// For tests of replicas: how long a round waits between storing new documents and
    /// sending them, a window in which to kill it.
    pub publish_delay: Duration,
    /// Imported when the store has no library yet.
    pub seed_library: Option<Vec<SourceFile>>,
    /// Messages from a gateway further apart than this on the server's clock leave a gap
    /// in its reporting (the compliance report's "not reported"). The gateway's telemetry
    /// and state are paced in real time, so a clock that runs scaled needs this scaled too.
    pub reporting_gap: Duration,
}

impl Config {
    /// A server on a free loopback port with SQLite in `data_dir`, publishing through
    /// `broker`; set the rest with struct update syntax.
    pub fn local(data_dir: PathBuf, broker: Option<BrokerConfig>) -> Config {
        Config {
            data_dir,
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            broker,
            admin_password: None,
            secure_cookies: false,
            allowed_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            publish_every: Duration::from_secs(5),
            publish_delay: Duration::ZERO,
            seed_library: None,
            reporting_gap: intake::REPORTING_GAP,
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("nightscape.db").display()
            )
        })
    }
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub public_key: ed25519_dalek::VerifyingKey,
    pub public_key_file: PathBuf,
    /// Set on the first start only: the admin's name and generated password, to show once.
    pub first_admin: Option<(String, String)>,
}

/// A small random delay, for reconnect jitter.
pub(crate) fn jitter_ms(max: u16) -> u16 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    u16::from_le_bytes(b) % max.max(1)
}

/// The signing key from the data directory, made on first start (mode 600). A key others
/// can read is refused: whoever reads it can light the city.
pub fn signing_key(dir: &Path) -> Result<(SigningKey, PathBuf)> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let secret = dir.join("signing.key");
    let public = dir.join("signing.pub");
    let key = if secret.exists() {
        let mode = std::fs::metadata(&secret)
            .with_context(|| format!("reading {}", secret.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} can be read by other users (mode {:o}); run `chmod 600 {}` and start again",
                secret.display(),
                mode & 0o777,
                secret.display()
            );
        }
        let text = std::fs::read_to_string(&secret)
            .with_context(|| format!("reading {}", secret.display()))?;
        plan::parse_secret_key(&text).map_err(|e| anyhow::anyhow!("{}: {e}", secret.display()))?
    } else {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let key = SigningKey::from_bytes(&bytes);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret)
            .with_context(|| format!("creating {}", secret.display()))?;
        std::io::Write::write_all(&mut f, plan::secret_key_text(&key).as_bytes())
            .with_context(|| format!("writing {}", secret.display()))?;
        f.sync_all().ok();
        key
    };
    std::fs::write(&public, plan::public_key_text(&key.verifying_key()))
        .with_context(|| format!("writing {}", public.display()))?;
    Ok((key, public))
}

/// Opens the store, makes the first admin and key if needed, and serves until `shutdown`.
pub async fn start(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<Server> {
    let (key, public_key_file) = signing_key(&config.data_dir)?;
    let url = config.database_url();
    let store = Store::open(&url)
        .await
        .with_context(|| format!("opening the store at {}", redact(&url)))?;
    let now = clock.now_ms();
    store.raise_versions(now).await?;
    let mut first_admin = None;
    if auth::user_count(&store).await? == 0 {
        let (password, generated) = match &config.admin_password {
            Some(p) => (p.clone(), false),
            None => (auth::generated_password(), true),
        };
        auth::put_user(
            &store,
            "admin",
            Some(&password),
            auth::Role::Admin,
            &[],
            "nightscape",
            now,
        )
        .await?;
        if generated {
            first_admin = Some(("admin".to_owned(), password));
        }
    }
    if let Some(seed) = &config.seed_library
        && store.library().await?.is_empty()
    {
        let changes: Vec<(String, Option<String>)> = seed
            .iter()
            .map(|f| (f.path.clone(), Some(f.text.clone())))
            .collect();
        let audit = store::Audit {
            actor: "nightscape",
            action: "library.seed",
            target: "library".into(),
            before: None,
            after: Some(serde_json::json!({"files": seed.len()})),
        };
        store
            .write_library(&changes, "nightscape", now, &[audit])
            .await?;
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let prefix = config
        .broker
        .as_ref()
        .map(|b| b.topic_prefix.clone())
        .unwrap_or_default();
    let (mqtt, up) = match &config.broker {
        Some(b) => {
            let subscriptions = ["state", "ack", "telemetry", "event"]
                .iter()
                .map(|leaf| format!("{}nightscape/v1/gw/+/{leaf}", b.topic_prefix))
                .collect();
            let (handle, up) = mqtt::start(b, subscriptions, shutdown.clone(), tracker);
            (Some(handle), Some(up))
        }
        None => (None, None),
    };
    let mut publisher = Publisher::new(
        store.clone(),
        mqtt,
        key.clone(),
        clock.clone(),
        prefix.clone(),
        metrics.clone(),
    );
    publisher.delay = config.publish_delay;
    let publisher = Arc::new(publisher);
    tracker.spawn(
        publisher
            .clone()
            .run(config.publish_every, shutdown.clone()),
    );
    if let Some(up) = up {
        let mut intake = intake::Intake::new(
            store.clone(),
            publisher.clone(),
            metrics.clone(),
            clock.clone(),
            prefix,
        );
        intake.reporting_gap = config.reporting_gap;
        let stop = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = intake.run(up) => {}
                () = stop.cancelled() => {}
            }
        });
    }
    if store.backend() == store::Backend::Postgres {
        tracker.spawn(listen_for_changes(url, publisher.clone(), shutdown.clone()));
    }
    let state = Arc::new(AppState {
        store,
        clock,
        publisher,
        metrics,
        secure_cookies: config.secure_cookies,
        edge: edge::Policy::new(
            &config.allowed_hosts,
            &config.trusted_proxies,
            config.listen,
        ),
        animations: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("the API cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let app = api::router(state.clone());
    let stop = shutdown.clone();
    tracker.spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
        if let Err(e) = served {
            tracing::error!("the HTTP server stopped: {e}");
        }
    });
    Ok(Server {
        addr,
        state,
        public_key: key.verifying_key(),
        public_key_file,
        first_admin,
    })
}

/// Wakes this replica's publisher when another replica commits a change.
async fn listen_for_changes(url: String, publisher: Arc<Publisher>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let listened = async {
            let mut l = sqlx::postgres::PgListener::connect(&url).await?;
            l.listen(store::NOTIFY_CHANNEL).await?;
            loop {
                l.recv().await?;
                publisher.kick.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = listened => if let Err(e) = r {
                tracing::warn!("listening for other replicas' changes: {e}");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
