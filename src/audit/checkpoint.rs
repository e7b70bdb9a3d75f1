//! Signed checkpoints of the chain head: what anchors the audit log outside the database.
//!
//! A hash chain proves that what it still contains was not edited in place, but whoever can
//! write the database (the owner drops the append-only triggers) can rewrite an event and
//! recompute every hash after it, or delete the last events: the result is again a valid
//! chain. A checkpoint closes that gap: it is the head (event id and hash) at some time,
//! signed with an ed25519 key that lives outside the database, and written to a sink outside
//! the database (a file, a webhook). A rewritten or shortened chain no longer contains the
//! checkpointed event with the checkpointed hash, and the attacker cannot sign a new
//! checkpoint without the key.
//!
//! This file is the pure part: the canonical bytes that are signed, the line format of the
//! checkpoint file, signing and verifying, and the key files. The exact rules are specified in
//! `docs/audit.md` ("Checkpoints"), and `docs/verify-audit.py` re-implements them without
//! commitd; the golden test at the bottom pins the bytes.
//!
//! Ed25519 comes from aws-lc-rs, which the binary already links for rustls and the AWS SDK:
//! no second crypto library.

use super::canonical::{format_time, parse_time};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::path::Path;

/// Version of the checkpoint form, signed as field `v`.
pub const CHECKPOINT_VERSION: i64 = 1;

/// Signed as field `type`: a signature over a checkpoint can never be mistaken for a signature
/// over anything else the same key might sign.
pub const CHECKPOINT_TYPE: &str = "commitd.audit.checkpoint";

/// Why a key, a checkpoint line or a signature is not acceptable. Messages name the file
/// (and line) so a person can find what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("audit checkpoint key {path}: {message}")]
    Key { path: String, message: String },
    #[error("public key '{text}': {message}")]
    PublicKey { text: String, message: String },
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// An ed25519 public key: 32 bytes, written as 64 lower-case hex digits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// True when `signature` is this key's ed25519 signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl std::str::FromStr for PublicKey {
    type Err = CheckpointError;

    /// 64 hex digits (either case).
    fn from_str(text: &str) -> Result<PublicKey, CheckpointError> {
        let t = text.trim();
        let err = |message: &str| CheckpointError::PublicKey {
            text: t.chars().take(80).collect(),
            message: message.to_string(),
        };
        if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(
                "expected 64 hex digits (an ed25519 public key, as printed by `commitd audit keygen`)",
            ));
        }
        let bytes = hex::decode(t.to_ascii_lowercase()).map_err(|e| err(&e.to_string()))?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Ok(PublicKey(key))
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The private signing key. Never printed: `Debug` shows the public key only.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public {})", self.public)
    }
}

impl SigningKey {
    /// A key from its 32-byte seed (the private key in RFC 8032 terms).
    pub fn from_seed(seed: &[u8; 32]) -> Result<SigningKey, CheckpointError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| CheckpointError::Sign(format!("seed rejected: {e}")))?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Ok(SigningKey {
            pair,
            public: PublicKey(public),
        })
    }

    /// A new key from the operating system's random source; returns it with its seed, which
    /// is what the key file stores.
    pub fn generate() -> Result<(SigningKey, [u8; 32]), CheckpointError> {
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed)
            .map_err(|_| CheckpointError::Sign("the system random source failed".into()))?;
        Ok((SigningKey::from_seed(&seed)?, seed))
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs a checkpoint of `(event_id, hash)` taken at `time`.
    pub fn sign(
        &self,
        event_id: i64,
        hash: &str,
        time: DateTime<Utc>,
    ) -> Result<SignedCheckpoint, CheckpointError> {
        let checkpoint = Checkpoint {
            event_id,
            hash: hash.to_string(),
            time: format_time(time),
            public_key: self.public.clone(),
        };
        checkpoint.validate().map_err(CheckpointError::Sign)?;
        let signature = self.pair.sign(checkpoint.canonical_form().as_bytes());
        Ok(SignedCheckpoint {
            checkpoint,
            signature: signature.as_ref().to_vec(),
        })
    }

    /// Loads the key file: the seed as 64 hex digits (surrounding whitespace ignored), as
    /// written by `commitd audit keygen`. Refuses a file that group or others may read or
    /// write (like ssh does): a key others can read signs for them too.
    pub fn load(path: &Path) -> Result<SigningKey, CheckpointError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |message: String| CheckpointError::Key {
            path: path.display().to_string(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
        if !meta.is_file() {
            return Err(err("is not a regular file".into()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "mode {mode:04o} lets group or others access the private key; run `chmod 600 {}`",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let t = text.trim();
        if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(
                "malformed: expected 64 hex digits (an ed25519 seed, as written by `commitd audit keygen`)"
                    .into(),
            ));
        }
        let bytes = hex::decode(t.to_ascii_lowercase()).map_err(|e| err(e.to_string()))?;
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes);
        SigningKey::from_seed(&seed).map_err(|e| err(e.to_string()))
    }

    /// Writes a new key to `path` (mode 0600, created exclusively: an existing file is never
    /// overwritten, since that would orphan every checkpoint signed with the old key) and
    /// returns it.
    pub fn generate_file(path: &Path) -> Result<SigningKey, CheckpointError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |message: String| CheckpointError::Key {
            path: path.display().to_string(),
            message,
        };
        let (key, seed) = SigningKey::generate()?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => err(
                    "already exists; refusing to overwrite a key (checkpoints signed with it could no longer be told from forgeries)"
                        .into(),
                ),
                _ => err(format!("cannot create: {e}")),
            })?;
        let written = file
            .write_all(format!("{}\n", hex::encode(seed)).as_bytes())
            .and_then(|_| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(err(format!("cannot write: {e}")));
        }
        Ok(key)
    }
}

