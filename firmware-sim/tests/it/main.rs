//! The simulator over real sockets: clients drive each protocol as a gateway would, and
//! what the simulated controllers show is read back through the state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod artnet;
mod bad_input;
mod common;
mod dmx_mqtt;
mod modbus;
mod preview;
mod reference;
mod sacn;
mod webdriver;
