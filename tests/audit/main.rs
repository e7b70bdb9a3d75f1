//! The audit log: appends and the hash chain, signed checkpoints, the CLI, and the daemon writing it.
//!
//! One test binary per area (each links the whole crate): one module per former test file.

#[path = "../common/mod.rs"]
mod common;

mod audit_log;
mod checkpoints;
mod cli;
mod daemon;
