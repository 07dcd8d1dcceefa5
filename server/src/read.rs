//! The read side: the city overview, transitions, gateways, faults, energy and events, as
//! the API and the dashboard show them.

use std::sync::Arc;

use nightscape_core::SiteId;
use nightscape_core::sun::Almanac;
use nightscape_core::wire::{self, ActiveCue, FaultCode, State};
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::Row;

use crate::AppState;
use crate::api::ApiError;
use crate::store::{Store, StoreError};

#[derive(Debug, Serialize, JsonSchema)]
pub struct SiteOverview {
    pub site: SiteId,
    /// The site's name in Korean, and in English when the library gives one.
    pub name: String,
    pub name_en: Option<String>,
    pub lat: f64,
    pub lon: f64,
    pub gateways: Vec<GatewayView>,
    /// Every gateway of the site online.
    pub online: bool,
    /// What the site's first gateway reports playing.
    #[schemars(with = "Option<serde_json::Value>")]
    pub cue: Option<ActiveCue>,
    /// Tonight: the first switch-on and the last switch-off of the next 24 hours.
    pub on_at_ms: Option<i64>,
    /// The same in the site's time zone, HH:MM.
    pub on_local: Option<String>,
    pub off_local: Option<String>,
    pub off_at_ms: Option<i64>,
    pub open_faults: i64,
    /// Controllers of the site with an open "unreachable" fault: some of its light may be
    /// out while its gateways are connected.
    pub unreachable_controllers: i64,
    /// Gateways of the site that cannot send DMX over IP: its Art-Net and sACN fixtures
    /// show nothing new, or nothing.
    pub not_sending: i64,
    /// Gateways of the site, and how many of them are connected.
    pub gateways_online: i64,
    /// The one word for the site, worst first.
    pub status: SiteStatus,
}

/// What staff should know of a site at a glance, worst first: a connected gateway whose
/// controllers do not answer is not "online" in any sense a city cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SiteStatus {
    /// A gateway is not connected (or the site has none): what it shows is not known.
    Offline,
    /// Connected, but a gateway cannot send the lighting signal: the site may be dark.
    NotSending,
    /// Connected, but a controller does not answer: part of the site may be dark.
    Unreachable,
    /// Connected, every controller answering, other faults open.
    Fault,
    /// Connected, no open fault.
    Ok,
}

