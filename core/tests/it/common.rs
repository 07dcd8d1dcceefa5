//! Reading the shipped show library, for tests and benchmarks (the core itself reads no
//! files; the CLI has its own reader).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use nightscape_core::show::SourceFile;

/// Every `.toml` and `.ics` file of `scenes/`, with paths relative to it.
pub fn shipped_library() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenes");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading the show library") {
            let path = entry.expect("reading the show library").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml" || e == "ics") {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(SourceFile {
                    path: rel,
                    text: std::fs::read_to_string(&path).unwrap(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The shipped zone table, as a library file.
pub fn zones() -> SourceFile {
    SourceFile {
        path: "zones.toml".into(),
        text: include_str!("../../../scenes/zones.toml").into(),
    }
}

/// A test site: its kind, place `(lat, lon, time zone)` and zone, a `[limits]` table, one
/// gateway `gw`, then `rest` — controllers, fixtures and groups.
pub fn site_toml(
    kind: &str,
    (lat, lon, tz): (f64, f64, &str),
    zone: u8,
    limits: &str,
    rest: &str,
) -> String {
    format!(
        "name = {{ ko = \"시험\" }}\nkind = \"{kind}\"\nlocation = {{ lat = {lat}, lon = {lon} }}\ntime_zone = \"{tz}\"\nzone = {zone}\n[limits]\n{limits}\n[[gateways]]\nid = \"gw\"\n{rest}\n"
    )
}
