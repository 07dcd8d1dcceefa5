//! `nightscape-gateway`: the box at each site that plays its signed plan on its own — also
//! when the network, the server or the broker is down — and drives the site's controllers.
//!
//! [`runtime::start`] runs the whole gateway (`nightscape gateway run` is a thin shell over
//! it). Its parts:
//! - [`runtime`]: the task tree — start from the data directory, frames on a frame-clock
//!   thread, plans, overrides and commands from the broker with their acks, events (journaled
//!   while offline), telemetry, faults, the safe state at shutdown;
//! - [`trust`]: whether the wall clock is believed, and the wall time played;
//! - [`journal`]: events kept on disk until the broker takes them;
//! - [`commission`]: ArtPoll discovery and a Modbus probe of the plan's controllers;
//! - [`agent`]: the MQTT agent owning the rumqttc event loop — subscriptions after every
//!   connection, inbound plans, overrides and commands, outbound state (with a last will),
//!   acks, telemetry and events;
//! - [`sieve`]: between the broker's socket and rumqttc — oversized messages dropped,
//!   acknowledged and reported instead of ending the connection; the keep-alive pings;
//! - [`config`]: the gateway's configuration file, checked with located errors, and its
//!   defaults (`nightscape gateway print-default-config`);
//! - [`store`]: the data directory — plans and overrides documents written atomically with
//!   the previous good one kept, and read back at start with a fallback when the current one
//!   is damaged;
//! - [`executor`]: the frame logic — cue from the schedule and overrides at the wall time,
//!   cross-fades from what is on output, render and limits into layout channels, plan changes
//!   without a jump;
//! - [`guard`]: where each controller is sent (the endpoint map replacing field addresses),
//!   and the `loopback_only` refusal of anything else;
//! - [`dmx`]: the Art-Net and sACN sender — universes gathered through the output map,
//!   changed ones sent at once and the others kept alive, in batches, each frame
//!   synchronized, streams terminated at shutdown;
//! - [`dmx_mqtt`]: the DMX-over-MQTT publisher (on change at most 10 Hz, every 5 s otherwise);
//! - [`modbus`]: the Modbus TCP driver of one controller — start-up sequence, changed
//!   registers, refresh, deadlines, reconnects, polls, rewrites after a device reboot.

pub mod agent;
pub mod commission;
pub mod config;
pub mod dmx;
pub mod dmx_mqtt;
pub mod executor;
pub mod guard;
pub mod journal;
pub mod modbus;
pub mod runtime;
pub mod sieve;
pub mod store;
pub mod trust;
