//! A site's night as the light-pollution rules see it, and what a gateway's reports say
//! happened in it.
//!
//! The night of a local date runs from that date's sunset to the next morning's sunrise at
//! the site ([`Night::of`], from the same sun times the schedule uses). Inside it lie the
//! legal window (the zone table's delay after sunset to its lead before sunrise), where the
//! luminance rules apply, and the curfew.
//!
//! [`measure`] is the compliance report's arithmetic: a pure function of the cue changes a
//! gateway reported, the stretches of time in which the server heard the gateway, the night
//! and the present instant. It counts only what was reported: nothing outside the night,
//! nothing after `now` (the last cue is never carried into the future), and nothing while
//! the gateway was not heard from — that time is returned as not reported, because a
//! gateway that is silent may be dark, lit or without power, and a report must not guess.

use std::time::Duration;

use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::model::{Curfew, TimeOfDay};
use crate::schedule::{epoch_day, local_instant};
use crate::sun::{Almanac, Event, Place, Polar};

/// What decides a site's night besides the sun.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// The luminance rules apply from this long after sunset…
    pub after_sunset: Duration,
    /// …to this long before sunrise.
    pub before_sunrise: Duration,
    pub curfew: Curfew,
}

/// One night of one site, as instants (milliseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Night {
    /// The local date the night begins on.
    pub date: Date,
    /// Sunset of `date`.
    pub from_ms: i64,
    /// Sunrise of the next morning (never before `from_ms`).
    pub to_ms: i64,
    /// Where the luminance rules apply; empty when the night is shorter than the margins.
    pub legal: (i64, i64),
    pub curfew_ms: Option<i64>,
}

impl Night {
    /// The night that begins on `date` at `place`, in the site's time zone `tz`.
    ///
    /// Sunset and sunrise are the ones the schedule evaluator uses (the event on the local
    /// date's day number), held between that date's noon and the next noon so that a night
    /// never overlaps its neighbours. Where the sun does not set (midnight sun) the night is
    /// empty; where it does not rise (polar night) the night runs noon to noon.
    pub fn of(date: Date, place: Place, tz: &TimeZone, almanac: &Almanac, rules: &Rules) -> Night {
        let next = date.tomorrow().unwrap_or(date);
        let noon = TimeOfDay::from_minutes(12 * 60).unwrap_or(TimeOfDay::MIDNIGHT);
        let (first_noon, next_noon) =
            (local_instant(date, noon, tz), local_instant(next, noon, tz));
        let from = match almanac.event(place, epoch_day(date), Event::Sunset) {
            Ok(t) => t.clamp(first_noon, next_noon),
            Err(Polar::AlwaysBelow) => first_noon,
            Err(Polar::AlwaysAbove) => next_noon,
        };
        let to = match almanac.event(place, epoch_day(next), Event::Sunrise) {
            Ok(t) => t.clamp(first_noon, next_noon),
            Err(Polar::AlwaysBelow) => next_noon,
            Err(Polar::AlwaysAbove) => from,
        }
        .max(from);
        let after = i64::try_from(rules.after_sunset.as_millis()).unwrap_or(i64::MAX / 4);
        let before = i64::try_from(rules.before_sunrise.as_millis()).unwrap_or(i64::MAX / 4);
        let legal_from = from.saturating_add(after);
        let legal = (legal_from, to.saturating_sub(before).max(legal_from));
        // A curfew before noon belongs to the morning after (00:00, 01:30); one after noon
        // to the evening of the date (22:00, 23:00).
        let curfew_ms = match rules.curfew {
            Curfew::At(t) if t.minutes() >= 12 * 60 => Some(local_instant(date, t, tz)),
            Curfew::At(t) => Some(local_instant(next, t, tz)),
            Curfew::None => None,
        };
        Night {
            date,
            from_ms: from,
            to_ms: to,
            legal,
            curfew_ms,
        }
    }
}

