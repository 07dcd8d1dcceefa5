//! Cue transitions: cross-fades from whatever is on output — also in the middle of another
//! fade — to the new cue, with every scene involved still running while it fades.
//!
//! The playback keeps the cues that are still visible, oldest first. The output is the
//! oldest cue's frame, faded step by step into each newer one by that cue's progress; when a
//! cue's fade completes, everything older is invisible and dropped. A new cue therefore
//! starts from exactly what was shown the instant before it, whatever was going on.

use std::sync::Arc;
use std::time::Duration;

use crate::model::Level;
use crate::render::{CompiledScene, Frame, Layout, render};
use crate::scene::SceneId;

/// Past this many overlapping fades the oldest is dropped (a visible jump, but bounded work
/// when cues arrive faster than they fade).
const MAX_LAYERS: usize = 6;

#[derive(Debug, Clone)]
struct Cue {
    scene: Option<Arc<CompiledScene>>,
    brightness: f32,
    start_ms: i64,
    fade_ms: i64,
}

impl Cue {
    fn progress(&self, t_ms: i64) -> f32 {
        if self.fade_ms <= 0 || t_ms >= self.start_ms + self.fade_ms {
            1.0
        } else if t_ms <= self.start_ms {
            0.0
        } else {
            (t_ms - self.start_ms) as f32 / self.fade_ms as f32
        }
    }
}

/// What plays on one layout, with its transitions.
#[derive(Debug, Clone, Default)]
pub struct Playback {
    cues: Vec<Cue>,
    scratch: Option<Frame>,
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
            scene,
            brightness: brightness.get() as f32,
            start_ms: t_ms,
            fade_ms: i64::try_from(fade.as_millis()).unwrap_or(i64::MAX),
        });
    }

    /// The scene being faded to (or shown), if any.
    pub fn current(&self) -> Option<&SceneId> {
        self.cues
            .last()
            .and_then(|c| c.scene.as_ref())
            .map(|s| &s.id)
    }

    /// Whether a fade is still running at `t_ms`.
    pub fn fading(&self, t_ms: i64) -> bool {
        self.cues.len() > 1 || self.cues.last().is_some_and(|c| c.progress(t_ms) < 1.0)
    }

    /// Renders what is on output at `t_ms` into `frame`.
    pub fn render(&mut self, layout: &Layout, t_ms: i64, frame: &mut Frame) {
        if let Some(done) = self.cues.iter().rposition(|c| c.progress(t_ms) >= 1.0) {
            self.cues.drain(..done);
        }
        frame.pixels.clear();
        frame
            .pixels
            .resize(layout.pixel_count(), crate::colour::Rgb::BLACK);
        let mut scratch = self.scratch.take().unwrap_or_else(|| Frame::new(layout));
        for (i, cue) in self.cues.iter().enumerate() {
            let weight = if i == 0 { 1.0 } else { cue.progress(t_ms) };
            match &cue.scene {
                Some(scene) => render(scene, layout, t_ms, &mut scratch),
                None => {
                    scratch.pixels.clear();
                    scratch
                        .pixels
                        .resize(layout.pixel_count(), crate::colour::Rgb::BLACK);
                }
            }
            for (out, c) in frame.pixels.iter_mut().zip(&scratch.pixels) {
                *out = out.lerp(c.scale(cue.brightness), weight);
            }
        }
        self.scratch = Some(scratch);
    }
}
