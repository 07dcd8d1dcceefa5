//! `nightscape gateway run`: the site gateway as its own process — configuration, keys and
//! endpoint map read and checked, the gateway's task tree started, systemd told it is
//! ready and alive, and the outputs put in their safe state on ctrl-c or SIGTERM.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nightscape_core::endpoints::EndpointMap;
use nightscape_core::plan;
use nightscape_gateway::config::{self, Config};
use nightscape_gateway::runtime::{self, Setup};
use tokio_util::sync::CancellationToken;

use crate::clock::SystemClock;
use crate::process::{Notifier, init_logging, wait_for_signal};

/// How long the outputs get to reach their safe state after a signal.
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// Reads and checks the configuration; every problem is printed with its place. Relative
/// paths in it are relative to the file's own directory (not to where the command runs).
pub fn read_config(path: &Path) -> Result<Config> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut config = config::parse(&text).map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("{}:{e}", path.display()))
            .collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    resolve(&mut config.data_dir);
    config.trusted_keys.iter_mut().for_each(resolve);
    config.endpoints.iter_mut().for_each(resolve);
    config.mqtt.password_file.iter_mut().for_each(resolve);
    config.mqtt.ca_file.iter_mut().for_each(resolve);
    Ok(config)
}

/// Everything the configuration points at, read and checked.
pub fn setup(config: Config, plan_file: Option<&Path>) -> Result<Setup> {
    let mut trusted = Vec::new();
    for path in &config.trusted_keys {
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading trusted key {}", path.display()))?;
        trusted.push(
            plan::parse_public_key(&text)
                .with_context(|| format!("{} is not a Nightscape public key", path.display()))?,
        );
    }
    if trusted.is_empty() {
        bail!("trusted_keys is empty: the gateway would refuse every plan");
    }
    let endpoints = match &config.endpoints {
        Some(path) => {
            let text =
                fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let map = EndpointMap::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if config.loopback_only {
                map.check_loopback()
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            }
            Some(map)
        }
        None => None,
    };
    let password = match &config.mqtt.password_file {
        Some(path) => Some(
            fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim_end()
                .to_string(),
        ),
        None => None,
    };
    let plan = plan_file
        .map(|p| fs::read(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let ca = match &config.mqtt.ca_file {
        Some(path) => {
            let pem = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                bail!(
                    "{}: no PEM certificate in it (mqtt.ca_file)",
                    path.display()
                );
            }
            Some(pem)
        }
        None => None,
    };
    Ok(Setup {
        art_poll_every: nightscape_gateway::runtime::ART_POLL_EVERY,
        drive: true,
        ca,
        connect: plan.is_none(),
        config,
        trusted,
        endpoints,
        password,
        plan,
    })
}

/// `gateway discover`: what answers among the plan's controllers.
pub fn discover(config_path: &Path, plan_file: Option<&Path>) -> Result<ExitCode> {
    let config = read_config(config_path)?;
    let setup = setup(config, plan_file)?;
    let (plan, lib) = match &setup.plan {
        Some(bytes) => {
            nightscape_gateway::store::open_any(&setup.trusted, bytes, &setup.config.gateway)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{}: {e}",
                        plan_file.map_or_else(String::new, |p| p.display().to_string())
                    )
                })?
        }
        None => {
            let store = nightscape_gateway::store::Store::open(&setup.config.data_dir)
                .with_context(|| format!("opening {}", setup.config.data_dir.display()))?;
            let loaded = store.load_plan(&setup.trusted, &setup.config.gateway);
            for p in &loaded.problems {
                eprintln!("{p}");
            }
            let (plan, lib, _) = loaded
                .plan
                .context("no plan in the data directory; give one with --plan")?;
            (plan, lib)
        }
    };
    let site = lib
        .sites
        .get(&plan.site)
        .with_context(|| format!("the plan has no site `{}`", plan.site))?;
    let to = nightscape_gateway::guard::destinations_via(
        site,
        &setup.config.gateway,
        setup.endpoints.as_ref(),
        setup.config.loopback_only,
        setup.config.multicast_interface,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let findings = runtime.block_on(nightscape_gateway::commission::discover(
        site,
        &lib.profiles,
        &to,
        setup.config.loopback_only,
        Duration::from_secs(2),
    ));
    print!("{}", nightscape_gateway::commission::report(&findings));
    Ok(if findings.iter().any(|f| f.silent()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `gateway identify` / `channel-test`: a command to the running gateway through the broker;
/// prints its ack.
pub fn command(config_path: &Path, action: nightscape_core::wire::Action) -> Result<ExitCode> {
    use nightscape_core::wire::{self, Ack, AckResult, Topic};
    use rumqttc::{Event, Packet, QoS};

    let config = read_config(config_path)?;
    let setup = setup(config, None)?;
    let mqtt = &setup.config.mqtt;
    let gateway = &setup.config.gateway;
    let mut nonce = [0u8; 6];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = format!("cli-{}", plan::hex(&nonce));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let command = wire::Command {
        schema: wire::SCHEMA,
        id: id.clone(),
        expires_ms: now + 30_000,
        action,
    };
    let mut options = nightscape_gateway::agent::broker_options(
        format!("nightscape-cli-{id}"),
        mqtt,
        setup.password.as_deref(),
        setup.ca.as_deref(),
    );
    options.set_keep_alive(Duration::from_secs(5));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let (client, mut events) = nightscape_gateway::agent::client_for(options, 16);
        let ack_topic = wire::topic(&mqtt.topic_prefix, gateway, Topic::Ack);
        client.subscribe(&ack_topic, QoS::AtLeastOnce).await?;
        let wait = async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        client
                            .publish(
                                wire::topic(&mqtt.topic_prefix, gateway, Topic::Cmd),
                                QoS::AtLeastOnce,
                                false,
                                wire::encode(&command),
                            )
                            .await?;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => {
                        if let Ok(ack) = wire::decode::<Ack>(&p.payload)
                            && ack.id == id
                        {
                            return Ok::<Ack, anyhow::Error>(ack);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => bail!("broker {}:{}: {e}", mqtt.host, mqtt.port),
                }
            }
        };
        let ack = tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no answer from gateway `{gateway}` in 10 s: is it running and connected to {}:{}?",
                    mqtt.host,
                    mqtt.port
                )
            })??;
        let _ = client.disconnect().await;
        let reason = ack.reason.map(|r| format!(": {r}")).unwrap_or_default();
        match ack.result {
            AckResult::Applied => {
                println!("gateway `{gateway}`: done{reason}");
                Ok(ExitCode::SUCCESS)
            }
            AckResult::Rejected | AckResult::Expired => {
                println!("gateway `{gateway}`: refused ({:?}){reason}", ack.result);
                Ok(ExitCode::FAILURE)
            }
        }
    })
}

