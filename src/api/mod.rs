//! The HTTP API (axum): health, readiness, Prometheus metrics and the proposals API with bearer
//! tokens ([`server`], tokens in [`crate::identity`]), the web console under `/ui/`
//! ([`console`]: sessions opened with the same tokens), both deciding through [`decide`];
//! served with TLS and limits by [`transport`].
//!
//! It reads and writes through `proposals`, `audit`, `identity` and `telemetry` only: never a
//! market (no request reaches a provider) and never `service` (an approval wakes the executor
//! through a `Notify` the composition root shares, see [`crate::startup`]).

pub mod console;
pub mod decide;
pub mod server;
pub mod transport;
