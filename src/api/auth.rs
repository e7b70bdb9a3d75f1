//! Bearer tokens with roles (viewer < approver < admin), stored hashed.
//!
//! A token is 32 random bytes from the OS, shown once at creation as `cd_<hex>`; the database
//! keeps only its SHA-256, so a leaked database (or backup) does not leak a usable token. A
//! token's name is the actor recorded in the audit log for what it approves.

use crate::providers::sql;
use crate::store::Store;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;

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
    #[error("cannot read random bytes for a token: {0}")]
    Random(std::io::Error),
    #[error("a token named '{0}' already exists")]
    Exists(String),
    #[error("token name must be 1-64 characters of letters, digits, '.', '-', '_' or '@'")]
    BadName,
}

/// Who a valid token belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

#[derive(Clone, Debug)]
pub struct TokenStore {
    store: Store,
}

impl TokenStore {
    pub fn new(store: Store) -> TokenStore {
        TokenStore { store }
    }

    /// Creates a token and returns it; this is the only time it is ever visible.
    pub async fn create(
        &self,
        name: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<String, AuthError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
        if !valid {
            return Err(AuthError::BadName);
        }
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(AuthError::Random)?;
        let token = format!("cd_{}", hex::encode(bytes));
        let inserted = sql::execute(
            &self.store,
            "INSERT INTO api_tokens (name, token_sha256, role, created_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
            &[
                name.into(),
                digest(&token).into(),
                role.as_str().into(),
                now.timestamp_millis().into(),
            ],
        )
        .await?;
        if inserted == 0 {
            return Err(AuthError::Exists(name.into()));
        }
        Ok(token)
    }

    /// The principal a presented token belongs to, if any.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, AuthError> {
        let rows = sql::fetch(
            &self.store,
            "SELECT name, role FROM api_tokens WHERE token_sha256 = $1",
            &[digest(token).into()],
        )
        .await?;
        Ok(rows.first().and_then(|r| {
            Some(Principal {
                name: r.text(0).ok()?,
                role: Role::parse(&r.text(1).ok()?)?,
            })
        }))
    }

    pub async fn revoke(&self, name: &str) -> Result<bool, AuthError> {
        Ok(sql::execute(
            &self.store,
            "DELETE FROM api_tokens WHERE name = $1",
            &[name.into()],
        )
        .await?
            == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_are_stored_hashed_and_map_to_their_role() {
        let (_d, store) = crate::proposals::tests::sqlite().await;
        let tokens = TokenStore::new(store.clone());
        let now = Utc::now();
        let t = tokens.create("alice", Role::Approver, now).await.unwrap();
        assert!(t.starts_with("cd_") && t.len() == 67);
        let p = tokens.authenticate(&t).await.unwrap().unwrap();
        assert_eq!(
            p,
            Principal {
                name: "alice".into(),
                role: Role::Approver
            }
        );
        assert!(tokens.authenticate("cd_wrong").await.unwrap().is_none());
        // Only the hash is stored.
        let rows = sql::fetch(&store, "SELECT token_sha256 FROM api_tokens", &[])
            .await
            .unwrap();
        let stored = rows[0].text(0).unwrap();
        assert_ne!(stored, t);
        assert_eq!(stored, digest(&t));
        assert!(matches!(
            tokens.create("alice", Role::Viewer, now).await,
            Err(AuthError::Exists(_))
        ));
        assert!(matches!(
            tokens.create("a b", Role::Viewer, now).await,
            Err(AuthError::BadName)
        ));
        assert!(Role::Admin > Role::Approver && Role::Approver > Role::Viewer);
        assert!(tokens.revoke("alice").await.unwrap());
        assert!(tokens.authenticate(&t).await.unwrap().is_none());
    }
}
