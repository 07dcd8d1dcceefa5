//! A private Mosquitto for a test or benchmark that needs its own broker settings (limits,
//! access control, the production socket options). Shared by the benchmarks and by the
//! `nightscape` crate's integration tests (which include this file by path).

use std::path::Path;
use std::time::Duration;

/// A `mosquitto` listening on a free loopback port; killed and reaped when dropped.
pub struct Mosquitto {
    child: std::process::Child,
    pub port: u16,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Mosquitto with its configuration file in `dir`: a loopback listener on a free
/// port, no persistence, no log, then `settings` (whole lines). Returns once it accepts
/// connections.
pub fn start(dir: &Path, settings: &str) -> Mosquitto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\npersistence false\nlog_dest none\n{settings}"),
    )
    .expect("the broker's configuration is written");
    let child = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto is installed (.ci/run installs it)");
    let mut broker = Mosquitto { child, port };
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return broker;
        }
        if let Ok(Some(status)) = broker.child.try_wait() {
            panic!(
                "mosquitto exited ({status}): check {} (a setting this version lacks?)",
                conf.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("mosquitto did not listen on {port} within 5 s");
}
