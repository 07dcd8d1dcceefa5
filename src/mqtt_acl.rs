//! `nightscape server mqtt-acl`: Mosquitto's `acl_file` and `password_file` for the city, and
//! each client's password in a file of its own (mode 600) to install where it runs. Passwords
//! already written are kept, so the command is run again when gateways are added; `--rotate`
//! draws new ones for everyone.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
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
}

fn random_password() -> Result<String> {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(nightscape_core::plan::hex(&bytes))
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

/// Writes the files; returns what to tell the user.
pub fn run(options: &Options) -> Result<String> {
    let (_, checked) = crate::library::load(&options.library)?;
    if checked.error_count() > 0 {
        for d in &checked.diagnostics {
            eprintln!("{d}");
        }
        bail!("the library has errors; fix them (nightscape scene check) first");
    }
    let clients = broker_acl::clients(&checked.library, &options.topic_prefix);
    let secrets = options.out.join("secrets");
    std::fs::create_dir_all(&secrets).with_context(|| format!("creating {}", secrets.display()))?;
    let mut passwords = BTreeMap::new();
    let mut made = 0;
    for c in &clients {
        let file = secrets.join(&c.user);
        let kept = if options.rotate {
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
                let p = random_password()?;
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
    let acl = options.out.join("acl");
    let passwd_file = options.out.join("passwd");
    write_private(&passwd_file, &passwd)?;
    std::fs::write(&acl, broker_acl::acl_text(&clients))
        .with_context(|| format!("writing {}", acl.display()))?;
    Ok(format!(
        "{} broker users ({made} new passwords) in {}\n\
         Mosquitto (mosquitto.conf; the broker's user must read both files):\n  \
         allow_anonymous false\n  password_file {}\n  acl_file {}\n\
         Each client's password is in {}/USER: the server's is `{}` \
         (--broker-user {} --broker-password-file …), each gateway's is its id \
         (username and password_file in its [mqtt] section).",
        clients.len(),
        options.out.display(),
        passwd_file.display(),
        acl.display(),
        secrets.display(),
        broker_acl::SERVER_USER,
        broker_acl::SERVER_USER,
    ))
}
