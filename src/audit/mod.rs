//! The append-only, hash-chained audit log: every decision commitd takes, as one event.
//!
//! `audit` owns the event model ([`event`]: one struct per kind of fact), the canonical form
//! and hash chain ([`canonical`], pure), the log on a [`crate::store::Store`] ([`log`]:
//! serialized appends, reads, verification) and the finance exports ([`export`]).
//!
//! Append-only is enforced twice: the API has no update or delete, and the database refuses
//! them with triggers (see `migrations/`). Tampering that bypasses both (dropping a trigger,
//! editing the file) is detected by [`AuditLog::verify`], which names the first event whose
//! hash or link does not match. See `docs/audit.md`.
//!
//! The chain is anchored outside the database by signed checkpoints of its head
//! ([`checkpoint`]: the signed form and keys, pure; [`checkpointer`]: verify, sign, write to a
//! file or webhook; [`verify`]: checkpoints against the chain, the triggers, read-only opening).
//!
//! The log never reads the clock: callers pass each event's time.

pub mod canonical;
pub mod checkpoint;
pub mod checkpointer;
pub mod event;
pub mod export;
pub mod log;
pub mod verify;

pub use canonical::{EventRecord, GENESIS_HASH};
pub use event::{
    ActionProposed, Amount, AnomalyDetected, AnomalyEnded, Approved, CommitmentsStranded,
    ConsoleLogin, ConsoleLogout, Event, EventBody, EventKind, Executed, ExecutionRequested, Failed,
    IdleCommitment, NeedsReview, NewEvent, PlanComputed, PolicyBlocked, ProposalExpired, Rejected,
    TokenCreated, TokenRevoked, TokenRotated,
};
pub use export::ExportFormat;
pub use log::{Anchor, AuditError, AuditLog, BadEvent, EventFilter, Problem, VerifyReport};
