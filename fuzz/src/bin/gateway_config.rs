//! The gateway's configuration file.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let _ = nightscape_gateway::config::parse(text);
    });
}
