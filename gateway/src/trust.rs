//! Whether the gateway believes its wall clock, and the wall time it plays by.
//!
//! A gateway keeps the last wall time it trusted in its data directory. A clock that reads
//! earlier than that, or earlier than the issue time of the plan it plays (a box whose
//! battery-less clock restarted at 1970, or an operator's mistake), is untrusted: the
//! gateway reports it and keeps playing by its monotonic clock from the last trusted time.
//! A clock that jumps by more than a second against the monotonic clock (NTP stepping it)
//! is reported as a step; the schedule is evaluated again at the new time. Pure: the caller
//! passes both clocks' readings.

use std::time::Duration;

/// A step larger than this is reported.
pub const STEP: Duration = Duration::from_secs(1);
/// A clock this little behind the last trusted time is a correction, not a broken clock
/// (NTP stepping back a little): reported as a step, and believed.
pub const BACK_SLACK_MS: i64 = 5_000;
/// A clock further than this past the plan's issue time is implausible (a real-time clock
/// gone wrong, years ahead): untrusted, and not kept as the last trusted time. Plans come
/// far more often than this, so a box merely switched off for long is not caught.
pub const MAX_AHEAD_OF_PLAN_MS: i64 = 3 * 366 * 86_400_000;
/// A plan issued up to this far ahead of the gateway's clock does not make it untrusted
/// (the server's and the gateway's clocks differ by a little).
pub const ISSUE_SLACK_MS: i64 = 10 * 60 * 1000;

/// What changed in the gateway's view of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The clock reads `reads_ms`, before `floor_ms` (or implausibly far past the plan's
    /// issue time): playing by the monotonic clock.
    Untrusted { reads_ms: i64, floor_ms: i64 },
    /// The clock is believed again.
    Trusted,
    /// The clock jumped by `by_ms` (positive: forward) against the monotonic clock.
    Stepped { by_ms: i64 },
}

/// The gateway's wall time.
#[derive(Debug, Clone)]
pub struct WallTime {
    /// The last wall time trusted (kept on disk by the caller).
    last_trusted_ms: i64,
    /// The wall time played at a monotonic reading.
    anchor: Option<(i64, Duration)>,
    trusted: bool,
    /// Played minus read, at the last reading.
    offset_ms: i64,
}

impl WallTime {
    /// Starts from the last trusted time kept on disk (0 when there is none).
    pub fn new(last_trusted_ms: i64) -> WallTime {
        WallTime {
            last_trusted_ms,
            anchor: None,
            trusted: true,
            offset_ms: 0,
        }
    }

    pub fn trusted(&self) -> bool {
        self.trusted
    }

    pub fn last_trusted_ms(&self) -> i64 {
        self.last_trusted_ms
    }

