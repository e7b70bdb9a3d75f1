//! Policies: the guardrails a human sets, and the verdict they give on each planned action.
//!
//! A policy file (`policies/*.toml`) says which instruments, terms and payment options commitd may
//! buy, how fast it may commit new money (per day and per rolling 30 days, so purchases ladder in
//! small steps), the minimum expected utilization, blackout windows, approval thresholds and a kill
//! switch. Pure: evaluation takes the action, what was already committed in the windows (read from
//! the audit store by the caller, so limits hold at execution time and not only at planning time)
//! and the current hour, and returns a verdict that names the rule behind it.

use crate::domain::{Hour, Instrument, Money, PaymentOption, Provider, Term};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{dir}: no policy files (*.toml)")]
    Empty { dir: PathBuf },
    #[error("policy '{name}' is defined twice: {first} and {second}")]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
}

/// Which actions a policy governs. Every field left out matches everything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyScope {
    pub provider: Option<Provider>,
    /// Billing/sub-account id the action is bought in.
    pub account: Option<String>,
    #[serde(default)]
    pub instruments: Vec<Instrument>,
}

/// What may be bought at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    pub instruments: Vec<Instrument>,
    /// Term lengths in years (1, 3).
    pub terms: Vec<Term>,
    pub payment_options: Vec<PaymentOption>,
}

impl Default for Allow {
    fn default() -> Self {
        Allow {
            instruments: Instrument::ALL
                .iter()
                .copied()
                .filter(|i| i.is_commitment())
                .collect(),
            terms: vec![Term::ONE_YEAR],
            payment_options: PaymentOption::ALL.to_vec(),
        }
    }
}

/// How fast new money may be committed, and how good a purchase must look.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// New hourly commitment (USD/hour, amortized) per UTC day.
    pub max_new_hourly_commitment_per_day: Option<Money>,
    /// New hourly commitment per rolling 30 days.
    pub max_new_hourly_commitment_per_30_days: Option<Money>,
    /// Upfront payments per UTC day.
    pub max_upfront_per_day: Option<Money>,
    /// Upfront payments per rolling 30 days.
    pub max_upfront_per_30_days: Option<Money>,
    /// Minimum expected utilization of a new commitment at `utilization_quantile` of demand.
    pub min_expected_utilization: f64,
    /// The low demand quantile the utilization floor is judged at (0.10 = P10).
    pub utilization_quantile: f64,
    /// Stop buying once this share of ODE is covered (0..1).
    pub coverage_target: Option<f64>,
    /// Buy a 3-year term only when its extra savings over 1 year exceed this share of ODE.
    pub three_year_min_extra_savings: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_new_hourly_commitment_per_day: None,
            max_new_hourly_commitment_per_30_days: None,
            max_upfront_per_day: None,
            max_upfront_per_30_days: None,
            min_expected_utilization: 0.95,
            utilization_quantile: 0.10,
            coverage_target: None,
            three_year_min_extra_savings: 0.05,
        }
    }
}

/// When a human must look, and how many humans.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Approval {
    /// In autopilot, actions at or above this hourly commitment wait for approval instead.
    pub autopilot_max_hourly_commitment: Option<Money>,
    /// In autopilot, actions at or above this upfront wait for approval instead.
    pub autopilot_max_upfront: Option<Money>,
    /// At or above this hourly commitment, two distinct approvers are needed.
    pub two_approvers_from_hourly_commitment: Option<Money>,
    /// At or above this upfront payment, two distinct approvers are needed.
    pub two_approvers_from_upfront: Option<Money>,
}

/// A period in which nothing is bought (e.g. a quarter-end freeze).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blackout {
    pub name: String,
    /// A fixed window `[from, to)`.
    pub from: Option<Hour>,
    pub to: Option<Hour>,
    /// Or recurring: the last `last_days_of_month` days of each listed month (1-12).
    #[serde(default)]
    pub months: Vec<u32>,
    pub last_days_of_month: Option<u32>,
}

