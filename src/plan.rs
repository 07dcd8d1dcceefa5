//! `nightscape keygen`, `plan compile` and `plan verify`: signed plans without a server.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use ed25519_dalek::SigningKey;
use nightscape_core::ids::{GatewayId, SiteId};
use nightscape_core::plan::{self, PLAN_BUDGET_BYTES, Plan};

use crate::library;

/// Writes `BASE.key` (secret, readable by the owner only) and `BASE.pub`.
pub fn keygen(base: &Path) -> Result<String> {
    let (secret, public) = (base.with_extension("key"), base.with_extension("pub"));
    for p in [&secret, &public] {
        if p.exists() {
            bail!(
                "{} exists; keys are never overwritten (move it away first)",
                p.display()
            );
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| anyhow::anyhow!("the system has no randomness to make a key: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    write_private(&secret, &plan::secret_key_text(&key))?;
    fs::write(&public, plan::public_key_text(&key.verifying_key()))
        .with_context(|| format!("writing {}", public.display()))?;
    Ok(format!(
        "wrote {} (keep it secret) and {} (give it to gateways)",
        secret.display(),
        public.display()
    ))
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

pub struct Compile<'a> {
    pub library: &'a Path,
    pub site: &'a str,
    pub gateway: Option<&'a str>,
    pub key: &'a Path,
    pub out: &'a Path,
    pub version: Option<u64>,
    pub effective_from: Option<&'a str>,
}

pub fn compile(c: &Compile<'_>) -> Result<String> {
    let key_text =
        fs::read_to_string(c.key).with_context(|| format!("reading {}", c.key.display()))?;
    let key = plan::parse_secret_key(&key_text).with_context(|| {
        format!(
            "{} is not a Nightscape secret key (make one with `nightscape keygen`)",
            c.key.display()
        )
    })?;
    let sources = library::read_dir(c.library)?;
    let checked = nightscape_core::show::check(&sources);
    let site = SiteId::new(c.site).with_context(|| format!("`{}` is not a site id", c.site))?;
    let site_errors: Vec<String> = checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == nightscape_core::diag::Severity::Error)
        .filter(|d| {
            !d.location.file.starts_with("sites/")
                || d.location.file.starts_with(&format!("sites/{site}/"))
        })
        .map(|d| format!("{}/{d}", c.library.display()))
        .collect();
    if !site_errors.is_empty() {
        bail!(
            "the library has errors that concern this site:\n{}",
            site_errors.join("\n")
        );
    }
    let gateway = plan::pick_gateway(&checked.library, &site, c.gateway)?;
    let now = jiff::Timestamp::now().as_millisecond();
    // Without a server's database, versions come from the clock: milliseconds increase.
    let version = c.version.unwrap_or(u64::try_from(now).unwrap_or(0));
    let effective_from = match c.effective_from {
        Some(text) => {
            let tz = &checked
                .library
                .sites
                .get(&site)
                .context("the site has errors")?
                .time_zone;
            crate::render::parse_at(text, tz)?.as_millisecond()
        }
        None => now,
    };
    let compiled: Plan = plan::compile(
        &sources,
        &checked.library,
        &site,
        &gateway,
        version,
        now,
        effective_from,
    )?;
    let (files, hash) = (compiled.files.len(), compiled.content_hash.clone());
    let signed = plan::sign(compiled, &key);
    let bytes = serde_json::to_vec(&signed)?;
    // Over budget, nothing is written: a file on disk is a plan someone may publish.
    if bytes.len() > PLAN_BUDGET_BYTES {
        bail!(
            "the plan is {} bytes, over the {} byte budget; split the site or its scenes (nothing written)",
            bytes.len(),
            PLAN_BUDGET_BYTES
        );
    }
    fs::write(c.out, &bytes).with_context(|| format!("writing {}", c.out.display()))?;
    let share = 100.0 * bytes.len() as f64 / PLAN_BUDGET_BYTES as f64;
    Ok(format!(
        "wrote {}: plan v{version} for gateway {gateway} of site {site}, {files} files, {} bytes ({share:.1} % of the {} KiB budget), content {}",
        c.out.display(),
        bytes.len(),
        PLAN_BUDGET_BYTES / 1024,
        &hash[..16]
    ))
}

/// What `plan overrides` was asked for.
#[derive(Debug)]
pub struct Overrides<'a> {
    pub gateway: &'a str,
    pub key: &'a Path,
    pub out: &'a Path,
    pub scene: Option<&'a str>,
    pub brightness: Option<f64>,
    pub blackout: bool,
    pub curfew_exception: bool,
    pub hours: f64,
    pub version: Option<u64>,
    pub by: &'a str,
    pub reason: &'a str,
}

/// Signs an overrides document; says what it holds.
pub fn overrides(o: &Overrides<'_>) -> Result<String> {
    use nightscape_core::plan::{OverrideEntry, OverrideEntryKind, OverridesDocument};
    let key_text =
        fs::read_to_string(o.key).with_context(|| format!("reading {}", o.key.display()))?;
    let key = plan::parse_secret_key(&key_text)
        .with_context(|| format!("{} is not a Nightscape secret key", o.key.display()))?;
    if !(o.hours > 0.0 && o.hours <= 24.0 * 31.0) {
        bail!("--hours {}: give 0–744 hours", o.hours);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let until = now + (o.hours * 3_600_000.0) as i64;
    let entry = |id: &str, kind, scene: Option<nightscape_core::SceneId>, until_ms| OverrideEntry {
        id: id.to_string(),
        kind,
        scene,
        brightness_pct: None,
        from_ms: now,
        until_ms,
        by: o.by.to_string(),
        reason: o.reason.to_string(),
    };
    let mut entries = Vec::new();
    if let Some(scene) = o.scene {
        let mut e = entry(
            "scene",
            OverrideEntryKind::Scene,
            Some(
                scene
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--scene {scene}: {e}"))?,
            ),
            Some(until),
        );
        if let Some(pct) = o.brightness {
            e.brightness_pct = Some(
                format!("{pct}%")
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--brightness {pct}: {e}"))?,
            );
        }
        entries.push(e);
    }
    if o.curfew_exception {
        entries.push(entry(
            "curfew-exception",
            OverrideEntryKind::CurfewException,
            None,
            Some(until),
        ));
    }
    if o.blackout {
        entries.push(entry("blackout", OverrideEntryKind::Blackout, None, None));
    }
    let doc = OverridesDocument {
        schema: plan::OVERRIDES_SCHEMA,
        gateway: o
            .gateway
            .parse()
            .map_err(|e| anyhow::anyhow!("--gateway {}: {e}", o.gateway))?,
        version: o.version.unwrap_or(u64::try_from(now).unwrap_or(0)),
        issued_at_ms: now,
        overrides: entries,
    };
    let described = if doc.overrides.is_empty() {
        "no overrides (releases any blackout)".to_string()
    } else {
        doc.overrides
            .iter()
            .map(|e| match e.kind {
                OverrideEntryKind::Scene => "scene",
                OverrideEntryKind::Blackout => "blackout",
                OverrideEntryKind::CurfewException => "curfew exception",
                OverrideEntryKind::Dim => "dim",
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let version = doc.version;
    let bytes = serde_json::to_vec(&plan::sign(doc, &key))?;
    fs::write(o.out, bytes).with_context(|| format!("writing {}", o.out.display()))?;
    Ok(format!(
        "{}: overrides version {version} for `{}`: {described}",
        o.out.display(),
        o.gateway
    ))
}

pub fn verify(
    pubkey: &Path,
    file: &Path,
    gateway: Option<&str>,
    current: Option<u64>,
) -> Result<std::result::Result<String, String>> {
    let key_text =
        fs::read_to_string(pubkey).with_context(|| format!("reading {}", pubkey.display()))?;
    let key = plan::parse_public_key(&key_text)
        .with_context(|| format!("{} is not a Nightscape public key", pubkey.display()))?;
    let bytes = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    // Without --gateway, check the plan against the gateway it names.
    let named = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["document"]["gateway"].as_str().map(str::to_owned));
    let gateway: GatewayId = match (gateway, named) {
        (Some(g), _) => g
            .parse()
            .with_context(|| format!("`{g}` is not a gateway id"))?,
        (None, Some(named)) => match named.parse() {
            Ok(id) => id,
            Err(why) => return Ok(Err(format!("{}: rejected: gateway: {why}", file.display()))),
        },
        (None, None) => {
            return Ok(Err(format!(
                "{}: rejected: the file names no gateway (is it a plan?)",
                file.display()
            )));
        }
    };
    Ok(match plan::open_plan(&bytes, &key, &gateway, current) {
        Ok((p, lib)) => Ok(format!(
            "{}: valid plan v{} for gateway {} of site {} ({} files, {} scenes, content {})",
            file.display(),
            p.version,
            p.gateway,
            p.site,
            p.files.len(),
            lib.scenes.len(),
            &p.content_hash[..16]
        )),
        Err(rejection) => Err(format!("{}: rejected: {rejection}", file.display())),
    })
}