/// A checkpoint: the chain's event `event_id` had hash `hash` at `time`, signed by
/// `public_key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub event_id: i64,
    pub hash: String,
    /// Canonical time text (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), the signer's clock.
    pub time: String,
    pub public_key: PublicKey,
}

impl Checkpoint {
    fn validate(&self) -> Result<(), String> {
        if self.event_id < 1 {
            return Err(format!(
                "event_id {} is not an event id (>= 1)",
                self.event_id
            ));
        }
        if self.hash.len() != 64
            || !self
                .hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "hash '{}' is not 64 lower-case hex digits",
                self.hash
            ));
        }
        parse_time(&self.time).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The exact bytes that are signed (UTF-8 of this text): a JSON object with exactly the
    /// keys `event_id, hash, public_key, time, type, v` in this (byte-wise sorted) order, no
    /// whitespace; `event_id` and `v` as JSON integers, the others as JSON strings (which
    /// never need escaping: hex digits, digits and `-:.TZ`).
    pub fn canonical_form(&self) -> String {
        format!(
            "{{\"event_id\":{},\"hash\":\"{}\",\"public_key\":\"{}\",\"time\":\"{}\",\"type\":\"{}\",\"v\":{}}}",
            self.event_id,
            self.hash,
            self.public_key.to_hex(),
            self.time,
            CHECKPOINT_TYPE,
            CHECKPOINT_VERSION
        )
    }
}

/// A checkpoint with its signature: one line of the checkpoint file, one webhook body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The 64-byte ed25519 signature of the canonical form.
    pub signature: Vec<u8>,
}

impl SignedCheckpoint {
    /// The line of the checkpoint file (without the newline): the canonical form's fields plus
    /// `signature` (128 lower-case hex digits), keys sorted.
    pub fn to_line(&self) -> String {
        let c = &self.checkpoint;
        format!(
            "{{\"event_id\":{},\"hash\":\"{}\",\"public_key\":\"{}\",\"signature\":\"{}\",\"time\":\"{}\",\"type\":\"{}\",\"v\":{}}}",
            c.event_id,
            c.hash,
            c.public_key.to_hex(),
            hex::encode(self.signature.as_slice()),
            c.time,
            CHECKPOINT_TYPE,
            CHECKPOINT_VERSION
        )
    }

    /// The same as a JSON value (a webhook body).
    pub fn to_json(&self) -> Value {
        // to_line() is valid JSON by construction (only hex, digits and fixed words inside
        // the strings), so this parse cannot fail; Null would only hide a bug, never data.
        serde_json::from_str(&self.to_line()).unwrap_or(Value::Null)
    }

