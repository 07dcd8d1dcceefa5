//! The dashboard in real headless Chromium: the login page, the city overview with every
//! site, and the language switch remembered.

use serde_json::json;

use crate::common::*;
use crate::webdriver::Browser;

#[tokio::test]
async fn staff_log_in_see_every_site_and_switch_the_language() {
    let (server, shutdown, tracker) = running("web", None).await;
    let base = format!("http://{}", server.addr);
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));

    let browser = Browser::start(1280, 800).await;
    browser.go(&format!("{base}/overview")).await;
    // Not logged in: the login page, in Korean.
    browser.wait_for("the login page",
        "return location.pathname === '/login' && document.querySelector('form.login') !== null;",
    )
    .await;
    assert_eq!(
        browser.run("return document.documentElement.lang;").await,
        json!("ko")
    );
    browser
        .run(&format!(
            "document.getElementById('name').value = 'admin'; document.getElementById('password').value = '{ADMIN_PASSWORD}'; document.querySelector('form.login').submit(); return true;"
        ))
        .await;
    browser.wait_for("the overview", "return location.pathname === '/overview' && document.querySelectorAll('li.card').length > 0;").await;
    assert_eq!(
        browser
            .run("return document.querySelectorAll('li.card').length;")
            .await,
        json!(12),
        "every site is a card"
    );
    assert_eq!(
        browser
            .run("return document.querySelectorAll('svg.map [data-site]').length;")
            .await,
        json!(12),
        "and on the map"
    );
    assert_eq!(
        browser
            .run("return document.querySelector('h1').textContent;")
            .await,
        json!("도시 현황")
    );
    assert_eq!(
        browser
            .run("return document.querySelector('.who').textContent;")
            .await,
        json!("admin (관리자)")
    );
    std::fs::write(
        shots.join("overview-ko-1280.png"),
        browser.screenshot().await,
    )
    .unwrap();

    // English, and it stays English on the next visit.
    browser
        .run("document.querySelector('a[hreflang=en]').click(); return true;")
        .await;
    browser
        .wait_for("English", "return document.documentElement.lang === 'en';")
        .await;
    assert_eq!(
        browser
            .run("return document.querySelector('h1').textContent;")
            .await,
        json!("City overview")
    );
    browser.go(&format!("{base}/overview")).await;
    browser
        .wait_for(
            "English remembered",
            "return document.documentElement.lang === 'en';",
        )
        .await;

    // Logging out ends the session: the overview sends back to the login page.
    browser
        .run("document.getElementById('logout').click(); return true;")
        .await;
    browser
        .wait_for(
            "the login page again",
            "return location.pathname === '/login';",
        )
        .await;
    browser.go(&format!("{base}/overview")).await;
    browser
        .wait_for("still logged out", "return location.pathname === '/login';")
        .await;

    // A wrong password is said on the page, in the page's language.
    browser.go(&format!("{base}/login?lang=ko")).await;
    browser
        .run("document.getElementById('name').value = 'admin'; document.getElementById('password').value = 'wrong'; document.querySelector('form.login').submit(); return true;")
        .await;
    let problem = browser
        .wait_for(
            "the refusal",
            "const p = document.querySelector('.problem'); return p ? p.textContent : null;",
        )
        .await;
    assert_eq!(problem, json!("아이디 또는 비밀번호가 틀립니다."));
    drop(browser);

    // At phone width the cards stack.
    let phone = Browser::start(390, 844).await;
    phone.log_in(&base, "admin", ADMIN_PASSWORD).await;
    phone
        .wait_for(
            "the overview",
            "return document.querySelectorAll('li.card').length === 12;",
        )
        .await;
    let widths = phone
        .run("return [document.querySelector('li.card').getBoundingClientRect().width, document.documentElement.scrollWidth, window.innerWidth];")
        .await;
    let (card, page, window) = (
        widths[0].as_f64().unwrap(),
        widths[1].as_f64().unwrap(),
        widths[2].as_f64().unwrap(),
    );
    assert!(window < 600.0, "a phone-sized window: {widths}");
    assert!(
        card > window * 0.8 && page <= window,
        "one card per row, no sideways scrolling: {widths}"
    );
    std::fs::write(shots.join("overview-ko-390.png"), phone.screenshot().await).unwrap();
    drop(phone);

    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn a_viewer_has_no_override_button_and_its_cookie_cannot_post_one_but_an_operator_can() {
    let (server, shutdown, tracker) = running("web-roles", None).await;
    let store = &server.state.store;
    for (name, role) in [
        ("vera", nightscape_server::auth::Role::Viewer),
        ("olivia", nightscape_server::auth::Role::Operator),
    ] {
        nightscape_server::auth::put_user(
            store,
            name,
            Some("a-long-password-1"),
            role,
            &["nonsan-city-hall".parse().unwrap()],
            "test",
            NOW_MS,
        )
        .await
        .unwrap();
    }
    let base = format!("http://{}", server.addr);
    let post = "fetch('/api/sites/nonsan-city-hall/override', {method: 'POST', headers: {'content-type': 'application/json', 'x-csrf-token': document.getElementById('logout').dataset.csrf}, body: JSON.stringify({scene: 'cityhall-blue-hour', minutes: 30, reason: 'test'})}).then(r => done(r.status));";

    let viewer = Browser::start(1280, 800).await;
    viewer.log_in(&base, "vera", "a-long-password-1").await;
    viewer.go(&format!("{base}/sites/nonsan-city-hall")).await;
    viewer.wait_for("the site page", "return document.querySelector('h1') && document.querySelector('h1').textContent === '논산시청';").await;
    assert_eq!(viewer.run("return document.getElementById('override') === null && document.getElementById('blackout') === null;").await, json!(true), "no actions in a viewer's page");
    assert_eq!(
        viewer.run_async(post).await,
        json!(403),
        "nor through the API with its cookie"
    );
    drop(viewer);

    let operator = Browser::start(1280, 800).await;
    operator.log_in(&base, "olivia", "a-long-password-1").await;
    operator.go(&format!("{base}/sites/nonsan-city-hall")).await;
    operator
        .wait_for(
            "the override form",
            "return document.getElementById('override') !== null;",
        )
        .await;
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("site-ko-1280.png"),
        operator.screenshot().await,
    )
    .unwrap();
    operator
        .run("document.getElementById('scene').value = 'cityhall-blue-hour'; document.getElementById('minutes').value = '45'; document.getElementById('reason').value = '방문객 안내'; document.querySelector('#override button').click(); return true;")
        .await;
    operator.wait_for("the answer",
        "const r = document.getElementById('action-result'); return r && r.textContent.length > 0;",
    )
    .await;
    let active = nightscape_server::overrides::active(store, NOW_MS)
        .await
        .unwrap();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].created_by, "olivia");
    assert_eq!(active[0].reason, "방문객 안내");
    assert_eq!(active[0].until_ms, Some(NOW_MS + 45 * 60_000));
    drop(operator);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}
