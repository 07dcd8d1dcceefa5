//! `nightscape calendar import-kasi`: next year's public holidays from the Korea Astronomy
//! and Space Science Institute's special-day service, added to a calendar file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use nightscape_core::calendar::kasi;
use nightscape_core::show::{self, SourceFile};

pub fn import_kasi(calendar: &Path, responses: &[PathBuf]) -> Result<ExitCode> {
    let mut dates = Vec::new();
    for path in responses {
        let text = if path.as_os_str() == "-" {
            let mut t = String::new();
            std::io::stdin()
                .read_to_string(&mut t)
                .context("reading standard input")?;
            t
        } else {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        };
        let days = kasi::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        dates.extend(
            days.into_iter()
                .filter(|d| d.holiday)
                .map(|d| (d.date, d.name)),
        );
    }
    let text = std::fs::read_to_string(calendar)
        .with_context(|| format!("reading {}", calendar.display()))?;
    // The calendar as the library reads it, for the dates it has already.
    let name = calendar
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let checked = show::check(&[SourceFile {
        path: format!("calendars/{name}"),
        text: text.clone(),
    }]);
    let id = name.trim_end_matches(".toml").parse().ok();
    let known = |d| {
        id.as_ref()
            .and_then(|id| checked.library.calendars.get(id))
            .is_some_and(|c| c.contains(d))
    };
    let Some((new_text, added)) = kasi::add_dates(&text, &known, &dates) else {
        bail!("{}: no `dates = [` list to add to", calendar.display());
    };
    if added.is_empty() {
        eprintln!("{}: every holiday is listed already", calendar.display());
        return Ok(ExitCode::SUCCESS);
    }
    let tmp = calendar.with_extension("toml.tmp");
    std::fs::write(&tmp, &new_text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, calendar).with_context(|| format!("writing {}", calendar.display()))?;
    for (d, n) in dates.iter().filter(|(d, _)| added.contains(d)) {
        println!("{d}  {n}");
    }
    eprintln!(
        "{}: {} dates added; run `nightscape scene check` and commit",
        calendar.display(),
        added.len()
    );
    Ok(ExitCode::SUCCESS)
}
