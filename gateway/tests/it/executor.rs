//! The executor on the shipped Gyebaek Bridge: the evening look at once after a start, a
//! blackout at once, its release fading back, and a new plan without a jump.

use nightscape_core::Level;
use nightscape_core::schedule::{Cause, Override, OverrideKind};
use nightscape_core::{SiteId, check};
use nightscape_gateway::executor::Executor;

use crate::shipped_library;

/// 2026-12-24 19:30 in Seoul (10:30 UTC), a festival night.
const EVENING: i64 = 1_798_108_200_000;
/// Noon of the same day: nothing plays.
const NOON: i64 = EVENING - 7 * 3_600_000 - 1_800_000;

#[test]
fn the_executor_plays_what_should_play_now_and_follows_overrides() {
    let lib = check(&shipped_library()).library;
    let site: SiteId = "gyebaek-bridge".parse().unwrap();
    let mut exec = Executor::new(&lib, &site, EVENING).unwrap();
    let cue = exec.tick(EVENING).cloned().unwrap();
    assert!(matches!(cue.cause, Cause::Rule { .. }), "{cue:?}");
    let lit = exec.channels().iter().filter(|&&v| v > 0).count();
    assert!(
        lit > exec.channels().len() / 2,
        "{lit} of {} lit at once",
        exec.channels().len()
    );
    assert!(exec.tick(EVENING + 25).is_none(), "no change of cue");

    // Blackout: dark at the very tick it arrives.
    exec.set_overrides(vec![Override {
        kind: OverrideKind::Blackout,
        from_ms: EVENING + 1_000,
        until_ms: None,
    }]);
    assert_eq!(exec.tick(EVENING + 1_000).unwrap().cause, Cause::Blackout);
    assert!(exec.channels().iter().all(|&v| v == 0));
    // Released: the rule's scene fades back in over its own fade.
    exec.set_overrides(Vec::new());
    exec.tick(EVENING + 2_000).unwrap();
    let early = exec.channels().iter().map(|&v| u64::from(v)).sum::<u64>();
    exec.tick(EVENING + 30_000);
    let later = exec.channels().iter().map(|&v| u64::from(v)).sum::<u64>();
    assert!(early < later, "fading back: {early} then {later}");
    // The fade is already under way in the frame that answers the release: staff see their
    // action at once, not a frame later.
    assert!(early > 0, "the first frame after the release moves");

    // A scene override outranks the rule.
    exec.set_overrides(vec![Override {
        kind: OverrideKind::Scene {
            scene: "gyebaek-late-quiet".parse().unwrap(),
            brightness: Level::from_pct(50.0).unwrap(),
        },
        from_ms: EVENING + 40_000,
        until_ms: Some(EVENING + 100_000),
    }]);
    assert_eq!(exec.tick(EVENING + 40_000).unwrap().cause, Cause::Override);

    // The same plan again: no jump at the instant it is taken.
    let before = exec.channels().to_vec();
    exec.change_plan(&lib, &site, EVENING + 40_000).unwrap();
    exec.tick(EVENING + 40_000);
    assert_eq!(exec.channels(), &before[..]);
    assert!(exec.next_change(EVENING, 2).is_some_and(|t| t > EVENING));
}

/// City Hall's late look fades over 60 s: a frame of its fade down from full moves less
/// than a step of any channel (the output curve is flat near the top): the frame that answers the release must still show a step, and
/// no more than a small one, and the fade goes on from there to dark at its time.
#[test]
fn the_frame_that_answers_a_slow_fade_shows_a_first_step() {
    let lib = check(&shipped_library()).library;
    let site: SiteId = "nonsan-city-hall".parse().unwrap();
    let mut exec = Executor::new(&lib, &site, NOON).unwrap();
    exec.tick(NOON).unwrap();
    assert!(exec.channels().iter().all(|&v| v == 0), "dark at noon");
    let from_ms = NOON + 60_000;
    exec.set_overrides(vec![Override {
        kind: OverrideKind::Scene {
            scene: "cityhall-late".parse().unwrap(),
            brightness: Level::FULL,
        },
        from_ms,
        until_ms: None,
    }]);
    assert_eq!(exec.tick(from_ms).unwrap().cause, Cause::Override);
    assert!(exec.channels().iter().any(|&v| v > 0), "fading up at once");
    // The fade up is done; then the release fades to dark over the same 60 s.
    exec.tick(from_ms + 70_000);
    let lit = exec.channels().to_vec();
    exec.set_overrides(Vec::new());
    let released = from_ms + 80_000;
    exec.tick(released).unwrap();
    let first = exec.channels().to_vec();
    let steps: Vec<u8> = lit
        .iter()
        .zip(&first)
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let moved = steps.iter().filter(|&&s| s > 0).count();
    let largest = steps.iter().copied().max().unwrap();
    assert!(moved > 0, "the frame answering the release moves");
    assert!(largest <= 3, "a first step, not a jump of {largest}");
    exec.tick(released + 30_000);
    let half: u64 = exec.channels().iter().map(|&v| u64::from(v)).sum();
    assert!(half > 0 && half < first.iter().map(|&v| u64::from(v)).sum::<u64>());
    exec.tick(released + 60_000);
    assert!(
        exec.channels().iter().all(|&v| v == 0),
        "dark at the fade's end"
    );
}
