//! The executor's frame logic: what the gateway's controllers output at an instant.
//!
//! It holds the site's layout and output map, every scene compiled for them, the schedule
//! evaluator and the playback. At each tick it asks the evaluator for the cue at that wall
//! time with the overrides on top (blackout > override > rule, curfew last), starts a
//! cross-fade from what is on output when the cue changes (at once for a blackout), renders
//! the playback and encodes the frame with the site's limits into layout channels, which
//! the drivers gather through the output map. Because the cue is computed from the time,
//! not from what played before, a gateway that starts late plays what should be playing
//! now. A new plan moves the playback to its layout without a jump.
//!
//! This part is synchronous and clock-free (time is an argument); [`crate::runtime`] paces it
//! on the monotonic clock and feeds the drivers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nightscape_core::model::Level;
use nightscape_core::output::OutputMap;
use nightscape_core::render::{CompiledScene, Frame, Layout, encode};
use nightscape_core::schedule::{Cue, Evaluator, Override, local_date};
use nightscape_core::sun::Almanac;
use nightscape_core::{Playback, SceneId, ShowLibrary, SiteId};

/// Days of sun terms computed ahead when a plan is taken (the almanac computes beyond them
/// on demand, more slowly).
const ALMANAC_DAYS: i64 = 400;

/// Why a plan cannot be played.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("the plan has no site `{0}` (or the site has errors)")]
    NoSite(SiteId),
}

/// Everything compiled from one plan.
#[derive(Debug)]
struct Compiled {
    layout: Layout,
    map: OutputMap,
    scenes: BTreeMap<SceneId, Arc<CompiledScene>>,
    scene_fades: BTreeMap<SceneId, Duration>,
    evaluator: Evaluator,
}

fn compile(library: &ShowLibrary, site: &SiteId, now_ms: i64) -> Result<Compiled, ExecError> {
    let (Some(s), Some(layout), Some(map)) = (
        library.sites.get(site),
        library.layout(site),
        library.output_map(site),
    ) else {
        return Err(ExecError::NoSite(site.clone()));
    };
    let today = nightscape_core::schedule::epoch_day(local_date(now_ms, &s.time_zone));
    let almanac = Arc::new(Almanac::new(today - 2, today + ALMANAC_DAYS));
    let evaluator = library
        .evaluator(site, almanac)
        .ok_or_else(|| ExecError::NoSite(site.clone()))?;
    let scenes = library.compiled_scenes(&layout);
    let scene_fades = library
        .scenes_of(site)
        .map(|sc| (sc.id.clone(), sc.fade))
        .collect();
    Ok(Compiled {
        layout,
        map,
        scenes,
        scene_fades,
        evaluator,
    })
}

/// How far back a fade starts: one frame at 40 Hz.
const FIRST_STEP_MS: i64 = 25;

/// The frame logic of one site.
#[derive(Debug)]
pub struct Executor {
    site: SiteId,
    c: Compiled,
    playback: Playback,
    frame: Frame,
    channels: Vec<u8>,
    overrides: Vec<Override>,
    cue: Option<Cue>,
    /// Whether a tick has run: the first one shows its cue at once (after a restart the
    /// site plays what should be playing now, without fading up from dark).
    started: bool,
    /// For controllers that fade themselves: the same cues without the gateway's fades, and
    /// the fade of the last cue change, which such a controller is given instead.
    target: Option<Target>,
    /// The last tick changed the cue's cause alone.
    cause_changed: bool,
}

#[derive(Debug)]
struct Target {
    playback: Playback,
    frame: Frame,
    channels: Vec<u8>,
    fade: Duration,
}

impl Target {
    fn new(layout: &Layout) -> Target {
        Target {
            playback: Playback::new(),
            frame: Frame::new(layout),
            channels: vec![0; layout.channel_count()],
            fade: Duration::ZERO,
        }
    }
}

impl Executor {
    /// Starts on a plan's library at `now_ms`, dark until the first tick.
    pub fn new(library: &ShowLibrary, site: &SiteId, now_ms: i64) -> Result<Executor, ExecError> {
        let c = compile(library, site, now_ms)?;
        let frame = Frame::new(&c.layout);
        let channels = vec![0; c.layout.channel_count()];
        Ok(Executor {
            site: site.clone(),
            c,
            playback: Playback::new(),
            frame,
            channels,
            overrides: Vec::new(),
            cue: None,
            started: false,
            target: None,
            cause_changed: false,
        })
    }

    /// Also keeps the frame each cue fades to, for controllers that make the fade
    /// themselves ([`Executor::target_channels`], [`Executor::target_fade`]).
    pub fn with_targets(mut self) -> Executor {
        self.target = Some(Target::new(&self.c.layout));
        self
    }

    /// Takes a new plan: the running cues move to its layout (re-bound where it has their
    /// scenes, held as they look otherwise) and the next tick fades to its cue.
    pub fn change_plan(
        &mut self,
        library: &ShowLibrary,
        site: &SiteId,
        now_ms: i64,
    ) -> Result<(), ExecError> {
        let next = compile(library, site, now_ms)?;
        self.site = site.clone();
        let scenes = &next.scenes;
        self.playback
            .change_layout(&self.c.layout, &next.layout, now_ms, |id| {
                scenes.get(id).cloned()
            });
        if let Some(t) = &mut self.target {
            t.playback
                .change_layout(&self.c.layout, &next.layout, now_ms, |id| {
                    scenes.get(id).cloned()
                });
            t.frame = Frame::new(&next.layout);
            t.channels = vec![0; next.layout.channel_count()];
        }
        self.frame = Frame::new(&next.layout);
        self.channels = vec![0; next.layout.channel_count()];
        self.c = next;
        // Ask again at the next tick, against the new schedule.
        self.cue = None;
        Ok(())
    }

