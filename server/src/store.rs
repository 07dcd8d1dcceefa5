//! The store: one set of queries for SQLite (a file, WAL, the default) and PostgreSQL (by
//! URL, for production and replicas), through sqlx's `Any` driver. Migrations are embedded;
//! the two dialects differ only in their migration files and in how a version is drawn.
//!
//! Every mutation that a user makes runs in one transaction together with its audit row, so
//! an answered change and its audit entry are both on disk or neither is.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use std::sync::{Arc, Mutex};

use nightscape_core::show::{self, Checked, SourceFile};
use serde::Serialize;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Row, Transaction};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL `{0}`: write sqlite://PATH or postgres://USER@HOST/DB")]
    Url(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Another transaction got in the way (a deadlock or serialization failure): doing it
    /// again is the remedy.
    pub fn is_contention(&self) -> bool {
        matches!(self, StoreError::Db(sqlx::Error::Database(e))
            if matches!(e.code().as_deref(), Some("40P01" | "40001")))
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite takes one writer at a time: this process's writers queue here (see [`Tx`]).
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// The library as last read and checked, with the change generation it was read at.
    checked: Arc<Mutex<Cached>>,
}

/// A write transaction: the connection it runs on, and `commit` (dropped, it rolls back).
///
/// On SQLite it also holds the store's write gate until it ends. SQLite lets one connection
/// write at a time; without the gate, a second writer of this process (the intake storing
/// acks while an operator's override is written) meets the first in SQLite's busy handler,
/// which polls with sleeps of 1, 2, 5, 10 … 100 ms, so a commit just after a poll costs
/// the waiting writer the rest of that sleep (seen: 18 ms before an override was stored).
/// With the gate it is woken the moment the writer before it ends.
pub struct Tx {
    tx: Transaction<'static, Any>,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Tx {
    pub async fn commit(self) -> std::result::Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &sqlx::AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}

/// The checked library and the change generation it was read at.
type Cached = Option<(i64, Arc<Library>)>;

/// The show library's files and what the core made of them.
#[derive(Debug)]
pub struct Library {
    pub files: Vec<SourceFile>,
    pub checked: Checked,
}

/// The embedded migrations of one dialect.
#[derive(Debug)]
struct Embedded(Backend);

const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "commands",
        include_str!("../migrations/sqlite/0002_commands.sql"),
    ),
    (
        3,
        "login failures",
        include_str!("../migrations/sqlite/0003_login_failures.sql"),
    ),
    (
        4,
        "energy cursor",
        include_str!("../migrations/sqlite/0004_energy_cursor.sql"),
    ),
    (
        5,
        "idempotency keys",
        include_str!("../migrations/sqlite/0005_idempotency.sql"),
    ),
    (
        6,
        "plans compiled",
        include_str!("../migrations/sqlite/0006_plans_compiled.sql"),
    ),
    (
        7,
        "reporting",
        include_str!("../migrations/sqlite/0007_reporting.sql"),
    ),
    (
        8,
        "token last used",
        include_str!("../migrations/sqlite/0008_token_last_used.sql"),
    ),
];
const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "commands",
        include_str!("../migrations/postgres/0002_commands.sql"),
    ),
    (
        3,
        "login failures",
        include_str!("../migrations/postgres/0003_login_failures.sql"),
    ),
    (
        4,
        "energy cursor",
        include_str!("../migrations/postgres/0004_energy_cursor.sql"),
    ),
    (
        5,
        "idempotency keys",
        include_str!("../migrations/postgres/0005_idempotency.sql"),
    ),
    (
        6,
        "plans compiled",
        include_str!("../migrations/postgres/0006_plans_compiled.sql"),
    ),
    (
        7,
        "reporting",
        include_str!("../migrations/postgres/0007_reporting.sql"),
    ),
    (
        8,
        "token last used",
        include_str!("../migrations/postgres/0008_token_last_used.sql"),
    ),
];

