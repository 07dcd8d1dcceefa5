//! The audit log, for admins: who changed what and when, with the values before and after.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;

use super::{PageLang, esc, local_time, page, t};
use crate::AppState;
use crate::api::ApiError;
use crate::auth::Principal;

/// How many of the latest rows the page shows; the API gives the rest.
const ROWS: i64 = 300;

pub async fn audit(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    lang: PageLang,
) -> Result<Response, ApiError> {
    let l = lang.lang;
    let lib = state.store.checked_library().await?;
    let tz = super::city_zone(&lib.checked.library);
    let rows = state.store.audit_log(ROWS).await?;
    let mut main = format!(
        "<h1>{}</h1><p>{}</p>{}<thead><tr>",
        esc(t(l, "audit-title")),
        esc(t(l, "audit-intro")),
        super::table_open(t(l, "audit-title")).replace("<table>", "<table class=\"audit\">")
    );
    for col in [
        "col-time",
        "col-by",
        "col-action",
        "col-target",
        "col-change",
    ] {
        let _ = write!(main, "<th scope=\"col\">{}</th>", esc(t(l, col)));
    }
    main.push_str("</tr></thead><tbody>");
    let show = |v: &Option<serde_json::Value>| {
        v.as_ref().map_or_else(
            || "–".to_owned(),
            |v| serde_json::to_string_pretty(v).unwrap_or_default(),
        )
    };
    for r in &rows {
        let change = if r.before.is_none() && r.after.is_none() {
            String::new()
        } else {
            format!(
                "<details><summary>{}</summary><div class=\"change\"><pre>{}</pre><pre>{}</pre></div></details>",
                esc(t(l, "audit-show")),
                esc(&show(&r.before)),
                esc(&show(&r.after))
            )
        };
        let _ = write!(
            main,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{change}</td></tr>",
            esc(&local_time(&tz, r.at_ms)),
            esc(&r.actor),
            esc(&r.action),
            esc(&r.target)
        );
    }
    main.push_str("</tbody>");
    main.push_str(super::TABLE_END);
    let title = t(l, "audit-title");
    Ok(page(lang, Some(&who), title, "/audit", &main))
}