impl SiteStatus {
    fn of(online: bool, open_faults: i64, unreachable: i64, not_sending: i64) -> SiteStatus {
        if !online {
            SiteStatus::Offline
        } else if not_sending > 0 {
            SiteStatus::NotSending
        } else if unreachable > 0 {
            SiteStatus::Unreachable
        } else if open_faults > 0 {
            SiteStatus::Fault
        } else {
            SiteStatus::Ok
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GatewayView {
    pub gateway: String,
    pub site: String,
    pub online: bool,
    pub plan_version: Option<i64>,
    pub plan_published: bool,
    pub acked_plan: Option<i64>,
    pub overrides_version: Option<i64>,
    pub overrides_published: bool,
    pub acked_overrides: Option<i64>,
    /// Whether the gateway has acknowledged every current document.
    pub in_sync: bool,
    pub last_refusal: Option<String>,
    pub seen_at_ms: Option<i64>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub state: Option<State>,
}

pub async fn gateways(store: &Store) -> Result<Vec<GatewayView>, StoreError> {
    let rows = sqlx::query(
        "SELECT gateway, site, online, plan_version, plan_published, acked_plan, overrides_version, \
         overrides_published, acked_overrides, last_refusal, seen_at_ms, state_json FROM gateways \
         WHERE removed = 0 ORDER BY gateway",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let plan_version: Option<i64> = r.try_get("plan_version")?;
            let overrides_version: Option<i64> = r.try_get("overrides_version")?;
            let acked_plan: Option<i64> = r.try_get("acked_plan")?;
            let acked_overrides: Option<i64> = r.try_get("acked_overrides")?;
            let state: Option<String> = r.try_get("state_json")?;
            let online: i64 = r.try_get("online")?;
            let pp: i64 = r.try_get("plan_published")?;
            let op: i64 = r.try_get("overrides_published")?;
            Ok(GatewayView {
                gateway: r.try_get("gateway")?,
                site: r.try_get("site")?,
                online: online != 0,
                plan_version,
                plan_published: plan_version.is_some_and(|v| pp >= v),
                acked_plan,
                overrides_version,
                overrides_published: overrides_version.is_some_and(|v| op >= v),
                acked_overrides,
                in_sync: plan_version.is_none_or(|v| acked_plan.is_some_and(|a| a >= v))
                    && overrides_version.is_none_or(|v| acked_overrides.is_some_and(|a| a >= v)),
                last_refusal: r.try_get("last_refusal")?,
                seen_at_ms: r.try_get("seen_at_ms")?,
                state: state.and_then(|s| wire::decode::<State>(s.as_bytes()).ok()),
            })
        })
        .collect()
}

/// HH:MM at `t_ms` in `tz`.
fn clock_time(t_ms: i64, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_millisecond(t_ms)
        .map(|ts| tz.to_datetime(ts).strftime("%H:%M").to_string())
        .unwrap_or_default()
}

fn epoch_day(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

pub async fn overview(state: &Arc<AppState>) -> Result<Vec<SiteOverview>, StoreError> {
    let lib = state.store.checked_library().await?;
    let checked = &lib.checked;
    let gateways = gateways(&state.store).await?;
    let now = state.clock.now_ms();
    let almanac = Arc::new(Almanac::new(epoch_day(now) - 2, epoch_day(now) + 3));
    // Open faults per site (of its gateways in the library), and how many of them are
    // controllers not answering or gateways not sending.
    let faults: Vec<(String, [i64; 3])> = sqlx::query(
        "SELECT g.site, COUNT(*) AS n, \
         SUM(CASE WHEN f.kind = $1 THEN 1 ELSE 0 END) AS unreachable, \
         SUM(CASE WHEN f.kind = $2 THEN 1 ELSE 0 END) AS not_sending \
         FROM faults f JOIN gateways g ON g.gateway = f.gateway \
         WHERE f.status <> 'closed' AND g.removed = 0 GROUP BY g.site",
    )
    .bind(FaultCode::Unreachable.as_str())
    .bind(FaultCode::Send.as_str())
    .fetch_all(state.store.pool())
    .await?
    .iter()
    .map(|r| {
        Ok((
            r.try_get("site")?,
            [
                r.try_get("n")?,
                r.try_get("unreachable")?,
                r.try_get("not_sending")?,
            ],
        ))
    })
    .collect::<Result<_, StoreError>>()?;
    let mut out = Vec::new();
    for site in checked.library.sites.values() {
        let mine: Vec<GatewayView> = gateways
            .iter()
            .filter(|g| g.site == site.id.as_str())
            .cloned()
            .collect();
        let (mut on, mut off) = (None, None);
        if let Some(ev) = checked.library.evaluator(&site.id, almanac.clone()) {
            let lit =
                |c: &nightscape_core::schedule::Cue| c.scene.is_some() && c.brightness.get() > 0.0;
            let was_lit = lit(&ev.cue_at(now));
            let (list, _) = ev.transitions(now, now + 86_400_000);
            for t in &list {
                if lit(&t.cue) && on.is_none() && !was_lit {
                    on = Some(t.at_ms);
                }
                if !lit(&t.cue) {
                    off = Some(t.at_ms);
                }
            }
        }
        let gateways_online = mine.iter().filter(|g| g.online).count() as i64;
        let online = !mine.is_empty() && gateways_online == mine.len() as i64;
        let [open_faults, unreachable, not_sending] = faults
            .iter()
            .find(|(s, _)| s == site.id.as_str())
            .map_or([0; 3], |(_, n)| *n);
        out.push(SiteOverview {
            site: site.id.clone(),
            name: site.name.ko.clone(),
            name_en: site.name.en.clone(),
            lat: site.location.lat,
            lon: site.location.lon,
            online,
            cue: mine
                .first()
                .and_then(|g| g.state.as_ref())
                .and_then(|s| s.cue.clone()),
            gateways: mine,
            on_at_ms: on,
            off_at_ms: off,
            on_local: on.map(|t| clock_time(t, &site.time_zone)),
            off_local: off.map(|t| clock_time(t, &site.time_zone)),
            open_faults,
            unreachable_controllers: unreachable,
            not_sending,
            gateways_online,
            status: SiteStatus::of(online, open_faults, unreachable, not_sending),
        });
    }
    Ok(out)
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TransitionView {
    pub at_ms: i64,
    /// The site's local time, RFC 3339.
    pub local: String,
    pub scene: Option<String>,
    pub brightness_pct: f64,
    pub cause: String,
}

/// An instant with an offset, a date and time at the site, or a date (the site's midnight).
pub fn instant(text: &str, tz: &jiff::tz::TimeZone) -> Result<i64, ApiError> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let civil = text
        .parse::<jiff::civil::DateTime>()
        .or_else(|_| {
            text.parse::<jiff::civil::Date>()
                .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
        })
        .map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "bad-request",
                format!(
                    "`{text}`: give a date (2026-12-24), a time at the site (2026-12-24T19:30) or an instant with offset (2026-12-24T19:30:00+09:00)"
                ),
            )
        })?;
    tz.to_ambiguous_timestamp(civil)
        .compatible()
        .map(|ts| ts.as_millisecond())
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "bad-request",
                format!("`{text}`: {e}"),
            )
        })
}

