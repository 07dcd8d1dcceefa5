//! Commissioning against the simulator: Art-Net nodes answer ArtPoll with their
//! port-addresses, Modbus controllers answer a probe with their readings, sACN receivers
//! are not asked, and a controller that is offline is named as silent.

use std::time::Duration;

use firmware_sim::faults::{Fault, FaultKind};
use nightscape_core::{GatewayId, SiteId, check};
use nightscape_gateway::commission::{Answer, discover, report};
use nightscape_gateway::guard::destinations;

use crate::shipped_library;

#[tokio::test]
async fn nodes_and_controllers_answer_and_an_offline_one_is_named() {
    let lib = check(&shipped_library()).library;
    let names = ["nonsan-culture-center", "nonsan-city-hall"];
    let (sim, _clock, shutdown) = crate::start_sim(&lib, &names).await;
    let wait = Duration::from_millis(500);

    let hall: SiteId = "nonsan-city-hall".parse().unwrap();
    let site = &lib.sites[&hall];
    let gw: GatewayId = "cityhall-gw".parse().unwrap();
    let to = destinations(site, &gw, Some(&sim.endpoints), true).unwrap();
    let found = discover(site, &lib.profiles, &to, true, wait).await;
    assert_eq!(found.len(), site.controllers.len());
    for f in &found {
        let Answer::ArtNet(nodes) = &f.answer else {
            panic!("{f:?}");
        };
        assert_eq!(nodes.len(), 1, "{f:?}");
        assert!(!nodes[0].port_addresses.is_empty());
        assert!(!f.silent());
    }

    let culture: SiteId = "nonsan-culture-center".parse().unwrap();
    let site = &lib.sites[&culture];
    let gw: GatewayId = "culture-gw".parse().unwrap();
    let to = destinations(site, &gw, Some(&sim.endpoints), true).unwrap();
    let found = discover(site, &lib.profiles, &to, true, wait).await;
    let modbus = found
        .iter()
        .find(|f| matches!(f.answer, Answer::Modbus { .. }))
        .expect("the Modbus controller answered");
    let Answer::Modbus { readings, .. } = &modbus.answer else {
        unreachable!()
    };
    assert!(
        readings.uptime.is_some() || readings.status.is_some(),
        "{readings:?}"
    );
    assert!(
        found
            .iter()
            .any(|f| matches!(f.answer, Answer::NotAsked(_))),
        "sACN not asked"
    );
    let text = report(&found);
    assert!(text.contains("Modbus answered"), "{text}");

    sim.state
        .apply(&Fault {
            controller: modbus.controller.clone(),
            kind: FaultKind::Offline,
        })
        .unwrap();
    let found = discover(site, &lib.profiles, &to, true, wait).await;
    let silent: Vec<_> = found.iter().filter(|f| f.silent()).collect();
    assert_eq!(silent.len(), 1);
    assert_eq!(silent[0].controller, modbus.controller);
    assert!(report(&found).contains("NO ANSWER"));
    shutdown.cancel();
}
