//! DMX over MQTT through the machine's Mosquitto: the gateway's publisher and the
//! simulator's cellular controller, under a topic prefix of this run.

use std::time::Duration;

use firmware_sim::{Bind, Broker, SimConfig};
use nightscape_core::clock::{Clock, VirtualClock};
use nightscape_core::{SiteId, check};
use nightscape_gateway::dmx_mqtt::Publisher;
use rumqttc::{AsyncClient, MqttOptions};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::shipped_library;

#[tokio::test]
async fn the_publisher_s_frames_reach_the_cellular_controller() {
    let lib = check(&shipped_library()).library;
    let prefix = format!("gw-test-{}/", std::process::id());
    let shutdown = CancellationToken::new();
    let site_id: SiteId = "ganggyeong-office".parse().unwrap();
    let sim = firmware_sim::start(
        SimConfig {
            library: lib.clone(),
            sites: vec![site_id.clone()],
            bind: Bind::Ports,
            broker: Some(Broker::anonymous("127.0.0.1", 1883, &prefix)),
            multicast: false,
        },
        Arc::new(VirtualClock::new(1_798_000_000_000)) as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let map = lib.output_map(&site_id).unwrap();
    let mut publisher = Publisher::new(&map, &prefix, |_| true);
    assert_eq!(publisher.universes(), 1);
    let mut options = MqttOptions::new(format!("gw-{}", std::process::id()), "127.0.0.1", 1883);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(options, 64);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let channels: Vec<u8> = (0..map.channel_count())
        .map(|k| (k * 3 % 250) as u8 + 1)
        .collect();
    let site = &sim.state.sites[&site_id];
    let shown = || site.channels(sim.state.clock.as_ref());
    // The first message is retained, so the simulator gets it whenever it subscribes.
    let first = publisher.publish(&client, &map, &channels);
    assert_eq!(first.messages, 1);
    for _ in 0..500 {
        if shown() == channels {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(shown(), channels);
    // Unchanged: nothing until the keep-alive; changed within 100 ms: waits its turn.
    assert_eq!(publisher.publish(&client, &map, &channels).messages, 0);
    let mut changed = channels.clone();
    changed[0] = 250;
    assert_eq!(publisher.publish(&client, &map, &changed).messages, 0);
    tokio::time::sleep(Duration::from_millis(110)).await;
    assert_eq!(publisher.publish(&client, &map, &changed).messages, 1);
    for _ in 0..500 {
        if shown() == changed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(shown(), changed);
    // Leave no retained message behind on the machine's broker.
    let topic =
        nightscape_core::codec::dmx_mqtt::topic(&prefix, &"office-cell".parse().unwrap(), 1);
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, true, Vec::new())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.cancel();
}
