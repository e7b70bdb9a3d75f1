//! Writing signed checkpoints: verify what was appended since the last checkpoint, sign the
//! verified head, write it to every sink outside the database. The daemon runs
//! [`Checkpointer::run`] beside its schedules (every `[audit] checkpoint_every` and once on
//! shutdown); `commitd audit checkpoint` calls [`Checkpointer::checkpoint`] once.
//!
//! Only a head that verified is signed, and the hash signed is the one this process verified,
//! not one read again later: a checkpoint never vouches for a chain that was already broken,
//! and a chain rewritten behind the checkpointer's back stops it (the next event no longer
//! links to the hash it remembers) instead of being blessed.
//!
//! A sink that fails is logged at error level, counted in [`CheckpointHealth`] and retried
//! (sooner than the period, with backoff); it never stops the daemon.

use super::checkpoint::{SignedCheckpoint, SigningKey};
use super::log::{check_link, AuditError, AuditLog, BadEvent};
use super::GENESIS_HASH;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// POSTs a JSON body somewhere; the error is a one-line message that never contains a secret
/// URL. (A function rather than the webhook client itself, so that `audit` does not depend on
/// `api`: the composition root passes `notify::chat::WebhookClient::post_json` in.)
pub type PostJson =
    Arc<dyn Fn(Value) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A [`PostJson`] from an async function or closure.
pub fn post_json<F, Fut>(f: F) -> PostJson
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(
        move |body: Value| -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
            Box::pin(f(body))
        },
    )
}

/// Where checkpoints go: somewhere the database's owner cannot rewrite along with it.
#[derive(Clone)]
pub enum Sink {
    /// Append-only JSON lines, one checkpoint per line, fsync'd after each.
    File(PathBuf),
    /// A JSON POST of the checkpoint line's object to a URL (never shown: it may be a secret).
    Webhook(PostJson),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Sink {
    /// For logs and messages: the file's path, or just "webhook".
    pub fn name(&self) -> String {
        match self {
            Sink::File(path) => format!("file {}", path.display()),
            Sink::Webhook(_) => "webhook".to_string(),
        }
    }

    async fn write(&self, signed: &SignedCheckpoint) -> Result<(), String> {
        match self {
            Sink::File(path) => {
                let path = path.clone();
                let line = signed.to_line();
                tokio::task::spawn_blocking(move || append_line(&path, &line))
                    .await
                    .map_err(|e| format!("writer task: {e}"))?
                    .map_err(|e| e.to_string())
            }
            Sink::Webhook(post) => post(signed.to_json()).await,
        }
    }
}

/// Appends `line` and a newline to `path` (created 0640 if missing) in one write, then fsyncs
/// the file (and the directory, when the file is new, so the file itself survives a crash).
/// O_APPEND keeps concurrent writers (two replicas on one file) from interleaving lines.
pub fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let with_path =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let existed = path.exists();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(with_path)?;
    let mut bytes = Vec::with_capacity(line.len() + 2);
    // A torn last line (a crash mid-write) must not swallow this one: start on a new line.
    let len = file.metadata().map_err(with_path)?.len();
    if len > 0 {
        use std::io::{Read, Seek, SeekFrom};
        let mut reader = std::fs::File::open(path).map_err(with_path)?;
        reader.seek(SeekFrom::Start(len - 1)).map_err(with_path)?;
        let mut last = [0u8; 1];
        reader.read_exact(&mut last).map_err(with_path)?;
        if last[0] != b'\n' {
            bytes.push(b'\n');
        }
    }
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    file.write_all(&bytes).map_err(with_path)?;
    file.sync_data().map_err(with_path)?;
    if !existed {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(with_path)?;
        }
    }
    Ok(())
}

/// What a metric or health check can show about checkpointing (read with `Ordering::Relaxed`).
#[derive(Debug, Default)]
pub struct CheckpointHealth {
    /// Checkpoints written to every sink.
    pub written: AtomicU64,
    /// Sink writes that failed, all sinks together, since start.
    pub sink_failures: AtomicU64,
    /// Failed attempts in a row (any sink failing, or the chain not verifying); 0 when the
    /// last attempt wrote everywhere.
    pub consecutive_failures: AtomicU32,
    /// Unix seconds of the last checkpoint written to every sink; 0 before the first.
    pub last_success_unix: AtomicI64,
    /// The event id of that checkpoint.
    pub last_event_id: AtomicI64,
}

/// Why no checkpoint could be signed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointRunError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("audit chain BROKEN at {0}: no checkpoint signed")]
    ChainBroken(BadEvent),
    #[error(transparent)]
    Sign(#[from] super::checkpoint::CheckpointError),
}

/// The result of one attempt.
#[derive(Debug)]
pub struct CheckpointOutcome {
    /// The checkpoint signed; None when the log is empty (nothing to anchor yet).
    pub signed: Option<SignedCheckpoint>,
    /// Sinks that failed, with the reason (the others got the checkpoint).
    pub failed: Vec<(String, String)>,
}

/// Signs and writes checkpoints of one log with one key to a set of sinks.
pub struct Checkpointer {
    log: AuditLog,
    key: SigningKey,
    sinks: Vec<Sink>,
    /// The head this process verified last (id, hash); None before the first walk or while
    /// the log is empty.
    verified: Option<(i64, String)>,
    health: Arc<CheckpointHealth>,
}

