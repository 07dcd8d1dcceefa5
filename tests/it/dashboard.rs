//! The dashboard against `nightscape up` (the server, every gateway and the simulator, one
//! process): an operator's override made on a site page reaches the simulated fixture, the
//! page's picture and fixture list show it, and the simulator's state API agrees.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::system::{all_in_sync, free_port, http, login_as, scratch, spawn_up_with};
use crate::webdriver::{Browser, call};

const SITE: &str = "nonsan-city-hall";
/// A facade wash: civic white in the evening, blue in the blue-hour scene.
const FIXTURE: &str = "wash-1";

fn rgb(hex: &str) -> [i32; 3] {
    let v = |k: usize| i32::from_str_radix(hex.get(1 + 2 * k..3 + 2 * k).unwrap_or("00"), 16);
    [v(0).unwrap_or(0), v(1).unwrap_or(0), v(2).unwrap_or(0)]
}

fn near(a: [i32; 3], b: [i32; 3], tolerance: i32) -> bool {
    a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= tolerance)
}

/// What the simulated controllers emit at the fixture now.
async fn simulated(sim: &str) -> [i32; 3] {
    let site = call(sim, "GET", &format!("/api/sites/{SITE}"), None).await;
    let colour = site["fixtures"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["id"] == FIXTURE))
        .and_then(|f| f["colour"].as_str())
        .unwrap_or_else(|| panic!("no {FIXTURE} in the simulator: {site}"));
    rgb(colour)
}

