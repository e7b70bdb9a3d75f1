//! CLI commands end to end over the binary: plan with its audit trail, the finance report.
//!
//! One test binary per area (each links the whole crate): one module per former test file.

#[path = "../common/mod.rs"]
mod common;

mod plan_audit;
mod report;
