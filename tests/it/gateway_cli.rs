//! `nightscape gateway print-default-config` and `check-config`.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn the_default_configuration_checks_and_a_broken_one_says_where() {
    let bin = env!("CARGO_BIN_EXE_nightscape");
    let out = Command::new(bin)
        .args(["gateway", "print-default-config"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let dir = std::env::temp_dir().join(format!("ns-gwcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(&file, &text).unwrap();
    let ok = Command::new(bin)
        .args(["gateway", "check-config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    std::fs::write(
        &file,
        text.replace("safe_state = \"hold\"", "safe_state = \"off\""),
    )
    .unwrap();
    let bad = Command::new(bin)
        .args(["gateway", "check-config"])
        .arg(&file)
        .output()
        .unwrap();
    let shown = String::from_utf8(bad.stdout).unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        shown.contains("gateway.toml:11:14: safe_state `off` is not one"),
        "{shown}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