/// The fixture's colour as the page lists it, and the picture's pixel where it is drawn.
async fn on_page(browser: &Browser) -> Option<([i32; 3], [i32; 3])> {
    let got = browser
        .run_async(&format!(
            "(async () => {{ try {{ const picture = await (await fetch('/api/sites/{SITE}/preview.json?width=800')).json();
             const f = picture.fixtures.find((f) => f.id === '{FIXTURE}');
             const listed = document.querySelector('#fixture-list [data-fixture=\"{FIXTURE}\"]');
             if (!f || !listed) {{ done(null); return; }}
             const img = new Image();
             img.onload = () => {{
               const c = document.createElement('canvas');
               c.width = img.naturalWidth; c.height = img.naturalHeight;
               const g = c.getContext('2d');
               g.drawImage(img, 0, 0);
               done([listed.dataset.colour, Array.from(g.getImageData(f.x, f.y, 1, 1).data).slice(0, 3)]);
             }};
             img.onerror = () => done('the picture did not load');
             const png = await fetch('/api/sites/{SITE}/preview.png?width=800', {{ cache: 'no-store' }});
             img.src = URL.createObjectURL(await png.blob()); }} catch (e) {{ done(String(e)); }} }})();"
        ))
        .await;
    if !got.is_array() {
        eprintln!("the page's answer: {got}");
    }
    let listed = rgb(got.get(0)?.as_str()?);
    let p = got.get(1)?.as_array()?;
    let pixel = [0, 1, 2].map(|k| p[k].as_i64().unwrap_or(0) as i32);
    Some((listed, pixel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_made_on_the_site_page_reaches_the_simulated_fixture_and_the_picture() {
    let data = scratch("dashboard");
    let mqtt = free_port();
    // Real time from a Thursday evening: City Hall plays its civic white.
    let up = spawn_up_with(&data, mqtt, &["--start", "2026-11-26T19:00"]);
    let admin = login_as(&up.http, &up.password).await;
    all_in_sync(&up.http, &admin).await;
    let (status, reply) = http(
        &up.http,
        "PUT",
        "/api/users/olivia",
        &admin,
        &json!({"password": "a-long-password-1", "role": "operator", "sites": [SITE]}).to_string(),
    )
    .await;
    assert!(status < 300, "{reply}");

    let browser = Browser::start(1280, 800).await;
    let base = format!("http://{}", up.http);
    browser.log_in(&base, "olivia", "a-long-password-1").await;
    browser.go(&format!("{base}/sites/{SITE}")).await;
    browser.wait_for("the fixture list",
        &format!(
            "return document.querySelector('#fixture-list [data-fixture=\"{FIXTURE}\"]') !== null;"
        ),
    )
    .await;

    // Before: the page, its picture and the simulator agree on a white wash.
    let before_sim = simulated(&up.sim_http).await;
    let (before_listed, before_pixel) = on_page(&browser).await.expect("the fixture on the page");
    assert!(
        near(before_listed, before_sim, 12),
        "page {before_listed:?} and simulator {before_sim:?} agree before"
    );
    assert!(
        before_pixel[2] - before_pixel[0] < 30,
        "the picture shows no blue at the fixture before: {before_pixel:?}"
    );

    // The operator plays the blue-hour scene for 45 minutes from the page.
    browser
        .run("document.getElementById('scene').value = 'cityhall-blue-hour'; document.getElementById('minutes').value = '45'; document.getElementById('reason').value = '방문객 안내'; document.querySelector('#override button').click(); return true;")
        .await;
    let clicked = Instant::now();
    let first_change = loop {
        if !near(simulated(&up.sim_http).await, before_sim, 12) {
            break clicked.elapsed();
        }
        assert!(
            clicked.elapsed() < Duration::from_secs(10),
            "the simulated fixture never changed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("click → simulated fixture changing: {first_change:?}");
    assert!(
        first_change < Duration::from_secs(2),
        "the change reached the fixture within two seconds, not {first_change:?}"
    );

    // The scene fades in over 8 s; then the page, its picture and the simulator agree again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (after_sim, after_listed, after_pixel) = loop {
        let sim = simulated(&up.sim_http).await;
        if let Some((listed, pixel)) = on_page(&browser).await
            && near(listed, sim, 12)
            && sim[2] > sim[0] + 40
        {
            break (sim, listed, pixel);
        }
        assert!(
            Instant::now() < deadline,
            "the page and the simulator did not settle on blue: simulator {sim:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!(
        "settled: simulator {after_sim:?}, page {after_listed:?}, picture {after_pixel:?}, in {:?}",
        clicked.elapsed()
    );
    assert!(
        after_pixel[2] > after_pixel[0] + 40 && after_pixel[2] > after_pixel[1],
        "the picture shows blue at the fixture: {after_pixel:?}"
    );
    // And the page says the gateway has acknowledged the new orders.
    browser.wait_for("the acknowledgement",
        "const g = document.getElementById('gateways'); return g && g.textContent.includes(g.dataset.acked) && !g.textContent.includes(g.dataset.waiting);",
    )
    .await;
    drop(browser);

    // The main pages of the running city, in Korean, at a desk and on a phone: the docs'
    // screenshots are these (NIGHTSCAPE_SCREENSHOTS=docs/screenshots).
    let dir = std::env::var_os("NIGHTSCAPE_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir).unwrap();
    for (width, height) in [(1280, 800), (390, 844)] {
        let browser = Browser::start(width, height).await;
        browser.log_in(&base, "admin", &up.password).await;
        for (name, path) in [
            ("overview", "/overview".to_owned()),
            ("site", format!("/sites/{SITE}")),
            ("library", "/library".to_owned()),
            (
                "editor",
                "/library/sites/nonsan-city-hall/scenes/cityhall-blue-hour.toml".to_owned(),
            ),
            ("schedule", "/schedule?month=2026-12".to_owned()),
            ("faults", "/faults".to_owned()),
            ("energy", "/energy".to_owned()),
            ("city", "/city".to_owned()),
            ("audit", "/audit".to_owned()),
        ] {
            browser.go(&format!("{base}{path}")).await;
            browser.wait_for(&path,
                "return document.readyState === 'complete' && (document.images.length === 0 || document.images[0].complete);",
            )
            .await;
            std::fs::write(
                dir.join(format!("dashboard-{name}-{width}.png")),
                browser.screenshot().await,
            )
            .unwrap();
        }
    }
    drop(up);
    let _ = std::fs::remove_dir_all(&data);
}
