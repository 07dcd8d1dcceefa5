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

/// Wall time that runs `scale` times faster than real time from `start_ms` (for `up
/// --time-scale`). Monotonic time runs as fast, so the gateways see a clock running
/// steadily, not one stepping at every frame, and the simulated controllers' fades and
/// uptimes keep pace with the show; frames are paced by the real clock (the gateway's
/// frame-clock thread), so they still go out at their rate.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    start_ms: i64,
    scale: f64,
    started: Instant,
}

impl ScaledClock {
    pub fn new(start_ms: i64, scale: f64) -> ScaledClock {
        ScaledClock {
            start_ms,
            scale,
            started: Instant::now(),
        }
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> i64 {
        let elapsed = self.started.elapsed().as_secs_f64() * 1000.0 * self.scale;
        self.start_ms.saturating_add(elapsed as i64)
    }

    fn monotonic(&self) -> Duration {
        self.started.elapsed().mul_f64(self.scale)
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

    #[test]
    fn a_scaled_clock_runs_both_clocks_at_its_rate() {
        let c = ScaledClock::new(1_000_000, 720.0);
        let (wall, mono) = (c.now_ms(), c.monotonic());
        std::thread::sleep(Duration::from_millis(30));
        let wall_ms = (c.now_ms() - wall) as f64;
        let mono_ms = (c.monotonic() - mono).as_secs_f64() * 1000.0;
        assert!(wall_ms >= 30.0 * 720.0, "{wall_ms}");
        // The gateway's step detection sees no step: both moved together.
        assert!(
            (wall_ms - mono_ms).abs() < 1000.0,
            "{wall_ms} against {mono_ms}"
        );
    }
}