impl Checkpointer {
    pub fn new(log: AuditLog, key: SigningKey, sinks: Vec<Sink>) -> Checkpointer {
        Checkpointer {
            log,
            key,
            sinks,
            verified: None,
            health: Arc::new(CheckpointHealth::default()),
        }
    }

    pub fn health(&self) -> Arc<CheckpointHealth> {
        self.health.clone()
    }

    pub fn sinks(&self) -> &[Sink] {
        &self.sinks
    }

    /// Verifies the events appended since the last verified head (the whole chain the first
    /// time) and returns the new verified head.
    async fn verify_new(&mut self) -> Result<Option<(i64, String)>, CheckpointRunError> {
        let (after, mut prev) = match &self.verified {
            Some((id, hash)) => (*id, hash.clone()),
            None => (0, GENESIS_HASH.to_string()),
        };
        let mut expected = after + 1;
        let mut head = self.verified.clone();
        let mut bad = None;
        self.log
            .walk_after(after, |rec| {
                if let Some(problem) = check_link(&rec, expected, &prev) {
                    bad = Some(BadEvent {
                        id: rec.id,
                        problem,
                    });
                    return Ok(false);
                }
                prev = rec.hash.clone();
                expected += 1;
                head = Some((rec.id, rec.hash));
                Ok(true)
            })
            .await?;
        if let Some(bad) = bad {
            return Err(CheckpointRunError::ChainBroken(bad));
        }
        self.verified = head.clone();
        Ok(head)
    }

    /// One checkpoint now: verify, sign the verified head with time `now`, write to every sink.
    /// A sink failure is reported in the outcome (and counted), not as an error.
    pub async fn checkpoint(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<CheckpointOutcome, CheckpointRunError> {
        let head = match self.verify_new().await {
            Ok(head) => head,
            Err(e) => {
                self.health
                    .consecutive_failures
                    .fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let Some((id, hash)) = head else {
            return Ok(CheckpointOutcome {
                signed: None,
                failed: Vec::new(),
            });
        };
        let signed = self.key.sign(id, &hash, now)?;
        let mut failed = Vec::new();
        for sink in &self.sinks {
            if let Err(e) = sink.write(&signed).await {
                failed.push((sink.name(), e));
            }
        }
        let h = &self.health;
        if failed.is_empty() {
            h.written.fetch_add(1, Ordering::Relaxed);
            h.consecutive_failures.store(0, Ordering::Relaxed);
            h.last_success_unix
                .store(now.timestamp(), Ordering::Relaxed);
            h.last_event_id.store(id, Ordering::Relaxed);
        } else {
            h.sink_failures
                .fetch_add(failed.len() as u64, Ordering::Relaxed);
            h.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        }
        Ok(CheckpointOutcome {
            signed: Some(signed),
            failed,
        })
    }

    /// One attempt with its log lines; returns whether it fully succeeded.
    async fn attempt(&mut self, why: &str) -> bool {
        match self.checkpoint(Utc::now()).await {
            Ok(CheckpointOutcome { signed: None, .. }) => {
                tracing::debug!(why, "audit log empty: no checkpoint yet");
                true
            }
            Ok(CheckpointOutcome {
                signed: Some(s),
                failed,
            }) => {
                for (sink, error) in &failed {
                    tracing::error!(
                        sink = %sink,
                        error = %error,
                        event_id = s.checkpoint.event_id,
                        consecutive_failures = self.health.consecutive_failures.load(Ordering::Relaxed),
                        "audit checkpoint not written to a sink; will retry"
                    );
                }
                if failed.is_empty() {
                    tracing::info!(
                        why,
                        event_id = s.checkpoint.event_id,
                        hash = %s.checkpoint.hash,
                        sinks = self.sinks.len(),
                        "audit checkpoint written"
                    );
                }
                failed.is_empty()
            }
            Err(e) => {
                tracing::error!(error = %e, why, "audit checkpoint failed; will retry");
                false
            }
        }
    }

    /// Runs until `shutdown` turns true (or its sender is dropped): a checkpoint at start,
    /// then every `every`, then a last one on shutdown. After a failure the next attempt comes
    /// sooner (5 s, doubling, at most `every`), so a sink that was down briefly is caught up.
    pub async fn run(mut self, every: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = Duration::from_secs(5);
        let mut ok = self.attempt("start").await;
        loop {
            let wait = if ok {
                backoff = Duration::from_secs(5);
                every
            } else {
                let w = backoff.min(every);
                backoff = (backoff * 2).min(every);
                w
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {
                    ok = self.attempt(if ok { "periodic" } else { "retry" }).await;
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        self.attempt("shutdown").await;
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_line_adds_lines_and_repairs_a_torn_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.jsonl");
        append_line(&path, "{\"a\":1}").unwrap();
        append_line(&path, "{\"a\":2}").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        // A crash left half a line: the next line still starts on its own.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"a\":").unwrap();
        append_line(&path, "{\"a\":3}").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().last(), Some("{\"a\":3}"));
        assert_eq!(text.lines().count(), 4);
        let err = append_line(&dir.path().join("no/such/dir/cp.jsonl"), "x").unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}
