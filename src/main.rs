//! The `nightscape` command. Parsing lives in [`nightscape::cli`]; this only runs it.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = nightscape::cli::Cli::parse();
    match nightscape::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
