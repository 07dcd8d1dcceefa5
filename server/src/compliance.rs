//! The per-site, per-night compliance report: how bright the site was inside the legal
//! window of the light-pollution rules (sunset + the zone table's delay to sunrise − its
//! lead) against the site's cap, how long it was lit after its curfew, and which curfew
//! exceptions were in force. It is built from the cue events the site's gateway reported
//! (what it played, not what the schedule meant), and says so.

use std::sync::Arc;

use nightscape_core::model::Curfew;
use nightscape_core::schedule::local_instant;
use nightscape_core::sun::{Almanac, Event, Place};
use nightscape_core::wire::{self, ActiveCue};
use nightscape_core::{SiteId, model::TimeOfDay};
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::Row;

use crate::AppState;
use crate::overrides::{self, Kind};
use crate::store::StoreError;

const DAY_MS: i64 = 86_400_000;

/// One night of one site.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Night {
    pub site: String,
    /// The local date the night begins on (noon to noon).
    pub date: String,
    pub legal_from_ms: i64,
    pub legal_to_ms: i64,
    pub curfew_at_ms: Option<i64>,
    pub cap_pct: f64,
    /// The highest brightness played inside the legal window, after the cap.
    pub max_output_pct: f64,
    /// A cue asked for more than the cap inside the window (the gateway held it to the cap).
    pub clamped: bool,
    pub lit_minutes: f64,
    pub lit_after_curfew_minutes: f64,
    /// Curfew exceptions in force during the night.
    pub exceptions: Vec<String>,
    /// Whether any cue was reported for or before the night; without one the figures are 0.
    pub reported: bool,
}

/// Cue changes: (from, lit, brightness %), in time order.
pub type Timeline = Vec<(i64, bool, f64)>;

/// Measures one night from its timeline (which starts with the cue in force before it).
pub fn measure(
    timeline: &Timeline,
    start: i64,
    end: i64,
    legal: (i64, i64),
    curfew: Option<i64>,
) -> (f64, f64, f64) {
    let (mut max_pct, mut lit_ms, mut after_ms) = (0.0_f64, 0, 0);
    for (i, (from, lit, pct)) in timeline.iter().enumerate() {
        let to = timeline.get(i + 1).map_or(end, |n| n.0);
        let (a, b) = ((*from).max(start), to.min(end));
        if b <= a || !lit {
            continue;
        }
        lit_ms += b - a;
        if let Some(c) = curfew {
            after_ms += (b - a.max(c)).max(0);
        }
        if a.max(legal.0) < b.min(legal.1) {
            max_pct = max_pct.max(*pct);
        }
    }
    (
        max_pct,
        lit_ms as f64 / 60_000.0,
        after_ms as f64 / 60_000.0,
    )
}

