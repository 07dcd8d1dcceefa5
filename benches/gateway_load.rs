//! The gateway as its own process, as on a site box: `nightscape gateway run` pinned to one
//! core (`taskset -c 0`) plays a wave on 256, 1,024 and 2,048 sACN universes at 44 frames a
//! second to a receiver on the other core, and a static look on 10 universes at 40 frames a
//! second (idle). Frame rate, frame-interval jitter and lateness are the gateway's own
//! telemetry (as operators see it, through the machine's Mosquitto); packets are counted by
//! the receiver; CPU and memory are read from /proc.
//!
//! Run: `cargo bench --bench gateway_load` (Mosquitto on 127.0.0.1:1883; loopback only);
//! `-- idle`, `-- sacn` or `-- sacn:2048` for one part.
// A benchmark stops at its first failure; there is nothing to recover.
#![allow(clippy::unwrap_used)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use nightscape_core::endpoints::EndpointMap;
use nightscape_core::plan::{self, OverrideEntry, OverrideEntryKind, OverridesDocument};
use nightscape_core::wire::{self, Telemetry, Topic};
use nightscape_core::{GatewayId, SourceFile, check};
use nightscape_gateway::store::{Kind, Store};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[path = "../core/tests/it/common.rs"]
mod common;
mod support;
use support::usage;

