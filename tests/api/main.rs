//! The HTTP API: identities and tokens, and its transport over real sockets.
//!
//! One test binary per area (each links the whole crate): one module per former test file.

#[path = "../common/mod.rs"]
mod common;

mod identity;
mod transport;
