//! What gateways send up: state (retained), acks, telemetry and events. Each message is
//! decoded schema-first by the core; one that is malformed, or that names another gateway
//! than the topic it came on, is counted and logged and changes nothing.
//!
//! Messages are taken in batches: whatever has arrived (up to [`BATCH`]) goes into the
//! store in one transaction, so a fleet's acks after a city-wide order cost a few commits,
//! not one each; when a batch fails, its messages are taken one by one, so one bad message
//! costs only itself.
//!
//! Events are stored once however often they arrive (the gateway's id is the key); fault
//! events open and close faults, one open per gateway, source and kind. Telemetry adds to
//! each site's energy and lit minutes of the local day.

use std::collections::HashMap;
use std::sync::Arc;

use nightscape_core::clock::Clock;
use nightscape_core::wire::{self, About, Ack, AckResult, Event, State, Telemetry, Topic};
use nightscape_core::{GatewayId, SiteId};
use sqlx::{AnyConnection, Row};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::mqtt::{Inbound, Up};
use crate::publish::{Publisher, to_i64};
use crate::store::{Store, StoreError};

/// Telemetry further apart than this is a gap, not energy.
const MAX_STEP_MS: i64 = 60_000;
/// Messages taken into the store in one transaction.
pub const BATCH: usize = 1024;
/// A gateway that comes back behind its plan gets it again at most this often.
const REPUBLISH_EVERY_MS: i64 = 30_000;
/// A gateway sends telemetry every 10 s and its state every 60 s; heard from again within
/// this, it counts as reporting all along. The margin over the state's period lets a
/// gateway whose telemetry (QoS 0) is lost still count, and a longer silence is a gap.
pub const REPORTING_GAP: std::time::Duration = std::time::Duration::from_secs(90);

type SiteMap = HashMap<GatewayId, (SiteId, jiff::tz::TimeZone, bool)>;

pub struct Intake {
    pub store: Store,
    pub publisher: Arc<Publisher>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub topic_prefix: String,
    /// Messages from a gateway further apart than this (on the intake's clock) leave a gap
    /// in its reporting; [`REPORTING_GAP`] unless the clock runs scaled.
    pub reporting_gap: std::time::Duration,
    /// Per gateway, its site, the site's time zone and whether it is the site's first
    /// gateway (which alone counts lit minutes), for the library they were read from.
    sites: (Option<Arc<crate::store::Library>>, SiteMap),
}

#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("{0}")]
    Wire(#[from] wire::WireError),
    #[error("names gateway `{named}` on gateway `{topic}`'s topic")]
    Impostor { topic: GatewayId, named: GatewayId },
    #[error("not a topic gateways publish on")]
    Topic,
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl Refused {
    fn reason(&self) -> &'static str {
        match self {
            Refused::Wire(_) => "malformed",
            Refused::Impostor { .. } => "impostor",
            Refused::Topic => "topic",
            Refused::Store(_) => "store",
        }
    }
}

impl Intake {
    pub fn new(
        store: Store,
        publisher: Arc<Publisher>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        topic_prefix: String,
    ) -> Intake {
        Intake {
            store,
            publisher,
            metrics,
            clock,
            topic_prefix,
            reporting_gap: REPORTING_GAP,
            sites: (None, HashMap::new()),
        }
    }

    pub async fn run(mut self, mut up: mpsc::Receiver<Up>) {
        let mut batch = Vec::with_capacity(BATCH);
        while up.recv_many(&mut batch, BATCH).await > 0 {
            let mut messages = Vec::with_capacity(batch.len());
            for message in batch.drain(..) {
                match message {
                    Up::Connected => {
                        tracing::info!("connected to the broker");
                        self.metrics.broker_connected(true);
                        // The next round sends everything again: the broker may have forgotten.
                        self.publisher.kick.notify_one();
                    }
                    Up::Disconnected(why) => {
                        self.metrics.broker_connected(false);
                        tracing::warn!("broker connection lost: {why}");
                    }
                    Up::Message(m) => messages.push(m),
                }
            }
            // Rows are locked in the gateways' order, as the publisher's transactions do,
            // so that none waits on another in a circle; each gateway's own messages keep
            // their order.
            messages
                .sort_by_key(|m| wire::parse_topic(&self.topic_prefix, &m.topic).map(|(g, _)| g));
            self.take_all(&messages).await;
        }
    }

