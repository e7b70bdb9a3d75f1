//! The optimizer: the LP, exchanges, Savings Plan returns, properties, and the CLI.
//!
//! One test binary per area (each links the whole crate): one module per former test file.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod exchange;
mod optimizer;
mod props;
mod sp_return;
