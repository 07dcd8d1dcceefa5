//! `nightscape sim`: the firmware simulator as its own process — every controller of the
//! chosen sites on loopback, the endpoint map written for gateways, the state API served.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use firmware_sim::{Bind, Broker, SimConfig};
use tokio_util::sync::CancellationToken;

use crate::clock::SystemClock;
use crate::library;

/// What `nightscape sim` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub library: PathBuf,
    pub sites: Vec<String>,
    pub ports: bool,
    pub endpoints: PathBuf,
    pub http: SocketAddr,
    pub broker: Option<String>,
    pub topic_prefix: String,
    /// Also receive sACN multicast (on loopback; inside a private network namespace).
    pub multicast: bool,
    /// A fault scenario file to apply at start.
    pub scenario: Option<PathBuf>,
    /// Where the API's token is kept (default: `sim-token` beside the endpoint map).
    pub token_file: Option<PathBuf>,
    /// Host names the API answers to besides the loopback ones.
    pub allow_hosts: Vec<String>,
}

fn broker(text: &str, prefix: &str) -> Result<Broker> {
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| format!("--broker `{text}`: write host:port, e.g. 127.0.0.1:1883"))?;
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("--broker `{text}`: the simulator talks to a broker on loopback only (127.0.0.1)");
    }
    let port = port
        .parse()
        .with_context(|| format!("--broker `{text}`: `{port}` is not a port"))?;
    Ok(Broker::anonymous(host, port, prefix))
}

/// Runs until ctrl-c or SIGTERM.
pub fn run(options: Options) -> Result<()> {
    crate::process::init_logging();
    if !options.http.ip().is_loopback() {
        bail!(
            "--http {}: the simulator serves on loopback only (127.0.0.1)",
            options.http
        );
    }
    let (_, checked) = library::load(&options.library)?;
    for d in checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == nightscape_core::diag::Severity::Error)
    {
        eprintln!("{d}");
    }
    let sites = options
        .sites
        .iter()
        .map(|s| s.parse().with_context(|| format!("`{s}` is not a site id")))
        .collect::<Result<Vec<_>>>()?;
    let broker = options
        .broker
        .as_deref()
        .map(|b| broker(b, &options.topic_prefix))
        .transpose()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(serve(options, checked.library, sites, broker))
}

async fn serve(
    options: Options,
    library: nightscape_core::ShowLibrary,
    sites: Vec<nightscape_core::SiteId>,
    broker: Option<Broker>,
) -> Result<()> {
    let shutdown = CancellationToken::new();
    let sim = firmware_sim::start(
        SimConfig {
            library,
            sites,
            bind: if options.ports {
                Bind::Ports
            } else {
                Bind::ADDRESSES
            },
            broker,
            multicast: options.multicast,
        },
        Arc::new(SystemClock::new()),
        shutdown.clone(),
    )
    .await?;
    sim.endpoints.check_loopback()?;
    if let Some(path) = &options.scenario {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let scenario = firmware_sim::faults::Scenario::parse(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        sim.state
            .apply_all(&scenario.faults)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        eprintln!(
            "{}: {} faults applied",
            path.display(),
            scenario.faults.len()
        );
    }
    write_endpoints(&options.endpoints, &sim.endpoints.to_toml())?;
    let token_file = options.token_file.clone().unwrap_or_else(|| {
        options
            .endpoints
            .parent()
            .unwrap_or(Path::new(""))
            .join("sim-token")
    });
    let token = crate::secret::kept_or_new(&token_file, || crate::secret::random_hex(16))?;
    let listener = tokio::net::TcpListener::bind(options.http)
        .await
        .with_context(|| format!("listening on {} (--http)", options.http))?;
    let local = listener.local_addr()?;
    // Before saying where it serves: a SIGTERM right after must stop it cleanly.
    let signal = crate::process::wait_for_signal();
    let controllers: usize = sim.state.sites.values().map(|s| s.controllers.len()).sum();
    eprintln!(
        "token for faults and scenarios (Authorization: Bearer …): {token} (kept in {})",
        token_file.display()
    );
    eprintln!(
        "simulating {controllers} controllers of {} sites; endpoint map in {}; preview at http://{local}/ and state API at http://{local}/api/sites",
        sim.state.sites.len(),
        options.endpoints.display()
    );
    let access = firmware_sim::api::Access {
        hosts: options.allow_hosts.clone(),
        token,
    };
    let app = firmware_sim::api::router(sim.state.clone(), access);
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    signal.await;
    eprintln!("stopping");
    shutdown.cancel();
    sim.tracker.wait().await;
    server.await.context("the state API task")??;
    Ok(())
}

fn write_endpoints(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
