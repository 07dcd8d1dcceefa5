//! The whole system: the server publishes through Mosquitto, a gateway plays, the simulator
//! shows it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use firmware_sim::{Bind, SimConfig};
use http_body_util::BodyExt;
use nightscape_core::SiteId;
use nightscape_core::clock::{Clock, VirtualClock};
use nightscape_gateway::config::Config;
use nightscape_gateway::runtime::{self, Setup};
use nightscape_server::mqtt::BrokerConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nightscape-system-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn at(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

async fn api(
    state: &Arc<nightscape_server::AppState>,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    let body = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let response = nightscape_server::api::router(state.clone())
        .oneshot(b.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_change_through_the_api_lights_the_simulated_site_at_its_time() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = nightscape_server::files::read_dir(&root.join("scenes")).unwrap();
    let library = nightscape_core::show::check(&sources).library;
    let (site, gw) = ("nonsan-city-hall", "cityhall-gw");
    let site_id: SiteId = site.parse().unwrap();
    let prefix = format!("system-{}/", std::process::id());
    let dir = scratch("schedule");
    // Noon: the site is dark by its schedule.
    let clock = Arc::new(VirtualClock::new(at("2026-11-26T12:00:00+09:00")));
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();

    let sim = firmware_sim::start(
        SimConfig {
            library,
            sites: vec![site_id.clone()],
            bind: Bind::Ports,
            broker: None,
            multicast: false,
        },
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let server = nightscape_server::start(
        nightscape_server::Config {
            admin_password: Some("system-test-admin".into()),
            seed_library: Some(sources),
            ..nightscape_server::Config::local(
                dir.join("server"),
                Some(BrokerConfig::local(
                    1883,
                    &prefix,
                    format!("system-server-{}", std::process::id()),
                )),
            )
        },
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
        &tracker,
    )
    .await
    .unwrap();
    let token = nightscape_server::auth::issue_token(
        &server.state.store,
        "admin",
        "test",
        clock.now_ms(),
        clock.now_ms() + 86_400_000,
    )
    .await
    .unwrap();
    let gateway = runtime::start(
        Setup {
            config: Config::local(gw.parse().unwrap(), dir.join("gateway"), 1883, &prefix),
            trusted: vec![server.public_key],
            endpoints: Some(sim.endpoints.clone()),
            password: None,
            ca: None,
            connect: true,
            plan: None,
            art_poll_every: Duration::from_secs(10),
            drive: true,
        },
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let status = gateway.status.clone();
    wait_until("the first plan", || status.borrow().plan_version.is_some()).await;
    let first = status.borrow().plan_version.unwrap();
    let shown = || sim.state.sites[&site_id].channels(sim.state.clock.as_ref());
    assert!(shown().iter().all(|&v| v == 0), "dark at noon");

    // Staff add a rule through the API: City Hall lit from 12:10 to 12:20 today.
    let path = format!("/api/library/files/sites/{site}/schedule.toml");
    let (code, body) = api(&server.state, "GET", &path, &token, None).await;
    assert_eq!(code, 200, "{body}");
    let text = body["text"].as_str().unwrap().to_owned()
        + "\n[[rules]]\nname = \"noon-test\"\nscene = \"cityhall-civic-white\"\nstart = \"12:10\"\nend = \"12:20\"\npriority = 90\n";
    let (code, body) = api(
        &server.state,
        "PUT",
        &path,
        &token,
        Some(serde_json::json!({"text": text})),
    )
    .await;
    assert_eq!(code, 200, "{body}");

    // The gateway takes the new plan and acks it; the server records the ack.
    wait_until("the new plan", || {
        status.borrow().plan_version.is_some_and(|v| v > first)
    })
    .await;
    let version = status.borrow().plan_version.unwrap();
    let store = server.state.store.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, gws) = api(&server.state, "GET", "/api/gateways", &token, None).await;
        let g = gws
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["gateway"] == gw)
            .cloned()
            .unwrap();
        if g["acked_plan"] == serde_json::json!(version) && g["in_sync"] == serde_json::json!(true)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never saw the ack: {g}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = store;

    // Still dark just before the rule starts; lit once it has.
    clock.set_wall(at("2026-11-26T12:09:55+09:00"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(shown().iter().all(|&v| v == 0), "dark before 12:10");
    // The clock runs on from 12:10 (the scene fades in).
    clock.set_wall(at("2026-11-26T12:10:00+09:00"));
    let mut lit_at = None;
    for s in 1..=120 {
        clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(40)).await;
        if shown().iter().any(|&v| v > 0) {
            lit_at = Some(s);
            break;
        }
    }
    let cue = status.borrow().cue.clone();
    assert!(
        lit_at.is_some_and(|s| s <= 5),
        "lit within seconds of 12:10: {lit_at:?}, cue {cue:?}"
    );
    let cue = cue.unwrap();
    assert_eq!(
        cue.scene.map(|s| s.to_string()).as_deref(),
        Some("cityhall-civic-white")
    );

    // An energy-saving night for the whole city: the site plays on at half its brightness.
    for _ in 0..100 {
        clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let full: u64 = shown().iter().map(|&v| u64::from(v)).sum();
    let until = clock.now_ms() + 3_600_000;
    let (code, body) = api(
        &server.state,
        "POST",
        "/api/overrides",
        &token,
        Some(
            serde_json::json!({"scope": {"kind": "city"}, "kind": "dim", "brightness_pct": 50.0,
            "until_ms": until, "reason": "energy-saving night"}),
        ),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // The cross-fade runs on the shared clock.
    let mut dimmed = false;
    for _ in 0..60 {
        clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(40)).await;
        let now: u64 = shown().iter().map(|&v| u64::from(v)).sum();
        // Half the light is about three quarters of the channel value (the fixtures' gamma).
        if now > 0 && now * 10 < full * 8 {
            dimmed = true;
            break;
        }
    }
    assert!(
        dimmed,
        "dimmed within a minute: {full} before, {:?}",
        *status.borrow()
    );
    assert_eq!(
        status
            .borrow()
            .cue
            .as_ref()
            .map(|c| c.brightness_pct.pct().round()),
        Some(50.0)
    );

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), gateway.done).await;
    tracker.close();
    tracker.wait().await;
}

/// One HTTP/1.1 request over a fresh connection: (status, headers and body as text).
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String) {
    try_http(addr, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path} at {addr}: {e}"))
}

/// One request; an error when the server is not there or goes away before answering.
pub async fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, out))
}

