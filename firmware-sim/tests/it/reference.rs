//! The simulator against independent implementations from PyPI (`.ci/run` installs them): a
//! pymodbus client drives a simulated controller over TCP; the python `sacn` library's
//! sources and a `stupidArtnet` frame arrive over UDP. Agreeing with our own codecs proves
//! little about the wire; agreeing with these does.

use std::process::Command;

use crate::common::start;

#[tokio::test]
async fn a_pymodbus_client_gets_the_answers_the_profile_promises() {
    let run = start(&["donam-seowon"], None).await;
    let addr = run.addr("donam-path");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/pymodbus_check.py");
    let child = Command::new("python3")
        .arg(script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let text = finished(child).await;
    assert!(text.contains("pymodbus agrees"), "{text}");
    // Master at 128 of 255: channel 1 (0xff) shows at half.
    assert_eq!(run.fixture("donam-seowon", "path-1").0, [128]);
}

fn python(args: &[String]) -> std::process::Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/python_senders.py");
    Command::new("python3")
        .arg(script)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3")
}

async fn finished(child: std::process::Child) -> String {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

#[tokio::test]
async fn the_python_sacn_library_s_sources_merge_by_priority_and_terminate() {
    // The library sends to port 5568 only: endpoints on addresses of their own (net 90).
    let run = crate::common::start_bound(
        &["gyebaek-bridge"],
        None,
        firmware_sim::Bind::Addresses { net: 90 },
    )
    .await;
    let addr = run.addr("gyebaek-px-north");
    assert_eq!(addr.port(), 5568);
    let child = python(&["sacn".into(), addr.ip().to_string(), "1".into()]);
    let first = |r: &crate::common::Running| r.fixture("gyebaek-bridge", "rail-n-west").0[0];
    run.until("priority 150 to win", |r| first(r) == 200).await;
    run.until("priority 100 once 150 stops", |r| first(r) == 10)
        .await;
    let text = finished(child).await;
    assert!(text.contains("low stopped"), "{text}");
    // Both stopped: the receiver holds the last look.
    assert_eq!(first(&run), 10);
    assert_eq!(run.counters("gyebaek-px-north").malformed, 0);
}

#[tokio::test]
async fn a_stupid_artnet_frame_lands_where_the_map_says() {
    let run = start(&["nonsan-city-hall"], None).await;
    let addr = run.addr("cityhall-art");
    let child = python(&[
        "artnet".into(),
        addr.ip().to_string(),
        addr.port().to_string(),
        "0".into(),
    ]);
    finished(child).await;
    run.until("the frame", |r| r.counters("cityhall-art").accepted > 0)
        .await;
    // wash-1 is RGBW at slot 1: green full.
    assert_eq!(run.fixture("nonsan-city-hall", "wash-1").0, [0, 255, 0, 0]);
    assert_eq!(run.counters("cityhall-art").malformed, 0);
}

#[tokio::test]
async fn a_paho_client_s_frame_through_the_broker_lands_on_the_cellular_controller() {
    let prefix = format!("paho-{}/", std::process::id());
    let run = start(
        &["ganggyeong-office"],
        Some(firmware_sim::Broker::anonymous("127.0.0.1", 1883, &prefix)),
    )
    .await;
    let topic = format!("{prefix}nightscape/v1/dmx/office-cell/1");
    // The simulator subscribes once connected: publish until the frame lands.
    for _ in 0..50 {
        finished(python(&["paho".into(), topic.clone()])).await;
        if run.counters("office-cell").accepted > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        run.fixture("ganggyeong-office", "flood-1").0,
        [10, 20, 30, 40]
    );
}
