//! Policies: the guardrails a human sets, and the verdict they give on each planned action.
//!
//! A policy file (`policies/*.toml`) says which instruments, terms and payment options commitd may
//! buy, how fast it may commit new money (per day and per rolling 30 days, so purchases ladder in
//! small steps), the minimum expected utilization, blackout windows, approval thresholds and a kill
//! switch. Pure: evaluation takes the action, what was already committed in the windows (read from
//! the audit store by the caller, so limits hold at execution time and not only at planning time)
//! and the current hour, and returns a verdict that names the rule behind it.
//!
//! Giving up is spending: a return, an RI Marketplace listing or an exchange stops paying for a
//! held commitment whose money is then gone (a return forfeits the rest of the term's discount, a
//! sale sells below value, an exchange locks the value into another commitment). So they are
//! judged like purchases, on the hourly commitment they give up: `allow.give_up` lists which
//! operations may give anything up, `limits.max_hourly_given_up_per_day` / `_per_30_days` cap
//! how fast, and `approval.autopilot_max_hourly_given_up` / `two_approvers_from_hourly_given_up`
//! say when humans must look. An exchange both buys (its target, judged as a purchase) and gives
//! up (its sources), so both sets of rules judge it.

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
    /// A policy file that does not parse or whose values contradict each other. `line` is the
    /// 1-based line where TOML stopped or of the offending key, when it can be found.
    #[error("{}{}: {message}", .path.display(), .line.map(|l| format!(": line {l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
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
    /// Which operations may give up a held commitment: "return", "sale" (an RI Marketplace
    /// listing), "exchange" (its sources). `[]` gives nothing up. Left out: all three, which is
    /// what commitd did before this key existed, so a policy file written then keeps its
    /// meaning; the caps and thresholds on the hourly commitment given up still apply.
    #[serde(default = "Allow::every_give_up")]
    pub give_up: Vec<OperationKind>,
}

impl Allow {
    fn every_give_up() -> Vec<OperationKind> {
        vec![
            OperationKind::Return,
            OperationKind::Sale,
            OperationKind::Exchange,
        ]
    }
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
            give_up: Allow::every_give_up(),
        }
    }
}

/// What an action does to commitments, as policy sees it (the `allow.give_up` vocabulary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Buys a new commitment and gives nothing up.
    #[default]
    Purchase,
    /// Gives a held commitment back (AWS savings plan return, Azure reservation return).
    Return,
    /// Lists held RI instances on the RI Marketplace.
    Sale,
    /// Gives up its sources and buys its target.
    Exchange,
}

impl OperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Purchase => "purchase",
            OperationKind::Return => "return",
            OperationKind::Sale => "sale",
            OperationKind::Exchange => "exchange",
        }
    }
}

impl std::fmt::Display for OperationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    /// Hourly commitment given up (USD/hour, amortized; returns, sales, exchanges' sources) per
    /// UTC day.
    pub max_hourly_given_up_per_day: Option<Money>,
    /// Hourly commitment given up per rolling 30 days.
    pub max_hourly_given_up_per_30_days: Option<Money>,
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
            max_hourly_given_up_per_day: None,
            max_hourly_given_up_per_30_days: None,
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
    /// In autopilot, give-ups (returns, sales, exchanges) at or above this hourly commitment
    /// given up wait for approval instead.
    pub autopilot_max_hourly_given_up: Option<Money>,
    /// At or above this hourly commitment given up, two distinct approvers are needed.
    pub two_approvers_from_hourly_given_up: Option<Money>,
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

/// A validation error and the key it is about, so the loader can name the key's line.
struct FieldError {
    at: At,
    message: String,
}

/// Where a validated value sits in a policy file.
enum At {
    /// `key` in `[table]` ("" = the top level).
    Key {
        table: &'static str,
        key: &'static str,
    },
    /// The `index`-th (0-based) `[[table]]` header.
    ArrayTable { table: &'static str, index: usize },
}

impl At {
    /// The 1-based line in `text`. Policy files are flat tables of `key = value` lines (no
    /// inline or dotted tables are needed), so a line scan finds them; when it finds nothing
    /// (a key left at its default), the error still names the file and the key.
    fn line_in(&self, text: &str) -> Option<usize> {
        let mut table = String::new();
        let mut seen = 0;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if let Some(name) = header(line) {
                table = name.to_string();
                if let At::ArrayTable { table: t, index } = self {
                    if line.starts_with("[[") && name == *t {
                        if seen == *index {
                            return Some(n + 1);
                        }
                        seen += 1;
                    }
                }
                continue;
            }
            if let (At::Key { table: t, key }, Some(k)) = (self, key_of(line)) {
                if table == *t && k == *key {
                    return Some(n + 1);
                }
            }
        }
        None
    }
}

/// The table a `[name]` or `[[name]]` header line opens.
fn header(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("[[").or_else(|| line.strip_prefix('['))?;
    rest.split(']').next().map(str::trim)
}

/// The key of a `key = value` line.
fn key_of(line: &str) -> Option<&str> {
    if line.starts_with('#') {
        return None;
    }
    let (key, _) = line.split_once('=')?;
    Some(key.trim().trim_matches('"'))
}

