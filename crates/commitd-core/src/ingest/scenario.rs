//! A scenario directory: `scenario.toml` naming the window and the usage, rates and
//! commitments files (see the scenario format in the README of the shared scenarios).

use super::commitments::{infer_commitments, read_commitments, InferredCommitment};
use super::rates::read_rate_card;
use super::{read_focus, IngestError, ReadOptions};
use crate::domain::{Commitment, Hour, RateCard, ScenarioWindow, UsageModel};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `scenario.toml` as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub history_start: String,
    pub decision_time: String,
    pub evaluation_end: String,
    pub usage: String,
    pub rates: String,
    pub commitments: String,
}

/// A loaded scenario: window, usage over the whole window, rate card and commitments.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub dir: PathBuf,
    pub name: String,
    pub description: String,
    pub window: ScenarioWindow,
    /// Usage over `window.all()`: history and evaluation. Planners must slice to the history.
    pub usage: UsageModel,
    pub rates: RateCard,
    /// Commitments listed in the commitments file, then those inferred from the bill.
    pub commitments: Vec<Commitment>,
    /// The inferred ones again, with what was assumed, and bill commitments not inferred.
    pub inferred: Vec<InferredCommitment>,
    pub notes: Vec<String>,
}

impl ScenarioFile {
    pub fn read(dir: &Path) -> Result<(ScenarioFile, ScenarioWindow), IngestError> {
        let path = dir.join("scenario.toml");
        let text = std::fs::read_to_string(&path).map_err(|source| IngestError::Io {
            path: path.clone(),
            source,
        })?;
        let file: ScenarioFile = toml::from_str(&text).map_err(|e| IngestError::Invalid {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let hour = |field: &str, v: &str| {
            Hour::parse(v).map_err(|e| IngestError::Invalid {
                path: path.clone(),
                detail: format!("{field}: {e}"),
            })
        };
        let window = ScenarioWindow {
            history_start: hour("history_start", &file.history_start)?,
            decision_time: hour("decision_time", &file.decision_time)?,
            evaluation_end: hour("evaluation_end", &file.evaluation_end)?,
        };
        if !(window.history_start < window.decision_time
            && window.decision_time <= window.evaluation_end)
        {
            return Err(IngestError::Invalid {
                path,
                detail: "expected history_start < decision_time <= evaluation_end".into(),
            });
        }
        Ok((file, window))
    }
}

impl Scenario {
    /// Loads a scenario directory without a progress bar.
    pub fn load(dir: &Path) -> Result<Scenario, IngestError> {
        Self::load_with(dir, false)
    }

    pub fn load_with(dir: &Path, progress: bool) -> Result<Scenario, IngestError> {
        let (file, window) = ScenarioFile::read(dir)?;
        let rates = read_rate_card(&dir.join(&file.rates))?;
        let bill = read_focus(
            &dir.join(&file.usage),
            &ReadOptions {
                range: Some(window.all()),
                progress,
            },
        )?;
        let mut commitments = read_commitments(&dir.join(&file.commitments), Some(&rates))?;
        let (inferred, notes) = infer_commitments(&bill.commitments, &commitments);
        commitments.extend(inferred.iter().map(|i| i.commitment.clone()));
        Ok(Scenario {
            dir: dir.to_path_buf(),
            name: file.name,
            description: file.description,
            window,
            usage: bill.model,
            rates,
            commitments,
            inferred,
            notes,
        })
    }

    /// The usage a planner may look at: `[history_start, decision_time)`.
    pub fn history(&self) -> UsageModel {
        self.usage.slice(self.window.history())
    }
}
