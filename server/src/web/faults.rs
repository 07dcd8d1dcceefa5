//! Faults (open ones to acknowledge, then their history) and energy: each site's use and lit
//! hours in a month as a chart and a table, with the month as CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::Response;

use super::{MonthQuery, PageLang, esc, local_time, month_nav, month_of, name_in, page, t};
use crate::AppState;
use crate::api::ApiError;
use crate::auth::Principal;
use crate::read;

/// A fault in words staff can act on, in the page's language, from its kind (what to
/// check while it is open, what it was once closed); the gateway's own sentence (English,
/// with the measurements) follows it, smaller.
pub fn fault_problem(l: super::Lang, f: &read::FaultView) -> String {
    use nightscape_core::wire::FaultCode;
    let open = f.status != "closed";
    let plain = match (FaultCode::from_text(&f.kind), open) {
        (Some(FaultCode::Unreachable), true) => t(l, "fault-kind-unreachable"),
        (Some(FaultCode::Unreachable), false) => t(l, "fault-label-unreachable"),
        (Some(FaultCode::Status), true) => t(l, "fault-kind-status"),
        (Some(FaultCode::Status), false) => t(l, "fault-label-status"),
        (Some(FaultCode::DidNotLight), true) => t(l, "fault-kind-did-not-light"),
        (Some(FaultCode::DidNotLight), false) => t(l, "fault-label-did-not-light"),
        (Some(FaultCode::Send), true) => t(l, "fault-kind-send"),
        (Some(FaultCode::Send), false) => t(l, "fault-label-send"),
        (None, true) => t(l, "fault-kind-other"),
        (None, false) => t(l, "fault-label-other"),
    };
    format!("{}<br><small>{}</small>", esc(plain), esc(&f.message))
}

pub async fn faults(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    lang: PageLang,
) -> Result<Response, ApiError> {
    let l = lang.lang;
    let lib = state.store.checked_library().await?;
    let library = &lib.checked.library;
    let tz = super::city_zone(library);
    let site_of: BTreeMap<String, String> = read::gateways(&state.store)
        .await?
        .into_iter()
        .map(|g| (g.gateway, g.site))
        .collect();
    let site_name = |gateway: &str| {
        site_of
            .get(gateway)
            .and_then(|s| s.parse::<nightscape_core::SiteId>().ok())
            .and_then(|s| library.sites.get(&s))
            .map_or_else(|| gateway.to_owned(), |s| name_in(l, &s.name).to_owned())
    };
    let all = read::faults(&state.store).await?;
    let (open, closed): (Vec<_>, Vec<_>) = all.iter().partition(|f| f.status != "closed");
    let mut main = format!(
        "<h1>{}</h1>{}",
        esc(t(l, "faults-title")),
        super::action_result(l, "faults-acknowledged")
    );
    for (rows, key, with_action) in [
        (&open, "faults-open", true),
        (&closed, "faults-history", false),
    ] {
        let _ = write!(
            main,
            "<section aria-labelledby=\"{key}\"><h2 id=\"{key}\">{} ({})</h2>",
            esc(t(l, key)),
            rows.len()
        );
        if rows.is_empty() {
            let _ = write!(main, "<p>{}</p></section>", esc(t(l, "site-none")));
            continue;
        }
        main.push_str(&super::table_open(t(l, key)));
        main.push_str("<thead><tr>");
        for col in [
            "col-site",
            "col-source",
            "col-problem",
            "col-opened",
            "col-status",
            if with_action {
                "col-action"
            } else {
                "col-closed"
            },
        ] {
            let _ = write!(main, "<th scope=\"col\">{}</th>", esc(t(l, col)));
        }
        main.push_str("</tr></thead><tbody>");
        for f in rows.iter() {
            let status = match f.status.as_str() {
                "open" => t(l, "fault-open").to_owned(),
                "acknowledged" => format!(
                    "{} ({})",
                    t(l, "fault-acknowledged"),
                    f.acknowledged_by.as_deref().unwrap_or("")
                ),
                _ => t(l, "fault-closed").to_owned(),
            };
            let last = if with_action {
                let may = site_of
                    .get(&f.gateway)
                    .and_then(|s| s.parse().ok())
                    .is_some_and(|s| who.may_operate(&s));
                if f.status == "open" && may {
                    format!(
                        "<button type=\"button\" class=\"ack\" data-fault=\"{}\">{}</button>",
                        f.id,
                        esc(t(l, "faults-acknowledge"))
                    )
                } else {
                    String::new()
                }
            } else {
                f.closed_at_ms
                    .map(|c| local_time(&tz, c))
                    .unwrap_or_default()
            };
            let _ = write!(
                main,
                "<tr data-fault=\"{}\"><td>{}<br><small>{}</small></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                f.id,
                esc(&site_name(&f.gateway)),
                esc(&f.gateway),
                esc(&f.source),
                fault_problem(l, f),
                esc(&local_time(&tz, f.opened_at_ms)),
                esc(&status),
                last
            );
        }
        main.push_str("</tbody>");
        main.push_str(super::TABLE_END);
        main.push_str("</section>");
    }
    let title = t(l, "faults-title");
    Ok(page(lang, Some(&who), title, "/faults", &main))
}

