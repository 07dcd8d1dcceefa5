//! Calendars: named sets of dates (public holidays, festival nights) that schedule rules can
//! be limited to. Written as TOML in the library, or imported from iCalendar (`.ics`).

use std::collections::BTreeSet;

use jiff::civil::Date;

pub mod kasi;

pub use crate::ids::CalendarId;

#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    pub id: CalendarId,
    pub name: crate::model::Name,
    pub source: Option<String>,
    /// Every date, with the name of what happens on it.
    pub dates: BTreeSet<Date>,
    pub names: Vec<(Date, String)>,
}

/// The first and last dates a calendar may name: this century.
///
/// The window is fixed, not counted from today, because the checker is a function of the
/// files alone: the server checks a change with it and every gateway checks its plan with it
/// again, and a window that moved with the clock would make a gateway refuse, one new year,
/// a plan the server had accepted. Inside it, a date is one the schedule can mean; outside
/// it, a date is a year typed wrong or a placeholder (0001-01-01, 9999-12-31) — and a
/// far-future placeholder would hide for ever the warning that the calendar is running out.
/// Dates added through the API are held closer, to this year ± 10, where the server's
/// clock is at hand.
pub const FIRST_DATE: Date = Date::constant(2000, 1, 1);
pub const LAST_DATE: Date = Date::constant(2099, 12, 31);

/// Whether a calendar may name `date` ([`FIRST_DATE`] ..= [`LAST_DATE`]).
pub fn in_range(date: Date) -> bool {
    (FIRST_DATE..=LAST_DATE).contains(&date)
}

/// What to fix about a date outside [`FIRST_DATE`] ..= [`LAST_DATE`].
pub fn out_of_range_message(date: Date) -> String {
    format!(
        "{date} is outside the years a calendar may name ({FIRST_DATE} to {LAST_DATE}); check the year — a calendar lists the nights themselves, so there is no \"forever\" date: add the coming dates year by year"
    )
}

/// How many years either side of today a date added by hand (the dashboard's form, the
/// API) may be: a date further off is almost always a year typed wrong (2062 for 2026).
pub const ADD_YEARS: i16 = 10;

/// The dates that may be added by hand on `today`: 1 January ten years back to 31 December
/// ten years ahead, inside [`FIRST_DATE`] ..= [`LAST_DATE`].
pub fn addable(today: Date) -> std::ops::RangeInclusive<Date> {
    let year = |y: i16, month: i8, day: i8| Date::new(y, month, day).ok();
    let first = year(today.year().saturating_sub(ADD_YEARS), 1, 1).unwrap_or(FIRST_DATE);
    let last = year(today.year().saturating_add(ADD_YEARS), 12, 31).unwrap_or(LAST_DATE);
    first.max(FIRST_DATE)..=last.min(LAST_DATE)
}

impl Calendar {
    pub fn contains(&self, date: Date) -> bool {
        self.dates.contains(&date)
    }

    /// The last date the calendar knows.
    pub fn last(&self) -> Option<Date> {
        self.dates.last().copied()
    }

    /// What the calendar calls `date`, if it has it.
    pub fn name_of(&self, date: Date) -> Option<&str> {
        self.names
            .iter()
            .find(|(d, _)| *d == date)
            .map(|(_, n)| n.as_str())
    }
}

/// One event read from an iCalendar file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcsEvent {
    pub summary: String,
    pub first: Date,
    /// Inclusive.
    pub last: Date,
    /// Line of the `BEGIN:VEVENT`, for diagnostics.
    pub line: usize,
}

/// A problem in an iCalendar file, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcsError {
    pub line: usize,
    pub message: String,
}

