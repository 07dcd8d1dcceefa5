//! The special-day service's responses read, and their holidays added to a calendar file.
#![allow(clippy::unwrap_used)]

use jiff::civil::{Date, date};
use nightscape_core::calendar::kasi::{self, KasiError};
use nightscape_core::show::check;

use crate::common::shipped_library;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../tests/fixtures/kasi/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn both_forms_of_the_response_are_read_with_the_portal_quirks() {
    let year = kasi::parse(&fixture("getRestDeInfo-2027.xml")).unwrap();
    assert_eq!(year.len(), 24);
    assert!(year.iter().all(|d| d.holiday && d.kind == "01"));
    assert_eq!(
        (year[6].date, year[6].name.as_str()),
        (date(2027, 5, 1), "노동절")
    );
    let one = kasi::parse(&fixture("getRestDeInfo-2027-06.json")).unwrap();
    assert_eq!(one.len(), 1, "a single item comes as an object");
    assert_eq!(
        (one[0].date, one[0].name.as_str()),
        (date(2027, 6, 6), "현충일")
    );
    assert_eq!(
        kasi::parse(&fixture("getRestDeInfo-2027-05.json"))
            .unwrap()
            .len(),
        4
    );
    assert!(
        kasi::parse(&fixture("getRestDeInfo-2027-04.json"))
            .unwrap()
            .is_empty(),
        "no items: an empty string"
    );
    assert_eq!(
        kasi::parse(&fixture("unregistered-key.xml")),
        Err(KasiError::Service {
            code: "30".into(),
            message: "SERVICE_KEY_IS_NOT_REGISTERED_ERROR".into()
        })
    );
    let refused = r#"{"response":{"header":{"resultCode":"22","resultMsg":"LIMITED NUMBER OF SERVICE REQUESTS EXCEEDS ERROR."}}}"#;
    assert!(matches!(kasi::parse(refused), Err(KasiError::Service { code, .. }) if code == "22"));
    for junk in [
        "",
        "hello",
        "{",
        "<response><header><resultCode>00</resultCode></header><body><items><item><locdate>2027-01-01</locdate></item></items></body></response>",
    ] {
        assert!(
            matches!(kasi::parse(junk), Err(KasiError::Malformed(_))),
            "{junk:?}"
        );
    }
}

