//! The Art-Net and sACN sender against simulated controllers: every channel of two sites
//! lands where the output map says (in synchronized frames); unchanged universes wait for
//! their keep-alive; a dark stop leaves zeros.

use std::time::Duration;

use nightscape_core::{GatewayId, SiteId, check};
use nightscape_gateway::dmx::Sender;
use nightscape_gateway::guard::destinations;
use nightscape_gateway::store::Store;

use crate::{shipped_library, temp_dir};

#[tokio::test]
async fn every_channel_lands_where_the_map_says_and_a_dark_stop_leaves_zeros() {
    let lib = check(&shipped_library()).library;
    let names = ["gyebaek-bridge", "nonsan-city-hall"];
    let (sim, _clock, shutdown) = crate::start_sim(&lib, &names).await;
    let sites: Vec<SiteId> = names.iter().map(|s| s.parse().unwrap()).collect();
    let cid = Store::open(&temp_dir("cid")).unwrap().cid().unwrap();
    for (site_id, gw) in sites.iter().zip(["gyebaek-gw", "cityhall-gw"]) {
        let site = &lib.sites[site_id];
        let gw: GatewayId = gw.parse().unwrap();
        let map = lib.output_map(site_id).unwrap();
        let to = destinations(site, &gw, Some(&sim.endpoints), true).unwrap();
        let mut sender = Sender::new(site, &map, &to, cid, "nightscape test", true)
            .await
            .unwrap();
        assert!(sender.universes() > 0);
        let channels: Vec<u8> = (0..map.channel_count())
            .map(|k| (k % 251) as u8 + 1)
            .collect();
        let sent = sender.send(&map, &channels).await.unwrap();
        assert_eq!(sent.packets, sender.universes());
        // The frame is synchronized: one sync per sACN destination, one ArtSync per node.
        assert!(sent.sync_packets > 0, "{site_id}: {sent:?}");
        let sim_site = &sim.state.sites[site_id];
        let shown = || sim_site.channels(sim.state.clock.as_ref());
        for _ in 0..500 {
            if shown() == channels {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(shown(), channels, "{site_id}: every channel as sent");
        // Nothing changed: nothing sent until the keep-alive.
        let again = sender.send(&map, &channels).await.unwrap();
        assert_eq!(
            (again.packets, again.unchanged_skipped),
            (0, sender.universes())
        );
        tokio::time::sleep(nightscape_gateway::dmx::KEEP_ALIVE).await;
        assert_eq!(
            sender.send(&map, &channels).await.unwrap().packets,
            sender.universes()
        );
        // A dark stop: zeros, then the streams end; receivers holding show the zeros.
        sender.stop(true).await.unwrap();
        for _ in 0..500 {
            if shown().iter().all(|&v| v == 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            shown().iter().all(|&v| v == 0),
            "{site_id}: dark after stop"
        );
    }
    shutdown.cancel();
}
