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

/// A Modbus device that is not our simulator: a register file that starts at zero (a
/// device just powered up) and a log of every write in the order it arrived.
#[derive(Clone, Default)]
pub struct RecordingDevice {
    pub inner: Arc<std::sync::Mutex<RecordingState>>,
}

#[derive(Default)]
pub struct RecordingState {
    pub registers: std::collections::HashMap<u16, u16>,
    /// For each write: its first register, and a copy of every register after it.
    pub writes: Vec<(u16, std::collections::HashMap<u16, u16>)>,
}

impl RecordingDevice {
    /// Serves the device on a free loopback port until the task is aborted.
    pub async fn serve(&self) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let device = self.clone();
        let serving = tokio::spawn(async move {
            let on_connected = move |stream, _addr| {
                let device = device.clone();
                async move { Ok(Some((device, stream))) }
            };
            let _ = server.serve(&on_connected, |_| {}).await;
        });
        (addr, serving)
    }

    /// The registers of `levels` as they were when the first write to one of `switches`
    /// (master, enable) arrived; `None` before it.
    pub fn levels_at_switch_on(
        &self,
        switches: &[u16],
        levels: std::ops::Range<u16>,
    ) -> Option<Vec<u16>> {
        let d = self.inner.lock().unwrap();
        let (_, at) = d
            .writes
            .iter()
            .find(|(first, _)| switches.contains(first))?;
        Some(levels.map(|r| at.get(&r).copied().unwrap_or(0)).collect())
    }
}

impl tokio_modbus::server::Service for RecordingDevice {
    type Request = tokio_modbus::SlaveRequest<'static>;
    type Response = tokio_modbus::Response;
    type Exception = tokio_modbus::ExceptionCode;
    type Future = std::future::Ready<Result<Self::Response, Self::Exception>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        use tokio_modbus::{Request, Response};
        let mut d = self.inner.lock().unwrap();
        let mut wrote = |start: u16, values: &[u16]| {
            for (i, v) in values.iter().enumerate() {
                d.registers.insert(start.wrapping_add(i as u16), *v);
            }
            let after = d.registers.clone();
            d.writes.push((start, after));
        };
        let answer = match req.request {
            Request::WriteMultipleRegisters(start, values) => {
                wrote(start, &values);
                Response::WriteMultipleRegisters(start, values.len() as u16)
            }
            Request::WriteSingleRegister(register, value) => {
                wrote(register, &[value]);
                Response::WriteSingleRegister(register, value)
            }
            Request::ReadHoldingRegisters(start, n) => Response::ReadHoldingRegisters(
                (0..n)
                    .map(|i| {
                        d.registers
                            .get(&start.wrapping_add(i))
                            .copied()
                            .unwrap_or(0)
                    })
                    .collect(),
            ),
            Request::ReadInputRegisters(_, n) => {
                Response::ReadInputRegisters(vec![0; usize::from(n)])
            }
            _ => return std::future::ready(Err(tokio_modbus::ExceptionCode::IllegalFunction)),
        };
        std::future::ready(Ok(answer))
    }
}

#[tokio::test]
async fn the_driver_switches_the_device_on_only_after_the_first_frame() {
    // Seen: zero levels written, then master and enable, then the scene 6 ms later — the
    // driver had connected before the executor's first frame and started the device with a
    // placeholder. No channels is "no frame yet": the driver connects and reads, and writes
    // nothing until the frame comes.
    let lib = check(&shipped_library()).library;
    let profile = Arc::new(lib.profiles[&"ns-led-v1".parse().unwrap()].clone());
    let device = RecordingDevice::default();
    let (addr, serving) = device.serve().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let settings = Settings {
        controller: "donam-path".parse().unwrap(),
        addr,
        unit: 1,
        profile: profile.clone(),
        controller_fades: false,
        deadline: Duration::from_millis(300),
        poll_every: Duration::from_millis(20),
    };
    let (levels_tx, levels) = watch::channel(Levels::default());
    let (health_tx, health) = watch::channel(Health::default());
    tokio::spawn(run(settings, levels, health_tx, shutdown.clone()));
    until("the device read", || health.borrow().reachable).await;
    // Several polls while no frame has come: nothing written.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(device.inner.lock().unwrap().writes.is_empty());

    let mut channels = vec![0u8; usize::from(profile.levels.channels)];
    channels[0] = 200;
    channels[5] = 17;
    levels_tx.send_replace(Levels {
        channels: channels.clone(),
        fade: None,
    });
    let meant = nightscape_core::codec::modbus::level_registers(&profile, &channels);
    let start = profile.levels.start.get();
    let switches = [
        profile.master.unwrap().register.get(),
        profile.enable.unwrap().register.get(),
    ];
    let levels = start..start + meant.len() as u16;
    until("switched on", || {
        device
            .levels_at_switch_on(&switches, levels.clone())
            .is_some()
    })
    .await;
    assert_eq!(
        device.levels_at_switch_on(&switches, levels),
        Some(meant),
        "the levels when master or enable was written"
    );
    shutdown.cancel();
    serving.abort();
}
