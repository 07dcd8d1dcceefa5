//! `nightscape keygen`, `plan compile` and `plan verify` as a user runs them.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn nightscape() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nightscape"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nightscape-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn keys_plans_and_refusals_from_the_command_line() {
    let dir = temp_dir("plan");
    let base = dir.join("city");
    assert!(
        nightscape()
            .args(["keygen", "--out"])
            .arg(&base)
            .status()
            .unwrap()
            .success()
    );
    assert!(
        !nightscape()
            .args(["keygen", "--out"])
            .arg(&base)
            .status()
            .unwrap()
            .success(),
        "keys are never overwritten"
    );
    let other = dir.join("other");
    assert!(
        nightscape()
            .args(["keygen", "--out"])
            .arg(&other)
            .status()
            .unwrap()
            .success()
    );

    let plan = dir.join("gyebaek.plan");
    let out = nightscape()
        .args([
            "plan",
            "compile",
            "--site",
            "gyebaek-bridge",
            "--version",
            "12",
            "--key",
        ])
        .arg(base.with_extension("key"))
        .arg("--out")
        .arg(&plan)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("plan v12 for gateway gyebaek-gw of site gyebaek-bridge"),
        "{stderr}"
    );

    let verify = |key: &PathBuf, extra: &[&str]| {
        let out = nightscape()
            .args(["plan", "verify", "--pubkey"])
            .arg(key.with_extension("pub"))
            .args(extra)
            .arg(&plan)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let (code, text) = verify(&base, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("valid plan v12 for gateway gyebaek-gw"),
        "{text}"
    );
    let (code, text) = verify(&other, &[]);
    assert_eq!(code, Some(1));
    assert!(
        text.contains("does not verify with this gateway's trusted key"),
        "{text}"
    );
    let (code, text) = verify(&base, &["--current", "12"]);
    assert_eq!(code, Some(1));
    assert!(text.contains("not newer than version 12"), "{text}");
    let (code, text) = verify(&base, &["--gateway", "donam-gw"]);
    assert_eq!(code, Some(1));
    assert!(text.contains("is for gateway `gyebaek-gw`"), "{text}");

    let out = nightscape()
        .args(["plan", "compile", "--site", "nowhere", "--key"])
        .arg(base.with_extension("key"))
        .arg("--out")
        .arg(dir.join("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("site `nowhere` is not in the library"));
    std::fs::remove_dir_all(&dir).unwrap();
}
