//! The service (`commitd run`) end to end: cycles, sources (FOCUS, Cost Explorer), the look-back planner, returns, anomaly alerts and the purchase hold.
//!
//! One test binary per area (each links the whole crate): one module per former test file.

#[path = "../common/mod.rs"]
mod common;

mod anomaly;
mod aws;
mod azure;
mod cost_explorer;
mod cycle;
mod equivalence;
mod focus;
mod lookback;
mod returns;
