//! The API through `oneshot`: the role matrix from the route table, sessions and CSRF,
//! validation through the core, and bad input.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use nightscape_server::api::{Access, routes};
use nightscape_server::auth::Role;
use nightscape_server::overrides::{self, Kind, Override, Scope};
use serde_json::json;

use crate::common::*;

const SITE: &str = "nonsan-city-hall";
const OTHER: &str = "chungnyeongtap";

/// Who may call what: one row per route of the table. `true` in the last column: an
/// operator may do it only at their own sites.
fn expected() -> BTreeMap<(&'static str, &'static str), (Access, bool)> {
    use Access::*;
    BTreeMap::from([
        (("GET", "/"), (Viewer, false)),
        (("GET", "/login"), (Public, false)),
        (("POST", "/login"), (Public, false)),
        (("GET", "/overview"), (Viewer, false)),
        (("GET", "/sites/{site}"), (Viewer, false)),
        (("GET", "/library"), (Viewer, false)),
        (("GET", "/library/{*path}"), (Viewer, false)),
        (("GET", "/schedule"), (Viewer, false)),
        (("GET", "/faults"), (Viewer, false)),
        (("GET", "/energy"), (Viewer, false)),
        (("GET", "/city"), (Admin, false)),
        (("GET", "/audit"), (Admin, false)),
        (("GET", "/tokens"), (Viewer, false)),
        (("GET", "/static/app.css"), (Public, false)),
        (("GET", "/static/app.js"), (Public, false)),
        (("GET", "/healthz"), (Public, false)),
        (("GET", "/metrics"), (Public, false)),
        (("GET", "/api/openapi.json"), (Public, false)),
        (("POST", "/api/login"), (Public, false)),
        (("POST", "/api/logout"), (Viewer, false)),
        (("GET", "/api/me"), (Viewer, false)),
        (("POST", "/api/tokens"), (Viewer, false)),
        (("GET", "/api/tokens"), (Viewer, false)),
        (("DELETE", "/api/tokens/{token}"), (Viewer, false)),
        (("GET", "/api/sites"), (Viewer, false)),
        (("GET", "/api/sites/{site}/transitions"), (Viewer, false)),
        (("GET", "/api/sites/{site}/preview.png"), (Viewer, false)),
        (("GET", "/api/sites/{site}/compliance"), (Viewer, false)),
        (("GET", "/api/sites/{site}/preview.json"), (Viewer, false)),
        (
            ("GET", "/api/scenes/{scene}/animation.gif"),
            (Viewer, false),
        ),
        (("GET", "/api/gateways"), (Viewer, false)),
        (
            ("POST", "/api/gateways/{gateway}/commands"),
            (Operator, true),
        ),
        (("GET", "/api/commands"), (Viewer, false)),
        (("GET", "/api/faults"), (Viewer, false)),
        (("POST", "/api/faults/{id}/acknowledge"), (Operator, true)),
        (("GET", "/api/energy"), (Viewer, false)),
        (("GET", "/api/events"), (Viewer, false)),
        (("GET", "/api/library"), (Viewer, false)),
        (("GET", "/api/library/export"), (Viewer, false)),
        (("POST", "/api/library/check"), (Viewer, false)),
        (("POST", "/api/library/import"), (Admin, false)),
        (("GET", "/api/library/files/{*path}"), (Viewer, false)),
        (("PUT", "/api/library/files/{*path}"), (Operator, true)),
        (("DELETE", "/api/library/files/{*path}"), (Operator, true)),
        (("POST", "/api/calendars/{calendar}/dates"), (Admin, false)),
        (("POST", "/api/calendars/{calendar}/kasi"), (Admin, false)),
        (("GET", "/api/overrides"), (Viewer, false)),
        (("POST", "/api/sites/{site}/override"), (Operator, true)),
        (("POST", "/api/sites/{site}/blackout"), (Operator, true)),
        (("POST", "/api/overrides"), (Admin, false)),
        (("DELETE", "/api/overrides/{id}"), (Operator, true)),
        (("GET", "/api/users"), (Admin, false)),
        (("PUT", "/api/users/{name}"), (Admin, false)),
        (("DELETE", "/api/users/{name}"), (Admin, false)),
        (("GET", "/api/users/{name}/tokens"), (Admin, false)),
        (
            ("DELETE", "/api/users/{name}/tokens/{token}"),
            (Admin, false),
        ),
        (("GET", "/api/audit"), (Admin, false)),
    ])
}

/// A concrete request for a route: the path filled in, and a body that gets past access
/// (it may still be refused for its content, which is not what this test is about).
fn concrete(path: &str, fault: i64, override_id: &str) -> (String, Option<serde_json::Value>) {
    let p = path
        .replace("{site}", SITE)
        .replace("{id}/acknowledge", &format!("{fault}/acknowledge"))
        .replace(
            "/api/overrides/{id}",
            &format!("/api/overrides/{override_id}"),
        )
        .replace("{*path}", &format!("sites/{SITE}/scenes/not-there.toml"))
        .replace("{name}", "nobody-here")
        .replace("{token}", "0123456789abcdef")
        .replace("{gateway}", "cityhall-gw")
        .replace("{calendar}", "kr-holidays")
        .replace("{scene}", "cityhall-blue-hour");
    let body = match path {
        "/api/login" => Some(json!({"name": "admin", "password": "wrong"})),
        "/api/tokens" => Some(json!({"label": "matrix", "days": 1})),
        "/api/library/check" => Some(json!({"files": []})),
        "/api/library/import" => Some(json!({"files": [], "apply": false})),
        "/api/library/files/{*path}" => Some(json!({"text": "not = [valid"})),
        "/api/sites/{site}/override" => {
            Some(json!({"scene": "no-such-scene", "minutes": 10, "reason": "matrix"}))
        }
        "/api/sites/{site}/blackout" => Some(json!({"reason": "matrix", "confirm": false})),
        "/api/overrides" => {
            Some(json!({"scope": {"kind": "city"}, "kind": "blackout", "reason": ""}))
        }
        "/api/users/{name}" => Some(json!({"password": "short", "role": "viewer"})),
        "/api/gateways/{gateway}/commands" => Some(json!({"action": "resync"})),
        "/api/calendars/{calendar}/dates" => {
            Some(json!({"dates": [{"date": "not a date", "name": "x"}]}))
        }
        "/api/calendars/{calendar}/kasi" => Some(json!({"responses": ["junk"]})),
        _ => None,
    };
    (p, body)
}

