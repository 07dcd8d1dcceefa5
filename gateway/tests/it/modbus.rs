//! The Modbus driver against simulated controllers over real sockets: start-up, changes,
//! a device reboot and an offline spell.

use std::sync::Arc;
use std::time::Duration;

use firmware_sim::faults::{Fault, FaultKind};
use nightscape_core::{ControllerId, SiteId, check};
use nightscape_gateway::modbus::{Health, Levels, Settings, run};
use tokio::sync::watch;

use crate::shipped_library;

/// Waits (up to 5 s) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn the_driver_starts_the_device_keeps_it_and_restores_it_after_a_reboot() {
    let lib = check(&shipped_library()).library;
    let (sim, clock, shutdown) = crate::start_sim(&lib, &["donam-seowon"]).await;
    let id: ControllerId = "donam-path".parse().unwrap();
    let site = &sim.state.sites[&"donam-seowon".parse::<SiteId>().unwrap()];
    let fixture = |name: &str| {
        let view = firmware_sim::api::site_view(site, &sim.state);
        view.fixtures
            .into_iter()
            .find(|f| f.id == name)
            .unwrap()
            .channels
    };
    let settings = Settings {
        controller: id.clone(),
        addr: sim.endpoints.get(&id).unwrap(),
        unit: 1,
        profile: Arc::new(lib.profiles[&"ns-led-v1".parse().unwrap()].clone()),
        controller_fades: false,
        deadline: Duration::from_millis(300),
        poll_every: Duration::from_millis(50),
    };
    let mut channels = vec![0u8; 512];
    channels[0] = 200;
    let (levels_tx, levels) = watch::channel(Levels {
        channels: channels.clone(),
        fade: None,
    });
    let (health_tx, health) = watch::channel(Health::default());
    tokio::spawn(run(settings, levels, health_tx, shutdown.clone()));

    // Start-up: enabled, master full, the level shown.
    until("the first frame", || fixture("path-1") == [200]).await;
    assert!(health.borrow().reachable);
    // A change is written.
    channels[1] = 90;
    levels_tx.send_replace(Levels {
        channels: channels.clone(),
        fade: None,
    });
    until("the change", || fixture("path-2") == [90]).await;
    // The device reboots (10 s on: its uptime falls back to 0) and loses its levels; the
    // driver sees the uptime drop and writes everything again, with no new frame.
    clock.advance(Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(120)).await;
    let reboot = Fault {
        controller: id.clone(),
        kind: FaultKind::Reboot { down_ms: 0 },
    };
    sim.state.apply(&reboot).unwrap();
    assert_eq!(fixture("path-1"), [0], "the reboot lost the levels");
    until("the rewrite", || health.borrow().rewrites == 1).await;
    until("the levels back", || fixture("path-1") == [200]).await;
    assert_eq!(fixture("path-2"), [90]);

    // Offline: requests go unanswered, the driver says so and keeps trying; back: restored.
    let offline = Fault {
        controller: id.clone(),
        kind: FaultKind::Offline,
    };
    sim.state.apply(&offline).unwrap();
    until("unreachable", || !health.borrow().reachable).await;
    assert!(
        health
            .borrow()
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("no answer")
    );
    // While it is away it reboots too, so only a full rewrite brings it back.
    sim.state.apply(&reboot).unwrap();
    sim.state.clear(Some(&id));
    until("reachable again", || health.borrow().reachable).await;
    until("the levels back after the spell", || {
        fixture("path-1") == [200]
    })
    .await;
    shutdown.cancel();
}

#[tokio::test]
async fn a_profile_that_never_refreshes_is_driven_too() {
    let lib = check(&shipped_library()).library;
    let (sim, _clock, shutdown) = crate::start_sim(&lib, &["donam-seowon"]).await;
    let id: ControllerId = "donam-dmx".parse().unwrap();
    let mut profile = lib.profiles[&"pxm-px333".parse().unwrap()].clone();
    profile.write.refresh = None;
    let settings = Settings {
        controller: id.clone(),
        addr: sim.endpoints.get(&id).unwrap(),
        unit: 1,
        profile: Arc::new(profile),
        controller_fades: false,
        deadline: Duration::from_millis(300),
        poll_every: Duration::from_millis(50),
    };
    let mut channels = vec![0u8; 512];
    channels[0] = 77;
    let (_levels_tx, levels) = watch::channel(Levels {
        channels,
        fade: None,
    });
    let (health_tx, health) = watch::channel(Health::default());
    tokio::spawn(run(settings, levels, health_tx, shutdown.clone()));
    until("the first write", || {
        health.borrow().written.as_ref().is_some_and(|w| w[0] == 77)
    })
    .await;
    assert!(health.borrow().reachable);
    shutdown.cancel();
}
