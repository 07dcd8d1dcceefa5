//! `nightscape-gateway`: the box at each site that plays its signed plan on its own — also
//! when the network, the server or the broker is down — and drives the site's controllers.
//!
//! Built so far (the rest of issue 10 follows: the MQTT agent, the executor and the drivers):
//! - [`agent`]: the MQTT agent owning the rumqttc event loop — subscriptions after every
//!   connection, inbound plans, overrides and commands, outbound state (with a last will),
//!   acks, telemetry and events;
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
//!   changed ones sent at once and the others kept alive, streams terminated at shutdown;
//! - [`dmx_mqtt`]: the DMX-over-MQTT publisher (on change at most 10 Hz, every 5 s otherwise);
//! - [`modbus`]: the Modbus TCP driver of one controller — start-up sequence, changed
//!   registers, refresh, deadlines, reconnects, polls, rewrites after a device reboot.

pub mod agent;
pub mod config;
pub mod dmx;
pub mod dmx_mqtt;
pub mod executor;
pub mod guard;
pub mod journal;
pub mod modbus;
pub mod runtime;
pub mod store;
pub mod trust;
