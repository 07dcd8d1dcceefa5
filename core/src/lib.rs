//! `nightscape-core`: the pure heart of Nightscape.
//!
//! Everything here is a function of its arguments: no async, no sockets, no files, no clock.
//! The edges (the CLI, the server, the gateway and the simulator) read bytes and time and
//! hand them in as plain values. The types they need most are re-exported here.
//!
//! - [`ids`]: identifiers (site, gateway, controller, fixture, group, profile, role, scene,
//!   calendar) with `FromStr`, `Display` and serde.
//! - [`addr`]: the address newtypes (DMX slot, sACN universe, Art-Net port-address, Modbus
//!   register) and the notations engineers write them in.
//! - [`model`]: the checked domain model — sites, gateways, controllers, fixtures, groups,
//!   controller profiles, the zone table; `Level` and `TimeOfDay`.
//! - [`show`]: show files (TOML) in, [`ShowLibrary`] and located diagnostics out; a profile
//!   can be checked on its own.
//! - [`diag`]: diagnostics with stable codes, field paths and line/column locations.
//! - [`scene`]: scenes as layers of effects on groups or roles.
//! - [`colour`]: linear RGB, whites by temperature, perceptual hue and saturation.
//! - [`limits`]: a site's colour limits, per pixel.
//! - [`render`]: scene + [`Layout`] + time → frame → channel values, and back to light.
//! - [`output`]: the [`OutputMap`] — where each layout channel goes on each controller
//!   (universe and slot, or Modbus channel), used by the checker, gateway and simulator.
//! - [`playback`]: cross-fades between cues, also across a change of layout.
//! - [`preview`]: pictures of a site's light.
//! - [`sun`], [`calendar`], [`schedule`]: sun times, calendars, and the schedule
//!   [`Evaluator`] (cues, transitions, overrides, curfew).
//! - [`night`]: a site's night (sunset to sunrise, the legal window, the curfew) and the
//!   compliance arithmetic over a gateway's reported cues.
//! - [`plan`]: signed plans and overrides documents, and how a gateway opens them.
//! - [`wire`]: the MQTT messages and topics.
//! - [`codec`]: Art-Net, sACN, Modbus under a profile, DMX over MQTT — pure and byte-tested.
//! - [`clock`]: the `Clock` trait and a virtual clock.
//! - [`schema`]: JSON Schemas of the show files, generated from their types.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod addr;
pub mod calendar;
pub mod clock;
pub mod codec;
pub mod colour;
pub mod diag;
pub mod endpoints;
pub mod ids;
pub mod limits;
pub mod model;
pub mod night;
pub mod output;
pub mod plan;
pub mod playback;
pub mod preview;
pub mod render;
pub mod scene;
pub mod schedule;
pub mod schema;
pub mod show;
pub mod sun;
pub mod wire;

pub use ids::{
    CalendarId, ControllerId, FixtureId, GatewayId, GroupId, IdError, ProfileId, Role, SceneId,
    SiteId,
};
pub use model::{Level, Site, TimeOfDay};
pub use output::OutputMap;
pub use playback::Playback;
pub use render::{CompiledScene, Frame, Layout};
pub use schedule::{Cue, Evaluator};
pub use show::{Checked, ShowLibrary, SourceFile, check};

/// What the async edges hold across tasks must be shareable between threads.
#[cfg(test)]
mod thread_safe {
    fn shared<T: Send + Sync>() {}

    #[test]
    fn the_types_tasks_hold_are_send_and_sync() {
        shared::<crate::Layout>();
        shared::<crate::CompiledScene>();
        shared::<crate::Playback>();
        shared::<crate::Evaluator>();
        shared::<crate::OutputMap>();
        shared::<crate::ShowLibrary>();
        shared::<crate::codec::sacn::Receiver>();
        shared::<crate::codec::sacn::DataTemplate>();
        shared::<crate::codec::modbus::Poll>();
    }
}
