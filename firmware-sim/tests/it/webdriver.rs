//! Headless Chromium through chromedriver's WebDriver protocol, for tests of web pages
//! (shared by the simulator's and the server's tests). Chromium is started with a fresh
//! profile and stopped with the driver, also when a test fails.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TAB: char = '\u{E004}';
pub const ENTER: char = '\u{E007}';
pub const DOWN: char = '\u{E015}';
pub const CTRL: char = '\u{E009}';

/// One HTTP/1.1 exchange with a JSON body; returns the parsed answer. chromedriver keeps the
/// connection open, so the body is read by its length.
pub async fn call(addr: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map_or(String::new(), |b| b.to_string());
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
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

pub fn base64(text: &str) -> Vec<u8> {
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

/// chromedriver with one browser session.
pub struct Browser {
    child: Child,
    pub addr: String,
    /// `/session/{id}`.
    pub session: String,
    /// The browser the session started, stopped with the driver even when a test fails
    /// before it closes its session.
    pid: Option<u64>,
    profile: std::path::PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
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
        let profile =
            std::env::temp_dir().join(format!("ns-chromium-{}-{port}", std::process::id()));
        let mut options = json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run", "--disable-sync",
                     format!("--window-size={},{height}", width.max(500)), "--force-device-scale-factor=1",
                     format!("--user-data-dir={}", profile.display())]
        });
        // A window is at least 500 pixels wide; narrower, a phone is emulated.
        if width < 500 {
            options["mobileEmulation"] = json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0, "touch": true}});
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options
        }}});
        let answer = call(&addr, "POST", "/session", Some(caps)).await;
        let pid = answer["value"]["capabilities"]["goog:processID"].as_u64();
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        Browser {
            child,
            addr,
            session: format!("/session/{id}"),
            pid,
            profile,
        }
    }

    pub async fn go(&self, url: &str) {
        call(
            &self.addr,
            "POST",
            &format!("{}/url", self.session),
            Some(json!({"url": url})),
        )
        .await;
    }

    /// Runs `js` (a function body) in the page and returns its value.
    pub async fn run(&self, js: &str) -> Value {
        call(
            &self.addr,
            "POST",
            &format!("{}/execute/sync", self.session),
            Some(json!({"script": js, "args": []})),
        )
        .await["value"]
            .clone()
    }

    /// Runs `js` with `done` bound to the callback that ends it, and returns what it passes.
    pub async fn run_async(&self, js: &str) -> Value {
        let script = format!("const done = arguments[arguments.length - 1]; {js}");
        call(
            &self.addr,
            "POST",
            &format!("{}/execute/async", self.session),
            Some(json!({"script": script, "args": []})),
        )
        .await["value"]
            .clone()
    }

    /// Types `text` into whatever has the focus, as key presses: WebDriver's special keys
    /// are written as their code points (`TAB`, `ENTER`, …), and `CTRL` is held with the next key.
    pub async fn keys(&self, text: &str) {
        let mut actions = Vec::new();
        let mut held = None;
        for c in text.chars() {
            if c == CTRL {
                actions.push(json!({"type": "keyDown", "value": c.to_string()}));
                held = Some(c);
                continue;
            }
            actions.push(json!({"type": "keyDown", "value": c.to_string()}));
            actions.push(json!({"type": "keyUp", "value": c.to_string()}));
            if let Some(h) = held.take() {
                actions.push(json!({"type": "keyUp", "value": h.to_string()}));
            }
        }
        call(
            &self.addr,
            "POST",
            &format!("{}/actions", self.session),
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
    }

    /// Runs `js` until it returns something other than `null` or `false` (within 20 s), and
    /// returns that; a test waiting for `what` fails otherwise.
    pub async fn wait_for(&self, what: &str, js: &str) -> Value {
        for _ in 0..200 {
            let v = self.run(js).await;
            if !v.is_null() && v != json!(false) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// Logs in through the dashboard's login form at `base` and waits for the overview.
    pub async fn log_in(&self, base: &str, name: &str, password: &str) {
        self.go(&format!("{base}/login")).await;
        self.wait_for(
            "the login form",
            "return document.querySelector('form.login') !== null;",
        )
        .await;
        self.run(&format!(
            "document.getElementById('name').value = {}; document.getElementById('password').value = {}; document.querySelector('form.login').submit(); return true;",
            json!(name),
            json!(password)
        ))
        .await;
        self.wait_for("the overview", "return location.pathname === '/overview';")
            .await;
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        let shot = call(
            &self.addr,
            "GET",
            &format!("{}/screenshot", self.session),
            None,
        )
        .await;
        base64(shot["value"].as_str().unwrap_or_default())
    }
}
