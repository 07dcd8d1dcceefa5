//! `nightscape up`: the whole system on loopback — an MQTT broker with the city's access
//! control ([`broker`]: a private Mosquitto, or the embedded rumqttd), and in one process the
//! server on SQLite, the simulator with every controller of the library, and one gateway per
//! gateway of the library, all on one wall clock that may run faster than real time
//! (`--time-scale`) from a chosen start (`--start`). Data lives in one directory, so a second
//! `up` resumes where the first stopped.

pub mod broker;

use std::collections::BTreeMap;
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
    /// The MQTT broker's port (not 1883, which a system Mosquitto may hold).
    #[arg(long, default_value_t = 18830)]
    pub mqtt_port: u16,
    /// The MQTT broker: a private Mosquitto when installed (each client only its own topics,
    /// as in production), else the embedded one (passwords only).
    #[arg(long, value_enum, default_value_t = broker::Choice::Auto)]
    pub broker: broker::Choice,
    /// A host name the simulator's page and API also answer to besides localhost and
    /// 127.0.0.1 (repeat for several).
    #[arg(long = "sim-allow-host")]
    pub sim_allow_hosts: Vec<String>,
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

/// The admin password of this data directory: given, kept from the first start, or new.
fn admin_password(dir: &Path, given: Option<&str>) -> Result<String> {
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    crate::secret::kept_or_new(&dir.join("admin-password"), || {
        Ok(nightscape_server::auth::generated_password())
    })
}

/// The server's client id on `up`'s broker.
const SERVER_CLIENT_ID: &str = "nightscape-up-server";

/// Every broker user's login: the passwords just written, and the client id each client of
/// `up` connects with, which the embedded broker holds it to.
fn logins(
    library: &nightscape_core::ShowLibrary,
    passwords: &BTreeMap<String, String>,
) -> BTreeMap<String, broker::Login> {
    use nightscape_server::broker_acl;
    let mut ids = BTreeMap::from([(
        broker_acl::SERVER_USER.to_owned(),
        SERVER_CLIENT_ID.to_owned(),
    )]);
    for site in library.sites.values() {
        for gw in &site.gateways {
            ids.insert(
                gw.id.to_string(),
                nightscape_gateway::agent::client_id("", &gw.id),
            );
        }
        for c in &site.controllers {
            // A logged-in simulated controller connects as its user (see `firmware_sim::dmx_mqtt`).
            let user = broker_acl::dmx_user(&c.id);
            ids.insert(user.clone(), user);
        }
    }
    passwords
        .iter()
        .filter_map(|(user, password)| {
            Some((
                user.clone(),
                broker::Login {
                    password: password.clone(),
                    client_id: ids.get(user)?.clone(),
                },
            ))
        })
        .collect()
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
    // The same users, passwords and topic rules as production, kept for the next start.
    let users = crate::mqtt_acl::write(
        &checked.library,
        &options.data_dir.join("broker"),
        "",
        false,
        None,
    )?;
    let broker = broker::start(
        options.broker,
        options.mqtt_port,
        &options.data_dir.join("broker"),
        logins(&checked.library, &users.passwords),
        gateways,
    )?;
    let clock: Arc<dyn Clock> = if options.time_scale == 1.0 && start.is_none() {
        Arc::new(SystemClock::new())
    } else {
        Arc::new(ScaledClock::new(
            start.unwrap_or_else(|| SystemClock::new().now_ms()),
            options.time_scale,
        ))
    };
    let sim_token = crate::secret::kept_or_new(&options.data_dir.join("sim-token"), || {
        crate::secret::random_hex(16)
    })?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let served = runtime.block_on(serve(Parts {
        options,
        sources,
        library: checked.library,
        clock,
        password,
        sim_token,
        users,
        broker: &broker,
    }));
    // After every client has gone, so the broker's last words are not their disconnects.
    broker.stop();
    served
}

/// What `serve` starts the system with.
struct Parts<'a> {
    options: Options,
    sources: Vec<nightscape_core::show::SourceFile>,
    library: nightscape_core::ShowLibrary,
    clock: Arc<dyn Clock>,
    password: String,
    sim_token: String,
    users: crate::mqtt_acl::Written,
    broker: &'a broker::Broker,
}

async fn serve(parts: Parts<'_>) -> Result<()> {
    let Parts {
        options,
        sources,
        library,
        clock,
        password,
        sim_token,
        users,
        broker,
    } = parts;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let data = &options.data_dir;
    let password_of = |user: &str| {
        users.passwords.get(user).cloned().with_context(|| {
            format!(
                "no broker password for `{user}` in {}",
                users.secrets.display()
            )
        })
    };
    let mut sim_logins = BTreeMap::new();
    for site in library.sites.values() {
        for c in &site.controllers {
            let user = nightscape_server::broker_acl::dmx_user(&c.id);
            if let Some(password) = users.passwords.get(&user) {
                sim_logins.insert(
                    c.id.clone(),
                    firmware_sim::Login {
                        username: user,
                        password: password.clone(),
                    },
                );
            }
        }
    }

    let sim = firmware_sim::start(
        firmware_sim::SimConfig {
            library: library.clone(),
            sites: Vec::new(),
            bind: firmware_sim::Bind::Ports,
            broker: Some(firmware_sim::Broker {
                logins: sim_logins,
                ..firmware_sim::Broker::anonymous("127.0.0.1", options.mqtt_port, "")
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
    let sim_app = firmware_sim::api::router(
        sim.state.clone(),
        firmware_sim::api::Access {
            hosts: options.sim_allow_hosts.clone(),
            token: sim_token.clone(),
        },
    );
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
                Some(BrokerConfig {
                    username: Some(nightscape_server::broker_acl::SERVER_USER.into()),
                    password: Some(password_of(nightscape_server::broker_acl::SERVER_USER)?),
                    ..BrokerConfig::local(options.mqtt_port, "", SERVER_CLIENT_ID.into())
                }),
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
            let mut config = GatewayConfig {
                trusted_keys: vec![server.public_key_file.clone()],
                endpoints: Some(endpoints_file.clone()),
                ..GatewayConfig::local(
                    gw.id.clone(),
                    data.join("gateways").join(gw.id.as_str()),
                    options.mqtt_port,
                    "",
                )
            };
            // Each gateway logs in as itself, with the password file `mqtt-acl` wrote.
            config.mqtt.username = Some(gw.id.to_string());
            config.mqtt.password_file = Some(users.secrets.join(gw.id.as_str()));
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
    println!("  simulator token    {sim_token}  (faults and scenarios: Authorization: Bearer …)");
    println!("  admin login        admin / {password}");
    println!("  MQTT broker        {}", broker.describe(&users.secrets));
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
