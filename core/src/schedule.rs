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
use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::calendar::{Calendar, CalendarId};
use crate::model::{Curfew, Level, Site, TimeOfDay};
use crate::scene::SceneId;
use crate::sun::{Almanac, DAY_MS, Event, Place};

/// When a rule starts or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleTime {
    At(TimeOfDay),
    /// A solar event plus an offset in minutes.
    Sun(Event, i32),
    /// The site's curfew time.
    Curfew,
}

impl RuleTime {
    /// Parses `"18:30"`, `"sunset"`, `"sunset+15"`, `"civil-dusk-10"`, `"sunrise"`,
    /// `"civil-dawn"`, `"curfew"`.
    pub fn parse(text: &str) -> Option<RuleTime> {
        let text = text.trim();
        if text == "curfew" {
            return Some(RuleTime::Curfew);
        }
        if let Ok(t) = TimeOfDay::parse(text) {
            return Some(RuleTime::At(t));
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
        (offset.abs() <= 720).then_some(RuleTime::Sun(event, offset))
    }
}

impl std::fmt::Display for RuleTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleTime::At(t) => write!(f, "{t}"),
            RuleTime::Sun(e, 0) => write!(f, "{}", e.name()),
            RuleTime::Sun(e, m) => write!(f, "{}{m:+} min", e.name()),
            RuleTime::Curfew => f.write_str("curfew"),
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
    pub name: std::sync::Arc<str>,
    pub scene: SceneId,
    pub brightness: Level,
    pub priority: i32,
    pub start: RuleTime,
    pub end: RuleTime,
    /// Monday first.
    pub days: [bool; 7],
    /// A season `from ..= to` (wrapping over the new year when `from > to`).
    pub season: Option<(MonthDay, MonthDay)>,
    pub calendar: Option<CalendarId>,
    /// Overrides the scene's own fade.
    pub fade: Option<Duration>,
}