    /// Takes `messages` into the store in one transaction; when it fails, each in its own.
    /// [`run`](Self::run) calls it per batch; tests call it to take messages at chosen
    /// instants of a virtual clock.
    pub async fn take_all(&mut self, messages: &[Inbound]) {
        if messages.is_empty() {
            return;
        }
        if let Err(e) = self.refresh_sites().await {
            tracing::warn!("the library could not be read for the gateways' sites: {e}");
        }
        if messages.len() > 1 {
            let together = async {
                let mut tx = self.store.begin().await?;
                let mut refused = Vec::new();
                for m in messages {
                    match self.take(&mut tx, m).await {
                        Ok(()) => {}
                        Err(Refused::Store(e)) => return Err(e),
                        Err(e) => refused.push((m, e)),
                    }
                }
                tx.commit().await?;
                Ok::<_, StoreError>(refused)
            };
            match together.await {
                Ok(refused) => {
                    for (m, e) in refused {
                        self.refused(m, &e);
                    }
                    return;
                }
                Err(e) => tracing::warn!(
                    "a batch of {} gateway messages failed ({e}); taking them one by one",
                    messages.len()
                ),
            }
        }
        for m in messages {
            let alone = async {
                let mut tx = self.store.begin().await?;
                let taken = self.take(&mut tx, m).await;
                if taken.is_ok() {
                    tx.commit().await.map_err(StoreError::from)?;
                }
                taken
            };
            if let Err(e) = alone.await {
                self.refused(m, &e);
            }
        }
    }

    fn refused(&self, m: &Inbound, e: &Refused) {
        self.metrics.rejected(e.reason());
        tracing::warn!(topic = %m.topic, "gateway message refused: {e}");
    }

    async fn take(&mut self, db: &mut AnyConnection, m: &Inbound) -> Result<(), Refused> {
        let (gateway, leaf) =
            wire::parse_topic(&self.topic_prefix, &m.topic).ok_or(Refused::Topic)?;
        self.metrics.received(leaf);
        let same = |named: &GatewayId| {
            if *named == gateway {
                Ok(())
            } else {
                Err(Refused::Impostor {
                    topic: gateway.clone(),
                    named: named.clone(),
                })
            }
        };
        match leaf {
            Topic::State => {
                // An empty retained message clears a state; nothing to store.
                if m.payload.is_empty() {
                    return Ok(());
                }
                let s: State = wire::decode(&m.payload)?;
                same(&s.gateway)?;
                self.state(db, &s, &m.payload).await?;
            }
            Topic::Ack => {
                let a: Ack = wire::decode(&m.payload)?;
                same(&a.gateway)?;
                self.ack(db, &a).await?;
            }
            Topic::Telemetry => {
                let t: Telemetry = wire::decode(&m.payload)?;
                same(&t.gateway)?;
                self.telemetry(db, &t, &m.payload).await?;
            }
            Topic::Event => {
                let e: Event = wire::decode(&m.payload)?;
                same(&e.gateway)?;
                self.event(db, &e, &m.payload).await?;
            }
            Topic::Plan | Topic::Overrides | Topic::Cmd => return Err(Refused::Topic),
        }
        Ok(())
    }

    async fn state(
        &mut self,
        db: &mut AnyConnection,
        s: &State,
        raw: &[u8],
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let row = sqlx::query(
            "UPDATE gateways SET online = $1, state_json = $2, seen_at_ms = $3 WHERE gateway = $4 \
             RETURNING plan_version, republished_at_ms",
        )
        .bind(i64::from(s.online))
        .bind(String::from_utf8_lossy(raw).into_owned())
        .bind(now)
        .bind(s.gateway.as_str())
        .fetch_optional(&mut *db)
        .await?;
        if row.is_some() {
            self.heard(db, &s.gateway, now, s.online).await?;
        }
        // A gateway that comes back behind the plan it should play gets it again (a broker
        // may not resend retained messages to a resumed session).
        if let Some(row) = row
            && s.online
        {
            let version: Option<i64> = row.try_get("plan_version")?;
            let again: Option<i64> = row.try_get("republished_at_ms")?;
            let behind = version.is_some_and(|v| s.plan_version.is_none_or(|p| to_i64(p) < v));
            if behind && again.is_none_or(|t| now - t > REPUBLISH_EVERY_MS) {
                sqlx::query(
                    "UPDATE gateways SET plan_published = 0, overrides_published = 0, republished_at_ms = $1 WHERE gateway = $2",
                )
                .bind(now)
                .bind(s.gateway.as_str())
                .execute(&mut *db)
                .await?;
                self.publisher.kick.notify_one();
            }
        }
        Ok(())
    }

