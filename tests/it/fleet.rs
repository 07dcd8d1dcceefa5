//! The scale proof: `NIGHTSCAPE_FLEET` gateways (the suite's default is 200; the
//! documented run is 10,000) against one `nightscape server` on PostgreSQL and a private
//! Mosquitto with its connection and file limits raised. Each gateway is the gateway
//! library's own runtime — its MQTT agent, data directory, executor, acks, state and
//! telemetry — without drivers (`Setup::drive` off: nothing is sent, frames are paced by
//! the runtime's timer), thousands in this one process. The library is the seed city's
//! shared files with one small generated site per gateway.
//!
//! Measured: the time until every gateway holds a verified plan; a city-wide blackout from
//! the API until each gateway plays it (p50, p99, max) and until the server has every
//! ack; every document published again after a server restart; the blackout lifted the
//! same way; the server's CPU time and resident memory; the database's size.
// Helpers outside #[test] functions too: a failed call is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nightscape_core::clock::Clock;
use nightscape_gateway::config::Config;
use nightscape_gateway::runtime::{Handle, Setup, Status, start};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::system::{
    Reaped, body_of, drop_pg, fresh_pg, http, login_as, scratch, spawn_server_with,
};

const PASSWORD: &str = "fleet-test-password";

/// The seed city's shared files and `n` generated sites, one gateway each.
fn write_library(dir: &Path, n: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenes");
    std::fs::create_dir_all(dir).unwrap();
    for shared in ["zones.toml", "calendars", "profiles"] {
        let from = root.join(shared);
        if from.is_dir() {
            std::fs::create_dir_all(dir.join(shared)).unwrap();
            for e in std::fs::read_dir(&from).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), dir.join(shared).join(e.file_name())).unwrap();
            }
        } else {
            std::fs::copy(&from, dir.join(shared)).unwrap();
        }
    }
    for i in 0..n {
        let id = site_id(i);
        let site = dir.join("sites").join(&id);
        std::fs::create_dir_all(site.join("scenes")).unwrap();
        std::fs::write(
            site.join("site.toml"),
            format!(
                r#"name = {{ ko = "시험 현장 {i}", en = "Fleet site {i}" }}
kind = "road-structure"
location = {{ lat = {:.4}, lon = {:.4} }}
time_zone = "Asia/Seoul"
zone = 3

[limits]
max_output_pct = 80
saturation_max = 0.95
max_flash_hz = 0.2

[[gateways]]
id = "{id}-gw"
name = {{ ko = "관리함", en = "cabinet" }}

[[controllers]]
id = "{id}-sacn"
gateway = "{id}-gw"
name = "pier controller"
sacn = {{ universe = 1, universes = 1, unicast = "10.200.0.1" }}

[[fixtures]]
id = "pier-1"
type = "rgbw"
controller = "{id}-sacn"
universe = 1
address = 1
at = [0.0, 0.0]
power_w = 90.0
luminance_cd_m2 = 50.0
white_k = [4000.0, 4000.0]

[[groups]]
id = "piers"
role = "accent"
fixtures = ["pier-1"]
"#,
                36.0 + (i % 100) as f64 * 0.002,
                127.0 + (i / 100) as f64 * 0.002,
            ),
        )
        .unwrap();
        std::fs::write(
            site.join("scenes").join(format!("{id}-warm.toml")),
            "name = { ko = \"따뜻한 빛\", en = \"Warm\" }\nfade_ms = 5000\n\n[[layers]]\ngroup = \"piers\"\neffect = \"kelvin\"\nkelvin = 3000\nbrightness_pct = 60\n",
        )
        .unwrap();
        std::fs::write(
            site.join("schedule.toml"),
            format!(
                "[[rules]]\nname = \"evening\"\nscene = \"{id}-warm\"\nstart = \"sunset\"\nend = \"22:00\"\npriority = 10\n"
            ),
        )
        .unwrap();
    }
}

fn site_id(i: usize) -> String {
    format!("fleet-{i:05}")
}

