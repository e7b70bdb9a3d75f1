//! The HTTP API: identities and tokens, its transport over real sockets, and the web console
//! (over HTTP, and in a real headless Chromium).
//!
//! One test binary per area (each links the whole crate): one module per former test file.

#[path = "../common/mod.rs"]
mod common;

mod console;
mod console_browser;
mod identity;
mod transport;
