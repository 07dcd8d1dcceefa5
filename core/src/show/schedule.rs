//! Lowering schedules and calendars.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::civil::Date;

use super::Problems;
use super::file::{CalendarFile, ScheduleFile};
use crate::calendar::{self, Calendar, CalendarId, parse_ics};
use crate::diag::{Code, FieldPath};
use crate::model::{Curfew, Level, Site};
use crate::scene::SceneId;
use crate::schedule::{MonthDay, Rule, RuleTime, Schedule, weekday_index};

fn date(text: &str, path: &FieldPath, p: &mut Problems) -> Option<Date> {
    let parsed = text.parse::<Date>().ok();
    if parsed.is_none() {
        p.error(
            Code::BadValue,
            path,
            format!("`{text}` is not a date; write YYYY-MM-DD, e.g. \"2026-09-25\""),
        );
    }
    parsed
}

/// A calendar written in TOML.
pub(crate) fn calendar(id: CalendarId, file: CalendarFile, p: &mut Problems) -> Option<Calendar> {
    let root = FieldPath::root();
    let name = super::lower::name(file.name, &root.key("name"), p);
    let mut dates = BTreeSet::new();
    let mut names = Vec::new();
    for (i, entry) in file.dates.iter().enumerate() {
        let path = root.key("dates").index(i);
        let (first, last) = match (&entry.date, &entry.from, &entry.to) {
            (Some(d), None, None) => {
                let d = date(d, &path.key("date"), p);
                (d, d)
            }
            (None, Some(f), Some(t)) => {
                (date(f, &path.key("from"), p), date(t, &path.key("to"), p))
            }
            _ => {
                p.error(
                    Code::Conflict,
                    &path,
                    "give `date`, or `from` and `to` — not both, not neither",
                );
                continue;
            }
        };
        let (Some(first), Some(last)) = (first, last) else {
            continue;
        };
        let ends = if entry.date.is_some() {
            vec![(first, "date")]
        } else {
            vec![(first, "from"), (last, "to")]
        };
        let mut outside = false;
        for (d, key) in ends.iter().filter(|(d, _)| !calendar::in_range(*d)) {
            p.error(
                Code::CalendarDateRange,
                &path.key(*key),
                calendar::out_of_range_message(*d),
            );
            outside = true;
        }
        if outside {
            continue;
        }
        if last < first || first.until(last).map_or(true, |s| s.get_days() > 366) {
            p.error(
                Code::OutOfRange,
                &path.key("to"),
                "`to` must be on or after `from`, within a year",
            );
            continue;
        }
        let mut d = first;
        loop {
            if !dates.insert(d) {
                p.warning(Code::DuplicateId, &path, format!("{d} is listed twice"));
            }
            names.push((d, entry.name.clone()));
            if d >= last {
                break;
            }
            d = match d.tomorrow() {
                Ok(n) => n,
                Err(_) => break,
            };
        }
    }
    if dates.is_empty() && !p.has_errors() {
        p.warning(
            Code::Unused,
            &root.key("dates"),
            "the calendar has no dates",
        );
    }
    (!p.has_errors()).then_some(Calendar {
        id,
        name,
        source: file.source,
        dates,
        names,
    })
}

/// A calendar imported from an iCalendar file. Problems are located by line.
pub(crate) fn calendar_ics(id: CalendarId, text: &str, p: &mut Problems) -> Option<Calendar> {
    let (name, events, errors) = parse_ics(text);
    for e in errors {
        p.error_at_line(Code::BadValue, e.line, e.message);
    }
    let mut dates = BTreeSet::new();
    let mut names = Vec::new();
    for event in events {
        // An imported feed may carry history or repeat far ahead (a yearly event from 1988,
        // COUNT=100): those dates are left out with a warning rather than refusing the
        // calendar, since nobody typed them wrong here.
        if !calendar::in_range(event.first) || !calendar::in_range(event.last) {
            let d = if calendar::in_range(event.first) {
                event.last
            } else {
                event.first
            };
            p.warning_at_line(
                Code::CalendarDateRange,
                event.line,
                format!(
                    "`{}`: {}; the dates outside are left out",
                    event.summary,
                    calendar::out_of_range_message(d)
                ),
            );
        }
        let mut d = event.first.max(calendar::FIRST_DATE);
        while d <= event.last.min(calendar::LAST_DATE) {
            dates.insert(d);
            names.push((d, event.summary.clone()));
            d = match d.tomorrow() {
                Ok(n) => n,
                Err(_) => break,
            };
        }
    }
    if dates.is_empty() {
        p.warning(
            Code::Unused,
            &FieldPath::root(),
            "the calendar file has no events",
        );
    }
    let title = name.unwrap_or_else(|| id.to_string());
    Some(Calendar {
        id,
        name: crate::model::Name {
            ko: title.clone(),
            en: Some(title),
        },
        source: Some("iCalendar import".into()),
        dates,
        names,
    })
}

