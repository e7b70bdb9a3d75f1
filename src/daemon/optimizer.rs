//! The planner that computes a plan from the configured source (ingest -> forecast -> optimize).
//!
//! The forecast and optimize modules are being merged; until they are, this build can only
//! replay plans (`[daemon] plan_file`) and says so instead of pretending to plan.

use super::plan::Planner;
use crate::config::Config;
use std::sync::Arc;

pub fn planner(_config: &Config) -> Result<Arc<dyn Planner>, String> {
    Err("this build cannot compute plans yet (the optimizer is not merged): set [daemon] plan_file to a plan (JSON) to run the daemon".into())
}
