//! The helpers every test binary shares (included as `mod common;` by each area's `main.rs`,
//! and by the test kit's `dev` binary through a `#[path]`).
//!
//! - [`daemon`]: a working directory for `commitd run`, the binary spawned on it, a tiny HTTP
//!   client;
//! - [`app`]: [`app::spawn_app`], the API served in process on port 0 over a fresh database;
//! - [`db`]: a fresh database: a SQLite file in a temp dir, or a throwaway PostgreSQL database
//!   when `COMMITD_TEST_DATABASE_URL` is set;
//! - [`pg`]: whether the PostgreSQL tests run; [`audit`]: audit-log fixtures; [`moto`]: moto as
//!   a child process; [`shared`]: the shared scenarios and FOCUS samples.

#![allow(dead_code, unused_imports)]

pub mod app;
pub mod audit;
pub mod daemon;
pub mod db;
pub mod moto;
pub mod pg;
pub mod shared;

pub use app::{spawn_app, spawn_app_with};
