//! The command-line surface.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use nightscape_core::schema;

use crate::library;

#[derive(Debug, Parser)]
#[command(
    name = "nightscape",
    version,
    about = "Night-landscape lighting control"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with the show library (sites, fixtures, profiles, scenes).
    #[command(subcommand)]
    Scene(SceneCommand),
}

#[derive(Debug, Subcommand)]
pub enum SceneCommand {
    /// Check a show library and print every problem as `file:line:col: error[code]: message`.
    Check {
        /// The library directory.
        #[arg(default_value = "scenes")]
        dir: PathBuf,
    },
    /// Write the JSON Schemas of the show files (for editor completion).
    Schema {
        /// Where to write them.
        #[arg(long, default_value = "scenes/schema")]
        out: PathBuf,
    },
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Scene(SceneCommand::Check { dir }) => scene_check(dir),
        Command::Scene(SceneCommand::Schema { out }) => scene_schema(out),
    }
}

fn scene_check(dir: PathBuf) -> Result<ExitCode> {
    let checked = library::check_dir(&dir)?;
    let mut stdout = std::io::stdout().lock();
    for d in &checked.diagnostics {
        writeln!(stdout, "{d}")?;
    }
    stdout.flush()?;
    let (errors, warnings) = (checked.error_count(), checked.warning_count());
    let lib = &checked.library;
    eprintln!(
        "{}: {} sites, {} profiles; {errors} error{}, {warnings} warning{}",
        dir.display(),
        lib.sites.len(),
        lib.profiles.len(),
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
    );
    Ok(if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn scene_schema(out: PathBuf) -> Result<ExitCode> {
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for (name, text) in schema::all() {
        let path = out.join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
