//! Publishing: the desired documents of every gateway — its plan compiled from the library
//! and its overrides document from the overrides in force — against what the store says
//! was published. A round compiles every gateway's plan (cheap: it selects files), and only
//! gateways whose content hash changed get a new version: editing one site republishes
//! only that site's gateways. Each new document is stored first and published after, and
//! marked published only when the broker has acknowledged it, so a replica killed between
//! the two leaves the document for the next round of any replica.
//!
//! Rounds are serialized across replicas by a PostgreSQL advisory lock (a process mutex on
//! SQLite), run when a change is notified (in process, or LISTEN/NOTIFY between replicas),
//! and every few seconds when the change generation moved, as a safety net.
//!
//! A new broker connection gets every current document again before anything is compiled,
//! and a process whose build already compiled the stored plans at the current generation
//! (`plans_compiled`) does not compile them again at start: after a restart the gateways
//! hear from the server in seconds, not after a city's plans are compiled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use nightscape_core::clock::Clock;
use nightscape_core::plan::{self, OverrideEntry, OverridesDocument, Signed};
use nightscape_core::wire::{self, Topic};
use nightscape_core::{GatewayId, SiteId};
use rumqttc::QoS;
use sqlx::Row;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::mqtt::MqttHandle;
use crate::overrides;
use crate::store::{Backend, Store, StoreError, generation};

/// The advisory lock key of publishing rounds ("NSPUBLISH").
const LOCK_KEY: i64 = 0x4E53_5055_424C;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Gateways given a new plan version, and a new overrides version.
    pub new_plans: Vec<GatewayId>,
    pub new_overrides: Vec<GatewayId>,
    /// Documents the broker acknowledged in this round.
    pub published: usize,
    /// Documents still waiting for the broker.
    pub unpublished: usize,
    /// Another replica held the lock: nothing done.
    pub skipped: bool,
    /// Every current document was sent again (a new broker connection).
    pub republished: bool,
    /// The plans were compiled (the generation moved, or this process had not yet).
    pub compiled: bool,
}

pub struct Publisher {
    pub store: Store,
    pub mqtt: Option<MqttHandle>,
    pub key: SigningKey,
    pub clock: Arc<dyn Clock>,
    pub topic_prefix: String,
    pub metrics: Arc<Metrics>,
    /// Wakes the publishing loop.
    pub kick: Notify,
    /// Waited between storing new documents and sending them (tests of replicas only).
    pub delay: Duration,
    /// The change generation the last complete round saw.
    seen: AtomicI64,
    /// The broker connection whose retained documents were all sent: a new connection
    /// (at start, after the broker restarted) gets every current document again, since an
    /// embedded broker forgets retained messages.
    synced: AtomicU64,
    local: tokio::sync::Mutex<()>,
    /// This build of the server (see [`build_id`]).
    build: String,
}

impl Publisher {
    pub fn new(
        store: Store,
        mqtt: Option<MqttHandle>,
        key: SigningKey,
        clock: Arc<dyn Clock>,
        topic_prefix: String,
        metrics: Arc<Metrics>,
    ) -> Publisher {
        Publisher {
            store,
            mqtt,
            key,
            clock,
            topic_prefix,
            metrics,
            kick: Notify::new(),
            delay: Duration::ZERO,
            seen: AtomicI64::new(-1),
            synced: AtomicU64::new(0),
            local: tokio::sync::Mutex::new(()),
            build: build_id(),
        }
    }