impl Rule {
    fn applies(&self, date: Date, calendar: Option<&Calendar>) -> bool {
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
        match (&self.calendar, calendar) {
            (Some(_), Some(c)) => c.contains(date),
            (Some(_), None) => false,
            (None, _) => true,
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
        name: std::sync::Arc<str>,
    },
    /// A rule's cue, held to the curfew level.
    Curfew {
        rule: Option<std::sync::Arc<str>>,
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
    /// Whether two cues show the same (both dark, or one scene at one brightness) whatever
    /// their causes: a change between them is not a transition.
    pub fn shows_same(&self, other: &Cue) -> bool {
        let shown = |c: &Cue| {
            c.scene
                .as_ref()
                .filter(|_| c.brightness.get() > 0.0)
                .map(|s| (s.clone(), c.brightness))
        };
        shown(self) == shown(other)
    }

    fn dark(cause: Cause) -> Cue {
        Cue {
            scene: None,
            brightness: Level::ZERO,
            fade: None,
            cause,
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
    /// Whatever plays, at this share of its brightness (energy-saving nights, mourning):
    /// the lowest of the dims in force applies.
    Dim {
        factor: Level,
    },
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

/// Spans last less than this (they start on one date and end by the next, with sun offsets
/// of at most 12 hours); older ones cannot cover an instant.
const LONGEST_SPAN_MS: i64 = 2 * DAY_MS + DAY_MS / 2;

/// A time zone's offsets over a window, read once: converting local times is then
/// arithmetic, except across a change of offset.
#[derive(Debug, Clone)]
struct LocalClock<'a> {
    tz: &'a TimeZone,
    /// `(from_ms, offset seconds)`, in order; the first entry is the offset before the rest.
    offsets: Vec<(i64, i32)>,
}

impl<'a> LocalClock<'a> {
    fn new(tz: &'a TimeZone, from_ms: i64, to_ms: i64) -> Self {
        let ts =
            |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let start = ts(from_ms);
        let mut offsets = vec![(i64::MIN, tz.to_offset(start).seconds())];
        for t in tz.following(start) {
            let at = t.timestamp().as_millisecond();
            if at > to_ms {
                break;
            }
            offsets.push((at, t.offset().seconds()));
        }
        LocalClock { tz, offsets }
    }

    fn offset_at(&self, t: i64) -> i32 {
        self.offsets
            .iter()
            .rev()
            .find(|(from, _)| *from <= t)
            .map_or(0, |o| o.1)
    }

    /// As [`local_instant`], without a time-zone lookup when the offset is the same all day.
    fn instant(&self, day: i64, date: Date, time: TimeOfDay) -> i64 {
        let local = day * DAY_MS + i64::from(time.minutes()) * 60_000;
        let (a, b) = (
            self.offset_at(local - 14 * 3_600_000),
            self.offset_at(local + 14 * 3_600_000),
        );
        if a == b {
            local - i64::from(a) * 1000
        } else {
            local_instant(date, time, self.tz)
        }
    }
}

/// The solar events of one date, computed when first asked for; the same events of the
/// day before, when known, start the solution close to the answer.
#[derive(Debug, Clone, Copy)]
struct SunDay {
    day: i64,
    events: [Option<Result<i64, crate::sun::Polar>>; 4],
    before: [Option<i64>; 4],
}

impl SunDay {
    fn new(day: i64) -> Self {
        SunDay {
            day,
            events: [None; 4],
            before: [None; 4],
        }
    }

    /// The next day, seeded with this day's events.
    fn following(&self) -> Self {
        let mut before = [None; 4];
        for (b, e) in before.iter_mut().zip(&self.events) {
            *b = e.and_then(|r| r.ok()).map(|t| t + DAY_MS);
        }
        SunDay {
            day: self.day + 1,
            events: [None; 4],
            before,
        }
    }

    fn get(
        &mut self,
        almanac: &Almanac,
        place: Place,
        event: Event,
    ) -> Result<i64, crate::sun::Polar> {
        let k = event as usize;
        let (day, estimate) = (self.day, self.before[k]);
        *self.events[k].get_or_insert_with(|| match estimate {
            Some(e) => almanac.event_near(place, day, event, e),
            None => almanac.event(place, day, event),
        })
    }
}

/// A site's schedule, ready to answer questions about time.
#[derive(Debug, Clone)]
pub struct Evaluator {
    site: Arc<Site>,
    schedule: Arc<Schedule>,
    almanac: Arc<Almanac>,
    place: Place,
    /// Per rule, the index of its scene among the schedule's scenes: comparing numbers
    /// instead of names in the sweep.
    scene_of: Vec<usize>,
    /// Per rule, its calendar, looked up once.
    calendar_of: Vec<Option<Arc<Calendar>>>,
}

/// Two sorted lists as one, without repeats.
fn merge(a: &[i64], b: &[i64]) -> Vec<i64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = if j >= b.len() || (i < a.len() && a[i] <= b[j]) {
            i += 1;
            a[i - 1]
        } else {
            j += 1;
            b[j - 1]
        };
        if out.last() != Some(&next) {
            out.push(next);
        }
    }
    out
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
    let local = epoch_day(date) * DAY_MS + minutes * 60_000;
    tz.to_ambiguous_timestamp(dt)
        .compatible()
        .map(|ts| ts.as_millisecond())
        .unwrap_or(local)
}

/// Everything that can cover instants in a window: rule spans and curfews, by start.
#[derive(Debug, Default)]
struct Window {
    spans: Vec<Span>,
    curfews: Vec<(i64, i64)>,
    notes: Vec<Note>,
}

impl Evaluator {
    /// An evaluator that owns (shares) what it needs, so a task can hold it next to nothing
    /// else: the site, its schedule, the calendars its rules name (taken from `calendars`)
    /// and the almanac.
    pub fn new(
        site: Arc<Site>,
        schedule: Arc<Schedule>,
        calendars: &BTreeMap<CalendarId, Calendar>,
        almanac: Arc<Almanac>,
    ) -> Self {
        let place = Place::new(site.location.lat, site.location.lon);
        let scene_of = schedule
            .rules
            .iter()
            .map(|r| {
                schedule
                    .rules
                    .iter()
                    .position(|o| o.scene == r.scene)
                    .unwrap_or(0)
            })
            .collect();
        let calendar_of = schedule
            .rules
            .iter()
            .map(|r| {
                r.calendar
                    .as_ref()
                    .and_then(|c| calendars.get(c))
                    .map(|c| Arc::new(c.clone()))
            })
            .collect();
        Evaluator {
            site,
            schedule,
            almanac,
            place,
            scene_of,
            calendar_of,
        }
    }

    fn tz(&self) -> &TimeZone {
        &self.site.time_zone
    }

    /// A solar event on a local date.
    pub fn sun(&self, date: Date, event: Event) -> Result<i64, crate::sun::Polar> {
        self.almanac.event(self.place, epoch_day(date), event)
    }

    fn resolve(
        &self,
        clock: RuleTime,
        date: Date,
        local: &LocalClock<'_>,
        sun: &mut SunDay,
    ) -> Result<i64, String> {
        match clock {
            RuleTime::At(t) => Ok(local.instant(sun.day, date, t)),
            RuleTime::Sun(e, offset) => sun
                .get(&self.almanac, self.place, e)
                .map(|t| t + i64::from(offset) * 60_000)
                .map_err(|p| format!("no {} on {date}: {p}", e.name())),
            RuleTime::Curfew => match self.site.limits.curfew {
                Curfew::At(t) => Ok(local.instant(sun.day, date, t)),
                Curfew::None => Err("the site has no curfew".into()),
            },
        }
    }

    /// Rule spans and the curfew of the nights that start on `first ..= last`.
    fn window(&self, first: Date, last: Date) -> Window {
        let mut w = Window::default();
        let from = epoch_day(first) * DAY_MS - 2 * DAY_MS;
        let to = epoch_day(last) * DAY_MS + 3 * DAY_MS;
        let local = LocalClock::new(self.tz(), from, to);
        let mut date = first;
        let mut today = SunDay::new(epoch_day(date));
        let mut tomorrow = today.following();
        loop {
            let batch = w.spans.len();
            for (index, rule) in self.schedule.rules.iter().enumerate() {
                if !rule.applies(date, self.calendar_of[index].as_deref()) {
                    continue;
                }
                let start = match self.resolve(rule.start, date, &local, &mut today) {
                    Ok(s) => s,
                    Err(why) => {
                        w.notes.push(Note {
                            date,
                            text: format!("rule {} does not start: {why}", rule.name),
                        });
                        continue;
                    }
                };
                let mut end = self.resolve(rule.end, date, &local, &mut today);
                if matches!(end, Ok(e) if e <= start) {
                    end = self.resolve(rule.end, next(date), &local, &mut tomorrow);
                }
                match end {
                    Ok(end) if end > start => w.spans.push(Span {
                        start,
                        end,
                        rule: index,
                    }),
                    Ok(_) => w.notes.push(Note {
                        date,
                        text: format!("rule {} ends before it starts", rule.name),
                    }),
                    Err(why) => w.notes.push(Note {
                        date,
                        text: format!("rule {} does not end: {why}", rule.name),
                    }),
                }
            }
            if !w.spans[batch..].is_sorted_by_key(|s| s.start) {
                w.spans[batch..].sort_unstable_by_key(|s| s.start);
            }
            // The curfew of the night that starts on `date`: from the curfew time to the next
            // sunrise (06:00 where the sun does not rise).
            if let Curfew::At(at) = self.site.limits.curfew {
                let start = if at.minutes() >= 12 * 60 {
                    local.instant(today.day, date, at)
                } else {
                    local.instant(tomorrow.day, next(date), at)
                };
                let end = tomorrow
                    .get(&self.almanac, self.place, Event::Sunrise)
                    .unwrap_or_else(|_| {
                        local.instant(
                            tomorrow.day,
                            next(date),
                            TimeOfDay::from_minutes(6 * 60).unwrap_or(at),
                        )
                    });
                if end > start {
                    w.curfews.push((start, end));
                }
            }
            if date >= last || date == Date::MAX {
                break;
            }
            date = next(date);
            today = tomorrow;
            tomorrow = today.following();
        }
        // Spans come out day by day, so they are in order but for the few within a day.
        if !w.spans.is_sorted_by_key(|s| s.start) {
            w.spans.sort_by_key(|s| s.start);
        }
        if !w.curfews.is_sorted() {
            w.curfews.sort_unstable();
        }
        w
    }

    /// The winning rule among `active` at `t`, if any.
    fn pick(&self, t: i64, active: impl Iterator<Item = Span>) -> Option<usize> {
        active
            .filter(|s| s.start <= t && t < s.end)
            .max_by(|a, b| {
                let (ra, rb) = (&self.schedule.rules[a.rule], &self.schedule.rules[b.rule]);
                ra.priority
                    .cmp(&rb.priority)
                    .then(a.start.cmp(&b.start))
                    .then(b.rule.cmp(&a.rule))
            })
            .map(|s| s.rule)
    }

    /// What a winning rule (or none) shows, with the curfew level applied: `(rule, level)`,
    /// where no rule or a zero level is dark. Cheap to compare, so sweeps build cues only
    /// for real changes.
    fn output(&self, rule: Option<usize>, in_curfew: bool) -> Option<(usize, f64)> {
        let rule = rule?;
        let mut level = self.schedule.rules[rule].brightness.get();
        if in_curfew {
            level = level.min(self.site.limits.curfew_level.get());
        }
        (level > 0.0).then_some((rule, level))
    }

    fn same(&self, a: Option<(usize, f64)>, b: Option<(usize, f64)>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some((ra, la)), Some((rb, lb))) => la == lb && self.scene_of[ra] == self.scene_of[rb],
            _ => false,
        }
    }

