//! The live preview page in real headless Chromium (driven through chromedriver's WebDriver
//! protocol): a frame sent over Art-Net shows in the screenshot at the fixture's position in
//! the colour the state API reports.

use std::time::Duration;

use nightscape_core::addr::ArtNetPortAddress;
use nightscape_core::codec::artnet::ArtDmx;
use serde_json::{Value, json};
use tokio::net::UdpSocket;

use crate::common::start;
use crate::webdriver::Browser;

#[tokio::test]
async fn the_preview_shows_what_the_controllers_received() {
    let run = start(&["nonsan-city-hall"], None).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    let app = firmware_sim::api::router(run.sim.state.clone(), crate::api::access());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // wash-1 (RGBW at 0:0:0 slot 1) full red; wash-2 (slot 5) stays dark.
    let mut data = vec![0u8; 512];
    data[0] = 255;
    let frame = ArtDmx {
        sequence: 1,
        physical: 0,
        port_address: ArtNetPortAddress::new(0).unwrap(),
        data,
    };
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&frame.encode(), run.addr("cityhall-art"))
        .await
        .unwrap();
    run.until("the frame", |r| r.counters("cityhall-art").accepted > 0)
        .await;
    let (_, red) = run.fixture("nonsan-city-hall", "wash-1");
    assert_eq!(red, "#ff0000");

    let browser = Browser::start(1280, 800).await;
    browser
        .go(&format!("http://{api}/?site=nonsan-city-hall"))
        .await;
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = browser
            .run("const g = document.querySelector('[data-fixture=\"wash-1\"]'); return g ? g.dataset.colour || null : null;")
            .await;
        if shown == json!("#ff0000") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        shown,
        json!("#ff0000"),
        "the page shows what the API reports"
    );
    let centre = |fixture: &str| {
        format!(
            "const r = document.querySelector('[data-fixture=\"{fixture}\"] circle').getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];"
        )
    };
    let at = |v: &Value| (v[0].as_f64().unwrap() as u32, v[1].as_f64().unwrap() as u32);
    let lit = at(&browser.run(&centre("wash-1")).await);
    let dark = at(&browser.run(&centre("wash-2")).await);
    let png = browser.screenshot().await;
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sim-preview.png");
    std::fs::write(&out, &png).unwrap();
    drop(browser);

    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let channels = frame.color_type.samples();
    let pixel = |(x, y): (u32, u32)| {
        let i = (y as usize * frame.width as usize + x as usize) * channels;
        (buf[i], buf[i + 1], buf[i + 2])
    };
    let (r, g, b) = pixel(lit);
    assert!(
        r > 200 && g < 60 && b < 60,
        "wash-1 at {lit:?} is ({r}, {g}, {b}) in {}",
        out.display()
    );
    let (r, g, b) = pixel(dark);
    assert!(
        r < 40 && g < 40 && b < 40,
        "wash-2 at {dark:?} is ({r}, {g}, {b})"
    );
}