impl Blackout {
    fn covers(&self, hour: Hour) -> bool {
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if hour >= from && hour < to {
                return true;
            }
        }
        if let Some(days) = self.last_days_of_month {
            use chrono::Datelike;
            let t = hour.to_datetime();
            if self.months.is_empty() || self.months.contains(&t.month()) {
                let days_in_month = days_in_month(t.year(), t.month());
                return t.day() + days > days_in_month;
            }
        }
        false
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    chrono::NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map(|d| chrono::Datelike::day(&d))
        .unwrap_or(30)
}

/// One policy file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Stops every purchase under this policy at once.
    #[serde(default)]
    pub kill_switch: bool,
    /// Overrides the global mode for actions in scope ("datapilot", "copilot", "autopilot").
    pub mode: Option<crate::config::Mode>,
    #[serde(default)]
    pub scope: PolicyScope,
    #[serde(default)]
    pub allow: Allow,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub approval: Approval,
    #[serde(default, rename = "blackout")]
    pub blackouts: Vec<Blackout>,
    /// The file it came from (set by the loader).
    #[serde(skip)]
    pub source: PathBuf,
}

impl Policy {
    /// Parses and validates one policy file's text. Errors name the file, and TOML errors the
    /// line and column.
    pub fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut policy: Policy =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
        policy.source = path.to_path_buf();
        policy.validate().map_err(invalid)?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        let l = &self.limits;
        if !(0.0..=1.0).contains(&l.min_expected_utilization) {
            return Err(format!(
                "limits.min_expected_utilization = {} must be between 0 and 1",
                l.min_expected_utilization
            ));
        }
        if !(0.0 < l.utilization_quantile && l.utilization_quantile < 1.0) {
            return Err(format!(
                "limits.utilization_quantile = {} must be strictly between 0 and 1",
                l.utilization_quantile
            ));
        }
        if let Some(c) = l.coverage_target {
            if !(0.0..=1.0).contains(&c) {
                return Err(format!(
                    "limits.coverage_target = {c} must be between 0 and 1"
                ));
            }
        }
        if !(0.0..=1.0).contains(&l.three_year_min_extra_savings) {
            return Err(format!(
                "limits.three_year_min_extra_savings = {} must be between 0 and 1",
                l.three_year_min_extra_savings
            ));
        }
        for (key, value) in [
            (
                "limits.max_new_hourly_commitment_per_day",
                l.max_new_hourly_commitment_per_day,
            ),
            (
                "limits.max_new_hourly_commitment_per_30_days",
                l.max_new_hourly_commitment_per_30_days,
            ),
            ("limits.max_upfront_per_day", l.max_upfront_per_day),
            ("limits.max_upfront_per_30_days", l.max_upfront_per_30_days),
        ] {
            if value.is_some_and(Money::is_negative) {
                return Err(format!("{key} must not be negative"));
            }
        }
        if let (Some(day), Some(month)) = (
            l.max_new_hourly_commitment_per_day,
            l.max_new_hourly_commitment_per_30_days,
        ) {
            if day > month {
                return Err(format!(
                    "limits.max_new_hourly_commitment_per_day ({day}) exceeds the 30-day limit ({month})"
                ));
            }
        }
        if self.allow.instruments.contains(&Instrument::OnDemand) {
            return Err("allow.instruments: OnDemand is not a commitment".into());
        }
        if let Some(p) = self.scope.provider {
            if let Some(i) = self
                .allow
                .instruments
                .iter()
                .find(|i| i.provider() != Some(p))
            {
                return Err(format!(
                    "allow.instruments: {i} is not sold by {p}, the provider in scope"
                ));
            }
        }
        for b in &self.blackouts {
            match (b.from, b.to, b.last_days_of_month) {
                (Some(from), Some(to), _) if from >= to => {
                    return Err(format!("blackout '{}': from must be before to", b.name))
                }
                (Some(_), None, _) | (None, Some(_), _) => {
                    return Err(format!("blackout '{}': give both from and to", b.name))
                }
                (None, None, None) => {
                    return Err(format!(
                        "blackout '{}': give from/to or last_days_of_month",
                        b.name
                    ))
                }
                _ => {}
            }
            if let Some(m) = b.months.iter().find(|m| !(1..=12).contains(*m)) {
                return Err(format!("blackout '{}': month {m} is not 1-12", b.name));
            }
        }
        Ok(())
    }

    /// Whether this policy governs the action.
    pub fn applies_to(&self, action: &ActionFacts) -> bool {
        let s = &self.scope;
        s.provider.is_none_or(|p| p == action.provider)
            && s.account
                .as_ref()
                .is_none_or(|a| action.account.as_deref() == Some(a.as_str()))
            && (s.instruments.is_empty() || s.instruments.contains(&action.instrument))
    }

    /// The scope's specificity: a policy naming an account beats one naming a provider, which
    /// beats a catch-all.
    fn specificity(&self) -> u8 {
        (self.scope.account.is_some() as u8) * 4
            + (!self.scope.instruments.is_empty() as u8) * 2
            + self.scope.provider.is_some() as u8
    }
}

