//! The gateway's data directory: the current and previous plan and overrides documents.
//!
//! A document the gateway accepted is written so that a power cut at any instant leaves a
//! complete one to play: the bytes go to a temporary file, which is synced; the current file
//! becomes the previous one; the temporary file becomes the current one; the directory is
//! synced. At start the current document is opened exactly as one arriving over MQTT would
//! be (signature, addressee, content hash, show files); when it is damaged or missing, the
//! previous one plays, and the problem is reported.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use nightscape_core::GatewayId;
use nightscape_core::plan::{self, OverridesDocument, Plan, Rejection};
use nightscape_core::show::ShowLibrary;

/// For the power-cut proof only: the environment variable naming a switch file. While that
/// file exists, a save stops between its two renames — the current copy already the
/// previous one, the new one not yet in place — writes `<switch>.reached` and waits there,
/// so the proof can cut the power at that instant on purpose rather than by timing luck.
/// Unset (always, outside that proof), it costs one environment lookup per saved document.
pub const TEST_PAUSE_BETWEEN_RENAMES: &str = "NIGHTSCAPE_TEST_PAUSE_BETWEEN_RENAMES";

fn pause_between_renames() {
    let Some(switch) = std::env::var_os(TEST_PAUSE_BETWEEN_RENAMES).map(PathBuf::from) else {
        return;
    };
    if !switch.exists() {
        return;
    }
    let mut reached = switch.clone().into_os_string();
    reached.push(".reached");
    let _ = fs::write(&reached, b"");
    // Long enough for the proof's kill; a gateway left here by mistake goes on after it.
    std::thread::sleep(std::time::Duration::from_secs(10));
}

/// Which document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plan,
    /// A plan accepted but not yet in effect (it becomes the current plan at its time).
    NextPlan,
    Overrides,
}

impl Kind {
    fn stem(self) -> &'static str {
        match self {
            Kind::Plan => "plan",
            Kind::NextPlan => "plan.next",
            Kind::Overrides => "overrides",
        }
    }
}

/// Which copy a loaded document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    Current,
    Previous,
}

/// A plan read back at start, and what was wrong on the way.
#[derive(Debug)]
pub struct LoadedPlan {
    pub plan: Option<(Plan, ShowLibrary, Copy)>,
    /// Each copy that could not be used, and why (for the event log).
    pub problems: Vec<String>,
}

/// Overrides read back at start.
#[derive(Debug)]
pub struct LoadedOverrides {
    pub overrides: Option<(OverridesDocument, Copy)>,
    pub problems: Vec<String>,
}