    /// One round under the lock.
    pub async fn round(&self) -> Result<Round, StoreError> {
        let _local = self.local.lock().await;
        let mut lock_conn = None;
        if self.store.backend() == Backend::Postgres {
            let mut conn = self.store.pool().acquire().await?;
            let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1) AS got")
                .bind(LOCK_KEY)
                .fetch_one(&mut *conn)
                .await?
                .try_get::<bool, _>("got")?;
            if !got {
                return Ok(Round {
                    skipped: true,
                    ..Round::default()
                });
            }
            lock_conn = Some(conn);
        }
        let result = self.round_locked().await;
        if let Some(mut conn) = lock_conn {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(LOCK_KEY)
                .execute(&mut *conn)
                .await;
        }
        result
    }

    async fn round_locked(&self) -> Result<Round, StoreError> {
        let began = std::time::Instant::now();
        let generation = generation(&self.store).await?;
        let mut round = Round::default();
        // A new broker connection (at start, after the broker restarted) gets every
        // current document again, since an embedded broker forgets retained messages. What
        // is stored goes first: compiling a city's plans again after a restart (15 s for
        // 10,000) must not keep the documents in force from the gateways.
        let epoch = self
            .mqtt
            .as_ref()
            .filter(|m| m.connected())
            .map_or(0, |m| m.epoch());
        if epoch != 0 && epoch != self.synced.load(Ordering::Relaxed) {
            let (published, unpublished) = self.publish_pending(Some(epoch)).await?;
            round.republished = true;
            round.published += published;
            round.unpublished += unpublished;
            if unpublished == 0 {
                self.synced.store(epoch, Ordering::Relaxed);
            }
        }
        let compiling = std::time::Instant::now();
        if self.seen.load(Ordering::Relaxed) == -1
            && compiled_at(&self.store, &self.build).await? == Some(generation)
        {
            // The first round of this process: the stored plans are this build's, at this
            // generation; compiling them again would only find them unchanged.
            self.seen.store(generation, Ordering::Relaxed);
        }
        if generation != self.seen.load(Ordering::Relaxed) {
            round.new_plans = self.compile_plans().await?;
            round.compiled = true;
            set_compiled_at(&self.store, generation, &self.build).await?;
        }
        let compiled = compiling.elapsed();
        round.new_overrides = self.compile_overrides().await?;
        let stored = !(round.new_plans.is_empty() && round.new_overrides.is_empty());
        if stored && !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        // After a republish that left documents unsent, the next round sends them (and
        // these): counting them again here would only inflate the figure.
        if round.unpublished == 0 {
            let (published, unpublished) = self.publish_pending(None).await?;
            round.published += published;
            round.unpublished += unpublished;
        }
        let (published, unpublished) = (round.published, round.unpublished);
        if published + unpublished > 0 || !round.new_plans.is_empty() {
            tracing::info!(
                new_plans = round.new_plans.len(),
                new_overrides = round.new_overrides.len(),
                published,
                unpublished,
                "publishing round: plans compiled in {} ms, done in {} ms",
                compiled.as_millis(),
                began.elapsed().as_millis()
            );
        }
        if unpublished == 0 {
            self.seen.store(generation, Ordering::Relaxed);
        }
        Ok(round)
    }

    /// New plan versions for every gateway whose content changed; stored, not yet sent.
    async fn compile_plans(&self) -> Result<Vec<GatewayId>, StoreError> {
        let lib = self.store.checked_library().await?;
        let (files, checked) = (&lib.files, &lib.checked);
        let now = self.clock.now_ms();
        let current: BTreeMap<String, Option<String>> =
            sqlx::query("SELECT gateway, plan_hash FROM gateways")
                .fetch_all(self.store.pool())
                .await?
                .iter()
                .map(|r| Ok((r.try_get("gateway")?, r.try_get("plan_hash")?)))
                .collect::<Result<_, StoreError>>()?;
        // Each site's own files beside the shared ones, so that compiling a plan looks at a
        // handful of files, not at every file of a city of thousands of sites.
        let mut shared = Vec::new();
        let mut by_site: BTreeMap<&str, Vec<nightscape_core::SourceFile>> = BTreeMap::new();
        for f in files {
            match f
                .path
                .strip_prefix("sites/")
                .and_then(|rest| rest.split_once('/'))
            {
                Some((site, _)) => by_site.entry(site).or_default().push(f.clone()),
                None => shared.push(f.clone()),
            }
        }
        let mut compiled = Vec::new();
        let mut present = std::collections::BTreeSet::new();
        for site in checked.library.sites.values() {
            let mut own = shared.clone();
            own.extend(by_site.remove(site.id.as_str()).unwrap_or_default());
            for gw in &site.gateways {
                present.insert(gw.id.to_string());
                let Ok(plan) = plan::compile(&own, &checked.library, &site.id, &gw.id, 0, now, now)
                else {
                    continue;
                };
                if current.get(gw.id.as_str()).cloned().flatten().as_deref()
                    != Some(plan.content_hash.as_str())
                {
                    compiled.push(plan);
                }
            }
        }
        // One transaction, rows in the gateways' order (see `publish_pending`).
        compiled.sort_by(|a, b| a.gateway.cmp(&b.gateway));
        let mut changed = Vec::with_capacity(compiled.len());
        if !compiled.is_empty() {
            let mut tx = self.store.begin().await?;
            let versions = self
                .store
                .next_versions(&mut tx, compiled.len(), now)
                .await?;
            for (mut plan, version) in compiled.into_iter().zip(versions) {
                plan.version = version;
                let signed = plan::sign(plan, &self.key);
                let text = String::from_utf8(plan::canonical(&signed)).unwrap_or_default();
                let p = &signed.document;
                sqlx::query(
                    "INSERT INTO gateways (gateway, site, plan_version, plan_hash, plan_signed, plan_at_ms, plan_published) \
                     VALUES ($1, $2, $3, $4, $5, $6, 0) ON CONFLICT (gateway) DO UPDATE SET \
                     site = excluded.site, plan_version = excluded.plan_version, plan_hash = excluded.plan_hash, \
                     plan_signed = excluded.plan_signed, plan_at_ms = excluded.plan_at_ms, plan_published = 0, removed = 0",
                )
                .bind(p.gateway.as_str())
                .bind(p.site.as_str())
                .bind(to_i64(p.version))
                .bind(&p.content_hash)
                .bind(&text)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO plan_history (gateway, version, content_hash, issued_at_ms, effective_from_ms) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(p.gateway.as_str())
                .bind(to_i64(p.version))
                .bind(&p.content_hash)
                .bind(p.issued_at_ms)
                .bind(p.effective_from_ms)
                .execute(&mut *tx)
                .await?;
                tracing::info!(gateway = %p.gateway, version = p.version, "new plan");
                changed.push(p.gateway.clone());
            }
            tx.commit().await?;
        }
        // Gateways that left the library keep their last plan on site; the store marks them.
        let known: Vec<String> = current.keys().cloned().collect();
        for gw in known.iter().filter(|g| !present.contains(g.as_str())) {
            sqlx::query("UPDATE gateways SET removed = 1 WHERE gateway = $1")
                .bind(gw)
                .execute(self.store.pool())
                .await?;
        }
        Ok(changed)
    }

    /// New overrides documents where the overrides in force for a gateway changed.
    async fn compile_overrides(&self) -> Result<Vec<GatewayId>, StoreError> {
        let now = self.clock.now_ms();
        let active = overrides::active(&self.store, now).await?;
        let rows = sqlx::query(
            "SELECT gateway, site, overrides_hash FROM gateways WHERE removed = 0 ORDER BY gateway",
        )
        .fetch_all(self.store.pool())
        .await?;
        let mut changed = Vec::new();
        for r in rows {
            let gateway: String = r.try_get("gateway")?;
            let site: String = r.try_get("site")?;
            let hash: Option<String> = r.try_get("overrides_hash")?;
            let (Ok(gateway), Ok(site)) = (gateway.parse::<GatewayId>(), site.parse::<SiteId>())
            else {
                continue;
            };
            let entries: Vec<OverrideEntry> = active
                .iter()
                .filter(|o| o.scope.covers(&site))
                .map(overrides::Override::entry)
                .collect();
            let content = plan::hex(&<sha2::Sha256 as sha2::Digest>::digest(plan::canonical(
                &entries,
            )));
            // No document yet and nothing in force: nothing to say.
            if hash.as_deref() == Some(content.as_str()) || (hash.is_none() && entries.is_empty()) {
                continue;
            }
            changed.push((gateway, content, entries));
        }
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction for all of them: a city-wide order changes every gateway's
        // document, and a commit each would make the city wait on the disk.
        let mut tx = self.store.begin().await?;
        let versions = self
            .store
            .next_versions(&mut tx, changed.len(), now)
            .await?;
        for ((gateway, content, entries), version) in changed.iter_mut().zip(versions) {
            let signed: Signed<OverridesDocument> = plan::sign(
                OverridesDocument {
                    schema: plan::OVERRIDES_SCHEMA,
                    gateway: gateway.clone(),
                    version,
                    issued_at_ms: now,
                    overrides: std::mem::take(entries),
                },
                &self.key,
            );
            let text = String::from_utf8(plan::canonical(&signed)).unwrap_or_default();
            sqlx::query(
                "UPDATE gateways SET overrides_version = $1, overrides_hash = $2, overrides_signed = $3, \
                 overrides_published = 0 WHERE gateway = $4",
            )
            .bind(to_i64(version))
            .bind(&*content)
            .bind(&text)
            .bind(gateway.as_str())
            .execute(&mut *tx)
            .await?;
            tracing::info!(gateway = %gateway, version, "new overrides document");
        }
        tx.commit().await?;
        Ok(changed.into_iter().map(|(g, _, _)| g).collect())
    }

    /// Sends every stored document the broker does not hold yet: (sent, still waiting).
    /// With `resend_on`, a new connection's epoch, every current document is sent, on that
    /// connection only (one made since is the next round's, which sends everything again).
    async fn publish_pending(&self, resend_on: Option<u64>) -> Result<(usize, usize), StoreError> {
        let synced = resend_on.unwrap_or_else(|| self.synced.load(Ordering::Relaxed));
        let Some(mqtt) = self
            .mqtt
            .as_ref()
            .filter(|m| m.connected() && m.epoch() == synced)
        else {
            // No broker to send to: count what waits, without reading the documents (a
            // city's worth every retry while the broker is away).
            let mut waiting = 0;
            for column in ["overrides", "plan"] {
                let n: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM gateways WHERE {}",
                    pending_filter(column, resend_on.is_some())
                ))
                .fetch_one(self.store.pool())
                .await?;
                waiting += usize::try_from(n).unwrap_or(0);
            }
            return Ok((0, waiting));
        };
        let (mut sent, mut waiting) = (0, 0);
        // Sent concurrently: the broker acknowledges in order, and a city of gateways is
        // not published one round trip at a time.
        let mut inflight = tokio::task::JoinSet::new();
        // Overrides first: they are small and urgent (a blackout), plans large and rarely
        // pressing. Only the documents to send are read, not every row's plan, a page at a
        // time: the first page is on its way while the next is read (a city's documents
        // after a restart, read while the intake stores the backlog, took 10 s in one query).
        for (leaf, column) in [(Topic::Overrides, "overrides"), (Topic::Plan, "plan")] {
            let mut after = String::new();
            loop {
                let rows = sqlx::query(&format!(
                    "SELECT gateway, {column}_version AS version, {column}_signed AS signed FROM gateways \
                     WHERE {} AND gateway > $1 ORDER BY gateway LIMIT {PAGE}",
                    pending_filter(column, resend_on.is_some())
                ))
                .bind(&after)
                .fetch_all(self.store.pool())
                .await?;
                let last_page = rows.len() < PAGE;
                for r in rows {
                    let gateway: String = r.try_get("gateway")?;
                    after.clone_from(&gateway);
                    let Ok(gateway) = gateway.parse::<GatewayId>() else {
                        continue;
                    };
                    let version: i64 = r.try_get("version")?;
                    let signed: String = r.try_get("signed")?;
                    let topic = wire::topic(&self.topic_prefix, &gateway, leaf);
                    let mqtt = mqtt.clone();
                    inflight.spawn(async move {
                        let r = mqtt
                            .publish(topic, signed.into_bytes(), true, QoS::AtLeastOnce)
                            .await;
                        (gateway, leaf, version, r)
                    });
                }
                if last_page {
                    break;
                }
            }
        }
        let mut acknowledged = Vec::new();
        while let Some(done) = inflight.join_next().await {
            let Ok((gateway, leaf, v, result)) = done else {
                continue;
            };
            match result {
                Ok(()) => {
                    self.metrics.published(leaf);
                    acknowledged.push((gateway, leaf, v));
                    sent += 1;
                }
                Err(e) => {
                    tracing::warn!(gateway = %gateway, "{leaf} version {v} not published: {e}");
                    waiting += 1;
                }
            }
        }
        // Marked in one transaction once the broker has them all (a replica killed before
        // leaves them for the next round, which sends them again: harmless).
        // Rows are locked in the gateways' order in every transaction that writes several
        // (here, the intake's batches, new documents): none waits on another in a circle.
        acknowledged.sort_by(|a, b| {
            (a.0.as_str(), a.1 == Topic::Overrides).cmp(&(b.0.as_str(), b.1 == Topic::Overrides))
        });
        let mut tx = self.store.begin().await?;
        for (gateway, leaf, v) in acknowledged {
            let column = if leaf == Topic::Plan {
                "plan"
            } else {
                "overrides"
            };
            sqlx::query(&format!(
                "UPDATE gateways SET {column}_published = $1 WHERE gateway = $2 AND {column}_version = $1"
            ))
            .bind(v)
            .bind(gateway.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((sent, waiting))
    }

    /// Runs rounds until shutdown: at once, when kicked, and every `every` when the change
    /// generation moved or something waits for the broker.
    pub async fn run(
        self: Arc<Self>,
        every: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        // The documents in force go out again as soon as the broker is there, so the first
        // round republishes before it compiles (a city's plans take seconds to compile, and
        // the gateways must not wait for that after a restart).
        if let Some(mqtt) = &self.mqtt {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = mqtt.first_connection(FIRST_CONNECTION_WAIT) => {}
            }
        }
        loop {
            let retry = match self.round().await {
                Ok(r) => r.skipped || r.unpublished > 0,
                Err(e) if e.is_contention() => {
                    tracing::warn!("publishing round met a concurrent change ({e}); trying again");
                    true
                }
                Err(e) => {
                    tracing::error!("publishing round failed: {e}");
                    true
                }
            };
            let wait = if retry {
                every.min(Duration::from_secs(2))
            } else {
                every
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.kick.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Which build of the server this is, to tell whether stored plans are its own work: the
/// version with the executable's size and modification time (a rebuilt or upgraded server
/// compiles again; when in doubt, it compiles).
fn build_id() -> String {
    let exe = std::env::current_exe()
        .and_then(std::fs::metadata)
        .ok()
        .and_then(|m| {
            let at = m
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?;
            Some(format!("{} {}", m.len(), at.as_nanos()))
        });
    match exe {
        Some(exe) => format!("{} {exe}", env!("CARGO_PKG_VERSION")),
        // Unknown: a build id that matches nothing stored, so plans are compiled.
        None => format!("unknown {}", std::process::id()),
    }
}

/// The generation the stored plans were compiled at, when `build` compiled them.
async fn compiled_at(store: &Store, build: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query("SELECT generation FROM plans_compiled WHERE id = 1 AND build = $1")
            .bind(build)
            .fetch_optional(store.pool())
            .await?
            .map(|r| r.try_get("generation"))
            .transpose()?,
    )
}

async fn set_compiled_at(store: &Store, generation: i64, build: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO plans_compiled (id, generation, build) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO UPDATE SET generation = excluded.generation, build = excluded.build",
    )
    .bind(generation)
    .bind(build)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The rows whose `column` document (`plan` or `overrides`) is to be sent: every current
/// one when `all` (a new connection), else those not yet published.
fn pending_filter(column: &str, all: bool) -> String {
    let mut filter =
        format!("removed = 0 AND {column}_version IS NOT NULL AND {column}_signed IS NOT NULL");
    if !all {
        filter.push_str(&format!(" AND {column}_published < {column}_version"));
    }
    filter
}

/// Documents read per query when publishing.
const PAGE: usize = 1000;

/// How long the first round waits for the broker at start (then it compiles without).
const FIRST_CONNECTION_WAIT: Duration = Duration::from_secs(10);

pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
