//! The AWS market: the real SDK against the test server and moto, faults, returns, role assumption, the CLI.
//!
//! One test binary per area (each links the whole crate): one module per former test file.

#[path = "../common/mod.rs"]
mod common;

mod assume_role;
mod cli;
mod faults;
mod market;
mod moto;
mod returns;
mod sdk;
