//! The API tokens page: the bearer tokens a user has given programs, each with when it was
//! made, last used and expires, and a button to revoke it; admins see everyone's.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;

use super::{PageLang, action_result, esc, local_time, page, t};
use crate::AppState;
use crate::api::ApiError;
use crate::auth::{self, Principal, Role};

pub async fn tokens(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    lang: PageLang,
) -> Result<Response, ApiError> {
    let l = lang.lang;
    let lib = state.store.checked_library().await?;
    let tz = super::city_zone(&lib.checked.library);
    let now = state.clock.now_ms();
    let mut main = format!(
        "<h1>{}</h1><p>{}</p>{}",
        esc(t(l, "tokens-title")),
        esc(t(l, "tokens-intro")),
        action_result(l, "tokens-revoked")
    );
    // Mine first; an admin then sees every other user who has tokens.
    let mut owners = vec![who.name.clone()];
    if who.role == Role::Admin {
        owners.extend(
            auth::users(&state.store)
                .await?
                .into_iter()
                .map(|u| u.name)
                .filter(|n| *n != who.name),
        );
    }
    for (k, owner) in owners.iter().enumerate() {
        let list = auth::tokens(&state.store, owner).await?;
        let mine = k == 0;
        if !mine && list.is_empty() {
            continue;
        }
        let heading = if mine {
            t(l, "tokens-mine").to_owned()
        } else {
            t(l, "tokens-of").replace("{name}", owner)
        };
        let _ = write!(
            main,
            "<section aria-labelledby=\"tokens-{k}\"><h2 id=\"tokens-{k}\">{}</h2>",
            esc(&heading)
        );
        if list.is_empty() {
            let _ = write!(main, "<p>{}</p></section>", esc(t(l, "tokens-none")));
            continue;
        }
        main.push_str(&super::table_open(&heading));
        main.push_str("<thead><tr>");
        for col in [
            "col-label",
            "col-created",
            "col-last-used",
            "col-expires",
            "col-action",
        ] {
            let _ = write!(main, "<th scope=\"col\">{}</th>", esc(t(l, col)));
        }
        main.push_str("</tr></thead><tbody>");
        for token in &list {
            // Mine through my own route; another user's through the admins'.
            let url = if mine {
                format!("/api/tokens/{}", token.id)
            } else {
                format!("/api/users/{owner}/tokens/{}", token.id)
            };
            let used = token
                .last_used_at_ms
                .map_or_else(|| t(l, "tokens-never").to_owned(), |at| local_time(&tz, at));
            let expires = if token.expires_at_ms <= now {
                format!(
                    "{} ({})",
                    local_time(&tz, token.expires_at_ms),
                    t(l, "tokens-expired")
                )
            } else {
                local_time(&tz, token.expires_at_ms)
            };
            let _ = write!(
                main,
                "<tr data-token=\"{id}\"><td>{label}</td><td>{created}</td><td>{used}</td><td>{expires}</td><td><button type=\"button\" class=\"revoke-token danger\" data-url=\"{url}\" data-confirm=\"{confirm}\" aria-label=\"{revoke}: {label}\">{revoke}</button></td></tr>",
                id = esc(&token.id),
                label = esc(&token.label),
                created = esc(&local_time(&tz, token.created_at_ms)),
                used = esc(&used),
                expires = esc(&expires),
                url = esc(&url),
                confirm = esc(t(l, "tokens-revoke-confirm")),
                revoke = esc(t(l, "tokens-revoke")),
            );
        }
        main.push_str("</tbody>");
        main.push_str(super::TABLE_END);
        main.push_str("</section>");
    }
    let title = t(l, "tokens-title");
    Ok(page(lang, Some(&who), title, "/tokens", &main))
}
