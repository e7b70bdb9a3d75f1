//! Ingest: FOCUS and synthetic inputs, their errors, and `commitd usage`.
//!
//! One test binary per area (each links the whole crate): one module per former test file.

#[path = "../common/mod.rs"]
mod common;

mod errors;
mod focus;
mod synth;
mod usage_cli;
