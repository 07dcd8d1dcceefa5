//! The core's integration tests, one binary (so the crate links once): addressing and the
//! output map, limits and caps, codecs, plans, rendering, schedules and sun times.

mod addressing;
mod calendars;
mod caps;
mod codecs;
mod common;
mod live;
mod output;
mod plan;
mod render;
mod schedule;
mod sun;
