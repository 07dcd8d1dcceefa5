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

/// `plan overrides` signs a document a gateway opens: a scene, a curfew exception and a
/// latched blackout, with the times asked for.
#[test]
fn an_overrides_document_is_signed_for_one_gateway() {
    let bin = env!("CARGO_BIN_EXE_nightscape");
    let dir = std::env::temp_dir().join(format!("ns-ovr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("city");
    assert!(
        std::process::Command::new(bin)
            .args(["keygen", "--out"])
            .arg(&base)
            .status()
            .unwrap()
            .success()
    );
    let out = dir.join("overrides.json");
    let run = std::process::Command::new(bin)
        .args(["plan", "overrides", "--gateway", "culture-gw", "--key"])
        .arg(base.with_extension("key"))
        .arg("--out")
        .arg(&out)
        .args([
            "--scene",
            "culture-evening",
            "--brightness",
            "60",
            "--curfew-exception",
            "--blackout",
            "--hours",
            "2",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{said}");
    assert!(said.contains("scene, curfew exception, blackout"), "{said}");
    let key = nightscape_core::plan::parse_public_key(
        &std::fs::read_to_string(base.with_extension("pub")).unwrap(),
    )
    .unwrap();
    let doc: nightscape_core::plan::OverridesDocument = nightscape_core::plan::open(
        &std::fs::read(&out).unwrap(),
        &key,
        &"culture-gw".parse().unwrap(),
        None,
    )
    .unwrap();
    let overrides = doc.to_overrides().unwrap();
    assert_eq!(overrides.len(), 3);
    let scene = &doc.overrides[0];
    assert_eq!(scene.brightness_pct.unwrap().get(), 0.6);
    assert_eq!(scene.until_ms.unwrap() - scene.from_ms, 7_200_000);
    assert_eq!(doc.overrides[2].until_ms, None, "a blackout is latched");
}
