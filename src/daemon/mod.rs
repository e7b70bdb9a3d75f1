//! The daemon: schedules, one cycle (plan -> policy -> proposals / execution -> audit), the
//! modes, graceful shutdown, systemd notification and the executor lease.

pub mod lease;
pub mod notify;
pub mod schedule;
