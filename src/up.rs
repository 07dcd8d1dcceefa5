//! `nightscape up`: the whole system in one process on loopback — an embedded MQTT broker
//! (rumqttd), the server on SQLite, the simulator with every controller of the library,
//! and one gateway per gateway of the library, all on one wall clock that may run faster
//! than real time (`--time-scale`) from a chosen start (`--start`). Data lives in one
//! directory, so a second `up` resumes where the first stopped.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nightscape_core::clock::Clock;
use nightscape_gateway::config::Config as GatewayConfig;
use nightscape_server::mqtt::BrokerConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::{ScaledClock, SystemClock};

/// What `nightscape up` was asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The show library (imported into the store on the first start).
    #[arg(long, default_value = "scenes")]
    pub library: PathBuf,
    /// Where everything is kept; a second `up` resumes it.
    #[arg(long, default_value = "nightscape-data")]
    pub data_dir: PathBuf,
    /// The HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: std::net::SocketAddr,
    /// The simulator's live preview and state API.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub sim_http: std::net::SocketAddr,
    /// The embedded MQTT broker's port (not 1883, which a system Mosquitto may hold).
    #[arg(long, default_value_t = 18830)]
    pub mqtt_port: u16,
    /// Run wall time this many times faster (720: a night in a minute).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Start the shared clock here: 2026-12-24T17:00 (Korea time) or with an offset.
    #[arg(long)]
    pub start: Option<String>,
    /// The admin's password (default: generated at the first start and kept in the
    /// data directory).
    #[arg(long, env = "NIGHTSCAPE_ADMIN_PASSWORD")]
    pub admin_password: Option<String>,
}

/// Parses `--start`: an instant with offset, or a civil time taken in Asia/Seoul (the
/// seed city's zone).
pub fn parse_start(text: &str) -> Result<i64> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let dt: jiff::civil::DateTime = text.parse().with_context(|| {
        format!(
            "--start `{text}`: write 2026-12-24T17:00 (Korea time) or 2026-12-24T17:00:00+09:00"
        )
    })?;
    let tz = jiff::tz::TimeZone::get("Asia/Seoul").context("the time zone database")?;
    Ok(tz
        .to_ambiguous_timestamp(dt)
        .compatible()
        .with_context(|| format!("--start `{text}`"))?
        .as_millisecond())
}

/// The embedded broker's log segments (see `max_segment_size` below).
const SEGMENT: usize = 32 * 1024;

fn embedded_broker(port: u16, gateways: usize) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // rumqttd logs a taken port and carries on; find out first and say what to change.
    TcpListener::bind(addr).with_context(|| {
        format!("the embedded MQTT broker cannot listen on {addr} (taken?); choose another port with --mqtt-port")
    })?;
    let server = rumqttd::ServerSettings {
        name: "loopback".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: nightscape_server::mqtt::MAX_PACKET + 1024,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: 200,
            // The router keeps what was published on each subscription's log, up to this many
            // segments of this size, and drops the oldest after: a subscriber further behind
            // than that skips ahead. Every subscriber here is in this process and keeps up;
            // the bound holds a city-wide order's answers twice over (an ack and a state of
            // about 1 KiB from every gateway), and at least 128 KiB (over a minute of `up`).
            // A kept message also keeps alive the whole read buffer it arrived in, so the
            // logs cost far more than their bytes: with 1 MiB × 2 the soak's resident memory
            // grew 8 MiB an hour (the quiet subscriptions' logs take hours to fill); with
            // 32 KiB × 4 it levels off within the first half hour.
            max_segment_size: SEGMENT,
            max_segment_count: (4 * gateways * 1024).div_ceil(SEGMENT).max(4),
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: rumqttd::Strategy::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..rumqttd::Config::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("the embedded MQTT broker stopped: {e}");
            }
        })
        .context("starting the embedded broker")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if std::time::Instant::now() > deadline {
            bail!("the embedded MQTT broker did not start listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The admin password of this data directory: given, kept from the first start, or new.
fn admin_password(dir: &Path, given: Option<&str>) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = dir.join("admin-password");
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    if let Ok(text) = std::fs::read_to_string(&file) {
        return Ok(text.trim().to_owned());
    }
    let password = nightscape_server::auth::generated_password();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("writing {}", file.display()))?;
    std::io::Write::write_all(&mut f, password.as_bytes())?;
    Ok(password)
}

