//! Web console sessions: an API token exchanged at login for a server-side session.
//!
//! The browser holds only the session's secret (`cs_<64 hex>`, 32 random bytes from the OS) in
//! an HttpOnly cookie; the database keeps its SHA-256, the name of the token's owner, the
//! SHA-256 of the token it was opened with, a per-session CSRF token and the expiry. A session
//! is valid only while
//!
//! * it has not expired (its own lifetime, `[api] console_session_minutes`), and
//! * the token it was opened with still authenticates: not expired, not revoked, not rotated
//!   away (past its grace), and its name not reserved.
//!
//! The role is the token's role *now*: a token demoted or revoked takes its sessions with it at
//! the next request. The token itself is never stored, in the session or anywhere else.

use super::{digest, is_reserved, new_secret, AuthError, Principal, Role, TokenStore};
use crate::store::sql;
use chrono::{DateTime, Duration, TimeZone, Utc};

/// The longest a console session may live (a day; `[api] console_session_minutes` is
/// validated against the same bound).
pub const MAX_SESSION_MINUTES: u32 = 1440;

/// A valid session: who, with which role now, and its anti-forgery token.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub principal: Principal,
    /// The CSRF token every form of this session carries (compared in constant time).
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Session {
    // Never the CSRF token in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("principal", &self.principal)
            .field("csrf", &"***")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A session just opened: its cookie secret (shown once, to the browser) and the session.
pub struct OpenedSession {
    pub secret: String,
    pub session: Session,
}

impl std::fmt::Debug for OpenedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSession")
            .field("secret", &"***")
            .field("session", &self.session)
            .finish()
    }
}

/// 32 random bytes from the OS as 64 hex digits (CSRF tokens, login nonces).
pub fn random_hex() -> Result<String, AuthError> {
    Ok(new_secret()?.replacen("cd_", "", 1))
}

/// Compares two secrets without an early exit on the first differing byte.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

impl TokenStore {
    /// Opens a console session for `token` at `now`, valid for `ttl` (and only while the
    /// token is): None when the token does not authenticate. Expired sessions are deleted on
    /// the way.
    pub async fn open_session(
        &self,
        token: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<OpenedSession>, AuthError> {
        if ttl <= Duration::zero() || ttl > Duration::minutes(i64::from(MAX_SESSION_MINUTES)) {
            return Err(AuthError::BadTtl);
        }
        let Some(principal) = self.authenticate(token, now).await? else {
            return Ok(None);
        };
        let secret = new_secret()?.replacen("cd_", "cs_", 1);
        let csrf = random_hex()?;
        let expires_at = from_ms((now + ttl).timestamp_millis()).unwrap_or(now + ttl);
        sql::execute(
            &self.store,
            "DELETE FROM console_sessions WHERE expires_at_ms <= $1",
            &[now.timestamp_millis().into()],
        )
        .await?;
        sql::execute(
            &self.store,
            "INSERT INTO console_sessions (id_sha256, name, token_sha256, csrf, created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                digest(&secret).into(),
                principal.name.clone().into(),
                digest(token).into(),
                csrf.clone().into(),
                now.timestamp_millis().into(),
                expires_at.timestamp_millis().into(),
            ],
        )
        .await?;
        Ok(Some(OpenedSession {
            secret,
            session: Session {
                principal,
                csrf,
                expires_at,
            },
        }))
    }

