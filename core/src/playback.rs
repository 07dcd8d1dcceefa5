//! Cue transitions: cross-fades from whatever is on output — also in the middle of another
//! fade — to the new cue, with every scene involved still running while it fades.
//!
//! The playback keeps the cues that are still visible, oldest first. The output is the
//! oldest cue's frame, faded step by step into each newer one by that cue's progress; when a
//! cue's fade completes, everything older is invisible and dropped. A new cue therefore
//! starts from exactly what was shown the instant before it, whatever was going on.
//!
//! Scenes are compiled for one layout. When a new plan brings a new layout, the playback
//! [moves](Playback::change_layout) to it: cues whose scenes the new plan also has keep
//! running, re-bound to the new layout; otherwise what is on output is held as a still
//! picture (fixture by fixture, by id) and the next cue fades from it. Nothing is ever
//! rendered against a layout it was not compiled for.

use std::sync::Arc;
use std::time::Duration;

use crate::colour::Rgb;
use crate::model::Level;
use crate::render::{CompiledScene, Frame, Layout, render};
use crate::scene::SceneId;

/// Past this many overlapping fades the oldest is dropped (a visible jump, but bounded work
/// when cues arrive faster than they fade).
const MAX_LAYERS: usize = 6;

/// What a cue shows.
#[derive(Debug, Clone)]
enum Look {
    Dark,
    Scene(Arc<CompiledScene>),
    /// What was on output when the layout changed, moved to the new layout.
    Still(Arc<Frame>),
}

#[derive(Debug, Clone)]
struct Cue {
    look: Look,
    brightness: f32,
    start_ms: i64,
    fade_ms: i64,
}

impl Cue {
    fn progress(&self, t_ms: i64) -> f32 {
        let into = t_ms.saturating_sub(self.start_ms);
        if self.fade_ms <= 0 || into >= self.fade_ms {
            1.0
        } else if into <= 0 {
            0.0
        } else {
            (into as f64 / self.fade_ms as f64) as f32
        }
    }
}

/// What plays on one layout, with its transitions.
#[derive(Debug, Clone, Default)]
pub struct Playback {
    cues: Vec<Cue>,
    scratch: Option<Frame>,
    /// Cues skipped because their scene was compiled for another layout (a caller's mistake,
    /// shown dark rather than wrong).
    mismatches: u64,
}

impl Playback {
    pub fn new() -> Self {
        Playback::default()
    }

    /// Starts fading to `scene` at `brightness` from `t_ms`, over `fade` (0 = at once).
    /// `None` fades to dark.
    pub fn cue(
        &mut self,
        scene: Option<Arc<CompiledScene>>,
        brightness: Level,
        t_ms: i64,
        fade: Duration,
    ) {
        if self.cues.len() >= MAX_LAYERS {
            self.cues.remove(0);
        }
        self.cues.push(Cue {
            look: scene.map_or(Look::Dark, Look::Scene),
            brightness: brightness.get() as f32,
            start_ms: t_ms,
            fade_ms: i64::try_from(fade.as_millis()).unwrap_or(i64::MAX),
        });
    }

    /// Moves the start of the last cue (the fade under way) to `t_ms`.
    pub fn start_last_at(&mut self, t_ms: i64) {
        if let Some(c) = self.cues.last_mut() {
            c.start_ms = t_ms;
        }
    }

    /// The scene being faded to (or shown), if any.
    pub fn current(&self) -> Option<&SceneId> {
        match self.cues.last().map(|c| &c.look) {
            Some(Look::Scene(s)) => Some(&s.id),
            _ => None,
        }
    }

    /// Whether a fade is still running at `t_ms`.
    pub fn fading(&self, t_ms: i64) -> bool {
        self.cues.len() > 1 || self.cues.last().is_some_and(|c| c.progress(t_ms) < 1.0)
    }

    /// How many times a cue was shown dark because its scene belongs to another layout.
    pub fn mismatches(&self) -> u64 {
        self.mismatches
    }

    /// Moves the playback from layout `old` to `new` at `t_ms`. `rebind` gives the scene of
    /// the same id compiled for `new`, if the new plan has it. When every running cue's scene
    /// is rebound, the cues go on as they were (fades keep their progress); otherwise what
    /// `old` shows at `t_ms` is held on `new` as a still, fixture by fixture by id (fixtures
    /// that are new or changed size start dark), and the next cue fades from it.
    pub fn change_layout(
        &mut self,
        old: &Layout,
        new: &Layout,
        t_ms: i64,
        rebind: impl Fn(&SceneId) -> Option<Arc<CompiledScene>>,
    ) {
        let rebound: Option<Vec<Look>> = self
            .cues
            .iter()
            .map(|c| match &c.look {
                Look::Dark => Some(Look::Dark),
                Look::Scene(s) => rebind(&s.id)
                    .filter(|n| n.layout() == new.fingerprint())
                    .map(Look::Scene),
                Look::Still(_) => None,
            })
            .collect();
        if let Some(looks) = rebound {
            for (cue, look) in self.cues.iter_mut().zip(looks) {
                cue.look = look;
            }
            self.scratch = None;
            return;
        }
        let mut shown = Frame::new(old);
        self.render(old, t_ms, &mut shown);
        let mut still = Frame::new(new);
        for f in new.fixtures() {
            let Some(before) = old
                .fixture_index(&f.id)
                .map(|i| &old.fixtures()[i])
                .filter(|o| o.pixels.len() == f.pixels.len())
            else {
                continue;
            };
            if let (Some(to), Some(from)) = (
                still.pixels.get_mut(f.pixels.clone()),
                shown.pixels.get(before.pixels.clone()),
            ) {
                to.copy_from_slice(from);
            }
        }
        self.cues = vec![Cue {
            look: Look::Still(Arc::new(still)),
            brightness: 1.0,
            start_ms: t_ms,
            fade_ms: 0,
        }];
        self.scratch = None;
    }

    /// Renders what is on output at `t_ms` into `frame`.
    pub fn render(&mut self, layout: &Layout, t_ms: i64, frame: &mut Frame) {
        if let Some(done) = self.cues.iter().rposition(|c| c.progress(t_ms) >= 1.0) {
            self.cues.drain(..done);
        }
        let n = layout.pixel_count();
        frame.pixels.clear();
        frame.pixels.resize(n, Rgb::BLACK);
        let mut scratch = self.scratch.take().unwrap_or_else(|| Frame::new(layout));
        for (i, cue) in self.cues.iter().enumerate() {
            let weight = if i == 0 { 1.0 } else { cue.progress(t_ms) };
            match &cue.look {
                Look::Scene(scene) => {
                    if render(scene, layout, t_ms, &mut scratch).is_err() {
                        self.mismatches += 1;
                    }
                }
                Look::Still(still) if still.pixels.len() == n => {
                    scratch.pixels.clone_from(&still.pixels);
                }
                Look::Still(_) | Look::Dark => {
                    scratch.pixels.clear();
                    scratch.pixels.resize(n, Rgb::BLACK);
                }
            }
            for (out, c) in frame.pixels.iter_mut().zip(&scratch.pixels) {
                *out = out.lerp(c.scale(cue.brightness), weight);
            }
        }
        self.scratch = Some(scratch);
    }
}