/// The facts about one planned action that policy judges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionFacts {
    pub provider: Provider,
    pub account: Option<String>,
    pub instrument: Instrument,
    pub term: Term,
    pub payment: PaymentOption,
    /// Amortized USD per hour the action commits to.
    pub hourly_commitment: Money,
    /// Paid upfront at purchase.
    pub upfront: Money,
    /// Expected utilization at the policy's low demand quantile, if the plan computed it.
    pub expected_utilization: Option<f64>,
    /// The action gives up a held commitment (a return or a Marketplace sale) and buys
    /// nothing: the allow lists, which say what may be bought, do not judge it (a 3-year
    /// reservation bought by hand may be returned under a 1-year policy); the kill switch,
    /// blackouts, limits, mode and approvals do.
    #[serde(default)]
    pub gives_up: bool,
}

/// What was already committed in the windows the limits look at (from the audit store).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentSpend {
    pub hourly_commitment_today: Money,
    pub hourly_commitment_30_days: Money,
    pub upfront_today: Money,
    pub upfront_30_days: Money,
}

/// The outcome for one action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    /// May execute without a human (autopilot).
    Allow,
    /// Waits for this many distinct approvers.
    NeedsApproval { approvers: u8 },
    /// Must not execute.
    Block,
}

/// One rule's judgement, for the audit trail and `commitd policy check`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleCheck {
    /// e.g. "allow.instruments", "limits.max_upfront_per_day", "kill_switch".
    pub rule: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub policy: String,
    pub verdict: Verdict,
    pub checks: Vec<RuleCheck>,
}

impl Decision {
    /// The first failing rule, i.e. why an action is blocked.
    pub fn blocking_rule(&self) -> Option<&RuleCheck> {
        self.checks.iter().find(|c| !c.passed)
    }
}

/// All policy files of a directory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
}

