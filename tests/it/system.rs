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
use nightscape_gateway::config::{Config, Mqtt, SafeState};
use nightscape_gateway::runtime::{self, Setup};
use nightscape_server::mqtt::BrokerConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

fn scratch(name: &str) -> std::path::PathBuf {
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
            data_dir: dir.join("server"),
            database_url: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            broker: Some(BrokerConfig {
                host: "127.0.0.1".into(),
                port: 1883,
                username: None,
                password: None,
                ca: None,
                topic_prefix: prefix.clone(),
                client_id: format!("system-server-{}", std::process::id()),
            }),
            admin_password: Some("system-test-admin".into()),
            secure_cookies: false,
            publish_every: Duration::from_secs(5),
            seed_library: Some(sources),
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
            config: Config {
                gateway: gw.parse().unwrap(),
                data_dir: dir.join("gateway"),
                trusted_keys: Vec::new(),
                frame_rate_hz: 40,
                safe_state: SafeState::Hold,
                loopback_only: true,
                endpoints: None,
                multicast_interface: None,
                mqtt: Mqtt {
                    host: "127.0.0.1".into(),
                    port: 1883,
                    username: None,
                    password_file: None,
                    ca_file: None,
                    topic_prefix: prefix.clone(),
                },
            },
            trusted: vec![server.public_key],
            endpoints: Some(sim.endpoints.clone()),
            password: None,
            ca: None,
            connect: true,
            plan: None,
            art_poll_every: Duration::from_secs(10),
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

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), gateway.done).await;
    tracker.close();
    tracker.wait().await;
}

/// One HTTP/1.1 request over a fresh connection: (status, headers and body as text).
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_answered_2xx_survives_kill_9_on_sqlite_and_postgresql() {
    use std::io::BufRead;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let pg_db = format!("nstest_kill_{}", std::process::id());
    let admin = "postgres://postgres@127.0.0.1:5432/test";
    {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"))
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {pg_db}"))
            .execute(&mut c)
            .await
            .unwrap();
    }
    let dir = scratch("kill");
    let urls = [
        format!("sqlite://{}?mode=rwc", dir.join("kill.db").display()),
        format!("postgres://postgres@127.0.0.1:5432/{pg_db}"),
    ];
    for url in urls {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nightscape"))
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--broker",
                "127.0.0.1:1883",
                "--admin-password",
                "kill-test-password",
            ])
            .arg("--topic-prefix")
            .arg(format!("kill-{}/", std::process::id()))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--database-url")
            .arg(&url)
            .arg("--library")
            .arg(root.join("scenes"))
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
        std::thread::spawn(move || for _ in lines {});
        let (status, reply) = http(
            &addr,
            "POST",
            "/api/login",
            &[],
            r#"{"name": "admin", "password": "kill-test-password"}"#,
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        let cookie = reply
            .lines()
            .find_map(|l| l.strip_prefix("set-cookie: "))
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let body = &reply[reply.find("\r\n\r\n").unwrap() + 4..];
        let csrf = serde_json::from_str::<serde_json::Value>(body).unwrap()["csrf"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, reply) = http(
            &addr,
            "POST",
            "/api/sites/nonsan-city-hall/blackout",
            &[("cookie", cookie), ("x-csrf-token", csrf)],
            r#"{"reason": "kill -9 test", "confirm": true}"#,
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        child.kill().unwrap(); // SIGKILL, at once after the answer
        child.wait().unwrap();
        let body = &reply[reply.find("\r\n\r\n").unwrap() + 4..];
        let id = serde_json::from_str::<serde_json::Value>(body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
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
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(admin).await.unwrap();
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"))
        .execute(&mut c)
        .await;
}
