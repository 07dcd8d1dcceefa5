//! `nightscape profile check`: a third-party profile checked on its own, with what a gateway
//! will write and read.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn nightscape() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nightscape"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn shipped_profiles_check_and_say_what_the_gateway_sends() {
    let out = nightscape()
        .args(["profile", "check", "scenes/profiles/ns-led-v1.toml"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("512 channels in holding 256–511"), "{text}");
    assert!(
        text.contains("enable 0 (on 1), master 1 (full 255), fade 2"),
        "{text}"
    );
    assert!(
        text.contains("start-up: 6 requests (3 of them the levels"),
        "{text}"
    );
    assert!(text.contains("reads: FC04 0–5, FC04 16–47"), "{text}");
}

#[test]
fn a_broken_profile_is_refused_with_every_problem_located() {
    let dir = std::env::temp_dir().join(format!("nightscape-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("acme-dim4.toml");
    std::fs::write(
        &file,
        "name = \"Acme 4\"\n[levels]\nstart = 0\nchannels = 4\nbits = 8\n[write]\nmax_registers = 4\nfc16 = true\nmin_interval_ms = 5\n[fade]\nregister = 2\nunit_ms = 10\nmax = 100\n[status]\nregister = \"40001\"\n",
    )
    .unwrap();
    let out = nightscape()
        .args(["profile", "check", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    // The fade register sits on channel 3's level; the status register is a holding one.
    assert!(
        text.contains("acme-dim4.toml:11:12: error[register-overlap]"),
        "{text}"
    );
    assert!(
        text.contains("error[register-range]") || text.contains("error[bad-value]"),
        "{text}"
    );
    assert!(text.contains("not usable"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
