//! `commitd tokens ...` (create, rotate, revoke, list API tokens) and who is acting at the
//! command line ([`resolve_actor`]), shared with `commitd proposals approve/reject`.
//!
//! A person at the command line is identified by an API token (`--token-file PATH` or
//! `COMMITD_TOKEN`), authenticated against the same token store and roles as the HTTP API, or
//! by the OS user the process runs as, mapped in `[identity] os_users`. The OS user is the real
//! user id looked up in the user database (getuid -> getpwuid_r), never `$USER`, which anyone
//! can set to anything. A name typed on the command line (`--as`) is no identity at all and is
//! refused.

use super::proposals::ConfigArg;
use crate::config::Config;
use crate::identity::{Role, TokenStore};
use crate::store::Store;
use anyhow::{bail, Context};
use chrono::{DateTime, Duration, Utc};
use std::path::PathBuf;
use std::process::ExitCode;

/// How a person proves who they are at the command line.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct IdentityArgs {
    /// A file holding your API token (`cd_...`); or set COMMITD_TOKEN. Without either, your OS
    /// user must be mapped in [identity] os_users.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

/// What `--as` now answers: it names nobody in particular.
pub const AS_REFUSED: &str = "--as is no longer accepted: anyone can type any name. Prove who you \
     are with an approver token (--token-file PATH, or COMMITD_TOKEN) or have your OS user mapped \
     in [identity] os_users of the configuration (docs/operations.md, \"Identity\")";

/// The login name of the process's real user id, from the user database.
pub fn os_login() -> anyhow::Result<String> {
    // SAFETY: getuid has no preconditions. getpwuid_r writes only into `pwd` and `buf`, both
    // owned here and alive for the call; `pw_name` points into `buf`, read before it is dropped.
    let uid = unsafe { libc::getuid() };
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf: Vec<libc::c_char> = vec![0; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        bail!("user id {uid} has no entry in the user database (getpwuid)");
    }
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
        .to_str()
        .with_context(|| format!("the login name of user id {uid} is not UTF-8"))?
        .to_string();
    Ok(name)
}

/// The token given by `--token-file` or `COMMITD_TOKEN`, with where it came from.
fn presented_token(args: &IdentityArgs) -> anyhow::Result<Option<(String, String)>> {
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--token-file {}", path.display()))?;
        // Like ssh with a private key: say so when others may read the secret (not fatal:
        // the token may be on a single-user machine or a mounted secret).
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                eprintln!(
                    "warning: --token-file {} is readable by other users (mode {:o}); chmod 600 it",
                    path.display(),
                    meta.permissions().mode() & 0o777
                );
            }
        }
        let token = text.trim();
        if token.is_empty() {
            bail!("--token-file {}: the file is empty", path.display());
        }
        return Ok(Some((
            token.to_string(),
            format!("the token in {}", path.display()),
        )));
    }
    match std::env::var("COMMITD_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Ok(Some((t.trim().to_string(), "COMMITD_TOKEN".into()))),
        _ => Ok(None),
    }
}

/// Who is acting: the name of a presented token with at least `need`, else the identity the
/// OS user is mapped to in `[identity] os_users` (approver rights), else an error saying how
/// to identify. A token that is presented but does not authenticate is an error, never a
/// fall-back to the OS mapping.
pub async fn resolve_actor(
    config: &Config,
    store: &Store,
    args: &IdentityArgs,
    need: Role,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    if let Some((token, from)) = presented_token(args)? {
        let principal = TokenStore::new(store.clone())
            .authenticate(&token, now)
            .await?
            .with_context(|| format!("{from} is unknown, expired or revoked"))?;
        if principal.role < need {
            bail!(
                "{from} belongs to '{}' with role {}; this needs {}",
                principal.name,
                principal.role.as_str(),
                need.as_str()
            );
        }
        return Ok(principal.name);
    }
    let login = os_login()?;
    match config.identity.os_users.get(&login) {
        // A mapped OS user approves and rejects; managing tokens from the CLI asks no more
        // than database access (see `token_manager`).
        Some(identity) if need <= Role::Approver => Ok(identity.clone()),
        Some(identity) => bail!(
            "OS user '{login}' ({identity}) is mapped with approver rights; this needs {}: pass an {} token with --token-file PATH or COMMITD_TOKEN",
            need.as_str(),
            need.as_str()
        ),
        None => bail!(
            "who is deciding? pass an approver token with --token-file PATH (or COMMITD_TOKEN), \
             or map OS user '{login}' in [identity] os_users of the configuration"
        ),
    }
}

