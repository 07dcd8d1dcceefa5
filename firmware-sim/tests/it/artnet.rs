//! Art-Net 4 over UDP from the core's encoder: ArtDmx, ArtPoll → ArtPollReply, ArtSync.

use nightscape_core::addr::ArtNetPortAddress;
use nightscape_core::codec::artnet::{self, ArtDmx, ArtPoll, Packet};
use tokio::net::UdpSocket;

use crate::common::start;

fn dmx(sequence: u8, level: u8) -> Vec<u8> {
    ArtDmx {
        sequence,
        physical: 0,
        port_address: ArtNetPortAddress::new(0).unwrap(),
        data: vec![level; 512],
    }
    .encode()
}

#[tokio::test]
async fn a_node_takes_frames_answers_polls_and_follows_sync() {
    let run = start(&["nonsan-city-hall"], None).await;
    let to = run.addr("cityhall-art");
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let taken = |n: u64| move |r: &crate::common::Running| r.counters("cityhall-art").accepted >= n;

    socket.send_to(&dmx(1, 200), to).await.unwrap();
    run.until("the frame", taken(1)).await;
    assert_eq!(run.fixture("nonsan-city-hall", "wash-1").0[0], 200);

    socket
        .send_to(
            &ArtPoll {
                flags: 0,
                diag_priority: 0,
            }
            .encode(),
            to,
        )
        .await
        .unwrap();
    let mut buf = [0u8; 1500];
    let (len, _) = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        socket.recv_from(&mut buf),
    )
    .await
    .unwrap()
    .unwrap();
    let Packet::PollReply(reply) = artnet::decode(&buf[..len]).unwrap() else {
        panic!("not an ArtPollReply");
    };
    // The node carries 0:0:0 and 0:0:1.
    assert_eq!(
        (reply.net_switch, reply.sub_switch, reply.num_ports),
        (0, 0, 2)
    );
    assert_eq!(&reply.sw_out[..2], [0, 1]);

    // After an ArtSync, frames wait for the next one.
    socket.send_to(&artnet::encode_sync(), to).await.unwrap();
    run.until("the sync", taken(2)).await;
    socket.send_to(&dmx(2, 50), to).await.unwrap();
    run.until("the held frame", taken(3)).await;
    assert_eq!(run.fixture("nonsan-city-hall", "wash-1").0[0], 200, "held");
    socket.send_to(&artnet::encode_sync(), to).await.unwrap();
    run.until("the second sync", taken(4)).await;
    assert_eq!(run.fixture("nonsan-city-hall", "wash-1").0[0], 50);
    // Held again, then the syncs stop: after 4 s frames show at once, and the old held
    // frame never comes back.
    socket.send_to(&dmx(3, 60), to).await.unwrap();
    run.until("a held frame", taken(5)).await;
    run.clock.advance(std::time::Duration::from_secs(5));
    socket.send_to(&dmx(4, 120), to).await.unwrap();
    run.until("a frame out of sync mode", taken(6)).await;
    assert_eq!(run.fixture("nonsan-city-hall", "wash-1").0[0], 120);
    socket.send_to(&artnet::encode_sync(), to).await.unwrap();
    run.until("a late sync", taken(7)).await;
    assert_eq!(run.fixture("nonsan-city-hall", "wash-1").0[0], 120);
}
