//! Schedules: which scene plays when, by clock, sun and calendar — evaluated in the site's
//! own time zone, whatever the host's.
//!
//! A rule covers a span that starts on a local date and ends later that night or the next
//! morning (`start = "sunset"`, `end = "01:00"` runs over midnight). At any instant the
//! covering rule with the highest priority wins; on equal priority the rule whose span
//! started later wins, and on the same start the one written first. Overrides outrank rules,
//! a blackout outranks everything, and the site's curfew clamps last: from the curfew time
//! until the next sunrise the output is held at the curfew level (default dark) unless an
//! audited exception is active.
//!
//! Local times that do not exist (the hour skipped when clocks go forward) move forward by
//! the gap: 02:30 on a spring-forward night is 03:30. Local times that happen twice (the
//! hour repeated when clocks go back) mean the first of the two. Sun-based times are
//! instants and need neither rule.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::calendar::{Calendar, CalendarId};
use crate::model::{Curfew, Level, Site, TimeOfDay};
use crate::scene::SceneId;
use crate::sun::{Almanac, DAY_MS, Event};

/// When a rule starts or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    At(TimeOfDay),
    /// A solar event plus an offset in minutes.
    Sun(Event, i32),
    /// The site's curfew time.
    Curfew,
}

impl Clock {
    /// Parses `"18:30"`, `"sunset"`, `"sunset+15"`, `"civil-dusk-10"`, `"sunrise"`,
    /// `"civil-dawn"`, `"curfew"`.
    pub fn parse(text: &str) -> Option<Clock> {
        let text = text.trim();
        if text == "curfew" {
            return Some(Clock::Curfew);
        }
        if let Some(t) = TimeOfDay::parse(text) {
            return Some(Clock::At(t));
        }
        let events = [
            ("civil-dawn", Event::CivilDawn),
            ("civil-dusk", Event::CivilDusk),
            ("sunrise", Event::Sunrise),
            ("sunset", Event::Sunset),
        ];
        let (rest, event) = events
            .iter()
            .find_map(|(name, e)| text.strip_prefix(name).map(|r| (r, *e)))?;
        let offset = match rest {
            "" => 0,
            _ => {
                let (sign, digits) = rest.split_at(1);
                let minutes: i32 = digits.strip_suffix("min").unwrap_or(digits).parse().ok()?;
                match sign {
                    "+" => minutes,
                    "-" => -minutes,
                    _ => return None,
                }
            }
        };
        (offset.abs() <= 720).then_some(Clock::Sun(event, offset))
    }
}

impl std::fmt::Display for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Clock::At(t) => write!(f, "{t}"),
            Clock::Sun(e, 0) => write!(f, "{}", e.name()),
            Clock::Sun(e, m) => write!(f, "{}{m:+} min", e.name()),
            Clock::Curfew => f.write_str("curfew"),
        }
    }
}

/// A month and day, for seasons that repeat every year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MonthDay {
    pub month: i8,
    pub day: i8,
}

impl MonthDay {
    /// Parses `MM-DD`.
    pub fn parse(text: &str) -> Option<MonthDay> {
        let (m, d) = text.split_once('-')?;
        let (month, day): (i8, i8) = (m.parse().ok()?, d.parse().ok()?);
        // 2024 is a leap year, so 02-29 is accepted.
        Date::new(2024, month, day).ok()?;
        Some(MonthDay { month, day })
    }

