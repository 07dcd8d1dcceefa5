//! Bearer tokens on both stores: revoked by a new password, a new role and deletion;
//! listed without their secret and revoked one by one, by their owner or an admin; the
//! dashboard's page that lists and revokes them.

use axum::http::StatusCode;
use nightscape_server::auth::{self, Role};
use serde_json::json;

use crate::common::*;

async fn works(state: &std::sync::Arc<nightscape_server::AppState>, token: &As) -> StatusCode {
    call(state, request("GET", "/api/me", token, None))
        .await
        .status
}

async fn token_for(state: &std::sync::Arc<nightscape_server::AppState>, name: &str) -> As {
    As::Bearer(
        auth::issue_token(&state.store, name, "cron", NOW_MS, NOW_MS + 86_400_000)
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn a_new_password_a_new_role_or_deletion_revokes_the_users_tokens() {
    for db in Db::both("token-revocation").await {
        let (state, _) = app_state(&db.url).await;
        let admin = user(&state, "ada", Role::Admin, &[]).await;
        let olga = user(&state, "olga", Role::Operator, &["nonsan-city-hall"]).await;
        let put = |body: serde_json::Value| request("PUT", "/api/users/olga", &admin, Some(body));
        assert_eq!(works(&state, &olga).await, StatusCode::OK, "{}", db.label);

        // Nothing that matters changed: the token stays.
        let r = call(
            &state,
            put(json!({"role": "operator", "sites": ["nonsan-city-hall"]})),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_eq!(works(&state, &olga).await, StatusCode::OK, "{}", db.label);

        // A new password: before, the token went on working with the old one's authority.
        let r = call(
            &state,
            put(json!({"password": "a-new-long-password", "role": "operator", "sites": ["nonsan-city-hall"]})),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_eq!(
            works(&state, &olga).await,
            StatusCode::UNAUTHORIZED,
            "{}: a new password revokes the tokens",
            db.label
        );

        // A new role.
        let olga = token_for(&state, "olga").await;
        assert_eq!(works(&state, &olga).await, StatusCode::OK);
        let r = call(&state, put(json!({"role": "viewer"}))).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_eq!(
            works(&state, &olga).await,
            StatusCode::UNAUTHORIZED,
            "{}: a new role revokes the tokens",
            db.label
        );

        // Deletion.
        let olga = token_for(&state, "olga").await;
        assert_eq!(works(&state, &olga).await, StatusCode::OK);
        let r = call(&state, request("DELETE", "/api/users/olga", &admin, None)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_eq!(works(&state, &olga).await, StatusCode::UNAUTHORIZED);
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE username = 'olga'")
            .fetch_one(state.store.pool())
            .await
            .unwrap();
        assert_eq!(left, 0, "{}: no token row outlives its user", db.label);
        // The same name made again gets none of the old tokens.
        auth::put_user(
            &state.store,
            "olga",
            Some("a-long-password-2"),
            Role::Admin,
            &[],
            "test",
            NOW_MS,
        )
        .await
        .unwrap();
        assert_eq!(works(&state, &olga).await, StatusCode::UNAUTHORIZED);

        // The audit says how many went.
        let log = state.store.audit_log(100).await.unwrap();
        let revoked: Vec<i64> = log
            .iter()
            .filter(|e| e.action == "user.put" && e.target == "user:olga")
            .filter_map(|e| e.after.as_ref()?["tokens_revoked"].as_i64())
            .collect();
        assert!(revoked.contains(&1), "{}: {revoked:?}", db.label);
        db.drop_now().await;
    }
}

#[tokio::test]
async fn tokens_are_listed_without_their_secret_and_revoked_one_by_one() {
    for db in Db::both("token-list").await {
        let (state, clock) = app_state(&db.url).await;
        let admin = user(&state, "ada", Role::Admin, &[]).await;
        let vera = user(&state, "vera", Role::Viewer, &[]).await;
        let issue = async |label: &str| {
            let r = call(
                &state,
                request(
                    "POST",
                    "/api/tokens",
                    &vera,
                    Some(json!({"label": label, "days": 30})),
                ),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            (
                As::Bearer(r.json["token"].as_str().unwrap().to_owned()),
                r.json["id"].as_str().unwrap().to_owned(),
                r.json["token"].as_str().unwrap().to_owned(),
            )
        };
        let (backup, backup_id, backup_secret) = issue("backup script").await;
        let (_, unused_id, unused_secret) = issue("unused").await;
        clock.advance(std::time::Duration::from_secs(120));
        assert_eq!(works(&state, &backup).await, StatusCode::OK);

        let r = call(&state, request("GET", "/api/tokens", &vera, None)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let list = r.json.as_array().unwrap();
        assert_eq!(
            list.len(),
            3,
            "{}: the helper's, and two: {}",
            db.label,
            r.text
        );
        let row = |id: &str| list.iter().find(|t| t["id"] == id).unwrap().clone();
        let b = row(&backup_id);
        assert_eq!(b["label"], "backup script");
        assert_eq!(b["created_at_ms"], NOW_MS);
        assert_eq!(b["expires_at_ms"], NOW_MS + 30 * 86_400_000);
        assert_eq!(b["last_used_at_ms"], NOW_MS + 120_000, "{}", db.label);
        assert_eq!(row(&unused_id)["last_used_at_ms"], serde_json::Value::Null);
        for secret in [&backup_secret, &unused_secret] {
            assert!(
                !r.text.contains(secret.as_str()),
                "the secret is never listed"
            );
            assert!(
                !r.text.contains(&secret["nst_".len()..]),
                "nor any of it: {}",
                r.text
            );
        }
        assert!(r.headers["cache-control"] == "no-store");

        // Revoked by its owner: that one stops, the others go on.
        let r = call(
            &state,
            request("DELETE", &format!("/api/tokens/{unused_id}"), &vera, None),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_eq!(
            works(&state, &As::Bearer(unused_secret.clone())).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(works(&state, &backup).await, StatusCode::OK);
        let r = call(
            &state,
            request("DELETE", &format!("/api/tokens/{unused_id}"), &vera, None),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        assert!(r.json["error"]["message"].is_string());

        // Another user's token is not one's own to revoke.
        let r = call(
            &state,
            request("DELETE", &format!("/api/tokens/{backup_id}"), &admin, None),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        assert_eq!(works(&state, &backup).await, StatusCode::OK);
        for bad in ["x", "0123456789ABCDEF0", "%25", "________________"] {
            let r = call(
                &state,
                request("DELETE", &format!("/api/tokens/{bad}"), &vera, None),
            )
            .await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}: {}", r.text);
        }

        // An admin lists and revokes it.
        let r = call(
            &state,
            request("GET", "/api/users/vera/tokens", &admin, None),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json.as_array().unwrap().len(), 2, "{}", r.text);
        let r = call(
            &state,
            request("GET", "/api/users/nobody/tokens", &admin, None),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        let r = call(
            &state,
            request(
                "DELETE",
                &format!("/api/users/vera/tokens/{backup_id}"),
                &admin,
                None,
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_eq!(works(&state, &backup).await, StatusCode::UNAUTHORIZED);

        let log = state.store.audit_log(100).await.unwrap();
        let revokes: Vec<(&str, Option<&str>)> = log
            .iter()
            .filter(|e| e.action == "token.revoke")
            .map(|e| {
                (
                    e.actor.as_str(),
                    e.before.as_ref().and_then(|b| b["label"].as_str()),
                )
            })
            .collect();
        assert_eq!(
            revokes,
            [("ada", Some("backup script")), ("vera", Some("unused"))],
            "{}",
            db.label
        );
        db.drop_now().await;
    }
}

#[tokio::test]
async fn the_tokens_page_lists_them_in_korean_with_a_control_to_revoke_each() {
    let db = Db::sqlite("token-page").await;
    let (state, _) = app_state(&db.url).await;
    let session = login(&state, "admin", ADMIN_PASSWORD).await;
    auth::issue_token(
        &state.store,
        "admin",
        "야간 백업",
        NOW_MS,
        NOW_MS + 86_400_000,
    )
    .await
    .unwrap();
    let vera = user(&state, "vera", Role::Viewer, &[]).await;
    let page = call(&state, request("GET", "/tokens", &session, None)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let mine = auth::tokens(&state.store, "admin").await.unwrap();
    let hers = auth::tokens(&state.store, "vera").await.unwrap();
    for (text, why) in [
        ("<h1>API 토큰</h1>", "the title, in Korean"),
        ("내 토큰", "the admin's own"),
        ("vera 사용자의 토큰", "and the other users'"),
        ("야간 백업", "each label"),
        ("사용한 적 없음", "never used"),
        (
            &format!("data-url=\"/api/tokens/{}\"", mine[0].id) as &str,
            "revoking one's own",
        ),
        (
            &format!("data-url=\"/api/users/vera/tokens/{}\"", hers[0].id),
            "revoking another's",
        ),
        ("class=\"revoke-token danger\"", "the control"),
        ("aria-label=\"폐기: 야간 백업\"", "named for screen readers"),
    ] {
        assert!(page.text.contains(text), "{why}: {text}\n{}", page.text);
    }
    // A viewer sees only their own.
    let page = call(&state, request("GET", "/tokens?lang=en", &vera, None)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("My tokens"), "{}", page.text);
    assert!(!page.text.contains("야간 백업"), "{}", page.text);
    db.drop_now().await;
}
