//! Plans: everything one gateway needs to play its site alone — the site, its scenes,
//! schedule, the profiles and calendars it uses and the zone table — as the show files
//! themselves, so the gateway rebuilds the model with the very checker the engineers used.
//! A plan is versioned, content-hashed and signed (Ed25519); so is the overrides document.
//!
//! The canonical form is compact JSON of fixed field order with files sorted by path; the
//! content hash covers the files alone, so editing another site leaves a plan byte-identical.

use std::fmt::Write as _;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{GatewayId, SceneId, SiteId};
use crate::model::Level;
use crate::show::{ShowLibrary, SourceFile};

pub const PLAN_SCHEMA: u32 = 1;
pub const OVERRIDES_SCHEMA: u32 = 1;
/// Plans must stay well under the MQTT packet limit the broker and clients are set to
/// (1 MiB in Nightscape); this is the budget the compiler reports against.
pub const PLAN_BUDGET_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub path: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub schema: u32,
    pub gateway: GatewayId,
    pub site: SiteId,
    /// Increases with every plan for this gateway.
    pub version: u64,
    pub issued_at_ms: i64,
    /// Gateways of one site switch to the plan together at this instant.
    pub effective_from_ms: i64,
    /// SHA-256 of the canonical files, hex.
    pub content_hash: String,
    pub files: Vec<PlanFile>,
}

/// A signed document: the document, and the hex Ed25519 signature of its canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed<T> {
    pub document: T,
    pub signature: String,
}

/// What every signed document says about itself.
pub trait Document: Serialize + DeserializeOwned {
    const SCHEMA: u32;
    const KIND: &'static str;
    fn gateway(&self) -> &GatewayId;
    fn version(&self) -> u64;
}

impl Document for Plan {
    const SCHEMA: u32 = PLAN_SCHEMA;
    const KIND: &'static str = "plan";
    fn gateway(&self) -> &GatewayId {
        &self.gateway
    }
    fn version(&self) -> u64 {
        self.version
    }
}

/// Why a gateway refuses a document. Each reason is distinct, so the ack says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed {kind}: {detail}")]
    Malformed { kind: &'static str, detail: String },
    #[error("{kind} schema {got} is not one this gateway reads (it reads {reads})")]
    UnknownSchema {
        kind: &'static str,
        got: u32,
        reads: u32,
    },
    #[error("the {0} is not signed")]
    Unsigned(&'static str),
    #[error(
        "the {0}'s signature does not verify with this gateway's trusted key (signed by another key, or altered)"
    )]
    BadSignature(&'static str),
    #[error("the {kind} is for gateway `{got}`, not this one (`{expected}`)")]
    WrongGateway {
        kind: &'static str,
        expected: GatewayId,
        got: GatewayId,
    },
    #[error("the {kind} is version {got}, not newer than version {current} already in force")]
    NotNewer {
        kind: &'static str,
        current: u64,
        got: u64,
    },
    #[error("the plan's content hash does not match its files")]
    HashMismatch,
    #[error("the plan's show files have errors: {0}")]
    Invalid(String),
}

/// Compiling a plan failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("site `{0}` is not in the library, or has errors (run `nightscape scene check`)")]
    UnknownSite(String),
    #[error("site `{site}` has no gateway `{gateway}` (it has {known})")]
    UnknownGateway {
        site: String,
        gateway: String,
        known: String,
    },
    #[error("site `{site}` has {count} gateways; say which with --gateway ({known})")]
    WhichGateway {
        site: String,
        count: usize,
        known: String,
    },
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

/// Compact JSON in field order: the bytes that are hashed and signed.
pub fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// SHA-256 of the canonical files, hex.
pub fn content_hash(files: &[PlanFile]) -> String {
    hex(&Sha256::digest(canonical(&files)))
}

