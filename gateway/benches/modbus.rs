//! 1,000 Modbus controllers (ns-led-v1, each its own TCP endpoint on the simulator) given
//! new levels 10 (then 40) times a second: first by a bare tokio-modbus loop per controller, then by
//! the gateway's drivers, against the same simulated controllers in the same run. Both send
//! what the core's profile codec plans (the changed registers, the profile's gap between
//! requests, a status/power/uptime read every 2 s), so the requests are the same; the
//! figure is how many of them the simulator applied per second.
//!
//! Run: `cargo bench -p nightscape-gateway --bench modbus` (loopback only).
// A benchmark stops at its first failure; there is nothing to recover.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use firmware_sim::{Bind, SimConfig};
use nightscape_core::clock::{Clock, VirtualClock};
use nightscape_core::codec::modbus::{self, Poll, Request};
use nightscape_core::model::Profile;
use nightscape_core::{ShowLibrary, SiteId, SourceFile, check};
use nightscape_gateway::modbus::{Health, Levels, Settings, run};
use tokio::sync::watch;
use tokio_modbus::client::{Reader, Writer};
use tokio_modbus::prelude::*;
use tokio_util::sync::CancellationToken;

#[path = "../../core/tests/it/common.rs"]
mod common;

const CONTROLLERS: usize = 1000;
const WARM_UP: Duration = Duration::from_secs(3);
const RUN: Duration = Duration::from_secs(10);
/// Channels each controller's fixture uses (80 RGB pixels).
const USED: usize = 240;

fn library() -> Vec<SourceFile> {
    let mut rest = String::new();
    for c in 0..CONTROLLERS {
        rest += &format!(
            "[[controllers]]\nid = \"m-{c}\"\ngateway = \"gw\"\nmodbus = {{ host = \"10.200.{}.{}\", unit = 1, profile = \"ns-led-v1\" }}\n[[fixtures]]\nid = \"f-{c}\"\ntype = \"pixel-strip\"\ncontroller = \"m-{c}\"\nchannel = 1\npixels = 80\nline = [[{c}.0, 0.0], [{c}.0, 8.0]]\npower_w = 40.0\n",
            c / 200,
            c % 200
        );
    }
    vec![
        common::zones(),
        SourceFile {
            path: "profiles/ns-led-v1.toml".into(),
            text: include_str!("../../scenes/profiles/ns-led-v1.toml").into(),
        },
        SourceFile {
            path: "sites/load/site.toml".into(),
            text: common::site_toml(
                "building",
                (36.2, 127.1, "Asia/Seoul"),
                3,
                "curfew = \"none\"",
                &rest,
            ),
        },
    ]
}

/// Controller `c`'s channels at step `k`: the fixture's channels all at one level that
/// changes every step.
fn channels(profile: &Profile, c: usize, k: u64, out: &mut Vec<u8>) {
    out.clear();
    out.resize(usize::from(profile.levels.channels), 0);
    let level = ((k + c as u64) % 255 + 1) as u8;
    out[..USED].fill(level);
}

async fn send(ctx: &mut tokio_modbus::client::Context, r: &Request) -> bool {
    let answer = match r {
        Request::WriteSingle { register, value } => {
            tokio::time::timeout(
                Duration::from_secs(1),
                ctx.write_single_register(register.get(), *value),
            )
            .await
        }
        Request::WriteMultiple { start, values } => {
            tokio::time::timeout(
                Duration::from_secs(1),
                ctx.write_multiple_registers(start.get(), values),
            )
            .await
        }
    };
    matches!(answer, Ok(Ok(Ok(()))))
}

/// One controller driven by a bare loop: tokio-modbus and the core's codec, nothing else.
async fn bare(
    rate_hz: u64,
    addr: SocketAddr,
    c: usize,
    profile: Arc<Profile>,
    stop: CancellationToken,
    updates: Arc<AtomicU64>,
) {
    let mut ctx = tcp::connect_slave(addr, Slave(1)).await.unwrap();
    let mut levels = Vec::new();
    let mut desired = Vec::new();
    channels(&profile, c, 0, &mut levels);
    modbus::level_registers_into(&profile, &levels, &mut desired);
    for r in modbus::start_up(&profile, None, &desired) {
        send(&mut ctx, &r).await;
    }
    let mut before = desired.clone();
    let poll = Poll::new(&profile, false);
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate_hz));
    let mut next_poll = tokio::time::Instant::now();
    let mut k = 0;
    while !stop.is_cancelled() {
        tick.tick().await;
        k += 1;
        channels(&profile, c, k, &mut levels);
        modbus::level_registers_into(&profile, &levels, &mut desired);
        for r in modbus::plan_writes(&profile, Some(&before), &desired) {
            send(&mut ctx, &r).await;
            tokio::time::sleep(profile.write.min_interval).await;
        }
        std::mem::swap(&mut before, &mut desired);
        updates.fetch_add(1, Ordering::Relaxed);
        if tokio::time::Instant::now() >= next_poll {
            next_poll += Duration::from_secs(2);
            for read in &poll.reads {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    ctx.read_input_registers(read.start.get(), read.count),
                )
                .await;
            }
        }
    }
}