pub(crate) fn schedule(
    site: &Site,
    scenes: &BTreeSet<String>,
    calendars: &BTreeMap<CalendarId, Calendar>,
    file: ScheduleFile,
    p: &mut Problems,
) -> Option<Schedule> {
    let root = FieldPath::root();
    let mut rules = Vec::new();
    let mut names = BTreeSet::new();
    for (i, r) in file.rules.into_iter().enumerate() {
        let path = root.key("rules").index(i);
        if r.name.trim().is_empty() {
            p.error(
                Code::Missing,
                &path.key("name"),
                "the rule needs a name; it is shown as the cause of what plays",
            );
        } else if !names.insert(r.name.clone()) {
            p.error(
                Code::DuplicateId,
                &path.key("name"),
                format!("rule `{}` is defined twice", r.name),
            );
        }
        let scene = SceneId::new(&r.scene)
            .ok()
            .filter(|id| scenes.contains(id.as_str()));
        if scene.is_none() {
            let known: Vec<&str> = scenes.iter().map(String::as_str).collect();
            p.error(
                Code::UnknownRef,
                &path.key("scene"),
                format!(
                    "site `{}` has no scene `{}` (it has {})",
                    site.id,
                    r.scene,
                    known.join(", ")
                ),
            );
        }
        let clock = |text: &str, key: &str, p: &mut Problems| {
            let parsed = RuleTime::parse(text);
            match parsed {
                None => p.error(
                    Code::BadValue,
                    &path.key(key),
                    format!("`{text}` is not a time: write \"21:30\", \"sunset\", \"sunset+15\", \"civil-dusk-10\", \"sunrise\", \"civil-dawn\" or \"curfew\""),
                ),
                Some(RuleTime::Curfew) if key == "start" => {
                    p.error(Code::BadValue, &path.key(key), "a rule cannot start at the curfew; it can end there");
                    return None;
                }
                Some(RuleTime::Curfew) if site.limits.curfew == Curfew::None => {
                    p.error(Code::BadValue, &path.key(key), format!("site `{}` has no curfew to end at", site.id));
                    return None;
                }
                _ => {}
            }
            parsed
        };
        let start = clock(&r.start, "start", p);
        let end = clock(&r.end, "end", p);
        if start.is_some() && start == end {
            p.error(
                Code::Conflict,
                &path.key("end"),
                "the rule ends when it starts; write a span",
            );
        }
        let priority = match r.priority.unwrap_or(0) {
            v if (-1000..=1000).contains(&v) => Some(v as i32),
            v => {
                p.error(
                    Code::OutOfRange,
                    &path.key("priority"),
                    format!("priority is {v}; it must be between -1000 and 1000"),
                );
                None
            }
        };
        let brightness = match Level::from_pct(r.brightness_pct.unwrap_or(100.0)) {
            Ok(l) => Some(l),
            Err(_) => {
                p.error(
                    Code::OutOfRange,
                    &path.key("brightness_pct"),
                    "brightness_pct must be between 0 and 100",
                );
                None
            }
        };
        let mut days = [r.days.is_none(); 7];
        for (k, d) in r.days.iter().flatten().enumerate() {
            match weekday_index(d) {
                Some(w) => days[w] = true,
                None => p.error(
                    Code::BadValue,
                    &path.key("days").index(k),
                    format!("`{d}` is not a day: write mon, tue, wed, thu, fri, sat or sun"),
                ),
            }
        }
        let season = r.season.as_ref().and_then(|s| {
            let sp = path.key("season");
            let from = MonthDay::parse(&s.from);
            let to = MonthDay::parse(&s.to);
            for (key, text, parsed) in [("from", &s.from, from), ("to", &s.to, to)] {
                if parsed.is_none() {
                    p.error(
                        Code::BadValue,
                        &sp.key(key),
                        format!("`{text}` is not a month and day; write MM-DD, e.g. \"11-30\""),
                    );
                }
            }
            Some((from?, to?))
        });
        let calendar = match &r.calendar {
            None => Some(None),
            Some(c) => match CalendarId::new(c)
                .ok()
                .filter(|id| calendars.contains_key(id))
            {
                Some(id) => Some(Some(id)),
                None => {
                    let known: Vec<&str> = calendars.keys().map(|k| k.as_str()).collect();
                    p.error(
                        Code::UnknownRef,
                        &path.key("calendar"),
                        format!(
                            "no calendar `{c}` in calendars/ (known: {})",
                            known.join(", ")
                        ),
                    );
                    None
                }
            },
        };
        let fade = match r.fade_ms {
            None => Some(None),
            Some(ms) if (0..=600_000).contains(&ms) => Some(Some(Duration::from_millis(ms as u64))),
            Some(ms) => {
                p.error(
                    Code::OutOfRange,
                    &path.key("fade_ms"),
                    format!("fade_ms is {ms}; it must be 0 to 600000"),
                );
                None
            }
        };
        if let (
            Some(scene),
            Some(start),
            Some(end),
            Some(priority),
            Some(brightness),
            Some(calendar),
            Some(fade),
        ) = (scene, start, end, priority, brightness, calendar, fade)
        {
            rules.push(Rule {
                name: r.name.into(),
                scene,
                brightness,
                priority,
                start,
                end,
                days,
                season,
                calendar,
                fade,
            });
        }
    }
    (!p.has_errors()).then_some(Schedule { rules })
}