/// The server's CPU seconds (user and system) and resident memory (now, peak) in MiB.
fn server_use(pid: u32) -> (f64, f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime 13th.
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (cpu, kib("VmRSS:"), kib("VmHWM:"))
}

/// Waits until `ok` holds for every gateway; returns when each first did (from `since`).
async fn each_until(
    statuses: &[watch::Receiver<Status>],
    since: Instant,
    within: Duration,
    ok: impl Fn(&Status) -> bool + Clone + Send + Sync + 'static,
) -> Vec<Duration> {
    let mut tasks = tokio::task::JoinSet::new();
    for s in statuses {
        let mut s = s.clone();
        let ok = ok.clone();
        tasks.spawn(async move {
            tokio::time::timeout(within, s.wait_for(|v| ok(v)))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|_| since.elapsed())
        });
    }
    let mut times = Vec::new();
    while let Some(t) = tasks.join_next().await {
        times.push(t.unwrap().unwrap_or(Duration::MAX));
    }
    times.sort();
    times
}

/// The `p` quantile of sorted `times`.
fn quantile(times: &[Duration], p: f64) -> Duration {
    times[((times.len() - 1) as f64 * p).round() as usize]
}

fn spread(times: &[Duration]) -> String {
    let at = |p: f64| quantile(times, p);
    format!(
        "p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        at(0.5).as_secs_f64(),
        at(0.99).as_secs_f64(),
        at(1.0).as_secs_f64()
    )
}