type BoxDynError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        let list = match self.0 {
            Backend::Sqlite => SQLITE,
            Backend::Postgres => POSTGRES,
        };
        let migrations = list
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// One row of the audit log.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// What a mutation writes into the audit log beside its change.
#[derive(Debug, Clone)]
pub struct Audit<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Url(url.to_owned()));
        };
        let options: AnyConnectOptions =
            url.parse().map_err(|_| StoreError::Url(url.to_owned()))?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .acquire_timeout(std::time::Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets the API read while the publisher writes; FULL makes an
                        // answered change survive a power cut, not only a killed process.
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = FULL",
                            "PRAGMA busy_timeout = 10000",
                            "PRAGMA foreign_keys = ON",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let store = Store {
            pool,
            backend,
            write_gate: (backend == Backend::Sqlite).then(Arc::default),
            checked: Arc::default(),
        };
        Migrator::new(Embedded(backend))
            .await?
            .run(&store.pool)
            .await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A write transaction (on SQLite, after the writers before it; the gate is taken
    /// before a connection, so writers waiting hold none).
    pub async fn begin(&self) -> Result<Tx> {
        let gate = match &self.write_gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        };
        Ok(Tx {
            tx: self.pool.begin().await?,
            _gate: gate,
        })
    }

    /// `n` new document versions, increasing across every replica, taken on `db` (inside
    /// the caller's transaction): one round trip on PostgreSQL.
    pub async fn next_versions(
        &self,
        db: &mut sqlx::AnyConnection,
        n: usize,
        now_ms: i64,
    ) -> Result<Vec<u64>> {
        let count = i64::try_from(n).unwrap_or(i64::MAX);
        let ids: Vec<i64> = match self.backend {
            Backend::Postgres => {
                sqlx::query_scalar(
                    "SELECT nextval('document_version') FROM generate_series(1, $1::bigint)",
                )
                .bind(count)
                .fetch_all(&mut *db)
                .await?
            }
            Backend::Sqlite => {
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(
                        sqlx::query_scalar(
                            "INSERT INTO document_version (at_ms) VALUES ($1) RETURNING id",
                        )
                        .bind(now_ms)
                        .fetch_one(&mut *db)
                        .await?,
                    );
                }
                ids
            }
        };
        let mut versions: Vec<u64> = ids
            .into_iter()
            .map(|v| u64::try_from(v).unwrap_or(0))
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// A new document version, increasing across every replica.
    pub async fn next_version(&self, now_ms: i64) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        let versions = self.next_versions(&mut conn, 1, now_ms).await?;
        Ok(versions.first().copied().unwrap_or(0))
    }

    /// Raises the version sequence to at least `floor` (the time in milliseconds at a
    /// start), so that versions stay above those `nightscape plan compile` gives by default
    /// (the time in milliseconds): a gateway that played such a plan takes the server's.
    pub async fn raise_versions(&self, floor: i64) -> Result<()> {
        match self.backend {
            Backend::Postgres => {
                sqlx::query(
                    "SELECT setval('document_version', $1) WHERE (SELECT last_value FROM document_version) < $1",
                )
                .bind(floor)
                .fetch_all(&self.pool)
                .await?;
            }
            Backend::Sqlite => {
                sqlx::query(
                    "INSERT INTO document_version (id, at_ms) SELECT $1, $1 \
                     WHERE (SELECT COALESCE(MAX(id), 0) FROM document_version) < $1",
                )
                .bind(floor)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    // ---- the show library ----

    /// The library, checked; read and checked again only when the change generation moved
    /// (checking the whole library takes tens of milliseconds).
    pub async fn checked_library(&self) -> Result<Arc<Library>> {
        let generation = generation(self).await?;
        if let Some((g, lib)) = &*self.checked.lock().unwrap_or_else(|e| e.into_inner())
            && *g == generation
        {
            return Ok(lib.clone());
        }
        let files = self.library().await?;
        let checked = show::check(&files);
        let lib = Arc::new(Library { files, checked });
        *self.checked.lock().unwrap_or_else(|e| e.into_inner()) = Some((generation, lib.clone()));
        Ok(lib)
    }

    pub async fn library(&self) -> Result<Vec<SourceFile>> {
        let rows = sqlx::query("SELECT path, text FROM library_files ORDER BY path")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SourceFile {
                    path: r.try_get("path")?,
                    text: r.try_get("text")?,
                })
            })
            .collect()
    }

    /// Library files with who changed them last.
    pub async fn library_index(&self) -> Result<Vec<(String, i64, String, usize)>> {
        let rows = sqlx::query(
            "SELECT path, updated_at_ms, updated_by, text FROM library_files ORDER BY path",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("text")?;
                Ok((
                    r.try_get("path")?,
                    r.try_get("updated_at_ms")?,
                    r.try_get("updated_by")?,
                    text.len(),
                ))
            })
            .collect()
    }

    /// Writes (`Some`) or deletes (`None`) files and the audit rows, in one transaction.
    pub async fn write_library(
        &self,
        changes: &[(String, Option<String>)],
        actor: &str,
        now_ms: i64,
        audits: &[Audit<'_>],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        for (path, text) in changes {
            match text {
                Some(text) => {
                    sqlx::query(
                        "INSERT INTO library_files (path, text, updated_at_ms, updated_by) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (path) DO UPDATE SET \
                         text = excluded.text, updated_at_ms = excluded.updated_at_ms, \
                         updated_by = excluded.updated_by",
                    )
                    .bind(path)
                    .bind(text)
                    .bind(now_ms)
                    .bind(actor)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM library_files WHERE path = $1")
                        .bind(path)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        for a in audits {
            audit(&mut tx, a, now_ms).await?;
        }
        bump(&mut tx, self.backend).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- audit ----

    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at_ms, actor, action, target, before_json, after_json FROM audit \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let json = |c: &str| -> Result<Option<serde_json::Value>> {
                    let t: Option<String> = r.try_get(c)?;
                    Ok(t.and_then(|t| serde_json::from_str(&t).ok()))
                };
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at_ms: r.try_get("at_ms")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    before: json("before_json")?,
                    after: json("after_json")?,
                })
            })
            .collect()
    }
}

