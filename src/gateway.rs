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

/// Reads and checks the configuration; every problem is printed with its place.
pub fn read_config(path: &Path) -> Result<Config> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    config::parse(&text).map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("{}:{e}", path.display()))
            .collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })
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
    Ok(Setup {
        connect: plan.is_none(),
        config,
        trusted,
        endpoints,
        password,
        plan,
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
