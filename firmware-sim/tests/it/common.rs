//! Starting a simulator on the shipped library with a virtual clock.

use std::sync::Arc;
use std::time::Duration;

use firmware_sim::{Bind, Broker, Sim, SimConfig, api};
use nightscape_core::clock::VirtualClock;
use nightscape_core::{ControllerId, SiteId, check};
use tokio_util::sync::CancellationToken;

pub const T0: i64 = 1_798_000_000_000;

/// The core's reader of the shipped library, shared rather than copied.
#[path = "../../../core/tests/it/common.rs"]
mod shipped;

pub use shipped::shipped_library;

pub struct Running {
    pub sim: Sim,
    pub clock: Arc<VirtualClock>,
    pub shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Running {
    pub fn addr(&self, controller: &str) -> std::net::SocketAddr {
        self.sim
            .endpoints
            .get(&controller.parse::<ControllerId>().unwrap())
            .unwrap()
    }

    /// A fixture's channel values and colour, as the state API shows them.
    pub fn fixture(&self, site: &str, fixture: &str) -> (Vec<u8>, String) {
        let s = &self.sim.state.sites[&site.parse::<SiteId>().unwrap()];
        let view = api::site_view(s, &self.sim.state);
        let f = view.fixtures.into_iter().find(|f| f.id == fixture).unwrap();
        (f.channels, f.colour)
    }

    pub fn counters(&self, controller: &str) -> firmware_sim::state::CountersView {
        self.sim
            .state
            .controller(&controller.parse().unwrap())
            .unwrap()
            .counters
            .view()
    }

    /// Waits (up to 5 s) until `done` holds, for what crosses a socket.
    pub async fn until(&self, what: &str, mut done: impl FnMut(&Running) -> bool) {
        for _ in 0..500 {
            if done(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }
}

pub async fn start(sites: &[&str], broker: Option<Broker>) -> Running {
    start_bound(sites, broker, Bind::Ports).await
}

/// [`start`] with the endpoints bound as `bind` says.
pub async fn start_bound(sites: &[&str], broker: Option<Broker>, bind: Bind) -> Running {
    let checked = check(&shipped_library());
    let clock = Arc::new(VirtualClock::new(T0));
    let shutdown = CancellationToken::new();
    let sim = firmware_sim::start(
        SimConfig {
            library: checked.library,
            sites: sites.iter().map(|s| s.parse().unwrap()).collect(),
            bind,
            broker,
            multicast: false,
        },
        clock.clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    sim.endpoints.check_loopback().unwrap();
    Running {
        sim,
        clock,
        shutdown,
    }
}
