//! An operator's override through the API until the simulated fixtures change, beside a
//! bare MQTT publish → receive round trip on the same broker, in one run.
//!
//! `cargo bench --bench override_latency [-- N]` (default 200 of each). Starts a private
//! Mosquitto set as in production (`set_tcp_nodelay true`); everything else runs in this
//! process on loopback: the server (SQLite in a scratch directory), City Hall's gateway and
//! the simulator with City Hall's controllers.
//! The API is called over a real socket with an operator's bearer token; the time runs from
//! writing the request to the simulator decoding a changed frame. Overrides and releases
//! alternate; each override asks for a scene other than the one the schedule plays at that
//! moment, so every step changes what the site shows, whatever the hour the benchmark runs.
//! City Hall's scenes cut instead of fading and their moving effects stand still, so the
//! output stands still between steps (checked at every step).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mosquitto.rs"]
mod mosquitto;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nightscape_core::SiteId;
use nightscape_core::clock::Clock;
use nightscape_gateway::config::Config;
use nightscape_gateway::runtime::{self, Setup};
use nightscape_server::auth::{self, Role};
use nightscape_server::mqtt::BrokerConfig;
use rumqttc::{Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const SITE: &str = "nonsan-city-hall";
const GATEWAY: &str = "cityhall-gw";

/// A keep-alive HTTP/1.1 connection: one request at a time.
struct Http {
    reader: BufReader<tokio::io::ReadHalf<tokio::net::TcpStream>>,
    writer: tokio::io::WriteHalf<tokio::net::TcpStream>,
    token: String,
    /// The server's address, sent as `Host`: the server answers only to its own names.
    host: String,
}

impl Http {
    async fn connect(addr: std::net::SocketAddr, token: String) -> Http {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (r, w) = tokio::io::split(stream);
        Http {
            reader: BufReader::new(r),
            writer: w,
            token,
            host: addr.to_string(),
        }
    }

    async fn call(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.host,
            self.token,
            body.len()
        );
        self.writer.write_all(req.as_bytes()).await.unwrap();
        let mut status = String::new();
        self.reader.read_line(&mut status).await.unwrap();
        let code = status.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await.unwrap();
        (code, String::from_utf8_lossy(&body).into_owned())
    }
}

fn figures(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} |",
        samples.len(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(*samples.last().unwrap())
    );
}