#[tokio::test]
async fn every_route_has_a_row_in_the_role_matrix_and_every_no_is_enforced() {
    let db = Db::sqlite("matrix").await;
    let (state, _) = app_state(&db.url).await;
    state.publisher.round().await.unwrap();
    let gw: String = sqlx::query_scalar("SELECT gateway FROM gateways WHERE site = $1")
        .bind(SITE)
        .fetch_one(state.store.pool())
        .await
        .unwrap();
    let fault: i64 = sqlx::query_scalar(
        "INSERT INTO faults (gateway, source, kind, status, message, opened_at_ms) VALUES ($1, 'x', 'status', 'open', 'm', 1) RETURNING id",
    )
    .bind(&gw)
    .fetch_one(state.store.pool())
    .await
    .unwrap();
    let o = Override {
        id: "ov-matrix".into(),
        scope: Scope::Sites(vec![SITE.parse().unwrap()]),
        kind: Kind::Blackout,
        scene: None,
        brightness_pct: None,
        from_ms: NOW_MS,
        until_ms: None,
        created_by: "admin".into(),
        reason: "matrix".into(),
        created_at_ms: NOW_MS,
        released_at_ms: None,
        released_by: None,
    };
    overrides::insert(&state.store, &o).await.unwrap();

    let expected = expected();
    let table = routes();
    for r in &table {
        assert!(
            expected.contains_key(&(r.method.as_str(), r.path)),
            "route {} {} has no row in the role matrix; add one",
            r.method,
            r.path
        );
    }
    assert_eq!(
        expected.len(),
        table.len(),
        "the matrix has rows for routes that do not exist"
    );

    let viewer = user(&state, "vera", Role::Viewer, &[]).await;
    let other = user(&state, "oscar", Role::Operator, &[OTHER]).await;
    let operator = user(&state, "olivia", Role::Operator, &[SITE]).await;
    // A bearer token: the matrix logs out, which would end a session mid-way.
    let admin = user(&state, "ada", Role::Admin, &[]).await;
    let who: [(&str, &As, Option<Role>, bool); 5] = [
        ("nobody", &As::Nobody, None, false),
        ("viewer", &viewer, Some(Role::Viewer), false),
        (
            "operator of another site",
            &other,
            Some(Role::Operator),
            false,
        ),
        (
            "operator of the site",
            &operator,
            Some(Role::Operator),
            true,
        ),
        ("admin", &admin, Some(Role::Admin), true),
    ];
    let mut denials = 0;
    for r in &table {
        let (access, scoped) = expected[&(r.method.as_str(), r.path)];
        for (label, credentials, role, own_site) in &who {
            let allowed = match (access, role) {
                (Access::Public, _) => true,
                (_, None) => false,
                (Access::Viewer, Some(_)) => true,
                (Access::Operator, Some(role)) => *role >= Role::Operator && (!scoped || *own_site),
                (Access::Admin, Some(role)) => *role == Role::Admin,
            };
            let (path, body) = concrete(r.path, fault, &o.id);
            let reply = call(&state, request(r.method.as_str(), &path, credentials, body)).await;
            if allowed {
                let code = reply.json["error"]["code"].as_str().unwrap_or("");
                assert!(
                    code != "unauthorized" && code != "forbidden",
                    "{label}: {} {path} should pass access, got {} {}",
                    r.method,
                    reply.status,
                    reply.text
                );
            } else {
                // A page sends a visitor who is not logged in to the login page.
                let want = match (role, r.page) {
                    (None, true) => StatusCode::SEE_OTHER,
                    (None, false) => StatusCode::UNAUTHORIZED,
                    _ => StatusCode::FORBIDDEN,
                };
                assert_eq!(
                    reply.status, want,
                    "{label}: {} {path}: {}",
                    r.method, reply.text
                );
                if want == StatusCode::SEE_OTHER {
                    // ... which leads back to the page asked for.
                    let back = if r.method == "GET" && path != "/" && path != "/overview" {
                        format!("/login?next={path}")
                    } else {
                        "/login".to_owned()
                    };
                    assert_eq!(reply.headers["location"], back.as_str(), "{label}: {path}");
                } else if r.page {
                    // A page refuses with a page, in Korean by default, saying why.
                    assert!(
                        reply.text.contains("<html") && reply.text.contains("권한이 없습니다"),
                        "{label}: {path}: {}",
                        reply.text
                    );
                } else {
                    assert!(reply.json["error"]["message"].is_string(), "{}", reply.text);
                }
                denials += 1;
            }
        }
    }
    assert!(denials >= 50, "only {denials} denials were checked");
    db.drop_now().await;
}

