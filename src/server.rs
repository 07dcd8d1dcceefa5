//! `nightscape server`: the server as its own process, against a broker and a database
//! (SQLite by default, PostgreSQL by URL). Replicas run the same command against one
//! PostgreSQL and one broker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use nightscape_server::mqtt::BrokerConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::SystemClock;

/// What `nightscape server` was asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Holds the signing key (mode 600), and the SQLite database by default.
    #[arg(long, default_value = "nightscape-data")]
    pub data_dir: PathBuf,
    /// postgres://USER@HOST/DB (or sqlite://PATH); default: SQLite in the data directory.
    #[arg(long, env = "NIGHTSCAPE_DATABASE_URL")]
    pub database_url: Option<String>,
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// The MQTT broker, host:port.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub broker: String,
    #[arg(long)]
    pub broker_user: Option<String>,
    /// A file holding the broker password.
    #[arg(long)]
    pub broker_password_file: Option<PathBuf>,
    /// Connect with TLS, trusting this CA certificate (PEM).
    #[arg(long)]
    pub broker_ca: Option<PathBuf>,
    /// The MQTT client id: the broker keeps this session's messages while the server is
    /// away. Default: from the host name and the data directory, so a restarted server takes
    /// its session back and replicas (each with its own data directory) do not share one.
    #[arg(long)]
    pub broker_client_id: Option<String>,
    /// Prepended to every MQTT topic.
    #[arg(long, default_value = "")]
    pub topic_prefix: String,
    /// The first admin's password on the first start (default: generated and printed once).
    #[arg(long, env = "NIGHTSCAPE_ADMIN_PASSWORD")]
    pub admin_password: Option<String>,
    /// A show library imported on the first start.
    #[arg(long)]
    pub library: Option<PathBuf>,
    /// Mark the session cookie Secure (serve behind HTTPS).
    #[arg(long)]
    pub secure_cookies: bool,
    /// A name (or address) browsers reach the server by, at any port; repeat for more.
    /// Loopback and the --listen address are always answered; a request naming any other
    /// host gets 421, so a page on another site cannot reach the server by pointing its own
    /// name at this address (DNS rebinding).
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
    /// The address of a reverse proxy in front of the server, whose X-Forwarded-For then
    /// names the client for the login limit; repeat for more. Without it the header is
    /// ignored.
    #[arg(long = "trusted-proxy", value_name = "ADDR")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// For tests of replicas: wait this long between storing new documents and sending them.
    #[arg(long, default_value_t = 0, hide = true)]
    pub publish_delay_ms: u64,
}

pub fn broker_config(options: &Options) -> Result<BrokerConfig> {
    let (host, port) = options
        .broker
        .rsplit_once(':')
        .with_context(|| format!("--broker `{}`: write host:port", options.broker))?;
    let port = port
        .parse()
        .with_context(|| format!("--broker `{}`: `{port}` is not a port", options.broker))?;
    let password = options
        .broker_password_file
        .as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|t| t.trim_end().to_owned())
                .with_context(|| format!("reading {}", p.display()))
        })
        .transpose()?;
    let ca = options
        .broker_ca
        .as_ref()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let client_id = match &options.broker_client_id {
        Some(id) => id.clone(),
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "host".into());
            let dir = std::fs::canonicalize(&options.data_dir)
                .unwrap_or_else(|_| options.data_dir.clone());
            // FNV-1a: stable across builds, so an upgrade keeps the session.
            let digest = dir
                .display()
                .to_string()
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
            format!("nightscape-server-{host}-{:08x}", digest as u32)
        }
    };
    Ok(BrokerConfig {
        host: host.to_owned(),
        port,
        username: options.broker_user.clone(),
        password,
        ca,
        topic_prefix: options.topic_prefix.clone(),
        client_id,
    })
}

pub fn run(options: Options) -> Result<()> {
    crate::process::init_logging();
    let broker = broker_config(&options)?;
    let seed = options
        .library
        .as_ref()
        .map(|dir| crate::library::read_dir(dir))
        .transpose()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let server = nightscape_server::start(
            nightscape_server::Config {
                data_dir: options.data_dir.clone(),
                database_url: options.database_url.clone(),
                listen: options.listen,
                broker: Some(broker),
                admin_password: options.admin_password.clone(),
                secure_cookies: options.secure_cookies,
                allowed_hosts: options.allowed_hosts.clone(),
                trusted_proxies: options.trusted_proxies.clone(),
                publish_every: Duration::from_secs(5),
                publish_delay: Duration::from_millis(options.publish_delay_ms),
                seed_library: seed,
                reporting_gap: nightscape_server::intake::REPORTING_GAP,
            },
            Arc::new(SystemClock::new()),
            shutdown.clone(),
            &tracker,
        )
        .await
        .context("choose another address with --listen")?;
        // Before saying it serves: a SIGTERM right after must stop it cleanly.
        let signal = crate::process::wait_for_signal();
        if let Some((name, password)) = &server.first_admin {
            eprintln!(
                "first start: admin login `{name}`, password `{password}` (shown once; change it)"
            );
        }
        eprintln!(
            "serving on http://{}/ ; gateways pin the public key in {}",
            server.addr,
            server.public_key_file.display()
        );
        crate::process::Notifier::from_env().notify("READY=1");
        signal.await;
        eprintln!("stopping");
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        server.state.store.close().await;
        Ok(())
    })
}
