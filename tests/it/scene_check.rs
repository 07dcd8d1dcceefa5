//! `nightscape scene check` as a user runs it: on the shipped library and on a library with
//! planted problems whose expected locations are marked in the files themselves.
#![allow(clippy::unwrap_used)] // a test that cannot read its own output should stop there

use std::path::{Path, PathBuf};
use std::process::Command;

fn nightscape() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nightscape"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `(file, line, col, "error[code]")` for every line of output.
fn parse_output(stdout: &str) -> Vec<(String, u32, u32, String)> {
    stdout
        .lines()
        .map(|line| {
            let mut parts = line.splitn(4, ':');
            let file = parts.next().unwrap().to_owned();
            let l: u32 = parts.next().unwrap().parse().unwrap();
            let c: u32 = parts.next().unwrap().parse().unwrap();
            let rest = parts.next().unwrap().trim_start();
            let label = rest[..rest.find("]:").unwrap() + 1].to_owned();
            (file, l, c, label)
        })
        .collect()
}

/// Reads the `#   ^ error[code]` marks under the lines they point at.
fn planted_marks(dir: &Path, shown_as: &str) -> Vec<(String, u32, u32, String)> {
    let mut marks = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let relative = path
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        for (index, line) in text.lines().enumerate() {
            let Some(rest) = line.strip_prefix('#') else {
                continue;
            };
            let Some(caret) = rest.find('^') else {
                continue;
            };
            let label = rest[caret + 1..].trim();
            if !(label.starts_with("error[") || label.starts_with("warning[")) {
                continue;
            }
            marks.push((
                format!("{shown_as}/{relative}"),
                index as u32, // the line above, 1-based
                caret as u32 + 2,
                label.to_owned(),
            ));
        }
    }
    marks.sort();
    marks
}

#[test]
fn planted_problems_are_each_reported_once_at_their_mark() {
    let dir = root().join("tests/fixtures/planted-errors");
    let output = nightscape()
        .args(["scene", "check", "tests/fixtures/planted-errors"])
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut found = parse_output(&stdout);
    found.sort();
    let expected = planted_marks(&dir, "tests/fixtures/planted-errors");

    let errors = expected.iter().filter(|m| m.3.starts_with("error")).count();
    let kinds: std::collections::HashSet<&str> = expected.iter().map(|m| m.3.as_str()).collect();
    assert!(errors >= 14, "the fixture plants {errors} errors");
    assert!(
        kinds.len() >= 14,
        "the fixture plants {} kinds",
        kinds.len()
    );
    assert_eq!(found, expected, "full output:\n{stdout}");
    assert_eq!(
        output.status.code(),
        Some(1),
        "errors must fail the command"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!("{errors} errors, 2 warnings")),
        "{stderr}"
    );
}

#[test]
fn shipped_library_is_clean() {
    let output = nightscape()
        .args(["scene", "check", "scenes"])
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stdout, "",
        "the shipped library must check without warnings"
    );
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("12 sites, 3 profiles; 0 errors, 0 warnings"),
        "{stderr}"
    );
}

#[test]
fn committed_schemas_match_the_types() {
    for (name, text) in nightscape_core::schema::all() {
        let path = root().join("scenes/schema").join(name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{} is stale: run `cargo run -- scene schema`",
            path.display()
        );
    }
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let output = nightscape()
        .args(["scene", "check", "no/such/dir"])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("reading directory no/such/dir"), "{stderr}");
}

#[test]
fn calendars_that_run_out_soon_are_warned_about() {
    let output = nightscape()
        .args(["scene", "check", "scenes", "--today", "2027-11-15"])
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "warnings do not fail the check");
    assert!(
        stdout.contains("scenes/calendars/kr-holidays.toml: warning[calendar-expiring]: calendar `kr-holidays` runs out after 2027-12-27, in 42 days"),
        "{stdout}"
    );
    assert!(
        stdout.contains("scenes/calendars/festival-nights.ics: warning[calendar-expiring]"),
        "{stdout}"
    );
}

#[test]
fn schedule_preview_is_the_same_whatever_the_host_time_zone() {
    let run = |tz: &str, format: &str| {
        let output = nightscape()
            .args([
                "schedule",
                "preview",
                "--site",
                "gyebaek-bridge",
                "--from",
                "2026-12-24",
                "--days",
                "3",
                "--format",
                format,
            ])
            .env("TZ", tz)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let seoul = run("Asia/Seoul", "text");
    assert_eq!(seoul, run("America/Los_Angeles", "text"));
    assert_eq!(seoul, run("UTC", "text"));
    assert!(
        seoul.contains("2026-12-24 Thu  sunrise 07:40  sunset 17:22"),
        "{seoul}"
    );
    assert!(
        seoul.contains("17:37  gyebaek-festival 100 %       rule festival"),
        "{seoul}"
    );
    let json: serde_json::Value = serde_json::from_str(&run("America/New_York", "json")).unwrap();
    assert_eq!(json["time_zone"], "Asia/Seoul");
    assert_eq!(
        json["days"][0]["transitions"][1]["at"],
        "2026-12-24T17:36:57+09:00"
    );
    assert_eq!(json["days"][0]["transitions"][1]["cause"], "rule festival");
}