/// The data directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (and creates) the data directory.
    pub fn open(dir: &Path) -> io::Result<Store> {
        fs::create_dir_all(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self, kind: Kind, copy: Copy) -> PathBuf {
        let name = match copy {
            Copy::Current => format!("{}.json", kind.stem()),
            Copy::Previous => format!("{}.prev.json", kind.stem()),
        };
        self.dir.join(name)
    }

    /// Keeps `bytes` as the current document of `kind`, the current one becoming the
    /// previous; safe against a power cut at any point.
    pub fn save(&self, kind: Kind, bytes: &[u8]) -> io::Result<()> {
        self.write(kind, bytes, true)
    }

    /// Keeps `bytes` as the current document of `kind` and leaves the previous copy as it
    /// is (the current one was found damaged and must not replace a good previous one).
    pub fn save_over(&self, kind: Kind, bytes: &[u8]) -> io::Result<()> {
        self.write(kind, bytes, false)
    }

    fn write(&self, kind: Kind, bytes: &[u8], keep_current: bool) -> io::Result<()> {
        let tmp = self.dir.join(format!("{}.json.tmp", kind.stem()));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        let current = self.path(kind, Copy::Current);
        if keep_current && current.exists() {
            fs::rename(&current, self.path(kind, Copy::Previous))?;
            pause_between_renames();
        }
        fs::rename(&tmp, &current)?;
        File::open(&self.dir)?.sync_all()
    }

    fn read(&self, kind: Kind, copy: Copy) -> Result<Vec<u8>, String> {
        let path = self.path(kind, copy);
        fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The gateway's sACN source id (a UUID), made once and kept, so receivers see the same
    /// source across restarts. A damaged file is replaced.
    pub fn cid(&self) -> io::Result<[u8; 16]> {
        let path = self.dir.join("sacn-cid");
        if let Ok(text) = fs::read_to_string(&path)
            && let Some(bytes) = plan::unhex(text.trim())
            && let Ok(cid) = <[u8; 16]>::try_from(bytes)
        {
            return Ok(cid);
        }
        let mut cid = [0u8; 16];
        getrandom::fill(&mut cid).map_err(|e| io::Error::other(e.to_string()))?;
        // A version 4 UUID.
        cid[6] = cid[6] & 0x0f | 0x40;
        cid[8] = cid[8] & 0x3f | 0x80;
        let tmp = self.dir.join("sacn-cid.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(plan::hex(&cid).as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(cid)
    }

    /// Opens one copy of the plan as one arriving over MQTT would be.
    pub fn open_plan(
        &self,
        trusted: &[VerifyingKey],
        gateway: &GatewayId,
        copy: Copy,
    ) -> Result<(Plan, ShowLibrary), String> {
        self.read(Kind::Plan, copy).and_then(|bytes| {
            open_with_any(trusted, |key| plan::open_plan(&bytes, key, gateway, None))
                .map_err(|e| format!("{}: {e}", self.path(Kind::Plan, copy).display()))
        })
    }

    /// The plan waiting for its time, if one is kept: the plan, its library and its bytes.
    #[allow(clippy::type_complexity)]
    pub fn open_next_plan(
        &self,
        trusted: &[VerifyingKey],
        gateway: &GatewayId,
    ) -> Result<Option<(Plan, ShowLibrary, Vec<u8>)>, String> {
        let path = self.path(Kind::NextPlan, Copy::Current);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let (plan, lib) = open_with_any(trusted, |key| plan::open_plan(&bytes, key, gateway, None))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Some((plan, lib, bytes)))
    }

    /// Removes the current copy of `kind` (a waiting plan that came into force).
    pub fn remove(&self, kind: Kind) -> io::Result<()> {
        match fs::remove_file(self.path(kind, Copy::Current)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => File::open(&self.dir)?.sync_all(),
        }
    }

    /// The last wall time the gateway trusted (0 when none is kept or it cannot be read).
    pub fn trusted_time(&self) -> i64 {
        fs::read_to_string(self.dir.join("trusted-time"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Keeps the last trusted wall time (atomically, like the documents).
    pub fn save_trusted_time(&self, ms: i64) -> io::Result<()> {
        let tmp = self.dir.join("trusted-time.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(ms.to_string().as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join("trusted-time"))
    }

    /// The plan to play at start: the current copy, else the previous one.
    pub fn load_plan(&self, trusted: &[VerifyingKey], gateway: &GatewayId) -> LoadedPlan {
        let mut problems = Vec::new();
        for copy in [Copy::Current, Copy::Previous] {
            let opened = self.open_plan(trusted, gateway, copy);
            match opened {
                Ok((p, lib)) => {
                    return LoadedPlan {
                        plan: Some((p, lib, copy)),
                        problems,
                    };
                }
                Err(e) => problems.push(e),
            }
        }
        LoadedPlan {
            plan: None,
            problems: self.unless_fresh(Kind::Plan, problems),
        }
    }

    /// The overrides to apply at start (a latched blackout among them): the current copy,
    /// else the previous one.
    pub fn load_overrides(&self, trusted: &[VerifyingKey], gateway: &GatewayId) -> LoadedOverrides {
        let mut problems = Vec::new();
        for copy in [Copy::Current, Copy::Previous] {
            let opened = self.read(Kind::Overrides, copy).and_then(|bytes| {
                open_with_any(trusted, |key| {
                    plan::open::<OverridesDocument>(&bytes, key, gateway, None)
                })
                .map_err(|e| format!("{}: {e}", self.path(Kind::Overrides, copy).display()))
            });
            match opened {
                Ok(doc) => {
                    return LoadedOverrides {
                        overrides: Some((doc, copy)),
                        problems,
                    };
                }
                Err(e) => problems.push(e),
            }
        }
        LoadedOverrides {
            overrides: None,
            problems: self.unless_fresh(Kind::Overrides, problems),
        }
    }

    /// No copy at all is a gateway that never had one (its first start), not damage.
    fn unless_fresh(&self, kind: Kind, problems: Vec<String>) -> Vec<String> {
        let none = [Copy::Current, Copy::Previous]
            .iter()
            .all(|c| !self.path(kind, *c).exists());
        if none { Vec::new() } else { problems }
    }
}

/// Opens plan bytes (a file given on the command line) as the gateway would one from MQTT.
pub fn open_any(
    trusted: &[VerifyingKey],
    bytes: &[u8],
    gateway: &GatewayId,
) -> Result<(Plan, ShowLibrary), Rejection> {
    open_with_any(trusted, |key| plan::open_plan(bytes, key, gateway, None))
}

/// Opens with the first trusted key that verifies; the last key's refusal otherwise (a bad
/// signature under every key reads as one).
pub(crate) fn open_with_any<T>(
    trusted: &[VerifyingKey],
    open: impl Fn(&VerifyingKey) -> Result<T, Rejection>,
) -> Result<T, Rejection> {
    let mut last = Rejection::Unsigned("document");
    for key in trusted {
        match open(key) {
            Ok(t) => return Ok(t),
            Err(Rejection::BadSignature(kind)) => last = Rejection::BadSignature(kind),
            Err(other) => return Err(other),
        }
    }
    Err(last)
}