    /// The time played minus the time the clock reads (0 when trusted).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms
    }

    /// Reads the clocks: `wall_ms` from the system, `monotonic` since any start, and the
    /// issue time of the plan in force. Returns the wall time to play, and what changed.
    pub fn observe(
        &mut self,
        wall_ms: i64,
        monotonic: Duration,
        plan_issued_ms: Option<i64>,
    ) -> (i64, Option<Note>) {
        let expected = self.anchor.map(|(wall, mono)| {
            wall.saturating_add(
                i64::try_from(monotonic.saturating_sub(mono).as_millis()).unwrap_or(i64::MAX),
            )
        });
        let floor = self
            .last_trusted_ms
            .saturating_sub(BACK_SLACK_MS)
            .max(plan_issued_ms.map_or(i64::MIN, |t| t.saturating_sub(ISSUE_SLACK_MS)));
        let ceiling = plan_issued_ms.map_or(i64::MAX, |t| t.saturating_add(MAX_AHEAD_OF_PLAN_MS));
        if wall_ms >= floor && wall_ms <= ceiling {
            let mut note = None;
            if !self.trusted {
                note = Some(Note::Trusted);
            } else if let Some(expected) = expected {
                let by_ms = wall_ms - expected;
                if by_ms.unsigned_abs() > STEP.as_millis() as u64 {
                    note = Some(Note::Stepped { by_ms });
                }
            }
            self.trusted = true;
            self.anchor = Some((wall_ms, monotonic));
            self.last_trusted_ms = self.last_trusted_ms.max(wall_ms);
            self.offset_ms = 0;
            return (wall_ms, note);
        }
        let note = self.trusted.then_some(Note::Untrusted {
            reads_ms: wall_ms,
            floor_ms: floor,
        });
        self.trusted = false;
        let played = match expected {
            Some(t) => t,
            None => {
                self.anchor = Some((floor, monotonic));
                floor
            }
        };
        self.offset_ms = played - wall_ms;
        (played, note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_798_000_000_000;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn a_clock_moving_with_the_monotonic_clock_is_trusted_quietly() {
        let mut w = WallTime::new(T - 60_000);
        assert_eq!(w.observe(T, s(0), Some(T - 1000)), (T, None));
        assert_eq!(
            w.observe(T + 10_000, s(10), Some(T - 1000)),
            (T + 10_000, None)
        );
        assert!(w.trusted());
        assert_eq!(w.last_trusted_ms(), T + 10_000);
    }

    #[test]
    fn a_clock_behind_the_last_trusted_time_is_refused_and_time_runs_on_from_there() {
        // A box that restarted with its clock at 1970.
        let mut w = WallTime::new(T);
        let (played, note) = w.observe(5_000, s(100), None);
        let floor = T - BACK_SLACK_MS;
        assert_eq!(played, floor);
        assert_eq!(
            note,
            Some(Note::Untrusted {
                reads_ms: 5_000,
                floor_ms: floor
            })
        );
        // An hour later by the monotonic clock, the clock still reads 1970.
        let (played, note) = w.observe(3_605_000, s(3700), None);
        assert_eq!(played, floor + 3_600_000);
        assert_eq!(note, None);
        assert!(!w.trusted());
        assert_eq!(w.offset_ms(), floor + 3_600_000 - 3_605_000);
        // NTP sets it right: trusted again, at the time it reads.
        let (played, note) = w.observe(T + 3_601_000, s(3701), None);
        assert_eq!((played, note), (T + 3_601_000, Some(Note::Trusted)));
        assert_eq!(w.offset_ms(), 0);
    }

    #[test]
    fn a_clock_behind_the_plans_issue_time_is_refused_within_a_slack() {
        let mut w = WallTime::new(0);
        // A few minutes behind the server: fine.
        assert_eq!(w.observe(T - 120_000, s(0), Some(T)).1, None);
        // A day behind: untrusted, played from the issue time less the slack.
        let mut w = WallTime::new(0);
        let (played, note) = w.observe(T - 86_400_000, s(0), Some(T));
        assert_eq!(played, T - ISSUE_SLACK_MS);
        assert!(matches!(note, Some(Note::Untrusted { .. })));
    }

    #[test]
    fn a_clock_years_past_the_plan_is_refused_and_not_kept() {
        let mut w = WallTime::new(T);
        w.observe(T, s(0), Some(T - 86_400_000));
        let wild = T + 10 * 366 * 86_400_000;
        let (played, note) = w.observe(wild, s(1), Some(T - 86_400_000));
        assert_eq!(played, T + 1000);
        assert!(matches!(note, Some(Note::Untrusted { .. })));
        assert_eq!(w.last_trusted_ms(), T, "the wild time is not kept");
        // Without a plan there is nothing to judge by: believed.
        let mut w = WallTime::new(0);
        assert_eq!(w.observe(wild, s(0), None), (wild, None));
    }

    #[test]
    fn steps_are_reported_both_ways_and_the_new_time_is_played() {
        let mut w = WallTime::new(0);
        w.observe(T, s(0), None);
        let (played, note) = w.observe(T + 1_000 + 30_000, s(1), None);
        assert_eq!(played, T + 31_000);
        assert_eq!(note, Some(Note::Stepped { by_ms: 30_000 }));
        // Back by 4 s (below the last trusted time, T + 31 s, by less than the slack): a
        // correction, reported as a step and believed.
        let (played, note) = w.observe(T + 28_000, s(2), None);
        assert_eq!(played, T + 28_000);
        assert_eq!(note, Some(Note::Stepped { by_ms: -4_000 }));
        // Back by a minute: untrusted, and time runs on from where it was.
        let (played, note) = w.observe(T - 31_000, s(3), None);
        assert_eq!(played, T + 29_000);
        assert!(matches!(note, Some(Note::Untrusted { .. })));
        // Small wobble under a second is no step.
        let mut w = WallTime::new(0);
        w.observe(T, s(0), None);
        assert_eq!(w.observe(T + 1_400, s(1), None).1, None);
    }
}