pub async fn transitions(
    state: &Arc<AppState>,
    site: &SiteId,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Vec<TransitionView>, ApiError> {
    let lib = state.store.checked_library().await?;
    let checked = &lib.checked;
    let s = checked.library.sites.get(site).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not-found",
            format!("no site `{site}`"),
        )
    })?;
    let now = state.clock.now_ms();
    let from = from
        .map(|f| instant(f, &s.time_zone))
        .transpose()?
        .unwrap_or(now);
    let to = to
        .map(|t| instant(t, &s.time_zone))
        .transpose()?
        .unwrap_or(from + 7 * 86_400_000);
    if to <= from || to - from > 366 * 86_400_000 {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad-request",
            "the range must end after it starts and span at most a year",
        ));
    }
    let almanac = Arc::new(Almanac::new(epoch_day(from) - 2, epoch_day(to) + 2));
    let Some(ev) = checked.library.evaluator(site, almanac) else {
        return Ok(Vec::new());
    };
    let (list, _) = ev.transitions(from, to);
    Ok(list
        .into_iter()
        .map(|t| TransitionView {
            at_ms: t.at_ms,
            local: jiff::Timestamp::from_millisecond(t.at_ms)
                .map(|ts| s.time_zone.to_offset(ts))
                .map(|off| {
                    let dt = off.to_datetime(
                        jiff::Timestamp::from_millisecond(t.at_ms).unwrap_or_default(),
                    );
                    let minutes = off.seconds() / 60;
                    let sign = if minutes < 0 { '-' } else { '+' };
                    format!(
                        "{}{sign}{:02}:{:02}",
                        dt.strftime("%Y-%m-%dT%H:%M:%S"),
                        minutes.abs() / 60,
                        minutes.abs() % 60
                    )
                })
                .unwrap_or_default(),
            scene: t.cue.scene.as_ref().map(|s| s.to_string()),
            brightness_pct: t.cue.brightness.pct(),
            cause: serde_json::to_value(wire::Cause::from(&t.cue.cause))
                .ok()
                .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
                .unwrap_or_default(),
        })
        .collect())
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FaultView {
    pub id: i64,
    pub gateway: String,
    pub source: String,
    pub kind: String,
    pub status: String,
    pub message: String,
    pub opened_at_ms: i64,
    pub acknowledged_by: Option<String>,
    pub closed_at_ms: Option<i64>,
}

