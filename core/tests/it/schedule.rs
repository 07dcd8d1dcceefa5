//! Schedule evaluation: spans over midnight and the new year, DST gaps and folds, priority
//! and ties, curfew, overrides, holidays in the shipped calendar, polar days.
#![allow(clippy::unwrap_used)]

use crate::common;
use std::sync::Arc;

use jiff::civil::date;
use nightscape_core::calendar::CalendarId;
use nightscape_core::model::{Level, SiteId};
use nightscape_core::scene::SceneId;
use nightscape_core::schedule::{Cause, Evaluator, Override, OverrideKind, epoch_day};
use nightscape_core::show::{ShowLibrary, SourceFile, check};
use nightscape_core::sun::Almanac;

/// A site at (`lat`, `lon`) in `tz` with scenes `a`, `b`, `c`, the given limits and rules.
fn library(lat: f64, lon: f64, tz: &str, limits: &str, rules: &str) -> ShowLibrary {
    let rest = "[[controllers]]\nid = \"px\"\ngateway = \"gw\"\nsacn = { universe = 1 }\n[[fixtures]]\nid = \"f\"\ntype = \"rgb\"\ncontroller = \"px\"\naddress = 1\nat = [0.0, 0.0]\npower_w = 10.0\n[[groups]]\nid = \"all\"\nfixtures = [\"f\"]";
    let site = common::site_toml("park", (lat, lon, tz), 4, limits, rest);
    let scene = |c: &str| {
        format!(
            "name = {{ ko = \"장면\" }}\n[[layers]]\ngroup = \"all\"\neffect = \"static\"\ncolour = \"{c}\"\n"
        )
    };
    let mut sources = vec![
        common::zones(),
        SourceFile {
            path: "sites/t/site.toml".into(),
            text: site,
        },
        SourceFile {
            path: "sites/t/scenes/a.toml".into(),
            text: scene("#ff00ff"),
        },
        SourceFile {
            path: "sites/t/scenes/b.toml".into(),
            text: scene("#00ffff"),
        },
        SourceFile {
            path: "sites/t/scenes/c.toml".into(),
            text: scene("#ffffff"),
        },
        SourceFile {
            path: "sites/t/schedule.toml".into(),
            text: rules.into(),
        },
    ];
    for f in common::shipped_library() {
        if f.path.starts_with("calendars/") {
            sources.push(f);
        }
    }
    let checked = check(&sources);
    let errors: Vec<String> = checked.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(checked.error_count(), 0, "{errors:#?}");
    checked.library
}

