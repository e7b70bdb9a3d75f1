//! The HTTP API (axum): health, readiness, Prometheus metrics and the proposals API with bearer
//! tokens; plus the chat webhook notification.

pub mod auth;
pub mod webhook;
