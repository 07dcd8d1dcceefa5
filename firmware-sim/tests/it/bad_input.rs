//! Bad input of every protocol is counted and changes nothing.

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio_modbus::prelude::*;

use crate::common::start;

#[tokio::test]
async fn garbage_is_counted_and_leaves_the_output_alone() {
    let run = start(
        &["gyebaek-bridge", "nonsan-city-hall", "donam-seowon"],
        None,
    )
    .await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // sACN: a good frame first, so "unchanged" means something; then not ACN at all, then
    // a packet cut short.
    let sacn = run.addr("gyebaek-px-north");
    let good = nightscape_core::codec::sacn::DataPacket {
        cid: [9; 16],
        source_name: "x".into(),
        priority: 100,
        sync_address: 0,
        sequence: 1,
        options: 0,
        universe: 1,
        start_code: 0,
        slots: vec![5; 512],
    }
    .encode();
    socket.send_to(&good, sacn).await.unwrap();
    run.until("the good frame", |r| {
        r.counters("gyebaek-px-north").accepted >= 1
    })
    .await;
    assert_eq!(run.fixture("gyebaek-bridge", "rail-n-west").0[0], 5);
    socket.send_to(b"hello, world", sacn).await.unwrap();
    socket.send_to(&good[..200], sacn).await.unwrap();
    run.until("two malformed sACN packets", |r| {
        r.counters("gyebaek-px-north").malformed >= 2
    })
    .await;
    assert_eq!(run.fixture("gyebaek-bridge", "rail-n-west").0[0], 5);
    // Art-Net: a good frame, then the right identifier on a packet too short.
    let art = run.addr("cityhall-art");
    let frame = nightscape_core::codec::artnet::ArtDmx {
        sequence: 1,
        physical: 0,
        port_address: nightscape_core::addr::ArtNetPortAddress::new(0).unwrap(),
        data: vec![7; 512],
    };
    socket.send_to(&frame.encode(), art).await.unwrap();
    run.until("the good Art-Net frame", |r| {
        r.counters("cityhall-art").accepted >= 1
    })
    .await;
    socket.send_to(b"Art-Net\0\x00\x50", art).await.unwrap();
    run.until("a malformed Art-Net packet", |r| {
        r.counters("cityhall-art").malformed >= 1
    })
    .await;
    assert_eq!(run.fixture("nonsan-city-hall", "wash-1").0[0], 7);
    // Modbus: bytes that are no Modbus frame close that connection; the device goes on.
    let addr = run.addr("donam-path");
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(&[0, 1, 0, 7, 0, 2, 1, 0xff]).await.unwrap();
    drop(raw);
    run.until("a malformed Modbus frame", |r| {
        r.counters("donam-path").malformed >= 1
    })
    .await;
    let mut ctx = tcp::connect_slave(addr, Slave(1)).await.unwrap();
    assert_eq!(
        ctx.read_holding_registers(0, 1).await.unwrap().unwrap(),
        [0]
    );
}
