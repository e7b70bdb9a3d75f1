//! The backtest: the harness, the planners it replays, exchanges, hour-by-hour billing, the CLI.
//!
//! One test binary per area (each links the whole crate): one module per former test file.

mod billing_hours;
mod cli;
mod exchanges;
mod harness;
mod planner;
