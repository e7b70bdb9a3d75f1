//! The HTTP API (axum): health, readiness, Prometheus metrics and the proposals API with bearer
//! tokens ([`server`], [`auth`]); plus the chat webhook notification ([`webhook`]).

pub mod auth;
pub mod server;
pub mod webhook;
