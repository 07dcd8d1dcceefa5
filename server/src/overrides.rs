//! Overrides and blackouts as staff set them: for one site, a group of sites or the whole
//! city, from a time to an absolute expiry (a blackout may be latched until released). The
//! publisher turns those in force into each gateway's signed overrides document.

use nightscape_core::SceneId;
use nightscape_core::SiteId;
use nightscape_core::model::Level;
use nightscape_core::plan::{OverrideEntry, OverrideEntryKind};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::store::{self, Audit, Store, StoreError};

/// Which sites an override covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "sites")]
pub enum Scope {
    City,
    Sites(Vec<SiteId>),
}

impl Scope {
    pub fn covers(&self, site: &SiteId) -> bool {
        match self {
            Scope::City => true,
            Scope::Sites(list) => list.contains(site),
        }
    }

    fn to_text(&self) -> String {
        match self {
            Scope::City => "city".into(),
            Scope::Sites(list) => format!(
                "sites:{}",
                list.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    fn parse(text: &str) -> Scope {
        match text.strip_prefix("sites:") {
            Some(list) => Scope::Sites(list.split(',').filter_map(|s| s.parse().ok()).collect()),
            None => Scope::City,
        }
    }
}

/// An override as stored.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Override {
    pub id: String,
    pub scope: Scope,
    pub kind: Kind,
    pub scene: Option<SceneId>,
    pub brightness_pct: Option<f64>,
    pub from_ms: i64,
    pub until_ms: Option<i64>,
    pub created_by: String,
    pub reason: String,
    pub created_at_ms: i64,
    pub released_at_ms: Option<i64>,
    pub released_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Scene,
    Blackout,
    /// An admin's audited, time-bounded exception to the curfew limit.
    CurfewException,
    /// Whatever plays, at `brightness_pct` of its brightness (energy-saving nights).
    Dim,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Scene => "scene",
            Kind::Blackout => "blackout",
            Kind::CurfewException => "curfew-exception",
            Kind::Dim => "dim",
        }
    }

    fn parse(text: &str) -> Kind {
        match text {
            "scene" => Kind::Scene,
            "curfew-exception" => Kind::CurfewException,
            "dim" => Kind::Dim,
            _ => Kind::Blackout,
        }
    }
}

impl Override {
    /// An override made now by `by`, from now, open-ended, with no scene: set the rest
    /// with struct update syntax.
    pub fn new(
        id: String,
        scope: Scope,
        kind: Kind,
        by: &str,
        reason: String,
        now_ms: i64,
    ) -> Override {
        Override {
            id,
            scope,
            kind,
            scene: None,
            brightness_pct: None,
            from_ms: now_ms,
            until_ms: None,
            created_by: by.to_owned(),
            reason,
            created_at_ms: now_ms,
            released_at_ms: None,
            released_by: None,
        }
    }

    pub fn entry(&self) -> OverrideEntry {
        OverrideEntry {
            id: self.id.clone(),
            kind: match self.kind {
                Kind::Scene => OverrideEntryKind::Scene,
                Kind::Blackout => OverrideEntryKind::Blackout,
                Kind::CurfewException => OverrideEntryKind::CurfewException,
                Kind::Dim => OverrideEntryKind::Dim,
            },
            scene: self.scene.clone(),
            brightness_pct: self.brightness_pct.and_then(|b| Level::from_pct(b).ok()),
            from_ms: self.from_ms,
            until_ms: self.until_ms,
            by: self.created_by.clone(),
            reason: self.reason.clone(),
        }
    }

    pub fn in_force(&self, now_ms: i64) -> bool {
        self.released_at_ms.is_none() && self.until_ms.is_none_or(|u| u > now_ms)
    }
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<Override, StoreError> {
    let scope: String = r.try_get("scope")?;
    let kind: String = r.try_get("kind")?;
    let scene: Option<String> = r.try_get("scene")?;
    Ok(Override {
        id: r.try_get("id")?,
        scope: Scope::parse(&scope),
        kind: Kind::parse(&kind),
        scene: scene.and_then(|s| s.parse().ok()),
        brightness_pct: r.try_get("brightness_pct")?,
        from_ms: r.try_get("from_ms")?,
        until_ms: r.try_get("until_ms")?,
        created_by: r.try_get("created_by")?,
        reason: r.try_get("reason")?,
        created_at_ms: r.try_get("created_at_ms")?,
        released_at_ms: r.try_get("released_at_ms")?,
        released_by: r.try_get("released_by")?,
    })
}

const COLUMNS: &str = "id, scope, kind, scene, brightness_pct, from_ms, until_ms, created_by, reason, \
                       created_at_ms, released_at_ms, released_by";

/// Overrides not released and not expired at `now_ms` (also those that start later).
pub async fn active(store: &Store, now_ms: i64) -> Result<Vec<Override>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM overrides WHERE released_at_ms IS NULL AND \
         (until_ms IS NULL OR until_ms > $1) ORDER BY id"
    ))
    .bind(now_ms)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// The most recent overrides, in force or not.
pub async fn recent(store: &Store, limit: i64) -> Result<Vec<Override>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM overrides ORDER BY created_at_ms DESC, id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn get(store: &Store, id: &str) -> Result<Option<Override>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM overrides WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn insert(store: &Store, o: &Override) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query(&format!(
        "INSERT INTO overrides ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(&o.id)
    .bind(o.scope.to_text())
    .bind(o.kind.as_str())
    .bind(o.scene.as_ref().map(|s| s.to_string()))
    .bind(o.brightness_pct)
    .bind(o.from_ms)
    .bind(o.until_ms)
    .bind(&o.created_by)
    .bind(&o.reason)
    .bind(o.created_at_ms)
    .bind(o.released_at_ms)
    .bind(o.released_by.as_deref())
    .execute(&mut *tx)
    .await?;
    store::audit(
        &mut tx,
        &Audit {
            actor: &o.created_by,
            action: "override.create",
            target: format!("override:{}", o.id),
            before: None,
            after: serde_json::to_value(o).ok(),
        },
        o.created_at_ms,
    )
    .await?;
    store::notify(&mut tx, store.backend()).await?;
    tx.commit().await?;
    Ok(())
}

/// Ends an override now; false when it was not in force.
pub async fn release(store: &Store, id: &str, by: &str, now_ms: i64) -> Result<bool, StoreError> {
    let Some(before) = get(store, id).await? else {
        return Ok(false);
    };
    let mut tx = store.begin().await?;
    let done = sqlx::query(
        "UPDATE overrides SET released_at_ms = $1, released_by = $2 WHERE id = $3 AND released_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(by)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if done {
        store::audit(
            &mut tx,
            &Audit {
                actor: by,
                action: "override.release",
                target: format!("override:{id}"),
                before: serde_json::to_value(&before).ok(),
                after: None,
            },
            now_ms,
        )
        .await?;
        store::notify(&mut tx, store.backend()).await?;
    }
    tx.commit().await?;
    Ok(done)
}
