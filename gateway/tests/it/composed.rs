//! The gateway's parts composed by hand (the pacing task comes next): a signed plan opened as
//! from disk, the executor's frame at a virtual evening, sent by the Art-Net/sACN sender and
//! the Modbus drivers to the simulator, which shows exactly the executor's channels.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use nightscape_core::model::{FadeBy, Output};
use nightscape_core::{GatewayId, SiteId, check, plan};
use nightscape_gateway::dmx::Sender;
use nightscape_gateway::executor::Executor;
use nightscape_gateway::guard::destinations;
use nightscape_gateway::modbus::{Health, Levels, Settings, run};
use nightscape_gateway::store::{Kind, Store};
use tokio::sync::watch;

use crate::{shipped_library, temp_dir};

/// 2026-12-24 19:30 in Seoul.
const EVENING: i64 = 1_798_108_200_000;

#[tokio::test]
async fn a_plan_played_at_a_virtual_evening_shows_on_the_simulated_controllers() {
    let sources = shipped_library();
    let lib = check(&sources).library;
    let key = SigningKey::from_bytes(&[3; 32]);
    let names = ["gyebaek-bridge", "nonsan-city-hall", "donam-seowon"];
    let (sim, _clock, shutdown) = crate::start_sim(&lib, &names).await;
    for (site_name, gw_name) in names.iter().zip(["gyebaek-gw", "cityhall-gw", "donam-gw"]) {
        let site_id: SiteId = site_name.parse().unwrap();
        let gw: GatewayId = gw_name.parse().unwrap();
        // The plan, signed, saved and read back as a gateway does at start.
        let p = plan::compile(&sources, &lib, &site_id, &gw, 1, 0, 0).unwrap();
        let store = Store::open(&temp_dir("composed")).unwrap();
        store
            .save(
                Kind::Plan,
                &serde_json::to_vec(&plan::sign(p, &key)).unwrap(),
            )
            .unwrap();
        let (_, plan_lib, _) = store.load_plan(&[key.verifying_key()], &gw).plan.unwrap();
        let site = &plan_lib.sites[&site_id];

        let mut exec = Executor::new(&plan_lib, &site_id, EVENING).unwrap();
        exec.tick(EVENING);
        let channels = exec.channels().to_vec();
        assert!(channels.iter().any(|&v| v > 0), "{site_name} is lit");
        let to = destinations(site, &gw, Some(&sim.endpoints), true).unwrap();

        let cid = store.cid().unwrap();
        let mut sender = Sender::new(site, exec.map(), &to, cid, "nightscape gw", true)
            .await
            .unwrap();
        sender.send(exec.map(), &channels).await.unwrap();
        let mut drivers = Vec::new();
        for cm in exec.map().controllers() {
            let c = &site.controllers[cm.index];
            let Output::Modbus {
                unit,
                profile,
                fade_by,
                ..
            } = &c.output
            else {
                continue;
            };
            let profile = Arc::new(plan_lib.profiles[profile].clone());
            let mut own = vec![0u8; usize::from(profile.levels.channels)];
            cm.sinks[0].gather(&channels, &mut own);
            let (tx, levels) = watch::channel(Levels {
                channels: own,
                fade: None,
            });
            let (health_tx, health) = watch::channel(Health::default());
            let settings = Settings {
                controller: c.id.clone(),
                addr: sim.endpoints.get(&c.id).unwrap(),
                unit: *unit,
                profile,
                controller_fades: *fade_by == FadeBy::Controller,
                deadline: Duration::from_millis(500),
                poll_every: Duration::from_secs(1),
            };
            tokio::spawn(run(settings, levels, health_tx, shutdown.clone()));
            drivers.push((tx, health));
        }
        let shown = || sim.state.sites[&site_id].channels(sim.state.clock.as_ref());
        for _ in 0..500 {
            if shown() == channels {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            shown(),
            channels,
            "{site_name}: the simulator shows the executor's frame"
        );
    }
    shutdown.cancel();
}