/// A cue the gateway reported: from `at_ms` on, it played this.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CueChange {
    pub at_ms: i64,
    /// A scene at a brightness above zero.
    pub lit: bool,
    /// The brightness the cue asked for (before the site's cap).
    pub pct: f64,
}

/// Where a night stands at the instant it is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Sunset has not come yet: nothing to count.
    NotBegun,
    /// Between sunset and sunrise: the figures run up to now and will grow.
    InProgress,
    /// Sunrise has passed: the figures are final (unless late reports arrive).
    Over,
}

/// What a night's reports show, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measure {
    pub progress: Progress,
    /// The figures cover the night from its sunset up to here: sunrise, or now.
    pub counted_to_ms: i64,
    /// Time in the night (up to `counted_to_ms`) in which the gateway was heard from and
    /// had reported what it played.
    pub reported_ms: i64,
    /// The rest of the night up to `counted_to_ms`: what played then is not known.
    pub not_reported_ms: i64,
    /// Lit, within the reported time.
    pub lit_ms: i64,
    /// Lit after the curfew, within the reported time.
    pub lit_after_curfew_ms: i64,
    /// The highest brightness a lit cue asked for inside the legal window, within the
    /// reported time (0 when none).
    pub max_pct: f64,
}

/// Measures `night` from the gateway's `cues` (in time order, starting with the last one
/// before the night when there is one) and the `reporting` stretches `(from, to)` in which
/// the server heard the gateway, as of `now_ms`.
///
/// Time counts only where all of these hold: inside the night, before `now_ms`, inside a
/// reporting stretch, and at or after the first reported cue (before it, what played is not
/// known). Everything else in the night up to `now_ms` is not reported.
pub fn measure(
    cues: &[CueChange],
    reporting: &[(i64, i64)],
    night: &Night,
    now_ms: i64,
) -> Measure {
    let progress = if now_ms < night.from_ms {
        Progress::NotBegun
    } else if now_ms < night.to_ms {
        Progress::InProgress
    } else {
        Progress::Over
    };
    let horizon = now_ms.clamp(night.from_ms, night.to_ms);
    let known_from = cues.first().map_or(horizon, |c| c.at_ms.max(night.from_ms));
    let known = merged(reporting, known_from, horizon);
    let reported_ms: i64 = known.iter().map(|(a, b)| b - a).sum();
    let mut out = Measure {
        progress,
        counted_to_ms: horizon,
        reported_ms,
        not_reported_ms: horizon - night.from_ms - reported_ms,
        lit_ms: 0,
        lit_after_curfew_ms: 0,
        max_pct: 0.0,
    };
    for (i, cue) in cues.iter().enumerate() {
        if !cue.lit {
            continue;
        }
        let end = cues.get(i + 1).map_or(i64::MAX, |n| n.at_ms);
        for &(a, b) in &known {
            let (a, b) = (a.max(cue.at_ms), b.min(end));
            if b <= a {
                continue;
            }
            out.lit_ms += b - a;
            if let Some(c) = night.curfew_ms {
                out.lit_after_curfew_ms += (b - a.max(c)).max(0);
            }
            if a.max(night.legal.0) < b.min(night.legal.1) {
                out.max_pct = out.max_pct.max(cue.pct);
            }
        }
    }
    out
}