const PASSWORD: &str = "server-test-password";
const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";

/// `nightscape server` as a process on a free port; returns it and its address.
fn spawn_server(
    data: &std::path::Path,
    url: &str,
    prefix: &str,
    more: &[&str],
) -> (std::process::Child, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut args: Vec<std::ffi::OsString> = [
        "--broker",
        "127.0.0.1:1883",
        "--admin-password",
        PASSWORD,
        "--topic-prefix",
        prefix,
        "--database-url",
        url,
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.extend(["--data-dir".into(), data.into()]);
    args.extend(["--library".into(), root.join("scenes").into()]);
    args.extend(more.iter().map(Into::into));
    spawn_server_with(&args, None)
}

/// `nightscape server --listen 127.0.0.1:0` with `args`; returns it and its address once
/// it serves. Its log is kept in `log` (appended) when given.
pub fn spawn_server_with(
    args: &[std::ffi::OsString],
    log: Option<&std::path::Path>,
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nightscape"))
        .args(["server", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server printed where it serves")
            .unwrap();
        if let Some(rest) = line.split("serving on http://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    let mut log = log.map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
    });
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Some(f) = log.as_mut() {
                use std::io::Write;
                let _ = writeln!(f, "{line}");
            }
        }
    });
    (child, addr)
}

pub fn body_of(reply: &str) -> serde_json::Value {
    serde_json::from_str(&reply[reply.find("\r\n\r\n").unwrap() + 4..])
        .unwrap_or(serde_json::Value::Null)
}

/// Logs in as admin: the cookie and CSRF headers for changes.
async fn login(addr: &str) -> Vec<(&'static str, String)> {
    login_as(addr, PASSWORD).await
}

