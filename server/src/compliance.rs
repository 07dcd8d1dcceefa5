//! The per-site, per-night compliance report: how long the site was lit in its night
//! (sunset to sunrise, from the core's sun times for the site's place and time zone), how
//! long after its curfew, how bright it was inside the legal window of the light-pollution
//! rules (sunset + the zone table's delay to sunrise − its lead) against the site's cap, and
//! which curfew exceptions were in force.
//!
//! It is built from what the site's first gateway reported — its cue events, and the
//! stretches of time in which the server heard it ([`crate::intake`] keeps both) — not from
//! what the schedule meant. A night still in progress is counted up to now and says so; time
//! in which the gateway was not heard from is counted as not reported, never as lit or dark.
//! The arithmetic is [`nightscape_core::night::measure`], a pure function; this module reads
//! the store and assembles the nights.

use std::sync::Arc;

use nightscape_core::SiteId;
use nightscape_core::night::{self, CueChange, Progress};
use nightscape_core::sun::{Almanac, Place};
use nightscape_core::wire::{self, ActiveCue};
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::Row;

use crate::AppState;
use crate::overrides::{self, Kind};
use crate::store::{Store, StoreError};

/// One night of one site.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Night {
    pub site: String,
    /// The local date the night begins on.
    pub date: String,
    /// Whether the night is over, still in progress (its figures run to `counted_to_ms`
    /// and will grow), or not begun.
    pub status: NightStatus,
    /// Sunset of `date` and sunrise of the next morning: the time counted.
    pub night_from_ms: i64,
    pub night_to_ms: i64,
    pub legal_from_ms: i64,
    pub legal_to_ms: i64,
    pub curfew_at_ms: Option<i64>,
    /// The figures cover the night up to here: sunrise, or now while it is in progress.
    pub counted_to_ms: i64,
    pub cap_pct: f64,
    /// The highest brightness played inside the legal window, after the cap.
    pub max_output_pct: f64,
    /// A cue asked for more than the cap inside the window (the gateway held it to the cap).
    pub clamped: bool,
    /// Lit within the night, in the reported time.
    pub lit_minutes: f64,
    pub lit_after_curfew_minutes: f64,
    /// Time in the night (up to `counted_to_ms`) with no report from the gateway — it was
    /// not heard from, or had not yet reported a cue: what played then is not known, and
    /// none of it is counted as lit.
    pub not_reported_minutes: f64,
    /// Curfew exceptions in force during the night.
    pub exceptions: Vec<String>,
    /// Whether any of the night was reported; without that the figures are 0.
    pub reported: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NightStatus {
    NotBegun,
    InProgress,
    Over,
}

impl From<Progress> for NightStatus {
    fn from(p: Progress) -> NightStatus {
        match p {
            Progress::NotBegun => NightStatus::NotBegun,
            Progress::InProgress => NightStatus::InProgress,
            Progress::Over => NightStatus::Over,
        }
    }
}

fn change(at_ms: i64, cue: &ActiveCue) -> CueChange {
    let pct = cue.brightness_pct.pct();
    CueChange {
        at_ms,
        lit: cue.scene.is_some() && pct > 0.0,
        pct,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Range(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Error {
        Error::Store(e.into())
    }
}

/// What the store holds of one gateway between two instants: its cue changes in time
/// order (the first being the one in force at the start, when there is one) and the
/// stretches in which the server heard it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub cues: Vec<CueChange>,
    pub reporting: Vec<(i64, i64)>,
}

/// Reads `gateway`'s [`History`] for `from..to`.
pub async fn history(store: &Store, gateway: &str, from: i64, to: i64) -> Result<History, Error> {
    let before = sqlx::query(
        "SELECT at_ms, json FROM events WHERE gateway = $1 AND kind = 'cue' AND at_ms < $2 \
         ORDER BY at_ms DESC, id DESC LIMIT 1",
    )
    .bind(gateway)
    .bind(from)
    .fetch_all(store.pool())
    .await?;
    let during = sqlx::query(
        "SELECT at_ms, json FROM events WHERE gateway = $1 AND kind = 'cue' AND at_ms >= $2 \
         AND at_ms < $3 ORDER BY at_ms, id",
    )
    .bind(gateway)
    .bind(from)
    .bind(to)
    .fetch_all(store.pool())
    .await?;
    let mut cues = Vec::with_capacity(during.len() + 1);
    for r in before.into_iter().chain(during) {
        let at: i64 = r.try_get("at_ms")?;
        let json: String = r.try_get("json")?;
        // A cue event that no longer decodes says nothing of what played: left out, and the
        // cue before it counts on (as the gateway reported it).
        if let Ok(e) = wire::decode::<wire::Event>(json.as_bytes())
            && let Some(c) = e.cue
        {
            cues.push(change(at, &c));
        }
    }
    let reporting = sqlx::query(
        "SELECT from_ms, to_ms FROM reporting WHERE gateway = $1 AND to_ms >= $2 AND from_ms < $3 \
         ORDER BY from_ms",
    )
    .bind(gateway)
    .bind(from)
    .bind(to)
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|r| Ok((r.try_get("from_ms")?, r.try_get("to_ms")?)))
    .collect::<Result<Vec<(i64, i64)>, sqlx::Error>>()?;
    Ok(History { cues, reporting })
}