    /// The session whose cookie secret is `secret`, if it is valid at `now` (see the module
    /// documentation), with the token's current role.
    pub async fn session(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, AuthError> {
        let rows = sql::fetch(
            &self.store,
            "SELECT s.name, t.role, s.csrf, s.expires_at_ms FROM console_sessions s \
             JOIN api_tokens t ON t.name = s.name \
             WHERE s.id_sha256 = $1 AND s.expires_at_ms > $2 AND t.expires_at_ms > $2 \
               AND (t.token_sha256 = s.token_sha256 \
                    OR (t.previous_sha256 = s.token_sha256 AND t.previous_expires_at_ms > $2))",
            &[digest(secret).into(), now.timestamp_millis().into()],
        )
        .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let corrupt = |e: sql::ColumnError| AuthError::Corrupt {
            name: "(console session)".into(),
            role: e.to_string(),
        };
        let name = r.text(0).map_err(corrupt)?;
        if is_reserved(&name) {
            tracing::warn!(token = %name, "a console session of a reserved name was refused");
            return Ok(None);
        }
        let role_text = r.text(1).map_err(corrupt)?;
        let role = Role::parse(&role_text).ok_or_else(|| AuthError::Corrupt {
            name: name.clone(),
            role: role_text,
        })?;
        Ok(Some(Session {
            principal: Principal { name, role },
            csrf: r.text(2).map_err(corrupt)?,
            expires_at: from_ms(r.int(3).map_err(corrupt)?).unwrap_or(now),
        }))
    }

    /// Ends the session `secret` (logout); true when one was deleted.
    pub async fn close_session(&self, secret: &str) -> Result<bool, AuthError> {
        let n = sql::execute(
            &self.store,
            "DELETE FROM console_sessions WHERE id_sha256 = $1",
            &[digest(secret).into()],
        )
        .await?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }

    #[tokio::test]
    async fn a_session_lives_only_while_its_token_and_its_lifetime_do() {
        let (_d, store) = crate::proposals::tests::sqlite().await;
        let tokens = TokenStore::new(store.clone());
        let now = Utc::now();
        let t = tokens
            .create("alice", Role::Approver, Duration::days(1), "ops", now)
            .await
            .unwrap()
            .secret;
        assert!(tokens
            .open_session("cd_wrong", Duration::hours(1), now)
            .await
            .unwrap()
            .is_none());
        let opened = tokens
            .open_session(&t, Duration::hours(1), now)
            .await
            .unwrap()
            .unwrap();
        assert!(opened.secret.starts_with("cs_") && opened.secret.len() == 67);
        assert_ne!(opened.secret, t);
        let s = tokens.session(&opened.secret, now).await.unwrap().unwrap();
        assert_eq!(s.principal.name, "alice");
        assert_eq!(s.principal.role, Role::Approver);
        assert_eq!(s.csrf, opened.session.csrf);
        // Only hashes are stored: neither the cookie secret nor the token.
        let rows = sql::fetch(
            &store,
            "SELECT id_sha256, token_sha256 FROM console_sessions",
            &[],
        )
        .await
        .unwrap();
        assert_eq!(rows[0].text(0).unwrap(), digest(&opened.secret));
        assert_eq!(rows[0].text(1).unwrap(), digest(&t));
        // Past its lifetime it is gone.
        assert!(tokens
            .session(&opened.secret, now + Duration::minutes(61))
            .await
            .unwrap()
            .is_none());
        // A wrong secret is nobody.
        assert!(tokens.session("cs_nope", now).await.unwrap().is_none());
        // Rotating the token away (no grace) ends the session at once.
        tokens
            .rotate("alice", Duration::days(1), Duration::zero(), "ops", now)
            .await
            .unwrap();
        assert!(tokens.session(&opened.secret, now).await.unwrap().is_none());
        // Logout deletes it.
        let bob = tokens
            .create("bob", Role::Viewer, Duration::days(1), "ops", now)
            .await
            .unwrap()
            .secret;
        let b = tokens
            .open_session(&bob, Duration::hours(1), now)
            .await
            .unwrap()
            .unwrap();
        assert!(tokens.close_session(&b.secret).await.unwrap());
        assert!(tokens.session(&b.secret, now).await.unwrap().is_none());
        assert!(!tokens.close_session(&b.secret).await.unwrap());
        assert!(matches!(
            tokens.open_session(&bob, Duration::zero(), now).await,
            Err(AuthError::BadTtl)
        ));
    }
}