fn at(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// The scene playing at each instant, or "-" for dark.
fn scenes(lib: &ShowLibrary, times: &[&str]) -> Vec<String> {
    let almanac = Arc::new(Almanac::new(
        epoch_day(date(2026, 1, 1)),
        epoch_day(date(2028, 1, 1)),
    ));
    let eval = lib.evaluator(&SiteId::new("t").unwrap(), almanac).unwrap();
    times
        .iter()
        .map(|t| {
            eval.cue_at(at(t))
                .scene
                .map_or("-".into(), |s| s.to_string())
        })
        .collect()
}

const SEOUL: (f64, f64, &str) = (36.2, 127.1, "Asia/Seoul");

#[test]
fn spans_run_over_midnight_and_the_new_year() {
    let rules = r#"
[[rules]]
name = "night"
scene = "a"
start = "22:00"
end = "02:00"
season = { from = "12-01", to = "01-31" }
"#;
    let lib = library(SEOUL.0, SEOUL.1, SEOUL.2, "curfew = \"none\"", rules);
    assert_eq!(
        scenes(
            &lib,
            &[
                "2026-12-31T21:59:00+09:00",
                "2026-12-31T22:00:00+09:00",
                "2027-01-01T00:30:00+09:00", // over midnight and the new year
                "2027-01-01T01:59:59+09:00",
                "2027-01-01T02:00:00+09:00",
                "2027-01-31T23:00:00+09:00", // last day of the season
                "2027-02-01T01:00:00+09:00", // … its span still runs into February
                "2027-02-01T23:00:00+09:00", // but no new span starts
                "2026-11-30T23:00:00+09:00",
            ]
        ),
        ["-", "a", "a", "a", "-", "a", "a", "-", "-"]
    );
}

#[test]
fn dst_gap_moves_forward_and_fold_takes_the_first() {
    // New York: clocks go from 02:00 to 03:00 on 2026-03-08 and from 02:00 back to 01:00 on
    // 2026-11-01.
    let rules = r#"
[[rules]]
name = "gap"
scene = "a"
start = "02:30"
end = "04:00"
season = { from = "03-08", to = "03-08" }

[[rules]]
name = "fold"
scene = "b"
start = "01:30"
end = "03:00"
season = { from = "11-01", to = "11-01" }
"#;
    let lib = library(
        40.71,
        -74.01,
        "America/New_York",
        "curfew = \"none\"",
        rules,
    );
    let site = &lib.sites[&SiteId::new("t").unwrap()];
    let almanac = Arc::new(Almanac::new(
        epoch_day(date(2026, 1, 1)),
        epoch_day(date(2027, 1, 1)),
    ));
    let eval = Evaluator::new(
        Arc::new(site.clone()),
        Arc::new(lib.schedules[&site.id].clone()),
        &lib.calendars,
        almanac.clone(),
    );
    let (list, _) = eval.transitions(at("2026-03-08T00:00:00Z"), at("2026-03-09T00:00:00Z"));
    // 02:30 does not exist: the rule starts at 03:30 EDT = 07:30 UTC.
    assert_eq!(list[0].at_ms, at("2026-03-08T07:30:00Z"));
    let (list, _) = eval.transitions(at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z"));
    // 01:30 happens twice: the first, 01:30 EDT = 05:30 UTC.
    assert_eq!(list[0].at_ms, at("2026-11-01T05:30:00Z"));
    assert_eq!(list[0].cue.scene.as_ref().unwrap().as_str(), "b");
}

#[test]
fn higher_priority_wins_and_ties_go_to_the_later_start_then_the_first_written() {
    let rules = r#"
[[rules]]
name = "base"
scene = "a"
start = "18:00"
end = "23:00"
priority = 10

[[rules]]
name = "special"
scene = "b"
start = "20:00"
end = "21:00"
priority = 5

[[rules]]
name = "later"
scene = "c"
start = "21:30"
end = "22:00"
priority = 10

[[rules]]
name = "twin-first"
scene = "b"
start = "22:30"
end = "23:30"
priority = 10

[[rules]]
name = "twin-second"
scene = "c"
start = "22:30"
end = "23:30"
priority = 10
"#;
    let lib = library(SEOUL.0, SEOUL.1, SEOUL.2, "curfew = \"none\"", rules);
    assert_eq!(
        scenes(
            &lib,
            &[
                "2026-06-10T20:30:00+09:00", // lower priority does not win
                "2026-06-10T21:45:00+09:00", // equal priority: the later start wins
                "2026-06-10T22:45:00+09:00", // equal start too: the first written wins
                "2026-06-10T23:15:00+09:00",
            ]
        ),
        ["a", "c", "b", "b"]
    );
}

#[test]
fn curfew_clamps_last_and_overrides_stack_in_order() {
    let rules = r#"
[[rules]]
name = "evening"
scene = "a"
start = "19:00"
end = "23:30"
"#;
    let lib = library(
        SEOUL.0,
        SEOUL.1,
        SEOUL.2,
        "curfew = \"22:00\"\ncurfew_level_pct = 20",
        rules,
    );
    let site = &lib.sites[&SiteId::new("t").unwrap()];
    let almanac = Arc::new(Almanac::new(
        epoch_day(date(2026, 1, 1)),
        epoch_day(date(2027, 1, 1)),
    ));
    let eval = Evaluator::new(
        Arc::new(site.clone()),
        Arc::new(lib.schedules[&site.id].clone()),
        &lib.calendars,
        almanac.clone(),
    );
    let before = eval.cue_at(at("2026-06-10T21:00:00+09:00"));
    assert_eq!(
        (before.brightness, &before.cause),
        (
            Level::FULL,
            &Cause::Rule {
                index: 0,
                name: "evening".into()
            }
        )
    );
    let during = eval.cue_at(at("2026-06-10T22:30:00+09:00"));
    assert_eq!(during.brightness, Level::from_pct(20.0).unwrap());
    assert_eq!(
        during.cause,
        Cause::Curfew {
            rule: Some("evening".into())
        }
    );
    // The curfew lasts until sunrise, not just until the rule ends.
    let (list, _) = eval.transitions(at("2026-06-10T09:00:00Z"), at("2026-06-11T09:00:00Z"));
    let causes: Vec<String> = list.iter().map(|t| t.cue.cause.to_string()).collect();
    assert_eq!(
        causes,
        ["rule evening", "curfew (over rule evening)", "curfew"]
    );

    let t = at("2026-06-10T22:30:00+09:00");
    let over = |kind, from: &str, until: Option<&str>| Override {
        kind,
        from_ms: at(from),
        until_ms: until.map(at),
    };
    let scene_b = OverrideKind::Scene {
        scene: SceneId::new("b").unwrap(),
        brightness: Level::FULL,
    };
    // An override outranks the rule but is still held to the curfew level …
    let o = [over(
        scene_b.clone(),
        "2026-06-10T22:00:00+09:00",
        Some("2026-06-11T01:00:00+09:00"),
    )];
    let cue = eval.cue_with(t, &o);
    assert_eq!(
        (cue.scene.as_ref().unwrap().as_str(), cue.brightness),
        ("b", Level::from_pct(20.0).unwrap())
    );
    // … unless an admin's curfew exception is active.
    let with_exception = [
        o[0].clone(),
        over(
            OverrideKind::CurfewException,
            "2026-06-10T22:00:00+09:00",
            Some("2026-06-10T23:00:00+09:00"),
        ),
    ];
    assert_eq!(eval.cue_with(t, &with_exception).brightness, Level::FULL);
    // A latched blackout outranks everything, immediately.
    let all = [
        with_exception[0].clone(),
        with_exception[1].clone(),
        over(OverrideKind::Blackout, "2026-06-10T22:10:00+09:00", None),
    ];
    let cue = eval.cue_with(t, &all);
    assert_eq!(
        (cue.scene, cue.cause, cue.fade),
        (None, Cause::Blackout, Some(std::time::Duration::ZERO))
    );
    // An expired override is gone.
    assert_eq!(
        eval.cue_with(at("2026-06-11T02:00:00+09:00"), &o).scene,
        None
    );
    // An energy-saving night: whatever plays, at half its brightness; the lower of two
    // dims wins, and the curfew exception still lets it through the curfew.
    let dim = |pct| OverrideKind::Dim {
        factor: Level::from_pct(pct).unwrap(),
    };
    let saving = [
        with_exception[0].clone(),
        with_exception[1].clone(),
        over(
            dim(50.0),
            "2026-06-10T00:00:00+09:00",
            Some("2026-06-12T00:00:00+09:00"),
        ),
        over(
            dim(80.0),
            "2026-06-10T00:00:00+09:00",
            Some("2026-06-12T00:00:00+09:00"),
        ),
    ];
    let cue = eval.cue_with(t, &saving);
    assert_eq!(
        (cue.scene.as_ref().unwrap().as_str(), cue.brightness),
        ("b", Level::from_pct(50.0).unwrap())
    );
}

#[test]
fn shipped_holidays_include_seollal_chuseok_and_substitutes() {
    let lib = library(
        SEOUL.0,
        SEOUL.1,
        SEOUL.2,
        "",
        "[[rules]]\nname = \"x\"\nscene = \"a\"\nstart = \"sunset\"\nend = \"22:00\"\n",
    );
    let holidays = &lib.calendars[&CalendarId::new("kr-holidays").unwrap()];
    for (d, what) in [
        (date(2026, 2, 17), "Seollal"),
        (date(2026, 2, 16), "Seollal eve"),
        (date(2026, 9, 25), "Chuseok"),
        (date(2026, 3, 2), "substitute for Independence Movement Day"),
        (date(2026, 10, 5), "substitute for National Foundation Day"),
        (date(2027, 2, 9), "substitute for Seollal"),
        (date(2027, 9, 15), "Chuseok 2027"),
        (date(2027, 12, 27), "substitute for Christmas"),
        // The 2026 amendment: Labor Day and Constitution Day, with substitutes.
        (date(2026, 5, 1), "Labor Day"),
        (date(2026, 7, 17), "Constitution Day"),
        (date(2027, 5, 1), "Labor Day 2027"),
        (date(2027, 5, 3), "substitute for Labor Day (Saturday)"),
        (date(2027, 7, 17), "Constitution Day 2027"),
        (
            date(2027, 7, 19),
            "substitute for Constitution Day (Saturday)",
        ),
    ] {
        assert!(holidays.contains(d), "{d} ({what})");
    }
    for d in [date(2026, 3, 3), date(2026, 2, 19), date(2026, 6, 8)] {
        assert!(!holidays.contains(d), "{d}");
    }
    let festivals = &lib.calendars[&CalendarId::new("festival-nights").unwrap()];
    assert!(festivals.contains(date(2026, 10, 18)) && !festivals.contains(date(2026, 10, 19)));
    assert!(
        festivals.contains(date(2027, 12, 24)),
        "a yearly repeat from the .ics"
    );
}

#[test]
fn holiday_rules_fire_only_on_holidays() {
    let rules = r#"
[[rules]]
name = "evening"
scene = "a"
start = "sunset"
end = "22:00"

[[rules]]
name = "holiday"
scene = "b"
start = "sunset"
end = "22:00"
calendar = "kr-holidays"
priority = 5
"#;
    let lib = library(SEOUL.0, SEOUL.1, SEOUL.2, "curfew = \"none\"", rules);
    assert_eq!(
        scenes(
            &lib,
            &[
                "2026-09-25T20:00:00+09:00",
                "2026-09-27T20:00:00+09:00",
                "2026-02-17T20:00:00+09:00"
            ]
        ),
        ["b", "a", "b"]
    );
}

#[test]
fn polar_days_skip_sun_rules_with_a_note() {
    let rules = "[[rules]]\nname = \"dusk\"\nscene = \"a\"\nstart = \"sunset\"\nend = \"23:00\"\n";
    let lib = library(69.65, 18.96, "Europe/Oslo", "curfew = \"none\"", rules);
    let site = &lib.sites[&SiteId::new("t").unwrap()];
    let almanac = Arc::new(Almanac::new(
        epoch_day(date(2026, 1, 1)),
        epoch_day(date(2027, 1, 1)),
    ));
    let eval = Evaluator::new(
        Arc::new(site.clone()),
        Arc::new(lib.schedules[&site.id].clone()),
        &lib.calendars,
        almanac.clone(),
    );
    let (list, notes) = eval.transitions(at("2026-06-20T00:00:00Z"), at("2026-06-22T00:00:00Z"));
    assert!(list.is_empty(), "{list:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.text.contains("no sunset") && n.text.contains("midnight sun")),
        "{notes:?}"
    );
    // In autumn the rule runs again.
    let (list, _) = eval.transitions(at("2026-09-20T00:00:00Z"), at("2026-09-21T00:00:00Z"));
    assert_eq!(list.len(), 2);
}

#[test]
fn next_transition_is_the_first_of_the_list() {
    let lib = library(
        SEOUL.0,
        SEOUL.1,
        SEOUL.2,
        "",
        "[[rules]]\nname = \"x\"\nscene = \"a\"\nstart = \"sunset\"\nend = \"22:00\"\n",
    );
    let site = &lib.sites[&SiteId::new("t").unwrap()];
    let almanac = Arc::new(Almanac::new(
        epoch_day(date(2026, 1, 1)),
        epoch_day(date(2027, 1, 1)),
    ));
    let eval = Evaluator::new(
        Arc::new(site.clone()),
        Arc::new(lib.schedules[&site.id].clone()),
        &lib.calendars,
        almanac.clone(),
    );
    let t = at("2026-06-10T03:00:00Z");
    let (list, _) = eval.transitions(t, t + 5 * 86_400_000);
    assert_eq!(eval.next_transition(t, 30), Some(list[0].clone()));
    assert_eq!(
        eval.next_transition(list[0].at_ms, 30),
        Some(list[1].clone())
    );
}
