//! Reading a show library directory from disk into the core's in-memory form.

use std::path::Path;

use anyhow::Result;
use nightscape_core::show::{self, Checked, SourceFile};

/// Reads every `.toml` and `.ics` file under `dir` with its path relative to `dir`.
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>> {
    nightscape_server::files::read_dir(dir)
}

/// Reads and checks the library in `dir`; diagnostics name files as `dir/relative`.
pub fn check_dir(dir: &Path) -> Result<Checked> {
    load(dir).map(|(_, checked)| checked)
}

/// [`check_dir`], also returning the files read.
pub fn load(dir: &Path) -> Result<(Vec<SourceFile>, Checked)> {
    let sources = read_dir(dir)?;
    let mut checked = show::check(&sources);
    for d in &mut checked.diagnostics {
        d.location.file = dir.join(&d.location.file).display().to_string();
    }
    Ok((sources, checked))
}
