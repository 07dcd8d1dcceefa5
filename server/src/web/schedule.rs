//! Schedules and calendars: a month with every calendar's holidays and festival nights, a
//! form for admins to add a date (a temporary holiday is one date), and each site's rules.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::Response;
use nightscape_core::diag::Lang;

use super::{MonthQuery, PageLang, esc, month_nav, month_of, name_in, page, t};
use crate::AppState;
use crate::api::ApiError;
use crate::auth::{Principal, Role};

const WEEKDAYS_KO: [&str; 7] = ["월", "화", "수", "목", "금", "토", "일"];
const WEEKDAYS_EN: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

pub async fn schedule(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<MonthQuery>,
    lang: PageLang,
) -> Result<Response, ApiError> {
    let l = lang.lang;
    let lib = state.store.checked_library().await?;
    let library = &lib.checked.library;
    let tz = super::city_zone(library);
    let now = state.clock.now_ms();
    let month = month_of(&q, &tz, now);
    let today = jiff::Timestamp::from_millisecond(now)
        .map(|ts| tz.to_datetime(ts).date())
        .unwrap_or_default();
    let weekdays = if l == Lang::En {
        WEEKDAYS_EN
    } else {
        WEEKDAYS_KO
    };
    let mut main = format!("<h1>{}</h1>", esc(t(l, "schedule-title")));

    // The month, Monday first, each day with what the calendars say of it.
    let _ = write!(
        main,
        "<section aria-labelledby=\"month-h\"><h2 id=\"month-h\">{}</h2>{}<ul class=\"legend\">",
        esc(t(l, "schedule-month")),
        month_nav(l, "/schedule", month)
    );
    let calendars: Vec<_> = library.calendars.values().collect();
    for (k, c) in calendars.iter().enumerate() {
        let _ = write!(
            main,
            "<li><span class=\"mark cal-{k}\" aria-hidden=\"true\"></span>{}</li>",
            esc(name_in(l, &c.name))
        );
    }
    let _ = write!(
        main,
        "</ul><table class=\"month\"><caption>{}</caption><thead><tr>",
        esc(&super::month_title(l, month))
    );
    for d in weekdays {
        let _ = write!(main, "<th scope=\"col\">{d}</th>");
    }
    main.push_str("</tr></thead><tbody><tr>");
    let lead = month.weekday().to_monday_zero_offset();
    for _ in 0..lead {
        main.push_str("<td></td>");
    }
    let mut column = lead;
    let mut day = month;
    while day.month() == month.month() {
        if column == 7 {
            main.push_str("</tr><tr>");
            column = 0;
        }
        let mut marks = String::new();
        for (k, c) in calendars.iter().enumerate() {
            if !c.contains(day) {
                continue;
            }
            let what = c
                .names
                .iter()
                .find(|(d, _)| *d == day)
                .map_or_else(|| name_in(l, &c.name).to_owned(), |(_, n)| n.clone());
            let _ = write!(marks, "<span class=\"event cal-{k}\">{}</span>", esc(&what));
        }
        let _ = write!(
            main,
            "<td data-date=\"{date}\"{current}><span class=\"day\">{n}</span>{marks}</td>",
            date = day,
            current = if day == today {
                " aria-current=\"date\" class=\"today\""
            } else {
                ""
            },
            n = day.day(),
        );
        column += 1;
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    for _ in column..7 {
        main.push_str("<td></td>");
    }
    main.push_str("</tr></tbody></table>");

    // Adding a date: admins, to the calendars kept as show files with a list of dates.
    if who.role == Role::Admin {
        let index = state.store.library_index().await?;
        // The browser's picker offers only the dates the API takes, so a year typed wrong
        // is caught while typing; the API says what to fix if it comes anyway.
        let addable = nightscape_core::calendar::addable(today);
        let _ = write!(
            main,
            "<form id=\"add-date\" class=\"form\" data-already=\"{}\"><h3>{}</h3><label for=\"calendar\">{}</label><select id=\"calendar\" name=\"calendar\">",
            esc(t(l, "schedule-already")),
            esc(t(l, "schedule-add-date")),
            esc(t(l, "schedule-calendar"))
        );
        for c in &calendars {
            let file = format!("calendars/{}.toml", c.id);
            if index.iter().any(|(p, ..)| *p == file) {
                let _ = write!(
                    main,
                    "<option value=\"{}\">{}</option>",
                    esc(c.id.as_str()),
                    esc(name_in(l, &c.name))
                );
            }
        }
        let _ = write!(
            main,
            "</select><label for=\"date\">{}</label><input id=\"date\" name=\"date\" type=\"date\" min=\"{}\" max=\"{}\" required><label for=\"date-name\">{}</label><input id=\"date-name\" name=\"name\" maxlength=\"200\" required placeholder=\"{}\"><button type=\"submit\">{}</button></form>{}",
            esc(t(l, "col-date")),
            addable.start(),
            addable.end(),
            esc(t(l, "schedule-date-name")),
            esc(t(l, "schedule-date-example")),
            esc(t(l, "schedule-add")),
            super::action_result(l, "schedule-added"),
        );
    }
    main.push_str("</section>");

    // Each site's rules, highest priority first, as the evaluator weighs them.
    let _ = write!(
        main,
        "<section aria-labelledby=\"rules-h\"><h2 id=\"rules-h\">{}</h2>",
        esc(t(l, "schedule-rules"))
    );
    for (id, site) in &library.sites {
        let Some(schedule) = library.schedules.get(id) else {
            continue;
        };
        let _ = write!(
            main,
            "<h3>{} <a class=\"small\" href=\"/library/sites/{}/schedule.toml\">{}</a></h3>{}<thead><tr>",
            esc(name_in(l, &site.name)),
            esc(id.as_str()),
            esc(t(l, "library-open")),
            super::table_open(name_in(l, &site.name))
        );
        for key in [
            "col-rule",
            "col-scene",
            "col-start",
            "col-end",
            "col-days",
            "col-when",
            "col-priority",
            "col-brightness",
        ] {
            let _ = write!(main, "<th scope=\"col\">{}</th>", esc(t(l, key)));
        }
        main.push_str("</tr></thead><tbody>");
        let mut rules: Vec<_> = schedule.rules.iter().collect();
        rules.sort_by_key(|r| std::cmp::Reverse(r.priority));
        for r in rules {
            let days: String = if r.days.iter().all(|d| *d) {
                t(l, "schedule-every-day").to_owned()
            } else {
                weekdays
                    .iter()
                    .zip(r.days)
                    .filter(|(_, on)| *on)
                    .map(|(d, _)| *d)
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let when = match (&r.calendar, r.season) {
                (Some(c), _) => library
                    .calendars
                    .get(c)
                    .map_or_else(|| c.to_string(), |cal| name_in(l, &cal.name).to_owned()),
                (None, Some((from, to))) => format!(
                    "{:02}-{:02} – {:02}-{:02}",
                    from.month, from.day, to.month, to.day
                ),
                (None, None) => "–".into(),
            };
            let _ = write!(
                main,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0} %</td></tr>",
                esc(&r.name),
                esc(&super::scene_name(l, library, &r.scene)),
                esc(&r.start.to_string()),
                esc(&r.end.to_string()),
                esc(&days),
                esc(&when),
                r.priority,
                r.brightness.pct()
            );
        }
        main.push_str("</tbody>");
        main.push_str(super::TABLE_END);
    }
    main.push_str("</section>");
    let title = t(l, "schedule-title");
    Ok(page(lang, Some(&who), title, "/schedule", &main))
}
