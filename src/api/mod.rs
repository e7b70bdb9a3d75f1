//! The HTTP API (axum): health, readiness, Prometheus metrics and the proposals API with bearer
//! tokens ([`server`], [`auth`]), served with TLS and limits by [`transport`]; plus the chat
//! webhook notification ([`webhook`]).

pub mod auth;
pub mod server;
pub mod transport;
pub mod webhook;