async fn mqtt_round_trips(n: usize, port: u16, prefix: &str) -> Vec<Duration> {
    let client = |id: &str| {
        let o = MqttOptions::new(format!("{id}-{}", std::process::id()), "127.0.0.1", port);
        // As every Nightscape client connects: no Nagle delay.
        nightscape_gateway::agent::client_for(o, 100)
    };
    let (rx_client, mut rx_loop) = client("bench-rx");
    let (tx_client, mut tx_loop) = client("bench-tx");
    let topic = format!("{prefix}bench/round-trip");
    rx_client.subscribe(&topic, QoS::AtLeastOnce).await.unwrap();
    let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel();
    let subscribed = Arc::new(tokio::sync::Notify::new());
    let s = subscribed.clone();
    tokio::spawn(async move {
        loop {
            match rx_loop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => s.notify_one(),
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    let _ = got_tx.send(Instant::now());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::spawn(async move { while tx_loop.poll().await.is_ok() {} });
    subscribed.notified().await;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        tx_client
            .publish(&topic, QoS::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
        let t1 = got.recv().await.unwrap();
        out.push(t1 - t0);
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let prefix = format!("bench-override-{}/", std::process::id());
    let dir =
        std::env::temp_dir().join(format!("nightscape-bench-override-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Nagle's algorithm on the broker's side would hold a document behind an earlier small
    // packet for the client's delayed ACK (up to 40 ms): production brokers set this.
    let broker = mosquitto::start(&dir, "allow_anonymous true\nset_tcp_nodelay true\n");
    let port = broker.port;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = nightscape_server::files::read_dir(&root.join("scenes")).unwrap();
    // City Hall's scenes cut instead of fading (over 8 s, or 60 s late at night), and the
    // blue hour's wave along the roofline stands still, so the output stands still between
    // steps and the change the simulator sees is the answer to the request, not the next
    // frame of a fade or a wave. (That the first frame of a long fade shows a step is the
    // executor's own test.)
    for f in &mut sources {
        if f.path.starts_with("sites/nonsan-city-hall/scenes/") {
            let still: String = f
                .text
                .lines()
                .map(|l| {
                    if l.starts_with("fade_ms = ") {
                        "fade_ms = 0"
                    } else if l.starts_with("speed_mps = ") {
                        "speed_mps = 0.0"
                    } else {
                        l
                    }
                })
                .flat_map(|l| [l, "\n"])
                .collect();
            assert_ne!(
                still, f.text,
                "{}: the benchmark's scene has no fade",
                f.path
            );
            f.text = still;
        }
    }
    let checked = nightscape_core::show::check(&sources);
    assert!(
        checked.error_count() == 0,
        "the benchmark's library: {:?}",
        checked.diagnostics
    );
    let library = checked.library;
    // What the schedule plays at City Hall at a moment, to override it with something else.
    let day = nightscape::clock::SystemClock::new()
        .now_ms()
        .div_euclid(86_400_000);
    let evaluator = library
        .evaluator(
            &SITE.parse().unwrap(),
            Arc::new(nightscape_core::sun::Almanac::new(day - 2, day + 3)),
        )
        .unwrap();
    let scenes: Vec<String> = library
        .scenes_of(&SITE.parse().unwrap())
        .map(|s| s.id.to_string())
        .collect();
    assert!(scenes.len() >= 3, "City Hall has {scenes:?}");
    let site: SiteId = SITE.parse().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(nightscape::clock::SystemClock::new());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();

    let sim = firmware_sim::start(
        firmware_sim::SimConfig {
            library,
            sites: vec![site.clone()],
            bind: firmware_sim::Bind::Ports,
            broker: None,
            multicast: false,
        },
        clock.clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let server = nightscape_server::start(
        nightscape_server::Config {
            admin_password: Some("bench-admin-password".into()),
            seed_library: Some(sources),
            ..nightscape_server::Config::local(
                dir.join("server"),
                Some(BrokerConfig::local(
                    port,
                    &prefix,
                    format!("bench-server-{}", std::process::id()),
                )),
            )
        },
        clock.clone(),
        shutdown.clone(),
        &tracker,
    )
    .await
    .unwrap();
    let gateway = runtime::start(
        Setup {
            config: Config::local(GATEWAY.parse().unwrap(), dir.join("gateway"), port, &prefix),
            trusted: vec![server.public_key],
            endpoints: Some(sim.endpoints.clone()),
            password: None,
            ca: None,
            connect: true,
            plan: None,
            art_poll_every: Duration::from_secs(10),
            drive: true,
        },
        clock.clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let mut status = gateway.status.clone();
    while status.borrow().plan_version.is_none() {
        status.changed().await.unwrap();
    }
    let store = &server.state.store;
    let now = clock.now_ms();
    auth::put_user(
        store,
        "olivia",
        Some("operator-password"),
        Role::Operator,
        std::slice::from_ref(&site),
        "bench",
        now,
    )
    .await
    .unwrap();
    let operator = auth::issue_token(store, "olivia", "bench", now, now + 86_400_000)
        .await
        .unwrap();
    let admin = auth::issue_token(store, "admin", "bench", now, now + 86_400_000)
        .await
        .unwrap();
    // At any hour: an admin's curfew exception, so the overrides show even after the curfew.
    let mut http = Http::connect(server.addr, admin).await;
    let (code, body) = http
        .call(
            "POST",
            "/api/overrides",
            &serde_json::json!({"scope": {"kind": "sites", "sites": [SITE]}, "kind": "curfew-exception",
                "until_ms": now + 20 * 3600 * 1000, "reason": "benchmark"})
            .to_string(),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let mut http = Http::connect(server.addr, operator).await;
    let mut changes = sim.state.changes.clone();
    let shown = || sim.state.sites[&site].channels(sim.state.clock.as_ref());
    // Let the exception land.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut on = Vec::new();
    let mut off = Vec::new();
    let mut override_id = None;
    for i in 0..2 * n + 2 {
        let before = shown();
        let t0 = Instant::now();
        let (code, body) = match &override_id {
            None => {
                // Two scenes in turn, each time of those the schedule is not playing.
                let playing = evaluator
                    .cue_at(clock.now_ms())
                    .scene
                    .map(|s| s.to_string());
                let others: Vec<&String> = scenes
                    .iter()
                    .filter(|s| Some(*s) != playing.as_ref())
                    .collect();
                let scene = others[(i / 2) % 2];
                http.call(
                    "POST",
                    &format!("/api/sites/{SITE}/override"),
                    &serde_json::json!({"scene": scene, "minutes": 60, "reason": "benchmark"})
                        .to_string(),
                )
                .await
            }
            Some(id) => {
                http.call("DELETE", &format!("/api/overrides/{id}"), "")
                    .await
            }
        };
        assert!((200..300).contains(&code), "{code} {body}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            tokio::time::timeout_at(deadline, changes.changed())
                .await
                .unwrap_or_else(|_| {
                    panic!("step {i}: the simulated fixtures did not change within 10 s of {body}")
                })
                .unwrap();
            if shown() != before {
                break;
            }
        }
        let took = t0.elapsed();
        // The first two warm up the connections and caches.
        let warm = i >= 2;
        match override_id.take() {
            None => {
                override_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
                    .as_str()
                    .map(str::to_owned);
                if warm {
                    on.push(took);
                }
            }
            Some(_) => {
                if warm {
                    off.push(took);
                }
            }
        }
        // Let the last frames of this change land before the next is asked for; then the
        // output must stand still, or the next sample would end at a frame of its own.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let settled = shown();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            shown() == settled,
            "step {i}: the output moves by itself ({body}): the samples would measure frames"
        );
    }
    let round_trips = mqtt_round_trips(n, port, &prefix).await;

    println!("| path | samples | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    figures("MQTT publish → receive (QoS 1, Mosquitto)", round_trips);
    figures("override through the API → fixtures changed", on);
    figures("release through the API → fixtures changed", off);

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), gateway.done).await;
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    let _ = std::fs::remove_dir_all(&dir);
}
