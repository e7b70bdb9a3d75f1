//! Reads the policy directory for the core's parser ([`PolicySet::from_files`]).

use crate::policy::{PolicyError, PolicySet};
use std::path::{Path, PathBuf};

/// Loads and validates every `*.toml` in `dir` (sorted by name). Nothing is returned unless
/// every file reads and is valid: a broken policy must never leave the others half in force.
pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
            path: path.clone(),
            source,
        })?;
        files.push((path, text));
    }
    PolicySet::from_files(dir, files)
}