    /// The overrides in force (from the overrides document).
    pub fn set_overrides(&mut self, overrides: Vec<Override>) {
        self.overrides = overrides;
    }

    /// Renders `now_ms`; returns the cue when what shows changed at this tick (a change of
    /// cause alone, such as curfew ending on a dark site, is kept in [`Executor::cue`] but is
    /// no transition, as the core's `transitions` lists them).
    pub fn tick(&mut self, now_ms: i64) -> Option<&Cue> {
        let cue = self.c.evaluator.cue_with(now_ms, &self.overrides);
        let blackout = |c: &Cue| c.cause == nightscape_core::schedule::Cause::Blackout;
        let changed = match &self.cue {
            None => true,
            // A blackout cuts whatever is fading, even a fade to dark.
            Some(current) => !current.shows_same(&cue) || (blackout(&cue) && !blackout(current)),
        };
        self.cause_changed = !changed && self.cue.as_ref() != Some(&cue);
        if self.cause_changed {
            self.cue = Some(cue);
        } else if changed {
            let scene = cue
                .scene
                .as_ref()
                .and_then(|id| self.c.scenes.get(id))
                .cloned();
            // The cue's own fade, else its scene's; going dark (a rule ending, the curfew)
            // fades out over the outgoing scene's fade. A blackout and the first cue after a
            // start are immediate.
            let scene_fade = |c: Option<&Cue>| {
                c.and_then(|c| c.scene.as_ref())
                    .and_then(|id| self.c.scene_fades.get(id).copied())
            };
            let fade = if self.started && !blackout(&cue) {
                cue.fade
                    .or_else(|| scene_fade(Some(&cue)))
                    .or_else(|| scene_fade(self.cue.as_ref()))
                    .unwrap_or(Duration::ZERO)
            } else {
                Duration::ZERO
            };
            self.started = true;
            if let Some(t) = &mut self.target {
                t.playback
                    .cue(scene.clone(), cue.brightness, now_ms, Duration::ZERO);
                t.fade = fade;
            }
            // A fade starts a frame back, so the frame that goes out the moment a change
            // arrives already moves toward the new look: staff see their action answered
            // at once, not a frame later (a fade's first frame is otherwise what shows).
            // (Not after a plan change, which asks again with no cue known: the look must not
            // jump at the instant a plan is taken.)
            let fade_ms = i64::try_from(fade.as_millis()).unwrap_or(i64::MAX);
            let lead = if self.cue.is_some() {
                fade_ms.min(FIRST_STEP_MS)
            } else {
                0
            };
            let before = (lead > 0).then(|| self.channels.clone());
            self.playback
                .cue(scene, cue.brightness, now_ms - lead, fade);
            self.cue = Some(cue);
            self.render(now_ms);
            // A frame's worth of a long fade can be less than one step of every channel (City
            // Hall's 60 s late look fading out from full moves no channel in 25 ms: the
            // output curve is flat near the top): start further back until the first frame
            // shows a step, so the answer is seen at once whatever the fade.
            if let Some(before) = before {
                let mut lead = lead;
                while self.channels == before && lead < fade_ms {
                    lead = lead.saturating_mul(2).min(fade_ms);
                    self.playback.start_last_at(now_ms.saturating_sub(lead));
                    self.render(now_ms);
                }
            }
        }
        if !changed || self.cause_changed {
            self.render(now_ms);
        }
        if changed { self.cue.as_ref() } else { None }
    }

    /// Renders and encodes `now_ms` (and the targets of controllers that fade themselves).
    fn render(&mut self, now_ms: i64) {
        self.playback
            .render(&self.c.layout, now_ms, &mut self.frame);
        encode(&self.c.layout, &self.frame, Level::FULL, &mut self.channels);
        if let Some(t) = &mut self.target {
            t.playback.render(&self.c.layout, now_ms, &mut t.frame);
            encode(&self.c.layout, &t.frame, Level::FULL, &mut t.channels);
        }
    }

    /// Whether the last tick changed only why the cue plays (nothing shows differently).
    pub fn cause_changed(&self) -> bool {
        self.cause_changed
    }

    /// Whether the plan has scene `id` (an override naming another plays dark).
    pub fn has_scene(&self, id: &SceneId) -> bool {
        self.c.scenes.contains_key(id)
    }

    /// The layout channels of the last tick.
    pub fn channels(&self) -> &[u8] {
        &self.channels
    }

    /// What the last tick's cue fades to, without the gateway's fade (the channels of the
    /// last tick when targets are not kept).
    pub fn target_channels(&self) -> &[u8] {
        self.target.as_ref().map_or(&self.channels, |t| &t.channels)
    }

    /// The fade of the last cue change (0 for a blackout or the first cue).
    pub fn target_fade(&self) -> Duration {
        self.target.as_ref().map_or(Duration::ZERO, |t| t.fade)
    }

    pub fn map(&self) -> &OutputMap {
        &self.c.map
    }

    pub fn layout(&self) -> &Layout {
        &self.c.layout
    }

    /// What plays (as of the last tick).
    pub fn cue(&self) -> Option<&Cue> {
        self.cue.as_ref()
    }

    /// When the next change of cue is due after `now_ms` (within `days`), for a virtual clock
    /// that sleeps until then.
    pub fn next_change(&self, now_ms: i64, days: u32) -> Option<i64> {
        self.c
            .evaluator
            .next_transition(now_ms, days)
            .map(|t| t.at_ms)
    }
}
