//! Reading a show library directory from disk into the core's in-memory form.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nightscape_core::show::{self, Checked, SourceFile};

/// Reads every `.toml` and `.ics` file under `dir` (skipping hidden entries) with its path relative to
/// `dir`, in a stable order.
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<SourceFile>) -> Result<()> {
    let entries =
        fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading directory {}", dir.display()))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", path.display()))?;
        if kind.is_dir() {
            walk(root, &path, files)?;
        } else if path.extension().is_some_and(|e| e == "toml" || e == "ics") {
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let relative: PathBuf = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            let relative = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push(SourceFile {
                path: relative,
                text,
            });
        }
    }
    Ok(())
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
