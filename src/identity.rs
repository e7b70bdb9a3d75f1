//! Bearer tokens with roles (viewer < approver < admin), stored hashed, expiring, rotatable;
//! and the identities reserved for commitd itself.
//!
//! A token is 32 random bytes from the OS, shown once at creation (or rotation) as `cd_<hex>`;
//! the database keeps only its SHA-256, so a leaked database (or backup) does not leak a usable
//! token. A token's name is the actor recorded in the audit log for what it approves, so it is
//! an identity: names that commitd itself writes as actors (`commitd`, `autopilot:<policy>`,
//! `system`) can never be a token's name, and a stored token with such a name (created before
//! the rule) does not authenticate.
//!
//! Every token expires (`expires_at_ms`; [`DEFAULT_TTL_DAYS`] unless asked otherwise, at most
//! [`MAX_TTL_DAYS`]). Rotation replaces the secret; the old one keeps working for a grace period
//! of at most [`MAX_ROTATION_GRACE`] (default none: it dies at once). Creating, rotating and
//! revoking a token each write an audit event (`token_created`, `token_rotated`,
//! `token_revoked`: name, role, expiry and who did it, never the secret) in the same
//! transaction as the change, so there is no token change without its event.

use crate::audit::event::{NewEvent, TokenCreated, TokenRevoked, TokenRotated};
use crate::audit::{AuditError, AuditLog};
use crate::store::sql;
use crate::store::Store;
use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;

pub mod session;

/// Lifetime of a token when none is asked for.
pub const DEFAULT_TTL_DAYS: i64 = 90;
/// The longest lifetime a token may be given: a forgotten token dies within a year.
pub const MAX_TTL_DAYS: i64 = 366;
/// The longest time a rotated-away secret keeps working (time to update one client).
pub const MAX_ROTATION_GRACE: Duration = Duration::hours(24);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads proposals and metrics.
    Viewer,
    /// Also approves and rejects proposals.
    Approver,
    /// Everything (reserved for operations such as token management).
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::Viewer, Role::Approver, Role::Admin]
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("token store: {0}")]
    Audit(#[from] AuditError),
    #[error("cannot read random bytes for a token: {0}")]
    Random(std::io::Error),
    #[error("a token named '{0}' already exists")]
    Exists(String),
    #[error("no token named '{0}'")]
    NotFound(String),
    #[error("token name must be 1-64 characters of letters, digits, '.', '-', '_' or '@'")]
    BadName,
    #[error("'{0}' is reserved for commitd's own actions (commitd*, autopilot*, system): choose another name")]
    Reserved(String),
    #[error("token lifetime must be more than 0 and at most {MAX_TTL_DAYS} days")]
    BadTtl,
    #[error("rotation grace must be at most 24 hours")]
    BadGrace,
    #[error("the stored role '{role}' of token '{name}' is unknown")]
    Corrupt { name: String, role: String },
}

/// Whether `name` is one of the identities commitd writes itself (the daemon is `commitd`,
/// Autopilot approvals are `autopilot:<policy>`): no person or token may act under one, or a
/// person could approve as the system, or pass for the proposer to dodge a rule. Compared
/// without case, since people read these names.
pub fn is_reserved(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    n.starts_with("commitd")
        || n.starts_with("autopilot")
        || n == "system"
        || n.starts_with("system:")
}

/// Checks a name that becomes an actor in the audit log (a token's name, a mapped OS user).
pub fn check_identity(name: &str) -> Result<(), AuthError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if !valid {
        return Err(AuthError::BadName);
    }
    if is_reserved(name) {
        return Err(AuthError::Reserved(name.to_string()));
    }
    Ok(())
}

