//! `up`'s MQTT broker, with the city's users: the server, every gateway and every
//! DMX-over-MQTT controller log in with their own passwords, made by the same code as
//! `nightscape server mqtt-acl` and kept in the data directory's `broker/` (mode 600), and
//! anonymous clients are refused.
//!
//! Which broker: rumqttd, the embedded one, checks passwords but has no per-topic access
//! control, so any client with a password could read every plan and write any gateway's
//! events. So where Mosquitto is installed `up` runs a private one on its port with the
//! generated password and ACL files — each client only its own topics, as in production —
//! and stops it on the way out; otherwise it falls back to rumqttd, binds each client id to
//! its user, and says in its start-up text that topic access is not enforced.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Which broker `up` runs (`--broker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// Mosquitto when installed, else the embedded one.
    Auto,
    /// A private Mosquitto; `up` stops if it is not installed.
    Mosquitto,
    /// The embedded rumqttd: passwords only, topics not checked.
    Embedded,
}

/// A broker user's login: its password and the only client id it may use on a broker that
/// binds the two.
#[derive(Clone)]
pub struct Login {
    pub password: String,
    pub client_id: String,
}

/// The running broker; a Mosquitto is stopped when this is dropped.
pub struct Broker {
    pub addr: SocketAddr,
    kind: Kind,
}

enum Kind {
    Mosquitto {
        child: Child,
        program: PathBuf,
        version: String,
    },
    Embedded,
}

impl Broker {
    /// One line for the start-up text: which broker, and what it enforces.
    pub fn describe(&self, users: &Path) -> String {
        match &self.kind {
            Kind::Mosquitto {
                program, version, ..
            } => format!(
                "{}, {version} ({}): each client only its own topics, users in {}",
                self.addr,
                program.display(),
                users.display()
            ),
            Kind::Embedded => format!(
                "{}, embedded (rumqttd): passwords checked, users in {}, but topic access is \
                 NOT enforced (any client with a password may read and write every topic); \
                 install mosquitto for the production access control",
                self.addr,
                users.display()
            ),
        }
    }

    /// Stops a Mosquitto with SIGTERM (it closes its clients cleanly), after 5 s for good.
    pub fn stop(mut self) {
        self.stop_child(Duration::from_secs(5));
    }

    fn stop_child(&mut self, grace: Duration) {
        let Kind::Mosquitto { child, .. } = &mut self.kind else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop_child(Duration::from_secs(1));
    }
}

/// Mosquitto's program: on `PATH`, or in the sbin directories where packages put it (Debian's
/// is `/usr/sbin/mosquitto`, which is not on an ordinary user's `PATH`).
pub fn find_mosquitto() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("mosquitto"))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Starts the broker `choice` asks for on 127.0.0.1:`port` with these users (the files of
/// [`crate::mqtt_acl::write`] in `dir`).
pub fn start(
    choice: Choice,
    port: u16,
    dir: &Path,
    logins: BTreeMap<String, Login>,
    gateways: usize,
) -> Result<Broker> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Both brokers would only log a taken port; find out first and say what to change.
    drop(TcpListener::bind(addr).with_context(|| {
        format!(
            "the MQTT broker cannot listen on {addr} (taken?); choose another port with --mqtt-port"
        )
    })?);
    let mosquitto = match choice {
        Choice::Embedded => None,
        Choice::Auto => find_mosquitto(),
        Choice::Mosquitto => Some(find_mosquitto().context(
            "--broker mosquitto: no `mosquitto` program on PATH or in /usr/sbin; install it \
             (Debian: apt-get install mosquitto) or leave --broker out",
        )?),
    };
    match mosquitto {
        Some(program) => start_mosquitto(program, addr, dir),
        None => {
            embedded(addr, logins, gateways)?;
            Ok(Broker {
                addr,
                kind: Kind::Embedded,
            })
        }
    }
}

/// Mosquitto's configuration for `up`: loopback only, the generated users and ACL,
/// anonymous refused, nothing kept on disk (as the embedded broker: a second `up` publishes
/// everything again).
fn mosquitto_conf(addr: SocketAddr, dir: &Path, as_root: bool) -> String {
    let mut conf = format!(
        "# Written by `nightscape up` at every start; changes here are lost.\n\
         listener {port} {ip}\n\
         allow_anonymous false\n\
         password_file {passwd}\n\
         acl_file {acl}\n\
         persistence false\n\
         set_tcp_nodelay true\n\
         max_packet_size {max_packet}\n\
         max_queued_messages 10000\n\
         connection_messages false\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n",
        port = addr.port(),
        ip = addr.ip(),
        passwd = dir.join("passwd").display(),
        acl = dir.join("acl").display(),
        max_packet = nightscape_server::mqtt::MAX_PACKET + 1024,
    );
    if as_root {
        // Started as root, Mosquitto drops to user `mosquitto` unless told otherwise, and
        // then could neither read the data directory's files (mode 600, maybe under a home
        // directory it cannot enter) nor be stopped with `up` (the kernel forgets the
        // parent-death signal when a process changes its user). It stays the user that runs
        // `up`, as the embedded broker would be.
        conf.push_str("user root\n");
    }
    conf
}