/// Who manages tokens: an admin token if one is presented; else the OS user's mapped identity
/// or, unmapped, `os:<login>`. Token management needs the database (its credentials are the
/// real gate, and the first token has to come from somewhere); what this decides is the actor
/// recorded in the audit log, which is never a name typed on the command line.
async fn token_manager(
    config: &Config,
    store: &Store,
    args: &IdentityArgs,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    if presented_token(args)?.is_some() {
        return resolve_actor(config, store, args, Role::Admin, now).await;
    }
    let login = os_login()?;
    Ok(config
        .identity
        .os_users
        .get(&login)
        .cloned()
        .unwrap_or_else(|| format!("os:{login}")))
}

/// `30d`, `12h`, `10m`, `45s` (a number and a unit).
pub fn parse_duration(flag: &str, text: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    let unit_at = t
        .find(|c: char| !c.is_ascii_digit())
        .with_context(|| format!("{flag} {text}: give a unit, e.g. 30d, 12h, 10m or 45s"))?;
    let (number, unit) = t.split_at(unit_at);
    let n: i64 = number.parse().with_context(|| {
        format!("{flag} {text}: expected a whole number and a unit (d, h, m, s)")
    })?;
    let d = match unit {
        "d" => Duration::try_days(n),
        "h" => Duration::try_hours(n),
        "m" => Duration::try_minutes(n),
        "s" => Duration::try_seconds(n),
        _ => bail!("{flag} {text}: unknown unit '{unit}' (d, h, m or s)"),
    };
    d.with_context(|| format!("{flag} {text}: too large"))
}

/// API tokens (bearer tokens with a role and an expiry; stored hashed).
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a token and print it once.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        identity: IdentityArgs,
        /// The token's name: the actor recorded for its decisions (not commitd*, autopilot*
        /// or system, which are commitd's own).
        name: String,
        #[arg(long, value_parser = ["viewer", "approver", "admin"])]
        role: String,
        /// Lifetime, e.g. 30d or 12h (default [identity] token_ttl_days, 90 days; at most 366d).
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
    },
    /// Give a token a new secret (printed once); the old one stops at once, or after --grace.
    Rotate {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        identity: IdentityArgs,
        name: String,
        /// Lifetime of the new secret (default [identity] token_ttl_days).
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// How long the old secret keeps working, e.g. 10m, at most 24h (default: not at all).
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
    },
    /// Revoke a token by name (at once, with any grace secret).
    Revoke {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        identity: IdentityArgs,
        name: String,
    },
    /// List tokens: name, role, expiry (never a secret: only hashes are stored).
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        json: bool,
    },
}

async fn open(config: &ConfigArg) -> anyhow::Result<(Config, Store)> {
    let cfg = Config::load(config.config.as_deref())?;
    let url = cfg.database_url();
    let store = Store::connect(url.expose())
        .await
        .context("opening the database")?;
    Ok((cfg, store))
}

fn ttl_of(cfg: &Config, ttl: Option<&str>) -> anyhow::Result<Duration> {
    match ttl {
        Some(t) => parse_duration("--ttl", t),
        None => Ok(Duration::days(i64::from(cfg.identity.token_ttl_days))),
    }
}

