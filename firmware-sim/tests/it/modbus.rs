//! Modbus TCP through a tokio-modbus client, as the gateway will drive it.

use std::time::Duration;

use tokio_modbus::prelude::*;

use crate::common::start;

#[tokio::test]
async fn units_behind_one_endpoint_take_levels_and_answer_as_their_profile_says() {
    let run = start(&["donam-seowon"], None).await;
    // donam-dim-1…3 are units 1–3 of one WB-style gateway at one address.
    let addr = run.addr("donam-dim-2");
    assert_eq!(addr, run.addr("donam-dim-1"));
    let mut unit2 = tcp::connect_slave(addr, Slave(2)).await.unwrap();
    unit2
        .write_multiple_registers(0, &[255, 0, 0, 0])
        .await
        .unwrap()
        .unwrap();
    let (channels, colour) = run.fixture("donam-seowon", "yangseong-1");
    assert_eq!(channels, [255]);
    assert_ne!(colour, "#000000");
    // Unit 1's fixtures are untouched.
    assert_eq!(run.fixture("donam-seowon", "eungdo-1").0, [0]);
    // The device's own fade: 100 × 10 ms, on the simulator's clock.
    unit2.write_single_register(13, 100).await.unwrap().unwrap();
    unit2.write_single_register(0, 0).await.unwrap().unwrap();
    assert_eq!(run.fixture("donam-seowon", "yangseong-1").0, [255]);
    run.clock.advance(Duration::from_millis(500));
    assert_eq!(run.fixture("donam-seowon", "yangseong-1").0, [128]);
    run.clock.advance(Duration::from_millis(500));
    assert_eq!(run.fixture("donam-seowon", "yangseong-1").0, [0]);
    // Exceptions: more registers than the device takes, past its map, a unit nobody is.
    assert_eq!(
        unit2.write_multiple_registers(0, &[1; 5]).await.unwrap(),
        Err(ExceptionCode::IllegalDataValue)
    );
    assert_eq!(
        unit2.read_holding_registers(200, 1).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    // Uptime at input 104–105, seconds, high word first.
    run.clock.advance(Duration::from_secs(70));
    assert_eq!(
        unit2.read_input_registers(104, 2).await.unwrap().unwrap(),
        [0, 71]
    );
    let mut nobody = tcp::connect_slave(addr, Slave(9)).await.unwrap();
    assert_eq!(
        nobody.read_holding_registers(0, 1).await.unwrap(),
        Err(ExceptionCode::GatewayTargetDevice)
    );
    // A device addressed by its own IP answers unit 255 (and 0) as itself.
    let mut by_ip = tcp::connect_slave(run.addr("donam-path"), Slave(255))
        .await
        .unwrap();
    assert_eq!(
        by_ip.read_holding_registers(0, 1).await.unwrap(),
        Ok(vec![0])
    );
    let c = run.counters("donam-dim-2");
    assert!(c.accepted >= 4 && c.rejected >= 2, "{c:?}");
}

#[tokio::test]
async fn ns_led_v1_stays_dark_until_the_gateway_switches_it_on() {
    let run = start(&["nonsan-council"], None).await;
    let mut ctx = tcp::connect_slave(run.addr("council-ref"), Slave(1))
        .await
        .unwrap();
    // Levels alone: the controller is still disabled.
    ctx.write_multiple_registers(0x100, &[0xffff; 8])
        .await
        .unwrap()
        .unwrap();
    let (before, _) = run.fixture("nonsan-council", "flood-1");
    assert!(before.iter().all(|&v| v == 0), "{before:?}");
    // Fade 0, master full, enable: the start-up sequence.
    ctx.write_multiple_registers(0, &[1, 255, 0])
        .await
        .unwrap()
        .unwrap();
    let (after, colour) = run.fixture("nonsan-council", "flood-1");
    assert!(after.iter().all(|&v| v == 255), "{after:?}");
    assert_ne!(colour, "#000000");
    // Status clean, power drawn by the lit fixtures, in 0.1 W.
    let input = ctx.read_input_registers(0, 4).await.unwrap().unwrap();
    assert_eq!(input[0], 0);
    assert!(input[1] > 0, "{input:?}");
}

#[tokio::test]
async fn a_device_behind_an_rs485_bridge_takes_one_request_at_a_time() {
    let run = start(&["donam-seowon"], None).await;
    // pxm-px333 says serialize_host: 64 registers read take 141 bytes, 12.2 ms at 115,200 baud.
    let addr = run.addr("donam-dmx");
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(tcp::connect_slave(addr, Slave(1)).await.unwrap());
    }
    let start = std::time::Instant::now();
    let reads = clients.iter_mut().map(|c| c.read_holding_registers(0, 64));
    for r in futures_util::future::join_all(reads).await {
        assert_eq!(r.unwrap().unwrap().len(), 64);
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(45), "four reads in {took:?}");
}
