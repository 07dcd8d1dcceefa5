//! Secrets the program keeps in files of their own, mode 600: read when there, drawn and
//! written when not, so a second `up` keeps the admin's password, the broker users' passwords
//! and the simulator's token.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// `bytes` random bytes from the operating system, as hex.
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(nightscape_core::plan::hex(&buf))
}

/// The secret in `file`, or a new one from `new`, written there with mode 600. A file that
/// others may read is refused rather than used: the secret may already be known.
pub fn kept_or_new(file: &Path, new: impl FnOnce() -> Result<String>) -> Result<String> {
    match std::fs::read_to_string(file) {
        Ok(text) if !text.trim().is_empty() => {
            let mode = std::fs::metadata(file)
                .with_context(|| format!("reading {}", file.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                bail!(
                    "{} can be read by others (mode {:o}): make a new one (delete it) or chmod 600 it",
                    file.display(),
                    mode & 0o777
                );
            }
            return Ok(text.trim().to_owned());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    }
    let secret = new()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("writing {}", file.display()))?;
    f.write_all(secret.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .with_context(|| format!("writing {}", file.display()))?;
    // An empty file left with a looser mode is made private too.
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", file.display()))?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_kept_private_and_a_readable_one_refused() {
        let dir = std::env::temp_dir().join(format!("nightscape-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let file = dir.join("token");
        let first = kept_or_new(&file, || Ok("abc".into())).unwrap_or_default();
        assert_eq!(first, "abc");
        let mode = std::fs::metadata(&file).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        let again = kept_or_new(&file, || Ok("new".into())).unwrap_or_default();
        assert_eq!(again, "abc", "kept");
        let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644));
        let err = kept_or_new(&file, || Ok("new".into())).map_err(|e| e.to_string());
        assert!(
            err.as_ref().is_err_and(|e| e.contains("chmod 600")),
            "{err:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
