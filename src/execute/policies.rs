//! The policies in force, read again whenever their files change.
//!
//! The executor asks [`PolicySource::current`] before every provider call, so a kill switch,
//! a blackout or a lowered limit written to `policies/` applies to the very next call (retries
//! and resumes included) without a restart. Each call re-reads the policy files (a few KB) and
//! compares their digest with the one in force: an edit is never missed, whatever the file
//! system's timestamp resolution. SIGHUP forces a reload ([`PolicySource::reload`]), which
//! also logs the outcome.
//!
//! A policy directory that no longer parses does not fall back to anything: `current` returns
//! the error, and the executor calls nothing until the files are fixed. Buying under rules
//! nobody can read is the one thing worse than not buying.

use crate::policy::PolicySet;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug)]
pub struct PolicySource {
    dir: Option<PathBuf>,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    digest: String,
    result: Result<PolicySet, String>,
}

/// The digest of the `*.toml` files of `dir` (names and contents, sorted by name), or why the
/// directory could not be read.
fn digest_of(dir: &Path) -> Result<String, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let mut h = Sha256::new();
    for p in paths {
        let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        h.update(p.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(Sha256::digest(&bytes));
    }
    Ok(hex::encode(h.finalize()))
}

impl PolicySource {
    /// Fixed policies that never reload (tests, `commitd run --once` of a library caller).
    pub fn fixed(set: PolicySet) -> PolicySource {
        PolicySource {
            dir: None,
            state: Mutex::new(Loaded {
                digest: String::new(),
                result: Ok(set),
            }),
        }
    }

    /// The policies of `dir`, watched from now on. The first load must succeed: a service does
    /// not start on broken policies.
    pub fn watch(dir: &Path) -> Result<PolicySource, crate::policy::PolicyError> {
        let set = crate::sources::policies::load_dir(dir)?;
        Ok(PolicySource {
            dir: Some(dir.to_path_buf()),
            state: Mutex::new(Loaded {
                digest: digest_of(dir).unwrap_or_default(),
                result: Ok(set),
            }),
        })
    }

    /// The policies in force now: reloaded if the files changed since the last call. Err when
    /// the files no longer load (the message names the file and the field); nothing may execute
    /// then.
    pub fn current(&self) -> Result<PolicySet, String> {
        let Some(dir) = &self.dir else {
            return self.lock().result.clone();
        };
        let digest = match digest_of(dir) {
            Ok(d) => d,
            Err(e) => return Err(format!("policies unreadable: {e}")),
        };
        let mut state = self.lock();
        if state.digest != digest {
            state.result = crate::sources::policies::load_dir(dir).map_err(|e| e.to_string());
            state.digest = digest;
            match &state.result {
                Ok(set) => tracing::info!(
                    dir = %dir.display(),
                    policies = set.policies.len(),
                    "policies reloaded"
                ),
                Err(e) => tracing::error!(
                    dir = %dir.display(),
                    error = %e,
                    "policies no longer load: execution stops until they are fixed"
                ),
            }
        }
        state.result.clone()
    }

    /// Forces a reload (SIGHUP) and says whether the policies now load.
    pub fn reload(&self) -> Result<PolicySet, String> {
        self.lock().digest.clear();
        self.current()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "aws"
[scope]
provider = "AWS"
[allow]
instruments = ["ComputeSavingsPlan"]
terms = [1]
payment_options = ["NoUpfront"]
"#;

    #[test]
    fn an_edit_applies_at_the_next_call_and_a_broken_file_stops_everything() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("aws.toml");
        std::fs::write(&file, GOOD).unwrap();
        let source = match PolicySource::watch(dir.path()) {
            Ok(s) => s,
            // The fixture must match the policy format; say so rather than pass vacuously.
            Err(e) => panic!("fixture policy does not load: {e}"),
        };
        assert!(!source.current().unwrap().policies[0].kill_switch);
        std::fs::write(
            &file,
            GOOD.replacen("name = \"aws\"", "name = \"aws\"\nkill_switch = true", 1),
        )
        .unwrap();
        assert!(source.current().unwrap().policies[0].kill_switch);
        std::fs::write(&file, "name = [broken").unwrap();
        let e = source.current().unwrap_err();
        assert!(e.contains("aws.toml"), "{e}");
        // Still broken on the next call: no fallback to the last good policies.
        assert!(source.current().is_err());
        assert!(source.reload().is_err());
        std::fs::write(&file, GOOD).unwrap();
        assert!(source.current().is_ok());
    }
}
