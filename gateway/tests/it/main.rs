//! The gateway's parts with real files and the shipped library.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod commission;
mod dmx;
mod dmx_mqtt;
mod executor;
mod guard;
mod modbus;
mod running;
mod store;

/// The core's reader of the shipped library, shared rather than copied.
#[path = "../../../core/tests/it/common.rs"]
mod shipped;

pub use shipped::shipped_library;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use firmware_sim::{Bind, Sim, SimConfig};
use nightscape_core::clock::{Clock, VirtualClock};
use nightscape_core::{ShowLibrary, SiteId};
use tokio_util::sync::CancellationToken;

/// A fresh directory of this test run.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ns-gw-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A simulator of `sites` on free loopback ports, with a virtual clock.
pub async fn start_sim(
    lib: &ShowLibrary,
    sites: &[&str],
) -> (Sim, Arc<VirtualClock>, CancellationToken) {
    start_sim_with(lib, sites, None).await
}

/// The same, subscribed for DMX over MQTT on the machine's broker under `prefix`.
pub async fn start_sim_with(
    lib: &ShowLibrary,
    sites: &[&str],
    prefix: Option<&str>,
) -> (Sim, Arc<VirtualClock>, CancellationToken) {
    let clock = Arc::new(VirtualClock::new(1_798_000_000_000));
    let shutdown = CancellationToken::new();
    let sim = firmware_sim::start(
        SimConfig {
            library: lib.clone(),
            sites: sites.iter().map(|s| s.parse::<SiteId>().unwrap()).collect(),
            bind: Bind::Ports,
            broker: prefix.map(|p| firmware_sim::Broker::anonymous("127.0.0.1", 1883, p)),
            multicast: false,
        },
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    (sim, clock, shutdown)
}
