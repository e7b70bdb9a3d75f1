//! CLI commands end to end over the binary: plan with its audit trail, the finance report,
//! anomalies, assess.
//!
//! One test binary per area (each links the whole crate): one module per former test file.

#[path = "../common/mod.rs"]
mod common;

mod anomalies;
mod assess;
mod plan_audit;
mod report;
