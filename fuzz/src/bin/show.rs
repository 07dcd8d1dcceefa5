//! Show files through the checker: the first byte picks which kind of file the rest is.
use nightscape_core::show::{SourceFile, check};

const PATHS: [&str; 8] = [
    "sites/fuzz/site.toml",
    "sites/fuzz/schedule.toml",
    "sites/fuzz/scenes/fuzz.toml",
    "profiles/fuzz.toml",
    "zones.toml",
    "calendars/fuzz.toml",
    "calendars/fuzz.ics",
    "sites/fuzz/scenes/other.toml",
];

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&first, rest)) = data.split_first() else {
            return;
        };
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let path = PATHS[usize::from(first) % PATHS.len()];
        let _ = check(&[SourceFile {
            path: path.into(),
            text: text.into(),
        }]);
    });
}