fn applied(sim: &firmware_sim::Sim) -> u64 {
    sim.state
        .sites
        .values()
        .flat_map(|s| &s.controllers)
        .map(|c| c.counters.view().accepted)
        .sum()
}

/// Requests the simulator applied per second over `RUN`.
async fn measure(sim: &firmware_sim::Sim, what: &str) -> f64 {
    let a0 = applied(sim);
    tokio::time::sleep(RUN).await;
    let rate = (applied(sim) - a0) as f64 / RUN.as_secs_f64();
    println!("| {what} | {rate:.0} |");
    rate
}

fn main() {
    let sources = library();
    let checked = check(&sources);
    assert_eq!(checked.error_count(), 0, "{:?}", checked.diagnostics);
    let lib: ShowLibrary = checked.library;
    let site: SiteId = "load".parse().unwrap();
    let profile = Arc::new(lib.profiles[&"ns-led-v1".parse().unwrap()].clone());

    // The simulator on a runtime (and core) of its own.
    let sim_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim_stop = CancellationToken::new();
    let sim = sim_runtime
        .block_on(firmware_sim::start(
            SimConfig {
                library: lib.clone(),
                sites: vec![site.clone()],
                bind: Bind::Ports,
                broker: None,
                multicast: false,
            },
            Arc::new(VirtualClock::new(1_798_000_000_000)) as Arc<dyn Clock>,
            sim_stop.clone(),
        ))
        .unwrap();
    let addrs: Vec<(usize, SocketAddr)> = (0..CONTROLLERS)
        .map(|c| {
            (
                c,
                sim.endpoints
                    .get(&format!("m-{c}").parse().unwrap())
                    .unwrap(),
            )
        })
        .collect();
    // The clients, bare and gateway in turn, on one runtime thread.
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    for rate_hz in [10u64, 40] {
        println!(
            "{CONTROLLERS} controllers at {rate_hz} Hz ({} requests/s wanted, polls included):\n",
            CONTROLLERS as u64 * rate_hz
                + (CONTROLLERS * Poll::new(&profile, false).reads.len()) as u64 / 2
        );
        println!("| driven by | Modbus requests applied per second |");
        println!("|---|---:|");

        let bare_rate = clients.block_on(async {
            let stop = CancellationToken::new();
            let updates = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for &(c, addr) in &addrs {
                tasks.push(tokio::spawn(bare(
                    rate_hz,
                    addr,
                    c,
                    profile.clone(),
                    stop.clone(),
                    updates.clone(),
                )));
            }
            tokio::time::sleep(WARM_UP).await;
            let rate = measure(&sim, "bare tokio-modbus loop").await;
            stop.cancel();
            for t in tasks {
                let _ = t.await;
            }
            rate
        });

        let gateway_rate = clients.block_on(async {
            let stop = CancellationToken::new();
            let mut feeds = Vec::new();
            for &(c, addr) in &addrs {
                let (tx, rx) = watch::channel(Levels::default());
                let (health, _) = watch::channel(Health::default());
                let settings = Settings {
                    controller: format!("m-{c}").parse().unwrap(),
                    addr,
                    unit: 1,
                    profile: profile.clone(),
                    controller_fades: false,
                    deadline: Duration::from_secs(1),
                    poll_every: Duration::from_secs(2),
                };
                tokio::spawn(run(settings, rx, health, stop.child_token()));
                feeds.push((c, tx));
            }
            // The executor's side: new levels for every controller ten times a second.
            let feeder = {
                let stop = stop.clone();
                let profile = profile.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate_hz));
                    let mut buf = Vec::new();
                    let mut k = 0;
                    while !stop.is_cancelled() {
                        tick.tick().await;
                        k += 1;
                        for (c, tx) in &feeds {
                            channels(&profile, *c, k, &mut buf);
                            tx.send_modify(|l| l.channels.clone_from(&buf));
                        }
                    }
                })
            };
            tokio::time::sleep(WARM_UP).await;
            let rate = measure(&sim, "gateway drivers").await;
            stop.cancel();
            let _ = feeder.await;
            rate
        });
        println!(
            "\ngateway / bare: {:.3} (goal ≥ 0.9)",
            gateway_rate / bare_rate
        );
    }
    sim_stop.cancel();
}
