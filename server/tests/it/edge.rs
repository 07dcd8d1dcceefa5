//! The HTTP edge through `oneshot`: the headers every answer carries, the Host check, a
//! login from another origin, the login limit's buckets and where the client's address
//! comes from, and a path that is not UTF-8.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use nightscape_server::AppState;
use nightscape_server::auth::Role;
use nightscape_server::edge::{CONTENT_SECURITY_POLICY, Policy};
use serde_json::json;

use crate::common::*;

/// A state whose edge names `allowed` and trusts `proxies`, as `nightscape server` would
/// make it listening on every address.
async fn state_with(
    name: &str,
    allowed: &[&str],
    proxies: &[&str],
) -> (Db, Arc<AppState>, Arc<nightscape_core::clock::VirtualClock>) {
    let db = Db::sqlite(name).await;
    let (state, clock) = app_state(&db.url).await;
    let mut state = Arc::into_inner(state).expect("one owner");
    state.edge = Policy::new(
        &allowed.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        &proxies
            .iter()
            .map(|p| p.parse().unwrap())
            .collect::<Vec<_>>(),
        "0.0.0.0:8080".parse().unwrap(),
    );
    (db, Arc::new(state), clock)
}

/// A JSON login as a browser on `peer` (the connection's address) would send it, with
/// extra headers.
fn login_from(peer: &str, name: &str, password: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut r = request(
        "POST",
        "/api/login",
        &As::Nobody,
        Some(json!({"name": name, "password": password})),
    );
    let peer: SocketAddr = format!("{peer}:40000").parse().unwrap();
    r.extensions_mut().insert(ConnectInfo(peer));
    for (k, v) in headers {
        r.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(v).unwrap(),
        );
    }
    r
}