fn lit(cue: &ActiveCue) -> (bool, f64) {
    let pct = cue.brightness_pct.pct();
    (cue.scene.is_some() && pct > 0.0, pct)
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

/// The nights of `site` starting on `from` ..= `to` (local dates; by default the week up to
/// the last night that is over, in the site's time zone).
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
    let yesterday =
        nightscape_core::schedule::local_date(state.clock.now_ms() - DAY_MS, &s.time_zone);
    let to = to.unwrap_or(yesterday);
    let from = from.unwrap_or_else(|| to.checked_sub(jiff::Span::new().days(6)).unwrap_or(to));
    if from > to || to.since(from).map_or(true, |d| d.get_days() > 92) {
        return Err(Error::Range(
            "from must not be after to, and at most 92 nights before it".into(),
        ));
    }
    let Some(gateway) = s.gateways.first().map(|g| g.id.to_string()) else {
        return Ok(Some(Vec::new()));
    };
    let zones = library.zones.as_ref();
    let after = zones.map_or(0, |z| z.applies_after_sunset.as_millis() as i64);
    let before = zones.map_or(0, |z| z.applies_before_sunrise.as_millis() as i64);
    let place = Place::new(s.location.lat, s.location.lon);
    let noon = TimeOfDay::parse("12:00").unwrap_or(TimeOfDay::MIDNIGHT);
    let first = local_instant(from, noon, &s.time_zone);
    let last = local_instant(to.tomorrow().unwrap_or(to), noon, &s.time_zone);
    let day0 = first.div_euclid(DAY_MS);
    let almanac = Almanac::new(day0 - 2, last.div_euclid(DAY_MS) + 2);
    // The cue in force at the start, then every change.
    let mut timeline: Timeline = Vec::new();
    let rows = sqlx::query(
        "SELECT at_ms, json FROM events WHERE gateway = $1 AND kind = 'cue' AND at_ms < $2 ORDER BY at_ms DESC LIMIT 1",
    )
    .bind(&gateway)
    .bind(first)
    .fetch_all(state.store.pool())
    .await?
    .into_iter()
    .chain(
        sqlx::query("SELECT at_ms, json FROM events WHERE gateway = $1 AND kind = 'cue' AND at_ms >= $2 AND at_ms < $3 ORDER BY at_ms")
            .bind(&gateway)
            .bind(first)
            .bind(last)
            .fetch_all(state.store.pool())
            .await?,
    );
    for r in rows {
        let at: i64 = r.try_get("at_ms")?;
        let json: String = r.try_get("json")?;
        if let Ok(e) = wire::decode::<wire::Event>(json.as_bytes())
            && let Some(c) = e.cue
        {
            let (on, pct) = lit(&c);
            timeline.push((at, on, pct));
        }
    }
    let exceptions: Vec<overrides::Override> = overrides::recent(&state.store, 10_000)
        .await?
        .into_iter()
        .filter(|o| o.kind == Kind::CurfewException && o.scope.covers(site))
        .collect();
    let cap = s.limits.max_output.pct();
    let mut nights = Vec::new();
    let mut date = from;
    while date <= to {
        let start = local_instant(date, noon, &s.time_zone);
        let next = date.tomorrow().unwrap_or(date);
        let end = local_instant(next, noon, &s.time_zone);
        let day = start.div_euclid(DAY_MS);
        let sunset = almanac.event(place, day, Event::Sunset).unwrap_or(start);
        let sunrise = almanac.event(place, day + 1, Event::Sunrise).unwrap_or(end);
        let legal = (sunset + after, sunrise - before);
        let curfew = match s.limits.curfew {
            Curfew::At(t) if t.minutes() >= 12 * 60 => Some(local_instant(date, t, &s.time_zone)),
            Curfew::At(t) => Some(local_instant(next, t, &s.time_zone)),
            Curfew::None => None,
        };
        let (max_pct, lit_minutes, after_minutes) = measure(&timeline, start, end, legal, curfew);
        nights.push(Night {
            site: site.to_string(),
            date: date.to_string(),
            legal_from_ms: legal.0,
            legal_to_ms: legal.1,
            curfew_at_ms: curfew,
            cap_pct: cap,
            max_output_pct: max_pct.min(cap),
            clamped: max_pct > cap + 1e-9,
            lit_minutes: (lit_minutes * 10.0).round() / 10.0,
            lit_after_curfew_minutes: (after_minutes * 10.0).round() / 10.0,
            exceptions: exceptions
                .iter()
                .filter(|o| o.from_ms < end && o.until_ms.is_none_or(|u| u > start))
                .map(|o| format!("{} by {}: {}", o.id, o.created_by, o.reason))
                .collect(),
            reported: timeline.first().is_some_and(|t| t.0 < end),
        });
        if next == date {
            break;
        }
        date = next;
    }
    Ok(Some(nights))
}

/// CSV with a byte-order mark, for spreadsheet programs.
pub fn csv(nights: &[Night]) -> String {
    let mut out = String::from(
        "\u{feff}site,date,max_output_pct,cap_pct,clamped,lit_minutes,lit_after_curfew_minutes,exceptions,reported\r\n",
    );
    for n in nights {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},\"{}\",{}\r\n",
            n.site,
            n.date,
            n.max_output_pct,
            n.cap_pct,
            n.clamped,
            n.lit_minutes,
            n.lit_after_curfew_minutes,
            n.exceptions.join("; ").replace('"', "\"\""),
            n.reported
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000;

    #[test]
    fn a_night_is_measured_from_its_cue_changes() {
        // Lit at 100 % from 18:00 (before the night's noon-to-noon start: the cue in force),
        // 50 % at 22:00, dark at 00:30; the curfew at 00:00; the legal window 19:00–06:00.
        let (start, end) = (0, 24 * 60 * M);
        let at = |h: i64, m: i64| ((h - 12) * 60 + m) * M;
        let timeline = vec![
            (at(11, 0), true, 100.0),
            (at(22, 0), true, 50.0),
            (at(24, 30), false, 0.0),
        ];
        let (max, lit, after) = measure(
            &timeline,
            start,
            end,
            (at(19, 0), at(30, 0)),
            Some(at(24, 0)),
        );
        assert_eq!(max, 100.0);
        assert_eq!(lit, (12 * 60 + 30) as f64);
        assert_eq!(after, 30.0);
        // Only the 50 % part is inside a window that starts at 22:30.
        let (max, _, _) = measure(&timeline, start, end, (at(22, 30), at(30, 0)), None);
        assert_eq!(max, 50.0);
        assert_eq!(
            measure(&Vec::new(), start, end, (0, 1), None),
            (0.0, 0.0, 0.0)
        );
    }
}
