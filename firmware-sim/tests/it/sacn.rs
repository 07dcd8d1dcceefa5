//! sACN over UDP from the core's encoder: priorities, termination, loss, sync.

use std::time::Duration;

use nightscape_core::codec::sacn::{DataPacket, OPTION_TERMINATED, SyncPacket};
use tokio::net::UdpSocket;

use crate::common::{Running, start};

fn packet(cid: u8, priority: u8, sequence: u8, level: u8) -> DataPacket {
    DataPacket {
        cid: [cid; 16],
        source_name: format!("source {cid}"),
        priority,
        sync_address: 0,
        sequence,
        options: 0,
        universe: 1,
        start_code: 0,
        slots: vec![level; 510],
    }
}

struct Sender {
    socket: UdpSocket,
    to: std::net::SocketAddr,
}

impl Sender {
    async fn send(&self, run: &Running, p: &DataPacket) {
        let before = run.counters("gyebaek-px-north");
        self.socket.send_to(&p.encode(), self.to).await.unwrap();
        run.until("the packet to be taken", |r| {
            let now = r.counters("gyebaek-px-north");
            now.accepted + now.out_of_sequence + now.ignored
                > before.accepted + before.out_of_sequence + before.ignored
        })
        .await;
    }
}

fn first_slot(run: &Running) -> u8 {
    run.fixture("gyebaek-bridge", "rail-n-west").0[0]
}

#[tokio::test]
async fn the_higher_priority_wins_and_the_lower_takes_over_when_it_stops_or_goes_silent() {
    let run = start(&["gyebaek-bridge"], None).await;
    let tx = Sender {
        socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        to: run.addr("gyebaek-px-north"),
    };
    tx.send(&run, &packet(1, 100, 1, 10)).await;
    assert_eq!(first_slot(&run), 10);
    tx.send(&run, &packet(2, 150, 1, 200)).await;
    assert_eq!(first_slot(&run), 200, "150 beats 100");
    tx.send(&run, &packet(1, 100, 2, 20)).await;
    assert_eq!(first_slot(&run), 200, "100 does not break through");
    // 150 says it stops: 100 at once.
    let mut stop = packet(2, 150, 2, 200);
    stop.options = OPTION_TERMINATED;
    tx.send(&run, &stop).await;
    assert_eq!(first_slot(&run), 20);
    // 150 is back, then just goes silent: 100 again 2.5 s later, not before.
    tx.send(&run, &packet(2, 150, 3, 220)).await;
    assert_eq!(first_slot(&run), 220);
    run.clock.advance(Duration::from_millis(1200));
    tx.send(&run, &packet(1, 100, 3, 30)).await;
    run.clock.advance(Duration::from_millis(1200));
    tx.send(&run, &packet(1, 100, 4, 30)).await;
    assert_eq!(first_slot(&run), 220, "2.4 s of silence: still 150");
    run.clock.advance(Duration::from_millis(200));
    assert_eq!(first_slot(&run), 30, "2.6 s: 150 is gone");
    // Old sequence numbers are dropped and counted.
    tx.send(&run, &packet(1, 100, 2, 99)).await;
    assert_eq!(first_slot(&run), 30);
    assert!(run.counters("gyebaek-px-north").out_of_sequence >= 1);
}

#[tokio::test]
async fn synchronized_data_waits_for_its_sync_packet() {
    let run = start(&["gyebaek-bridge"], None).await;
    let tx = Sender {
        socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        to: run.addr("gyebaek-px-north"),
    };
    let mut p = packet(3, 100, 1, 77);
    p.sync_address = 7000;
    tx.send(&run, &p).await;
    assert_eq!(first_slot(&run), 0, "held until the sync");
    let sync = SyncPacket {
        cid: [3; 16],
        sequence: 1,
        sync_address: 7000,
    };
    let before = run.counters("gyebaek-px-north").accepted;
    tx.socket.send_to(&sync.encode(), tx.to).await.unwrap();
    run.until("the sync", |r| {
        r.counters("gyebaek-px-north").accepted > before
    })
    .await;
    assert_eq!(first_slot(&run), 77);
    // Synchronized data whose sync never comes shows once the sync source is lost (2.5 s).
    let mut late = packet(3, 100, 2, 88);
    late.sync_address = 7000;
    tx.send(&run, &late).await;
    assert_eq!(first_slot(&run), 77);
    run.clock.advance(Duration::from_millis(2600));
    assert_eq!(first_slot(&run), 88);
}
