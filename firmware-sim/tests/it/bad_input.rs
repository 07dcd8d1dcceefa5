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
    // sACN: not ACN at all, then a packet cut short.
    let sacn = run.addr("gyebaek-px-north");
    socket.send_to(b"hello, world", sacn).await.unwrap();
    let mut good = nightscape_core::codec::sacn::DataPacket {
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
    good.truncate(200);
    socket.send_to(&good, sacn).await.unwrap();
    run.until("two malformed sACN packets", |r| {
        r.counters("gyebaek-px-north").malformed >= 2
    })
    .await;
    assert_eq!(run.fixture("gyebaek-bridge", "rail-n-west").0[0], 0);
    // Art-Net: right identifier, too short.
    let art = run.addr("cityhall-art");
    socket.send_to(b"Art-Net\0\x00\x50", art).await.unwrap();
    run.until("a malformed Art-Net packet", |r| {
        r.counters("cityhall-art").malformed >= 1
    })
    .await;
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