impl PolicySet {
    /// Loads and validates every `*.toml` in `dir` (sorted by name). Nothing is returned unless
    /// every file is valid: a broken policy must never leave the others half in force.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
        let read = |path: &Path| PolicyError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other("unreadable"),
        };
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
        if paths.is_empty() {
            return Err(PolicyError::Empty {
                dir: dir.to_path_buf(),
            });
        }
        let mut set = PolicySet::default();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|_| read(&path))?;
            let policy = Policy::parse(&text, &path)?;
            if let Some(other) = set.policies.iter().find(|p| p.name == policy.name) {
                return Err(PolicyError::Duplicate {
                    name: policy.name.clone(),
                    first: other.source.clone(),
                    second: path,
                });
            }
            set.policies.push(policy);
        }
        Ok(set)
    }

    /// The most specific policy governing the action (ties: the first file by name).
    pub fn governing(&self, action: &ActionFacts) -> Option<&Policy> {
        self.policies
            .iter()
            .filter(|p| p.applies_to(action))
            .max_by_key(|p| (p.specificity(), std::cmp::Reverse(p.source.clone())))
    }

    /// What the policies allow, as the optimizer's constraints, so that it plans only what
    /// the per-action check can pass: an instrument/term/payment combination is allowed when the
    /// policy governing it (no account named) allows it and its kill switch is off; the
    /// optimizer's per-provider sets are the unions of the allowed combinations (a policy per
    /// instrument with different terms makes them looser than the policies; the per-action
    /// check still judges every action). Limits: the strictest utilization floor (judged at
    /// the plan's lowest scenario, `floor_level`), coverage target, per-day caps on new hourly
    /// commitment and upfront (one cycle's plan fits in one day's budget), and 3-year threshold.
    pub fn planning_bounds(&self, floor_level: f64) -> crate::optimize::Constraints {
        use crate::optimize::{Constraints, MinUtilization, ProviderPolicy};
        let mut c = Constraints::permissive();
        c.providers.clear();
        for provider in [Provider::Aws, Provider::Azure] {
            let mut allowed = ProviderPolicy {
                instruments: Default::default(),
                terms: Default::default(),
                payments: Default::default(),
            };
            for &instrument in Instrument::ALL
                .iter()
                .filter(|i| i.is_commitment() && i.provider() == Some(provider))
            {
                for term in [Term::ONE_YEAR, Term::THREE_YEARS] {
                    for &payment in PaymentOption::ALL.iter() {
                        let facts = ActionFacts {
                            provider,
                            account: None,
                            instrument,
                            term,
                            payment,
                            hourly_commitment: Money::ZERO,
                            upfront: Money::ZERO,
                            expected_utilization: None,
                            gives_up: false,
                        };
                        let ok = self.governing(&facts).is_some_and(|p| {
                            !p.kill_switch
                                && p.allow.instruments.contains(&instrument)
                                && p.allow.terms.contains(&term)
                                && p.allow.payment_options.contains(&payment)
                        });
                        if ok {
                            allowed.instruments.insert(instrument);
                            allowed.terms.insert(term);
                            allowed.payments.insert(payment);
                        }
                    }
                }
            }
            if !allowed.instruments.is_empty() {
                c.providers.insert(provider, allowed);
            }
        }
        let limits = self.policies.iter().map(|p| &p.limits);
        c.max_new_hourly = limits
            .clone()
            .filter_map(|l| l.max_new_hourly_commitment_per_day)
            .min();
        c.max_upfront = limits.clone().filter_map(|l| l.max_upfront_per_day).min();
        c.max_coverage = limits
            .clone()
            .filter_map(|l| l.coverage_target)
            .reduce(f64::min);
        c.min_utilization = limits
            .clone()
            .map(|l| l.min_expected_utilization)
            .reduce(f64::max)
            .map(|min| MinUtilization {
                level: floor_level,
                min,
            });
        c.three_year_min_extra_savings = limits
            .map(|l| l.three_year_min_extra_savings)
            .fold(0.0, f64::max);
        c
    }

    /// Judges one action. With no governing policy, nothing may be bought: commitd never spends
    /// money no human has written a rule for.
    pub fn evaluate(
        &self,
        action: &ActionFacts,
        recent: &RecentSpend,
        now: Hour,
        global_mode: crate::config::Mode,
    ) -> Decision {
        match self.governing(action) {
            Some(policy) => evaluate(policy, action, recent, now, global_mode),
            None => Decision {
                policy: "(none)".into(),
                verdict: Verdict::Block,
                checks: vec![RuleCheck {
                    rule: "scope".into(),
                    passed: false,
                    detail: format!(
                        "no policy governs {} {} purchases",
                        action.provider, action.instrument
                    ),
                }],
            },
        }
    }
}