/// The gateway a plan is for: `gateway`, or the site's only one.
pub fn pick_gateway(
    library: &ShowLibrary,
    site: &SiteId,
    gateway: Option<&str>,
) -> Result<GatewayId, CompileError> {
    let s = library
        .sites
        .get(site)
        .ok_or_else(|| CompileError::UnknownSite(site.to_string()))?;
    let known = s
        .gateways
        .iter()
        .map(|g| g.id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match gateway {
        Some(g) => s
            .gateways
            .iter()
            .find(|x| x.id.as_str() == g)
            .map(|x| x.id.clone())
            .ok_or(CompileError::UnknownGateway {
                site: site.to_string(),
                gateway: g.to_owned(),
                known,
            }),
        None if s.gateways.len() == 1 => Ok(s.gateways[0].id.clone()),
        None => Err(CompileError::WhichGateway {
            site: site.to_string(),
            count: s.gateways.len(),
            known,
        }),
    }
}

/// Everything `gateway` of `site` needs, from a checked library and its source files.
pub fn compile(
    sources: &[SourceFile],
    library: &ShowLibrary,
    site: &SiteId,
    gateway: &GatewayId,
    version: u64,
    issued_at_ms: i64,
    effective_from_ms: i64,
) -> Result<Plan, CompileError> {
    let s = library
        .sites
        .get(site)
        .ok_or_else(|| CompileError::UnknownSite(site.to_string()))?;
    if !s.gateways.iter().any(|g| &g.id == gateway) {
        let known = s
            .gateways
            .iter()
            .map(|g| g.id.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(CompileError::UnknownGateway {
            site: site.to_string(),
            gateway: gateway.to_string(),
            known,
        });
    }
    let profiles: Vec<String> = s
        .controllers
        .iter()
        .filter_map(|c| match &c.output {
            crate::model::Output::Modbus { profile, .. } => {
                Some(format!("profiles/{profile}.toml"))
            }
            _ => None,
        })
        .collect();
    let calendars: Vec<String> = library
        .schedules
        .get(site)
        .into_iter()
        .flat_map(|sch| sch.rules.iter().filter_map(|r| r.calendar.as_ref()))
        .flat_map(|c| [format!("calendars/{c}.toml"), format!("calendars/{c}.ics")])
        .collect();
    // Only files the library reads: a stray note beside the site's files stays out.
    let site_file = format!("sites/{site}/site.toml");
    let schedule_file = format!("sites/{site}/schedule.toml");
    let scenes_dir = format!("sites/{site}/scenes/");
    let is_scene = |path: &str| {
        path.strip_prefix(&scenes_dir)
            .is_some_and(|rest| !rest.contains('/') && rest.ends_with(".toml"))
    };
    let mut files: Vec<PlanFile> = sources
        .iter()
        .filter(|f| {
            f.path == "zones.toml"
                || f.path == site_file
                || f.path == schedule_file
                || is_scene(&f.path)
                || profiles.contains(&f.path)
                || calendars.contains(&f.path)
        })
        .map(|f| PlanFile {
            path: f.path.clone(),
            text: f.text.clone(),
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    Ok(Plan {
        schema: PLAN_SCHEMA,
        gateway: gateway.clone(),
        site: site.clone(),
        version,
        issued_at_ms,
        effective_from_ms,
        content_hash: content_hash(&files),
        files,
    })
}

/// Signs a document with `key`.
pub fn sign<T: Document>(document: T, key: &SigningKey) -> Signed<T> {
    let signature = key.sign(&canonical(&document));
    Signed {
        document,
        signature: hex(&signature.to_bytes()),
    }
}

/// Checks a signed document as a gateway must before using it: well formed, a schema it
/// reads, signed by the trusted key, addressed to this gateway, newer than `current`.
pub fn open<T: Document>(
    bytes: &[u8],
    trusted: &VerifyingKey,
    gateway: &GatewayId,
    current: Option<u64>,
) -> Result<T, Rejection> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Rejection::Malformed {
            kind: T::KIND,
            detail: e.to_string(),
        })?;
    let schema = value
        .get("document")
        .and_then(|d| d.get("schema"))
        .and_then(|s| s.as_u64());
    match schema {
        Some(s) if s == u64::from(T::SCHEMA) => {}
        Some(s) => {
            return Err(Rejection::UnknownSchema {
                kind: T::KIND,
                got: u32::try_from(s).unwrap_or(u32::MAX),
                reads: T::SCHEMA,
            });
        }
        None => {
            return Err(Rejection::Malformed {
                kind: T::KIND,
                detail: "no document.schema".into(),
            });
        }
    }
    let signed: Signed<T> = serde_json::from_value(value).map_err(|e| Rejection::Malformed {
        kind: T::KIND,
        detail: e.to_string(),
    })?;
    if signed.signature.trim().is_empty() {
        return Err(Rejection::Unsigned(T::KIND));
    }
    let signature = unhex(&signed.signature)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or(Rejection::BadSignature(T::KIND))?;
    trusted
        .verify(&canonical(&signed.document), &signature)
        .map_err(|_| Rejection::BadSignature(T::KIND))?;
    let doc = signed.document;
    if doc.gateway() != gateway {
        return Err(Rejection::WrongGateway {
            kind: T::KIND,
            expected: gateway.clone(),
            got: doc.gateway().clone(),
        });
    }
    if let Some(current) = current
        && doc.version() <= current
    {
        return Err(Rejection::NotNewer {
            kind: T::KIND,
            current,
            got: doc.version(),
        });
    }
    Ok(doc)
}

/// Opens a plan and checks its files with the show checker; returns the plan and the
/// library it builds.
pub fn open_plan(
    bytes: &[u8],
    trusted: &VerifyingKey,
    gateway: &GatewayId,
    current: Option<u64>,
) -> Result<(Plan, ShowLibrary), Rejection> {
    let plan: Plan = open(bytes, trusted, gateway, current)?;
    if content_hash(&plan.files) != plan.content_hash {
        return Err(Rejection::HashMismatch);
    }
    let sources: Vec<SourceFile> = plan
        .files
        .iter()
        .map(|f| SourceFile {
            path: f.path.clone(),
            text: f.text.clone(),
        })
        .collect();
    let checked = crate::show::check(&sources);
    if checked.error_count() > 0 {
        let first: Vec<String> = checked
            .diagnostics
            .iter()
            .filter(|d| d.severity == crate::diag::Severity::Error)
            .take(3)
            .map(|d| d.to_string())
            .collect();
        return Err(Rejection::Invalid(first.join("; ")));
    }
    Ok((plan, checked.library))
}

/// One manual override in the overrides document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideEntry {
    pub id: String,
    pub kind: OverrideEntryKind,
    pub scene: Option<SceneId>,
    /// 100 % when left out.
    pub brightness_pct: Option<Level>,
    pub from_ms: i64,
    /// Absolute UTC expiry; `None` only for a latched blackout.
    pub until_ms: Option<i64>,
    /// Who set it and why, for the audit log.
    pub by: String,
    pub reason: String,
}

/// What an override does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverrideEntryKind {
    Scene,
    Blackout,
    CurfewException,
    /// Whatever plays at `brightness_pct` of its brightness.
    Dim,
}