    fn choose(&self, t: i64, active: impl Iterator<Item = Span>, in_curfew: bool) -> Cue {
        let cue = match self.pick(t, active) {
            None => Cue::dark(Cause::Idle),
            Some(index) => {
                let rule = &self.schedule.rules[index];
                Cue {
                    scene: Some(rule.scene.clone()),
                    brightness: rule.brightness,
                    fade: rule.fade,
                    cause: Cause::Rule {
                        index,
                        name: rule.name.clone(),
                    },
                }
            }
        };
        if in_curfew {
            self.clamp_curfew(cue)
        } else {
            cue
        }
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

    /// The rule spans and curfew state at one instant.
    fn around(&self, t_ms: i64) -> (Window, bool) {
        let date = local_date(t_ms, self.tz());
        let w = self.window(prev(date), date);
        let in_curfew = w.curfews.iter().any(|&(a, b)| a <= t_ms && t_ms < b);
        (w, in_curfew)
    }

    /// What the schedule plays at `t_ms`, curfew applied.
    pub fn cue_at(&self, t_ms: i64) -> Cue {
        let (w, in_curfew) = self.around(t_ms);
        self.choose(t_ms, w.spans.iter().copied(), in_curfew)
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
        let (w, in_curfew) = self.around(t_ms);
        let manual = active
            .iter()
            .filter_map(|o| match &o.kind {
                OverrideKind::Scene { scene, brightness } => Some((o.from_ms, scene, *brightness)),
                _ => None,
            })
            .max_by_key(|(from, ..)| *from);
        let mut cue = match manual {
            Some((_, scene, brightness)) => Cue {
                scene: Some(scene.clone()),
                brightness,
                fade: None,
                cause: Cause::Override,
            },
            None => self.choose(t_ms, w.spans.iter().copied(), false),
        };
        let dim = active
            .iter()
            .filter_map(|o| match o.kind {
                OverrideKind::Dim { factor } => Some(factor.get()),
                _ => None,
            })
            .reduce(f64::min);
        if let Some(f) = dim {
            cue.brightness = Level::from_pct(cue.brightness.pct() * f).unwrap_or(Level::ZERO);
        }
        if in_curfew && !exception {
            self.clamp_curfew(cue)
        } else {
            cue
        }
    }

    /// Every change of output in `(from_ms, to_ms]`, with its cause, and the notes of dates
    /// on which a rule could not run.
    pub fn transitions(&self, from_ms: i64, to_ms: i64) -> (Vec<Transition>, Vec<Note>) {
        let first = prev(local_date(from_ms, self.tz()));
        let last = local_date(to_ms, self.tz());
        let w = self.window(first, last);
        // Every instant something starts or ends, in order. Starts and curfews are in order
        // already and ends nearly so (spans are short), which the adaptive sort finishes in
        // one pass; the three runs are then merged.
        let inside = |e: &i64| *e > from_ms && *e <= to_ms;
        let starts: Vec<i64> = w.spans.iter().map(|s| s.start).filter(inside).collect();
        let mut ends: Vec<i64> = w.spans.iter().map(|s| s.end).filter(inside).collect();
        ends.sort();
        let curfews: Vec<i64> = w
            .curfews
            .iter()
            .flat_map(|&(a, b)| [a, b])
            .filter(inside)
            .collect();
        let edges = merge(&merge(&starts, &ends), &curfews);
        // Sweep: spans are sorted by start and short, so those that can cover an instant are
        // a few just before it; both ends of that run only move forward.
        let (mut lo, mut hi, mut curfew) = (0, 0, 0);
        let mut step = |t: i64| {
            while hi < w.spans.len() && w.spans[hi].start <= t {
                hi += 1;
            }
            while lo < hi && w.spans[lo].start <= t - LONGEST_SPAN_MS {
                lo += 1;
            }
            while curfew < w.curfews.len() && w.curfews[curfew].1 <= t {
                curfew += 1;
            }
            let in_curfew = curfew < w.curfews.len() && w.curfews[curfew].0 <= t;
            (lo..hi, in_curfew)
        };
        let mut out = Vec::new();
        let (run, in_curfew) = step(from_ms);
        let mut current = self.output(self.pick(from_ms, w.spans[run].iter().copied()), in_curfew);
        for at in edges {
            let (run, in_curfew) = step(at);
            let active = &w.spans[run];
            let shown = self.output(self.pick(at, active.iter().copied()), in_curfew);
            if !self.same(shown, current) {
                let cue = self.choose(at, active.iter().copied(), in_curfew);
                out.push(Transition { at_ms: at, cue });
            }
            current = shown;
        }
        let notes = w
            .notes
            .into_iter()
            .filter(|n| n.date >= local_date(from_ms, self.tz()))
            .collect();
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