    async fn ack(&mut self, db: &mut AnyConnection, a: &Ack) -> Result<(), StoreError> {
        let version = a.id.parse::<u64>().ok().map(to_i64);
        match (a.about, a.result, version) {
            (About::Plan, AckResult::Applied, Some(v)) => {
                sqlx::query(
                    "UPDATE gateways SET acked_plan = $1, last_refusal = NULL WHERE gateway = $2 AND (acked_plan IS NULL OR acked_plan < $1)",
                )
                .bind(v)
                .bind(a.gateway.as_str())
                .execute(&mut *db)
                .await?;
            }
            (About::Overrides, AckResult::Applied, Some(v)) => {
                sqlx::query(
                    "UPDATE gateways SET acked_overrides = $1, last_refusal = NULL WHERE gateway = $2 AND (acked_overrides IS NULL OR acked_overrides < $1)",
                )
                .bind(v)
                .bind(a.gateway.as_str())
                .execute(&mut *db)
                .await?;
            }
            (About::Cmd, result, _) => {
                let result = match result {
                    AckResult::Applied => "applied",
                    AckResult::Rejected => "rejected",
                    AckResult::Expired => "expired",
                };
                crate::commands::answered(
                    db,
                    &a.gateway,
                    &a.id,
                    result,
                    a.reason.as_deref(),
                    self.clock.now_ms(),
                )
                .await?;
            }
            (About::Plan | About::Overrides, AckResult::Rejected | AckResult::Expired, _) => {
                let reason = format!(
                    "{} {} refused: {}",
                    if a.about == About::Plan {
                        "plan"
                    } else {
                        "overrides"
                    },
                    a.id,
                    a.reason.as_deref().unwrap_or("no reason given")
                );
                tracing::warn!(gateway = %a.gateway, "{reason}");
                sqlx::query("UPDATE gateways SET last_refusal = $1 WHERE gateway = $2")
                    .bind(reason)
                    .bind(a.gateway.as_str())
                    .execute(&mut *db)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Notes that `gateway` was heard at `now` (the intake's clock: when the message came,
    /// not what the gateway's clock says). Its open reporting stretch is extended when the
    /// last message came within the gap; after a longer silence that stretch stays closed
    /// where the gateway was last heard and a new one begins. An offline state closes the
    /// stretch without extending it: the broker sends a gateway's last will only once its
    /// keep-alive has run out, and the gateway may have been gone that long.
    ///
    /// Replicas all receive every message: the extension only ever moves the end forward,
    /// and the one open stretch per gateway (a unique index) makes a second replica's new
    /// stretch a no-op.
    async fn heard(
        &self,
        db: &mut AnyConnection,
        gateway: &GatewayId,
        now: i64,
        online: bool,
    ) -> Result<(), StoreError> {
        if online {
            let extended =
                sqlx::query(
                    "UPDATE reporting SET to_ms = CASE WHEN to_ms < $1 THEN $1 ELSE to_ms END \
                 WHERE gateway = $2 AND open = 1 AND to_ms >= $3",
                )
                .bind(now)
                .bind(gateway.as_str())
                .bind(now.saturating_sub(
                    i64::try_from(self.reporting_gap.as_millis()).unwrap_or(i64::MAX),
                ))
                .execute(&mut *db)
                .await?
                .rows_affected()
                    > 0;
            if extended {
                return Ok(());
            }
        }
        sqlx::query("UPDATE reporting SET open = 0 WHERE gateway = $1 AND open = 1")
            .bind(gateway.as_str())
            .execute(&mut *db)
            .await?;
        if online {
            sqlx::query(
                "INSERT INTO reporting (gateway, from_ms, to_ms, open) VALUES ($1, $2, $2, 1) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(gateway.as_str())
            .bind(now)
            .execute(&mut *db)
            .await?;
        }
        Ok(())
    }

    fn site_of(&self, gateway: &GatewayId) -> Option<(SiteId, jiff::tz::TimeZone, bool)> {
        self.sites.1.get(gateway).cloned()
    }

    /// The gateways' sites, built again whenever the library changed (a gateway moved, a
    /// zone changed); looked at once per batch.
    async fn refresh_sites(&mut self) -> Result<(), StoreError> {
        let lib = self.store.checked_library().await?;
        if !self.sites.0.as_ref().is_some_and(|l| Arc::ptr_eq(l, &lib)) {
            let mut map = HashMap::new();
            for site in lib.checked.library.sites.values() {
                for (i, g) in site.gateways.iter().enumerate() {
                    map.insert(
                        g.id.clone(),
                        (site.id.clone(), site.time_zone.clone(), i == 0),
                    );
                }
            }
            self.sites = (Some(lib), map);
        }
        Ok(())
    }

    async fn telemetry(
        &mut self,
        db: &mut AnyConnection,
        t: &Telemetry,
        raw: &[u8],
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let known = sqlx::query(
            "UPDATE gateways SET telemetry_json = $1, seen_at_ms = $2 WHERE gateway = $3",
        )
        .bind(String::from_utf8_lossy(raw).into_owned())
        .bind(now)
        .bind(t.gateway.as_str())
        .execute(&mut *db)
        .await?
        .rows_affected()
            > 0;
        if known {
            self.heard(db, &t.gateway, now, true).await?;
        }
        let Some((site, tz, first)) = self.site_of(&t.gateway) else {
            return Ok(());
        };
        // Every replica receives every telemetry message: the gateway's row says up to when its
        // energy is counted. One UPDATE moves that cursor forward and returns where it was (the
        // right-hand side reads the row as it was), so each slice of time is added once, by
        // whichever replica moves it; a replica that finds it already there adds nothing.
        let moved: Option<Option<i64>> = sqlx::query_scalar(
            "UPDATE gateways SET energy_prev_ms = energy_at_ms, energy_at_ms = $1 \
             WHERE gateway = $2 AND (energy_at_ms IS NULL OR energy_at_ms < $1) \
             RETURNING energy_prev_ms",
        )
        .bind(t.at_ms)
        .bind(t.gateway.as_str())
        .fetch_optional(&mut *db)
        .await?;
        let Some(Some(last)) = moved else {
            // Counted already, the first message, or a gateway without a row.
            return Ok(());
        };
        let step = t.at_ms - last;
        if step > MAX_STEP_MS || !t.power_w.is_finite() || t.power_w < 0.0 {
            return Ok(());
        }
        let day = nightscape_core::schedule::local_date(t.at_ms, &tz).to_string();
        let wh = t.power_w * step as f64 / 3_600_000.0;
        let lit = first
            && t.cue
                .as_ref()
                .is_some_and(|c| c.scene.is_some() && c.brightness_pct.get() > 0.0);
        let minutes = if lit { step as f64 / 60_000.0 } else { 0.0 };
        let source = match t.power_source {
            wire::PowerSource::Measured => "measured",
            wire::PowerSource::Estimated => "estimated",
            wire::PowerSource::Mixed => "mixed",
        };
        sqlx::query(
            "INSERT INTO energy (site, day, wh, lit_minutes, source, last_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (site, day) DO UPDATE SET wh = energy.wh + excluded.wh, \
             lit_minutes = energy.lit_minutes + excluded.lit_minutes, last_at_ms = excluded.last_at_ms, \
             source = CASE WHEN energy.source = excluded.source THEN energy.source ELSE 'mixed' END",
        )
        .bind(site.as_str())
        .bind(day)
        .bind(wh)
        .bind(minutes)
        .bind(source)
        .bind(t.at_ms)
        .execute(&mut *db)
        .await?;
        Ok(())
    }

    async fn event(
        &mut self,
        db: &mut AnyConnection,
        e: &Event,
        raw: &[u8],
    ) -> Result<(), StoreError> {
        let new = sqlx::query(
            "INSERT INTO events (gateway, id, at_ms, kind, severity, controller, message, json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (gateway, id) DO NOTHING",
        )
        .bind(e.gateway.as_str())
        .bind(&e.id)
        .bind(e.at_ms)
        .bind(kebab(&e.kind))
        .bind(kebab(&e.severity))
        .bind(e.controller.as_ref().map(|c| c.to_string()))
        .bind(&e.message)
        .bind(String::from_utf8_lossy(raw).into_owned())
        .execute(&mut *db)
        .await?
        .rows_affected()
            > 0;
        if new && let Some(f) = e.fault {
            let source = e
                .controller
                .as_ref()
                .map_or_else(|| "gateway".to_owned(), |c| c.to_string());
            if f.open {
                sqlx::query(
                    "INSERT INTO faults (gateway, source, kind, status, message, opened_at_ms) \
                     VALUES ($1, $2, $3, 'open', $4, $5) \
                     ON CONFLICT (gateway, source, kind) WHERE status <> 'closed' DO NOTHING",
                )
                .bind(e.gateway.as_str())
                .bind(&source)
                .bind(f.code.as_str())
                .bind(&e.message)
                .bind(e.at_ms)
                .execute(&mut *db)
                .await?;
            } else {
                sqlx::query(
                    "UPDATE faults SET status = 'closed', closed_at_ms = $1 \
                     WHERE gateway = $2 AND source = $3 AND kind = $4 AND status <> 'closed'",
                )
                .bind(e.at_ms)
                .bind(e.gateway.as_str())
                .bind(&source)
                .bind(f.code.as_str())
                .execute(&mut *db)
                .await?;
            }
        }
        Ok(())
    }
}

fn kebab<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
