//! Tests that need the test kit's `commitd-dev` binary (the product binary carries no failpoint):
//! crashes at every execution step and faults injected into the AWS test server, over the same
//! `commitd run` code path; and the development commands themselves.
//!
//! One test binary (each links the whole crate): one module per former test file. The helpers
//! are the root crate's `tests/common`, whose `bin()` is `commitd-dev` here.

#[path = "../../../../tests/common/mod.rs"]
mod common;

mod commitd_dev;
mod crash;
mod daemon_faults;
