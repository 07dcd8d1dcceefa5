//! `nightscape-core`: the pure heart of Nightscape.
//!
//! Everything here is a function of its arguments: no async, no sockets, no files, no clock.
//! The edges (the CLI, and later the server, gateway and simulator) read bytes and time and
//! hand them in as plain values.
//!
//! - [`addr`]: the address newtypes (DMX slot, sACN universe, Art-Net port-address, Modbus
//!   register) and the notations engineers write them in.
//! - [`model`]: the checked domain model — sites, gateways, controllers, fixtures, groups,
//!   controller profiles, the zone table — and the channel layouts derived from it.
//! - [`scene`]: scenes as layers of effects on groups or roles.
//! - [`show`]: show files (TOML) in, [`show::ShowLibrary`] and located diagnostics out.
//! - [`diag`]: diagnostics with stable codes, field paths and line/column locations.
//! - [`colour`]: linear RGB, whites by temperature, perceptual hue and saturation.
//! - [`limits`]: a site's colour limits, per pixel.
//! - [`render`]: scene + layout + time → frame → channel values, and back to emitted light.
//! - [`playback`]: cross-fades between cues.
//! - [`preview`]: pictures of a site's light.
//! - [`schema`]: JSON Schemas of the show files, generated from their types.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod addr;
pub mod calendar;
pub mod clock;
pub mod codec;
pub mod colour;
pub mod diag;
pub mod ids;
pub mod limits;
pub mod model;
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
