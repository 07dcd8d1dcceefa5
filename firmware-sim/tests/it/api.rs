//! The state API over HTTP: sites and fixtures, a fault scenario applied and cleared, the
//! change stream; a foreign `Host` refused, and changes without the token.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_modbus::prelude::*;

use crate::common::{Running, start};

/// The token the tests' simulators are served with.
const TOKEN: &str = "sim-test-token";

/// One HTTP/1.1 request as a tool on this machine sends it (the simulator's address as
/// `Host`, the token with it); returns the status and the body.
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let headers = format!("Host: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n");
    http_with(addr, method, path, &headers, body).await
}

/// One HTTP/1.1 request with these header lines (each ending in CRLF).
async fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\n{headers}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

async fn serve(run: &Running) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = firmware_sim::api::router(run.sim.state.clone(), access());
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

pub fn access() -> firmware_sim::api::Access {
    firmware_sim::api::Access {
        hosts: vec!["sim.test".into()],
        token: TOKEN.into(),
    }
}

const SCENARIO: &str = r#"
[[faults]]
controller = "donam-path"
fault = "lamp-failure"
fixture = "path-2"

[[faults]]
controller = "donam-path"
fault = "over-temperature"

[[faults]]
controller = "donam-dmx"
fault = "exception"
code = 6
share = 1.0

[[faults]]
controller = "donam-dim-3"
fault = "offline"
"#;

#[tokio::test]
async fn a_fault_scenario_is_applied_seen_and_cleared() {
    let run = start(&["donam-seowon"], None).await;
    let api = serve(&run).await;
    let (status, body) = http(api, "GET", "/api/sites", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"id\":\"donam-seowon\""), "{body}");
    assert_eq!(http(api, "GET", "/api/sites/nowhere", "").await.0, 404);

    // A scenario with one wrong entry changes nothing.
    let wrong = format!("{SCENARIO}\n[[faults]]\ncontroller = \"nobody\"\nfault = \"offline\"\n");
    let (status, body) = http(api, "POST", "/api/scenario", &wrong).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("faults[4]: no controller `nobody`"), "{body}");
    assert_eq!(http(api, "GET", "/api/faults", "").await.1, "[]");

    assert_eq!(http(api, "POST", "/api/scenario", SCENARIO).await.0, 204);
    let (_, body) = http(api, "GET", "/api/faults", "").await;
    for id in ["donam-path", "donam-dmx", "donam-dim-3"] {
        assert!(body.contains(&format!("\"id\":\"{id}\"")), "{id}: {body}");
    }

    // The path controller: lit, but path-2 dark, and its status says why.
    let mut path = tcp::connect_slave(run.addr("donam-path"), Slave(1))
        .await
        .unwrap();
    path.write_multiple_registers(0, &[1, 255, 0])
        .await
        .unwrap()
        .unwrap();
    path.write_multiple_registers(0x100, &[0xffff, 0xffff])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.fixture("donam-seowon", "path-1").0, [255]);
    assert_eq!(run.fixture("donam-seowon", "path-2").0, [0]);
    let (_, device) = http(api, "GET", "/api/controllers/donam-path", "").await;
    assert!(
        device.contains("\"enabled\":true,\"master_pct\":100.0,\"fade_ms\":0"),
        "{device}"
    );
    assert!(device.contains("\"status\":6"), "{device}");
    assert_eq!(
        path.read_input_registers(0, 1).await.unwrap().unwrap(),
        [0b110]
    );
    // The DMX decoder answers busy; the third dimmer does not answer at all.
    let mut dmx = tcp::connect_slave(run.addr("donam-dmx"), Slave(1))
        .await
        .unwrap();
    assert_eq!(
        dmx.read_holding_registers(0, 1).await.unwrap(),
        Err(ExceptionCode::ServerDeviceBusy)
    );
    let mut dim3 = tcp::connect_slave(run.addr("donam-dim-3"), Slave(3))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(
            Duration::from_millis(300),
            dim3.read_holding_registers(0, 1)
        )
        .await
        .is_err(),
        "an offline controller answers nothing"
    );
    assert!(run.counters("donam-dim-3").dropped >= 1);

    // Cleared: everything answers and shows again.
    assert_eq!(http(api, "DELETE", "/api/faults", "").await.0, 204);
    assert_eq!(http(api, "GET", "/api/faults", "").await.1, "[]");
    assert_eq!(run.fixture("donam-seowon", "path-2").0, [255]);
    assert_eq!(path.read_input_registers(0, 1).await.unwrap().unwrap(), [0]);
    assert_eq!(dmx.read_holding_registers(0, 1).await.unwrap(), Ok(vec![0]));
}