/// Reads the all-day and timed events of an iCalendar text (RFC 5545): `DTSTART`, `DTEND`
/// (exclusive) or `DURATION` in days, `SUMMARY`, and `RRULE:FREQ=YEARLY` with `COUNT` or
/// `UNTIL`. A timed event counts for the date it starts on. Returns the calendar's name
/// (`X-WR-CALNAME`), the events, and every problem (events with one are skipped).
pub fn parse_ics(text: &str) -> (Option<String>, Vec<IcsEvent>, Vec<IcsError>) {
    // Unfold continuation lines (a line starting with a space or tab continues the last).
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.trim_end_matches('\r');
        if let Some(rest) = raw.strip_prefix(' ').or_else(|| raw.strip_prefix('\t')) {
            if let Some(last) = lines.last_mut() {
                last.1.push_str(rest);
            }
        } else {
            lines.push((i + 1, raw.to_owned()));
        }
    }
    let mut name = None;
    let mut events = Vec::new();
    let mut errors = Vec::new();
    let mut current: Option<Partial> = None;
    for (line, content) in lines {
        let Some((key, value)) = content.split_once(':') else {
            continue;
        };
        let prop = key.split_once(';').map_or(key, |(p, _)| p);
        match (prop.to_ascii_uppercase().as_str(), current.as_mut()) {
            ("X-WR-CALNAME", None) => name = Some(unescape(value)),
            ("BEGIN", None) if value.eq_ignore_ascii_case("VEVENT") => {
                current = Some(Partial {
                    line,
                    ..Partial::default()
                })
            }
            ("END", Some(_)) if value.eq_ignore_ascii_case("VEVENT") => {
                if let Some(p) = current.take() {
                    match p.finish() {
                        Ok(mut list) => events.append(&mut list),
                        Err(message) => errors.push(IcsError {
                            line: p.line,
                            message,
                        }),
                    }
                }
            }
            ("SUMMARY", Some(p)) => p.summary = unescape(value),
            ("DTSTART", Some(p)) => p.start = Some(ics_date(value)),
            ("DTEND", Some(p)) => p.end = Some(ics_date(value)),
            ("DURATION", Some(p)) => p.duration = Some((line, value.to_owned())),
            ("RRULE", Some(p)) => p.rrule = Some((line, value.to_owned())),
            _ => {}
        }
    }
    if let Some(p) = current {
        errors.push(IcsError {
            line: p.line,
            message: "this VEVENT has no END:VEVENT".into(),
        });
    }
    (name, events, errors)
}

#[derive(Debug, Default)]
struct Partial {
    line: usize,
    summary: String,
    start: Option<Result<Date, String>>,
    end: Option<Result<Date, String>>,
    duration: Option<(usize, String)>,
    rrule: Option<(usize, String)>,
}

impl Partial {
    fn finish(&self) -> Result<Vec<IcsEvent>, String> {
        let first = match &self.start {
            None => return Err("the event has no DTSTART".into()),
            Some(r) => r.clone()?,
        };
        let last = match (&self.end, &self.duration) {
            (Some(end), _) => {
                let end = end.clone()?;
                // DTEND is exclusive for dates; a timed event ending the same day is one day.
                end.yesterday().map_err(|e| e.to_string())?.max(first)
            }
            (None, Some((_, d))) => {
                let days = d
                    .trim_start_matches('P')
                    .strip_suffix('D')
                    .and_then(|n| n.parse::<i64>().ok())
                    .ok_or_else(|| format!("DURATION `{d}` is not a number of days such as P2D"))?;
                first
                    .checked_add(jiff::Span::new().days(days.max(1) - 1))
                    .map_err(|e| e.to_string())?
            }
            (None, None) => first,
        };
        if last < first {
            return Err("DTEND is before DTSTART".into());
        }
        let mut out = vec![IcsEvent {
            summary: self.summary.clone(),
            first,
            last,
            line: self.line,
        }];
        if let Some((_, rule)) = &self.rrule {
            let parts: Vec<(&str, &str)> =
                rule.split(';').filter_map(|p| p.split_once('=')).collect();
            let get = |k: &str| {
                parts
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(k))
                    .map(|(_, v)| *v)
            };
            if get("FREQ").is_none_or(|f| !f.eq_ignore_ascii_case("YEARLY")) {
                return Err(format!("RRULE `{rule}`: only FREQ=YEARLY repeats are read"));
            }
            let count: i64 = match (get("COUNT"), get("UNTIL")) {
                (Some(c), _) => c
                    .parse()
                    .map_err(|_| format!("RRULE COUNT `{c}` is not a number"))?,
                (None, Some(u)) => {
                    let until = ics_date(u)?;
                    i64::from(until.year() - first.year()) + 1
                }
                (None, None) => {
                    return Err(format!(
                        "RRULE `{rule}` has no COUNT or UNTIL: an endless repeat cannot be imported"
                    ));
                }
            };
            for k in 1..count.clamp(1, 100) {
                let shift = jiff::Span::new().years(k);
                let (Ok(f), Ok(l)) = (first.checked_add(shift), last.checked_add(shift)) else {
                    break;
                };
                out.push(IcsEvent {
                    summary: self.summary.clone(),
                    first: f,
                    last: l,
                    line: self.line,
                });
            }
        }
        Ok(out)
    }
}

