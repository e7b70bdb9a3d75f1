//! The forecaster: synthetic accuracy checks and the CLI.
//!
//! One test binary per area (each links the whole crate): one module per former test file.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod synthetic;
