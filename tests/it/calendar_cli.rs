//! `nightscape calendar import-kasi` as staff run it before December.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn next_years_holidays_are_one_command_and_a_refusal_says_why() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = std::env::temp_dir().join(format!("nightscape-kasi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shipped =
        std::fs::read_to_string(format!("{root}/scenes/calendars/kr-holidays.toml")).unwrap();
    let file = dir.join("kr-holidays.toml");
    std::fs::write(
        &file,
        shipped
            .lines()
            .filter(|l| !l.contains("\"2027-"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let run = |response: &str| {
        Command::new(env!("CARGO_BIN_EXE_nightscape"))
            .args(["calendar", "import-kasi", "--calendar"])
            .arg(&file)
            .arg(format!("{root}/tests/fixtures/kasi/{response}"))
            .output()
            .unwrap()
    };
    let out = run("getRestDeInfo-2027.xml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added = String::from_utf8_lossy(&out.stdout);
    assert_eq!(added.lines().count(), 24, "{added}");
    assert!(added.contains("2027-07-19  대체공휴일"));
    let again = run("getRestDeInfo-2027-05.json");
    assert!(String::from_utf8_lossy(&again.stderr).contains("listed already"));
    let refused = run("unregistered-key.xml");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("SERVICE_KEY_IS_NOT_REGISTERED_ERROR")
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.matches("{ date = \"2027-").count(), 24);
}