fn minutes(ms: i64) -> f64 {
    (ms as f64 / 6_000.0).round() / 10.0
}

/// The nights of `site` starting on `from` ..= `to` (local dates; by default the week up to
/// the latest night that has begun, in the site's time zone — tonight once the sun has set).
pub async fn report(
    state: &Arc<AppState>,
    site: &SiteId,
    from: Option<jiff::civil::Date>,
    to: Option<jiff::civil::Date>,
) -> Result<Option<Vec<Night>>, Error> {
    let lib = state.store.checked_library().await?;
    let library = &lib.checked.library;
    let Some(s) = library.sites.get(site) else {
        return Ok(None);
    };
    let now = state.clock.now_ms();
    let place = Place::new(s.location.lat, s.location.lon);
    let zones = library.zones.as_ref();
    let rules = night::Rules {
        after_sunset: zones.map_or(std::time::Duration::ZERO, |z| z.applies_after_sunset),
        before_sunrise: zones.map_or(std::time::Duration::ZERO, |z| z.applies_before_sunrise),
        curfew: s.limits.curfew,
    };
    let day = |d: jiff::civil::Date| nightscape_core::schedule::epoch_day(d);
    let today = nightscape_core::schedule::local_date(now, &s.time_zone);
    let to = match to {
        Some(to) => to,
        None => {
            let almanac = Almanac::new(day(today) - 2, day(today) + 2);
            let tonight = night::Night::of(today, place, &s.time_zone, &almanac, &rules);
            if now >= tonight.from_ms {
                today
            } else {
                today.yesterday().unwrap_or(today)
            }
        }
    };
    let from = from.unwrap_or_else(|| to.checked_sub(jiff::Span::new().days(6)).unwrap_or(to));
    if from > to || to.since(from).map_or(true, |d| d.get_days() > 92) {
        return Err(Error::Range(
            "from must not be after to, and at most 92 nights before it".into(),
        ));
    }
    let Some(gateway) = s.gateways.first().map(|g| g.id.to_string()) else {
        return Ok(Some(Vec::new()));
    };
    let almanac = Almanac::new(day(from) - 2, day(to) + 3);
    let mut windows = Vec::new();
    let mut date = from;
    loop {
        windows.push(night::Night::of(
            date,
            place,
            &s.time_zone,
            &almanac,
            &rules,
        ));
        match date.tomorrow() {
            Ok(next) if next <= to => date = next,
            _ => break,
        }
    }
    let (Some(first), Some(last)) = (windows.first(), windows.last()) else {
        return Ok(Some(Vec::new()));
    };
    let history = history(&state.store, &gateway, first.from_ms, last.to_ms).await?;
    let exceptions: Vec<overrides::Override> = overrides::recent(&state.store, 10_000)
        .await?
        .into_iter()
        .filter(|o| o.kind == Kind::CurfewException && o.scope.covers(site))
        .collect();
    let cap = s.limits.max_output.pct();
    let nights = windows
        .iter()
        .map(|w| {
            let m = night::measure(&history.cues, &history.reporting, w, now);
            Night {
                site: site.to_string(),
                date: w.date.to_string(),
                status: m.progress.into(),
                night_from_ms: w.from_ms,
                night_to_ms: w.to_ms,
                legal_from_ms: w.legal.0,
                legal_to_ms: w.legal.1,
                curfew_at_ms: w.curfew_ms,
                counted_to_ms: m.counted_to_ms,
                cap_pct: cap,
                max_output_pct: m.max_pct.min(cap),
                clamped: m.max_pct > cap + 1e-9,
                lit_minutes: minutes(m.lit_ms),
                lit_after_curfew_minutes: minutes(m.lit_after_curfew_ms),
                not_reported_minutes: minutes(m.not_reported_ms),
                exceptions: exceptions
                    .iter()
                    .filter(|o| o.from_ms < w.to_ms && o.until_ms.is_none_or(|u| u > w.from_ms))
                    .map(|o| format!("{} by {}: {}", o.id, o.created_by, o.reason))
                    .collect(),
                reported: m.reported_ms > 0,
            }
        })
        .collect();
    Ok(Some(nights))
}

/// CSV with a byte-order mark, for spreadsheet programs.
pub fn csv(nights: &[Night]) -> String {
    let mut out = String::from(
        "\u{feff}site,date,max_output_pct,cap_pct,clamped,lit_minutes,lit_after_curfew_minutes,exceptions,reported,status,not_reported_minutes\r\n",
    );
    for n in nights {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},\"{}\",{},{},{}\r\n",
            n.site,
            n.date,
            n.max_output_pct,
            n.cap_pct,
            n.clamped,
            n.lit_minutes,
            n.lit_after_curfew_minutes,
            n.exceptions.join("; ").replace('"', "\"\""),
            n.reported,
            match n.status {
                NightStatus::NotBegun => "not-begun",
                NightStatus::InProgress => "in-progress",
                NightStatus::Over => "over",
            },
            n.not_reported_minutes
        ));
    }
    out
}