#[tokio::test]
async fn the_login_page_leads_back_to_the_page_asked_for_and_only_to_this_dashboard() {
    let db = Db::sqlite("login-next").await;
    let (state, _) = app_state(&db.url).await;
    let asked = "/schedule?month=2027-01&lang=en";
    let reply = call(&state, request("GET", asked, &As::Nobody, None)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let login = reply.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(login, "/login?next=/schedule%3Fmonth%3D2027-01%26lang%3Den");
    let page = call(&state, request("GET", &login, &As::Nobody, None)).await;
    assert!(
        page.text.contains(
            r#"<input type="hidden" name="next" value="/schedule?month=2027-01&amp;lang=en">"#
        ),
        "{}",
        page.text
    );
    let submit = |next: &str| {
        let body = format!(
            "name=admin&password={}&next={}",
            ADMIN_PASSWORD,
            next.replace('%', "%25")
                .replace('&', "%26")
                .replace('?', "%3F")
                .replace('=', "%3D")
                .replace('\\', "%5C")
        );
        axum::http::Request::builder()
            .method("POST")
            .uri("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    let back = call(&state, submit("/schedule?month=2027-01&lang=en")).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.text);
    assert_eq!(back.headers["location"], asked);
    // Another site, however it is written, the API or a broken path: the overview.
    for elsewhere in [
        "//evil.example/",
        "/\\evil.example/",
        "https://evil.example/",
        "/api/me",
        "/login",
        "/sites/a b",
        "/\t/evil.example/",
        "/x\r\nlocation: //evil.example/",
        "/sites/한",
        &format!("/{}", "a".repeat(3000)),
        "",
    ] {
        let r = call(&state, submit(elsewhere)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{elsewhere}: {}", r.text);
        assert_eq!(r.headers["location"], "/overview", "{elsewhere}");
    }
    // The login page itself offers no way elsewhere.
    let page = call(
        &state,
        request(
            "GET",
            "/login?next=%2F%2Fevil.example%2F",
            &As::Nobody,
            None,
        ),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("name=\"next\""), "{}", page.text);
    // A path with its own percent-escapes comes back as it was asked for.
    let asked = "/library/sites/nonsan-city-hall/scenes/%ED%95%9C.toml";
    let reply = call(&state, request("GET", asked, &As::Nobody, None)).await;
    let login = reply.headers["location"].to_str().unwrap().to_owned();
    let page = call(&state, request("GET", &login, &As::Nobody, None)).await;
    assert!(
        page.text
            .contains(&format!("name=\"next\" value=\"{asked}\"")),
        "{login}: {}",
        page.text
    );
    assert_eq!(call(&state, submit(asked)).await.headers["location"], asked);
    // A wrong password keeps where the login leads.
    let wrong = call(
        &state,
        axum::http::Request::builder()
            .method("POST")
            .uri("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(
                "name=admin&password=nope&next=/faults",
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.text.contains(r#"name="next" value="/faults""#),
        "{}",
        wrong.text
    );
    db.drop_now().await;
}

#[tokio::test]
async fn a_cookie_session_needs_its_csrf_token_for_changes_and_logins_are_rate_limited() {
    let db = Db::sqlite("csrf").await;
    let (state, _) = app_state(&db.url).await;
    let As::Cookie(secret, csrf) = login(&state, "admin", ADMIN_PASSWORD).await else {
        unreachable!()
    };
    let reads = call(
        &state,
        request(
            "GET",
            "/api/me",
            &As::Cookie(secret.clone(), String::new()),
            None,
        ),
    )
    .await;
    assert_eq!(reads.status, StatusCode::OK);
    let forged = As::Cookie(secret.clone(), "not-the-token".into());
    let r = call(
        &state,
        request(
            "POST",
            "/api/sites/nonsan-city-hall/blackout",
            &forged,
            Some(json!({"reason": "x", "confirm": true})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("CSRF"), "{}", r.text);
    assert!(
        overrides::active(&state.store, NOW_MS)
            .await
            .unwrap()
            .is_empty(),
        "nothing stored"
    );
    let ok = As::Cookie(secret, csrf);
    let r = call(
        &state,
        request(
            "POST",
            "/api/sites/nonsan-city-hall/blackout",
            &ok,
            Some(json!({"reason": "storm", "confirm": true})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    for _ in 0..5 {
        let r = call(
            &state,
            request(
                "POST",
                "/api/login",
                &As::Nobody,
                Some(json!({"name": "admin", "password": "guess"})),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = call(
        &state,
        request(
            "POST",
            "/api/login",
            &As::Nobody,
            Some(json!({"name": "admin", "password": ADMIN_PASSWORD})),
        ),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the right password is refused while locked out"
    );
    assert!(r.headers.contains_key("retry-after"));
    db.drop_now().await;
}

#[tokio::test]
async fn bad_requests_get_one_error_shape_that_says_what_to_fix_and_change_nothing() {
    let db = Db::sqlite("bad").await;
    let (state, _) = app_state(&db.url).await;
    let admin = user(&state, "ada", Role::Admin, &[]).await;
    let audit_before = state.store.audit_log(10_000).await.unwrap().len();
    let raw = |body: &str| {
        axum::http::Request::builder()
            .method("POST")
            .uri("/api/sites/nonsan-city-hall/blackout")
            .header(
                "authorization",
                match &admin {
                    As::Bearer(t) => format!("Bearer {t}"),
                    _ => unreachable!(),
                },
            )
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap()
    };
    let cases: Vec<(axum::http::Request<axum::body::Body>, StatusCode, &str)> = vec![
        (raw("{\"reason\": "), StatusCode::BAD_REQUEST, "not JSON"),
        (
            raw("{\"reason\": 5, \"confirm\": true}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason",
        ),
        (
            raw("{\"reason\": \"x\", \"confirm\": true, \"colour\": \"red\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "colour",
        ),
        (
            raw(&format!(
                "{{\"reason\": \"{}\", \"confirm\": true}}",
                "x".repeat(3 * 1024 * 1024)
            )),
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
        ),
        (
            request(
                "GET",
                "/api/sites/nonsan-city-hall/transitions?from=yesterday",
                &admin,
                None,
            ),
            StatusCode::BAD_REQUEST,
            "2026-12-24",
        ),
        (
            request("GET", "/api/sites/Not%20A%20Site/transitions", &admin, None),
            StatusCode::BAD_REQUEST,
            "site",
        ),
        (
            request("GET", "/api/me", &As::Bearer("nst_forged".into()), None),
            StatusCode::UNAUTHORIZED,
            "token",
        ),
        (
            request(
                "PUT",
                "/api/library/files/../etc/passwd.toml",
                &admin,
                Some(json!({"text": ""})),
            ),
            StatusCode::BAD_REQUEST,
            "relative",
        ),
        (
            request("GET", "/api/nothing-here", &admin, None),
            StatusCode::NOT_FOUND,
            "no such route",
        ),
        (
            request(
                "GET",
                "/api/sites/nonsan-city-hall/transitions?start=2026-12-24",
                &admin,
                None,
            ),
            StatusCode::BAD_REQUEST,
            "unknown field `start`",
        ),
        (
            request("GET", "/api/energy?from=garbage", &admin, None),
            StatusCode::BAD_REQUEST,
            "2026-12-24",
        ),
        (
            request("PATCH", "/api/sites", &admin, None),
            StatusCode::METHOD_NOT_ALLOWED,
            "method",
        ),
        (
            request(
                "POST",
                "/api/sites/nonsan-city-hall/blackout",
                &admin,
                Some(json!({"reason": "", "confirm": true})),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason",
        ),
        (
            request(
                "PUT",
                "/api/users/olga",
                &admin,
                Some(
                    json!({"password": "a-long-password-1", "role": "operator", "sites": ["nowhere"]}),
                ),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "nowhere",
        ),
    ];
    for (req, status, says) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let r = call(&state, req).await;
        assert_eq!(r.status, status, "{what}: {}", r.text);
        let message = r.json["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: not the error shape: {}", r.text));
        assert!(
            message.contains(says),
            "{what}: `{message}` should mention `{says}`"
        );
    }
    assert!(
        overrides::active(&state.store, NOW_MS)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        state.store.audit_log(10_000).await.unwrap().len(),
        audit_before
    );

    // An expired token is refused like a forged one.
    let token =
        nightscape_server::auth::issue_token(&state.store, "ada", "old", NOW_MS - 10, NOW_MS - 1)
            .await
            .unwrap();
    let r = call(&state, request("GET", "/api/me", &As::Bearer(token), None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    db.drop_now().await;
}

#[tokio::test]
async fn a_library_change_with_errors_is_refused_with_every_diagnostic_and_a_good_one_is_audited() {
    for db in Db::both("library").await {
        let (state, _) = app_state(&db.url).await;
        let admin = user(&state, "ada", Role::Admin, &[]).await;
        let path = "sites/nonsan-city-hall/scenes/cityhall-late.toml";
        let before = call(
            &state,
            request("GET", &format!("/api/library/files/{path}"), &admin, None),
        )
        .await;
        assert_eq!(before.status, StatusCode::OK, "{}", before.text);
        let good = before.json["text"].as_str().unwrap().to_owned();
        let bad = format!("{good}\nbogus_key = 1\n[[layers]]\neffect = \"no-such-effect\"\n");
        let r = call(
            &state,
            request(
                "PUT",
                &format!("/api/library/files/{path}"),
                &admin,
                Some(json!({"text": bad})),
            ),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}: {}",
            db.label,
            r.text
        );
        let diags = r.json["error"]["diagnostics"].as_array().unwrap();
        assert!(
            diags.len() >= 2,
            "{}: every error, not the first: {}",
            db.label,
            r.text
        );
        for d in diags {
            assert!(
                d["code"].is_string() && d["path"].is_string() && d["line"].is_number(),
                "{d}"
            );
            // Korean unless asked otherwise: staff read Korean first.
            assert!(
                d["title"]
                    .as_str()
                    .unwrap()
                    .chars()
                    .any(|c| ('가'..='힣').contains(&c)),
                "{d}"
            );
        }
        let en = call(
            &state,
            request(
                "PUT",
                &format!("/api/library/files/{path}?lang=en"),
                &admin,
                Some(json!({"text": bad})),
            ),
        )
        .await;
        let title = en.json["error"]["diagnostics"][0]["title"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(title.is_ascii() && !title.is_empty(), "{title}");
        let after = call(
            &state,
            request("GET", &format!("/api/library/files/{path}"), &admin, None),
        )
        .await;
        assert_eq!(
            after.json["text"].as_str().unwrap(),
            good,
            "{}: nothing saved",
            db.label
        );

        let changed = good.replacen('\n', "\n# a comment from the API test\n", 1);
        let r = call(
            &state,
            request(
                "PUT",
                &format!("/api/library/files/{path}"),
                &admin,
                Some(json!({"text": changed})),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", db.label, r.text);
        let audit = state.store.audit_log(5).await.unwrap();
        assert_eq!(audit[0].action, "library.put");
        assert_eq!(audit[0].actor, "ada");
        assert_eq!(audit[0].target, format!("library:{path}"));
        assert_eq!(
            audit[0].before.as_ref().and_then(|v| v.as_str()),
            Some(good.as_str())
        );
        db.drop_now().await;
    }
}

#[tokio::test]
async fn import_shows_the_diff_and_export_gives_back_the_library_byte_for_byte() {
    let db = Db::sqlite("import").await;
    let (state, _) = app_state(&db.url).await;
    let admin = user(&state, "ada", Role::Admin, &[]).await;
    let shipped = shipped_library();
    let mut files: Vec<serde_json::Value> = shipped
        .iter()
        .map(|f| json!({"path": f.path, "text": f.text}))
        .collect();
    let i = files
        .iter()
        .position(|f| f["path"] == "sites/nonsan-city-hall/scenes/cityhall-late.toml")
        .unwrap();
    let text = files[i]["text"].as_str().unwrap().to_owned() + "\n# changed\n";
    files[i]["text"] = json!(text);
    let r = call(
        &state,
        request(
            "POST",
            "/api/library/import",
            &admin,
            Some(json!({"files": files, "apply": false})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["changed"],
        json!(["sites/nonsan-city-hall/scenes/cityhall-late.toml"])
    );
    assert_eq!(r.json["applied"], json!(false));
    let r = call(
        &state,
        request(
            "POST",
            "/api/library/import",
            &admin,
            Some(json!({"files": files, "apply": true})),
        ),
    )
    .await;
    assert_eq!(r.json["applied"], json!(true), "{}", r.text);
    let export = call(&state, request("GET", "/api/library/export", &admin, None)).await;
    let back: Vec<(String, String)> = export
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let sent: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(back, sent);

    // One broken file among many: refused whole.
    files[i]["text"] = json!("name = ");
    let r = call(
        &state,
        request(
            "POST",
            "/api/library/import",
            &admin,
            Some(json!({"files": files, "apply": true})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let export2 = call(&state, request("GET", "/api/library/export", &admin, None)).await;
    assert_eq!(export2.json, export.json, "nothing changed");
    db.drop_now().await;
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_the_csv_starts_with_a_bom() {
    let db = Db::sqlite("openapi").await;
    let (state, _) = app_state(&db.url).await;
    let r = call(
        &state,
        request("GET", "/api/openapi.json", &As::Nobody, None),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    for route in routes() {
        let path = route.path.replace("{*", "{");
        let op = &r.json["paths"][&path][route.method.as_str().to_lowercase()];
        assert!(
            op["summary"].is_string(),
            "{} {path} missing from the OpenAPI document",
            route.method
        );
    }
    assert!(
        r.json["components"]["schemas"]["SiteOverride"].is_object(),
        "{}",
        r.json["components"]
    );
    let params = r.json["paths"]["/api/sites/{site}/compliance"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["site", "format", "from", "to"], "{params:?}");
    let viewer = user(&state, "vera", Role::Viewer, &[]).await;
    sqlx::query("INSERT INTO energy (site, day, wh, lit_minutes, source, last_at_ms) VALUES ('nonsan-city-hall', '2026-11-26', 12345.0, 300.0, 'estimated', 1)")
        .execute(state.store.pool())
        .await
        .unwrap();
    let csv = call(
        &state,
        request("GET", "/api/energy?format=csv", &viewer, None),
    )
    .await;
    assert!(csv.text.starts_with('\u{feff}'), "{:?}", &csv.text[..10]);
    assert!(
        csv.text
            .contains("nonsan-city-hall,2026-11-26,12.345,5,estimated"),
        "{}",
        csv.text
    );
    db.drop_now().await;
}

#[tokio::test]
async fn a_temporary_holiday_is_one_request_and_next_years_holidays_one_import() {
    let db = Db::sqlite("calendar").await;
    let (state, _) = app_state(&db.url).await;
    let admin = user(&state, "ada", Role::Admin, &[]).await;
    let r = call(
        &state,
        request(
            "POST",
            "/api/calendars/kr-holidays/dates",
            &admin,
            Some(
                json!({"dates": [{"date": "2026-12-28", "name": "임시공휴일 temporary holiday"}]}),
            ),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let file = call(
        &state,
        request(
            "GET",
            "/api/library/files/calendars/kr-holidays.toml",
            &admin,
            None,
        ),
    )
    .await;
    assert!(
        file.json["text"]
            .as_str()
            .unwrap()
            .contains(r#"{ date = "2026-12-28", name = "임시공휴일 temporary holiday" },"#)
    );
    let audit = state.store.audit_log(1).await.unwrap();
    assert_eq!(audit[0].action, "calendar.add-dates");
    assert!(r.json.get("already").is_none(), "{}", r.text);
    // The same day again (a second click): said to be there already, nothing written.
    let rows = state.store.audit_log(1000).await.unwrap().len();
    let again = call(
        &state,
        request(
            "POST",
            "/api/calendars/kr-holidays/dates",
            &admin,
            Some(json!({"dates": [{"date": "2026-12-28", "name": "임시공휴일"}]})),
        ),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(
        again.json["already"],
        json!(["2026-12-28"]),
        "{}",
        again.text
    );
    assert_eq!(state.store.audit_log(1000).await.unwrap().len(), rows);

    // The shipped calendar has 2027 already; the service's answer adds nothing, and a
    // refusal says why.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/kasi/");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}{f}")).unwrap();
    let r = call(&state, request("POST", "/api/calendars/kr-holidays/kasi", &admin, Some(json!({"responses": [read("getRestDeInfo-2027.xml"), read("getRestDeInfo-2027-06.json")]})))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        state.store.audit_log(1).await.unwrap()[0].action,
        "calendar.add-dates",
        "nothing new, nothing written"
    );
    let r = call(
        &state,
        request(
            "POST",
            "/api/calendars/kr-holidays/kasi",
            &admin,
            Some(json!({"responses": [read("unregistered-key.xml")]})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text.contains("SERVICE_KEY_IS_NOT_REGISTERED_ERROR"),
        "{}",
        r.text
    );
    let r = call(
        &state,
        request(
            "POST",
            "/api/calendars/festival-nights/dates",
            &admin,
            Some(json!({"dates": [{"date": "2026-12-31", "name": "x"}]})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("iCalendar"), "{}", r.text);
    db.drop_now().await;
}

/// Regression: 0001-01-01 and 9999-12-31 were taken as calendar dates. By hand (the API
/// and the dashboard's form) a date may be at most ten years from this year (2026 here:
/// 2016-01-01 to 2036-12-31); the refusal says what to fix in the caller's language, and
/// nothing is written. A file with such a date is refused by the checker's own window.
#[tokio::test]
async fn a_calendar_date_far_from_this_year_is_refused_with_what_to_fix() {
    let db = Db::sqlite("calendar-window").await;
    let (state, _) = app_state(&db.url).await;
    let admin = user(&state, "ada", Role::Admin, &[]).await;
    let add = |date: &str, lang: &str| {
        request(
            "POST",
            &format!("/api/calendars/kr-holidays/dates?lang={lang}"),
            &admin,
            Some(json!({"dates": [{"date": date, "name": "임시공휴일"}]})),
        )
    };
    let rows = state.store.audit_log(1000).await.unwrap().len();
    for date in ["0001-01-01", "2015-12-31", "2037-01-01", "9999-12-31"] {
        let ko = call(&state, add(date, "ko")).await;
        assert_eq!(
            ko.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{date}: {}",
            ko.text
        );
        let message = ko.json["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(date)
                && message.contains("연도를 확인하세요")
                && message.contains("2016-01-01부터 2036-12-31까지"),
            "{message}"
        );
        let en = call(&state, add(date, "en")).await;
        let message = en.json["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("more than 10 years from this year (2026); check the year")
                && message.contains("dates from 2016-01-01 to 2036-12-31 can be added"),
            "{message}"
        );
    }
    assert_eq!(
        state.store.audit_log(1000).await.unwrap().len(),
        rows,
        "nothing written"
    );
    for date in ["2016-01-01", "2036-12-31"] {
        let r = call(&state, add(date, "ko")).await;
        assert_eq!(r.status, StatusCode::OK, "{date}: {}", r.text);
    }
    let file = call(
        &state,
        request(
            "GET",
            "/api/library/files/calendars/kr-holidays.toml",
            &admin,
            None,
        ),
    )
    .await;
    let text = file.json["text"].as_str().unwrap().to_owned();
    assert!(text.contains(r#"date = "2016-01-01""#) && text.contains(r#"date = "2036-12-31""#));

    // The form offers the same window.
    let session = login(&state, "admin", ADMIN_PASSWORD).await;
    let page = call(&state, request("GET", "/schedule", &session, None)).await;
    assert!(
        page.text
            .contains(r#"type="date" min="2016-01-01" max="2036-12-31" required"#),
        "{}",
        page.text
    );

    // A file written with 9999-12-31: the checker's diagnostic, at the field, Korean first.
    let bad = text.replace(r#"date = "2036-12-31""#, r#"date = "9999-12-31""#);
    let r = call(
        &state,
        request(
            "PUT",
            "/api/library/files/calendars/kr-holidays.toml",
            &admin,
            Some(json!({"text": bad})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let d = &r.json["error"]["diagnostics"][0];
    assert_eq!(
        (&d["code"], &d["title"]),
        (
            &json!("calendar-date-range"),
            &json!("달력에 쓸 수 없는 연도의 날짜입니다")
        ),
        "{}",
        r.text
    );
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("9999-12-31 is outside the years a calendar may name (2000-01-01 to 2099-12-31); check the year"),
        "{d}"
    );
    db.drop_now().await;
}

#[tokio::test]
async fn a_site_preview_is_a_png_labelled_as_computed() {
    let db = Db::sqlite("preview").await;
    let (state, _) = app_state(&db.url).await;
    let viewer = user(&state, "vera", Role::Viewer, &[]).await;
    // Christmas Eve evening at Gyebaek Bridge against noon: lit against dark, from the schedule.
    let bright = |at: &str| {
        let state = state.clone();
        let viewer = viewer.clone();
        let at = at.to_owned();
        async move {
            let r = call(
                &state,
                request(
                    "GET",
                    &format!("/api/sites/gyebaek-bridge/preview.png?at={at}&width=640"),
                    &viewer,
                    None,
                ),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            assert_eq!(r.headers["content-type"], "image/png");
            assert_eq!(r.headers["x-nightscape-preview"], "computed; scheduled cue");
            let mut reader = png::Decoder::new(std::io::Cursor::new(r.bytes))
                .read_info()
                .unwrap();
            let mut buf = vec![0; reader.output_buffer_size().unwrap()];
            let info = reader.next_frame(&mut buf).unwrap();
            assert_eq!(info.width, 640);
            // Coloured light: pixels whose channels differ widely (captions are grey).
            buf[..info.buffer_size()]
                .chunks(3)
                .filter(|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 60)
                .count()
        }
    };
    let evening = bright("2026-12-24T19:30:00%2B09:00").await;
    let noon = bright("2026-12-24T12:00:00%2B09:00").await;
    assert!(
        evening > 1000 && noon < evening / 10,
        "evening {evening} coloured pixels, noon {noon}"
    );
    let r = call(
        &state,
        request(
            "GET",
            "/api/sites/gyebaek-bridge/preview.png?width=5",
            &viewer,
            None,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(
        &state,
        request("GET", "/api/sites/no-such-site/preview.png", &viewer, None),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    db.drop_now().await;
}

#[tokio::test]
async fn the_compliance_report_measures_a_night_from_the_cues_the_gateway_reported() {
    use nightscape_core::wire;
    for db in Db::both("compliance").await {
        let (state, _) = app_state(&db.url).await;
        let viewer = user(&state, "vera", Role::Viewer, &[]).await;
        let cue = |id: &str, at: &str, scene: Option<&str>, pct: f64| {
            let at_ms = at.parse::<jiff::Timestamp>().unwrap().as_millisecond();
            let e = wire::Event {
                schema: wire::SCHEMA,
                gateway: "cityhall-gw".parse().unwrap(),
                at_ms,
                id: id.into(),
                kind: wire::EventKind::Cue,
                severity: wire::Severity::Info,
                controller: None,
                message: "cue".into(),
                cue: Some(wire::ActiveCue {
                    scene: scene.map(|s| s.parse().unwrap()),
                    brightness_pct: nightscape_core::model::Level::from_pct(pct).unwrap(),
                    cause: wire::Cause::Idle,
                }),
                fault: None,
            };
            (at_ms, String::from_utf8(wire::encode(&e)).unwrap())
        };
        for (id, at, scene, pct) in [
            (
                "c1",
                "2026-11-25T17:30:00+09:00",
                Some("cityhall-civic-white"),
                100.0,
            ),
            (
                "c2",
                "2026-11-25T22:00:00+09:00",
                Some("cityhall-late"),
                50.0,
            ),
            ("c3", "2026-11-26T00:40:00+09:00", None, 0.0),
        ] {
            let (at_ms, json) = cue(id, at, scene, pct);
            sqlx::query("INSERT INTO events (gateway, id, at_ms, kind, severity, controller, message, json) VALUES ('cityhall-gw', $1, $2, 'cue', 'info', NULL, 'cue', $3)")
                .bind(id)
                .bind(at_ms)
                .bind(json)
                .execute(state.store.pool())
                .await
                .unwrap();
        }
        // The server heard the gateway all that day and night, as the intake records it.
        sqlx::query("INSERT INTO reporting (gateway, from_ms, to_ms, open) VALUES ('cityhall-gw', $1, $2, 0)")
            .bind("2026-11-25T12:00:00+09:00".parse::<jiff::Timestamp>().unwrap().as_millisecond())
            .bind("2026-11-26T12:00:00+09:00".parse::<jiff::Timestamp>().unwrap().as_millisecond())
            .execute(state.store.pool())
            .await
            .unwrap();
        let exception = Override {
            id: "ov-late-concert".into(),
            scope: Scope::City,
            kind: Kind::CurfewException,
            scene: None,
            brightness_pct: None,
            from_ms: "2026-11-25T23:00:00+09:00"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_millisecond(),
            until_ms: Some(
                "2026-11-26T01:00:00+09:00"
                    .parse::<jiff::Timestamp>()
                    .unwrap()
                    .as_millisecond(),
            ),
            created_by: "admin".into(),
            reason: "concert".into(),
            created_at_ms: NOW_MS,
            released_at_ms: None,
            released_by: None,
        };
        overrides::insert(&state.store, &exception).await.unwrap();
        let r = call(
            &state,
            request(
                "GET",
                "/api/sites/nonsan-city-hall/compliance?from=2026-11-24&to=2026-11-25",
                &viewer,
                None,
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", db.label, r.text);
        let nights = r.json.as_array().unwrap();
        assert_eq!(nights.len(), 2);
        let (before, night) = (&nights[0], &nights[1]);
        assert_eq!(
            before["reported"],
            json!(false),
            "nothing reported before the first cue"
        );
        assert_eq!(night["date"], "2026-11-25");
        assert_eq!(night["lit_minutes"], json!(430.0), "{night}");
        assert_eq!(night["lit_after_curfew_minutes"], json!(40.0), "{night}");
        assert_eq!(
            (
                night["cap_pct"].as_f64(),
                night["max_output_pct"].as_f64(),
                &night["clamped"]
            ),
            (Some(90.0), Some(90.0), &json!(true))
        );
        assert!(
            night["exceptions"][0]
                .as_str()
                .unwrap()
                .contains("ov-late-concert"),
            "{night}"
        );
        let csv = call(
            &state,
            request(
                "GET",
                "/api/sites/nonsan-city-hall/compliance?from=2026-11-25&to=2026-11-25&format=csv",
                &viewer,
                None,
            ),
        )
        .await;
        assert!(csv.text.starts_with("\u{feff}site,date"), "{}", csv.text);
        let r = call(
            &state,
            request(
                "GET",
                "/api/sites/nonsan-city-hall/compliance?from=2026-01-01&to=2026-12-31",
                &viewer,
                None,
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        db.drop_now().await;
    }
}

#[tokio::test]
async fn an_override_inside_the_curfew_says_it_will_not_show_without_an_exception() {
    let db = Db::sqlite("curfew").await;
    let (state, clock) = app_state(&db.url).await;
    let operator = user(&state, "olivia", Role::Operator, &["nonsan-city-hall"]).await;
    let body = json!({"scene": "cityhall-blue-hour", "minutes": 30, "reason": "visitors"});
    // 20:00: before City Hall's curfew (00:00).
    let r = call(
        &state,
        request(
            "POST",
            "/api/sites/nonsan-city-hall/override",
            &operator,
            Some(body.clone()),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["warnings"], json!([]));
    assert!(
        r.json["id"].is_string(),
        "the override's own fields stay at the top: {}",
        r.json
    );
    // 02:00: inside it.
    clock.set_wall(NOW_MS + 6 * 3_600_000);
    let r = call(
        &state,
        request(
            "POST",
            "/api/sites/nonsan-city-hall/override",
            &operator,
            Some(body.clone()),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // In Korean unless asked otherwise: staff read it on the site page.
    let warning = r.json["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.starts_with("논산시청")
            && warning.contains("소등 시각")
            && warning.contains("예외"),
        "{}",
        r.json
    );
    let r = call(
        &state,
        request(
            "POST",
            "/api/sites/nonsan-city-hall/override?lang=en",
            &operator,
            Some(body),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let warning = r.json["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("curfew") && warning.contains("exception"),
        "{}",
        r.json
    );
    db.drop_now().await;
}

#[tokio::test]
async fn the_overview_gives_tonight_in_each_sites_own_time() {
    let db = Db::sqlite("overview").await;
    let (state, _) = app_state(&db.url).await;
    let viewer = user(&state, "vera", Role::Viewer, &[]).await;
    let r = call(&state, request("GET", "/api/sites", &viewer, None)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let sites = r.json.as_array().unwrap();
    assert_eq!(sites.len(), 12);
    // 20:00 on a Friday: City Hall is lit already and goes dark at its curfew, midnight in
    // Korea (15:00 UTC).
    let hall = sites
        .iter()
        .find(|s| s["site"] == "nonsan-city-hall")
        .unwrap();
    assert_eq!(hall["on_local"], json!(null), "{hall}");
    assert_eq!(hall["off_local"], json!("00:00"), "{hall}");
    db.drop_now().await;
}

/// The overview's one word per site, on both stores: offline before anything else, a
/// gateway that cannot send before controllers that do not answer, before other faults;
/// closed faults, and faults of a gateway no longer in the library, count for nothing.
#[tokio::test]
async fn each_sites_status_says_the_worst_that_is_known_of_it() {
    use nightscape_server::read::SiteStatus;
    for db in Db::both("status").await {
        let (state, _) = app_state(&db.url).await;
        state.publisher.round().await.unwrap();
        let pool = state.store.pool();
        sqlx::query("UPDATE gateways SET online = 1")
            .execute(pool)
            .await
            .unwrap();
        // A second gateway at the council, offline; a gateway the library no longer has.
        for (gateway, site, online, removed) in [
            ("council-gw-b", "nonsan-council", 0, 0),
            ("jeotgal-old", "ganggyeong-jeotgal-park", 1, 1),
        ] {
            sqlx::query(
                "INSERT INTO gateways (gateway, site, online, removed) VALUES ($1, $2, $3, $4)",
            )
            .bind(gateway)
            .bind(site)
            .bind(online)
            .bind(removed)
            .execute(pool)
            .await
            .unwrap();
        }
        sqlx::query("UPDATE gateways SET online = 0 WHERE gateway = 'arts-gw'")
            .execute(pool)
            .await
            .unwrap();
        for (gateway, source, kind, status) in [
            ("cityhall-gw", "cityhall-art", "unreachable", "open"),
            (
                "cityhall-gw",
                "cityhall-art-2",
                "unreachable",
                "acknowledged",
            ),
            ("cityhall-gw", "cityhall-art", "status", "open"),
            ("memorial-gw", "gateway", "send", "open"),
            ("memorial-gw", "memorial-modbus", "unreachable", "open"),
            ("gyebaek-gw", "gyebaek-modbus", "status", "open"),
            ("donam-gw", "donam-modbus", "unreachable", "closed"),
            ("arts-gw", "arts-art", "unreachable", "open"),
            ("jeotgal-old", "jeotgal-art", "unreachable", "open"),
        ] {
            sqlx::query(
                "INSERT INTO faults (gateway, source, kind, status, message, opened_at_ms) VALUES ($1, $2, $3, $4, 'test', $5)",
            )
            .bind(gateway)
            .bind(source)
            .bind(kind)
            .bind(status)
            .bind(NOW_MS - 60_000)
            .execute(pool)
            .await
            .unwrap();
        }
        let overview = nightscape_server::read::overview(&state).await.unwrap();
        // (status, open faults, controllers not answering, gateways not sending,
        // gateways connected)
        for (site, want) in [
            ("nonsan-city-hall", (SiteStatus::Unreachable, 3, 2, 0, 1)),
            ("chungnyeongtap", (SiteStatus::NotSending, 2, 1, 1, 1)),
            ("gyebaek-bridge", (SiteStatus::Fault, 1, 0, 0, 1)),
            ("donam-seowon", (SiteStatus::Ok, 0, 0, 0, 1)),
            ("nonsan-arts-center", (SiteStatus::Offline, 1, 1, 0, 0)),
            ("nonsan-council", (SiteStatus::Offline, 0, 0, 0, 1)),
            ("ganggyeong-jeotgal-park", (SiteStatus::Ok, 0, 0, 0, 1)),
        ] {
            let s = overview.iter().find(|s| s.site.as_str() == site).unwrap();
            let got = (
                s.status,
                s.open_faults,
                s.unreachable_controllers,
                s.not_sending,
                s.gateways_online,
            );
            assert_eq!(got, want, "{}: {site}", db.label);
        }
        // The page says it in words, with the counts.
        let viewer = user(&state, "vera", Role::Viewer, &[]).await;
        let page = call(&state, request("GET", "/overview", &viewer, None)).await;
        for says in [
            "제어기 2대 응답 없음",
            "조명 신호를 보내지 못함",
            "고장 있음",
            "이상 없음",
            "게이트웨이 2대 중 1대 연결 끊김",
        ] {
            assert!(
                page.text.contains(says),
                "{}: the overview does not say {says}",
                db.label
            );
        }
        db.drop_now().await;
    }
}

/// `Idempotency-Key`: the same change sent twice is made once and answered the same; the
/// key with another request is refused; a change made whose answer was lost (the server
/// stopped between the two) is found in the audit log and not made again. On both stores.
#[tokio::test]
async fn a_change_sent_again_with_its_idempotency_key_is_made_once() {
    for db in Db::both("idempotency").await {
        let (state, _) = app_state(&db.url).await;
        let operator = user(&state, "olivia", Role::Operator, &[SITE]).await;
        let keyed = |key: &str, body: serde_json::Value| {
            let mut r = request(
                "POST",
                &format!("/api/sites/{SITE}/override"),
                &operator,
                Some(body),
            );
            r.headers_mut()
                .insert("idempotency-key", key.parse().unwrap());
            r
        };
        let body = json!({"scene": "cityhall-blue-hour", "minutes": 30, "reason": "visitors"});
        let count = || async {
            overrides::recent(&state.store, 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|o| o.reason == "visitors")
                .count()
        };
        let first = call(&state, keyed("k-1", body.clone())).await;
        assert_eq!(first.status, StatusCode::OK, "{}: {}", db.label, first.text);
        let again = call(&state, keyed("k-1", body.clone())).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text);
        assert_eq!(
            again.json, first.json,
            "{}: the first answer again",
            db.label
        );
        assert_eq!(
            again
                .headers
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap()),
            Some("true")
        );
        assert_eq!(count().await, 1, "{}: made once", db.label);

        // The same key for another change: refused, nothing made.
        let other = call(
            &state,
            keyed(
                "k-1",
                json!({"scene": "cityhall-late", "minutes": 30, "reason": "visitors"}),
            ),
        )
        .await;
        assert_eq!(
            other.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            other.text
        );
        assert_eq!(other.json["error"]["code"], "idempotency-key-reused");
        assert_eq!(count().await, 1);

        // A change made whose answer was never kept (as when the server stops between the
        // change's commit and keeping its answer): the retry finds it in the audit log.
        let cut = call(&state, keyed("k-2", body.clone())).await;
        assert_eq!(cut.status, StatusCode::OK);
        sqlx::query("UPDATE idempotency SET status = NULL, body = NULL WHERE key = 'k-2'")
            .execute(state.store.pool())
            .await
            .unwrap();
        let retry = call(&state, keyed("k-2", body.clone())).await;
        assert_eq!(retry.status, StatusCode::CONFLICT, "{}", retry.text);
        assert_eq!(retry.json["error"]["code"], "already-applied");
        assert!(
            retry.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("override"),
            "{}",
            retry.text
        );
        assert_eq!(count().await, 2, "{}: k-2 made once", db.label);

        // A bad key says what a key is; without a key nothing changes in behaviour.
        let bad = call(&state, keyed("has space", body.clone())).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
        let plain = call(
            &state,
            request(
                "POST",
                &format!("/api/sites/{SITE}/override"),
                &operator,
                Some(body),
            ),
        )
        .await;
        assert_eq!(plain.status, StatusCode::OK);
        assert_eq!(count().await, 3);
        db.drop_now().await;
    }
}