pub async fn login_as(addr: &str, password: &str) -> Vec<(&'static str, String)> {
    let body = format!(r#"{{"name": "admin", "password": "{password}"}}"#);
    let (status, reply) = http(addr, "POST", "/api/login", &[], &body).await;
    assert_eq!(status, 200, "{reply}");
    let cookie = reply
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    vec![
        ("cookie", cookie),
        (
            "x-csrf-token",
            body_of(&reply)["csrf"].as_str().unwrap().to_owned(),
        ),
    ]
}

pub async fn fresh_pg(name: &str) -> (String, String) {
    use sqlx::Connection;
    let db = format!("nstest_{name}_{}", std::process::id());
    let mut c = sqlx::PgConnection::connect(PG_ADMIN).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut c)
        .await
        .unwrap();
    (
        db.clone(),
        format!("postgres://postgres@127.0.0.1:5432/{db}"),
    )
}

pub async fn drop_pg(db: &str) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(PG_ADMIN).await.unwrap();
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut c)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_answered_2xx_survives_kill_9_on_sqlite_and_postgresql() {
    let (pg_db, pg_url) = fresh_pg("kill").await;
    let dir = scratch("kill");
    for url in [
        format!("sqlite://{}?mode=rwc", dir.join("kill.db").display()),
        pg_url,
    ] {
        let (child, addr) = spawn_server(
            &dir.join("data"),
            &url,
            &format!("kill-{}/", std::process::id()),
            &[],
        );
        let mut child = Reaped(child);
        let session = login(&addr).await;
        let (status, reply) = http(
            &addr,
            "POST",
            "/api/sites/nonsan-city-hall/blackout",
            &session,
            r#"{"reason": "kill -9 test", "confirm": true}"#,
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        child.0.kill().unwrap(); // SIGKILL, at once after the answer
        child.0.wait().unwrap();
        let id = body_of(&reply)["id"].as_str().unwrap().to_owned();
        let store = nightscape_server::store::Store::open(&url).await.unwrap();
        let kept = nightscape_server::overrides::get(&store, &id)
            .await
            .unwrap();
        assert!(kept.is_some(), "{url}: the answered blackout was lost");
        let audit = store.audit_log(5).await.unwrap();
        assert!(
            audit
                .iter()
                .any(|a| a.action == "override.create" && a.target == format!("override:{id}")),
            "{url}: its audit row too"
        );
        store.close().await;
    }
    drop_pg(&pg_db).await;
}

/// A child process killed when the test ends, also by a failed assertion.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every plan published under `prefix`: (gateway, version), in arrival order.
async fn plan_watcher(prefix: &str) -> tokio::sync::mpsc::UnboundedReceiver<(String, u64)> {
    let mut o = rumqttc::MqttOptions::new(
        format!("replica-watch-{}", std::process::id()),
        "127.0.0.1",
        1883,
    );
    o.set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 100);
    client
        .subscribe(
            format!("{prefix}nightscape/v1/gw/+/plan"),
            rumqttc::QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                    let d = &v["document"];
                    let _ = tx.send((
                        d["gateway"].as_str().unwrap().to_owned(),
                        d["version"].as_u64().unwrap(),
                    ));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    rx
}

async fn drain(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, u64)>,
    quiet: Duration,
) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(quiet, rx.recv()).await {
        out.push(m);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_publish_each_change_once_and_finish_what_a_killed_one_started() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = nightscape_server::files::read_dir(&root.join("scenes")).unwrap();
    let library = nightscape_core::show::check(&sources).library;
    let (pg_db, url) = fresh_pg("replicas").await;
    let prefix = format!("replicas-{}/", std::process::id());
    let dir = scratch("replicas");
    // Both replicas sign with the city's one key.
    let key =
        nightscape_core::plan::secret_key_text(&ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]));
    for r in ["a", "b"] {
        std::fs::create_dir_all(dir.join(r)).unwrap();
        std::fs::write(dir.join(r).join("signing.key"), &key).unwrap();
        std::fs::set_permissions(
            dir.join(r).join("signing.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }
    let mut plans = plan_watcher(&prefix).await;
    // Replica A takes its time between storing a document and sending it: a window to kill it in.
    let (a, addr_a) = spawn_server(
        &dir.join("a"),
        &url,
        &prefix,
        &["--publish-delay-ms", "1500"],
    );
    let (b, addr_b) = spawn_server(&dir.join("b"), &url, &prefix, &[]);
    let (mut a, mut b) = (Reaped(a), Reaped(b));
    // Each replica sends everything once when it connects; then quiet.
    drain(&mut plans, Duration::from_secs(4)).await;
    // A session made on one replica works on the other: they share only the database.
    let session = login(&addr_a).await;

    let mut changes = Vec::new();
    for (i, site) in library.sites.values().take(6).enumerate() {
        let scene = sources
            .iter()
            .find(|f| f.path.starts_with(&format!("sites/{}/scenes/", site.id)))
            .unwrap();
        let addr = if i % 2 == 0 { &addr_a } else { &addr_b };
        let body =
            serde_json::json!({"text": format!("{}\n# change {i}\n", scene.text)}).to_string();
        let (status, reply) = http(
            addr,
            "PUT",
            &format!("/api/library/files/{}", scene.path),
            &session,
            &body,
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        changes.push(site.gateways[0].id.to_string());
        let got = drain(&mut plans, Duration::from_secs(3)).await;
        assert_eq!(
            got.len(),
            1,
            "change {i} through replica {}: one plan published, got {got:?}",
            if i % 2 == 0 { "A" } else { "B" }
        );
        assert_eq!(got[0].0, changes[i]);
        changes[i] = format!("{}@{}", got[0].0, got[0].1);
    }
    let versions: Vec<u64> = changes
        .iter()
        .map(|c| c.split('@').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "versions increase across replicas: {changes:?}"
    );

    // Replica A is killed after storing a new plan and before sending it; B sends it. B is
    // paused meanwhile (SIGSTOP), so that A, not B, is the one that takes the round.
    let signal = |sig: &str, pid: u32| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP", b.0.id());
    let site = library.sites.values().nth(7).unwrap();
    let gw = site.gateways[0].id.to_string();
    let scene = sources
        .iter()
        .find(|f| f.path.starts_with(&format!("sites/{}/scenes/", site.id)))
        .unwrap();
    let body =
        serde_json::json!({"text": format!("{}\n# killed mid-publish\n", scene.text)}).to_string();
    let store = nightscape_server::store::Store::open(&url).await.unwrap();
    let before: i64 = sqlx::query_scalar("SELECT plan_version FROM gateways WHERE gateway = $1")
        .bind(&gw)
        .fetch_one(store.pool())
        .await
        .unwrap();
    let (status, reply) = http(
        &addr_a,
        "PUT",
        &format!("/api/library/files/{}", scene.path),
        &session,
        &body,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stored = loop {
        let (v, published): (i64, i64) =
            sqlx::query_as("SELECT plan_version, plan_published FROM gateways WHERE gateway = $1")
                .bind(&gw)
                .fetch_one(store.pool())
                .await
                .unwrap();
        if v > before && published < v {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica A never stored the new plan"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    signal("-CONT", b.0.id());
    let got = drain(&mut plans, Duration::from_secs(6)).await;
    assert_eq!(
        got,
        vec![(gw.clone(), stored as u64)],
        "replica B published what A had stored, once"
    );
    let published: i64 =
        sqlx::query_scalar("SELECT plan_published FROM gateways WHERE gateway = $1")
            .bind(&gw)
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(published, stored);
    store.close().await;
    b.0.kill().unwrap();
    b.0.wait().unwrap();
    drop_pg(&pg_db).await;
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `nightscape up` as a user runs it: (the process, the API address, the admin password).
fn spawn_up(data: &std::path::Path, mqtt_port: u16) -> (Reaped, String, String) {
    let up = spawn_up_with(
        data,
        mqtt_port,
        &["--time-scale", "60", "--start", "2026-11-26T17:00"],
    );
    (up.process, up.http, up.password)
}

/// A running `nightscape up`.
pub struct Up {
    pub process: Reaped,
    /// The dashboard and API.
    pub http: String,
    /// The simulator's page and state API.
    pub sim_http: String,
    /// The simulator's token for faults and scenarios.
    pub sim_token: String,
    pub password: String,
    /// What it printed at start.
    pub banner: String,
}

/// `nightscape up` with a clock of its own (`--time-scale`, `--start`); its log goes to
/// `DATA.log` beside the data directory.
pub fn spawn_up_with(data: &std::path::Path, mqtt_port: u16, clock: &[&str]) -> Up {
    // A free port found here can be taken by another test before `up` binds it; `up` then
    // stops saying which flag to change, and it is started again on other ports.
    for _ in 0..3 {
        if let Some(up) = try_spawn_up(data, mqtt_port, clock) {
            return up;
        }
        let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
        assert!(
            log.contains("choose another port with --http")
                || log.contains("choose another port with --sim-http"),
            "up did not start: {log}"
        );
    }
    panic!("up found no free ports in three tries");
}

/// `up` started once; `None` when it stopped before it was up.
fn try_spawn_up(data: &std::path::Path, mqtt_port: u16, clock: &[&str]) -> Option<Up> {
    use std::io::BufRead;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let http = format!("127.0.0.1:{}", free_port());
    let sim_http = format!("127.0.0.1:{}", free_port());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nightscape"))
        .arg("up")
        .arg("--library")
        .arg(root.join("scenes"))
        .arg("--data-dir")
        .arg(data)
        .args(["--http", &http, "--sim-http", &sim_http])
        .args(["--mqtt-port", &mqtt_port.to_string()])
        .args(clock)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(data.with_extension("log")).unwrap())
        .spawn()
        .unwrap();
    // The banner is on standard output; the logs on standard error.
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut password = None;
    let mut sim_token = None;
    let mut banner = String::new();
    let mut up = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if let Some(p) = line.split("admin / ").nth(1) {
            password = Some(p.trim().to_owned());
        }
        if let Some(t) = line.split("simulator token").nth(1) {
            sim_token = t.split_whitespace().next().map(str::to_owned);
        }
        if line.starts_with("Stop with ctrl-c") {
            up = true;
            break;
        }
    }
    let process = Reaped(child);
    if !up {
        return None;
    }
    std::thread::spawn(move || for _ in lines {});
    Some(Up {
        process,
        http,
        sim_http,
        sim_token: sim_token.expect("up printed the simulator's token"),
        password: password.expect("up printed the admin login"),
        banner,
    })
}

/// Waits until every gateway has acknowledged its documents; returns their plan versions.
pub async fn all_in_sync(addr: &str, session: &[(&'static str, String)]) -> Vec<(String, u64)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (_, reply) = http(addr, "GET", "/api/gateways", session, "").await;
        let gws = body_of(&reply);
        let list = gws.as_array().cloned().unwrap_or_default();
        if list.len() == 12
            && list
                .iter()
                .all(|g| g["in_sync"] == true && g["online"] == true)
        {
            return list
                .iter()
                .map(|g| {
                    (
                        g["gateway"].as_str().unwrap().to_owned(),
                        g["plan_version"].as_u64().unwrap(),
                    )
                })
                .collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every gateway in sync: {gws}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_the_city_and_a_second_up_resumes_it() {
    let data = scratch("up");
    let mqtt = free_port();
    let (mut up, addr, password) = spawn_up(&data, mqtt);
    let session = login_as(&addr, &password).await;
    let first = all_in_sync(&addr, &session).await;
    assert!(std::fs::metadata(data.join("server/signing.key")).is_ok());
    let (status, _) = http(&addr, "GET", "/api/sites", &session, "").await;
    assert_eq!(status, 200);
    // SIGTERM stops it cleanly.
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &up.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let stopped = up.0.wait().unwrap();
    assert!(stopped.success(), "{stopped:?}");

    // A taken broker port is reported with the flag that changes it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nightscape"))
        .arg("up")
        .arg("--data-dir")
        .arg(&data)
        .args(["--mqtt-port", &port.to_string()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--mqtt-port"), "{err}");

    // The same data: the same admin, the same plans (nothing changed, so no new versions),
    // sent again to a broker that forgot them and acknowledged again.
    let (_up, addr, again) = spawn_up(&data, mqtt);
    assert_eq!(again, password);
    let session = login_as(&addr, &password).await;
    let second = all_in_sync(&addr, &session).await;
    assert_eq!(first, second);
}

/// Events a gateway sends while the server is down (killed, not stopped) wait in the
/// server's broker session and are all stored once it is back: the restarted server takes
/// its session back by the same client id, made from its data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_while_the_server_is_down_are_all_stored_when_it_returns() {
    use nightscape_core::wire::{self, Event, EventKind, Severity, Topic};
    let dir = scratch("server-loss");
    let url = format!("sqlite://{}?mode=rwc", dir.join("loss.db").display());
    let prefix = format!("loss-{}/", std::process::id());
    let connected = async |addr: &str| {
        for _ in 0..100 {
            let (_, reply) = http(addr, "GET", "/healthz", &[], "").await;
            if body_of(&reply)["broker_connected"] == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server did not connect to the broker");
    };
    let (child, addr) = spawn_server(&dir.join("data"), &url, &prefix, &[]);
    let mut server = Reaped(child);
    connected(&addr).await;
    // Let its subscriptions settle, then kill it: no clean disconnect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.0.kill().unwrap();
    server.0.wait().unwrap();

    // The gateway goes on reporting while nobody listens.
    let gateway: nightscape_core::GatewayId = "cityhall-gw".parse().unwrap();
    let mut o =
        rumqttc::MqttOptions::new(format!("loss-gw-{}", std::process::id()), "127.0.0.1", 1883);
    o.set_clean_session(false);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 200);
    let acked = tokio::spawn(async move {
        let mut acked = 0;
        while acked < 50 {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("the gateway's connection: {e}"),
            }
        }
    });
    let topic = wire::topic(&prefix, &gateway, Topic::Event);
    for k in 0..50 {
        let event = Event {
            schema: wire::SCHEMA,
            gateway: gateway.clone(),
            at_ms: 1_795_777_200_000 + k,
            id: format!("loss-{k}"),
            kind: EventKind::Clock,
            severity: Severity::Info,
            controller: None,
            message: format!("event {k} while the server is down"),
            cue: None,
            fault: None,
        };
        client
            .publish(
                &topic,
                rumqttc::QoS::AtLeastOnce,
                false,
                wire::encode(&event),
            )
            .await
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), acked)
        .await
        .expect("the broker took every event")
        .unwrap();

    // The server comes back with the same data directory: every event is stored, once.
    let (child, addr) = spawn_server(&dir.join("data"), &url, &prefix, &[]);
    let _server = Reaped(child);
    connected(&addr).await;
    let session = login(&addr).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let stored = loop {
        let (_, reply) = http(&addr, "GET", "/api/events", &session, "").await;
        let ids: Vec<String> = body_of(&reply)
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .filter(|id| id.starts_with("loss-"))
            .collect();
        if ids.len() >= 50 || tokio::time::Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut unique = stored.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        50,
        "every event sent while the server was down: {stored:?}"
    );
    assert_eq!(stored.len(), 50, "each stored once");
}

/// The change the stream of changes makes, and its request's headers with the key.
fn stream_body(reason: &str) -> String {
    serde_json::json!({"scene": "cityhall-blue-hour", "minutes": 30, "reason": reason}).to_string()
}

fn keyed(session: &[(&'static str, String)], key: &str) -> Vec<(&'static str, String)> {
    let mut headers = session.to_vec();
    headers.push(("Idempotency-Key", key.replace(' ', "-")));
    headers
}

/// `kill -9` of the server three times under a steady stream of changes (two writers, each
/// override with a reason and an `Idempotency-Key` of its own), on SQLite and PostgreSQL:
/// every change answered 2xx is there exactly once after the restarts, and each one cut off
/// is sent again with its key and is then there exactly once, its audit row too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_changes_through_three_kill_9_loses_no_answered_change() {
    let (pg_db, pg_url) = fresh_pg("stream").await;
    let dir = scratch("stream");
    for url in [
        format!("sqlite://{}?mode=rwc", dir.join("stream.db").display()),
        pg_url,
    ] {
        let mut answered = Vec::new();
        let mut unanswered = Vec::new();
        for round in 0..3u64 {
            let (child, addr) = spawn_server(
                &dir.join("data"),
                &url,
                &format!("stream-{}/", std::process::id()),
                &[],
            );
            let mut child = Reaped(child);
            let session = login(&addr).await;
            let writers: Vec<_> = (0..2u64)
                .map(|w| {
                    let (addr, session) = (addr.clone(), session.clone());
                    tokio::spawn(async move {
                        let mut results = Vec::new();
                        for k in 0.. {
                            let reason = format!("stream {round}-{w}-{k}");
                            let result = try_http(
                                &addr,
                                "POST",
                                "/api/sites/nonsan-city-hall/override",
                                &keyed(&session, &reason),
                                &stream_body(&reason),
                            )
                            .await;
                            let done = !matches!(result, Ok((200, _)));
                            results.push((reason, result.map(|(s, _)| s).ok()));
                            if done {
                                break;
                            }
                        }
                        results
                    })
                })
                .collect();
            // Kill it in the middle of the stream, at a different moment each round.
            tokio::time::sleep(Duration::from_millis(300 + 170 * round)).await;
            child.0.kill().unwrap();
            child.0.wait().unwrap();
            for w in writers {
                for (reason, status) in w.await.unwrap() {
                    match status {
                        Some(200) => answered.push(reason),
                        // Cut off before a whole answer (no status line) or not connected.
                        Some(0) | None => unanswered.push(reason),
                        Some(other) => panic!("{url}: `{reason}` answered {other}"),
                    }
                }
            }
        }
        // A client that was cut off sends its change again with the same key, to a server
        // started again: it gets the first answer (the change made now, once), or 409
        // `already-applied` naming the audit entry when the change was made but its answer
        // lost. A key whose request was cut off after it was reserved reads `in-progress`
        // for a minute (the server cannot tell a dead request from a slow one): wait.
        let (child, addr) = spawn_server(
            &dir.join("data"),
            &url,
            &format!("stream-{}/", std::process::id()),
            &[],
        );
        let child = Reaped(child);
        let session = login(&addr).await;
        let mut retried_applied = Vec::new();
        let mut retried_already = Vec::new();
        for reason in &unanswered {
            let t = std::time::Instant::now();
            let (status, reply) = loop {
                let (status, reply) = try_http(
                    &addr,
                    "POST",
                    "/api/sites/nonsan-city-hall/override",
                    &keyed(&session, reason),
                    &stream_body(reason),
                )
                .await
                .unwrap();
                let in_progress =
                    status == 409 && body_of(&reply)["error"]["code"] == "in-progress";
                if !in_progress {
                    break (status, reply);
                }
                assert!(
                    t.elapsed() < Duration::from_secs(90),
                    "{url}: `{reason}` in progress for 90 s"
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
            };
            match status {
                200 => retried_applied.push(reason.clone()),
                409 => {
                    let error = &body_of(&reply)["error"];
                    assert_eq!(
                        error["code"], "already-applied",
                        "{url}: `{reason}`: {reply}"
                    );
                    retried_already.push((
                        reason.clone(),
                        error["message"].as_str().unwrap_or_default().to_owned(),
                    ));
                }
                other => panic!("{url}: `{reason}` sent again: {other} {reply}"),
            }
        }
        drop(child);
        let store = nightscape_server::store::Store::open(&url).await.unwrap();
        let made = nightscape_server::overrides::recent(&store, 100_000)
            .await
            .unwrap();
        let count = |reason: &str| made.iter().filter(|o| o.reason == reason).count();
        let audit = store.audit_log(1_000_000).await.unwrap();
        let audited = |reason: &str| -> Vec<i64> {
            audit
                .iter()
                .filter(|a| a.after.as_ref().is_some_and(|v| v["reason"] == reason))
                .map(|a| a.id)
                .collect()
        };
        // Every change cut off and sent again is there exactly once, with one audit row,
        // and an `already-applied` answer names that row.
        for reason in &retried_applied {
            assert_eq!(count(reason), 1, "{url}: `{reason}` applied on its retry");
            assert_eq!(audited(reason).len(), 1, "{url}: `{reason}`'s audit rows");
        }
        for (reason, message) in &retried_already {
            assert_eq!(count(reason), 1, "{url}: `{reason}` already applied");
            let rows = audited(reason);
            assert_eq!(rows.len(), 1, "{url}: `{reason}`'s audit rows");
            assert!(
                message.contains(&format!("audit entry {}", rows[0])),
                "{url}: `{reason}`: {message}"
            );
        }
        assert!(
            answered.len() >= 30,
            "{url}: only {} changes answered",
            answered.len()
        );
        for reason in &answered {
            assert_eq!(count(reason), 1, "{url}: `{reason}` was answered 200");
            assert_eq!(audited(reason).len(), 1, "{url}: `{reason}`'s audit rows");
        }
        assert!(
            !unanswered.is_empty(),
            "{url}: no request was cut off by the kills"
        );
        eprintln!(
            "{url}: {} changes answered 200, all kept once with one audit row; {} cut off by the kills and sent again with their keys: {} made then, {} already made (409 naming the audit row); each once",
            answered.len(),
            unanswered.len(),
            retried_applied.len(),
            retried_already.len(),
        );
        store.close().await;
    }
    drop_pg(&pg_db).await;
}
