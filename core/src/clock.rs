//! Time as an input. The gateway and the simulator read wall time (for the render phase and
//! the schedule) and monotonic time (for pacing frames) through [`Clock`], so tests can run
//! a whole night on a [`VirtualClock`] in milliseconds. The real clock lives at the edge.

use std::sync::Mutex;
use std::time::Duration;

pub trait Clock: Send + Sync {
    /// Wall time, milliseconds since the Unix epoch (may jump when NTP corrects it).
    fn now_ms(&self) -> i64;
    /// Time since an arbitrary start that never goes backwards.
    fn monotonic(&self) -> Duration;
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct VirtualClock {
    state: Mutex<(i64, Duration)>,
}

impl VirtualClock {
    pub fn new(wall_ms: i64) -> Self {
        VirtualClock {
            state: Mutex::new((wall_ms, Duration::ZERO)),
        }
    }

    /// Moves both clocks forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        s.1 += d;
    }

    /// Sets the wall clock alone, as an NTP step would (forwards or backwards).
    pub fn set_wall(&self, wall_ms: i64) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0 = wall_ms;
    }
}

impl Clock for VirtualClock {
    fn now_ms(&self) -> i64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    fn monotonic(&self) -> Duration {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_steps_leave_monotonic_alone() {
        let c = VirtualClock::new(1_000);
        c.advance(Duration::from_millis(250));
        assert_eq!(
            (c.now_ms(), c.monotonic()),
            (1_250, Duration::from_millis(250))
        );
        c.set_wall(500);
        assert_eq!(
            (c.now_ms(), c.monotonic()),
            (500, Duration::from_millis(250))
        );
    }
}
