//! Reads the policy directory for the core's parser ([`PolicySet::from_files`]).

use crate::optimize::Constraints;
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

/// What the policies in `dir` let a planner buy ([`PolicySet::planning_bounds`]; the utilization
/// floor judged at the lowest demand quantile the forecast planner plans with), so that the
/// planner does not propose what policy would then block. The daemon plans within these, and
/// `commitd backtest --policies DIR` replays within them. A directory with no policy file: the
/// benchmark policy ([`Constraints::one_year_only`]).
pub fn planning_bounds(dir: &Path) -> Result<Constraints, PolicyError> {
    load_dir(dir).map(|set| bounds_of(&set))
}

/// [`planning_bounds`] of policies already loaded.
pub fn bounds_of(set: &PolicySet) -> Constraints {
    if set.policies.is_empty() {
        Constraints::one_year_only()
    } else {
        set.planning_bounds(crate::plan::demand::LEVELS[0])
    }
}