/// The 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The dotted name (`limits.max_upfront_per_day`) of the key on a 1-based line, if it has one.
fn key_at_line(text: &str, wanted: usize) -> Option<String> {
    let mut table = "";
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = header(line) {
            table = name;
        } else if n + 1 == wanted {
            let key = key_of(line)?;
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
        if n + 1 >= wanted {
            break;
        }
    }
    None
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
    pub mode: Option<crate::policy::Mode>,
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
    /// Parses and validates one policy file's text. Errors name the file, the line (of the key
    /// at fault, or where TOML stopped) and the field.
    pub fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
        let mut policy: Policy = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_at(text, span.start));
            // toml names an unknown field but not the key whose value has the wrong type;
            // the key on the line it points at does.
            let field = line.and_then(|l| key_at_line(text, l));
            // One line, like every other error commitd prints.
            let message = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            PolicyError::Invalid {
                path: path.to_path_buf(),
                line,
                message: match field {
                    Some(f) if !message.contains(&f) => format!("{f}: {message}"),
                    _ => message,
                },
            }
        })?;
        policy.source = path.to_path_buf();
        policy.validate().map_err(|e| PolicyError::Invalid {
            path: path.to_path_buf(),
            line: e.at.line_in(text),
            message: e.message,
        })?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), FieldError> {
        let err = |table: &'static str, key: &'static str, message: String| FieldError {
            at: At::Key { table, key },
            message,
        };
        if self.name.trim().is_empty() {
            return Err(err("", "name", "name must not be empty".into()));
        }
        let l = &self.limits;
        if !(0.0..=1.0).contains(&l.min_expected_utilization) {
            return Err(err(
                "limits",
                "min_expected_utilization",
                format!(
                    "limits.min_expected_utilization = {} must be between 0 and 1",
                    l.min_expected_utilization
                ),
            ));
        }
        if !(0.0 < l.utilization_quantile && l.utilization_quantile < 1.0) {
            return Err(err(
                "limits",
                "utilization_quantile",
                format!(
                    "limits.utilization_quantile = {} must be strictly between 0 and 1",
                    l.utilization_quantile
                ),
            ));
        }
        if let Some(c) = l.coverage_target {
            if !(0.0..=1.0).contains(&c) {
                return Err(err(
                    "limits",
                    "coverage_target",
                    format!("limits.coverage_target = {c} must be between 0 and 1"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&l.three_year_min_extra_savings) {
            return Err(err(
                "limits",
                "three_year_min_extra_savings",
                format!(
                    "limits.three_year_min_extra_savings = {} must be between 0 and 1",
                    l.three_year_min_extra_savings
                ),
            ));
        }
        let ap = &self.approval;
        for (table, key, value) in [
            (
                "limits",
                "max_new_hourly_commitment_per_day",
                l.max_new_hourly_commitment_per_day,
            ),
            (
                "limits",
                "max_new_hourly_commitment_per_30_days",
                l.max_new_hourly_commitment_per_30_days,
            ),
            ("limits", "max_upfront_per_day", l.max_upfront_per_day),
            (
                "limits",
                "max_upfront_per_30_days",
                l.max_upfront_per_30_days,
            ),
            (
                "limits",
                "max_hourly_given_up_per_day",
                l.max_hourly_given_up_per_day,
            ),
            (
                "limits",
                "max_hourly_given_up_per_30_days",
                l.max_hourly_given_up_per_30_days,
            ),
            (
                "approval",
                "autopilot_max_hourly_commitment",
                ap.autopilot_max_hourly_commitment,
            ),
            (
                "approval",
                "autopilot_max_upfront",
                ap.autopilot_max_upfront,
            ),
            (
                "approval",
                "two_approvers_from_hourly_commitment",
                ap.two_approvers_from_hourly_commitment,
            ),
            (
                "approval",
                "two_approvers_from_upfront",
                ap.two_approvers_from_upfront,
            ),
            (
                "approval",
                "autopilot_max_hourly_given_up",
                ap.autopilot_max_hourly_given_up,
            ),
            (
                "approval",
                "two_approvers_from_hourly_given_up",
                ap.two_approvers_from_hourly_given_up,
            ),
        ] {
            if value.is_some_and(Money::is_negative) {
                return Err(err(
                    table,
                    key,
                    format!("{table}.{key} must not be negative"),
                ));
            }
        }
        // A per-day cap above the 30-day one is a typo: the 30-day cap would always bind first.
        for (day_key, day, month) in [
            (
                "max_new_hourly_commitment_per_day",
                l.max_new_hourly_commitment_per_day,
                l.max_new_hourly_commitment_per_30_days,
            ),
            (
                "max_upfront_per_day",
                l.max_upfront_per_day,
                l.max_upfront_per_30_days,
            ),
            (
                "max_hourly_given_up_per_day",
                l.max_hourly_given_up_per_day,
                l.max_hourly_given_up_per_30_days,
            ),
        ] {
            if let (Some(day), Some(month)) = (day, month) {
                if day > month {
                    return Err(err(
                        "limits",
                        day_key,
                        format!("limits.{day_key} ({day}) exceeds the 30-day limit ({month})"),
                    ));
                }
            }
        }
        // A threshold above the cap on the same figure can never be reached: every action that
        // large is blocked by the cap, so the humans the threshold asks for are never asked,
        // and the file says something it does not do (the shipped policies once asked for two
        // approvers from $50/h under a $25/h daily cap). Equal is reachable (a cap is `<=`).
        let caps = |day: Option<Money>, month: Option<Money>, day_key, month_key| match (day, month)
        {
            (Some(d), Some(m)) if m < d => Some((m, month_key)),
            (Some(d), _) => Some((d, day_key)),
            (None, Some(m)) => Some((m, month_key)),
            (None, None) => None,
        };
        let hourly_cap = caps(
            l.max_new_hourly_commitment_per_day,
            l.max_new_hourly_commitment_per_30_days,
            "max_new_hourly_commitment_per_day",
            "max_new_hourly_commitment_per_30_days",
        );
        let upfront_cap = caps(
            l.max_upfront_per_day,
            l.max_upfront_per_30_days,
            "max_upfront_per_day",
            "max_upfront_per_30_days",
        );
        let given_up_cap = caps(
            l.max_hourly_given_up_per_day,
            l.max_hourly_given_up_per_30_days,
            "max_hourly_given_up_per_day",
            "max_hourly_given_up_per_30_days",
        );
        for (key, threshold, cap) in [
            (
                "autopilot_max_hourly_commitment",
                ap.autopilot_max_hourly_commitment,
                hourly_cap,
            ),
            (
                "two_approvers_from_hourly_commitment",
                ap.two_approvers_from_hourly_commitment,
                hourly_cap,
            ),
            (
                "autopilot_max_upfront",
                ap.autopilot_max_upfront,
                upfront_cap,
            ),
            (
                "two_approvers_from_upfront",
                ap.two_approvers_from_upfront,
                upfront_cap,
            ),
            (
                "autopilot_max_hourly_given_up",
                ap.autopilot_max_hourly_given_up,
                given_up_cap,
            ),
            (
                "two_approvers_from_hourly_given_up",
                ap.two_approvers_from_hourly_given_up,
                given_up_cap,
            ),
        ] {
            if let (Some(t), Some((cap, cap_key))) = (threshold, cap) {
                if t > cap {
                    return Err(err(
                        "approval",
                        key,
                        format!(
                            "approval.{key} ({t}) is above limits.{cap_key} ({cap}): every action that large is blocked by the limit, so the threshold can never apply; lower it to at most {cap} or raise the limit"
                        ),
                    ));
                }
            }
        }
        if self.allow.instruments.contains(&Instrument::OnDemand) {
            return Err(err(
                "allow",
                "instruments",
                "allow.instruments: OnDemand is not a commitment".into(),
            ));
        }
        if self.allow.give_up.contains(&OperationKind::Purchase) {
            return Err(err(
                "allow",
                "give_up",
                "allow.give_up: a purchase gives nothing up (use \"return\", \"sale\" or \"exchange\")"
                    .into(),
            ));
        }
        if let Some(p) = self.scope.provider {
            if let Some(i) = self
                .allow
                .instruments
                .iter()
                .find(|i| i.provider() != Some(p))
            {
                return Err(err(
                    "allow",
                    "instruments",
                    format!("allow.instruments: {i} is not sold by {p}, the provider in scope"),
                ));
            }
        }
        for (index, b) in self.blackouts.iter().enumerate() {
            let err = |message: String| FieldError {
                at: At::ArrayTable {
                    table: "blackout",
                    index,
                },
                message,
            };
            match (b.from, b.to, b.last_days_of_month) {
                (Some(from), Some(to), _) if from >= to => {
                    return Err(err(format!(
                        "blackout '{}': from must be before to",
                        b.name
                    )))
                }
                (Some(_), None, _) | (None, Some(_), _) => {
                    return Err(err(format!("blackout '{}': give both from and to", b.name)))
                }
                (None, None, None) => {
                    return Err(err(format!(
                        "blackout '{}': give from/to or last_days_of_month",
                        b.name
                    )))
                }
                _ => {}
            }
            if let Some(m) = b.months.iter().find(|m| !(1..=12).contains(*m)) {
                return Err(err(format!("blackout '{}': month {m} is not 1-12", b.name)));
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
    /// What the action does: a purchase buys, a return or a sale gives a held commitment up
    /// (the instrument, term and payment above are then the given-up commitment's), an
    /// exchange does both (they are its target's).
    #[serde(default)]
    pub operation: OperationKind,
    /// Amortized USD per hour of held commitment the action stops paying: a return's or a
    /// sale's `Operation::hourly_cost_removed`; for an exchange, an upper bound on its sources'
    /// (see `PlannedAction::facts`); zero for a purchase.
    #[serde(default)]
    pub hourly_given_up: Money,
}

impl ActionFacts {
    /// It buys a commitment (a purchase, or an exchange's target): the allow lists on what may
    /// be bought, the caps on new money and the purchase thresholds judge it.
    pub fn buys(&self) -> bool {
        matches!(
            self.operation,
            OperationKind::Purchase | OperationKind::Exchange
        )
    }

    /// It gives a held commitment up (a return, a sale, or an exchange's sources):
    /// `allow.give_up`, the caps on hourly commitment given up and the give-up thresholds
    /// judge it.
    pub fn gives_up(&self) -> bool {
        self.operation != OperationKind::Purchase
    }
}

/// What was already committed, and given up, in the windows the limits look at (from the
/// store: proposals executing or executed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecentSpend {
    pub hourly_commitment_today: Money,
    pub hourly_commitment_30_days: Money,
    pub upfront_today: Money,
    pub upfront_30_days: Money,
    /// Hourly commitment given up (returns, sales, exchanges' sources) since the start of the
    /// UTC day.
    pub hourly_given_up_today: Money,
    /// Hourly commitment given up in the last 30 days.
    pub hourly_given_up_30_days: Money,
}

impl RecentSpend {
    /// Counts an action approved in this cycle, so that the next action of the same plan is
    /// judged with it already spent (and given up).
    pub fn add(&mut self, action: &ActionFacts) {
        if action.buys() {
            self.hourly_commitment_today += action.hourly_commitment;
            self.hourly_commitment_30_days += action.hourly_commitment;
            self.upfront_today += action.upfront;
            self.upfront_30_days += action.upfront;
        }
        if action.gives_up() {
            self.hourly_given_up_today += action.hourly_given_up;
            self.hourly_given_up_30_days += action.hourly_given_up;
        }
    }
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

/// The rules a policy judges an action by. Serialized (and shown) as the policy file's key
/// that holds the rule, e.g. `allow.instruments`: those names are in audit events and JSON
/// output, so a variant's name never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Rule {
    /// No policy governs the action (nothing is bought without one).
    #[serde(rename = "scope")]
    Scope,
    #[serde(rename = "kill_switch")]
    KillSwitch,
    #[serde(rename = "blackout")]
    Blackout,
    #[serde(rename = "allow.instruments")]
    AllowInstruments,
    #[serde(rename = "allow.terms")]
    AllowTerms,
    #[serde(rename = "allow.payment_options")]
    AllowPaymentOptions,
    #[serde(rename = "allow.give_up")]
    AllowGiveUp,
    #[serde(rename = "limits.min_expected_utilization")]
    MinExpectedUtilization,
    #[serde(rename = "limits.max_new_hourly_commitment_per_day")]
    MaxNewHourlyCommitmentPerDay,
    #[serde(rename = "limits.max_new_hourly_commitment_per_30_days")]
    MaxNewHourlyCommitmentPer30Days,
    #[serde(rename = "limits.max_upfront_per_day")]
    MaxUpfrontPerDay,
    #[serde(rename = "limits.max_upfront_per_30_days")]
    MaxUpfrontPer30Days,
    #[serde(rename = "limits.max_hourly_given_up_per_day")]
    MaxHourlyGivenUpPerDay,
    #[serde(rename = "limits.max_hourly_given_up_per_30_days")]
    MaxHourlyGivenUpPer30Days,
    /// Datapilot (global, or the policy's `mode`): recommend only. Not a failure of the
    /// action: the service records a recommendation instead of a block.
    #[serde(rename = "mode")]
    Mode,
    /// A block that names no rule. [`evaluate`] never returns one (every block has a failing
    /// check); callers that must name a rule for any `Block` use it as the fallback.
    #[serde(rename = "policy")]
    Policy,
}

impl Rule {
    /// The name in policy files, audit events and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Scope => "scope",
            Rule::KillSwitch => "kill_switch",
            Rule::Blackout => "blackout",
            Rule::AllowInstruments => "allow.instruments",
            Rule::AllowTerms => "allow.terms",
            Rule::AllowPaymentOptions => "allow.payment_options",
            Rule::AllowGiveUp => "allow.give_up",
            Rule::MinExpectedUtilization => "limits.min_expected_utilization",
            Rule::MaxNewHourlyCommitmentPerDay => "limits.max_new_hourly_commitment_per_day",
            Rule::MaxNewHourlyCommitmentPer30Days => "limits.max_new_hourly_commitment_per_30_days",
            Rule::MaxUpfrontPerDay => "limits.max_upfront_per_day",
            Rule::MaxUpfrontPer30Days => "limits.max_upfront_per_30_days",
            Rule::MaxHourlyGivenUpPerDay => "limits.max_hourly_given_up_per_day",
            Rule::MaxHourlyGivenUpPer30Days => "limits.max_hourly_given_up_per_30_days",
            Rule::Mode => "mode",
            Rule::Policy => "policy",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule's judgement, for the audit trail and `commitd policy check`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleCheck {
    pub rule: Rule,
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
    /// Parses and validates the policy files of `dir`, given as (path, text) in the order they
    /// are read (by name). Nothing is returned unless every file is valid: a broken policy must
    /// never leave the others half in force. Reading the directory is the caller's (the
    /// service's `sources::policies`): the core reads no file.
    pub fn from_files(
        dir: &Path,
        files: impl IntoIterator<Item = (PathBuf, String)>,
    ) -> Result<PolicySet, PolicyError> {
        let mut set = PolicySet::default();
        for (path, text) in files {
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
        if set.policies.is_empty() {
            return Err(PolicyError::Empty {
                dir: dir.to_path_buf(),
            });
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
                            operation: OperationKind::Purchase,
                            hourly_given_up: Money::ZERO,
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

    /// Judges one action. With no governing policy, nothing may be bought or given up:
    /// commitd never spends money no human has written a rule for.
    pub fn evaluate(
        &self,
        action: &ActionFacts,
        recent: &RecentSpend,
        now: Hour,
        global_mode: crate::policy::Mode,
    ) -> Decision {
        match self.governing(action) {
            Some(policy) => evaluate(policy, action, recent, now, global_mode),
            None => Decision {
                policy: "(none)".into(),
                verdict: Verdict::Block,
                checks: vec![RuleCheck {
                    rule: Rule::Scope,
                    passed: false,
                    detail: format!(
                        "no policy governs {} {} {}s",
                        action.provider, action.instrument, action.operation
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
    global_mode: crate::policy::Mode,
) -> Decision {
    use crate::policy::Mode;
    let mut checks = Vec::new();
    let mut check = |rule: Rule, passed: bool, detail: String| {
        checks.push(RuleCheck {
            rule,
            passed,
            detail,
        });
    };

    check(
        Rule::KillSwitch,
        !policy.kill_switch,
        if policy.kill_switch {
            "the kill switch is on".into()
        } else {
            "off".into()
        },
    );
    let blackout = policy.blackouts.iter().find(|b| b.covers(now));
    check(
        Rule::Blackout,
        blackout.is_none(),
        match blackout {
            Some(b) => format!("{now} is inside blackout '{}'", b.name),
            None => "outside every blackout window".into(),
        },
    );
    let (buys, gives_up) = (action.buys(), action.gives_up());
    let a = &policy.allow;
    // The allow lists say what may be bought. A return or a sale buys nothing: what it gives
    // up was bought earlier, maybe by hand and on terms this policy would not buy today (a
    // 3-year reservation returned under a 1-year policy), so they do not judge it;
    // `allow.give_up` and the scope (a policy can govern one instrument) do.
    let allowed = |listed: bool, what: String| {
        if buys {
            (listed, what)
        } else {
            (
                true,
                format!("{what}: not judged, the action gives up a held commitment"),
            )
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
    check(Rule::AllowInstruments, ok, detail);
    let (ok, detail) = allowed(
        a.terms.contains(&action.term),
        format!("{} {}", action.term, allowed_word(&a.terms, &action.term)),
    );
    check(Rule::AllowTerms, ok, detail);
    let (ok, detail) = allowed(
        a.payment_options.contains(&action.payment),
        format!(
            "{} {}",
            action.payment,
            allowed_word(&a.payment_options, &action.payment)
        ),
    );
    check(Rule::AllowPaymentOptions, ok, detail);
    if gives_up {
        check(
            Rule::AllowGiveUp,
            a.give_up.contains(&action.operation),
            format!(
                "{} {} to give up {} USD/h",
                action.operation,
                allowed_word(&a.give_up, &action.operation),
                action.hourly_given_up
            ),
        );
    }
    let l = &policy.limits;
    if let Some(u) = action.expected_utilization {
        check(
            Rule::MinExpectedUtilization,
            u + 1e-9 >= l.min_expected_utilization,
            format!(
                "expected utilization {:.1}% at P{:.0} vs floor {:.1}%",
                u * 100.0,
                l.utilization_quantile * 100.0,
                l.min_expected_utilization * 100.0
            ),
        );
    }
    let mut limit = |rule: Rule, used: Money, add: Money, max: Option<Money>| {
        if let Some(max) = max {
            let after = used + add;
            check(
                rule,
                after <= max,
                format!("{used} already + {add} this action = {after} vs limit {max}"),
            );
        }
    };
    // Caps on new money judge what buys; a return or a sale commits nothing new, and must not
    // be stopped by purchases that filled today's budget (giving up has its own caps).
    if buys {
        limit(
            Rule::MaxNewHourlyCommitmentPerDay,
            recent.hourly_commitment_today,
            action.hourly_commitment,
            l.max_new_hourly_commitment_per_day,
        );
        limit(
            Rule::MaxNewHourlyCommitmentPer30Days,
            recent.hourly_commitment_30_days,
            action.hourly_commitment,
            l.max_new_hourly_commitment_per_30_days,
        );
        limit(
            Rule::MaxUpfrontPerDay,
            recent.upfront_today,
            action.upfront,
            l.max_upfront_per_day,
        );
        limit(
            Rule::MaxUpfrontPer30Days,
            recent.upfront_30_days,
            action.upfront,
            l.max_upfront_per_30_days,
        );
    }
    if gives_up {
        limit(
            Rule::MaxHourlyGivenUpPerDay,
            recent.hourly_given_up_today,
            action.hourly_given_up,
            l.max_hourly_given_up_per_day,
        );
        limit(
            Rule::MaxHourlyGivenUpPer30Days,
            recent.hourly_given_up_30_days,
            action.hourly_given_up,
            l.max_hourly_given_up_per_30_days,
        );
    }

    let blocked = checks.iter().any(|c| !c.passed);
    let ap = &policy.approval;
    let at_least = |threshold: Option<Money>, value: Money| threshold.is_some_and(|t| value >= t);
    // An exchange is judged on both sides: two approvers when either its target or what it
    // gives up reaches a two-approver threshold.
    let two = (buys
        && (at_least(
            ap.two_approvers_from_hourly_commitment,
            action.hourly_commitment,
        ) || at_least(ap.two_approvers_from_upfront, action.upfront)))
        || (gives_up
            && at_least(
                ap.two_approvers_from_hourly_given_up,
                action.hourly_given_up,
            ));
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
                let above = (buys
                    && (at_least(ap.autopilot_max_hourly_commitment, action.hourly_commitment)
                        || at_least(ap.autopilot_max_upfront, action.upfront)))
                    || (gives_up
                        && at_least(ap.autopilot_max_hourly_given_up, action.hourly_given_up));
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
            rule: Rule::Mode,
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

/// Operating mode: how far commitd may go on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Plan and record recommendations; never execute.
    #[default]
    Datapilot,
    /// Every action waits for a human approval.
    Copilot,
    /// Execute within guardrails; above them, fall back to approval.
    Autopilot,
}

// What policy judges of a planned action (the type is the domain's; its reading is policy's).
impl crate::domain::purchase::PlannedAction {
    /// What policy judges of it.
    pub fn facts(&self) -> ActionFacts {
        ActionFacts {
            provider: self.spec.provider,
            account: self.spec.account.clone(),
            instrument: self.spec.instrument,
            term: self.spec.term,
            payment: self.spec.payment,
            hourly_commitment: self.hourly_cost,
            upfront: self.upfront,
            expected_utilization: self.expected_utilization,
            operation: match self.operation {
                crate::domain::purchase::Operation::Purchase => OperationKind::Purchase,
                crate::domain::purchase::Operation::Return { .. } => OperationKind::Return,
                crate::domain::purchase::Operation::Sell { .. } => OperationKind::Sale,
                crate::domain::purchase::Operation::Exchange { .. } => OperationKind::Exchange,
            },
            hourly_given_up: match &self.operation {
                crate::domain::purchase::Operation::Purchase => Money::ZERO,
                // An exchange carries its sources' remaining value, not their hourly cost. AWS
                // exchanges into a target worth at least that value over the sources' remaining
                // term (the target keeps their end date), so the target's hourly cost bounds
                // the sources' from above: the give-up caps and thresholds err on the side of
                // asking a human.
                crate::domain::purchase::Operation::Exchange { .. } => self.hourly_cost,
                crate::domain::purchase::Operation::Return { .. }
                | crate::domain::purchase::Operation::Sell { .. } => {
                    self.operation.hourly_cost_removed().unwrap_or(Money::ZERO)
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Mode;

    /// Rule names are in audit events and JSON output: the enum writes and reads exactly the
    /// strings the checks carried before it existed.
    #[test]
    fn rules_serialize_to_their_policy_file_names() {
        let all = [
            (Rule::Scope, "scope"),
            (Rule::KillSwitch, "kill_switch"),
            (Rule::Blackout, "blackout"),
            (Rule::AllowInstruments, "allow.instruments"),
            (Rule::AllowTerms, "allow.terms"),
            (Rule::AllowPaymentOptions, "allow.payment_options"),
            (Rule::AllowGiveUp, "allow.give_up"),
            (
                Rule::MinExpectedUtilization,
                "limits.min_expected_utilization",
            ),
            (
                Rule::MaxNewHourlyCommitmentPerDay,
                "limits.max_new_hourly_commitment_per_day",
            ),
            (
                Rule::MaxNewHourlyCommitmentPer30Days,
                "limits.max_new_hourly_commitment_per_30_days",
            ),
            (Rule::MaxUpfrontPerDay, "limits.max_upfront_per_day"),
            (Rule::MaxUpfrontPer30Days, "limits.max_upfront_per_30_days"),
            (
                Rule::MaxHourlyGivenUpPerDay,
                "limits.max_hourly_given_up_per_day",
            ),
            (
                Rule::MaxHourlyGivenUpPer30Days,
                "limits.max_hourly_given_up_per_30_days",
            ),
            (Rule::Mode, "mode"),
            (Rule::Policy, "policy"),
        ];
        for (rule, name) in all {
            assert_eq!(rule.as_str(), name);
            assert_eq!(rule.to_string(), name);
            let json = serde_json::to_string(&rule).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Rule>(&json).unwrap(), rule);
        }
        let check = RuleCheck {
            rule: Rule::KillSwitch,
            passed: false,
            detail: "the kill switch is on".into(),
        };
        assert_eq!(
            serde_json::to_string(&check).unwrap(),
            r#"{"rule":"kill_switch","passed":false,"detail":"the kill switch is on"}"#
        );
    }

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
            operation: OperationKind::Purchase,
            hourly_given_up: Money::ZERO,
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
        assert_eq!(rule.rule, Rule::MaxNewHourlyCommitmentPerDay);
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
        assert_eq!(d.blocking_rule().unwrap().rule, Rule::AllowInstruments);

        let quarter_end = Hour::parse("2026-12-28T00:00:00Z").unwrap();
        let d = evaluate(
            &policy(),
            &action(1),
            &RecentSpend::default(),
            quarter_end,
            Mode::Autopilot,
        );
        assert_eq!(d.blocking_rule().unwrap().rule, Rule::Blackout);
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
        assert_eq!(d.blocking_rule().unwrap().rule, Rule::KillSwitch);
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
        assert_eq!(d.blocking_rule().unwrap().rule, Rule::AllowTerms, "{d:?}");
        a.operation = OperationKind::Return;
        let d = judged(&a, &policy());
        assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
        assert!(d
            .checks
            .iter()
            .any(|c| c.rule == Rule::AllowTerms && c.detail.contains("not judged")));
        let mut off = policy();
        off.kill_switch = true;
        assert_eq!(
            judged(&a, &off).blocking_rule().unwrap().rule,
            Rule::KillSwitch
        );
    }

    /// The example policy with rules on giving up: returns and exchanges may give up, sales
    /// may not; at most $4/h a day and $6/h in 30 days; autopilot up to $1/h given up, two
    /// approvers from $3/h.
    fn give_up_policy(give_up: &str) -> Policy {
        let text = EXAMPLE
            .replace(
                "payment_options = [\"NoUpfront\", \"AllUpfront\"]",
                &format!("payment_options = [\"NoUpfront\", \"AllUpfront\"]\ngive_up = {give_up}"),
            )
            .replace(
                "max_upfront_per_day = \"20000\"",
                "max_upfront_per_day = \"20000\"\nmax_hourly_given_up_per_day = \"4\"\nmax_hourly_given_up_per_30_days = \"6\"",
            )
            .replace(
                "two_approvers_from_hourly_commitment = \"8\"",
                "two_approvers_from_hourly_commitment = \"8\"\nautopilot_max_hourly_given_up = \"1\"\ntwo_approvers_from_hourly_given_up = \"3\"",
            );
        Policy::parse(&text, Path::new("policies/aws.toml")).unwrap()
    }

    /// Giving up `hourly` USD/h by `operation`. A return and a sale buy nothing (hourly
    /// commitment zero); an exchange buys a $0.5/h target.
    fn give_up(operation: OperationKind, hourly: &str) -> ActionFacts {
        let mut a = action(0);
        a.operation = operation;
        a.hourly_given_up = Money::parse(hourly).unwrap();
        if operation == OperationKind::Exchange {
            a.hourly_commitment = Money::parse("0.5").unwrap();
        } else {
            a.expected_utilization = None;
            // Given up: a 3-year RI this policy would not buy.
            a.instrument = Instrument::StandardReservedInstance;
            a.term = Term::THREE_YEARS;
        }
        a
    }

    const GIVE_UPS: [OperationKind; 3] = [
        OperationKind::Return,
        OperationKind::Sale,
        OperationKind::Exchange,
    ];

    #[test]
    fn give_ups_need_their_operation_in_allow_give_up() {
        let p = give_up_policy("[\"return\", \"exchange\"]");
        for op in GIVE_UPS {
            let d = evaluate(
                &p,
                &give_up(op, "0.5"),
                &RecentSpend::default(),
                mid_month(),
                Mode::Autopilot,
            );
            if op == OperationKind::Sale {
                assert_eq!(d.verdict, Verdict::Block, "{op}: {d:?}");
                let rule = d.blocking_rule().unwrap();
                assert_eq!(rule.rule, Rule::AllowGiveUp);
                assert!(
                    rule.detail.contains("sale is not allowed"),
                    "{}",
                    rule.detail
                );
            } else {
                assert_eq!(d.verdict, Verdict::Allow, "{op}: {d:?}");
            }
        }
        // `[]` gives nothing up; a purchase is not judged by the list at all.
        let none = give_up_policy("[]");
        for op in GIVE_UPS {
            let d = evaluate(
                &none,
                &give_up(op, "0.5"),
                &RecentSpend::default(),
                mid_month(),
                Mode::Autopilot,
            );
            assert_eq!(d.blocking_rule().unwrap().rule, Rule::AllowGiveUp, "{op}");
        }
        let d = evaluate(
            &none,
            &action(1),
            &RecentSpend::default(),
            mid_month(),
            Mode::Autopilot,
        );
        assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
        assert!(d.checks.iter().all(|c| c.rule != Rule::AllowGiveUp));
        // Left out, the list is every give-up (what policies written before it meant).
        assert_eq!(policy().allow.give_up.len(), 3);
    }

    #[test]
    fn an_exchange_is_judged_as_a_purchase_of_its_target_too() {
        let p = give_up_policy("[\"return\", \"sale\", \"exchange\"]");
        // Its target must be allowed to be bought: a 3-year target is not, here.
        let mut x = give_up(OperationKind::Exchange, "0.5");
        x.term = Term::THREE_YEARS;
        let d = evaluate(
            &p,
            &x,
            &RecentSpend::default(),
            mid_month(),
            Mode::Autopilot,
        );
        assert_eq!(d.blocking_rule().unwrap().rule, Rule::AllowTerms, "{d:?}");
        // And it counts against the caps on new money ($10/h a day here).
        let spent = RecentSpend {
            hourly_commitment_today: Money::parse("9.75").unwrap(),
            ..RecentSpend::default()
        };
        let x = give_up(OperationKind::Exchange, "0.5");
        let d = evaluate(&p, &x, &spent, mid_month(), Mode::Autopilot);
        assert_eq!(
            d.blocking_rule().unwrap().rule,
            Rule::MaxNewHourlyCommitmentPerDay,
            "{d:?}"
        );
        // A return buys nothing: the same spent budget does not stop it.
        let r = give_up(OperationKind::Return, "0.5");
        let d = evaluate(&p, &r, &spent, mid_month(), Mode::Autopilot);
        assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
        // The exchange's target reaching a purchase threshold asks for approval like a
        // purchase of it would ($5/h autopilot, $8/h two approvers).
        let mut big = give_up(OperationKind::Exchange, "0.5");
        big.hourly_commitment = Money::from_units(8);
        let d = evaluate(
            &p,
            &big,
            &RecentSpend::default(),
            mid_month(),
            Mode::Autopilot,
        );
        assert_eq!(d.verdict, Verdict::NeedsApproval { approvers: 2 }, "{d:?}");
    }

    #[test]
    fn give_ups_are_capped_per_day_and_per_30_days() {
        let p = give_up_policy("[\"return\", \"sale\", \"exchange\"]");
        for op in GIVE_UPS {
            // $3.5/h given up today + $0.5/h = the $4/h daily cap: allowed, and without a
            // human ($0.5/h is below the $1/h autopilot threshold).
            let today = RecentSpend {
                hourly_given_up_today: Money::parse("3.5").unwrap(),
                hourly_given_up_30_days: Money::parse("3.5").unwrap(),
                ..RecentSpend::default()
            };
            let d = evaluate(
                &p,
                &give_up(op, "0.5"),
                &today,
                mid_month(),
                Mode::Autopilot,
            );
            assert_eq!(d.verdict, Verdict::Allow, "{op}: {d:?}");
            // One micro-dollar more is over it.
            let d = evaluate(
                &p,
                &give_up(op, "0.500001"),
                &today,
                mid_month(),
                Mode::Autopilot,
            );
            let rule = d.blocking_rule().unwrap();
            assert_eq!(rule.rule, Rule::MaxHourlyGivenUpPerDay, "{op}");
            assert!(
                rule.detail.contains("3.5 already + 0.500001"),
                "{}",
                rule.detail
            );
            // Nothing today, but $5.75/h in the last 30 days: the $6/h 30-day cap binds.
            let month = RecentSpend {
                hourly_given_up_30_days: Money::parse("5.75").unwrap(),
                ..RecentSpend::default()
            };
            let d = evaluate(
                &p,
                &give_up(op, "0.5"),
                &month,
                mid_month(),
                Mode::Autopilot,
            );
            assert_eq!(
                d.blocking_rule().unwrap().rule,
                Rule::MaxHourlyGivenUpPer30Days,
                "{op}"
            );
            // Purchases are not judged by the give-up caps, however much was given up.
            let d = evaluate(&p, &action(1), &month, mid_month(), Mode::Autopilot);
            assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
        }
    }

    #[test]
    fn give_ups_have_autopilot_and_two_approver_thresholds() {
        let p = give_up_policy("[\"return\", \"sale\", \"exchange\"]");
        let judge = |a: &ActionFacts, mode| {
            evaluate(&p, a, &RecentSpend::default(), mid_month(), mode).verdict
        };
        for op in GIVE_UPS {
            assert_eq!(
                judge(&give_up(op, "0.999999"), Mode::Autopilot),
                Verdict::Allow,
                "{op}"
            );
            // At the $1/h autopilot threshold a human must approve.
            assert_eq!(
                judge(&give_up(op, "1"), Mode::Autopilot),
                Verdict::NeedsApproval { approvers: 1 },
                "{op}"
            );
            assert_eq!(
                judge(&give_up(op, "2.999999"), Mode::Copilot),
                Verdict::NeedsApproval { approvers: 1 },
                "{op}"
            );
            // From $3/h two distinct approvers, in copilot and in autopilot.
            for mode in [Mode::Copilot, Mode::Autopilot] {
                assert_eq!(
                    judge(&give_up(op, "3"), mode),
                    Verdict::NeedsApproval { approvers: 2 },
                    "{op} {mode:?}"
                );
            }
        }
    }

    #[test]
    fn recent_spend_counts_what_an_action_buys_and_gives_up() {
        let mut r = RecentSpend::default();
        r.add(&give_up(OperationKind::Return, "2"));
        r.add(&give_up(OperationKind::Exchange, "1"));
        let mut bought = action(3);
        bought.upfront = Money::from_units(100);
        r.add(&bought);
        assert_eq!(r.hourly_given_up_today, Money::from_units(3));
        assert_eq!(r.hourly_given_up_30_days, Money::from_units(3));
        // The exchange's $0.5/h target and the $3/h purchase.
        assert_eq!(r.hourly_commitment_today, Money::parse("3.5").unwrap());
        assert_eq!(r.upfront_30_days, Money::from_units(100));
    }

    #[test]
    fn thresholds_above_the_cap_they_can_never_reach_are_refused() {
        for (limits, approval, key) in [
            (
                "max_new_hourly_commitment_per_day = \"25\"",
                "two_approvers_from_hourly_commitment = \"50\"",
                "two_approvers_from_hourly_commitment",
            ),
            (
                "max_new_hourly_commitment_per_30_days = \"20\"",
                "autopilot_max_hourly_commitment = \"21\"",
                "autopilot_max_hourly_commitment",
            ),
            (
                "max_upfront_per_day = \"50000\"",
                "two_approvers_from_upfront = \"100000\"",
                "two_approvers_from_upfront",
            ),
            (
                "max_upfront_per_30_days = \"100\"",
                "autopilot_max_upfront = \"100.01\"",
                "autopilot_max_upfront",
            ),
            (
                "max_hourly_given_up_per_day = \"4\"",
                "two_approvers_from_hourly_given_up = \"5\"",
                "two_approvers_from_hourly_given_up",
            ),
            (
                "max_hourly_given_up_per_day = \"4\"\nmax_hourly_given_up_per_30_days = \"3\"",
                "autopilot_max_hourly_given_up = \"1\"",
                "max_hourly_given_up_per_day",
            ),
            (
                "max_hourly_given_up_per_30_days = \"3\"",
                "autopilot_max_hourly_given_up = \"3.5\"",
                "autopilot_max_hourly_given_up",
            ),
        ] {
            let text = format!("name = \"x\"\n\n[limits]\n{limits}\n\n[approval]\n{approval}\n");
            let e = Policy::parse(&text, Path::new("p/x.toml"))
                .unwrap_err()
                .to_string();
            let line = text
                .lines()
                .position(|l| l.starts_with(&format!("{key} =")))
                .unwrap()
                + 1;
            assert!(
                e.starts_with(&format!("p/x.toml: line {line}: ")) && e.contains(key),
                "{e}"
            );
        }
        // At the cap is reachable, so allowed.
        Policy::parse(
            "name = \"x\"\n[limits]\nmax_hourly_given_up_per_day = \"4\"\n[approval]\ntwo_approvers_from_hourly_given_up = \"4\"\nautopilot_max_hourly_given_up = \"4\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
    }

    #[test]
    fn give_up_rules_are_validated_with_file_line_and_field() {
        let e = Policy::parse(
            "name = \"x\"\n[allow]\ninstruments = []\nterms = [1]\npayment_options = []\ngive_up = [\"purchase\"]\n",
            Path::new("p/x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("p/x.toml: line 6: allow.give_up"), "{e}");
        let e = Policy::parse(
            "name = \"x\"\n[allow]\ninstruments = []\nterms = [1]\npayment_options = []\ngive_up = [\"refund\"]\n",
            Path::new("p/x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("p/x.toml: line 6: allow.give_up") && e.contains("refund"),
            "{e}"
        );
        let e = Policy::parse(
            "name = \"x\"\n[limits]\nmax_hourly_given_up_per_day = \"-1\"\n",
            Path::new("p/x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "p/x.toml: line 3: limits.max_hourly_given_up_per_day must not be negative"
            ),
            "{e}"
        );
        // A value of the wrong type names its key and line too.
        let e = Policy::parse(
            "name = \"x\"\n[approval]\nautopilot_max_hourly_given_up = true\n",
            Path::new("p/x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("p/x.toml: line 3: approval.autopilot_max_hourly_given_up"),
            "{e}"
        );
        // A blackout's error points at its own [[blackout]] header.
        let e = Policy::parse(
            "name = \"x\"\n[[blackout]]\nname = \"a\"\nlast_days_of_month = 3\n[[blackout]]\nname = \"b\"\n",
            Path::new("p/x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("p/x.toml: line 5: blackout 'b'"), "{e}");
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
            Rule::MinExpectedUtilization
        );
        let d = evaluate(
            &policy(),
            &action(1),
            &RecentSpend::default(),
            mid_month(),
            Mode::Datapilot,
        );
        assert_eq!(d.verdict, Verdict::Block);
        assert_eq!(d.blocking_rule().unwrap().rule, Rule::Mode);
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
        assert_eq!(d.blocking_rule().unwrap().rule, Rule::Mode);
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
        assert_eq!(d.blocking_rule().unwrap().rule, Rule::Scope);
    }
}