/// `stretches` cut to `from..to`, in order, overlaps joined.
fn merged(stretches: &[(i64, i64)], from: i64, to: i64) -> Vec<(i64, i64)> {
    let mut cut: Vec<(i64, i64)> = stretches
        .iter()
        .map(|&(a, b)| (a.max(from), b.min(to)))
        .filter(|(a, b)| a < b)
        .collect();
    cut.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(cut.len());
    for (a, b) in cut {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000;

    /// Minutes after the night's first noon: `at(19, 30)`, `at(25, 0)` for 01:00 next day.
    fn at(h: i64, m: i64) -> i64 {
        ((h - 12) * 60 + m) * M
    }

    /// Sunset 17:00, sunrise 07:00, legal window 18:00–06:00, curfew 00:00.
    fn night() -> Night {
        Night {
            date: Date::constant(2026, 12, 7),
            from_ms: at(17, 0),
            to_ms: at(31, 0),
            legal: (at(18, 0), at(30, 0)),
            curfew_ms: Some(at(24, 0)),
        }
    }

    fn cue(at_ms: i64, pct: f64) -> CueChange {
        CueChange {
            at_ms,
            lit: pct > 0.0,
            pct,
        }
    }

    /// (progress, counted to, reported, not reported, lit, after curfew) in minutes from
    /// the night's noon, and the highest brightness.
    fn check(
        cues: &[CueChange],
        reporting: &[(i64, i64)],
        now: i64,
        expect: (Progress, i64, i64, i64, i64, i64, f64),
    ) {
        let m = measure(cues, reporting, &night(), now);
        let got = (
            m.progress,
            m.counted_to_ms / M,
            m.reported_ms / M,
            m.not_reported_ms / M,
            m.lit_ms / M,
            m.lit_after_curfew_ms / M,
            m.max_pct,
        );
        assert_eq!(got, expect, "{m:?}");
        assert_eq!(
            m.reported_ms + m.not_reported_ms,
            m.counted_to_ms - at(17, 0)
        );
    }

    const ALL_NIGHT: &[(i64, i64)] = &[(0, 24 * 60 * M)];

    #[test]
    fn a_lit_evening_is_counted_inside_the_night_only() {
        // Lit from 16:30 (before sunset) at 100 %, 50 % from 22:00, dark at 00:47.
        let cues = [
            cue(at(16, 30), 100.0),
            cue(at(22, 0), 50.0),
            cue(at(24, 47), 0.0),
        ];
        let lit = 7 * 60 + 47;
        check(
            &cues,
            ALL_NIGHT,
            at(36, 0),
            (Progress::Over, at(31, 0) / M, 14 * 60, 0, lit, 47, 100.0),
        );
    }

    /// Regression: a 30 s override at 10:08 the morning after (daylight) counted as 112
    /// minutes lit after curfew, because the report ran noon to noon and carried the cue
    /// in force to its end when the report was asked for during the override.
    #[test]
    fn a_daytime_override_counts_nothing() {
        let cues = [
            cue(at(12, 0), 0.0),
            cue(at(34, 8), 100.0),
            CueChange {
                at_ms: at(34, 8) + 30_000,
                lit: false,
                pct: 0.0,
            },
        ];
        for now in [at(34, 8) + 15_000, at(36, 0)] {
            check(
                &cues,
                ALL_NIGHT,
                now,
                (Progress::Over, at(31, 0) / M, 14 * 60, 0, 0, 0, 0.0),
            );
        }
    }

    /// Regression: tonight, asked for before it ended, counted 1,440 minutes lit and 720
    /// after curfew — the cue in force was carried to the next noon.
    #[test]
    fn a_night_in_progress_counts_up_to_now_and_says_so() {
        let cues = [cue(at(16, 50), 80.0)];
        // 01:30, the gateway heard until now: 8 h 30 min of the night so far, not 14 h.
        check(
            &cues,
            &[(at(12, 0), at(25, 30))],
            at(25, 30),
            (
                Progress::InProgress,
                at(25, 30) / M,
                8 * 60 + 30,
                0,
                8 * 60 + 30,
                90,
                80.0,
            ),
        );
        // Last heard at 01:20, asked at 01:30: the last ten minutes are not reported yet.
        check(
            &cues,
            &[(at(12, 0), at(25, 20))],
            at(25, 30),
            (
                Progress::InProgress,
                at(25, 30) / M,
                8 * 60 + 20,
                10,
                8 * 60 + 20,
                80,
                80.0,
            ),
        );
        // Before sunset: nothing yet.
        check(
            &cues,
            &[(at(12, 0), at(16, 0))],
            at(16, 0),
            (Progress::NotBegun, at(17, 0) / M, 0, 0, 0, 0, 0.0),
        );
    }

    #[test]
    fn a_gateway_not_heard_from_counts_as_not_reported_not_lit() {
        // Lit all night; the gateway was not heard from 23:10 to 02:40.
        let cues = [cue(at(16, 0), 100.0), cue(at(31, 30), 0.0)];
        let heard = [(at(12, 0), at(23, 10)), (at(26, 40), at(33, 0))];
        check(
            &cues,
            &heard,
            at(36, 0),
            (
                Progress::Over,
                at(31, 0) / M,
                14 * 60 - 210,
                210,
                14 * 60 - 210,
                4 * 60 + 20,
                100.0,
            ),
        );
        // Nothing heard at all: the whole night is not reported.
        check(
            &cues,
            &[],
            at(36, 0),
            (Progress::Over, at(31, 0) / M, 0, 14 * 60, 0, 0, 0.0),
        );
    }

    #[test]
    fn before_the_first_reported_cue_the_night_is_not_reported() {
        // Heard all night, but the first cue came at 19:00.
        check(
            &[cue(at(19, 0), 100.0)],
            ALL_NIGHT,
            at(36, 0),
            (
                Progress::Over,
                at(31, 0) / M,
                12 * 60,
                120,
                12 * 60,
                7 * 60,
                100.0,
            ),
        );
        check(
            &[],
            ALL_NIGHT,
            at(36, 0),
            (Progress::Over, at(31, 0) / M, 0, 14 * 60, 0, 0, 0.0),
        );
    }

    #[test]
    fn overlapping_reports_count_once() {
        let cues = [cue(at(17, 0), 100.0)];
        let heard = [
            (at(18, 0), at(20, 0)),
            (at(17, 0), at(19, 0)),
            (at(19, 30), at(21, 0)),
        ];
        check(
            &cues,
            &heard,
            at(36, 0),
            (
                Progress::Over,
                at(31, 0) / M,
                4 * 60,
                10 * 60,
                4 * 60,
                0,
                100.0,
            ),
        );
    }

    #[test]
    fn brightness_outside_the_legal_window_is_not_its_maximum() {
        // 100 % 17:00–18:00 (before the window), 40 % after.
        let cues = [cue(at(17, 0), 100.0), cue(at(18, 0), 40.0)];
        let m = measure(&cues, ALL_NIGHT, &night(), at(36, 0));
        assert_eq!(m.max_pct, 40.0);
    }

    #[test]
    fn the_night_runs_sunset_to_sunrise_at_the_site() {
        // Nonsan City Hall, 2026-12-07: sunset 17:16, sunrise 07:29 (KST), by the core's sun times.
        let tz = TimeZone::get("Asia/Seoul").unwrap();
        let place = Place::new(36.187, 127.099);
        let date = Date::constant(2026, 12, 7);
        let almanac = Almanac::new(epoch_day(date) - 1, epoch_day(date) + 2);
        let rules = Rules {
            after_sunset: Duration::from_secs(3600),
            before_sunrise: Duration::from_secs(3600),
            curfew: Curfew::At(TimeOfDay::MIDNIGHT),
        };
        let n = Night::of(date, place, &tz, &almanac, &rules);
        let local = |ms: i64| {
            tz.to_datetime(jiff::Timestamp::from_millisecond(ms).unwrap())
                .strftime("%m-%d %H:%M")
                .to_string()
        };
        assert_eq!(local(n.from_ms), "12-07 17:16", "{n:?}");
        assert_eq!(local(n.to_ms), "12-08 07:29", "{n:?}");
        assert_eq!(n.legal, (n.from_ms + 3_600_000, n.to_ms - 3_600_000));
        assert_eq!(n.curfew_ms.map(local).as_deref(), Some("12-08 00:00"));
        let late = Rules {
            curfew: Curfew::At(TimeOfDay::parse("22:00").unwrap()),
            ..rules
        };
        let n = Night::of(date, place, &tz, &almanac, &late);
        assert_eq!(n.curfew_ms.map(local).as_deref(), Some("12-07 22:00"));
    }
}