fn start_mosquitto(program: PathBuf, addr: SocketAddr, dir: &Path) -> Result<Broker> {
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let conf = dir.join("mosquitto.conf");
    let as_root = nix::unistd::geteuid().is_root();
    std::fs::write(&conf, mosquitto_conf(addr, &dir, as_root))
        .with_context(|| format!("writing {}", conf.display()))?;
    let version = Command::new(&program)
        .arg("-h")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
                l.trim()
                    .strip_prefix("mosquitto version ")
                    .map(str::to_owned)
            })
        })
        .map_or_else(|| "Mosquitto".to_owned(), |v| format!("Mosquitto {v}"));
    // `setpriv --pdeathsig` has the kernel send Mosquitto SIGTERM when `up` dies, even by
    // `kill -9`, so no broker is left holding the port. (It applies while the thread that
    // started it lives: this is `up`'s main thread.)
    let mut command = match find_program("setpriv") {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "TERM", "--"]).arg(&program);
            c
        }
        None => {
            tracing::warn!(
                "no `setpriv` (util-linux): if `up` is killed, its Mosquitto keeps running"
            );
            Command::new(&program)
        }
    };
    // Its own process group: a ctrl-c in the terminal goes to `up`, which stops the broker
    // only after its clients have said goodbye, not to the broker at the same moment.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Its warnings and errors go to `up`'s log.
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let mut broker = Broker {
        addr,
        kind: Kind::Mosquitto {
            child,
            program,
            version,
        },
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if let Kind::Mosquitto { child, .. } = &mut broker.kind
            && let Ok(Some(status)) = child.try_wait()
        {
            bail!(
                "Mosquitto stopped at start ({status}); its message is above, its configuration in {}",
                conf.display()
            );
        }
        if Instant::now() > deadline {
            bail!("Mosquitto did not start listening on {addr} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(broker)
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether the embedded broker lets a client in: its user's password, and the client id that
/// user's client has. Binding the two keeps one user from taking over another's session (a
/// second connection with the same client id closes the first, and a persistent session
/// would hand over what waits in it).
fn admits(logins: &BTreeMap<String, Login>, client_id: &str, user: &str, password: &str) -> bool {
    logins.get(user).is_some_and(|l| {
        let (a, b) = (l.password.as_bytes(), password.as_bytes());
        // Compared in constant time, so the answer's timing does not give a password away.
        let same = a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0;
        same && l.client_id == client_id
    })
}

/// The embedded broker's log segments (see `max_segment_size` below).
const SEGMENT: usize = 32 * 1024;

fn embedded(addr: SocketAddr, logins: BTreeMap<String, Login>, gateways: usize) -> Result<()> {
    let mut connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: nightscape_server::mqtt::MAX_PACKET + 1024,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    // A connection without a login is refused by rumqttd itself once a handler is set.
    let logins = Arc::new(logins);
    connections.set_auth_handler(move |client_id, user, password| {
        let ok = admits(&logins, &client_id, &user, &password);
        if !ok {
            tracing::warn!(client_id = %client_id, user = %user, "the embedded broker refused a login");
        }
        std::future::ready(ok)
    });
    let server = rumqttd::ServerSettings {
        name: "loopback".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: 200,
            // The router keeps what was published on each subscription's log, up to this many
            // segments of this size, and drops the oldest after: a subscriber further behind
            // than that skips ahead. Every subscriber here is in this process and keeps up;
            // the bound holds a city-wide order's answers twice over (an ack and a state of
            // about 1 KiB from every gateway), and at least 128 KiB (over a minute of `up`).
            // A kept message also keeps alive the whole read buffer it arrived in, so the
            // logs cost far more than their bytes: with 1 MiB × 2 the soak's resident memory
            // grew 8 MiB an hour (the quiet subscriptions' logs take hours to fill); with
            // 32 KiB × 4 it levels off within the first half hour.
            max_segment_size: SEGMENT,
            max_segment_count: (4 * gateways * 1024).div_ceil(SEGMENT).max(4),
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: rumqttd::Strategy::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..rumqttd::Config::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("the embedded MQTT broker stopped: {e}");
            }
        })
        .context("starting the embedded broker")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("the embedded MQTT broker did not start listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_broker_admits_a_user_only_with_its_password_and_client_id() {
        let logins = BTreeMap::from([(
            "cityhall-gw".to_owned(),
            Login {
                password: "s3cret".into(),
                client_id: "nightscape-gw-cityhall-gw".into(),
            },
        )]);
        let id = "nightscape-gw-cityhall-gw";
        assert!(admits(&logins, id, "cityhall-gw", "s3cret"));
        for (client_id, user, password) in [
            (id, "cityhall-gw", "s3cre"),
            (id, "cityhall-gw", "s3cret!"),
            (id, "cityhall-gw", ""),
            (id, "gyebaek-gw", "s3cret"),
            (id, "", ""),
            ("nightscape-gw-gyebaek-gw", "cityhall-gw", "s3cret"),
            ("", "cityhall-gw", "s3cret"),
        ] {
            assert!(
                !admits(&logins, client_id, user, password),
                "{client_id} {user} {password}"
            );
        }
    }

    #[test]
    fn mosquitto_stays_the_user_of_up_only_when_that_is_root() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 18830));
        let conf = mosquitto_conf(addr, Path::new("/data/broker"), false);
        assert!(conf.contains("listener 18830 127.0.0.1\n"), "{conf}");
        assert!(conf.contains("allow_anonymous false\n"), "{conf}");
        assert!(
            conf.contains("password_file /data/broker/passwd\n"),
            "{conf}"
        );
        assert!(conf.contains("acl_file /data/broker/acl\n"), "{conf}");
        assert!(!conf.contains("\nuser "), "{conf}");
        assert!(mosquitto_conf(addr, Path::new("/d"), true).ends_with("user root\n"));
    }
}