/// Who a valid token belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// A secret just issued (created or rotated): shown once.
pub struct Issued {
    pub secret: String,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Issued {
    // Never the secret, even in a debug print or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("secret", &"***")
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A stored token, without its secret (`tokens list`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Until when the secret replaced by the last rotation still works, if it does.
    pub previous_valid_until: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

fn new_secret() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(AuthError::Random)?;
    Ok(format!("cd_{}", hex::encode(bytes)))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// Whole seconds: what the audit event shows is exactly what the row holds.
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    from_ms(t.timestamp() * 1000).unwrap_or(t)
}

fn check_ttl(ttl: Duration) -> Result<(), AuthError> {
    if ttl <= Duration::zero() || ttl > Duration::days(MAX_TTL_DAYS) {
        return Err(AuthError::BadTtl);
    }
    Ok(())
}

/// One transaction on either backend: the token change and its audit event commit together.
enum Tx<'a> {
    Sqlite(sqlx::Transaction<'a, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'a, sqlx::Postgres>),
}

impl Tx<'_> {
    async fn begin(store: &Store) -> Result<Tx<'_>, sqlx::Error> {
        Ok(match store {
            // IMMEDIATE: the audit append needs the write lock (see AuditLog::append_in_sqlite_tx).
            Store::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Store::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    async fn execute(&mut self, text: &str, args: &[sql::Val]) -> Result<u64, sqlx::Error> {
        macro_rules! bind_all {
            ($q:expr) => {{
                let mut q = $q;
                for a in args {
                    q = match a {
                        sql::Val::Int(v) => q.bind(*v),
                        sql::Val::Text(v) => q.bind(v.clone()),
                        sql::Val::Null => q.bind(None::<String>),
                    };
                }
                q
            }};
        }
        Ok(match self {
            Tx::Sqlite(tx) => {
                let text = text.replace('$', "?");
                bind_all!(sqlx::query(&text))
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
            }
            Tx::Postgres(tx) => bind_all!(sqlx::query(text))
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    /// The role of the token `name`, if it exists.
    async fn role_of(&mut self, name: &str) -> Result<Option<String>, sqlx::Error> {
        let text = "SELECT role FROM api_tokens WHERE name = $1";
        match self {
            Tx::Sqlite(tx) => {
                sqlx::query_scalar::<_, String>(&text.replace('$', "?"))
                    .bind(name)
                    .fetch_optional(&mut **tx)
                    .await
            }
            Tx::Postgres(tx) => {
                sqlx::query_scalar::<_, String>(text)
                    .bind(name)
                    .fetch_optional(&mut **tx)
                    .await
            }
        }
    }

    async fn append(&mut self, event: NewEvent) -> Result<(), AuditError> {
        match self {
            Tx::Sqlite(tx) => AuditLog::append_in_sqlite_tx(tx, event).await.map(|_| ()),
            Tx::Postgres(tx) => AuditLog::append_in_postgres_tx(tx, event).await.map(|_| ()),
        }
    }

    async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TokenStore {
    store: Store,
}

impl TokenStore {
    pub fn new(store: Store) -> TokenStore {
        TokenStore { store }
    }

    /// Creates a token valid for `ttl` and returns it; this is the only time it is visible.
    /// `actor` (who creates it) is recorded in the `token_created` event.
    pub async fn create(
        &self,
        name: &str,
        role: Role,
        ttl: Duration,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Issued, AuthError> {
        check_identity(name)?;
        check_ttl(ttl)?;
        let secret = new_secret()?;
        let expires_at = whole_seconds(now + ttl);
        let mut tx = Tx::begin(&self.store).await?;
        let inserted = tx
            .execute(
                "INSERT INTO api_tokens (name, token_sha256, role, created_at_ms, expires_at_ms, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
                &[
                    name.into(),
                    digest(&secret).into(),
                    role.as_str().into(),
                    now.timestamp_millis().into(),
                    expires_at.timestamp_millis().into(),
                    actor.into(),
                ],
            )
            .await?;
        if inserted == 0 {
            // Dropping the transaction rolls it back.
            return Err(AuthError::Exists(name.into()));
        }
        tx.append(NewEvent::new(
            now,
            actor,
            format!("token:{name}"),
            TokenCreated {
                name: name.into(),
                role: role.as_str().into(),
                expires_at: rfc3339(expires_at),
            },
        ))
        .await?;
        tx.commit().await?;
        Ok(Issued {
            secret,
            role,
            expires_at,
        })
    }

    /// Gives the token `name` a new secret valid for `ttl`; the old secret keeps working for
    /// `grace` (zero: it stops at once). Returns the new secret, shown once.
    pub async fn rotate(
        &self,
        name: &str,
        ttl: Duration,
        grace: Duration,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Issued, AuthError> {
        check_ttl(ttl)?;
        if grace < Duration::zero() || grace > MAX_ROTATION_GRACE {
            return Err(AuthError::BadGrace);
        }
        let secret = new_secret()?;
        let expires_at = whole_seconds(now + ttl);
        let previous_until = now + grace;
        let mut tx = Tx::begin(&self.store).await?;
        let Some(role_text) = tx.role_of(name).await? else {
            return Err(AuthError::NotFound(name.into()));
        };
        let role = Role::parse(&role_text).ok_or_else(|| AuthError::Corrupt {
            name: name.into(),
            role: role_text.clone(),
        })?;
        // A rotated-away secret that is itself still in its grace is replaced: only the
        // latest previous secret is kept (a client two rotations behind is out).
        tx.execute(
            "UPDATE api_tokens SET previous_sha256 = CASE WHEN $3 > 0 THEN token_sha256 ELSE NULL END, \
             previous_expires_at_ms = CASE WHEN $3 > 0 THEN $4 ELSE NULL END, \
             token_sha256 = $2, expires_at_ms = $5, rotated_at_ms = $6, created_by = $7 \
             WHERE name = $1",
            &[
                name.into(),
                digest(&secret).into(),
                grace.num_milliseconds().into(),
                previous_until.timestamp_millis().into(),
                expires_at.timestamp_millis().into(),
                now.timestamp_millis().into(),
                actor.into(),
            ],
        )
        .await?;
        tx.append(NewEvent::new(
            now,
            actor,
            format!("token:{name}"),
            TokenRotated {
                name: name.into(),
                role: role.as_str().into(),
                expires_at: rfc3339(expires_at),
                previous_valid_until: rfc3339(if grace > Duration::zero() {
                    previous_until
                } else {
                    now
                }),
            },
        ))
        .await?;
        tx.commit().await?;
        Ok(Issued {
            secret,
            role,
            expires_at,
        })
    }

    /// The principal a presented token belongs to at `now`, if any: the token exists, has not
    /// expired (or is a rotated-away secret within its grace), and its name is not reserved.
    pub async fn authenticate(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Principal>, AuthError> {
        let d = digest(token);
        let now_ms = now.timestamp_millis();
        let rows = sql::fetch(
            &self.store,
            "SELECT name, role FROM api_tokens \
             WHERE (token_sha256 = $1 AND expires_at_ms > $2) \
                OR (previous_sha256 = $1 AND previous_expires_at_ms > $2 AND expires_at_ms > $2)",
            &[d.into(), now_ms.into()],
        )
        .await?;
        Ok(rows.first().and_then(|r| {
            let name = r.text(0).ok()?;
            if is_reserved(&name) {
                tracing::warn!(token = %name, "a token with a reserved name was presented and refused");
                return None;
            }
            Some(Principal {
                name,
                role: Role::parse(&r.text(1).ok()?)?,
            })
        }))
    }

    /// Deletes the token `name` (it stops authenticating at once, its grace secret too).
    pub async fn revoke(
        &self,
        name: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        let mut tx = Tx::begin(&self.store).await?;
        let Some(role) = tx.role_of(name).await? else {
            return Err(AuthError::NotFound(name.into()));
        };
        tx.execute("DELETE FROM api_tokens WHERE name = $1", &[name.into()])
            .await?;
        tx.append(NewEvent::new(
            now,
            actor,
            format!("token:{name}"),
            TokenRevoked {
                name: name.into(),
                role,
            },
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every token, by name (no secrets: only hashes exist).
    pub async fn list(&self) -> Result<Vec<TokenInfo>, AuthError> {
        let rows = sql::fetch(
            &self.store,
            "SELECT name, role, created_at_ms, expires_at_ms, previous_expires_at_ms, created_by \
             FROM api_tokens ORDER BY name",
            &[],
        )
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let bad = |e: sql::ColumnError| AuthError::Corrupt {
                name: r.text(0).unwrap_or_default(),
                role: e.to_string(),
            };
            let name = r.text(0).map_err(bad)?;
            let role_text = r.text(1).map_err(bad)?;
            let role = Role::parse(&role_text).ok_or_else(|| AuthError::Corrupt {
                name: name.clone(),
                role: role_text,
            })?;
            out.push(TokenInfo {
                name,
                role,
                created_at: from_ms(r.int(2).map_err(bad)?).unwrap_or_default(),
                expires_at: r.opt_int(3).map_err(bad)?.and_then(from_ms),
                previous_valid_until: r.opt_int(4).map_err(bad)?.and_then(from_ms),
                created_by: r.opt_text(5).map_err(bad)?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::EventBody;
    use crate::audit::EventFilter;

    fn ttl() -> Duration {
        Duration::days(DEFAULT_TTL_DAYS)
    }

    #[tokio::test]
    async fn tokens_are_stored_hashed_and_map_to_their_role() {
        let (_d, store) = crate::proposals::tests::sqlite().await;
        let tokens = TokenStore::new(store.clone());
        let now = Utc::now();
        let t = tokens
            .create("alice", Role::Approver, ttl(), "ops", now)
            .await
            .unwrap()
            .secret;
        assert!(t.starts_with("cd_") && t.len() == 67);
        let p = tokens.authenticate(&t, now).await.unwrap().unwrap();
        assert_eq!(
            p,
            Principal {
                name: "alice".into(),
                role: Role::Approver
            }
        );
        assert!(tokens
            .authenticate("cd_wrong", now)
            .await
            .unwrap()
            .is_none());
        // Only the hash is stored.
        let rows = sql::fetch(&store, "SELECT token_sha256 FROM api_tokens", &[])
            .await
            .unwrap();
        let stored = rows[0].text(0).unwrap();
        assert_ne!(stored, t);
        assert_eq!(stored, digest(&t));
        assert!(matches!(
            tokens
                .create("alice", Role::Viewer, ttl(), "ops", now)
                .await,
            Err(AuthError::Exists(_))
        ));
        assert!(matches!(
            tokens.create("a b", Role::Viewer, ttl(), "ops", now).await,
            Err(AuthError::BadName)
        ));
        assert!(Role::Admin > Role::Approver && Role::Approver > Role::Viewer);
        tokens.revoke("alice", "ops", now).await.unwrap();
        assert!(tokens.authenticate(&t, now).await.unwrap().is_none());
        assert!(matches!(
            tokens.revoke("alice", "ops", now).await,
            Err(AuthError::NotFound(_))
        ));
    }

    #[test]
    fn system_identities_are_reserved() {
        for name in [
            "commitd",
            "Commitd",
            "commitd-bot",
            "autopilot:aws",
            "autopilot",
            "system",
            "SYSTEM",
        ] {
            assert!(is_reserved(name), "{name}");
        }
        for name in ["alice", "alice@example.com", "systems-team", "bob.commitd"] {
            assert!(!is_reserved(name), "{name}");
            assert!(check_identity(name).is_ok(), "{name}");
        }
        assert!(matches!(
            check_identity("commitd"),
            Err(AuthError::Reserved(_))
        ));
    }

    #[tokio::test]
    async fn reserved_names_can_neither_be_created_nor_authenticate() {
        let (_d, store) = crate::proposals::tests::sqlite().await;
        let tokens = TokenStore::new(store.clone());
        let now = Utc::now();
        for name in ["commitd", "system", "commitd-ops"] {
            assert!(
                matches!(
                    tokens.create(name, Role::Admin, ttl(), "ops", now).await,
                    Err(AuthError::Reserved(_))
                ),
                "{name}"
            );
        }
        // A row written before the rule (or by hand) does not authenticate.
        let secret = "cd_legacy";
        sql::execute(
            &store,
            "INSERT INTO api_tokens (name, token_sha256, role, created_at_ms, expires_at_ms) VALUES ($1, $2, 'admin', $3, $4)",
            &[
                "commitd".into(),
                digest(secret).into(),
                now.timestamp_millis().into(),
                (now + ttl()).timestamp_millis().into(),
            ],
        )
        .await
        .unwrap();
        assert!(tokens.authenticate(secret, now).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn tokens_expire() {
        let (_d, store) = crate::proposals::tests::sqlite().await;
        let tokens = TokenStore::new(store);
        let now = Utc::now();
        let issued = tokens
            .create("bob", Role::Viewer, Duration::days(2), "ops", now)
            .await
            .unwrap();
        assert_eq!(issued.expires_at, whole_seconds(now + Duration::days(2)));
        let s = &issued.secret;
        assert!(tokens
            .authenticate(s, now + Duration::days(1))
            .await
            .unwrap()
            .is_some());
        assert!(tokens
            .authenticate(s, issued.expires_at)
            .await
            .unwrap()
            .is_none());
        for bad in [Duration::zero(), Duration::days(MAX_TTL_DAYS + 1)] {
            assert!(matches!(
                tokens.create("carol", Role::Viewer, bad, "ops", now).await,
                Err(AuthError::BadTtl)
            ));
        }
        let listed = tokens.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].expires_at, Some(issued.expires_at));
        assert_eq!(listed[0].created_by.as_deref(), Some("ops"));
    }

    #[tokio::test]
    async fn rotation_kills_the_old_secret_at_once_or_after_the_grace() {
        let (_d, store) = crate::proposals::tests::sqlite().await;
        let tokens = TokenStore::new(store);
        let now = Utc::now();
        let first = tokens
            .create("ci", Role::Approver, ttl(), "ops", now)
            .await
            .unwrap()
            .secret;
        // No grace: the old secret dies at once, the new one works.
        let second = tokens
            .rotate("ci", ttl(), Duration::zero(), "ops", now)
            .await
            .unwrap();
        assert_eq!(second.role, Role::Approver);
        assert!(tokens.authenticate(&first, now).await.unwrap().is_none());
        let p = tokens
            .authenticate(&second.secret, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.name, "ci");
        // Ten minutes of grace: both work until then, only the new one after.
        let third = tokens
            .rotate("ci", ttl(), Duration::minutes(10), "ops", now)
            .await
            .unwrap()
            .secret;
        let within = now + Duration::minutes(9);
        let after = now + Duration::minutes(11);
        assert!(tokens
            .authenticate(&second.secret, within)
            .await
            .unwrap()
            .is_some());
        assert!(tokens.authenticate(&third, within).await.unwrap().is_some());
        assert!(tokens
            .authenticate(&second.secret, after)
            .await
            .unwrap()
            .is_none());
        assert!(tokens.authenticate(&third, after).await.unwrap().is_some());
        // The secret of two rotations ago is out.
        assert!(tokens.authenticate(&first, within).await.unwrap().is_none());
        assert!(matches!(
            tokens
                .rotate("ci", ttl(), Duration::hours(25), "ops", now)
                .await,
            Err(AuthError::BadGrace)
        ));
        assert!(matches!(
            tokens
                .rotate("nobody", ttl(), Duration::zero(), "ops", now)
                .await,
            Err(AuthError::NotFound(_))
        ));
        // Revoking ends the grace secret too.
        let fourth = tokens
            .rotate("ci", ttl(), Duration::minutes(10), "ops", now)
            .await
            .unwrap()
            .secret;
        tokens.revoke("ci", "ops", now).await.unwrap();
        assert!(tokens.authenticate(&third, within).await.unwrap().is_none());
        assert!(tokens
            .authenticate(&fourth, within)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn token_changes_are_audited_without_the_secret() {
        let (_d, store) = crate::proposals::tests::sqlite().await;
        let tokens = TokenStore::new(store.clone());
        let now = whole_seconds(Utc::now());
        let created = tokens
            .create("dora", Role::Admin, Duration::days(30), "root-ops", now)
            .await
            .unwrap();
        let rotated = tokens
            .rotate("dora", Duration::days(7), Duration::minutes(5), "dora", now)
            .await
            .unwrap();
        tokens.revoke("dora", "root-ops", now).await.unwrap();
        // A refused change writes nothing.
        assert!(tokens
            .create("system", Role::Admin, ttl(), "x", now)
            .await
            .is_err());
        let audit = AuditLog::open(store);
        let events = audit.list(&EventFilter::default(), None).await.unwrap();
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[0].actor, "root-ops");
        assert_eq!(events[0].subject, "token:dora");
        assert_eq!(
            events[0].body,
            EventBody::TokenCreated(TokenCreated {
                name: "dora".into(),
                role: "admin".into(),
                expires_at: rfc3339(now + Duration::days(30)),
            })
        );
        assert_eq!(events[1].actor, "dora");
        assert_eq!(
            events[1].body,
            EventBody::TokenRotated(TokenRotated {
                name: "dora".into(),
                role: "admin".into(),
                expires_at: rfc3339(now + Duration::days(7)),
                previous_valid_until: rfc3339(now + Duration::minutes(5)),
            })
        );
        assert_eq!(
            events[2].body,
            EventBody::TokenRevoked(TokenRevoked {
                name: "dora".into(),
                role: "admin".into(),
            })
        );
        let text = format!("{events:?}");
        assert!(!text.contains(&created.secret) && !text.contains(&rotated.secret));
        assert!(!text.contains(&digest(&created.secret)));
        assert!(audit.verify().await.unwrap().is_ok());
    }
}
