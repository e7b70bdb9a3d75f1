//! `commitd audit`: list, show, verify and export the audit log; keys and signed checkpoints
//! that anchor it outside the database.

use crate::audit::checkpoint::{check_lines, PublicKey, SigningKey};
use crate::audit::export::event_json;
use crate::audit::verify::{
    open_read_only, trigger_problems, verify_with_checkpoints, CheckpointResult, CheckpointStatus,
    ReadOnlyMode,
};
use crate::audit::{Anchor, AuditLog, Event, EventFilter, EventKind, ExportFormat};
use crate::config::Config;
use crate::store::Store;
use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDate, Utc};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the database is. Shared by every `audit` sub-command.
#[derive(clap::Args, Debug, Clone)]
pub struct DbArgs {
    /// Configuration file; its `database_url` and `data_dir` (and their COMMITD_DATABASE_URL
    /// and COMMITD_DATA_DIR environment overrides) say where the database is.
    #[arg(long, env = "COMMITD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB. Overrides the configuration
    /// [default: sqlite://<data-dir>/commitd.db].
    #[arg(long = "database")]
    pub database_url: Option<String>,

    /// Data directory of the embedded SQLite database (created on first run). Overrides
    /// the configuration [default: ./commitd-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// The database URL to use. Precedence: `--database`, then the configuration's
/// `database_url` (file, then COMMITD_DATABASE_URL), then SQLite in the data directory
/// (`--data-dir`, then the configuration's `data_dir`, then COMMITD_DATA_DIR).
pub fn database_url(
    flag_url: Option<&str>,
    flag_data_dir: Option<&Path>,
    mut config: Config,
) -> String {
    if let Some(url) = flag_url.map(str::trim).filter(|u| !u.is_empty()) {
        return url.to_string();
    }
    if let Some(dir) = flag_data_dir {
        config.data_dir = dir.to_path_buf();
    }
    config.database_url().expose().to_string()
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List events, oldest first (the last N with --limit).
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Show only the last N matching events.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only events of this kind (plan_computed, action_proposed, approved, rejected,
        /// proposal_expired, execution_requested, executed, failed, policy_blocked).
        #[arg(long)]
        kind: Option<String>,
        /// Only events at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Only events before this time (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        until: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one event with its payload, rationale and hashes.
    Show {
        #[command(flatten)]
        db: DbArgs,
        /// The event id (its position in the chain).
        id: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Walk the hash chain, check the signed checkpoints against it and the append-only
    /// triggers; one line per problem, non-zero exit on any. Opens the database read-only
    /// (no migrations, no writes): works on a copy and with a read-only role.
    Verify {
        #[command(flatten)]
        db: DbArgs,
        /// Also check that event ID still has hash HASH (a head printed by an earlier
        /// verify and kept elsewhere): detects events removed from the end of the log.
        #[arg(long, value_name = "ID:HASH")]
        anchor: Option<Anchor>,
        /// Signed checkpoints to check (JSON lines, as the daemon writes them)
        /// [default: [audit] checkpoint_file].
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
        /// Trusted checkpoint public key, 64 hex digits; repeat for rotated keys
        /// [default: [audit] checkpoint_public_key].
        #[arg(long = "public-key", value_name = "HEX")]
        public_keys: Vec<String>,
        /// Check the chain and the triggers only, even when checkpoints are configured.
        #[arg(long, conflicts_with_all = ["checkpoints", "public_keys"])]
        no_checkpoints: bool,
        /// Also print one line for every checkpoint that passed (by default: failures and a
        /// summary naming the newest that passed).
        #[arg(long, short)]
        verbose: bool,
    },
    /// Write a new ed25519 key for signing checkpoints (mode 0600; never overwrites) and print
    /// its public key, which verifiers need.
    Keygen {
        /// Where to write the private key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Verify the chain, sign its head and write the checkpoint to the configured sinks
    /// ([audit] checkpoint_file, checkpoint_webhook_url) now.
    Checkpoint {
        #[command(flatten)]
        db: DbArgs,
        /// The private key [default: [audit] checkpoint_key, env COMMITD_AUDIT_KEY_FILE].
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Append to this file instead of [audit] checkpoint_file.
        #[arg(long = "checkpoint-file", value_name = "FILE")]
        checkpoint_file: Option<PathBuf>,
    },
    /// Export events for finance as CSV or JSONL.
    Export {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// Only events at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Only events before this time (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        until: Option<String>,
        /// Only events of this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Write to this file (atomically: nothing is left behind on error) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(cmd))
}

async fn open(db: &DbArgs) -> anyhow::Result<AuditLog> {
    let config = Config::load(db.config.as_deref())?;
    let url = database_url(db.database_url.as_deref(), db.data_dir.as_deref(), config);
    let store = Store::connect(&url).await?;
    Ok(AuditLog::open(store))
}

async fn run_async(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::List {
            db,
            limit,
            kind,
            since,
            until,
            json,
        } => {
            let filter = filter(kind.as_deref(), since.as_deref(), until.as_deref())?;
            let log = open(&db).await?;
            let events = log.list(&filter, Some(limit)).await?;
            let mut out = std::io::stdout().lock();
            if json {
                for event in &events {
                    writeln!(out, "{}", event_json(event))?;
                }
            } else {
                print_table(&mut out, &events)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { db, id, json } => {
            let log = open(&db).await?;
            let Some(event) = log.get(id).await? else {
                bail!("no audit event with id {id}");
            };
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&event_json(&event))?
                )?;
            } else {
                print_event(&mut out, &event)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            db,
            anchor,
            checkpoints,
            public_keys,
            no_checkpoints,
            verbose,
        } => {
            let config = Config::load(db.config.as_deref())?;
            let url = database_url(
                db.database_url.as_deref(),
                db.data_dir.as_deref(),
                config.clone(),
            );
            let (store, mode) = open_read_only(&url).await?;
            if mode == ReadOnlyMode::Immutable {
                eprintln!("note: opened immutable (read-only directory): only for a copy that nobody writes");
            }
            let log = AuditLog::open(store);
            let checkpoints = if no_checkpoints {
                None
            } else {
                checkpoint_source(&config, checkpoints, &public_keys)?
            };
            let ok = verify(&log, anchor.as_ref(), checkpoints, verbose).await?;
            log.store().close().await;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Keygen { out } => {
            let key = SigningKey::generate_file(&out)?;
            eprintln!(
                "wrote a new ed25519 checkpoint key to {} (mode 0600). Configure it as [audit] checkpoint_key \
                 (or COMMITD_AUDIT_KEY_FILE), and give verifiers the public key below \
                 ([audit] checkpoint_public_key, or audit verify --public-key):",
                out.display()
            );
            println!("{}", key.public_key());
            Ok(ExitCode::SUCCESS)
        }
        Command::Checkpoint {
            db,
            key,
            checkpoint_file,
        } => {
            let mut config = Config::load(db.config.as_deref())?;
            if key.is_some() {
                config.audit.checkpoint_key = key;
            }
            if checkpoint_file.is_some() {
                config.audit.checkpoint_file = checkpoint_file;
            }
            if config.audit.checkpoint_key.is_none() {
                bail!("no checkpoint key: pass --key FILE, or set [audit] checkpoint_key or COMMITD_AUDIT_KEY_FILE");
            }
            if config.audit.checkpoint_file.is_none()
                && config.audit.checkpoint_webhook_url.is_none()
            {
                bail!("nowhere to write the checkpoint: pass --checkpoint-file FILE, or set [audit] checkpoint_file or checkpoint_webhook_url");
            }
            let url = database_url(
                db.database_url.as_deref(),
                db.data_dir.as_deref(),
                config.clone(),
            );
            // Reading is all a checkpoint needs: the database is not migrated nor written.
            let (store, _) = open_read_only(&url).await?;
            let log = AuditLog::open(store);
            let Some((mut writer, _)) = crate::startup::checkpointer(&config, log.clone())? else {
                bail!("no checkpoint key configured");
            };
            let outcome = writer.checkpoint(Utc::now()).await;
            log.store().close().await;
            let outcome = outcome?;
            let Some(signed) = outcome.signed else {
                println!("audit log is empty: nothing to checkpoint");
                return Ok(ExitCode::SUCCESS);
            };
            for sink in writer.sinks() {
                match outcome.failed.iter().find(|(name, _)| *name == sink.name()) {
                    Some((name, e)) => println!("checkpoint NOT written to {name}: {e}"),
                    None => eprintln!("checkpoint written to {}", sink.name()),
                }
            }
            println!("{}", signed.to_line());
            Ok(if outcome.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Export {
            db,
            format,
            since,
            until,
            kind,
            out,
        } => {
            let filter = filter(kind.as_deref(), since.as_deref(), until.as_deref())?;
            let format = match format {
                Format::Csv => ExportFormat::Csv,
                Format::Jsonl => ExportFormat::Jsonl,
            };
            let log = open(&db).await?;
            match out {
                None => {
                    let mut stdout = std::io::BufWriter::new(std::io::stdout());
                    log.export(&filter, format, &mut stdout).await?;
                }
                Some(path) => {
                    let count = export_to_file(&log, &filter, format, &path).await?;
                    eprintln!("exported {count} events to {}", path.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The checkpoint file and the trusted keys to check it with: the flags, else `[audit]`.
/// None when no checkpoint file is given or configured (the chain and triggers are still
/// checked). A file without a key is an error: an unverified signature proves nothing.
fn checkpoint_source(
    config: &Config,
    file: Option<PathBuf>,
    keys: &[String],
) -> anyhow::Result<Option<(PathBuf, Vec<PublicKey>)>> {
    let Some(file) = file.or_else(|| config.audit.checkpoint_file.clone()) else {
        if !keys.is_empty() {
            bail!("--public-key given but no checkpoint file: pass --checkpoints FILE or set [audit] checkpoint_file");
        }
        return Ok(None);
    };
    let texts: Vec<String> = if keys.is_empty() {
        config.audit.checkpoint_public_key.iter().cloned().collect()
    } else {
        keys.to_vec()
    };
    if texts.is_empty() {
        bail!(
            "checkpoints in {} but no public key to check them: pass --public-key HEX or set [audit] checkpoint_public_key",
            file.display()
        );
    }
    let keys = texts
        .iter()
        .map(|t| t.parse::<PublicKey>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((file, keys)))
}

/// Prints one line per finding and returns whether everything passed.
async fn verify(
    log: &AuditLog,
    anchor: Option<&Anchor>,
    checkpoints: Option<(PathBuf, Vec<PublicKey>)>,
    verbose: bool,
) -> anyhow::Result<bool> {
    let mut ok = true;
    let mut checked = Vec::new();
    let mut file_shown = String::new();
    let mut unreadable = false;
    // Every checkpoint line of the file, including the ones refused before the chain walk
    // (bad signature, foreign key, malformed): the summary counts them all.
    let mut lines_total = 0usize;
    if let Some((file, keys)) = &checkpoints {
        file_shown = file.display().to_string();
        match std::fs::read_to_string(file) {
            Ok(text) => {
                let lines = check_lines(&text, keys);
                lines_total = lines.len();
                for line in lines {
                    match line.outcome {
                        Ok(c) => checked.push((line.line, c)),
                        Err(e) => {
                            ok = false;
                            println!("checkpoint {file_shown} line {}: FAILED: {e}", line.line);
                        }
                    }
                }
            }
            Err(e) => {
                ok = false;
                unreadable = true;
                println!("checkpoints {file_shown}: FAILED: cannot read: {e}");
            }
        }
    }
    let (mut report, results) = if checkpoints.is_some() {
        let (report, results) = verify_with_checkpoints(log, &checked).await?;
        (report, Some(results))
    } else {
        (log.verify_anchored(anchor).await?, None)
    };
    if anchor.is_some() && results.is_some() {
        // The anchor is checked by its own walk (rare: a person passing --anchor as well).
        report = log.verify_anchored(anchor).await?;
    }
    match (&report.first_bad, &report.head) {
        (None, None) => println!("audit chain OK: empty"),
        (None, Some((id, hash))) => println!(
            "audit chain OK: {} events verified; head is event {id} with hash {hash}",
            report.verified
        ),
        (Some(bad), _) => {
            ok = false;
            println!(
                "audit chain BROKEN at event {}: {bad} ({} events before it verified)",
                bad.id, report.verified
            );
        }
    }
    if let Some(results) = results {
        let mut passed = 0usize;
        let mut newest: Option<&CheckpointResult> = None;
        for r in &results {
            if r.status == CheckpointStatus::Passed {
                passed += 1;
                if verbose {
                    println!("{file_shown}: {r}");
                }
                if newest.is_none_or(|n| {
                    r.checkpoint.checkpoint.event_id >= n.checkpoint.checkpoint.event_id
                }) {
                    newest = Some(r);
                }
            } else {
                ok = false;
                println!("{file_shown}: {r}");
            }
        }
        let total = lines_total;
        match newest {
            Some(n) => {
                let c = &n.checkpoint.checkpoint;
                let head = report.head.as_ref().map_or(0, |h| h.0);
                println!(
                    "checkpoints: {passed} of {total} passed ({file_shown}); the newest that passed is line {} (event {} at {}); {} events after it are not yet covered",
                    n.line,
                    c.event_id,
                    c.time,
                    (head - c.event_id).max(0)
                );
            }
            None if total == 0 && !unreadable => {
                println!("checkpoints: none in {file_shown}: nothing anchors the chain outside the database yet")
            }
            None => println!("checkpoints: 0 of {total} passed ({file_shown})"),
        }
    }
    for problem in trigger_problems(log.store()).await? {
        ok = false;
        println!("{problem}");
    }
    Ok(ok)
}

/// Writes to `PATH.partial` and renames on success, so finance never picks up half a file.
async fn export_to_file(
    log: &AuditLog,
    filter: &EventFilter,
    format: ExportFormat,
    path: &Path,
) -> anyhow::Result<u64> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("creating '{}'", partial.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let result = log.export(filter, format, &mut writer).await;
    let result = result.map_err(anyhow::Error::from).and_then(|count| {
        writer
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("writing '{}'", partial.display()))?;
        std::fs::rename(&partial, path)
            .with_context(|| format!("renaming '{}' to '{}'", partial.display(), path.display()))?;
        Ok(count)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn filter(
    kind: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
) -> anyhow::Result<EventFilter> {
    let kind = match kind {
        None => None,
        Some(k) => Some(EventKind::parse(k).with_context(|| {
            let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "--kind '{k}': unknown event kind (expected one of: {})",
                all.join(", ")
            )
        })?),
    };
    let since = since.map(|t| parse_time("--since", t)).transpose()?;
    let until = until.map(|t| parse_time("--until", t)).transpose()?;
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            bail!("--since {s} is not before --until {u}: the interval [since, until) is empty");
        }
    }
    Ok(EventFilter { kind, since, until })
}

/// RFC 3339 (any offset, converted to UTC) or a date meaning its midnight UTC.
fn parse_time(flag: &str, text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    bail!(
        "{flag} '{text}': expected an RFC 3339 time (2026-10-01T00:00:00Z) or a date (2026-10-01)"
    )
}

fn print_table(out: &mut impl Write, events: &[Event]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>6}  {:<27}  {:<19}  {:<16}  {:<24}  {:>16}",
        "ID", "TIME", "KIND", "ACTOR", "SUBJECT", "AMOUNT"
    )?;
    for e in events {
        let amount = e
            .amount
            .as_ref()
            .map(|a| format!("{} {}", a.money, a.currency))
            .unwrap_or_default();
        writeln!(
            out,
            "{:>6}  {:<27}  {:<19}  {:<16}  {:<24}  {:>16}",
            e.id,
            crate::audit::canonical::format_time(e.time),
            e.kind().as_str(),
            e.actor,
            e.subject,
            amount
        )?;
    }
    Ok(())
}

fn print_event(out: &mut impl Write, e: &Event) -> anyhow::Result<()> {
    writeln!(out, "event      {}", e.id)?;
    writeln!(
        out,
        "time       {}",
        crate::audit::canonical::format_time(e.time)
    )?;
    writeln!(out, "kind       {}", e.kind())?;
    writeln!(out, "actor      {}", e.actor)?;
    writeln!(out, "subject    {}", e.subject)?;
    if let Some(a) = &e.amount {
        writeln!(out, "amount     {} {}", a.money, a.currency)?;
    }
    writeln!(
        out,
        "payload    {}",
        serde_json::to_string_pretty(&e.body.payload()?)?
    )?;
    writeln!(
        out,
        "rationale  {}",
        serde_json::to_string_pretty(&e.rationale)?
    )?;
    writeln!(out, "prev_hash  {}", e.prev_hash)?;
    writeln!(out, "hash       {}", e.hash)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_resolution_prefers_the_flags_then_the_configuration() {
        let mut config = Config::default();
        assert_eq!(
            database_url(
                Some("postgres://h/db"),
                Some(Path::new("x")),
                config.clone()
            ),
            "postgres://h/db"
        );
        let default = database_url(None, None, config.clone());
        assert!(
            default.starts_with("sqlite://commitd-data/commitd.db"),
            "{default}"
        );
        let from_flag = database_url(Some("  "), Some(Path::new("/var/lib/c")), config.clone());
        assert!(
            from_flag.starts_with("sqlite:///var/lib/c/commitd.db"),
            "{from_flag}"
        );
        config.database_url = Some(crate::config::Secret::new("postgres://cfg/db"));
        assert_eq!(
            database_url(None, Some(Path::new("d")), config),
            "postgres://cfg/db"
        );
    }

    #[test]
    fn times_parse_as_rfc3339_or_dates_and_bad_ones_name_the_flag() {
        assert_eq!(
            parse_time("--since", "2026-10-01").unwrap().to_rfc3339(),
            "2026-10-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("--since", "2026-10-01T02:00:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "2026-10-01T00:00:00+00:00"
        );
        let err = parse_time("--until", "yesterday").unwrap_err().to_string();
        assert!(err.contains("--until 'yesterday'"), "{err}");
        assert!(filter(Some("nope"), None, None).is_err());
        assert!(filter(None, Some("2026-10-02"), Some("2026-10-01")).is_err());
        assert_eq!(
            filter(Some("approved"), None, None).unwrap().kind,
            Some(EventKind::Approved)
        );
    }
}
