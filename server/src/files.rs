//! A show library directory on disk, read into the core's `SourceFile`s (for `scene check`,
//! the first start of a server and `library import`) and written back (export).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nightscape_core::show::SourceFile;

/// Reads every `.toml` and `.ics` file under `dir` (skipping hidden entries) with its path
/// relative to `dir`, in a stable order.
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

/// Writes `files` under `dir`, creating folders; paths must be relative and stay inside.
pub fn write_dir(dir: &Path, files: &[SourceFile]) -> Result<()> {
    for f in files {
        if f.path.starts_with('/') || f.path.split('/').any(|p| p == ".." || p.is_empty()) {
            anyhow::bail!("`{}` is not a relative library path", f.path);
        }
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, &f.text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