    fn of(date: Date) -> MonthDay {
        MonthDay {
            month: date.month(),
            day: date.day(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub scene: SceneId,
    pub brightness: Level,
    pub priority: i32,
    pub start: Clock,
    pub end: Clock,
    /// Monday first.
    pub days: [bool; 7],
    /// A season `from ..= to` (wrapping over the new year when `from > to`).
    pub season: Option<(MonthDay, MonthDay)>,
    pub calendar: Option<CalendarId>,
    /// Overrides the scene's own fade.
    pub fade: Option<Duration>,
}

impl Rule {
    fn applies(&self, date: Date, calendars: &BTreeMap<CalendarId, Calendar>) -> bool {
        let weekday = date.weekday().to_monday_zero_offset() as usize;
        if !self.days[weekday] {
            return false;
        }
        if let Some((from, to)) = self.season {
            let md = MonthDay::of(date);
            let inside = if from <= to {
                from <= md && md <= to
            } else {
                md >= from || md <= to
            };
            if !inside {
                return false;
            }
        }
        match &self.calendar {
            Some(id) => calendars.get(id).is_some_and(|c| c.contains(date)),
            None => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub rules: Vec<Rule>,
}

/// Why a cue is what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// No rule covers the instant.
    Idle,
    Rule {
        index: usize,
        name: String,
    },
    /// A rule's cue, held to the curfew level.
    Curfew {
        rule: Option<String>,
    },
    Override,
    Blackout,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Idle => f.write_str("no rule"),
            Cause::Rule { name, .. } => write!(f, "rule {name}"),
            Cause::Curfew { rule: Some(r) } => write!(f, "curfew (over rule {r})"),
            Cause::Curfew { rule: None } => f.write_str("curfew"),
            Cause::Override => f.write_str("override"),
            Cause::Blackout => f.write_str("blackout"),
        }
    }
}

/// What plays: a scene at a brightness (no scene is dark), how to fade to it, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub scene: Option<SceneId>,
    pub brightness: Level,
    pub fade: Option<Duration>,
    pub cause: Cause,
}

impl Cue {
    fn dark(cause: Cause) -> Cue {
        Cue {
            scene: None,
            brightness: Level::ZERO,
            fade: None,
            cause,
        }
    }

    /// Whether two cues look the same on site.
    pub fn same_output(&self, other: &Cue) -> bool {
        let lit = |c: &Cue| c.scene.is_some() && c.brightness.get() > 0.0;
        match (lit(self), lit(other)) {
            (false, false) => true,
            (true, true) => self.scene == other.scene && self.brightness == other.brightness,
            _ => false,
        }
    }
}

/// A change of what plays, at an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub at_ms: i64,
    pub cue: Cue,
}

/// Something the evaluator could not do on a date, to show to people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub date: Date,
    pub text: String,
}

/// Active manual overrides, from the gateway's overrides document.
#[derive(Debug, Clone, PartialEq)]
pub enum OverrideKind {
    Scene {
        scene: SceneId,
        brightness: Level,
    },
    Blackout,
    /// An admin's audited, time-bounded permission to light through the curfew.
    CurfewException,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub kind: OverrideKind,
    pub from_ms: i64,
    /// `None`: until released (blackouts are latched).
    pub until_ms: Option<i64>,
}

impl Override {
    fn active(&self, t: i64) -> bool {
        self.from_ms <= t && self.until_ms.is_none_or(|u| t < u)
    }
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: i64,
    end: i64,
    rule: usize,
}

/// A site's schedule, ready to answer questions about time.
#[derive(Debug, Clone)]
pub struct Evaluator<'a> {
    site: &'a Site,
    schedule: &'a Schedule,
    calendars: &'a BTreeMap<CalendarId, Calendar>,
    almanac: &'a Almanac,
}

