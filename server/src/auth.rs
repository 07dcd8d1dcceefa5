//! Users, roles and credentials: argon2id password hashes, session cookies for the dashboard
//! (HttpOnly, SameSite=Strict, with a CSRF token every cookie-borne change must echo),
//! bearer tokens for the API, and a login rate limit. Session and token secrets are stored
//! only as their SHA-256.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use nightscape_core::SiteId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::store::{self, Audit, Store, StoreError};

/// What a user may do. Ordered: each role may do everything the ones before it may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who is asking, and how they proved it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// The sites an operator may change; empty means every site (admins, and operators
    /// given no list).
    pub sites: Vec<SiteId>,
    #[serde(skip)]
    pub via: Via,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Via {
    /// A session cookie; changes must carry this CSRF token.
    Cookie { csrf: String },
    #[default]
    Bearer,
}

impl Principal {
    /// Whether this user may change `site` (operators only their own sites).
    pub fn may_operate(&self, site: &SiteId) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Operator => self.sites.is_empty() || self.sites.contains(site),
            Role::Viewer => false,
        }
    }
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UserView {
    pub name: String,
    pub role: Role,
    pub sites: Vec<SiteId>,
    pub created_at_ms: i64,
}

pub fn hash_password(password: &str) -> Result<String, StoreError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| StoreError::Conflict(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| StoreError::Conflict(format!("password salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Conflict(format!("password hash: {e}")))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A random secret, hex; 32 bytes.
pub fn secret() -> String {
    let mut bytes = [0u8; 32];
    // getrandom only fails where the OS has no randomness at all; a zero secret would then
    // be refused by nothing, so fail loudly instead.
    if let Err(e) = getrandom::fill(&mut bytes) {
        tracing::error!("no randomness from the operating system: {e}");
        std::process::abort();
    }
    nightscape_core::plan::hex(&bytes)
}

fn digest(secret: &str) -> String {
    nightscape_core::plan::hex(&Sha256::digest(secret.as_bytes()))
}

/// A password good enough to print once: 20 characters from an unambiguous alphabet.
pub fn generated_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    if let Err(e) = getrandom::fill(&mut bytes) {
        tracing::error!("no randomness from the operating system: {e}");
        std::process::abort();
    }
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

fn user_from_row(r: &sqlx::any::AnyRow) -> Result<UserView, StoreError> {
    let role: String = r.try_get("role")?;
    let sites: String = r.try_get("sites")?;
    Ok(UserView {
        name: r.try_get("name")?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        sites: sites
            .split(',')
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect(),
        created_at_ms: r.try_get("created_at_ms")?,
    })
}

impl UserView {
    fn principal(self, via: Via) -> Principal {
        Principal {
            name: self.name,
            role: self.role,
            sites: self.sites,
            via,
        }
    }
}

pub async fn user_count(store: &Store) -> Result<i64, StoreError> {
    Ok(sqlx::query("SELECT COUNT(*) FROM users")
        .fetch_one(store.pool())
        .await?
        .try_get(0)?)
}

pub async fn users(store: &Store) -> Result<Vec<UserView>, StoreError> {
    sqlx::query("SELECT name, role, sites, created_at_ms FROM users ORDER BY name")
        .fetch_all(store.pool())
        .await?
        .iter()
        .map(user_from_row)
        .collect()
}

/// Creates a user, or replaces its password, role and sites.
pub async fn put_user(
    store: &Store,
    name: &str,
    password: Option<&str>,
    role: Role,
    sites: &[SiteId],
    actor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let before = users(store).await?.into_iter().find(|u| u.name == name);
    let sites_text = sites
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut tokens_revoked = 0;
    let mut tx = store.begin().await?;
    match (&before, password) {
        (None, None) => {
            return Err(StoreError::Conflict(format!(
                "user `{name}` does not exist yet; give a password to create it"
            )));
        }
        (None, Some(p)) => {
            sqlx::query(
                "INSERT INTO users (name, password_hash, role, sites, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(name)
            .bind(hash_password(p)?)
            .bind(role.as_str())
            .bind(&sites_text)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        (Some(b), p) => {
            sqlx::query("UPDATE users SET role = $1, sites = $2 WHERE name = $3")
                .bind(role.as_str())
                .bind(&sites_text)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            if let Some(p) = p {
                sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
                    .bind(hash_password(p)?)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                // A new password ends every session of the user.
                sqlx::query("DELETE FROM sessions WHERE username = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            // A new password is given because the old one may be known, and a token made
            // with it is as known; a token made for one role is not meant for another.
            if p.is_some() || b.role != role {
                tokens_revoked = sqlx::query("DELETE FROM tokens WHERE username = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
        }
    }
    let after = serde_json::json!({"name": name, "role": role, "sites": sites, "password_changed": password.is_some(), "tokens_revoked": tokens_revoked});
    store::audit(
        &mut tx,
        &Audit {
            actor,
            action: "user.put",
            target: format!("user:{name}"),
            before: before
                .map(|b| serde_json::json!({"name": b.name, "role": b.role, "sites": b.sites})),
            after: Some(after),
        },
        now_ms,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes a user; its sessions and tokens go with it (`ON DELETE CASCADE`, on both
/// stores: sqlx switches SQLite's foreign keys on).
pub async fn delete_user(
    store: &Store,
    name: &str,
    actor: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let done = sqlx::query("DELETE FROM users WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    if done {
        store::audit(
            &mut tx,
            &Audit {
                actor,
                action: "user.delete",
                target: format!("user:{name}"),
                before: Some(serde_json::json!({"name": name})),
                after: None,
            },
            now_ms,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(done)
}

/// Checks a password; on success a new session: (secret for the cookie, CSRF token).
pub async fn login(
    store: &Store,
    name: &str,
    password: &str,
    now_ms: i64,
    lifetime_ms: i64,
) -> Result<Option<(Principal, String)>, StoreError> {
    let row = sqlx::query(
        "SELECT name, role, sites, created_at_ms, password_hash FROM users WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(store.pool())
    .await?;
    let Some(row) = row else {
        // Hash anyway, so an unknown name takes as long as a wrong password.
        let _ = verify_password(password, dummy_hash());
        return Ok(None);
    };
    let hash: String = row.try_get("password_hash")?;
    if !verify_password(password, &hash) {
        return Ok(None);
    }
    let user = user_from_row(&row)?;
    let session = secret();
    let csrf = secret();
    let mut tx = store.begin().await?;
    sqlx::query("DELETE FROM sessions WHERE expires_at_ms < $1")
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO sessions (hash, username, csrf, expires_at_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(digest(&session))
    .bind(&user.name)
    .bind(&csrf)
    .bind(now_ms + lifetime_ms)
    .execute(&mut *tx)
    .await?;
    store::audit(
        &mut tx,
        &Audit {
            actor: &user.name,
            action: "session.login",
            target: format!("user:{}", user.name),
            before: None,
            after: None,
        },
        now_ms,
    )
    .await?;
    tx.commit().await?;
    Ok(Some((user.principal(Via::Cookie { csrf }), session)))
}

/// An argon2id hash of a password nobody has, for timing-equal refusals.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&secret()).unwrap_or_default())
}

pub async fn logout(store: &Store, session: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE hash = $1")
        .bind(digest(session))
        .execute(store.pool())
        .await?;
    Ok(())
}

pub async fn from_session(
    store: &Store,
    session: &str,
    now_ms: i64,
) -> Result<Option<Principal>, StoreError> {
    let row = sqlx::query(
        "SELECT u.name, u.role, u.sites, u.created_at_ms, s.csrf FROM sessions s \
         JOIN users u ON u.name = s.username WHERE s.hash = $1 AND s.expires_at_ms > $2",
    )
    .bind(digest(session))
    .bind(now_ms)
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| {
        let csrf: String = r.try_get("csrf")?;
        Ok(user_from_row(&r)?.principal(Via::Cookie { csrf }))
    })
    .transpose()
}

/// The user a bearer token stands for, if it is known and not expired; marks it used (at
/// most once a minute, so a busy client does not write on every request).
pub async fn from_token(
    store: &Store,
    token: &str,
    now_ms: i64,
) -> Result<Option<Principal>, StoreError> {
    let hash = digest(token);
    let row = sqlx::query(
        "SELECT u.name, u.role, u.sites, u.created_at_ms, t.last_used_at_ms FROM tokens t \
         JOIN users u ON u.name = t.username WHERE t.hash = $1 AND t.expires_at_ms > $2",
    )
    .bind(&hash)
    .bind(now_ms)
    .fetch_optional(store.pool())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let last_used: Option<i64> = row.try_get("last_used_at_ms")?;
    if last_used.is_none_or(|t| now_ms - t >= LAST_USED_EVERY_MS) {
        // Through the write gate like every other write; a note that could not be written
        // is logged, and the request it came with still goes on.
        let marked = async {
            let mut tx = store.begin().await?;
            sqlx::query("UPDATE tokens SET last_used_at_ms = $1 WHERE hash = $2")
                .bind(now_ms)
                .bind(&hash)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<(), StoreError>(())
        };
        if let Err(e) = marked.await {
            tracing::warn!(error = %e, "marking a token used");
        }
    }
    Ok(Some(user_from_row(&row)?.principal(Via::Bearer)))
}

/// How stale a token's `last_used_at_ms` may be.
pub const LAST_USED_EVERY_MS: i64 = 60_000;

/// A token as it is listed: never its secret. Its `id` is the first 16 hex digits of the
/// secret's stored SHA-256: enough to name it, of no use to prove it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TokenView {
    pub id: String,
    pub label: String,
    pub created_at_ms: i64,
    /// To the minute; none when it was never used.
    pub last_used_at_ms: Option<i64>,
    pub expires_at_ms: i64,
}

/// The id a token is listed and revoked by.
pub fn token_id(token: &str) -> String {
    digest(token)[..TOKEN_ID_LEN].to_owned()
}

const TOKEN_ID_LEN: usize = 16;

/// A user's tokens, newest first, expired ones included until they are revoked.
pub async fn tokens(store: &Store, user: &str) -> Result<Vec<TokenView>, StoreError> {
    sqlx::query(
        "SELECT hash, label, created_at_ms, last_used_at_ms, expires_at_ms FROM tokens \
         WHERE username = $1 ORDER BY created_at_ms DESC, hash",
    )
    .bind(user)
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|r| {
        let hash: String = r.try_get("hash")?;
        Ok(TokenView {
            id: hash.chars().take(TOKEN_ID_LEN).collect(),
            label: r.try_get("label")?,
            created_at_ms: r.try_get("created_at_ms")?,
            last_used_at_ms: r.try_get("last_used_at_ms")?,
            expires_at_ms: r.try_get("expires_at_ms")?,
        })
    })
    .collect()
}

/// Revokes `user`'s token `id`, audited; false when the user has no such token.
pub async fn revoke_token(
    store: &Store,
    user: &str,
    id: &str,
    actor: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    // An id is hex of a fixed length; anything else names no token (and must not reach a
    // prefix match).
    if id.len() != TOKEN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(false);
    }
    let id = id.to_ascii_lowercase();
    let mut tx = store.begin().await?;
    let label: Option<String> = sqlx::query(
        "DELETE FROM tokens WHERE username = $1 AND substr(hash, 1, 16) = $2 RETURNING label",
    )
    .bind(user)
    .bind(&id)
    .fetch_optional(&mut *tx)
    .await?
    .map(|r| r.try_get("label"))
    .transpose()?;
    let Some(label) = label else {
        return Ok(false);
    };
    store::audit(
        &mut tx,
        &Audit {
            actor,
            action: "token.revoke",
            target: format!("user:{user}"),
            before: Some(serde_json::json!({"id": id, "label": label})),
            after: None,
        },
        now_ms,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// A new API token for `user`; the secret is returned once and stored only as its hash.
pub async fn issue_token(
    store: &Store,
    user: &str,
    label: &str,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<String, StoreError> {
    let token = format!("nst_{}", secret());
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO tokens (hash, username, label, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(digest(&token))
    .bind(user)
    .bind(label)
    .bind(now_ms)
    .bind(expires_at_ms)
    .execute(&mut *tx)
    .await?;
    store::audit(
        &mut tx,
        &Audit {
            actor: user,
            action: "token.issue",
            target: format!("user:{user}"),
            before: None,
            after: Some(serde_json::json!({"label": label, "expires_at_ms": expires_at_ms})),
        },
        now_ms,
    )
    .await?;
    tx.commit().await?;
    Ok(token)
}

/// Failed logins are counted twice, per client address and per name, kept in the store so
/// every replica counts the same.
///
/// - An address with [`MAX_FAILURES`] failures in [`WINDOW_MS`] is refused until its window
///   has passed, whatever name it tries: guessing from one place stops there, and only
///   there.
/// - A name with [`MAX_FAILURES`] failures in the window is slowed, not locked: an address
///   that has itself failed in the window waits [`NAME_PAUSE_MS`] after the name's latest
///   failure. An address that has not failed goes through, so guesses from elsewhere can
///   never keep the name's owner out; guesses spread over many addresses still meet the
///   pause from each address's second try on.
pub const MAX_FAILURES: i64 = 5;
pub const WINDOW_MS: i64 = 5 * 60 * 1000;
pub const NAME_PAUSE_MS: i64 = 30 * 1000;

/// The bucket of a client address (`unknown` when the server could not tell).
pub fn address_key(client: &str) -> String {
    format!("addr:{client}")
}

/// The bucket of a user name.
pub fn name_key(name: &str) -> String {
    format!("user:{name}")
}

/// A bucket's failures in the window ending at `now_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    pub count: i64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
}

pub async fn failures(store: &Store, key: &str, now_ms: i64) -> Result<Failures, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(at_ms) AS first, MAX(at_ms) AS last FROM login_failures WHERE key = $1 AND at_ms > $2",
    )
    .bind(key)
    .bind(now_ms - WINDOW_MS)
    .fetch_one(store.pool())
    .await?;
    Ok(Failures {
        count: row.try_get("n")?,
        first_ms: row.try_get("first")?,
        last_ms: row.try_get("last")?,
    })
}

/// Milliseconds a login from an address with `address`'s failures, for a name with
/// `name`'s, must wait, if it must (see [`MAX_FAILURES`]).
pub fn login_wait(address: Failures, name: Failures, now_ms: i64) -> Option<i64> {
    if address.count >= MAX_FAILURES {
        let first = address.first_ms.unwrap_or(now_ms);
        return Some((WINDOW_MS - (now_ms - first)).max(1));
    }
    if name.count >= MAX_FAILURES && address.count > 0 {
        let last = name.last_ms.unwrap_or(now_ms);
        let wait = NAME_PAUSE_MS - (now_ms - last);
        return (wait > 0).then_some(wait);
    }
    None
}

/// Records a failed login in each of `keys`.
pub async fn failed(store: &Store, keys: &[String], now_ms: i64) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query("DELETE FROM login_failures WHERE at_ms <= $1")
        .bind(now_ms - WINDOW_MS)
        .execute(&mut *tx)
        .await?;
    for key in keys {
        sqlx::query("INSERT INTO login_failures (key, at_ms) VALUES ($1, $2)")
            .bind(key)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Forgets a bucket's failures (a name's, once its password was given).
pub async fn succeeded(store: &Store, key: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM login_failures WHERE key = $1")
        .bind(key)
        .execute(store.pool())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_that_failed_is_locked_and_a_name_only_slowed_for_addresses_that_failed() {
        let now = 1_000_000_000;
        let f = |count, first: i64, last: i64| Failures {
            count,
            first_ms: Some(now - first),
            last_ms: Some(now - last),
        };
        let clean = Failures::default();
        // Five failures from an address: locked until its window has passed.
        assert_eq!(
            login_wait(f(5, 60_000, 1_000), clean, now),
            Some(WINDOW_MS - 60_000)
        );
        assert_eq!(login_wait(f(4, 60_000, 1_000), clean, now), None);
        // Five failures for a name: an address that has not failed goes through ...
        assert_eq!(login_wait(clean, f(5, 60_000, 1_000), now), None);
        // ... one that has waits a short pause after the name's latest failure, no longer.
        assert_eq!(
            login_wait(f(1, 10_000, 10_000), f(5, 60_000, 1_000), now),
            Some(NAME_PAUSE_MS - 1_000)
        );
        assert_eq!(
            login_wait(f(1, 40_000, 40_000), f(5, 60_000, NAME_PAUSE_MS), now),
            None
        );
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("장미꽃 2026").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("장미꽃 2026", &h));
        assert!(!verify_password("장미꽃 2027", &h));
        assert!(!verify_password("x", dummy_hash()));
        assert!(dummy_hash().starts_with("$argon2id$"));
    }
}