fn assert_security_headers(what: &str, r: &Reply) {
    let h = |name: &str| {
        r.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{what}: no {name}: {:?}", r.headers))
    };
    let csp = h("content-security-policy");
    assert_eq!(csp, CONTENT_SECURITY_POLICY, "{what}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.contains("script-src 'self';"), "{what}: {csp}");
    assert!(csp.contains("style-src 'self';"), "{what}: {csp}");
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(h("referrer-policy"), "same-origin", "{what}");
    assert_eq!(h("x-frame-options"), "DENY", "{what}");
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_answers_with_data_are_not_kept() {
    let db = Db::sqlite("headers").await;
    let (state, _) = app_state(&db.url).await;
    let session = login(&state, "admin", ADMIN_PASSWORD).await;
    let cases = [
        ("a page", request("GET", "/overview", &session, None), 200),
        (
            "the login page",
            request("GET", "/login", &As::Nobody, None),
            200,
        ),
        (
            "an API answer",
            request("GET", "/api/me", &session, None),
            200,
        ),
        (
            "a CSV",
            request("GET", "/api/energy?format=csv", &session, None),
            200,
        ),
        (
            "a compliance CSV",
            request(
                "GET",
                "/api/sites/nonsan-city-hall/compliance?format=csv",
                &session,
                None,
            ),
            200,
        ),
        (
            "an error",
            request("GET", "/api/nothing-here", &session, None),
            404,
        ),
        (
            "a refusal",
            request("GET", "/api/me", &As::Nobody, None),
            401,
        ),
    ];
    for (what, req, status) in cases {
        let r = call(&state, req).await;
        assert_eq!(r.status.as_u16(), status, "{what}: {}", r.text);
        assert_security_headers(what, &r);
        assert_eq!(r.headers["cache-control"], "no-store", "{what}");
    }
    // The CSRF token is in `/api/me`: never kept.
    let me = call(&state, request("GET", "/api/me", &session, None)).await;
    assert!(me.json["csrf"].is_string());

    // The style sheet and the script are files, kept for a year at the version the pages
    // name; under another version, not kept.
    let page = call(&state, request("GET", "/overview", &session, None)).await;
    for (file, kind) in [("app.css", "text/css"), ("app.js", "text/javascript")] {
        let at = page
            .text
            .find(&format!("/static/{file}?v="))
            .unwrap_or_else(|| panic!("the page does not load {file}"));
        let url: String = page.text[at..].chars().take_while(|c| *c != '"').collect();
        let r = call(&state, request("GET", &url, &As::Nobody, None)).await;
        assert_eq!(r.status, StatusCode::OK, "{url}");
        assert_security_headers(&url, &r);
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{url}: {:?}",
            r.headers["content-type"]
        );
        assert_eq!(
            r.headers["cache-control"], "public, max-age=31536000, immutable",
            "{url}"
        );
        assert!(r.bytes.len() > 1000, "{url}: {} bytes", r.bytes.len());
        let old = call(
            &state,
            request("GET", &format!("/static/{file}?v=old"), &As::Nobody, None),
        )
        .await;
        assert_eq!(old.status, StatusCode::OK);
        assert_eq!(old.headers["cache-control"], "no-cache", "{file}?v=old");
        assert_eq!(old.bytes, r.bytes);
    }
    db.drop_now().await;
}

/// What a strict Content-Security-Policy refuses, found in a page's HTML: an inline
/// script, a style element or attribute, an event handler attribute, a `javascript:` link.
fn inline_code(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut found = Vec::new();
    for (at, _) in lower.match_indices("<script") {
        let tag: String = lower[at..].chars().take_while(|c| *c != '>').collect();
        if !tag.contains(" src=") {
            found.push(format!("inline script at {at}"));
        }
    }
    for needle in ["<style", " style=", "javascript:"] {
        for (at, _) in lower.match_indices(needle) {
            found.push(format!("{needle} at {at}"));
        }
    }
    // ` onclick=`, ` onload=`, … inside a tag.
    let bytes = lower.as_bytes();
    for (at, _) in lower.match_indices(" on") {
        let name: String = lower[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase())
            .collect();
        let after = at + 1 + name.len();
        if name.len() > 2 && bytes.get(after) == Some(&b'=') {
            let open = lower[..at].rfind('<');
            let close = lower[..at].rfind('>');
            if open > close {
                found.push(format!("{name}= at {at}"));
            }
        }
    }
    found
}

#[tokio::test]
async fn no_page_carries_inline_script_style_or_handlers() {
    let db = Db::sqlite("inline").await;
    let (state, _) = app_state(&db.url).await;
    let session = login(&state, "admin", ADMIN_PASSWORD).await;
    nightscape_server::auth::issue_token(&state.store, "admin", "cron", NOW_MS, NOW_MS + 1)
        .await
        .unwrap();
    let pages = [
        "/login",
        "/overview",
        "/sites/nonsan-city-hall",
        "/library",
        "/library/sites/nonsan-city-hall/scenes/cityhall-blue-hour.toml",
        "/schedule?month=2026-12",
        "/faults",
        "/energy?month=2026-11",
        "/city",
        "/audit",
        "/tokens",
        // An error page.
        "/sites/nowhere",
    ];
    for path in pages {
        let r = call(&state, request("GET", path, &session, None)).await;
        assert!(r.text.contains("<html"), "{path}: {}", r.status);
        let found = inline_code(&r.text);
        assert!(found.is_empty(), "{path}: {found:?}");
    }
    // The check itself finds what it looks for.
    assert_eq!(
        inline_code("<p><script>x()</script><b style=\"a\" onclick=\"y()\">on=</b>").len(),
        3
    );
    db.drop_now().await;
}

#[tokio::test]
async fn a_request_naming_another_host_is_refused_before_anything_else() {
    let (db, state, _) = state_with("host", &["lights.nonsan.go.kr"], &[]).await;
    let session = login(&state, "admin", ADMIN_PASSWORD).await;
    let with_host = |path: &str, host: &str| {
        let mut r = request("GET", path, &session, None);
        r.headers_mut().insert("host", host.parse().unwrap());
        r
    };
    for host in [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
        "lights.nonsan.go.kr.evil.example",
        "10.1.2.3:8080",
    ] {
        for path in ["/api/me", "/overview", "/login", "/api/nothing-here"] {
            let r = call(&state, with_host(path, host)).await;
            assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST, "{host} {path}");
            assert_eq!(
                r.json["error"]["code"], "unknown-host",
                "{host}: {}",
                r.text
            );
            assert!(
                r.json["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("--allowed-host"),
                "{}",
                r.text
            );
            assert_security_headers(host, &r);
            assert!(!r.text.contains("csrf"), "{host}: nothing of the session");
        }
    }
    for host in [
        "localhost",
        "localhost:8080",
        "127.0.0.1:39999",
        "[::1]:8080",
        "lights.nonsan.go.kr",
        "LIGHTS.nonsan.go.kr:443",
    ] {
        let r = call(&state, with_host("/api/me", host)).await;
        assert_eq!(r.status, StatusCode::OK, "{host}: {}", r.text);
    }
    // An address in absolute form is a name too.
    let r = call(
        &state,
        request("GET", "http://evil.example/api/me", &session, None),
    )
    .await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST, "{}", r.text);
    db.drop_now().await;
}

