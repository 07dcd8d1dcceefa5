//! `nightscape server mqtt-acl`: Mosquitto's `acl_file` and `password_file` for the city, and
//! each client's password in a file of its own (mode 600) to install where it runs. Passwords
//! already written are kept, so the command is run again when gateways are added; `--rotate`
//! draws new ones for everyone. `nightscape up` writes its own broker's files with the same
//! [`write`].

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nightscape_core::ShowLibrary;
use nightscape_server::broker_acl;

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The show library: its gateways and DMX-over-MQTT controllers are the broker's users.
    #[arg(long, default_value = "scenes")]
    pub library: PathBuf,
    /// Where to write `acl`, `passwd` and `secrets/USER`.
    #[arg(long)]
    pub out: PathBuf,
    /// Prepended to every topic (as the server's and gateways' --topic-prefix).
    #[arg(long, default_value = "")]
    pub topic_prefix: String,
    /// New passwords for every user, also those already written.
    #[arg(long)]
    pub rotate: bool,
    /// The group the broker runs as (`mosquitto` for Debian's package): `passwd` and `acl`
    /// are given to it with mode 640. Without it they are mode 600, readable only by the
    /// user who runs this command.
    #[arg(long)]
    pub group: Option<String>,
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes one of the broker's files whole: a new file, mode 600 or, with `group`, that group's
/// and 640, renamed over the old one. A broker reloading meanwhile reads the old file or the
/// new one, never half of one; and the mode is this command's, not whatever an earlier run or
/// an editor left.
fn write_broker_file(path: &Path, text: &str, group: Option<nix::unistd::Gid>) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, text)?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(&tmp, None, Some(gid.as_raw()))
            .with_context(|| format!("giving {} to group {gid}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640))
            .with_context(|| format!("setting the mode of {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// A group by name (or number), as `chgrp` takes it.
pub fn group(name: &str) -> Result<nix::unistd::Gid> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(nix::unistd::Gid::from_raw(n));
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => bail!(
            "--group {name}: no such group on this machine (the broker's own, e.g. `mosquitto`)"
        ),
        Err(e) => bail!("--group {name}: looking the group up: {e}"),
    }
}

/// What [`write`] wrote.
#[derive(Debug)]
pub struct Written {
    pub clients: Vec<broker_acl::Client>,
    /// Each user's password, by user.
    pub passwords: BTreeMap<String, String>,
    /// How many passwords were drawn now (not kept from before).
    pub made: usize,
    pub passwd: PathBuf,
    pub acl: PathBuf,
    pub secrets: PathBuf,
}

/// Writes the broker's `acl` and `passwd` and every user's `secrets/USER` into `out`, for
/// the clients of `library` under `prefix`, keeping passwords already there unless `rotate`.
pub fn write(
    library: &ShowLibrary,
    out: &Path,
    prefix: &str,
    rotate: bool,
    group: Option<nix::unistd::Gid>,
) -> Result<Written> {
    let clients = broker_acl::clients(library, prefix);
    let secrets = out.join("secrets");
    std::fs::create_dir_all(&secrets).with_context(|| format!("creating {}", secrets.display()))?;
    // Only the user who installs each password needs to list them.
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting the mode of {}", secrets.display()))?;
    let mut passwords = BTreeMap::new();
    let mut made = 0;
    for c in &clients {
        let file = secrets.join(&c.user);
        let kept = if rotate {
            None
        } else {
            std::fs::read_to_string(&file)
                .ok()
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
        };
        let password = match kept {
            Some(p) => p,
            None => {
                let p = crate::secret::random_hex(18)?;
                write_private(&file, &format!("{p}\n"))?;
                made += 1;
                p
            }
        };
        passwords.insert(c.user.clone(), password);
    }
    let mut passwd = String::new();
    for (user, password) in &passwords {
        let mut salt = [0u8; 12];
        getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        passwd.push_str(&broker_acl::password_line(user, password, &salt));
        passwd.push('\n');
    }
    let acl = out.join("acl");
    let passwd_file = out.join("passwd");
    write_broker_file(&passwd_file, &passwd, group)?;
    write_broker_file(&acl, &broker_acl::acl_text(&clients), group)?;
    Ok(Written {
        clients,
        passwords,
        made,
        passwd: passwd_file,
        acl,
        secrets,
    })
}

/// Writes the files; returns what to tell the user.
pub fn run(options: &Options) -> Result<String> {
    let group = options.group.as_deref().map(group).transpose()?;
    let (_, checked) = crate::library::load(&options.library)?;
    if checked.error_count() > 0 {
        for d in &checked.diagnostics {
            eprintln!("{d}");
        }
        bail!("the library has errors; fix them (nightscape scene check) first");
    }
    let w = write(
        &checked.library,
        &options.out,
        &options.topic_prefix,
        options.rotate,
        group,
    )?;
    let readable = match &options.group {
        Some(g) => format!("both group {g}'s, mode 640"),
        None => "both mode 600: the broker must run as this user; Mosquitto started as root \
                 drops to user `mosquitto` and cannot read them, so give --group mosquitto"
            .to_owned(),
    };
    Ok(format!(
        "{} broker users ({} new passwords) in {}\n\
         Mosquitto (mosquitto.conf; {readable}):\n  \
         allow_anonymous false\n  password_file {}\n  acl_file {}\n\
         Each client's password is in {}/USER: the server's is `{}` \
         (--broker-user {} --broker-password-file …), each gateway's is its id \
         (username and password_file in its [mqtt] section).",
        w.clients.len(),
        w.made,
        options.out.display(),
        w.passwd.display(),
        w.acl.display(),
        w.secrets.display(),
        broker_acl::SERVER_USER,
        broker_acl::SERVER_USER,
    ))
}