fn shown(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let now = Utc::now();
        match cmd {
            Command::Create {
                config,
                identity,
                name,
                role,
                ttl,
            } => {
                let role = Role::parse(&role).context("--role")?;
                let (cfg, store) = open(&config).await?;
                let ttl = ttl_of(&cfg, ttl.as_deref())?;
                let actor = token_manager(&cfg, &store, &identity, now).await?;
                let issued = TokenStore::new(store)
                    .create(&name, role, ttl, &actor, now)
                    .await?;
                // The only time the token is shown: print it alone, for scripts.
                println!("{}", issued.secret);
                eprintln!(
                    "token '{name}' ({}) created by {actor}, expires {}; it is not shown again",
                    role.as_str(),
                    shown(issued.expires_at)
                );
            }
            Command::Rotate {
                config,
                identity,
                name,
                ttl,
                grace,
            } => {
                let (cfg, store) = open(&config).await?;
                let ttl = ttl_of(&cfg, ttl.as_deref())?;
                let grace = match grace.as_deref() {
                    Some(g) => parse_duration("--grace", g)?,
                    None => Duration::zero(),
                };
                let actor = token_manager(&cfg, &store, &identity, now).await?;
                let issued = TokenStore::new(store)
                    .rotate(&name, ttl, grace, &actor, now)
                    .await?;
                println!("{}", issued.secret);
                let old = if grace > Duration::zero() {
                    format!("the old secret works until {}", shown(now + grace))
                } else {
                    "the old secret no longer works".to_string()
                };
                eprintln!(
                    "token '{name}' ({}) rotated by {actor}, expires {}; {old}",
                    issued.role.as_str(),
                    shown(issued.expires_at)
                );
            }
            Command::Revoke {
                config,
                identity,
                name,
            } => {
                let (cfg, store) = open(&config).await?;
                let actor = token_manager(&cfg, &store, &identity, now).await?;
                TokenStore::new(store).revoke(&name, &actor, now).await?;
                println!("token '{name}' revoked");
            }
            Command::List { config, json } => {
                let (_, store) = open(&config).await?;
                let list = TokenStore::new(store).list().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else if list.is_empty() {
                    println!("no tokens");
                } else {
                    for t in &list {
                        let expiry = match t.expires_at {
                            Some(e) if e <= now => format!("expired {}", shown(e)),
                            Some(e) => format!("expires {}", shown(e)),
                            None => "no expiry recorded (does not authenticate)".into(),
                        };
                        println!("{:<24} {:<8} {expiry}", t.name, t.role.as_str());
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_and_name_the_flag() {
        assert_eq!(parse_duration("--ttl", "30d").unwrap(), Duration::days(30));
        assert_eq!(parse_duration("--ttl", "12h").unwrap(), Duration::hours(12));
        assert_eq!(
            parse_duration("--grace", "10m").unwrap(),
            Duration::minutes(10)
        );
        assert_eq!(
            parse_duration("--grace", "45s").unwrap(),
            Duration::seconds(45)
        );
        for bad in ["30", "d", "3w", "-1d", "1.5d", ""] {
            let e = parse_duration("--ttl", bad).unwrap_err().to_string();
            assert!(e.starts_with("--ttl"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_os_login_comes_from_the_user_id_not_the_environment() {
        // The test process's own user, whatever $USER says.
        let login = os_login().unwrap();
        assert!(!login.is_empty());
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        if let Some(line) = passwd
            .lines()
            .find(|l| l.split(':').nth(2) == Some(&uid.to_string()))
        {
            assert_eq!(line.split(':').next(), Some(login.as_str()));
        }
    }

    #[tokio::test]
    async fn the_actor_is_a_valid_token_or_the_mapped_os_user() {
        let (dir, store) = crate::proposals::tests::sqlite().await;
        let now = Utc::now();
        let tokens = TokenStore::new(store.clone());
        let approver = tokens
            .create("alice", Role::Approver, Duration::days(1), "ops", now)
            .await
            .unwrap()
            .secret;
        let viewer = tokens
            .create("vic", Role::Viewer, Duration::days(1), "ops", now)
            .await
            .unwrap()
            .secret;
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            IdentityArgs {
                token_file: Some(p),
            }
        };
        let mut config = Config::default();
        let who = resolve_actor(
            &config,
            &store,
            &file("a", &format!("{approver}\n")),
            Role::Approver,
            now,
        )
        .await
        .unwrap();
        assert_eq!(who, "alice");
        let e = resolve_actor(&config, &store, &file("v", &viewer), Role::Approver, now)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("role viewer") && e.contains("needs approver"),
            "{e}"
        );
        let e = resolve_actor(
            &config,
            &store,
            &file("f", "cd_forged"),
            Role::Approver,
            now,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown, expired or revoked"), "{e}");
        // Expired: the same token a day later.
        let e = resolve_actor(
            &config,
            &store,
            &file("a2", &approver),
            Role::Approver,
            now + Duration::days(2),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("expired"), "{e}");
        let e = resolve_actor(&config, &store, &file("empty", "\n"), Role::Approver, now)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
        // No token: only a mapped OS user is someone. (The test must not see COMMITD_TOKEN.)
        if std::env::var("COMMITD_TOKEN").is_err() {
            let none = IdentityArgs::default();
            let e = resolve_actor(&config, &store, &none, Role::Approver, now)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("os_users"), "{e}");
            config
                .identity
                .os_users
                .insert(os_login().unwrap(), "me@example.com".into());
            let who = resolve_actor(&config, &store, &none, Role::Approver, now)
                .await
                .unwrap();
            assert_eq!(who, "me@example.com");
            assert!(resolve_actor(&config, &store, &none, Role::Admin, now)
                .await
                .is_err());
        }
    }
}
