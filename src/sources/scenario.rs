//! A scenario directory (`scenario.toml` and the usage, rates and commitments files it names),
//! the rate card and a ContractCommitment file: opened here, parsed by the core's `ingest`.

use super::focus::{read_focus, ReadOptions};
use crate::domain::{Commitment, RateCard, ScenarioWindow};
use crate::ingest::{self, IngestError, Scenario, ScenarioFile};
use std::fs::File;
use std::path::Path;

fn open(path: &Path) -> Result<File, IngestError> {
    File::open(path).map_err(|source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads `dir/scenario.toml`: the scenario's files and its window.
pub fn read_scenario_file(dir: &Path) -> Result<(ScenarioFile, ScenarioWindow), IngestError> {
    let path = dir.join(ScenarioFile::NAME);
    let text = std::fs::read_to_string(&path).map_err(|source| IngestError::Io {
        path: path.clone(),
        source,
    })?;
    ScenarioFile::parse(&path, &text)
}

/// Reads a rate card (`rates.csv`).
pub fn read_rate_card(path: &Path) -> Result<RateCard, IngestError> {
    ingest::read_rate_card(path, open(path)?)
}

/// Reads a ContractCommitment file; `rates` prices RIs whose row has no cost.
pub fn read_commitments(
    path: &Path,
    rates: Option<&RateCard>,
) -> Result<Vec<Commitment>, IngestError> {
    ingest::read_commitments(path, open(path)?, rates)
}

/// Loads a scenario directory without a progress bar.
pub fn load_scenario(dir: &Path) -> Result<Scenario, IngestError> {
    load_scenario_with(dir, false)
}

/// Loads a scenario directory: usage over the whole window, rates, commitments (listed, then
/// inferred from the bill).
pub fn load_scenario_with(dir: &Path, progress: bool) -> Result<Scenario, IngestError> {
    let (file, window) = read_scenario_file(dir)?;
    let rates = read_rate_card(&dir.join(&file.rates))?;
    let bill = read_focus(
        &dir.join(&file.usage),
        &ReadOptions {
            range: Some(window.all()),
            progress,
        },
    )?;
    let listed = read_commitments(&dir.join(&file.commitments), Some(&rates))?;
    Ok(Scenario::assemble(
        dir.to_path_buf(),
        file,
        window,
        rates,
        bill,
        listed,
    ))
}
