//! Calendars: iCalendar files and the special-day service's answers (XML or JSON).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let _ = nightscape_core::calendar::parse_ics(text);
        let _ = nightscape_core::calendar::kasi::parse(text);
    });
}