fn ics_date(value: &str) -> Result<Date, String> {
    let digits: String = value.chars().take(8).collect();
    if digits.len() != 8 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`{value}` is not a date such as 20261224 or 20261224T190000"
        ));
    }
    let y: i16 = digits[0..4]
        .parse()
        .map_err(|_| format!("bad year in `{value}`"))?;
    let m: i8 = digits[4..6]
        .parse()
        .map_err(|_| format!("bad month in `{value}`"))?;
    let d: i8 = digits[6..8]
        .parse()
        .map_err(|_| format!("bad day in `{value}`"))?;
    Date::new(y, m, d).map_err(|_| format!("`{value}` is not a date in the calendar"))
}

fn unescape(value: &str) -> String {
    value
        .replace("\\,", ",")
        .replace("\\;", ";")
        .replace("\\n", " ")
        .replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_all_day_multi_day_timed_and_yearly_events() {
        let ics = "BEGIN:VCALENDAR\r\nX-WR-CALNAME:강경 축제\r\nBEGIN:VEVENT\r\nSUMMARY:강경젓갈축제\r\nDTSTART;VALUE=DATE:20261014\r\nDTEND;VALUE=DATE:20261019\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nSUMMARY:Lantern\r\n night\r\nDTSTART;TZID=Asia/Seoul:20261224T190000\r\nDTEND;TZID=Asia/Seoul:20261224T230000\r\nRRULE:FREQ=YEARLY;COUNT=2\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nSUMMARY:broken\r\nDTSTART:2026-13-01\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let (name, events, errors) = parse_ics(ics);
        assert_eq!(name.as_deref(), Some("강경 축제"));
        assert_eq!(events.len(), 3);
        assert_eq!(
            (events[0].first, events[0].last),
            (
                jiff::civil::date(2026, 10, 14),
                jiff::civil::date(2026, 10, 18)
            )
        );
        assert_eq!(events[1].summary, "Lanternnight");
        assert_eq!(
            (events[1].first, events[1].last),
            (
                jiff::civil::date(2026, 12, 24),
                jiff::civil::date(2026, 12, 24)
            )
        );
        assert_eq!(events[2].first, jiff::civil::date(2027, 12, 24));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 15);
    }

    #[test]
    fn never_panics_on_junk() {
        for junk in [
            "",
            "BEGIN:VEVENT",
            "BEGIN:VEVENT\nDTSTART:1\nEND:VEVENT",
            "RRULE:FREQ=YEARLY",
            "BEGIN:VEVENT\nDTSTART:20260101\nRRULE:FREQ=DAILY\nEND:VEVENT",
            "\u{0}\u{1}:::",
        ] {
            let _ = parse_ics(junk);
        }
    }
}