    /// Parses one line of a checkpoint file. Strict: exactly the documented keys with their
    /// types, a known `type` and `v`; the signature is not checked here (see
    /// [`SignedCheckpoint::signature_ok`]).
    pub fn parse_line(line: &str) -> Result<SignedCheckpoint, String> {
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
        let obj = value
            .as_object()
            .ok_or_else(|| "not a JSON object".to_string())?;
        const KEYS: [&str; 7] = [
            "event_id",
            "hash",
            "public_key",
            "signature",
            "time",
            "type",
            "v",
        ];
        if let Some(extra) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!("unexpected field '{extra}'"));
        }
        let text = |key: &str| -> Result<&str, String> {
            obj.get(key)
                .ok_or_else(|| format!("missing field '{key}'"))?
                .as_str()
                .ok_or_else(|| format!("field '{key}' is not a string"))
        };
        let int = |key: &str| -> Result<i64, String> {
            obj.get(key)
                .ok_or_else(|| format!("missing field '{key}'"))?
                .as_i64()
                .ok_or_else(|| format!("field '{key}' is not an integer"))
        };
        if text("type")? != CHECKPOINT_TYPE {
            return Err(format!(
                "field 'type' is '{}', expected '{CHECKPOINT_TYPE}'",
                text("type")?
            ));
        }
        if int("v")? != CHECKPOINT_VERSION {
            return Err(format!(
                "version {} is not supported (this commitd reads version {CHECKPOINT_VERSION})",
                int("v")?
            ));
        }
        let public_key: PublicKey = text("public_key")?.parse().map_err(|e| format!("{e}"))?;
        if public_key.to_hex() != text("public_key")? {
            return Err("field 'public_key' is not lower-case hex".into());
        }
        let signature = text("signature")?;
        if signature.len() != 128
            || !signature
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("field 'signature' is not 128 lower-case hex digits".into());
        }
        let checkpoint = Checkpoint {
            event_id: int("event_id")?,
            hash: text("hash")?.to_string(),
            time: text("time")?.to_string(),
            public_key,
        };
        checkpoint.validate()?;
        Ok(SignedCheckpoint {
            checkpoint,
            signature: hex::decode(signature).map_err(|e| e.to_string())?,
        })
    }

    /// True when the signature is the named public key's signature of the canonical form.
    /// (Whether that key is trusted is the caller's question.)
    pub fn signature_ok(&self) -> bool {
        self.checkpoint
            .public_key
            .verifies(self.checkpoint.canonical_form().as_bytes(), &self.signature)
    }
}

/// One line of a checkpoint file, judged: parsed and signed by a trusted key, or why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedLine {
    /// 1-based line number in the file.
    pub line: usize,
    pub outcome: Result<SignedCheckpoint, String>,
}

