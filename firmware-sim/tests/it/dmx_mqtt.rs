//! DMX over MQTT through the machine's Mosquitto (127.0.0.1:1883), each run under its own
//! topic prefix.

use std::time::Duration;

use firmware_sim::Broker;
use rumqttc::{AsyncClient, MqttOptions, QoS};

use crate::common::start;

#[tokio::test]
async fn a_cellular_controller_takes_frames_from_the_broker() {
    let prefix = format!("test-{}-{}/", std::process::id(), crate::common::T0);
    let run = start(
        &["ganggyeong-office"],
        Some(Broker::anonymous("127.0.0.1", 1883, &prefix)),
    )
    .await;
    assert_eq!(run.sim.endpoints.topic_prefix, prefix);
    let mut options = MqttOptions::new(
        format!("sim-test-{}", std::process::id()),
        "127.0.0.1",
        1883,
    );
    options.set_keep_alive(Duration::from_secs(5));
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(options, 16);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let topic = format!("{prefix}nightscape/v1/dmx/office-cell/1");
    // The simulator subscribes once it is connected: publish until a frame lands.
    for attempt in 0u8..100 {
        client
            .publish(
                &topic,
                QoS::AtMostOnce,
                false,
                vec![attempt, 180, 90, 40, 0],
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        if run.counters("office-cell").accepted > 0 {
            break;
        }
    }
    assert_eq!(
        run.fixture("ganggyeong-office", "flood-1").0,
        [180, 90, 40, 0]
    );
    // A payload that is no DMX frame is counted and changes nothing.
    client
        .publish(&topic, QoS::AtMostOnce, false, vec![1])
        .await
        .unwrap();
    run.until("the bad frame", |r| r.counters("office-cell").malformed > 0)
        .await;
    // So is one far longer than a universe (here 70 KB), and the controller stays subscribed.
    client
        .publish(&topic, QoS::AtMostOnce, false, vec![7; 70_000])
        .await
        .unwrap();
    run.until("the long frame", |r| {
        r.counters("office-cell").malformed > 1
    })
    .await;
    client
        .publish(&topic, QoS::AtMostOnce, false, vec![9, 180, 90, 40, 0])
        .await
        .unwrap();
    run.until("a good frame after them", |r| {
        r.counters("office-cell").accepted > 1
    })
    .await;
    assert_eq!(
        run.fixture("ganggyeong-office", "flood-1").0,
        [180, 90, 40, 0]
    );
}
