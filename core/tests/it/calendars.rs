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