/// The desired manual state of one gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverridesDocument {
    pub schema: u32,
    pub gateway: GatewayId,
    pub version: u64,
    pub issued_at_ms: i64,
    pub overrides: Vec<OverrideEntry>,
}

impl Document for OverridesDocument {
    const SCHEMA: u32 = OVERRIDES_SCHEMA;
    const KIND: &'static str = "overrides document";
    fn gateway(&self) -> &GatewayId {
        &self.gateway
    }
    fn version(&self) -> u64 {
        self.version
    }
}

impl OverridesDocument {
    /// The entries as schedule overrides; an entry that makes no sense is a typed error.
    pub fn to_overrides(&self) -> Result<Vec<crate::schedule::Override>, Rejection> {
        self.overrides
            .iter()
            .map(OverrideEntry::to_override)
            .collect()
    }
}

impl OverrideEntry {
    /// The entry as a schedule override, or why it makes no sense.
    pub fn to_override(&self) -> Result<crate::schedule::Override, Rejection> {
        use crate::schedule::{Override, OverrideKind};
        let bad = |why: &str| Rejection::Malformed {
            kind: OverridesDocument::KIND,
            detail: format!("override `{}`: {why}", self.id),
        };
        let kind = match self.kind {
            OverrideEntryKind::Blackout => OverrideKind::Blackout,
            OverrideEntryKind::CurfewException => OverrideKind::CurfewException,
            OverrideEntryKind::Dim => OverrideKind::Dim {
                factor: self
                    .brightness_pct
                    .ok_or_else(|| bad("a dim needs brightness_pct"))?,
            },
            OverrideEntryKind::Scene => OverrideKind::Scene {
                scene: self
                    .scene
                    .clone()
                    .ok_or_else(|| bad("a scene override needs a scene id"))?,
                brightness: self.brightness_pct.unwrap_or(Level::FULL),
            },
        };
        if self.until_ms.is_none() && kind != OverrideKind::Blackout {
            return Err(bad("only a blackout may be open-ended; give until_ms"));
        }
        Ok(Override {
            kind,
            from_ms: self.from_ms,
            until_ms: self.until_ms,
        })
    }
}

/// Key files: one line, `nightscape-ed25519-secret <hex>` or `nightscape-ed25519-public <hex>`.
pub fn secret_key_text(key: &SigningKey) -> String {
    format!("nightscape-ed25519-secret {}\n", hex(&key.to_bytes()))
}

pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("nightscape-ed25519-public {}\n", hex(key.as_bytes()))
}

/// Why a key file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("this is a {found} key; a {wanted} key is needed here")]
    WrongKind {
        found: &'static str,
        wanted: &'static str,
    },
    #[error(
        "not a Nightscape key file: it should be one line, `nightscape-ed25519-{0} <64 hex digits>`"
    )]
    NotAKey(&'static str),
    #[error("the key is not 64 hex digits")]
    BadHex,
    #[error("the public key is not a valid Ed25519 point")]
    NotAPoint,
}

fn key_bytes(text: &str, wanted: &'static str) -> Result<[u8; 32], KeyError> {
    let text = text.trim();
    let other = if wanted == "secret" {
        "public"
    } else {
        "secret"
    };
    let Some(hexed) = text.strip_prefix(&format!("nightscape-ed25519-{wanted} ")) else {
        return Err(
            if text.starts_with(&format!("nightscape-ed25519-{other} ")) {
                KeyError::WrongKind {
                    found: other,
                    wanted,
                }
            } else {
                KeyError::NotAKey(wanted)
            },
        );
    };
    unhex(hexed)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or(KeyError::BadHex)
}

pub fn parse_secret_key(text: &str) -> Result<SigningKey, KeyError> {
    key_bytes(text, "secret").map(|b| SigningKey::from_bytes(&b))
}

pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = key_bytes(text, "public")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotAPoint)
}
