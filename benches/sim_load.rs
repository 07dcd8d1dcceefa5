//! The simulator under load, in its own process as in production: 1,000 Modbus controllers
//! (ns-led-v1, each its own TCP endpoint) written by 1,000 tokio-modbus clients as fast as
//! they are answered, while 512 sACN universes arrive at 44 frames a second. Prints requests
//! and packets applied per second, and the simulator's CPU and memory.
//!
//! Run: `cargo bench --bench sim_load` (needs nothing but loopback).
// A benchmark stops at its first failure; there is nothing to recover.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nightscape_core::codec::sacn::{DataFields, DataTemplate};
use nightscape_core::endpoints::EndpointMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_modbus::prelude::*;

const MODBUS_SITES: usize = 10;
const MODBUS_PER_SITE: usize = 100;
const SACN_CONTROLLERS: u16 = 4;
const UNIVERSES_EACH: u16 = 128;
const RUN: Duration = Duration::from_secs(10);

mod support;
use support::usage;

fn header(name: &str) -> String {
    format!(
        "name = {{ ko = \"{name}\" }}\nkind = \"building\"\nlocation = {{ lat = 36.2, lon = 127.1 }}\ntime_zone = \"Asia/Seoul\"\nzone = 3\n[limits]\ncurfew = \"none\"\n[[gateways]]\nid = \"gw\"\n"
    )
}

/// A library of 10 sites of 100 Modbus controllers and one of 512 sACN universes.
fn write_library(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenes");
    std::fs::create_dir_all(dir.join("profiles")).unwrap();
    std::fs::copy(root.join("zones.toml"), dir.join("zones.toml")).unwrap();
    std::fs::copy(
        root.join("profiles/ns-led-v1.toml"),
        dir.join("profiles/ns-led-v1.toml"),
    )
    .unwrap();
    for s in 0..MODBUS_SITES {
        let mut text = header("부하");
        for c in 0..MODBUS_PER_SITE {
            text += &format!(
                "[[controllers]]\nid = \"m-{s}-{c}\"\ngateway = \"gw\"\nmodbus = {{ host = \"10.200.{s}.{c}\", unit = 1, profile = \"ns-led-v1\" }}\n[[fixtures]]\nid = \"f-{s}-{c}\"\ntype = \"pixel-strip\"\ncontroller = \"m-{s}-{c}\"\nchannel = 1\npixels = 80\nline = [[{c}.0, 0.0], [{c}.0, 8.0]]\npower_w = 40.0\n"
            );
        }
        let site = dir.join(format!("sites/load-{s}"));
        std::fs::create_dir_all(&site).unwrap();
        std::fs::write(site.join("site.toml"), text).unwrap();
    }
    let mut text = header("sACN");
    for c in 0..SACN_CONTROLLERS {
        let first = 1 + c * UNIVERSES_EACH;
        text += &format!(
            "[[controllers]]\nid = \"px-{c}\"\ngateway = \"gw\"\nsacn = {{ universe = {first}, universes = {UNIVERSES_EACH} }}\n"
        );
        for k in 0..UNIVERSES_EACH / 16 {
            text += &format!(
                "[[fixtures]]\nid = \"s-{c}-{k}\"\ntype = \"pixel-strip\"\ncontroller = \"px-{c}\"\nuniverse = {}\naddress = 1\npixels = 2720\nline = [[0.0, {k}.0], [800.0, {k}.0]]\npower_w = 500.0\n",
                first + k * 16
            );
        }
    }
    let site = dir.join("sites/load-sacn");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("site.toml"), text).unwrap();
}

