//! The city-wide action, for admins: dim or darken every site for a range of nights, with a
//! reason and a confirmation, and the city-wide orders in force or still to come.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;

use super::{PageLang, esc, local_time, page, t};
use crate::AppState;
use crate::api::ApiError;
use crate::auth::Principal;
use crate::overrides::{self, Kind, Scope};

pub async fn city(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    lang: PageLang,
) -> Result<Response, ApiError> {
    let l = lang.lang;
    let lib = state.store.checked_library().await?;
    let tz = super::city_zone(&lib.checked.library);
    let now = state.clock.now_ms();
    let today = jiff::Timestamp::from_millisecond(now)
        .map(|ts| tz.to_datetime(ts).date().to_string())
        .unwrap_or_default();
    let mut main = format!(
        "<h1>{}</h1><p>{}</p>",
        esc(t(l, "city-title")),
        esc(t(l, "city-intro"))
    );
    let _ = write!(
        main,
        "<form id=\"city-action\" class=\"form\" data-confirm=\"{confirm}\"><fieldset><legend>{what}</legend><label class=\"choice\"><input type=\"radio\" name=\"kind\" value=\"dim\" checked> {dim}</label><label class=\"choice\"><input type=\"radio\" name=\"kind\" value=\"blackout\"> {dark}</label></fieldset><label for=\"brightness\">{bright}</label><input id=\"brightness\" name=\"brightness\" type=\"number\" min=\"0\" max=\"100\" value=\"50\"><label for=\"from\">{from}</label><input id=\"from\" name=\"from\" type=\"date\" value=\"{today}\" required><label for=\"to\">{to}</label><input id=\"to\" name=\"to\" type=\"date\" value=\"{today}\" required><label for=\"reason\">{reason}</label><input id=\"reason\" name=\"reason\" maxlength=\"500\" required><button type=\"submit\" class=\"danger\">{apply}</button></form>{result}",
        confirm = esc(t(l, "city-confirm")),
        what = esc(t(l, "city-what")),
        dim = esc(t(l, "city-dim")),
        dark = esc(t(l, "city-dark")),
        bright = esc(t(l, "city-brightness")),
        from = esc(t(l, "city-from")),
        to = esc(t(l, "city-to")),
        reason = esc(t(l, "action-reason")),
        apply = esc(t(l, "city-apply")),
        result = super::action_result(l, "action-sent"),
    );
    let orders: Vec<_> = overrides::active(&state.store, now)
        .await?
        .into_iter()
        .filter(|o| o.scope == Scope::City)
        .collect();
    let _ = write!(
        main,
        "<section aria-labelledby=\"orders-h\"><h2 id=\"orders-h\">{}</h2>",
        esc(t(l, "city-orders"))
    );
    if orders.is_empty() {
        let _ = write!(main, "<p>{}</p>", esc(t(l, "site-none")));
    } else {
        main.push_str("<table><thead><tr>");
        for col in [
            "col-what",
            "col-from",
            "col-until",
            "col-reason",
            "col-by",
            "col-action",
        ] {
            let _ = write!(main, "<th scope=\"col\">{}</th>", esc(t(l, col)));
        }
        main.push_str("</tr></thead><tbody>");
        for o in &orders {
            let what = match o.kind {
                Kind::Dim => format!(
                    "{} {:.0} %",
                    t(l, "city-dim"),
                    o.brightness_pct.unwrap_or(100.0)
                ),
                Kind::Blackout => t(l, "city-dark").to_owned(),
                Kind::CurfewException => t(l, "city-exception").to_owned(),
                Kind::Scene => o.scene.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            };
            let _ = write!(
                main,
                "<tr data-override=\"{id}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><button type=\"button\" class=\"release\" data-override=\"{id}\">{}</button></td></tr>",
                esc(&what),
                esc(&local_time(&tz, o.from_ms)),
                esc(&o
                    .until_ms
                    .map_or_else(|| "∞".into(), |u| local_time(&tz, u))),
                esc(&o.reason),
                esc(&o.created_by),
                esc(t(l, "action-release")),
                id = esc(&o.id),
            );
        }
        main.push_str("</tbody></table>");
    }
    main.push_str("</section>");
    let title = t(l, "city-title");
    Ok(page(lang, Some(&who), title, "/city", &main))
}
