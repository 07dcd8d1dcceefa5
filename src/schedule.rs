//! `nightscape schedule preview`: a site's sun times and every transition, day by day.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use jiff::civil::Date;
use nightscape_core::model::{SiteId, TimeOfDay};
use nightscape_core::schedule::{Evaluator, epoch_day, local_instant};
use nightscape_core::show::ShowLibrary;
use nightscape_core::sun::{Almanac, Event};

pub enum Format {
    Text,
    Json,
}

pub fn preview(
    library: &ShowLibrary,
    site: &str,
    from: &str,
    days: u32,
    format: Format,
) -> Result<String> {
    let id = SiteId::new(site).with_context(|| format!("`{site}` is not a site id"))?;
    let Some(site) = library.sites.get(&id) else {
        let known: Vec<&str> = library.sites.keys().map(|k| k.as_str()).collect();
        bail!(
            "no site `{id}` in the library (it has: {})",
            known.join(", ")
        );
    };
    let Some(schedule) = library.schedules.get(&id) else {
        bail!("site `{id}` has no schedule (sites/{id}/schedule.toml)");
    };
    let first: Date = from
        .parse()
        .map_err(|_| anyhow::anyhow!("--from `{from}` is not a date such as 2026-12-24"))?;
    if !(1..=366).contains(&days) {
        bail!("--days must be 1 to 366");
    }
    let last = first.checked_add(jiff::Span::new().days(i64::from(days) - 1))?;
    let almanac = Arc::new(Almanac::new(epoch_day(first) - 1, epoch_day(last) + 1));
    let eval = Evaluator::new(
        Arc::new(site.clone()),
        Arc::new(schedule.clone()),
        &library.calendars,
        almanac.clone(),
    );
    let tz = &site.time_zone;
    let midnight = |d: Date| local_instant(d, TimeOfDay::MIDNIGHT, tz);
    let start_ms = midnight(first);
    let end_ms = midnight(last.tomorrow()?);
    let (transitions, notes) = eval.transitions(start_ms, end_ms);
    let opening = eval.cue_at(start_ms);

    // Shown to the minute, rounded (a sunset at 17:21:57 reads 17:22).
    let clock = |ms: i64| -> String {
        jiff::Timestamp::from_millisecond(ms + 30_000)
            .map(|ts| tz.to_datetime(ts).strftime("%H:%M").to_string())
            .unwrap_or_default()
    };
    let rfc = |ms: i64| -> String {
        jiff::Timestamp::from_millisecond(ms)
            .map(|ts| {
                ts.to_zoned_datetime(tz.clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let sun = |d: Date, e: Event| eval.sun(d, e).ok();
    let what = |scene: &Option<nightscape_core::scene::SceneId>, b: f64| match scene {
        Some(s) if b > 0.0 => format!("{s} {:.0} %", b * 100.0),
        _ => "dark".to_owned(),
    };
    let mut day_list = Vec::new();
    let mut d = first;
    while d <= last {
        let (a, b) = (midnight(d), midnight(d.tomorrow()?));
        let calendars: Vec<String> = library
            .calendars
            .values()
            .filter_map(|c| c.name_of(d).map(|n| format!("{}: {n}", c.id)))
            .collect();
        let changes: Vec<_> = transitions
            .iter()
            .filter(|t| t.at_ms >= a && t.at_ms < b)
            .collect();
        let day_notes: Vec<&str> = notes
            .iter()
            .filter(|n| n.date == d)
            .map(|n| n.text.as_str())
            .collect();
        day_list.push((d, calendars, changes, day_notes));
        d = d.tomorrow()?;
    }

    // Rules that depend on a calendar stop when it runs out; say so when the preview does.
    let mut warnings = Vec::new();
    let used: std::collections::BTreeSet<_> = schedule
        .rules
        .iter()
        .filter_map(|r| r.calendar.as_ref())
        .collect();
    for id in used {
        if let Some(cal) = library.calendars.get(id)
            && cal.last().is_none_or(|end| end < last)
        {
            let end = cal
                .last()
                .map_or("no dates".to_owned(), |d| format!("no dates after {d}"));
            warnings.push(format!(
                "calendar `{id}` has {end}: rules that use it do not run after that"
            ));
        }
    }

    match format {
        Format::Json => {
            let days: Vec<serde_json::Value> = day_list
                .iter()
                .map(|(d, calendars, changes, day_notes)| {
                    serde_json::json!({
                        "date": d.to_string(),
                        "weekday": d.strftime("%a").to_string(),
                        "sunrise": sun(*d, Event::Sunrise).map(rfc),
                        "sunset": sun(*d, Event::Sunset).map(rfc),
                        "civil_dusk": sun(*d, Event::CivilDusk).map(rfc),
                        "calendars": calendars,
                        "transitions": changes.iter().map(|t| serde_json::json!({
                            "at": rfc(t.at_ms),
                            "scene": t.cue.scene.as_ref().filter(|_| t.cue.brightness.get() > 0.0).map(|s| s.to_string()),
                            "brightness_pct": (t.cue.brightness.get() * 100.0).round(),
                            "cause": t.cue.cause.to_string(),
                        })).collect::<Vec<_>>(),
                        "notes": day_notes,
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "site": id.to_string(),
                "time_zone": tz.iana_name().unwrap_or(""),
                "start": { "scene": opening.scene.as_ref().map(|s| s.to_string()), "brightness_pct": (opening.brightness.get() * 100.0).round(), "cause": opening.cause.to_string() },
                "days": days,
                "warnings": warnings,
            });
            Ok(serde_json::to_string_pretty(&doc)? + "\n")
        }
        Format::Text => {
            let mut out = String::new();
            let name = site.name.en.as_deref().unwrap_or(&site.name.ko);
            writeln!(
                out,
                "{} ({id}), {}",
                name,
                tz.iana_name().unwrap_or("local")
            )?;
            for w in &warnings {
                writeln!(out, "warning: {w}")?;
            }
            writeln!(
                out,
                "at the start: {} ({})",
                what(&opening.scene, opening.brightness.get()),
                opening.cause
            )?;
            for (d, calendars, changes, day_notes) in &day_list {
                let sun_text = |e: Event, label: &str| match sun(*d, e) {
                    Some(t) => format!("{label} {}", clock(t)),
                    None => format!("{label} none"),
                };
                writeln!(
                    out,
                    "\n{} {}  {}  {}  {}",
                    d,
                    d.strftime("%a"),
                    sun_text(Event::Sunrise, "sunrise"),
                    sun_text(Event::Sunset, "sunset"),
                    sun_text(Event::CivilDusk, "civil dusk")
                )?;
                for c in calendars {
                    writeln!(out, "  [{c}]")?;
                }
                for t in changes {
                    writeln!(
                        out,
                        "  {}  {:<28} {}",
                        clock(t.at_ms),
                        what(&t.cue.scene, t.cue.brightness.get()),
                        t.cue.cause
                    )?;
                }
                for n in day_notes {
                    writeln!(out, "  note: {n}")?;
                }
            }
            Ok(out)
        }
    }
}