async fn http_get(addr: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        // The simulator answers only to its own (loopback) host name.
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// `"sacn":{"accepted":N` → N.
fn accepted(stats: &str, protocol: &str) -> u64 {
    stats
        .split_once(&format!("\"{protocol}\":{{\"accepted\":"))
        .and_then(|(_, rest)| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("nightscape-sim-load-{}", std::process::id()));
    write_library(&dir.join("library"));
    let map_path = dir.join("endpoints.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nightscape"))
        .args(["sim", "--ports", "--http", "127.0.0.1:0", "--library"])
        .arg(dir.join("library"))
        .arg("--endpoints")
        .arg(&map_path)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let api = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if let Some((_, rest)) = line.split_once("state API at http://") {
                return rest.trim_end_matches("/api/sites").to_owned();
            }
        }
        panic!("the simulator did not start");
    })
    .await
    .unwrap();
    let map = EndpointMap::parse(&std::fs::read_to_string(&map_path).unwrap()).unwrap();
    let pid = child.id();
    let (_, idle_rss) = usage(pid);

    let deadline = Instant::now() + RUN;
    let requests = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (id, addr) in &map.controllers {
        if !id.as_str().starts_with("m-") {
            continue;
        }
        let (addr, requests) = (*addr, requests.clone());
        tasks.push(tokio::spawn(async move {
            let mut ctx = tcp::connect_slave(addr, Slave(1)).await.unwrap();
            ctx.write_multiple_registers(0, &[1, 255, 0])
                .await
                .unwrap()
                .unwrap();
            let mut level = 0u16;
            while Instant::now() < deadline {
                level = level.wrapping_add(0x0101);
                let values = [level; 120];
                ctx.write_multiple_registers(0x100, &values)
                    .await
                    .unwrap()
                    .unwrap();
                requests.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let sacn_targets: Vec<_> = (0..SACN_CONTROLLERS)
        .map(|c| map.controllers[&format!("px-{c}").parse().unwrap()])
        .collect();
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let template = DataTemplate::new([5; 16], "load", 100);
            let mut packet = Vec::with_capacity(640);
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / 44));
            let mut sequence = 0u8;
            while Instant::now() < deadline {
                tick.tick().await;
                sequence = sequence.wrapping_add(1);
                for u in 0..SACN_CONTROLLERS * UNIVERSES_EACH {
                    let to = sacn_targets[usize::from(u / UNIVERSES_EACH)];
                    let fields = DataFields {
                        sync_address: 0,
                        sequence,
                        options: 0,
                        universe: u + 1,
                        start_code: 0,
                    };
                    template.encode_into(&fields, &[sequence; 510], &mut packet);
                    if socket.send_to(&packet, to).await.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let (cpu0, _) = usage(pid);
    let start = Instant::now();
    let before = http_get(&api, "/api/stats").await;
    for t in tasks {
        t.await.unwrap();
    }
    sender.await.unwrap();
    let wall = start.elapsed().as_secs_f64();
    let after = http_get(&api, "/api/stats").await;
    let (cpu1, rss) = usage(pid);
    let modbus = accepted(&after, "modbus").saturating_sub(accepted(&before, "modbus"));
    let sacn = accepted(&after, "sacn").saturating_sub(accepted(&before, "sacn"));
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    println!("| what | figure |");
    println!("|---|---:|");
    println!(
        "| Modbus controllers (ns-led-v1, one TCP endpoint each) | {} |",
        MODBUS_SITES * MODBUS_PER_SITE
    );
    println!(
        "| sACN universes, at 44 frames/s | {} |",
        SACN_CONTROLLERS * UNIVERSES_EACH
    );
    println!(
        "| Modbus FC16 writes of 120 registers applied | {:.0} /s |",
        modbus as f64 / wall
    );
    println!(
        "| … completed by the clients | {:.0} /s |",
        requests.load(Ordering::Relaxed) as f64 / wall
    );
    println!(
        "| sACN packets sent | {:.0} /s |",
        sent.load(Ordering::Relaxed) as f64 / wall
    );
    println!("| sACN packets applied | {:.0} /s |", sacn as f64 / wall);
    println!(
        "| simulator CPU (of one core) | {:.0} % |",
        100.0 * (cpu1 - cpu0) / wall
    );
    println!("| simulator RSS idle → under load | {idle_rss:.0} → {rss:.0} MiB |");
}
