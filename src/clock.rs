//! The real clock, at the edge: wall time from the system, monotonic time from `Instant`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nightscape_core::clock::Clock;

#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        // A system clock before 1970 is broken; it reads as the epoch, which the gateway's
        // trust rules then refuse (see DESIGN, "Time").
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn monotonic(&self) -> Duration {
        self.start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_never_goes_back_and_wall_time_is_recent() {
        let c = SystemClock::new();
        let mut last = c.monotonic();
        for _ in 0..1000 {
            let now = c.monotonic();
            assert!(now >= last);
            last = now;
        }
        assert!(
            c.now_ms() > 1_700_000_000_000,
            "the system clock reads {}",
            c.now_ms()
        );
    }
}