/// Judges one action under one policy; every rule is checked and reported, pass or fail.
pub fn evaluate(
    policy: &Policy,
    action: &ActionFacts,
    recent: &RecentSpend,
    now: Hour,
    global_mode: crate::config::Mode,
) -> Decision {
    use crate::config::Mode;
    let mut checks = Vec::new();
    let mut check = |rule: &str, passed: bool, detail: String| {
        checks.push(RuleCheck {
            rule: rule.to_string(),
            passed,
            detail,
        });
    };

    check(
        "kill_switch",
        !policy.kill_switch,
        if policy.kill_switch {
            "the kill switch is on".into()
        } else {
            "off".into()
        },
    );
    let blackout = policy.blackouts.iter().find(|b| b.covers(now));
    check(
        "blackout",
        blackout.is_none(),
        match blackout {
            Some(b) => format!("{now} is inside blackout '{}'", b.name),
            None => "outside every blackout window".into(),
        },
    );
    let a = &policy.allow;
    let allowed = |listed: bool, what: String| {
        if action.gives_up {
            (
                true,
                format!("{what}: not judged, the action gives up a held commitment"),
            )
        } else {
            (listed, what)
        }
    };
    let (ok, detail) = allowed(
        a.instruments.contains(&action.instrument),
        format!(
            "{} {}",
            action.instrument,
            allowed_word(&a.instruments, &action.instrument)
        ),
    );
    check("allow.instruments", ok, detail);
    let (ok, detail) = allowed(
        a.terms.contains(&action.term),
        format!("{} {}", action.term, allowed_word(&a.terms, &action.term)),
    );
    check("allow.terms", ok, detail);
    let (ok, detail) = allowed(
        a.payment_options.contains(&action.payment),
        format!(
            "{} {}",
            action.payment,
            allowed_word(&a.payment_options, &action.payment)
        ),
    );
    check("allow.payment_options", ok, detail);
    let l = &policy.limits;
    if let Some(u) = action.expected_utilization {
        check(
            "limits.min_expected_utilization",
            u + 1e-9 >= l.min_expected_utilization,
            format!(
                "expected utilization {:.1}% at P{:.0} vs floor {:.1}%",
                u * 100.0,
                l.utilization_quantile * 100.0,
                l.min_expected_utilization * 100.0
            ),
        );
    }
    let mut limit = |rule: &str, used: Money, add: Money, max: Option<Money>| {
        if let Some(max) = max {
            let after = used + add;
            check(
                rule,
                after <= max,
                format!("{used} already + {add} this action = {after} vs limit {max}"),
            );
        }
    };
    limit(
        "limits.max_new_hourly_commitment_per_day",
        recent.hourly_commitment_today,
        action.hourly_commitment,
        l.max_new_hourly_commitment_per_day,
    );
    limit(
        "limits.max_new_hourly_commitment_per_30_days",
        recent.hourly_commitment_30_days,
        action.hourly_commitment,
        l.max_new_hourly_commitment_per_30_days,
    );
    limit(
        "limits.max_upfront_per_day",
        recent.upfront_today,
        action.upfront,
        l.max_upfront_per_day,
    );
    limit(
        "limits.max_upfront_per_30_days",
        recent.upfront_30_days,
        action.upfront,
        l.max_upfront_per_30_days,
    );

    let blocked = checks.iter().any(|c| !c.passed);
    let ap = &policy.approval;
    let two = ap
        .two_approvers_from_hourly_commitment
        .is_some_and(|t| action.hourly_commitment >= t)
        || ap
            .two_approvers_from_upfront
            .is_some_and(|t| action.upfront >= t);
    let approvers = if two { 2 } else { 1 };
    // A policy's mode overrides the global one, except that a global datapilot is absolute:
    // a deployment started to observe must never spend, whatever a policy file says (a
    // `mode = "copilot"` policy would otherwise make its actions approvable and executable).
    let mode = match global_mode {
        Mode::Datapilot => Mode::Datapilot,
        _ => policy.mode.unwrap_or(global_mode),
    };
    let verdict = if blocked {
        Verdict::Block
    } else {
        match mode {
            // Datapilot never executes; the action is recorded as a recommendation.
            Mode::Datapilot => Verdict::Block,
            Mode::Copilot => Verdict::NeedsApproval { approvers },
            Mode::Autopilot => {
                let above = ap
                    .autopilot_max_hourly_commitment
                    .is_some_and(|t| action.hourly_commitment >= t)
                    || ap
                        .autopilot_max_upfront
                        .is_some_and(|t| action.upfront >= t);
                if above || two {
                    Verdict::NeedsApproval { approvers }
                } else {
                    Verdict::Allow
                }
            }
        }
    };
    if !blocked && mode == Mode::Datapilot {
        checks.push(RuleCheck {
            rule: "mode".into(),
            passed: false,
            detail: "datapilot: recommend only, never execute".into(),
        });
    }
    Decision {
        policy: policy.name.clone(),
        verdict,
        checks,
    }
}