tokio::task_local! {
    /// The `Idempotency-Key` of the request being answered (see `api::idempotent`): the
    /// audit rows its change writes carry it, in the change's own transaction.
    pub static IDEMPOTENCY_KEY: Option<String>;
}

/// Writes one audit row inside `tx`.
pub async fn audit(tx: &mut Tx, a: &Audit<'_>, now_ms: i64) -> Result<()> {
    let text = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
    let key = IDEMPOTENCY_KEY.try_with(Clone::clone).ok().flatten();
    sqlx::query(
        "INSERT INTO audit (at_ms, actor, action, target, before_json, after_json, idempotency_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(now_ms)
    .bind(a.actor)
    .bind(a.action)
    .bind(&a.target)
    .bind(text(&a.before))
    .bind(text(&a.after))
    .bind(key)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The channel replicas LISTEN on for changes.
pub const NOTIFY_CHANNEL: &str = "nightscape_changes";

pub async fn generation(store: &Store) -> Result<i64, StoreError> {
    Ok(sqlx::query("SELECT value FROM generation WHERE id = 1")
        .fetch_one(store.pool())
        .await?
        .try_get(0)?)
}

/// Inside a transaction that changes overrides: the other replicas are told at commit (the
/// library, and so the plans, did not change).
pub async fn notify(tx: &mut Tx, backend: Backend) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        sqlx::query(&format!("NOTIFY {NOTIFY_CHANNEL}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Inside a transaction that changes the library: the plans may differ now. PostgreSQL
/// tells the other replicas at commit.
pub async fn bump(tx: &mut Tx, backend: Backend) -> Result<(), StoreError> {
    sqlx::query("UPDATE generation SET value = value + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    if backend == Backend::Postgres {
        sqlx::query(&format!("NOTIFY {NOTIFY_CHANNEL}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded_in_both_dialects() {
        for (dir, list) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut files: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            assert_eq!(files.len(), list.len(), "{dir}: {files:?}");
            for (f, (version, _, sql)) in files.iter().zip(list) {
                assert!(
                    f.starts_with(&format!("{version:04}_")),
                    "{dir}: {f} is not version {version}"
                );
                assert_eq!(
                    std::fs::read_to_string(path.join(f)).unwrap(),
                    *sql,
                    "{dir}/{f}"
                );
            }
        }
        assert_eq!(SQLITE.len(), POSTGRES.len());
    }
}