#[tokio::test]
async fn a_reboot_loses_the_levels_and_restarts_the_uptime() {
    let run = start(&["donam-seowon"], None).await;
    let api = serve(&run).await;
    let mut path = tcp::connect_slave(run.addr("donam-path"), Slave(1))
        .await
        .unwrap();
    path.write_multiple_registers(0, &[1, 255, 0])
        .await
        .unwrap()
        .unwrap();
    path.write_multiple_registers(0x100, &[0xffff])
        .await
        .unwrap()
        .unwrap();
    run.clock.advance(Duration::from_secs(600));
    assert_eq!(
        path.read_input_registers(2, 2).await.unwrap().unwrap(),
        [0, 600]
    );
    let reboot = r#"{"controller": "donam-path", "fault": "reboot"}"#;
    assert_eq!(http(api, "POST", "/api/faults", reboot).await.0, 204);
    assert_eq!(run.fixture("donam-seowon", "path-1").0, [0]);
    run.clock.advance(Duration::from_secs(3));
    assert_eq!(
        path.read_input_registers(2, 2).await.unwrap().unwrap(),
        [0, 3]
    );
    let (status, body) = http(api, "POST", "/api/faults", "{\"controller\": 5}").await;
    assert_eq!(status, 422, "{body}");
    // Two seconds without power: nothing answers, no connection is taken; then it is back.
    let down = r#"{"controller": "donam-path", "fault": "reboot", "ms": 2000}"#;
    assert_eq!(http(api, "POST", "/api/faults", down).await.0, 204);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), path.read_input_registers(2, 2))
            .await
            .map_or(true, |r| r.is_err()),
        "a controller without power answers nothing"
    );
    let refused = tcp::connect_slave(run.addr("donam-path"), Slave(1)).await;
    if let Ok(mut ctx) = refused {
        assert!(
            tokio::time::timeout(Duration::from_millis(300), ctx.read_input_registers(2, 2))
                .await
                .map_or(true, |r| r.is_err()),
            "a new connection gets nothing either"
        );
    }
    run.clock.advance(Duration::from_millis(2500));
    let mut back = tcp::connect_slave(run.addr("donam-path"), Slave(1))
        .await
        .unwrap();
    assert_eq!(
        back.read_input_registers(2, 2).await.unwrap().unwrap(),
        [0, 0]
    );
}

#[tokio::test]
async fn the_change_stream_says_when_a_controller_took_something() {
    let run = start(&["donam-seowon"], None).await;
    let api = serve(&run).await;
    let mut stream = TcpStream::connect(api).await.unwrap();
    stream
        .write_all(format!("GET /api/events HTTP/1.1\r\nHost: {api}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut path = tcp::connect_slave(run.addr("donam-path"), Slave(1))
        .await
        .unwrap();
    // Keep writing until the stream reports a change (it may connect after the first).
    let mut seen = String::new();
    for level in 1..50u16 {
        path.write_single_register(0x100, level)
            .await
            .unwrap()
            .unwrap();
        let mut buf = [0u8; 1024];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await
        {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("event: change") {
                break;
            }
        }
    }
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.contains("event: change"), "{seen}");
}

/// DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends requests
/// with `Host: evil.example`; they are refused, reads included. A change (a fault, a
/// scenario, clearing) without the simulator's token, or with a wrong one, is refused and
/// changes nothing; with it, it is applied.
#[tokio::test]
async fn a_foreign_host_is_refused_and_a_change_needs_the_token() {
    let run = start(&["donam-seowon"], None).await;
    let api = serve(&run).await;
    let port = api.port();
    for host in [
        "evil.example",
        "evil.example:80",
        "127.0.0.1.evil.example",
        "10.0.0.1",
    ] {
        let headers = format!("Host: {host}\r\nAuthorization: Bearer {TOKEN}\r\n");
        let (status, body) = http_with(api, "GET", "/api/sites", &headers, "").await;
        assert_eq!(status, 403, "{host}: {body}");
        assert!(body.contains("is not this simulator's"), "{body}");
        let (status, _) = http_with(api, "GET", "/", &headers, "").await;
        assert_eq!(status, 403, "{host}: the preview page");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "sim.test".to_owned(),
    ] {
        let (status, body) =
            http_with(api, "GET", "/api/sites", &format!("Host: {host}\r\n"), "").await;
        assert_eq!(status, 200, "{host}, no token needed to read: {body}");
    }

    let fault = r#"{"controller": "donam-path", "fault": "over-temperature"}"#;
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    for (what, auth) in [
        ("no token", String::new()),
        (
            "a wrong token",
            "Authorization: Bearer sim-test-tokem\r\n".to_owned(),
        ),
        (
            "a longer token",
            format!("Authorization: Bearer {TOKEN}x\r\n"),
        ),
        (
            "the token not as bearer",
            format!("Authorization: {TOKEN}\r\n"),
        ),
    ] {
        let headers = format!("{host}{auth}");
        let (status, body) = http_with(api, "POST", "/api/faults", &headers, fault).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(body.contains("needs its token"), "{body}");
        let (status, _) = http_with(api, "POST", "/api/scenario", &headers, SCENARIO).await;
        assert_eq!(status, 401, "{what}: a scenario");
        assert_eq!(
            http(api, "GET", "/api/faults", "").await.1,
            "[]",
            "{what}: nothing applied"
        );
    }
    assert_eq!(http(api, "POST", "/api/faults", fault).await.0, 204);
    let (_, body) = http(api, "GET", "/api/faults", "").await;
    assert!(body.contains("\"over_temperature\":true"), "{body}");
    let (status, _) = http_with(api, "DELETE", "/api/faults", &host, "").await;
    assert_eq!(status, 401, "clearing needs the token too");
    let (status, _) = http_with(api, "DELETE", "/api/faults/donam-path", &host, "").await;
    assert_eq!(status, 401, "clearing one controller too");
    assert_ne!(http(api, "GET", "/api/faults", "").await.1, "[]");
    assert_eq!(http(api, "DELETE", "/api/faults", "").await.0, 204);
    assert_eq!(http(api, "GET", "/api/faults", "").await.1, "[]");
}
