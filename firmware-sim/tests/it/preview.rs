//! The live preview page in real headless Chromium (driven through chromedriver's WebDriver
//! protocol): a frame sent over Art-Net shows in the screenshot at the fixture's position in
//! the colour the state API reports.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nightscape_core::addr::ArtNetPortAddress;
use nightscape_core::codec::artnet::ArtDmx;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::common::start;

/// One HTTP/1.1 exchange with a JSON body; returns the parsed answer. chromedriver keeps the
/// connection open, so the body is read by its length.
async fn call(addr: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map_or(String::new(), |b| b.to_string());
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let (head_end, length) = loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before the answer");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while got.len() < head_end + length {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed inside the answer");
        got.extend_from_slice(&buf[..n]);
    }
    serde_json::from_slice(&got[head_end..head_end + length]).unwrap_or(Value::Null)
}

fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = text.bytes().filter_map(value).collect();
    digits
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().fold(0u32, |n, d| n << 6 | u32::from(*d)) << (6 * (4 - c.len()));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes[..c.len().saturating_sub(1)].to_vec()
        })
        .collect()
}

struct Driver {
    child: Child,
    addr: String,
    /// The browser the session started, stopped with the driver even when a test fails
    /// before it closes its session.
    browser: Option<u64>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.browser {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian chromium-driver; .ci/run installs it)");
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if TcpStream::connect(&addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver {
        child,
        addr,
        browser: None,
    }
}

#[tokio::test]
async fn the_preview_shows_what_the_controllers_received() {
    let run = start(&["nonsan-city-hall"], None).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    let app = firmware_sim::api::router(run.sim.state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // wash-1 (RGBW at 0:0:0 slot 1) full red; wash-2 (slot 5) stays dark.
    let mut data = vec![0u8; 512];
    data[0] = 255;
    let frame = ArtDmx {
        sequence: 1,
        physical: 0,
        port_address: ArtNetPortAddress::new(0).unwrap(),
        data,
    };
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&frame.encode(), run.addr("cityhall-art"))
        .await
        .unwrap();
    run.until("the frame", |r| r.counters("cityhall-art").accepted > 0)
        .await;
    let (_, red) = run.fixture("nonsan-city-hall", "wash-1");
    assert_eq!(red, "#ff0000");

    let mut driver = chromedriver().await;
    let profile = std::env::temp_dir().join(format!("ns-chromium-{}", std::process::id()));
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run", "--disable-sync",
                     "--window-size=1280,800", "--force-device-scale-factor=1",
                     format!("--user-data-dir={}", profile.display())]
        }
    }}});
    let session = call(&driver.addr, "POST", "/session", Some(caps)).await;
    driver.browser = session["value"]["capabilities"]["goog:processID"].as_u64();
    let id = session["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no session: {session}"))
        .to_owned();
    let s = format!("/session/{id}");
    call(
        &driver.addr,
        "POST",
        &format!("{s}/url"),
        Some(json!({"url": format!("http://{api}/?site=nonsan-city-hall")})),
    )
    .await;
    let script = |js: &str| json!({"script": js, "args": []});
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = call(
            &driver.addr,
            "POST",
            &format!("{s}/execute/sync"),
            Some(script(
                "const g = document.querySelector('[data-fixture=\"wash-1\"]'); return g ? g.dataset.colour || null : null;",
            )),
        )
        .await["value"]
            .clone();
        if shown == json!("#ff0000") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        shown,
        json!("#ff0000"),
        "the page shows what the API reports"
    );
    let centre = |fixture: &str| {
        format!(
            "const r = document.querySelector('[data-fixture=\"{fixture}\"] circle').getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];"
        )
    };
    let at = |v: &Value| (v[0].as_f64().unwrap() as u32, v[1].as_f64().unwrap() as u32);
    let lit = at(&call(
        &driver.addr,
        "POST",
        &format!("{s}/execute/sync"),
        Some(script(&centre("wash-1"))),
    )
    .await["value"]);
    let dark = at(&call(
        &driver.addr,
        "POST",
        &format!("{s}/execute/sync"),
        Some(script(&centre("wash-2"))),
    )
    .await["value"]);
    let shot = call(&driver.addr, "GET", &format!("{s}/screenshot"), None).await;
    let png = base64(shot["value"].as_str().unwrap());
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sim-preview.png");
    std::fs::write(&out, &png).unwrap();
    call(&driver.addr, "DELETE", &s, None).await;
    let _ = std::fs::remove_dir_all(&profile);

    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let channels = frame.color_type.samples();
    let pixel = |(x, y): (u32, u32)| {
        let i = (y as usize * frame.width as usize + x as usize) * channels;
        (buf[i], buf[i + 1], buf[i + 2])
    };
    let (r, g, b) = pixel(lit);
    assert!(
        r > 200 && g < 60 && b < 60,
        "wash-1 at {lit:?} is ({r}, {g}, {b}) in {}",
        out.display()
    );
    let (r, g, b) = pixel(dark);
    assert!(
        r < 40 && g < 40 && b < 40,
        "wash-2 at {dark:?} is ({r}, {g}, {b})"
    );
}