pub fn run(options: Options) -> Result<()> {
    // The embedded broker logs ordinary disconnects as errors; RUST_LOG=info,rumqttd=warn
    // shows them.
    crate::process::init_logging_with("info,rumqttd=off,rumqttc=warn");
    if options.time_scale.is_nan() || !(0.001..=100_000.0).contains(&options.time_scale) {
        bail!(
            "--time-scale {}: give a factor from 0.001 to 100000",
            options.time_scale
        );
    }
    let start = options.start.as_deref().map(parse_start).transpose()?;
    for addr in [options.http, options.sim_http] {
        if !addr.ip().is_loopback() {
            bail!(
                "{addr}: `up` serves on loopback only (127.0.0.1); run the parts separately to serve elsewhere"
            );
        }
    }
    let (sources, checked) = crate::library::load(&options.library)?;
    if checked.error_count() > 0 {
        for d in &checked.diagnostics {
            eprintln!("{d}");
        }
        bail!("the library has errors; fix them (nightscape scene check) and run up again");
    }
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("creating {}", options.data_dir.display()))?;
    let password = admin_password(&options.data_dir, options.admin_password.as_deref())?;
    let gateways = checked
        .library
        .sites
        .values()
        .map(|s| s.gateways.len())
        .sum();
    embedded_broker(options.mqtt_port, gateways)?;
    let clock: Arc<dyn Clock> = if options.time_scale == 1.0 && start.is_none() {
        Arc::new(SystemClock::new())
    } else {
        Arc::new(ScaledClock::new(
            start.unwrap_or_else(|| SystemClock::new().now_ms()),
            options.time_scale,
        ))
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(serve(options, sources, checked.library, clock, password))
}

async fn serve(
    options: Options,
    sources: Vec<nightscape_core::show::SourceFile>,
    library: nightscape_core::ShowLibrary,
    clock: Arc<dyn Clock>,
    password: String,
) -> Result<()> {
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let data = &options.data_dir;

    let sim = firmware_sim::start(
        firmware_sim::SimConfig {
            library: library.clone(),
            sites: Vec::new(),
            bind: firmware_sim::Bind::Ports,
            broker: Some(firmware_sim::Broker {
                host: "127.0.0.1".into(),
                port: options.mqtt_port,
                topic_prefix: String::new(),
            }),
            multicast: false,
        },
        clock.clone(),
        shutdown.clone(),
    )
    .await?;
    sim.endpoints.check_loopback()?;
    let endpoints_file = data.join("sim-endpoints.toml");
    std::fs::write(&endpoints_file, sim.endpoints.to_toml())
        .with_context(|| format!("writing {}", endpoints_file.display()))?;
    let sim_listener = tokio::net::TcpListener::bind(options.sim_http)
        .await
        .with_context(|| {
            format!(
                "the simulator's page cannot listen on {} (choose another with --sim-http)",
                options.sim_http
            )
        })?;
    let sim_addr = sim_listener.local_addr()?;
    let sim_app = firmware_sim::api::router(sim.state.clone());
    let stop = shutdown.clone();
    tracker.spawn(async move {
        let _ = axum::serve(sim_listener, sim_app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });

    let server = nightscape_server::start(
        nightscape_server::Config {
            listen: options.http,
            admin_password: Some(password.clone()),
            seed_library: Some(sources),
            // Gateways report in real time; on a scaled clock their messages are that much
            // further apart, and would otherwise all look like gaps in the compliance report.
            reporting_gap: nightscape_server::intake::REPORTING_GAP
                .mul_f64(options.time_scale.max(1.0)),
            ..nightscape_server::Config::local(
                data.join("server"),
                Some(BrokerConfig::local(
                    options.mqtt_port,
                    "",
                    "nightscape-up-server".into(),
                )),
            )
        },
        clock.clone(),
        shutdown.clone(),
        &tracker,
    )
    .await
    .context("choose another port with --http")?;

    let mut gateways = Vec::new();
    for site in library.sites.values() {
        for gw in &site.gateways {
            let config = GatewayConfig {
                trusted_keys: vec![server.public_key_file.clone()],
                endpoints: Some(endpoints_file.clone()),
                ..GatewayConfig::local(
                    gw.id.clone(),
                    data.join("gateways").join(gw.id.as_str()),
                    options.mqtt_port,
                    "",
                )
            };
            let setup = crate::gateway::setup(config, None)?;
            let handle = nightscape_gateway::runtime::start(setup, clock.clone(), shutdown.clone())
                .await
                .with_context(|| format!("starting gateway {}", gw.id))?;
            gateways.push(handle);
        }
    }
    // Before the banner: a SIGTERM right after must stop it cleanly.
    let signal = crate::process::wait_for_signal();
    let controllers: usize = sim.state.sites.values().map(|s| s.controllers.len()).sum();
    println!();
    println!(
        "Nightscape is up: {} sites, {} gateways, {controllers} simulated controllers",
        library.sites.len(),
        gateways.len()
    );
    println!(
        "  dashboard          http://{}/  (API: /api, OpenAPI: /api/openapi.json)",
        server.addr
    );
    println!("  simulator preview  http://{sim_addr}/");
    println!("  admin login        admin / {password}");
    println!("  MQTT broker        127.0.0.1:{}", options.mqtt_port);
    println!("  data               {}", data.display());
    if options.time_scale != 1.0 || options.start.is_some() {
        println!(
            "  clock              ×{} from {}",
            options.time_scale,
            jiff::Timestamp::from_millisecond(clock.now_ms())
                .map(|t| t.to_string())
                .unwrap_or_default()
        );
    }
    println!("Stop with ctrl-c.");
    signal.await;
    eprintln!("stopping");
    shutdown.cancel();
    for g in gateways {
        let _ = tokio::time::timeout(Duration::from_secs(5), g.done).await;
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    sim.tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), sim.tracker.wait()).await;
    server.state.store.close().await;
    Ok(())
}
