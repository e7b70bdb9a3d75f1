//! The deployment files (systemd, container, IAM policy, CI) checked as files.
//!
//! One test binary per area (each links the whole crate): one module per former test file.

#[path = "../common/mod.rs"]
mod common;

mod files;
