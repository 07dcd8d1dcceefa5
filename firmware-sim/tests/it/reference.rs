//! The simulator against reference implementations: a pymodbus client (Python, PyPI;
//! `.ci/run` installs it) drives a simulated controller over TCP.

use std::process::Command;

use crate::common::start;

#[tokio::test]
async fn a_pymodbus_client_gets_the_answers_the_profile_promises() {
    let run = start(&["donam-seowon"], None).await;
    let addr = run.addr("donam-path");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/pymodbus_check.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("pymodbus agrees"), "{text}");
    // Master at 128 of 255: channel 1 (0xff) shows at half.
    assert_eq!(run.fixture("donam-seowon", "path-1").0, [128]);
}
