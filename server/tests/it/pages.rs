//! Every main page of the dashboard in headless Chromium: no Content-Security-Policy
//! violation, axe-core (vendored) finds no serious or critical problem, the page reads at
//! 1280×800 and at phone width without sideways scrolling, the editor puts the core's
//! problems beside their lines in Korean, an operator can make an override with the
//! keyboard alone, and a token is revoked from its page.
//!
//! Screenshots of each page at both widths go to `$NIGHTSCAPE_SCREENSHOTS` when it is set
//! (the docs' are made that way), else to the target directory.

use std::path::PathBuf;

use serde_json::json;

use crate::common::*;
use crate::webdriver::{Browser, CTRL, DOWN, ENTER, TAB};

const AXE: &str = include_str!("../vendor/axe-core/axe.min.js");

const PAGES: &[(&str, &str)] = &[
    ("overview", "/overview"),
    ("site", "/sites/nonsan-city-hall"),
    ("library", "/library"),
    (
        "editor",
        "/library/sites/nonsan-city-hall/scenes/cityhall-blue-hour.toml",
    ),
    ("schedule", "/schedule?month=2026-12"),
    ("faults", "/faults"),
    ("energy", "/energy?month=2026-11"),
    ("city", "/city"),
    ("audit", "/audit"),
    ("tokens", "/tokens"),
];