/// Polls the server's `/metrics` until `kind` documents published reach `want`.
async fn published(addr: &str, kind: &str, want: u64, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < within {
        if let Ok((200, reply)) = crate::system::try_http(addr, "GET", "/metrics", &[], "").await {
            let key = format!("nightscape_documents_published_total{{kind=\"{kind}\"}} ");
            let n = reply
                .lines()
                .find_map(|l| l.strip_prefix(&key))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if n >= want {
                return Some(t.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Polls `/api/gateways` until every gateway's documents are acknowledged.
async fn all_acked(addr: &str, session: &[(&'static str, String)], n: usize) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(120) {
        let (_, reply) = http(addr, "GET", "/api/gateways", session, "").await;
        let list = body_of(&reply).as_array().cloned().unwrap_or_default();
        if list.len() == n && list.iter().all(|g| g["in_sync"] == true) {
            return true;
        }
        if t.elapsed() > Duration::from_secs(115) {
            let behind: Vec<_> = list
                .iter()
                .filter(|g| g["in_sync"] != true)
                .take(3)
                .collect();
            eprintln!("{} listed, behind: {behind:?}", list.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_gateways_on_one_server() {
    let n: usize = std::env::var("NIGHTSCAPE_FLEET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    // Four descriptors per gateway here (its broker socket, and the sieve's listener and
    // the two ends of its Unix connection) and two at the broker: raise the file limits (root may
    // go past the hard limit; anyone else up to it).
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let want = (4 * n as u64 + 1024).max(4096);
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if setrlimit(Resource::RLIMIT_NOFILE, want, want.max(hard)).is_err() {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }

    let dir = scratch("fleet");
    let library = dir.join("library");
    write_library(&library, n);
    let broker = crate::mosquitto::start(
        &dir,
        "allow_anonymous true\nmax_connections -1\nmax_queued_messages 100000\nmax_inflight_messages 0\nset_tcp_nodelay true\n",
    );
    let port = broker.port;
    let (pg_db, pg_url) = fresh_pg("fleet").await;
    let prefix = format!("fleet-{}/", std::process::id());
    let args: Vec<std::ffi::OsString> = vec![
        "--broker".into(),
        format!("127.0.0.1:{port}").into(),
        "--admin-password".into(),
        PASSWORD.into(),
        "--topic-prefix".into(),
        prefix.clone().into(),
        "--database-url".into(),
        pg_url.clone().into(),
        "--data-dir".into(),
        dir.join("server").into(),
        "--library".into(),
        library.clone().into(),
    ];
    let started = Instant::now();
    let (server, addr) = spawn_server_with(&args, Some(&dir.join("server.log")));
    let mut server = Reaped(server);
    let serving = started.elapsed();
    let session = login_as(&addr, PASSWORD).await;
    let key_text = std::fs::read_to_string(dir.join("server/signing.pub")).unwrap();
    let key = nightscape_core::plan::parse_public_key(&key_text).unwrap();

    // The gateways, their data directories in memory (one process cannot stand for ten
    // thousand boxes' disks).
    let data = std::path::PathBuf::from("/dev/shm")
        .join(format!("nightscape-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let clock: Arc<dyn Clock> = Arc::new(nightscape::clock::SystemClock::new());
    let shutdown = CancellationToken::new();
    let mut handles: Vec<Handle> = Vec::with_capacity(n);
    let t_gateways = Instant::now();
    for i in 0..n {
        let gw = format!("{}-gw", site_id(i));
        let mut config = Config::local(gw.parse().unwrap(), data.join(&gw), port, &prefix);
        config.frame_rate_hz = 1;
        let setup = Setup {
            config,
            trusted: vec![key],
            endpoints: None,
            password: None,
            ca: None,
            connect: true,
            plan: None,
            art_poll_every: Duration::from_secs(3600),
            drive: false,
        };
        handles.push(start(setup, clock.clone(), shutdown.clone()).await.unwrap());
    }
    let statuses: Vec<_> = handles.iter().map(|h| h.status.clone()).collect();
    let ready = each_until(&statuses, t_gateways, Duration::from_secs(600), |s| {
        s.connected && s.plan_version.is_some()
    })
    .await;
    assert!(
        ready.last().is_some_and(|t| *t < Duration::MAX),
        "not every gateway got its plan"
    );
    assert!(
        all_acked(&addr, &session, n).await,
        "the server has not every plan's ack"
    );
    let (cpu_ready, rss_ready, _) = server_use(server.0.id());

    // A city-wide blackout from the API.
    let t = Instant::now();
    let (status, reply) = http(
        &addr,
        "POST",
        "/api/overrides",
        &session,
        r#"{"scope": {"kind": "city"}, "kind": "blackout", "reason": "scale proof"}"#,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let blackout_id = body_of(&reply)["id"].as_str().unwrap().to_owned();
    let dark = each_until(&statuses, t, Duration::from_secs(120), |s| s.blackout).await;
    assert!(
        all_acked(&addr, &session, n).await,
        "blackout not acknowledged by all"
    );
    let dark_acked = t.elapsed();
    let (cpu_dark, _, _) = server_use(server.0.id());

    // The server restarts: every document is published again on its new connection. Every
    // status change of every gateway is watched through it, so one that lights and goes
    // dark again in between is seen, not only the state at the end.
    let watching = CancellationToken::new();
    let mut watchers = tokio::task::JoinSet::new();
    for status in &statuses {
        let mut status = status.clone();
        let watching = watching.clone();
        // Whether the gateway showed anything but the blackout while watched.
        watchers.spawn(async move {
            let mut lit = !status.borrow_and_update().blackout;
            loop {
                tokio::select! {
                    () = watching.cancelled() => break,
                    changed = status.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        lit |= !status.borrow_and_update().blackout;
                    }
                }
            }
            lit
        });
    }
    let _ = server.0.kill();
    let _ = server.0.wait();
    let t = Instant::now();
    let (s2, addr2) = spawn_server_with(&args, Some(&dir.join("server.log")));
    server = Reaped(s2);
    let (republished_plans, republished_all) = tokio::join!(
        published(&addr2, "plan", n as u64, Duration::from_secs(300)),
        published(&addr2, "overrides", n as u64, Duration::from_secs(300))
    );
    let session = login_as(&addr2, PASSWORD).await;
    assert!(
        all_acked(&addr2, &session, n).await,
        "not all in sync after the restart"
    );
    let resynced = t.elapsed();
    watching.cancel();
    let mut lit_meanwhile = 0;
    while let Some(lit) = watchers.join_next().await {
        lit_meanwhile += usize::from(lit.unwrap());
    }
    let still_dark = statuses.iter().filter(|s| s.borrow().blackout).count();

    // The blackout lifted the same way.
    let t = Instant::now();
    let (status, reply) = http(
        &addr2,
        "DELETE",
        &format!("/api/overrides/{blackout_id}"),
        &session,
        "",
    )
    .await;
    assert!(status == 200 || status == 204, "{reply}");
    let lifted = each_until(&statuses, t, Duration::from_secs(120), |s| !s.blackout).await;
    assert!(
        all_acked(&addr2, &session, n).await,
        "release not acknowledged by all"
    );
    let lifted_acked = t.elapsed();
    let (_, rss_end, hwm_end) = server_use(server.0.id());

    let db_mib = {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&pg_url).await.unwrap();
        let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&mut c)
            .await
            .unwrap();
        bytes as f64 / (1 << 20) as f64
    };
    let gateway_rss = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0;

    println!("{n} gateways on one server (PostgreSQL, a private Mosquitto):");
    println!(
        "  server up with the library            {:.1} s",
        serving.as_secs_f64()
    );
    println!(
        "  every gateway holding a verified plan {} (from the first gateway's start)",
        spread(&ready)
    );
    println!(
        "  city-wide blackout played             {}; every ack at the server {:.2} s",
        spread(&dark),
        dark_acked.as_secs_f64()
    );
    println!(
        "  server restart: overrides republished {:.1} s, plans {:.1} s, all in sync {:.1} s; {still_dark} of {n} dark at the end, {lit_meanwhile} lit at any moment in between",
        republished_all.map_or(f64::NAN, |d| d.as_secs_f64()),
        republished_plans.map_or(f64::NAN, |d| d.as_secs_f64()),
        resynced.as_secs_f64()
    );
    println!(
        "  blackout lifted                       {}; every ack at the server {:.2} s",
        spread(&lifted),
        lifted_acked.as_secs_f64()
    );
    println!(
        "  server CPU: {cpu_ready:.1} s to bring the fleet up, {:.1} s for the blackout; resident memory {rss_ready:.0} MiB with the fleet up, {rss_end:.0} MiB after the restart (peak {hwm_end:.0} MiB); this process with the {n} gateways: {gateway_rss:.0} MiB",
        cpu_dark - cpu_ready,
    );
    println!("  database size                         {db_mib:.1} MiB");

    assert_eq!(still_dark, n, "a gateway lit up across the server restart");
    assert_eq!(
        lit_meanwhile, 0,
        "gateways lit at some moment of the server restart"
    );
    assert!(
        dark.last().is_some_and(|t| *t < Duration::MAX),
        "a gateway never went dark"
    );
    assert!(
        lifted.last().is_some_and(|t| *t < Duration::MAX),
        "a gateway stayed dark"
    );
    // Bounds with a margin over the documented run (10,000 gateways: blackout p99 4.0 s,
    // lifted p99 4.1 s, republished 2.4 s after the restart); the suite's 200 are far
    // inside them. A time-out alone (120–600 s) would let a tenfold regression pass.
    let republished = republished_all
        .zip(republished_plans)
        .map(|(o, p)| o.max(p))
        .expect("every plan and overrides document published again after the restart");
    assert!(
        republished <= Duration::from_secs(10),
        "republished {republished:?} after the restart"
    );
    let p99 = |times: &[Duration]| quantile(times, 0.99);
    assert!(
        p99(&dark) <= Duration::from_secs(12),
        "blackout p99 {:?}",
        p99(&dark)
    );
    assert!(
        p99(&lifted) <= Duration::from_secs(12),
        "lifted p99 {:?}",
        p99(&lifted)
    );

    shutdown.cancel();
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_secs(5), h.done).await;
    }
    drop(server);
    drop_pg(&pg_db).await;
    let _ = std::fs::remove_dir_all(&data);
}
