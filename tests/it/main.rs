//! End-to-end tests of the `nightscape` program, one binary: `scene check`, `scene render`,
//! `plan compile` and `plan verify` run as a user runs them.

mod api_fuzz;
mod calendar_cli;
mod dashboard;
mod fleet;
mod gateway_cli;
#[path = "../../benches/support/mosquitto.rs"]
mod mosquitto;
mod plan_cli;
mod power_cuts;
mod profile_cli;
mod render_cli;
mod rogue;
mod scene_check;
mod sim_cli;
mod soak;
mod system;
// Test helpers outside #[test] functions: a failed call is a failed test.
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "../../firmware-sim/tests/it/webdriver.rs"]
mod webdriver;
