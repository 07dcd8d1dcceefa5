//! What every long-running part shares as a process: logging to stderr, waiting for
//! ctrl-c or SIGTERM, and telling systemd it is ready and alive (`sd_notify`).

use std::time::Duration;

/// Logs to stderr at `RUST_LOG` (default info). A second call (tests that run several
/// commands in one process) is not an error worth stopping for.
pub fn init_logging() {
    init_logging_with("info");
}

/// Logging with `default` as the filter unless `RUST_LOG` says otherwise.
pub fn init_logging_with(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on ctrl-c or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: call it before saying "ready", so a signal sent right after
/// is not the default one that kills the process.
pub fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        async move {
            tokio::select! {
                () = wait_on(term.as_mut()) => {}
                () = wait_on(int.as_mut()) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(unix)]
async fn wait_on(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        // A handler that could not be installed: the other one still stops the process.
        None => std::future::pending::<()>().await,
    }
}

/// systemd's notification socket, when the process runs under a unit with `Type=notify`.
#[derive(Debug)]
pub struct Notifier {
    #[cfg(target_os = "linux")]
    socket: Option<(
        std::os::unix::net::UnixDatagram,
        std::os::unix::net::SocketAddr,
    )>,
    /// Half the unit's `WatchdogSec`, when it has one.
    pub watchdog_every: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC`; a process not under systemd gets a
    /// notifier that does nothing.
    pub fn from_env() -> Notifier {
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&us| us > 0)
            .map(|us| Duration::from_micros(us / 2).max(Duration::from_millis(1)));
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            use std::os::unix::net::{SocketAddr, UnixDatagram};
            let socket = std::env::var("NOTIFY_SOCKET").ok().and_then(|path| {
                let addr = match path.strip_prefix('@') {
                    Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name).ok()?,
                    None => SocketAddr::from_pathname(&path).ok()?,
                };
                Some((UnixDatagram::unbound().ok()?, addr))
            });
            Notifier {
                socket,
                watchdog_every,
            }
        }
        #[cfg(not(target_os = "linux"))]
        Notifier { watchdog_every }
    }

    /// Sends `state` (e.g. `READY=1`, `WATCHDOG=1`, `STOPPING=1`); errors are logged only.
    pub fn notify(&self, state: &str) {
        #[cfg(target_os = "linux")]
        if let Some((socket, addr)) = &self.socket
            && let Err(e) = socket.send_to_addr(state.as_bytes(), addr)
        {
            tracing::warn!("sd_notify {state}: {e}");
        }
        #[cfg(not(target_os = "linux"))]
        let _ = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn notifications_reach_the_socket_systemd_gives() {
        let dir = std::env::temp_dir().join(format!("ns-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let addr = std::os::unix::net::SocketAddr::from_pathname(&path).unwrap();
        let n = Notifier {
            socket: Some((std::os::unix::net::UnixDatagram::unbound().unwrap(), addr)),
            watchdog_every: None,
        };
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }
}
