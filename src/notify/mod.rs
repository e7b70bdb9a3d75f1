//! Telling people and the supervisor what the service does: chat messages for new proposals
//! and executions that need a person ([`chat`]), and systemd's readiness and watchdog
//! protocol ([`systemd`]).
//!
//! Used by `service` (chat) and `startup` (systemd); it depends on nothing of theirs, so the
//! API and the cycle can share it without importing each other.

pub mod chat;
pub mod systemd;