#[test]
fn next_years_holidays_are_added_to_the_calendar_file_and_the_shipped_one_agrees_with_the_service()
{
    let sources = shipped_library();
    let file = sources
        .iter()
        .find(|f| f.path == "calendars/kr-holidays.toml")
        .unwrap();
    let year: Vec<(Date, String)> = kasi::parse(&fixture("getRestDeInfo-2027.xml"))
        .unwrap()
        .into_iter()
        .filter(|d| d.holiday)
        .map(|d| (d.date, d.name))
        .collect();
    let shipped = check(&sources).library;
    let calendar = &shipped.calendars[&"kr-holidays".parse().unwrap()];
    let (_, added) = kasi::add_dates(&file.text, &|d| calendar.contains(d), &year).unwrap();
    assert_eq!(
        added,
        Vec::<Date>::new(),
        "the shipped 2027 dates are the service's"
    );

    // A calendar that stops at 2026 gets all of 2027, and the library still checks.
    let only_2026: String = file
        .text
        .lines()
        .filter(|l| !l.contains("\"2027-"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut edited = sources.clone();
    edited
        .iter_mut()
        .find(|f| f.path == file.path)
        .unwrap()
        .text = only_2026.clone();
    let before = check(&edited).library;
    let cal = &before.calendars[&"kr-holidays".parse().unwrap()];
    let (text, added) = kasi::add_dates(&only_2026, &|d| cal.contains(d), &year).unwrap();
    assert_eq!(added.len(), 24);
    assert!(
        text.starts_with(&only_2026[..only_2026.find("\n]").unwrap()]),
        "what was there is kept byte for byte"
    );
    edited
        .iter_mut()
        .find(|f| f.path == file.path)
        .unwrap()
        .text = text;
    let after = check(&edited);
    assert_eq!(after.error_count(), 0, "{:?}", after.diagnostics);
    let cal = &after.library.calendars[&"kr-holidays".parse().unwrap()];
    assert_eq!(cal.name_of(date(2027, 7, 19)), Some("대체공휴일"));
    assert!(year.iter().all(|(d, _)| cal.contains(*d)));
}

/// The checker's verdict on a calendar with `entries` (TOML inline tables) beside the
/// shipped library: each `calendar-date-range` diagnostic as (severity, line, field path),
/// and whether the calendar joined the library.
fn dates_check(entries: &[&str]) -> (Vec<(String, u32, String)>, bool) {
    let mut sources = shipped_library();
    let text = format!(
        "name = {{ ko = \"시험\", en = \"Test\" }}\ndates = [\n{}]\n",
        entries
            .iter()
            .map(|e| format!("  {e},\n"))
            .collect::<String>()
    );
    sources.push(nightscape_core::SourceFile {
        path: "calendars/test-days.toml".into(),
        text,
    });
    let checked = check(&sources);
    let found = checked
        .diagnostics
        .iter()
        .filter(|d| d.code.as_str() == "calendar-date-range")
        .map(|d| {
            assert_eq!(d.location.file, "calendars/test-days.toml");
            assert!(d.message.contains("check the year"), "{}", d.message);
            (
                d.severity.as_str().to_owned(),
                d.location.line_col.map_or(0, |lc| lc.line),
                d.path.to_string(),
            )
        })
        .collect();
    let joined = checked
        .library
        .calendars
        .contains_key(&"test-days".parse().unwrap());
    (found, joined)
}

/// Regression: 0001-01-01 and 9999-12-31 were accepted as calendar dates; a 9999 date also
/// silenced the warning that the calendar runs out. This century is the window (fixed, so
/// the server and every gateway, which checks its plan again, always agree).
#[test]
fn calendar_dates_outside_this_century_are_refused_with_what_to_fix() {
    for (dates, outside) in [
        (vec!["0001-01-01"], vec!["dates[0].date"]),
        (vec!["9999-12-31"], vec!["dates[0].date"]),
        (vec!["1999-12-31"], vec!["dates[0].date"]),
        (vec!["2100-01-01"], vec!["dates[0].date"]),
        (vec!["2000-01-01", "2099-12-31"], vec![]),
    ] {
        let entries: Vec<String> = dates
            .iter()
            .map(|d| format!("{{ date = \"{d}\", name = \"x\" }}"))
            .collect();
        let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
        let (found, joined) = dates_check(&entries);
        let paths: Vec<&str> = found.iter().map(|(_, _, p)| p.as_str()).collect();
        assert_eq!(paths, outside, "{dates:?}");
        assert!(found.iter().all(|(s, line, _)| s == "error" && *line == 3));
        assert_eq!(joined, outside.is_empty(), "{dates:?}");
    }
    // A range names its wrong end.
    let (found, _) = dates_check(&[r#"{ from = "2026-12-30", to = "9999-12-31", name = "x" }"#]);
    assert_eq!(
        found,
        [("error".to_owned(), 3, "dates[0].to".to_owned())],
        "a range's wrong end"
    );
    let (found, _) = dates_check(&[r#"{ from = "1999-12-31", to = "2000-01-01", name = "x" }"#]);
    assert_eq!(found, [("error".to_owned(), 3, "dates[0].from".to_owned())]);
}

/// An imported iCalendar feed may carry history: its dates outside the window are left
/// out with a warning at the event's line, and the rest of the calendar still works.
#[test]
fn an_ics_feed_keeps_its_dates_in_the_window_and_warns_of_the_rest() {
    let mut sources = shipped_library();
    sources.push(nightscape_core::SourceFile {
        path: "calendars/old-feed.ics".into(),
        text: "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:Founding day\nDTSTART;VALUE=DATE:19980505\nRRULE:FREQ=YEARLY;COUNT=30\nEND:VEVENT\nEND:VCALENDAR\n".into(),
    });
    let checked = check(&sources);
    let warnings: Vec<_> = checked
        .diagnostics
        .iter()
        .filter(|d| d.code.as_str() == "calendar-date-range")
        .map(|d| {
            (
                d.severity.as_str(),
                d.location.file.as_str(),
                d.location.line_col.map(|lc| lc.line),
            )
        })
        .collect();
    assert_eq!(
        warnings,
        [
            ("warning", "calendars/old-feed.ics", Some(2)),
            ("warning", "calendars/old-feed.ics", Some(2))
        ],
        "1998 and 1999"
    );
    let cal = &checked.library.calendars[&"old-feed".parse().unwrap()];
    assert_eq!(
        (cal.dates.first().copied(), cal.dates.last().copied()),
        (Some(date(2000, 5, 5)), Some(date(2027, 5, 5)))
    );
}