#[tokio::test]
async fn a_running_server_answers_its_own_address_and_refuses_another_name() {
    let (server, shutdown, tracker) = running("host-running", None).await;
    let addr = server.addr.to_string();
    let ask = |host: String| {
        let addr = addr.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            s.write_all(
                format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).await.unwrap();
            answer
        }
    };
    let own = ask(addr.clone()).await;
    assert!(own.starts_with("HTTP/1.1 200"), "{own}");
    let port = server.addr.port();
    let rebound = ask(format!("attacker.example:{port}")).await;
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(rebound.contains("unknown-host"), "{rebound}");
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn a_login_posted_from_another_origin_is_refused() {
    let db = Db::sqlite("login-origin").await;
    let (state, _) = app_state(&db.url).await;
    let host = ("host", "127.0.0.1:8080");
    // The API's login.
    for (label, headers, ok) in [
        (
            "from another site",
            vec![host, ("origin", "http://evil.example")],
            false,
        ),
        (
            "from another port of this machine",
            vec![host, ("origin", "http://127.0.0.1:3000")],
            false,
        ),
        (
            "from a sandboxed frame",
            vec![host, ("origin", "null")],
            false,
        ),
        (
            "a navigation from another site",
            vec![host, ("sec-fetch-site", "cross-site")],
            false,
        ),
        (
            "from the dashboard",
            vec![host, ("origin", "http://127.0.0.1:8080")],
            true,
        ),
        (
            "typed in or a script",
            vec![host, ("sec-fetch-site", "none")],
            true,
        ),
        ("a client that is not a browser", vec![host], true),
    ] {
        let r = call(
            &state,
            login_from("127.0.0.1", "admin", ADMIN_PASSWORD, &headers),
        )
        .await;
        if ok {
            assert_eq!(r.status, StatusCode::OK, "{label}: {}", r.text);
            assert!(r.headers.contains_key("set-cookie"), "{label}");
        } else {
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{label}: {}", r.text);
            assert_eq!(r.json["error"]["code"], "cross-origin-login", "{label}");
            assert!(
                r.json["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("own pages"),
                "{}",
                r.text
            );
            assert!(!r.headers.contains_key("set-cookie"), "{label}: no session");
        }
    }
    // The login page's form: the page again, saying why in Korean, and no session.
    let form = |origin: &str| {
        let mut r = Request::builder()
            .method("POST")
            .uri("/login")
            .header("host", "127.0.0.1:8080")
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("name=admin&password={ADMIN_PASSWORD}")))
            .unwrap();
        r.extensions_mut().insert(ConnectInfo(
            "127.0.0.1:40000".parse::<SocketAddr>().unwrap(),
        ));
        r
    };
    let r = call(&state, form("http://evil.example")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(
        r.text
            .contains("다른 사이트에서 보낸 로그인은 받지 않습니다"),
        "{}",
        r.text
    );
    assert!(!r.headers.contains_key("set-cookie"));
    let r = call(&state, form("http://127.0.0.1:8080")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert!(r.headers.contains_key("set-cookie"));
    db.drop_now().await;
}

#[tokio::test]
async fn x_forwarded_for_from_a_peer_that_is_not_a_trusted_proxy_is_ignored() {
    let (db, state, _) = state_with("xff-untrusted", &[], &["10.0.0.2"]).await;
    // Five wrong guesses at five names, each "forwarded for" a new address: before, each got
    // a fresh bucket and none was ever locked.
    for k in 0..5 {
        let r = call(
            &state,
            login_from(
                "198.51.100.9",
                &format!("guess-{k}"),
                "wrong",
                &[("x-forwarded-for", &format!("203.0.113.{k}"))],
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    let r = call(
        &state,
        login_from(
            "198.51.100.9",
            "admin",
            ADMIN_PASSWORD,
            &[("x-forwarded-for", "203.0.113.99")],
        ),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the address is locked whatever it says it forwards: {}",
        r.text
    );
    assert!(r.headers.contains_key("retry-after"));
    db.drop_now().await;
}

#[tokio::test]
async fn x_forwarded_for_from_a_trusted_proxy_names_the_client() {
    let (db, state, _) = state_with("xff-trusted", &[], &["10.0.0.2"]).await;
    for k in 0..5 {
        let r = call(
            &state,
            login_from(
                "10.0.0.2",
                &format!("guess-{k}"),
                "wrong",
                // What the client sent, then what the proxy appended.
                &[("x-forwarded-for", &format!("192.0.2.{k}, 203.0.113.7"))],
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    let from = |xff: &'static str| {
        login_from(
            "10.0.0.2",
            "admin",
            ADMIN_PASSWORD,
            &[("x-forwarded-for", xff)],
        )
    };
    let r = call(&state, from("203.0.113.7")).await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the guessing client is locked: {}",
        r.text
    );
    let r = call(&state, from("203.0.113.8")).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "another client behind the same proxy is not: {}",
        r.text
    );
    db.drop_now().await;
}

#[tokio::test]
async fn guesses_from_one_address_do_not_lock_the_right_password_out_from_another() {
    let (db, state, clock) = state_with("lockout", &[], &[]).await;
    let (attacker, user, typist) = ("203.0.113.66", "198.51.100.20", "198.51.100.21");
    for _ in 0..12 {
        call(&state, login_from(attacker, "admin", "guess", &[])).await;
    }
    let r = call(&state, login_from(attacker, "admin", ADMIN_PASSWORD, &[])).await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the guessing address is locked, even with the right password"
    );
    // Before, the name's bucket locked the admin out everywhere for five minutes.
    let r = call(&state, login_from(user, "admin", ADMIN_PASSWORD, &[])).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "an address that has not failed logs in: {}",
        r.text
    );
    // Another round of guesses: an address that mistyped the password meanwhile waits a
    // short pause after the name's latest failure, no longer.
    for _ in 0..5 {
        call(&state, login_from("203.0.113.67", "admin", "guess", &[])).await;
    }
    let r = call(&state, login_from(typist, "admin", "typo", &[])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = call(&state, login_from(typist, "admin", ADMIN_PASSWORD, &[])).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    let retry: i64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        retry <= nightscape_server::auth::NAME_PAUSE_MS / 1000 + 1,
        "{retry} s"
    );
    clock.advance(Duration::from_secs(retry as u64));
    let r = call(&state, login_from(typist, "admin", ADMIN_PASSWORD, &[])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // A login to one's own account does not wipe the count of the guesses made from the
    // same address at other names.
    nightscape_server::auth::put_user(
        &state.store,
        "mallory",
        Some("mallory-password-1"),
        Role::Viewer,
        &[],
        "test",
        NOW_MS,
    )
    .await
    .unwrap();
    let mallory = "203.0.113.70";
    for k in 0..4 {
        let r = call(&state, login_from(mallory, &format!("guess-{k}"), "x", &[])).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    let r = call(
        &state,
        login_from(mallory, "mallory", "mallory-password-1", &[]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    call(&state, login_from(mallory, "guess-4", "x", &[])).await;
    let r = call(&state, login_from(mallory, "guess-5", "x", &[])).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    db.drop_now().await;
}

#[tokio::test]
async fn a_path_that_is_not_utf8_gets_the_json_error_shape() {
    let db = Db::sqlite("utf8").await;
    let (state, _) = app_state(&db.url).await;
    let admin = user(&state, "ada", Role::Admin, &[]).await;
    for path in [
        "/api/sites/%FF",
        "/api/sites/%FF/transitions",
        "/api/library/files/sites/%C3%28.toml",
        "/sites/%FF",
        "/library/%ED%A0%80.toml",
    ] {
        let r = call(&state, request("GET", path, &admin, None)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text);
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        assert_eq!(r.json["error"]["code"], "bad-request", "{path}: {}", r.text);
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("UTF-8"),
            "{path}: {}",
            r.text
        );
    }
    // Escaped UTF-8 still reaches its route.
    let r = call(
        &state,
        request("GET", "/api/sites/%ED%95%9C/transitions", &admin, None),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("site"), "{}", r.text);
    db.drop_now().await;
}