fn shots() -> PathBuf {
    std::env::var_os("NIGHTSCAPE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
}

/// axe-core's serious and critical violations on the page, as text.
async fn axe(browser: &Browser) -> Vec<String> {
    browser.run(&format!("{AXE}; return true;")).await;
    let found = browser
        .run_async(
            "axe.run(document, {resultTypes: ['violations']}).then((r) => done(r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`))).catch((e) => done([`axe failed: ${e}`]));",
        )
        .await;
    found
        .as_array()
        .unwrap_or_else(|| panic!("axe answered {found}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Makes the browser note every Content-Security-Policy violation of every page it opens
/// from now on in `window.__csp` (through the DevTools protocol, which the policy does not
/// govern, so the recorder is there before the page's first byte).
async fn record_csp_violations(browser: &Browser) {
    let answer = crate::webdriver::call(
        &browser.addr,
        "POST",
        &format!("{}/goog/cdp/execute", browser.session),
        Some(json!({
            "cmd": "Page.addScriptToEvaluateOnNewDocument",
            "params": {"source": "window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));"}
        })),
    )
    .await;
    assert!(
        answer["value"]["identifier"].is_string(),
        "the recorder was not installed: {answer}"
    );
}

/// The violations noted on the page shown (see [`record_csp_violations`]).
async fn csp_violations(browser: &Browser, path: &str) -> Vec<String> {
    let found = browser.run("return window.__csp;").await;
    found
        .as_array()
        .unwrap_or_else(|| panic!("{path}: no recorder in the page: {found}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// What a page must say (in Korean, the default) about the seeded data.
const SAYS: &[(&str, &str)] = &[
    // City Hall's gateway is connected and its controller does not answer.
    ("overview", "제어기 1대 응답 없음"),
    ("site", "제어기가 응답하지 않습니다"),
    ("faults", "제어기가 응답하지 않습니다"),
];

/// Data for the pages to show: City Hall's gateway connected with an open fault (its
/// controller does not answer) and a closed one, energy for some nights, a city-wide dim
/// in force, an API token used and one not.
async fn seed(server: &nightscape_server::Server) {
    let pool = server.state.store.pool();
    for label in ["야간 백업 스크립트", "에너지 보고서"] {
        nightscape_server::auth::issue_token(
            &server.state.store,
            "admin",
            label,
            NOW_MS - 86_400_000,
            NOW_MS + 30 * 86_400_000,
        )
        .await
        .unwrap();
    }
    sqlx::query("UPDATE tokens SET last_used_at_ms = $1 WHERE label = '야간 백업 스크립트'")
        .bind(NOW_MS - 3_600_000)
        .execute(pool)
        .await
        .unwrap();
    server.state.publisher.round().await.unwrap();
    sqlx::query("UPDATE gateways SET online = 1 WHERE gateway = 'cityhall-gw'")
        .execute(pool)
        .await
        .unwrap();
    for (status, closed) in [("open", None), ("closed", Some(NOW_MS - 3_600_000))] {
        sqlx::query(
            "INSERT INTO faults (gateway, source, kind, status, message, opened_at_ms, closed_at_ms) VALUES ('cityhall-gw', 'cityhall-art', $1, $2, $3, $4, $5)",
        )
        .bind(if closed.is_some() { "status" } else { "unreachable" })
        .bind(status)
        .bind(if closed.is_some() {
            "status reports lamp-fault"
        } else {
            "unreachable: no ArtPollReply to 3 polls in a row"
        })
        .bind(NOW_MS - 7_200_000)
        .bind(closed)
        .execute(pool)
        .await
        .unwrap();
    }
    for (k, site) in ["nonsan-city-hall", "gyebaek-bridge", "chungnyeongtap"]
        .iter()
        .enumerate()
    {
        for day in 1..=25 {
            sqlx::query(
                "INSERT INTO energy (site, day, wh, lit_minutes, source, last_at_ms) VALUES ($1, $2, $3, $4, $5, 0)",
            )
            .bind(site)
            .bind(format!("2026-11-{day:02}"))
            .bind(1500.0 * (k + 1) as f64 + 40.0 * f64::from(day))
            .bind(300.0 + f64::from(day))
            .bind(if k == 0 { "measured" } else { "estimated" })
            .execute(pool)
            .await
            .unwrap();
        }
    }
}

#[tokio::test]
async fn every_main_page_passes_axe_and_reads_at_desk_and_phone_width() {
    let (server, shutdown, tracker) = running("pages", None).await;
    seed(&server).await;
    let base = format!("http://{}", server.addr);
    let dir = shots();
    std::fs::create_dir_all(&dir).unwrap();
    let mut problems = Vec::new();
    for (width, height) in [(1280, 800), (390, 844)] {
        let browser = Browser::start(width, height).await;
        record_csp_violations(&browser).await;
        browser.go(&format!("{base}/login")).await;
        browser
            .wait_for(
                "the login page",
                "return document.readyState === 'complete';",
            )
            .await;
        for p in csp_violations(&browser, "/login").await {
            problems.push(format!("/login at {width}: CSP violation: {p}"));
        }
        for p in axe(&browser).await {
            problems.push(format!("/login at {width}: {p}"));
        }
        // The policy is in force and the recorder hears it: an inline script is refused.
        browser
            .run("const s = document.createElement('script'); s.textContent = 'window.__ran = true;'; document.body.append(s); return true;")
            .await;
        browser
            .wait_for(
                "the refusal of an inline script",
                "return window.__csp.some((v) => v.startsWith('script-src'));",
            )
            .await;
        assert_eq!(
            browser.run("return window.__ran === true;").await,
            json!(false)
        );
        browser.log_in(&base, "admin", ADMIN_PASSWORD).await;
        for (name, path) in PAGES {
            browser.go(&format!("{base}{path}")).await;
            browser.wait_for(path,
                // The first picture (below it, they load as they are scrolled to).
                "return document.readyState === 'complete' && (document.images.length === 0 || document.images[0].complete);",
            )
            .await;
            // Before axe, whose own script runs outside the page's policy.
            for p in csp_violations(&browser, path).await {
                problems.push(format!("{path} at {width}: CSP violation: {p}"));
            }
            for p in axe(&browser).await {
                problems.push(format!("{path} at {width}: {p}"));
            }
            let text = browser.run("return document.body.innerText;").await;
            for (_, says) in SAYS.iter().filter(|(page, _)| page == name) {
                if !text.as_str().unwrap_or_default().contains(says) {
                    problems.push(format!("{path} at {width}: does not say {says:?}"));
                }
            }
            let sizes = browser
                .run("return [document.documentElement.scrollWidth, window.innerWidth];")
                .await;
            let (page, window) = (sizes[0].as_f64().unwrap(), sizes[1].as_f64().unwrap());
            if page > window {
                problems.push(format!(
                    "{path} at {width}: scrolls sideways ({page} px in a {window} px window)"
                ));
            }
            std::fs::write(
                dir.join(format!("dashboard-{name}-{width}.png")),
                browser.screenshot().await,
            )
            .unwrap();
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn the_editor_puts_each_problem_beside_its_line_in_korean_and_saves_nothing_wrong() {
    let (server, shutdown, tracker) = running("editor", None).await;
    let base = format!("http://{}", server.addr);
    let path = "sites/nonsan-city-hall/scenes/cityhall-blue-hour.toml";
    let texts = async || {
        server
            .state
            .store
            .library()
            .await
            .unwrap()
            .into_iter()
            .map(|f| (f.path, f.text))
            .collect::<Vec<_>>()
    };
    let before = texts().await;
    let browser = Browser::start(1280, 800).await;
    browser.log_in(&base, "admin", ADMIN_PASSWORD).await;
    browser.go(&format!("{base}/library/{path}")).await;
    browser
        .wait_for(
            "the editor",
            "return document.getElementById('text') !== null;",
        )
        .await;
    // A wrong type on line 4, then "check and save".
    browser
        .run("const t = document.getElementById('text'); t.value = t.value.replace('fade_ms = 8000', 'fade_ms = \"slow\"'); t.dispatchEvent(new Event('input')); document.getElementById('save').click(); return true;")
        .await;
    let item = browser.wait_for("the problem",
        "const li = document.querySelector('#diagnostics li.error'); return li ? [li.dataset.line, li.textContent] : null;",
    )
    .await;
    assert_eq!(item[0], json!("4"), "{item}");
    let text = item[1].as_str().unwrap();
    assert!(text.contains("줄 4"), "{text}");
    assert!(text.contains("\"slow\""), "the value is named: {text}");
    assert!(
        text.chars().any(|c| ('가'..='힣').contains(&c)),
        "the problem is titled in Korean: {text}"
    );
    assert_eq!(
        browser
            .run("return document.querySelector('.gutter').children[3].className;")
            .await,
        json!("error"),
        "line 4 is marked beside the text"
    );
    assert_eq!(
        browser
            .run("return document.getElementById('text').getAttribute('aria-invalid');")
            .await,
        json!("true")
    );
    // Going to the problem selects its line.
    browser
        .run("document.querySelector('#diagnostics button.goto').click(); return true;")
        .await;
    let selected = browser
        .run("const t = document.getElementById('text'); return t.value.slice(t.selectionStart, t.selectionEnd);")
        .await;
    assert!(
        selected.as_str().unwrap_or("").contains("\"slow\""),
        "{selected}"
    );
    assert_eq!(texts().await, before, "nothing was saved");
    drop(browser);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn an_operator_makes_an_override_with_the_keyboard_alone() {
    let (server, shutdown, tracker) = running("keyboard", None).await;
    nightscape_server::auth::put_user(
        &server.state.store,
        "olivia",
        Some("a-long-password-1"),
        nightscape_server::auth::Role::Operator,
        &["nonsan-city-hall".parse().unwrap()],
        "test",
        NOW_MS,
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.addr);
    let browser = Browser::start(1280, 800).await;
    // Logging in by keyboard: the name field, Tab, the password, Enter.
    browser.go(&format!("{base}/login")).await;
    browser
        .wait_for(
            "the login page",
            "return document.getElementById('name') !== null;",
        )
        .await;
    let mut keys = String::new();
    for _ in 0..12 {
        browser.keys(&TAB.to_string()).await;
        if browser.run("return document.activeElement.id;").await == json!("name") {
            keys.push_str("olivia");
            break;
        }
    }
    assert!(!keys.is_empty(), "Tab reaches the name field");
    browser
        .keys(&format!("{keys}{TAB}a-long-password-1{ENTER}"))
        .await;
    browser
        .wait_for("the overview", "return location.pathname === '/overview';")
        .await;
    browser.go(&format!("{base}/sites/nonsan-city-hall")).await;
    browser
        .wait_for(
            "the site page",
            "return document.getElementById('scene') !== null;",
        )
        .await;
    // Without a broker no gateway has acknowledged its documents, and the page says so.
    assert_eq!(
        browser
            .run("const g = document.getElementById('gateways'); return g.textContent.includes(g.dataset.waiting);")
            .await,
        json!(true)
    );
    // The first Tab stop skips to the content, and focus is visible.
    browser.keys(&TAB.to_string()).await;
    assert_eq!(
        browser
            .run("return document.activeElement.className;")
            .await,
        json!("skip")
    );
    assert_ne!(
        browser
            .run("return getComputedStyle(document.activeElement).outlineStyle;")
            .await,
        json!("none"),
        "focus is visible"
    );
    let mut reached = false;
    for _ in 0..60 {
        browser.keys(&TAB.to_string()).await;
        if browser.run("return document.activeElement.id;").await == json!("scene") {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab reaches the scene");
    let first = browser
        .run("return document.getElementById('scene').value;")
        .await;
    browser
        .keys(&format!("{DOWN}{TAB}{CTRL}a30{TAB}키보드로 지정{ENTER}"))
        .await;
    browser.wait_for("the answer",
        "const r = document.getElementById('action-result'); return r && r.textContent.length > 0;",
    )
    .await;
    let active = nightscape_server::overrides::active(&server.state.store, NOW_MS)
        .await
        .unwrap();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].reason, "키보드로 지정");
    assert_eq!(active[0].until_ms, Some(NOW_MS + 30 * 60_000));
    assert_ne!(
        active[0].scene.as_ref().map(|s| s.to_string()),
        first.as_str().map(str::to_owned),
        "the arrow key chose the next scene"
    );
    // A colleague releases it while the page still offers to: the page says it was done
    // elsewhere, in Korean, and shows the site as it is now.
    browser
        .wait_for(
            "the page with its release button",
            "return document.querySelector('button.release') !== null;",
        )
        .await;
    assert!(
        nightscape_server::overrides::release(
            &server.state.store,
            &active[0].id,
            "colleague",
            NOW_MS
        )
        .await
        .unwrap()
    );
    browser
        .run("document.querySelector('button.release').click(); return true;")
        .await;
    let said = browser
        .wait_for(
            "the answer to a release made twice",
            "const r = document.getElementById('action-result'); return r && r.textContent.length > 0 ? r.textContent : null;",
        )
        .await;
    assert!(
        said.as_str()
            .unwrap_or_default()
            .contains("이미 다른 곳에서 처리"),
        "{said}"
    );
    browser
        .wait_for(
            "the page without the released override",
            "return document.readyState === 'complete' && document.querySelector('button.release') === null;",
        )
        .await;
    // The session ends (another device logged out, an admin changed the password): the next
    // action leads to the login page, which leads back here.
    sqlx::query("DELETE FROM sessions")
        .execute(server.state.store.pool())
        .await
        .unwrap();
    browser
        .run("document.getElementById('reason').value = '다시 지정'; document.querySelector('#override button[type=submit]').click(); return true;")
        .await;
    let at = browser
        .wait_for(
            "the login page",
            "return location.pathname === '/login' ? location.search : null;",
        )
        .await;
    assert_eq!(at, json!("?next=%2Fsites%2Fnonsan-city-hall"));
    drop(browser);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn a_token_is_revoked_from_the_tokens_page() {
    let (server, shutdown, tracker) = running("token-page", None).await;
    let store = &server.state.store;
    let keep = nightscape_server::auth::issue_token(
        store,
        "admin",
        "계속 쓰는 토큰",
        NOW_MS,
        NOW_MS + 86_400_000,
    )
    .await
    .unwrap();
    let leaked = nightscape_server::auth::issue_token(
        store,
        "admin",
        "새어 나간 토큰",
        NOW_MS,
        NOW_MS + 86_400_000,
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.addr);
    let browser = Browser::start(1280, 800).await;
    record_csp_violations(&browser).await;
    browser.log_in(&base, "admin", ADMIN_PASSWORD).await;
    browser.go(&format!("{base}/tokens")).await;
    browser
        .wait_for(
            "the tokens page",
            "return document.querySelectorAll('button.revoke-token').length === 2;",
        )
        .await;
    // The confirmation is answered yes; the button of the leaked one is pressed.
    browser
        .run("window.confirm = () => true; [...document.querySelectorAll('tr[data-token]')].find((r) => r.textContent.includes('새어 나간')).querySelector('button.revoke-token').click(); return true;")
        .await;
    let said = browser
        .wait_for(
            "the answer",
            "const r = document.getElementById('action-result'); return r && r.textContent.length > 0 ? r.textContent : null;",
        )
        .await;
    assert_eq!(said, json!("토큰을 폐기했습니다."));
    browser
        .wait_for(
            "the page again, with one token",
            "return document.readyState === 'complete' && document.querySelectorAll('button.revoke-token').length === 1;",
        )
        .await;
    let left: Vec<String> = nightscape_server::auth::tokens(store, "admin")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.label)
        .collect();
    assert_eq!(left, ["계속 쓰는 토큰"]);
    let now = NOW_MS + 1;
    assert!(
        nightscape_server::auth::from_token(store, &leaked, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        nightscape_server::auth::from_token(store, &keep, now)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        csp_violations(&browser, "/tokens").await,
        Vec::<String>::new()
    );
    drop(browser);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}