pub async fn energy(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<MonthQuery>,
    lang: PageLang,
) -> Result<Response, ApiError> {
    let l = lang.lang;
    let lib = state.store.checked_library().await?;
    let library = &lib.checked.library;
    let tz = super::city_zone(library);
    let month = month_of(&q, &tz, state.clock.now_ms());
    let last = month.last_of_month();
    let (from, to) = (month.to_string(), last.to_string());
    let rows = read::energy(&state.store, Some(&from), Some(&to)).await?;
    let mut per_site: BTreeMap<&str, Month> = BTreeMap::new();
    let mut per_day: BTreeMap<&str, f64> = BTreeMap::new();
    for r in &rows {
        let e = per_site.entry(&r.site).or_default();
        e.kwh += r.kwh;
        e.hours += r.lit_hours;
        e.days += 1;
        e.sources.insert(source_key(&r.source));
        *per_day.entry(&r.day).or_default() += r.kwh;
    }
    let mut main = format!(
        "<h1>{}</h1>{}<p><a href=\"/api/energy?from={from}&amp;to={to}&amp;format=csv\" download=\"energy-{}.csv\">{}</a></p>",
        esc(t(l, "energy-title")),
        month_nav(l, "/energy", month),
        month.strftime("%Y-%m"),
        esc(t(l, "energy-csv"))
    );
    if rows.is_empty() {
        let _ = write!(main, "<p>{}</p>", esc(t(l, "energy-none")));
    }
    // Each site's use as a bar, the longest the month's largest.
    let names: Vec<(String, (f64, f64, usize, String))> = library
        .sites
        .iter()
        .map(|(id, s)| {
            let m = per_site.get(id.as_str()).cloned().unwrap_or_default();
            let source = m
                .sources
                .iter()
                .map(|k| t(l, k))
                .collect::<Vec<_>>()
                .join(", ");
            (
                name_in(l, &s.name).to_owned(),
                (m.kwh, m.hours, m.days, source),
            )
        })
        .collect();
    let top = names
        .iter()
        .map(|(_, v)| v.0)
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let row_h = 34.0;
    let height = row_h * names.len() as f64 + 20.0;
    let _ = write!(
        main,
        "<section aria-labelledby=\"chart-h\"><h2 id=\"chart-h\">{}</h2><svg class=\"chart\" viewBox=\"0 0 1000 {height:.0}\" role=\"img\" aria-labelledby=\"chart-h\">",
        esc(t(l, "energy-chart"))
    );
    for (k, (name, (kwh, hours, ..))) in names.iter().enumerate() {
        let y = 10.0 + row_h * k as f64;
        let w = 520.0 * kwh / top;
        let _ = write!(
            main,
            "<text x=\"300\" y=\"{ty:.0}\" text-anchor=\"end\">{}</text><rect x=\"310\" y=\"{y:.0}\" width=\"{w:.1}\" height=\"24\" class=\"bar\"/><text x=\"{vx:.0}\" y=\"{ty:.0}\">{kwh:.2} kWh · {hours:.1} h</text>",
            esc(name),
            ty = y + 18.0,
            vx = 318.0 + w,
        );
    }
    main.push_str("</svg></section>");
    // The city's use by day.
    if !per_day.is_empty() {
        let days = last.day() as f64;
        let peak = per_day.values().copied().fold(0.0_f64, f64::max).max(1e-9);
        let _ = write!(
            main,
            "<section aria-labelledby=\"daily-h\"><h2 id=\"daily-h\">{}</h2><svg class=\"chart\" viewBox=\"0 0 1000 260\" role=\"img\" aria-labelledby=\"daily-h\">",
            esc(t(l, "energy-daily"))
        );
        for (day, kwh) in &per_day {
            let Ok(d) = day.parse::<jiff::civil::Date>() else {
                continue;
            };
            let x = 40.0 + 940.0 * (f64::from(d.day()) - 1.0) / days;
            let h = 200.0 * kwh / peak;
            let _ = write!(
                main,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" class=\"bar\"><title>{day}: {kwh:.1} kWh</title></rect>",
                220.0 - h,
                940.0 / days - 4.0
            );
        }
        let _ = write!(
            main,
            "<text x=\"40\" y=\"245\">{}</text><text x=\"980\" y=\"245\" text-anchor=\"end\">{}</text><text x=\"40\" y=\"14\">{peak:.1} kWh</text></svg></section>",
            month.strftime("%m-%d"),
            last.strftime("%m-%d")
        );
    }
    let _ = write!(
        main,
        "<section aria-labelledby=\"table-h\"><h2 id=\"table-h\">{}</h2><table><thead><tr>",
        esc(t(l, "energy-table"))
    );
    for col in [
        "col-site",
        "col-kwh",
        "col-lit-hours",
        "col-nights",
        "col-measured",
    ] {
        let _ = write!(main, "<th scope=\"col\">{}</th>", esc(t(l, col)));
    }
    main.push_str("</tr></thead><tbody>");
    for (name, (kwh, hours, days, source)) in &names {
        let _ = write!(
            main,
            "<tr><td>{}</td><td>{kwh:.2}</td><td>{hours:.1}</td><td>{days}</td><td>{}</td></tr>",
            esc(name),
            esc(source)
        );
    }
    main.push_str("</tbody></table></section>");
    let title = t(l, "energy-title");
    Ok(page(lang, Some(&who), title, "/energy", &main))
}

/// A site's month: energy, lit hours, days reported, and how the figures were made.
#[derive(Debug, Clone, Default)]
struct Month {
    kwh: f64,
    hours: f64,
    days: usize,
    sources: std::collections::BTreeSet<&'static str>,
}

fn source_key(source: &str) -> &'static str {
    match source {
        "measured" => "energy-measured",
        "estimated" => "energy-estimated",
        _ => "energy-mixed",
    }
}
