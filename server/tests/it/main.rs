//! The server's tests, one binary: the store and the API on SQLite and PostgreSQL, the role
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! matrix, bad input, and publishing through Mosquitto.

mod api;
mod common;
mod compliance;
mod edge;
mod pages;
mod publish;
mod store;
mod tokens;
mod web;
#[path = "../../../firmware-sim/tests/it/webdriver.rs"]
mod webdriver;
