//! The `nightscape` program: one command for every part of the system.
//!
//! [`cli`] holds the command-line surface; each subcommand is a thin layer that reads files,
//! calls the pure core and prints. The server, gateway and simulator arrive as their own
//! crates and are started from here.

pub mod calendar;
pub mod cli;
pub mod clock;
pub mod gateway;
pub mod library;
pub mod mqtt_acl;
pub mod plan;
pub mod process;
pub mod profile;
pub mod render;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod sim;
pub mod up;