/// Telemetry windows skipped (start-up) and then measured, 10 s each.
const SKIP: usize = 1;
const MEASURE: usize = 2;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A gateway process playing `scene` of site `big` from its data directory.
struct Gateway {
    child: Child,
    prefix: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(
    dir: &Path,
    sources: &[SourceFile],
    scene: &str,
    frame_rate: u32,
    to: std::net::SocketAddr,
) -> Gateway {
    let checked = check(sources);
    assert_eq!(checked.error_count(), 0, "{:?}", checked.diagnostics);
    let lib = checked.library;
    let gw: GatewayId = "gw".parse().unwrap();
    let site = "big".parse().unwrap();
    let key = SigningKey::from_bytes(&[5; 32]);
    let data = dir.join("data");
    let store = Store::open(&data).unwrap();
    let now = now_ms();
    let p = plan::compile(sources, &lib, &site, &gw, 1, now - 60_000, now - 60_000).unwrap();
    store
        .save(
            Kind::Plan,
            &serde_json::to_vec(&plan::sign(p, &key)).unwrap(),
        )
        .unwrap();
    let doc = OverridesDocument {
        schema: plan::OVERRIDES_SCHEMA,
        gateway: gw.clone(),
        version: 1,
        issued_at_ms: now - 60_000,
        overrides: vec![OverrideEntry {
            id: "bench".into(),
            kind: OverrideEntryKind::Scene,
            scene: Some(scene.parse().unwrap()),
            brightness_pct: None,
            from_ms: now - 60_000,
            until_ms: Some(now + 3_600_000),
            by: "bench".into(),
            reason: "benchmark".into(),
        }],
    };
    store
        .save(
            Kind::Overrides,
            &serde_json::to_vec(&plan::sign(doc, &key)).unwrap(),
        )
        .unwrap();
    std::fs::write(
        dir.join("city.pub"),
        plan::public_key_text(&key.verifying_key()),
    )
    .unwrap();
    let mut endpoints = EndpointMap::default();
    for c in &lib.sites[&site].controllers {
        endpoints.controllers.insert(c.id.clone(), to);
    }
    std::fs::write(dir.join("endpoints.toml"), endpoints.to_toml()).unwrap();
    let prefix = format!("bench-{}-{scene}-{frame_rate}/", std::process::id());
    let config: PathBuf = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "gateway = \"gw\"\ndata_dir = \"{}\"\ntrusted_keys = [\"{}\"]\nframe_rate_hz = {frame_rate}\nloopback_only = true\nendpoints = \"{}\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = 1883\ntopic_prefix = \"{prefix}\"\n",
            data.display(),
            dir.join("city.pub").display(),
            dir.join("endpoints.toml").display()
        ),
    )
    .unwrap();
    let child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(env!("CARGO_BIN_EXE_nightscape"))
        .args(["gateway", "run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("taskset (util-linux) and the nightscape binary");
    Gateway { child, prefix }
}

/// A receiver that counts packets, on its own thread (on the other core).
struct Receiver {
    addr: std::net::SocketAddr,
    packets: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        // It drains the queue, then naps for 0.1 ms rather than waiting on the socket:
        // on loopback the sender's core would pay for waking a waiting receiver at every
        // packet, which a controller on the wire never costs it.
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        let packets = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (packets.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 700];
            while !s.load(Ordering::Relaxed) {
                match socket.recv(&mut buf) {
                    Ok(_) => {
                        p.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(Duration::from_micros(100)),
                }
            }
        });
        Receiver {
            addr,
            packets,
            stop,
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What one run measured.
struct Figures {
    frame_rate: f64,
    jitter_p99_ms: f64,
    max_interval_ms: f64,
    late: u64,
    frames: u64,
    packets_per_s: f64,
    cpu_pct: f64,
    rss_mib: f64,
}

async fn measure(g: &Gateway, receiver: &Receiver) -> Figures {
    let mut o = MqttOptions::new(
        format!("{}obs", g.prefix.replace('/', "")),
        "127.0.0.1",
        1883,
    );
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(o, 16);
    let gw: GatewayId = "gw".parse().unwrap();
    client
        .subscribe(
            wire::topic(&g.prefix, &gw, Topic::Telemetry),
            QoS::AtMostOnce,
        )
        .await
        .unwrap();
    let pid = g.child.id();
    let mut windows = Vec::new();
    let mut start = None;
    while windows.len() < SKIP + MEASURE {
        let event = tokio::time::timeout(Duration::from_secs(30), events.poll())
            .await
            .expect("telemetry every 10 s")
            .unwrap();
        if let Event::Incoming(Packet::Publish(p)) = event {
            let t: Telemetry = wire::decode(&p.payload).unwrap();
            windows.push(t);
            if windows.len() == SKIP {
                start = Some((
                    usage(pid),
                    receiver.packets.load(Ordering::Relaxed),
                    std::time::Instant::now(),
                ));
            }
        }
    }
    let ((cpu0, _), packets0, t0) = start.unwrap();
    let (cpu1, rss) = usage(pid);
    let elapsed = t0.elapsed().as_secs_f64();
    let measured = &windows[SKIP..];
    let _ = client.disconnect().await;
    Figures {
        frame_rate: measured.iter().map(|t| t.frame_rate_hz).sum::<f64>() / measured.len() as f64,
        jitter_p99_ms: measured.iter().map(|t| t.jitter_p99_ms).fold(0.0, f64::max),
        max_interval_ms: measured.iter().map(|t| t.max_frame_ms).fold(0.0, f64::max),
        late: measured.iter().map(|t| t.late_frames).sum(),
        frames: measured.iter().map(|t| t.frames).sum(),
        packets_per_s: (receiver.packets.load(Ordering::Relaxed) - packets0) as f64 / elapsed,
        cpu_pct: (cpu1 - cpu0) / elapsed * 100.0,
        rss_mib: rss,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    // The benchmark (its receiver above all) keeps to the other core.
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    let dir = std::env::temp_dir().join(format!("nightscape-gw-load-{}", std::process::id()));
    println!(
        "| load | frames/s | interval jitter p99 | longest interval | late frames | packets/s received | gateway CPU (one core) | RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut runs: Vec<(String, u16, &str, u32)> = Vec::new();
    if only.as_deref().is_none_or(|o| o == "idle") {
        runs.push((
            "10 universes, static, 40 Hz (idle)".into(),
            16,
            "big-static",
            40,
        ));
    }
    let (part, size) = match only
        .as_deref()
        .map(|o| o.split_once(':').unwrap_or((o, "")))
    {
        Some((p, n)) => (Some(p), n.parse::<u16>().ok()),
        None => (None, None),
    };
    if part.is_none_or(|p| p == "sacn") {
        for n in [256u16, 1024, 2048]
            .into_iter()
            .filter(|n| size.is_none_or(|s| s == *n))
        {
            runs.push((format!("{n} universes, wave, 44 Hz"), n, "big-wave", 44));
        }
    }
    for (name, universes, scene, rate) in runs {
        let run_dir = dir.join(format!("{universes}-{scene}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let mut sources = common::pixel_city(universes);
        if universes == 16 {
            // Ten universes: trim the city to its first ten (strips of 16 → one strip of 10).
            sources = ten_universes(sources);
        }
        let receiver = Receiver::start();
        let g = start_gateway(&run_dir, &sources, scene, rate, receiver.addr);
        let f = measure(&g, &receiver).await;
        println!(
            "| {name} | {:.1} ({} frames) | {:.2} ms | {:.1} ms | {} | {:.0} | {:.1} % | {:.1} MiB |",
            f.frame_rate,
            f.frames,
            f.jitter_p99_ms,
            f.max_interval_ms,
            f.late,
            f.packets_per_s,
            f.cpu_pct,
            f.rss_mib
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The 16-universe city cut to one strip of 10 universes (1,700 pixels).
fn ten_universes(mut sources: Vec<SourceFile>) -> Vec<SourceFile> {
    for f in &mut sources {
        if f.path == "sites/big/site.toml" {
            f.text = f
                .text
                .replace("universes = 16 }", "universes = 10 }")
                .replace("pixels = 2720", "pixels = 1700");
        }
    }
    sources
}
