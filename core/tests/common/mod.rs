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