pub async fn faults(store: &Store) -> Result<Vec<FaultView>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, gateway, source, kind, status, message, opened_at_ms, acknowledged_by, closed_at_ms \
         FROM faults ORDER BY CASE WHEN status = 'closed' THEN 1 ELSE 0 END, opened_at_ms DESC LIMIT 1000",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(FaultView {
                id: r.try_get("id")?,
                gateway: r.try_get("gateway")?,
                source: r.try_get("source")?,
                kind: r.try_get("kind")?,
                status: r.try_get("status")?,
                message: r.try_get("message")?,
                opened_at_ms: r.try_get("opened_at_ms")?,
                acknowledged_by: r.try_get("acknowledged_by")?,
                closed_at_ms: r.try_get("closed_at_ms")?,
            })
        })
        .collect()
}

pub async fn acknowledge_fault(
    store: &Store,
    id: i64,
    by: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let done = sqlx::query(
        "UPDATE faults SET status = 'acknowledged', acknowledged_by = $1, acknowledged_at_ms = $2 WHERE id = $3 AND status = 'open'",
    )
    .bind(by)
    .bind(now_ms)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if done {
        crate::store::audit(
            &mut tx,
            &crate::store::Audit {
                actor: by,
                action: "fault.acknowledge",
                target: format!("fault:{id}"),
                before: None,
                after: None,
            },
            now_ms,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(done)
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EnergyRow {
    pub site: String,
    /// The site's local date.
    pub day: String,
    pub kwh: f64,
    pub lit_hours: f64,
    /// measured, estimated or mixed.
    pub source: String,
}

pub async fn energy(
    store: &Store,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Vec<EnergyRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT site, day, wh, lit_minutes, source FROM energy WHERE day >= $1 AND day <= $2 ORDER BY site, day",
    )
    .bind(from.unwrap_or("0000-01-01"))
    .bind(to.unwrap_or("9999-12-31"))
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let wh: f64 = r.try_get("wh")?;
            let minutes: f64 = r.try_get("lit_minutes")?;
            Ok(EnergyRow {
                site: r.try_get("site")?,
                day: r.try_get("day")?,
                kwh: (wh / 1000.0 * 1000.0).round() / 1000.0,
                lit_hours: (minutes / 60.0 * 100.0).round() / 100.0,
                source: r.try_get("source")?,
            })
        })
        .collect()
}

/// CSV with a byte-order mark, so spreadsheet programs read the Korean as UTF-8.
pub fn energy_csv(rows: &[EnergyRow]) -> String {
    let mut out = String::from("\u{feff}site,day,kwh,lit_hours,source\r\n");
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{}\r\n",
            r.site, r.day, r.kwh, r.lit_hours, r.source
        ));
    }
    out
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EventView {
    pub gateway: String,
    pub id: String,
    pub at_ms: i64,
    pub kind: String,
    pub severity: String,
    pub controller: Option<String>,
    pub message: String,
}

pub async fn events(store: &Store, limit: i64) -> Result<Vec<EventView>, StoreError> {
    let rows = sqlx::query(
        "SELECT gateway, id, at_ms, kind, severity, controller, message FROM events ORDER BY at_ms DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(EventView {
                gateway: r.try_get("gateway")?,
                id: r.try_get("id")?,
                at_ms: r.try_get("at_ms")?,
                kind: r.try_get("kind")?,
                severity: r.try_get("severity")?,
                controller: r.try_get("controller")?,
                message: r.try_get("message")?,
            })
        })
        .collect()
}