/// Days since 1970-01-01 of a civil date.
pub fn epoch_day(date: Date) -> i64 {
    // Howard Hinnant's days_from_civil.
    let (y, m, d) = (
        i64::from(date.year()),
        i64::from(date.month()),
        i64::from(date.day()),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn next(date: Date) -> Date {
    date.tomorrow().unwrap_or(date)
}

fn prev(date: Date) -> Date {
    date.yesterday().unwrap_or(date)
}

/// The local date at `t_ms` in `tz`.
pub fn local_date(t_ms: i64, tz: &TimeZone) -> Date {
    match jiff::Timestamp::from_millisecond(t_ms) {
        Ok(ts) => tz.to_datetime(ts).date(),
        Err(_) => Date::ZERO,
    }
}

/// The instant of a local date and time in `tz`, with the gap and fold rules above.
pub fn local_instant(date: Date, time: TimeOfDay, tz: &TimeZone) -> i64 {
    let minutes = i64::from(time.minutes());
    let dt = date.at((minutes / 60) as i8, (minutes % 60) as i8, 0, 0);
    // A fixed offset over the whole day (the common case) needs no lookup of the gap/fold.
    let utc_guess = epoch_day(date) * DAY_MS + minutes * 60_000;
    if let (Ok(a), Ok(b)) = (
        jiff::Timestamp::from_millisecond(utc_guess - 14 * 3_600_000),
        jiff::Timestamp::from_millisecond(utc_guess + 14 * 3_600_000),
    ) {
        let (oa, ob) = (tz.to_offset(a), tz.to_offset(b));
        if oa == ob {
            return utc_guess - i64::from(oa.seconds()) * 1000;
        }
    }
    tz.to_ambiguous_timestamp(dt)
        .compatible()
        .map(|ts| ts.as_millisecond())
        .unwrap_or(utc_guess)
}

impl<'a> Evaluator<'a> {
    pub fn new(
        site: &'a Site,
        schedule: &'a Schedule,
        calendars: &'a BTreeMap<CalendarId, Calendar>,
        almanac: &'a Almanac,
    ) -> Self {
        Evaluator {
            site,
            schedule,
            calendars,
            almanac,
        }
    }

    fn tz(&self) -> &TimeZone {
        &self.site.time_zone
    }

    /// A solar event on a local date.
    pub fn sun(&self, date: Date, event: Event) -> Result<i64, crate::sun::Polar> {
        let loc = self.site.location;
        self.almanac.event(loc.lat, loc.lon, epoch_day(date), event)
    }

    fn resolve(&self, clock: Clock, date: Date) -> Result<i64, String> {
        match clock {
            Clock::At(t) => Ok(local_instant(date, t, self.tz())),
            Clock::Sun(e, offset) => self
                .sun(date, e)
                .map(|t| t + i64::from(offset) * 60_000)
                .map_err(|p| format!("no {} on {date}: {p}", e.name())),
            Clock::Curfew => match self.site.limits.curfew {
                Curfew::At(t) => Ok(local_instant(date, t, self.tz())),
                Curfew::None => Err("the site has no curfew".into()),
            },
        }
    }

    fn spans(&self, date: Date, out: &mut Vec<Span>, notes: &mut Vec<Note>) {
        for (index, rule) in self.schedule.rules.iter().enumerate() {
            if !rule.applies(date, self.calendars) {
                continue;
            }
            let start = match self.resolve(rule.start, date) {
                Ok(s) => s,
                Err(why) => {
                    notes.push(Note {
                        date,
                        text: format!("rule {} does not start: {why}", rule.name),
                    });
                    continue;
                }
            };
            let mut end = self.resolve(rule.end, date);
            if matches!(end, Ok(e) if e <= start) {
                end = self.resolve(rule.end, next(date));
            }
            match end {
                Ok(end) if end > start => out.push(Span {
                    start,
                    end,
                    rule: index,
                }),
                Ok(_) => notes.push(Note {
                    date,
                    text: format!("rule {} ends before it starts", rule.name),
                }),
                Err(why) => notes.push(Note {
                    date,
                    text: format!("rule {} does not end: {why}", rule.name),
                }),
            }
        }
    }

    /// The curfew window of the night that starts on `date`: from the curfew time to the
    /// next sunrise (06:00 where the sun does not rise).
    fn curfew(&self, date: Date) -> Option<(i64, i64)> {
        let Curfew::At(at) = self.site.limits.curfew else {
            return None;
        };
        let night = if at.minutes() >= 12 * 60 {
            date
        } else {
            next(date)
        };
        let start = local_instant(night, at, self.tz());
        let morning = next(date);
        let end = self.sun(morning, Event::Sunrise).unwrap_or_else(|_| {
            local_instant(
                morning,
                TimeOfDay::from_minutes(6 * 60).unwrap_or(at),
                self.tz(),
            )
        });
        (end > start).then_some((start, end))
    }

    fn choose(&self, t: i64, spans: &[Span], curfews: &[(i64, i64)]) -> Cue {
        let winner = spans
            .iter()
            .filter(|s| s.start <= t && t < s.end)
            .max_by(|a, b| {
                let (ra, rb) = (&self.schedule.rules[a.rule], &self.schedule.rules[b.rule]);
                ra.priority
                    .cmp(&rb.priority)
                    .then(a.start.cmp(&b.start))
                    .then(b.rule.cmp(&a.rule))
            });
        let cue = match winner {
            None => Cue::dark(Cause::Idle),
            Some(s) => {
                let rule = &self.schedule.rules[s.rule];
                Cue {
                    scene: Some(rule.scene.clone()),
                    brightness: rule.brightness,
                    fade: rule.fade,
                    cause: Cause::Rule {
                        index: s.rule,
                        name: rule.name.clone(),
                    },
                }
            }
        };
        if curfews.iter().any(|&(a, b)| a <= t && t < b) {
            return self.clamp_curfew(cue);
        }
        cue
    }

    fn clamp_curfew(&self, cue: Cue) -> Cue {
        let level = self.site.limits.curfew_level;
        let rule = match &cue.cause {
            Cause::Rule { name, .. } => Some(name.clone()),
            _ => None,
        };
        if cue.scene.is_none() || level.get() <= 0.0 {
            return Cue::dark(Cause::Curfew { rule });
        }
        let brightness = if cue.brightness.get() > level.get() {
            level
        } else {
            cue.brightness
        };
        Cue {
            brightness,
            cause: Cause::Curfew { rule },
            ..cue
        }
    }

    fn window(&self, from: Date, to: Date) -> (Vec<Span>, Vec<(i64, i64)>, Vec<Note>) {
        let (mut spans, mut curfews, mut notes) = (Vec::new(), Vec::new(), Vec::new());
        let mut d = prev(from);
        while d <= to {
            self.spans(d, &mut spans, &mut notes);
            curfews.extend(self.curfew(d));
            if d == Date::MAX {
                break;
            }
            d = next(d);
        }
        (spans, curfews, notes)
    }

    /// What the schedule plays at `t_ms`, curfew applied.
    pub fn cue_at(&self, t_ms: i64) -> Cue {
        let date = local_date(t_ms, self.tz());
        let (spans, curfews, _) = self.window(date, date);
        self.choose(t_ms, &spans, &curfews)
    }

    /// What plays at `t_ms` with `overrides` on top: blackout, then overrides, then rules;
    /// curfew last unless an exception is active.
    pub fn cue_with(&self, t_ms: i64, overrides: &[Override]) -> Cue {
        let active: Vec<&Override> = overrides.iter().filter(|o| o.active(t_ms)).collect();
        if active.iter().any(|o| o.kind == OverrideKind::Blackout) {
            return Cue {
                fade: Some(Duration::ZERO),
                ..Cue::dark(Cause::Blackout)
            };
        }
        let exception = active
            .iter()
            .any(|o| o.kind == OverrideKind::CurfewException);
        let date = local_date(t_ms, self.tz());
        let (spans, curfews, _) = self.window(date, date);
        let in_curfew = !exception && curfews.iter().any(|&(a, b)| a <= t_ms && t_ms < b);
        let manual = active
            .iter()
            .filter_map(|o| match &o.kind {
                OverrideKind::Scene { scene, brightness } => Some((o.from_ms, scene, *brightness)),
                _ => None,
            })
            .max_by_key(|(from, ..)| *from);
        let cue = match manual {
            Some((_, scene, brightness)) => Cue {
                scene: Some(scene.clone()),
                brightness,
                fade: None,
                cause: Cause::Override,
            },
            None => self.choose(t_ms, &spans, &[]),
        };
        if in_curfew {
            self.clamp_curfew(cue)
        } else {
            cue
        }
    }

    /// Every change of output in `(from_ms, to_ms]`, with its cause, and the notes of dates
    /// on which a rule could not run.
    pub fn transitions(&self, from_ms: i64, to_ms: i64) -> (Vec<Transition>, Vec<Note>) {
        let (first, last) = (local_date(from_ms, self.tz()), local_date(to_ms, self.tz()));
        let (spans, curfews, notes) = self.window(first, last);
        let mut edges: Vec<i64> = spans
            .iter()
            .flat_map(|s| [s.start, s.end])
            .chain(curfews.iter().flat_map(|&(a, b)| [a, b]))
            .filter(|&e| e > from_ms && e <= to_ms)
            .collect();
        edges.sort_unstable();
        edges.dedup();
        let mut out = Vec::new();
        let mut current = self.choose(from_ms, &spans, &curfews);
        for at in edges {
            let cue = self.choose(at, &spans, &curfews);
            if !cue.same_output(&current) {
                out.push(Transition {
                    at_ms: at,
                    cue: cue.clone(),
                });
            }
            current = cue;
        }
        (out, notes)
    }

    /// The first change of output after `t_ms`, looking up to `horizon_days` ahead: what an
    /// executor sleeps until instead of evaluating every frame.
    pub fn next_transition(&self, t_ms: i64, horizon_days: u32) -> Option<Transition> {
        let mut from = t_ms;
        for _ in 0..horizon_days.div_ceil(2).max(1) {
            let to = from + 2 * DAY_MS;
            let (mut list, _) = self.transitions(from, to);
            if !list.is_empty() {
                // Changes are relative to the state at `from`, which equals the state at t_ms
                // when nothing changed in between.
                return Some(list.remove(0));
            }
            from = to;
        }
        None
    }
}

/// Parses a day name (`mon` … `sun`) to its Monday-first index.
pub fn weekday_index(text: &str) -> Option<usize> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .position(|d| *d == text)
}