/// Runs until ctrl-c or SIGTERM.
pub fn run(config_path: &Path, plan_file: Option<PathBuf>) -> Result<ExitCode> {
    init_logging();
    let config = read_config(config_path)?;
    let setup = setup(config, plan_file.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(setup))
}

async fn serve(setup: Setup) -> Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let gateway = setup.config.gateway.clone();
    let broker = setup
        .connect
        .then(|| format!("{}:{}", setup.config.mqtt.host, setup.config.mqtt.port));
    let handle = runtime::start(setup, Arc::new(SystemClock::new()), shutdown.clone()).await?;
    let status = handle.status.borrow().clone();
    eprintln!(
        "gateway `{gateway}`: {}; {}",
        match status.plan_version {
            Some(v) => format!(
                "playing plan version {v}, {} universes, {} Modbus controllers",
                status.universes,
                status.controllers.len()
            ),
            None => "no plan yet (dark)".into(),
        },
        match &broker {
            Some(b) => format!("broker {b}"),
            None => "no broker (--plan)".into(),
        }
    );
    let notifier = Notifier::from_env();
    notifier.notify("READY=1");
    let watchdog = {
        let mut status = handle.status.clone();
        let every = notifier.watchdog_every;
        async move {
            let Some(every) = every else {
                return std::future::pending::<()>().await;
            };
            let mut last = status.borrow().frames;
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                let frames = status.borrow_and_update().frames;
                // Alive means frames still go out (or there is no plan to play).
                if frames != last || status.borrow().plan_version.is_none() {
                    notifier.notify("WATCHDOG=1");
                }
                last = frames;
            }
        }
    };
    tokio::select! {
        () = wait_for_signal() => {}
        () = watchdog => {}
    }
    eprintln!("stopping: outputs to their safe state");
    Notifier::from_env().notify("STOPPING=1");
    shutdown.cancel();
    if tokio::time::timeout(STOP_WITHIN, handle.done)
        .await
        .is_err()
    {
        eprintln!("the outputs did not stop within {STOP_WITHIN:?}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
