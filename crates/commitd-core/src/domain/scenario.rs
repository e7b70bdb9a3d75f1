//! The time window of a scenario: history, decision, evaluation.

use super::time::{Hour, HourRange};
use serde::{Deserialize, Serialize};

/// `[history_start, decision_time)` is history a planner may look at; `[decision_time,
/// evaluation_end)` is the future a backtest reveals hour by hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioWindow {
    pub history_start: Hour,
    pub decision_time: Hour,
    pub evaluation_end: Hour,
}

impl ScenarioWindow {
    pub fn history(&self) -> HourRange {
        HourRange::new(self.history_start, self.decision_time)
    }

    pub fn evaluation(&self) -> HourRange {
        HourRange::new(self.decision_time, self.evaluation_end)
    }

    pub fn all(&self) -> HourRange {
        HourRange::new(self.history_start, self.evaluation_end)
    }
}