fn allowed_word<T: PartialEq>(list: &[T], item: &T) -> &'static str {
    if list.contains(item) {
        "is allowed"
    } else {
        "is not allowed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;

    const EXAMPLE: &str = r#"
name = "aws-default"
[scope]
provider = "AWS"
[allow]
instruments = ["ComputeSavingsPlan", "EC2InstanceSavingsPlan"]
terms = [1]
payment_options = ["NoUpfront", "AllUpfront"]
[limits]
max_new_hourly_commitment_per_day = "10"
max_new_hourly_commitment_per_30_days = "50"
max_upfront_per_day = "20000"
min_expected_utilization = 0.97
[approval]
autopilot_max_hourly_commitment = "5"
two_approvers_from_hourly_commitment = "8"
[[blackout]]
name = "quarter-end freeze"
months = [3, 6, 9, 12]
last_days_of_month = 7
"#;

    fn policy() -> Policy {
        Policy::parse(EXAMPLE, Path::new("policies/aws.toml")).unwrap()
    }

    fn action(hourly: i64) -> ActionFacts {
        ActionFacts {
            provider: Provider::Aws,
            account: None,
            instrument: Instrument::ComputeSavingsPlan,
            term: Term::ONE_YEAR,
            payment: PaymentOption::NoUpfront,
            hourly_commitment: Money::from_units(hourly),
            upfront: Money::ZERO,
            expected_utilization: Some(0.99),
            gives_up: false,
        }
    }

    #[test]
    fn planning_bounds_are_what_the_governing_policies_allow() {
        let ri_only = Policy::parse(
            "name = \"ri\"\n[scope]\nprovider = \"AWS\"\ninstruments = [\"StandardReservedInstance\"]\n[allow]\ninstruments = [\"StandardReservedInstance\"]\nterms = [1, 3]\npayment_options = [\"AllUpfront\"]\n[limits]\nmax_upfront_per_day = \"5000\"\nthree_year_min_extra_savings = 0.1\n",
            Path::new("policies/ri.toml"),
        )
        .unwrap();
        let set = PolicySet {
            policies: vec![policy(), ri_only],
        };
        let c = set.planning_bounds(0.1);
        let aws = &c.providers[&Provider::Aws];
        assert_eq!(
            aws.instruments.iter().copied().collect::<Vec<_>>(),
            vec![
                Instrument::ComputeSavingsPlan,
                Instrument::Ec2InstanceSavingsPlan,
                Instrument::StandardReservedInstance
            ]
        );
        // The RI policy governs RIs (more specific scope) and allows 3 years for them.
        assert!(aws.terms.contains(&Term::THREE_YEARS));
        assert!(!aws
            .instruments
            .contains(&Instrument::ConvertibleReservedInstance));
        assert!(
            !c.providers.contains_key(&Provider::Azure),
            "no policy governs Azure: nothing may be bought there"
        );
        assert_eq!(c.max_new_hourly, Some(Money::from_units(10)));
        assert_eq!(c.max_upfront, Some(Money::from_units(5000)));
        assert_eq!(
            c.min_utilization.map(|m| (m.level, m.min)),
            Some((0.1, 0.97))
        );
        assert_eq!(c.three_year_min_extra_savings, 0.1);

        let mut off = policy();
        off.kill_switch = true;
        let c = PolicySet {
            policies: vec![off],
        }
        .planning_bounds(0.1);
        assert!(c.providers.is_empty(), "a kill switch allows nothing");
    }

    fn mid_month() -> Hour {
        Hour::parse("2026-10-10T00:00:00Z").unwrap()
    }

    #[test]
    fn small_action_executes_in_autopilot() {
        let d = evaluate(
            &policy(),
            &action(2),
            &RecentSpend::default(),
            mid_month(),
            Mode::Autopilot,
        );
        assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
        assert!(d.checks.iter().all(|c| c.passed));
    }

    #[test]
    fn above_autopilot_threshold_falls_back_to_approval() {
        let d = evaluate(
            &policy(),
            &action(6),
            &RecentSpend::default(),
            mid_month(),
            Mode::Autopilot,
        );
        assert_eq!(d.verdict, Verdict::NeedsApproval { approvers: 1 });
        let d = evaluate(
            &policy(),
            &action(9),
            &RecentSpend::default(),
            mid_month(),
            Mode::Copilot,
        );
        assert_eq!(d.verdict, Verdict::NeedsApproval { approvers: 2 });
    }

    #[test]
    fn limits_count_what_was_already_committed() {
        let recent = RecentSpend {
            hourly_commitment_today: Money::from_units(9),
            ..RecentSpend::default()
        };
        let d = evaluate(&policy(), &action(2), &recent, mid_month(), Mode::Autopilot);
        assert_eq!(d.verdict, Verdict::Block);
        let rule = d.blocking_rule().unwrap();
        assert_eq!(rule.rule, "limits.max_new_hourly_commitment_per_day");
        assert!(rule.detail.contains("9 already + 2"), "{}", rule.detail);
    }

    #[test]
    fn disallowed_instrument_blackout_and_kill_switch_block() {
        let mut a = action(1);
        a.instrument = Instrument::ConvertibleReservedInstance;
        let d = evaluate(
            &policy(),
            &a,
            &RecentSpend::default(),
            mid_month(),
            Mode::Autopilot,
        );
        assert_eq!(d.blocking_rule().unwrap().rule, "allow.instruments");

        let quarter_end = Hour::parse("2026-12-28T00:00:00Z").unwrap();
        let d = evaluate(
            &policy(),
            &action(1),
            &RecentSpend::default(),
            quarter_end,
            Mode::Autopilot,
        );
        assert_eq!(d.blocking_rule().unwrap().rule, "blackout");
        let not_quarter_end = Hour::parse("2026-11-28T00:00:00Z").unwrap();
        let d = evaluate(
            &policy(),
            &action(1),
            &RecentSpend::default(),
            not_quarter_end,
            Mode::Autopilot,
        );
        assert_eq!(d.verdict, Verdict::Allow);

        let mut p = policy();
        p.kill_switch = true;
        let d = evaluate(
            &p,
            &action(1),
            &RecentSpend::default(),
            mid_month(),
            Mode::Autopilot,
        );
        assert_eq!(d.blocking_rule().unwrap().rule, "kill_switch");
    }

    #[test]
    fn giving_up_is_not_judged_by_the_allow_lists_but_by_the_kill_switch() {
        // Returning a 3-year All Upfront plan: neither is allowed to be bought here.
        let mut a = action(0);
        a.term = Term::THREE_YEARS;
        a.payment = PaymentOption::AllUpfront;
        a.expected_utilization = None;
        let judged = |a: &ActionFacts, p: &Policy| {
            evaluate(p, a, &RecentSpend::default(), mid_month(), Mode::Autopilot)
        };
        let d = judged(&a, &policy());
        assert_eq!(d.blocking_rule().unwrap().rule, "allow.terms", "{d:?}");
        a.gives_up = true;
        let d = judged(&a, &policy());
        assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
        assert!(d
            .checks
            .iter()
            .any(|c| c.rule == "allow.terms" && c.detail.contains("not judged")));
        let mut off = policy();
        off.kill_switch = true;
        assert_eq!(
            judged(&a, &off).blocking_rule().unwrap().rule,
            "kill_switch"
        );
    }

    #[test]
    fn low_utilization_blocks_and_datapilot_never_executes() {
        let mut a = action(1);
        a.expected_utilization = Some(0.90);
        let d = evaluate(
            &policy(),
            &a,
            &RecentSpend::default(),
            mid_month(),
            Mode::Autopilot,
        );
        assert_eq!(
            d.blocking_rule().unwrap().rule,
            "limits.min_expected_utilization"
        );
        let d = evaluate(
            &policy(),
            &action(1),
            &RecentSpend::default(),
            mid_month(),
            Mode::Datapilot,
        );
        assert_eq!(d.verdict, Verdict::Block);
        assert_eq!(d.blocking_rule().unwrap().rule, "mode");
        // A policy's own mode cannot lift a global datapilot (azure.toml says copilot), but
        // it still applies under the other global modes.
        let mut copilot = policy();
        copilot.mode = Some(Mode::Copilot);
        let d = evaluate(
            &copilot,
            &action(1),
            &RecentSpend::default(),
            mid_month(),
            Mode::Datapilot,
        );
        assert_eq!(d.verdict, Verdict::Block);
        assert_eq!(d.blocking_rule().unwrap().rule, "mode");
        let d = evaluate(
            &copilot,
            &action(1),
            &RecentSpend::default(),
            mid_month(),
            Mode::Autopilot,
        );
        assert!(matches!(d.verdict, Verdict::NeedsApproval { .. }));
    }

    #[test]
    fn broken_policies_name_file_and_key() {
        let e = Policy::parse(
            "name = \"x\"\n[limits]\nmin_expected_utilization = 1.5\n",
            Path::new("p/x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("p/x.toml") && e.contains("min_expected_utilization"),
            "{e}"
        );
        let e = Policy::parse(
            "name = \"x\"\n[allow]\ninstruments = [\"Spot\"]\nterms=[1]\npayment_options=[]\n",
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("Spot"), "{e}");
        let e = Policy::parse("name = \"x\"\nlimit = 3\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("limit"), "{e}");
        let e = Policy::parse("name = \"x\"\n[scope]\nprovider = \"Microsoft\"\n[allow]\ninstruments = [\"ComputeSavingsPlan\"]\nterms=[1]\npayment_options=[\"NoUpfront\"]\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not sold by Microsoft"), "{e}");
    }

    #[test]
    fn most_specific_policy_governs_and_unscoped_actions_are_blocked() {
        let aws = policy();
        let mut acct = policy();
        acct.name = "sandbox".into();
        acct.scope.account = Some("222".into());
        acct.kill_switch = true;
        let set = PolicySet {
            policies: vec![aws, acct],
        };
        let mut a = action(1);
        assert_eq!(set.governing(&a).unwrap().name, "aws-default");
        a.account = Some("222".into());
        assert_eq!(set.governing(&a).unwrap().name, "sandbox");
        let mut az = action(1);
        az.provider = Provider::Azure;
        az.instrument = Instrument::AzureSavingsPlan;
        let d = set.evaluate(&az, &RecentSpend::default(), mid_month(), Mode::Autopilot);
        assert_eq!(d.verdict, Verdict::Block);
        assert_eq!(d.blocking_rule().unwrap().rule, "scope");
    }
}
