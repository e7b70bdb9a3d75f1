//! A scenario directory: `scenario.toml` naming the window and the usage, rates and
//! commitments files (see the scenario format in the README of the shared scenarios). The
//! service's `sources` reads the files; here they are parsed ([`ScenarioFile::parse`]) and put
//! together ([`Scenario::assemble`]).

use super::commitments::{infer_commitments, InferredCommitment};
use super::{Bill, IngestError};
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
    /// The file's name in a scenario directory.
    pub const NAME: &'static str = "scenario.toml";

    /// Parses `scenario.toml`'s `text`; `path` names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<(ScenarioFile, ScenarioWindow), IngestError> {
        let invalid = |detail: String| IngestError::Invalid {
            path: path.to_path_buf(),
            detail,
        };
        let file: ScenarioFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let hour =
            |field: &str, v: &str| Hour::parse(v).map_err(|e| invalid(format!("{field}: {e}")));
        let window = ScenarioWindow {
            history_start: hour("history_start", &file.history_start)?,
            decision_time: hour("decision_time", &file.decision_time)?,
            evaluation_end: hour("evaluation_end", &file.evaluation_end)?,
        };
        if !(window.history_start < window.decision_time
            && window.decision_time <= window.evaluation_end)
        {
            return Err(invalid(
                "expected history_start < decision_time <= evaluation_end".into(),
            ));
        }
        Ok((file, window))
    }
}

impl Scenario {
    /// A scenario from its parsed files: `bill` read over `window.all()`, `listed` the
    /// commitments file's; the commitments only the bill reveals are inferred and added.
    pub fn assemble(
        dir: PathBuf,
        file: ScenarioFile,
        window: ScenarioWindow,
        rates: RateCard,
        bill: Bill,
        listed: Vec<Commitment>,
    ) -> Scenario {
        let mut commitments = listed;
        let (inferred, notes) = infer_commitments(&bill.commitments, &commitments);
        commitments.extend(inferred.iter().map(|i| i.commitment.clone()));
        Scenario {
            dir,
            name: file.name,
            description: file.description,
            window,
            usage: bill.model,
            rates,
            commitments,
            inferred,
            notes,
        }
    }

    /// The usage a planner may look at: `[history_start, decision_time)`.
    pub fn history(&self) -> UsageModel {
        self.usage.slice(self.window.history())
    }
}