/// Parses every non-empty line of a checkpoint file and checks each signature against the
/// trusted keys. A line signed by another key, or with a bad signature, is an error naming
/// the line; later lines are still checked.
pub fn check_lines(text: &str, trusted: &[PublicKey]) -> Vec<CheckedLine> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let outcome = SignedCheckpoint::parse_line(l.trim()).and_then(|c| {
                if !trusted.contains(&c.checkpoint.public_key) {
                    return Err(format!(
                        "signed by key {}, which is not a trusted public key",
                        c.checkpoint.public_key
                    ));
                }
                if !c.signature_ok() {
                    return Err(format!(
                        "bad signature (event {}, time {}): the line was altered or forged",
                        c.checkpoint.event_id, c.checkpoint.time
                    ));
                }
                Ok(c)
            });
            CheckedLine {
                line: i + 1,
                outcome,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn key() -> SigningKey {
        SigningKey::from_seed(&[7u8; 32]).unwrap()
    }

    fn time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 11, 30, 0).unwrap()
    }

    /// Golden value: pins the signed bytes, the public key of a fixed seed and the signature
    /// (ed25519 is deterministic). docs/audit.md shows the same example; if this fails, stored
    /// checkpoints no longer verify: bump CHECKPOINT_VERSION instead.
    #[test]
    fn golden_checkpoint_form_and_signature() {
        let signed = key().sign(42, &"ab".repeat(32), time()).unwrap();
        let pk = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";
        assert_eq!(signed.checkpoint.public_key.to_hex(), pk);
        assert_eq!(
            signed.checkpoint.canonical_form(),
            format!(
                "{{\"event_id\":42,\"hash\":\"{}\",\"public_key\":\"{pk}\",\"time\":\"2026-12-07T11:30:00.000000Z\",\"type\":\"commitd.audit.checkpoint\",\"v\":1}}",
                "ab".repeat(32)
            )
        );
        // Computed independently with Python's `cryptography` (Ed25519PrivateKey
        // .from_private_bytes(bytes([7] * 32)).sign(canonical form)).
        assert_eq!(
            hex::encode(signed.signature.as_slice()),
            "df59b7e8dec14ec2d93669ccbb214de7212248abf3b8334ce9b6f99f8a4a4ca7\
             736046f03ff16e31794e42fa0a03042b89856038cec43866db8f7082b2094304"
        );
        assert!(signed.signature_ok());
        let back = SignedCheckpoint::parse_line(&signed.to_line()).unwrap();
        assert_eq!(back, signed);
        assert_eq!(signed.to_json()["event_id"], 42);
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let signed = key().sign(42, &"ab".repeat(32), time()).unwrap();
        let line = signed.to_line();
        for (from, to) in [
            ("\"event_id\":42", "\"event_id\":43"),
            ("abababab", "abababac"),
            ("11:30:00", "11:30:01"),
        ] {
            let edited = line.replacen(from, to, 1);
            assert_ne!(edited, line);
            let parsed = SignedCheckpoint::parse_line(&edited).unwrap();
            assert!(!parsed.signature_ok(), "{from} -> {to} still verifies");
        }
        // Another key's signature over the same fields.
        let other = SigningKey::from_seed(&[8u8; 32]).unwrap();
        let mut forged = other.sign(42, &"ab".repeat(32), time()).unwrap();
        forged.checkpoint.public_key = key().public_key().clone();
        assert!(!forged.signature_ok());
    }

    #[test]
    fn lines_are_checked_against_the_trusted_keys_and_named() {
        let k = key();
        let other = SigningKey::from_seed(&[9u8; 32]).unwrap();
        let good = k.sign(1, &"0a".repeat(32), time()).unwrap().to_line();
        let foreign = other.sign(2, &"0b".repeat(32), time()).unwrap().to_line();
        let bad_sig = good.replacen("\"event_id\":1", "\"event_id\":5", 1);
        let text = format!("{good}\n\n{foreign}\n{bad_sig}\n{{\"event_id\":1}}\nnot json\n");
        let checked = check_lines(&text, &[k.public_key().clone()]);
        let lines: Vec<usize> = checked.iter().map(|c| c.line).collect();
        assert_eq!(lines, [1, 3, 4, 5, 6]);
        assert!(checked[0].outcome.is_ok());
        let errs: Vec<String> = checked[1..]
            .iter()
            .map(|c| c.outcome.clone().unwrap_err())
            .collect();
        assert!(errs[0].contains("not a trusted public key"), "{}", errs[0]);
        assert!(errs[1].contains("bad signature"), "{}", errs[1]);
        assert!(errs[2].contains("missing field"), "{}", errs[2]);
        assert!(errs[3].contains("not a JSON object"), "{}", errs[3]);
        // Trusting the other key as well accepts its line.
        let both = check_lines(&text, &[k.public_key().clone(), other.public_key().clone()]);
        assert!(both[1].outcome.is_ok());
    }

    #[test]
    fn parse_is_strict_about_fields_and_versions() {
        let line = key().sign(3, &"cd".repeat(32), time()).unwrap().to_line();
        for (from, to, want) in [
            ("\"v\":1", "\"v\":2", "version 2"),
            ("commitd.audit.checkpoint", "other", "field 'type'"),
            ("\"event_id\":3", "\"event_id\":\"3\"", "not an integer"),
            ("\"event_id\":3", "\"event_id\":0", "not an event id"),
            (
                "\"v\":1",
                "\"v\":1,\"extra\":true",
                "unexpected field 'extra'",
            ),
            ("cdcd", "CDCD", "lower-case hex"),
            (".000000Z", "Z", "not canonical"),
        ] {
            let err = SignedCheckpoint::parse_line(&line.replacen(from, to, 1)).unwrap_err();
            assert!(err.contains(want), "{from} -> {to}: {err}");
        }
        assert!(key().sign(0, &"cd".repeat(32), time()).is_err());
        assert!(key().sign(1, "xyz", time()).is_err());
    }

    #[test]
    fn key_files_are_created_once_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let key = SigningKey::generate_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = SigningKey::load(&path).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        let before = std::fs::read(&path).unwrap();
        let err = SigningKey::generate_file(&path).unwrap_err().to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKey::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("mode 0644") && err.contains(&path.display().to_string()),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(SigningKey::load(&path).is_err());

        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "not a key\n").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = SigningKey::load(&bad).unwrap_err().to_string();
        assert!(
            err.contains("malformed") && err.contains("bad.key"),
            "{err}"
        );
        let err = SigningKey::load(&dir.path().join("missing.key"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing.key") && err.contains("cannot read"),
            "{err}"
        );
    }

    #[test]
    fn public_keys_parse_from_hex_only() {
        let pk = key().public_key().clone();
        assert_eq!(pk.to_hex().parse::<PublicKey>().unwrap(), pk);
        assert_eq!(pk.to_hex().to_uppercase().parse::<PublicKey>().unwrap(), pk);
        assert!("abc".parse::<PublicKey>().is_err());
        assert!("zz".repeat(32).parse::<PublicKey>().is_err());
    }
}
