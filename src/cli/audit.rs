//! `commitd audit`: list, show, verify and export the audit log.

use crate::audit::export::event_json;
use crate::audit::{Anchor, AuditLog, Event, EventFilter, EventKind, ExportFormat};
use crate::store::{self, Store};
use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDate, Utc};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the database is. Shared by every `audit` sub-command.
#[derive(clap::Args, Debug, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB
    /// [default: sqlite://<data-dir>/commitd.db].
    // hide_env_values: the URL may carry a password, and --help must not print it.
    #[arg(
        long = "database",
        env = "COMMITD_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Data directory of the embedded SQLite database (created on first run).
    #[arg(long, env = "COMMITD_DATA_DIR", default_value = "./commitd-data")]
    pub data_dir: PathBuf,
}

/// The database URL to use: `--database`/`COMMITD_DATABASE_URL`, else the embedded SQLite
/// file in the data directory. One function, so the configuration file can take over here.
pub fn database_url(database_url: Option<&str>, data_dir: &Path) -> String {
    match database_url {
        Some(url) if !url.trim().is_empty() => url.trim().to_string(),
        _ => store::default_sqlite_url(data_dir),
    }
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
    /// Walk the hash chain; exits non-zero and names the first bad event if it is broken.
    Verify {
        #[command(flatten)]
        db: DbArgs,
        /// Also check that event ID still has hash HASH (a head printed by an earlier
        /// verify and kept elsewhere): detects events removed from the end of the log.
        #[arg(long, value_name = "ID:HASH")]
        anchor: Option<Anchor>,
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
    let url = database_url(db.database_url.as_deref(), &db.data_dir);
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
        Command::Verify { db, anchor } => {
            let log = open(&db).await?;
            let report = log.verify_anchored(anchor.as_ref()).await?;
            match (&report.first_bad, &report.head) {
                (None, None) => println!("audit chain OK: empty"),
                (None, Some((id, hash))) => println!(
                    "audit chain OK: {} events verified; head is event {id} with hash {hash}",
                    report.verified
                ),
                (Some(bad), _) => {
                    println!(
                        "audit chain BROKEN at event {}: {bad} ({} events before it verified)",
                        bad.id, report.verified
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
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
    fn url_resolution_prefers_the_flag_then_the_data_dir() {
        assert_eq!(
            database_url(Some("postgres://h/db"), Path::new("x")),
            "postgres://h/db"
        );
        assert_eq!(
            database_url(None, Path::new("/var/lib/commitd")),
            "sqlite:///var/lib/commitd/commitd.db"
        );
        assert_eq!(
            database_url(Some("  "), Path::new("d")),
            "sqlite://d/commitd.db"
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
