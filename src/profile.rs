//! `nightscape profile check`: a Modbus controller profile on its own, with what a gateway
//! will send to and read from such a controller.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use nightscape_core::codec::modbus::{Poll, plan_writes, start_up};
use nightscape_core::diag::{Diagnostic, Severity};
use nightscape_core::model::{Pack, Profile};
use nightscape_core::show::{SourceFile, check_profile};

/// Checks each file; returns the report and whether every file is free of errors.
pub fn check(files: &[impl AsRef<Path>]) -> Result<(String, bool)> {
    let mut out = String::new();
    let mut ok = true;
    for path in files {
        let path = path.as_ref();
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file = SourceFile {
            path: path.display().to_string(),
            text,
        };
        let (profile, diagnostics) = check_profile(&file);
        for d in &diagnostics {
            writeln!(out, "{d}")?;
        }
        let errors = diagnostics
            .iter()
            .filter(|d: &&Diagnostic| d.severity == Severity::Error)
            .count();
        match profile {
            Some(p) if errors == 0 => out += &summary(&file.path, &p),
            _ => {
                ok = false;
                writeln!(out, "{}: {errors} errors; not usable", file.path)?;
            }
        }
    }
    Ok((out, ok))
}

/// What the gateway does with a controller of this profile, in a few lines.
fn summary(path: &str, p: &Profile) -> String {
    let regs = p.level_registers();
    let packing = match p.levels.pack {
        None => "one channel a register".to_owned(),
        Some(Pack::HighFirst) => "two channels a register, odd channel in the high byte".into(),
        Some(Pack::LowFirst) => "two channels a register, odd channel in the low byte".into(),
    };
    let levels = vec![0u16; regs.len()];
    let first = start_up(p, None, &levels);
    let refresh = plan_writes(p, None, &levels).len();
    let poll = Poll::new(p, p.readback.is_some());
    let mut s = String::new();
    let _ = writeln!(s, "{path}: profile `{}` — {}", p.id, p.name);
    let _ = writeln!(
        s,
        "  levels: {} channels in holding {}–{} ({packing}), 0–{} at full",
        p.levels.channels,
        regs.start,
        regs.end - 1,
        p.levels.max
    );
    let _ = writeln!(
        s,
        "  writes: {} at most {} registers a request, {} ms apart{}{}",
        if p.write.fc16 { "FC16," } else { "FC06 only," },
        p.write.max_registers,
        p.write.min_interval.as_millis(),
        p.write.refresh.map_or(String::new(), |r| format!(
            ", every register again each {} s",
            r.as_secs()
        )),
        if p.write.serialize_host {
            ", one request at a time per host"
        } else {
            ""
        }
    );
    let mut controls = Vec::new();
    if let Some(e) = p.enable {
        controls.push(format!("enable {} (on {})", e.register.get(), e.on));
    }
    if let Some(m) = p.master {
        controls.push(format!("master {} (full {})", m.register.get(), m.max));
    }
    if let Some(f) = p.fade {
        controls.push(format!(
            "fade {} ({} ms units, up to {} s)",
            f.register.get(),
            f.unit.as_millis(),
            Duration::from_millis(f.unit.as_millis() as u64 * u64::from(f.max)).as_secs_f64()
        ));
    }
    let _ = writeln!(
        s,
        "  controls: {}",
        if controls.is_empty() {
            "none (levels only)".to_owned()
        } else {
            controls.join(", ")
        }
    );
    let _ = writeln!(
        s,
        "  start-up: {} requests ({refresh} of them the levels, as in every full refresh)",
        first.len()
    );
    let reads: Vec<String> = poll
        .reads
        .iter()
        .map(|r| {
            format!(
                "FC{:02} {}–{}",
                r.function(),
                r.registers().start,
                r.registers().end - 1
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "  reads: {}",
        if reads.is_empty() {
            "nothing (no status, power, uptime or readback)".to_owned()
        } else {
            reads.join(", ")
        }
    );
    s
}
