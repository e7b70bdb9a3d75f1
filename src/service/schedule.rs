//! Cron schedules for the daemon's jobs (plan, execute), in UTC.
//!
//! Expressions use the `cron` crate's syntax with a seconds field: `sec min hour day month
//! weekday`, e.g. `0 0 6 * * *` for 06:00 UTC daily. Five-field crontab lines are accepted
//! too (seconds = 0), because that is what operators paste.

use chrono::{DateTime, Utc};
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
#[error("schedule '{expr}' ({key}): {message}")]
pub struct ScheduleError {
    pub key: String,
    pub expr: String,
    pub message: String,
}

#[derive(Clone, Debug)]
pub struct Schedule {
    expr: String,
    inner: cron::Schedule,
}

impl Schedule {
    /// Parses `expr`; `key` names the setting in errors.
    pub fn parse(key: &str, expr: &str) -> Result<Schedule, ScheduleError> {
        let fields = expr.split_whitespace().count();
        let full = if fields == 5 {
            format!("0 {}", expr.trim())
        } else {
            expr.trim().to_string()
        };
        let inner = cron::Schedule::from_str(&full).map_err(|e| ScheduleError {
            key: key.into(),
            expr: expr.into(),
            message: e.to_string(),
        })?;
        Ok(Schedule {
            expr: expr.into(),
            inner,
        })
    }

    /// The first firing strictly after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.inner.after(&now).next()
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn daily_at_six_utc_and_crontab_syntax() {
        let s = Schedule::parse("plan_schedule", "0 0 6 * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 7, 0, 0).unwrap();
        assert_eq!(
            s.next_after(now),
            Some(Utc.with_ymd_and_hms(2026, 11, 25, 6, 0, 0).unwrap())
        );
        let five = Schedule::parse("execute_schedule", "*/5 * * * *").unwrap();
        assert_eq!(
            five.next_after(now),
            Some(Utc.with_ymd_and_hms(2026, 11, 24, 7, 5, 0).unwrap())
        );
        let e = Schedule::parse("plan_schedule", "every day").unwrap_err();
        assert!(e.to_string().contains("plan_schedule"), "{e}");
    }
}
