//! The service's own counters and gauges, rendered in the Prometheus text format by `/metrics`
//! together with figures read from the store at scrape time (pending approvals).
//!
//! The provider's inventory (the commitments gauge) is what the daemon last read in its own
//! work ([`Metrics::set_inventory`]: each cycle, the leader's first execution tick, and after
//! an execution), never read at scrape
//! time: `/metrics` needs no token, so a scrape that reached the cloud would let anyone spend
//! the account's API rate limits (and Cost Explorer money). A replica that is not the leader
//! reads nothing, so it shows no commitments gauge.
//!
//! Shared by `service` (which records) and `api` (which renders), so neither imports the
//! other; it depends on neither.

use crate::domain::{Commitment, Provider};
use crate::plan::hold::GroupAnomaly;
use crate::proposals::ProposalState;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// What a plan expects of the portfolio (the cycle summary and the `commitd_expected_*` gauges):
/// the core's figures, as `plan::proposals` measures them.
pub use crate::plan::proposals::Expected;

/// The service's monotonic clock for planners that time their solves
/// ([`crate::plan::Stopwatch`]: the core reads no clock): the time since the first call.
pub fn since_start() -> std::time::Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

#[derive(Clone, Debug, Default)]
struct State {
    last_cycle_unix: Option<i64>,
    last_cycle_ok: Option<bool>,
    last_cycle_seconds: f64,
    cycles_ok: u64,
    cycles_failed: u64,
    executed: u64,
    failed: u64,
    blocked: u64,
    leader: bool,
    expected: Option<Expected>,
    /// The provider's commitments as last read by the daemon, and when (Unix seconds).
    inventory: Option<(i64, Vec<Commitment>)>,
    /// The anomalies open at the last cycle that watched any (None: none watched yet).
    anomalies_open: Option<Vec<GroupAnomaly>>,
    /// Anomalies reported since start, by (provider, kind).
    anomalies_detected: BTreeMap<(Provider, &'static str), u64>,
    /// Purchases the anomaly hold held back at the last plan.
    held_purchases: u64,
}

/// A copy of the service's figures at one moment ([`Metrics::snapshot`]).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Unix time of the last planning cycle, and whether it succeeded.
    pub last_cycle_unix: Option<i64>,
    pub last_cycle_ok: Option<bool>,
    pub last_cycle_seconds: f64,
    pub cycles_ok: u64,
    pub cycles_failed: u64,
    pub executed: u64,
    pub failed: u64,
    pub blocked: u64,
    /// Whether this replica holds the executor lease.
    pub leader: bool,
    pub expected: Option<Expected>,
    /// The provider's commitments as last read, and when (Unix seconds).
    pub inventory: Option<(i64, Vec<Commitment>)>,
    /// The anomalies open at the last cycle that watched any.
    pub anomalies_open: Option<Vec<GroupAnomaly>>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

/// What happened in one cycle or execution pass, for the counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub executed: u64,
    pub failed: u64,
    pub blocked: u64,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A poisoned lock only means a panic elsewhere while counting; the counts stay usable.
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    pub fn cycle(&self, unix: i64, ok: bool, seconds: f64, expected: Option<Expected>) {
        self.with(|s| {
            s.last_cycle_unix = Some(unix);
            s.last_cycle_ok = Some(ok);
            s.last_cycle_seconds = seconds;
            if ok {
                s.cycles_ok += 1;
            } else {
                s.cycles_failed += 1;
            }
            if expected.is_some() {
                s.expected = expected;
            }
        });
    }

    pub fn tally(&self, t: Tally) {
        self.with(|s| {
            s.executed += t.executed;
            s.failed += t.failed;
            s.blocked += t.blocked;
        });
    }

    /// Records the provider's inventory the daemon just read, for later scrapes.
    pub fn set_inventory(&self, commitments: &[Commitment], read_at_unix: i64) {
        let copy = commitments.to_vec();
        self.with(|s| s.inventory = Some((read_at_unix, copy)));
    }

    /// Whether an inventory has been recorded since start.
    pub fn has_inventory(&self) -> bool {
        self.with(|s| s.inventory.is_some())
    }

    pub fn set_leader(&self, leader: bool) {
        self.with(|s| s.leader = leader);
    }

    pub fn is_leader(&self) -> bool {
        self.with(|s| s.leader)
    }

    /// What the web console shows of the service loop: the last cycle, the plan's expected
    /// figures and the inventory last read (never read at request time).
    pub fn snapshot(&self) -> Snapshot {
        self.with(|s| Snapshot {
            last_cycle_unix: s.last_cycle_unix,
            last_cycle_ok: s.last_cycle_ok,
            last_cycle_seconds: s.last_cycle_seconds,
            cycles_ok: s.cycles_ok,
            cycles_failed: s.cycles_failed,
            executed: s.executed,
            failed: s.failed,
            blocked: s.blocked,
            leader: s.leader,
            expected: s.expected,
            inventory: s.inventory.clone(),
            anomalies_open: s.anomalies_open.clone(),
        })
    }

    /// Records what the anomaly watch found in a cycle: the anomalies open now, those newly
    /// reported (counted), and how many purchases the hold held back.
    pub fn anomalies(&self, open: &[GroupAnomaly], reported: &[&GroupAnomaly], held: usize) {
        self.with(|s| {
            s.anomalies_open = Some(open.to_vec());
            for a in reported {
                *s.anomalies_detected
                    .entry((a.group.provider, a.anomaly.kind.as_str()))
                    .or_default() += 1;
            }
            s.held_purchases = held as u64;
        });
    }

    /// The exposition text. `proposals` are counts per state; the last inventory read (active
    /// commitments at `now`) is summed per provider.
    pub fn render(&self, proposals: &[(ProposalState, i64)], now: crate::domain::Hour) -> String {
        let s = self.with(|s| s.clone());
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, lines: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        gauge(
            "commitd_last_cycle_timestamp_seconds",
            "Unix time of the last planning cycle.",
            "gauge",
            vec![(String::new(), s.last_cycle_unix.unwrap_or(0).to_string())],
        );
        gauge(
            "commitd_last_cycle_success",
            "1 if the last planning cycle succeeded, 0 if it failed.",
            "gauge",
            vec![(
                String::new(),
                if s.last_cycle_ok == Some(true) {
                    "1"
                } else {
                    "0"
                }
                .into(),
            )],
        );
        gauge(
            "commitd_last_cycle_duration_seconds",
            "Wall time of the last planning cycle.",
            "gauge",
            vec![(String::new(), format!("{:.3}", s.last_cycle_seconds))],
        );
        gauge(
            "commitd_cycles_total",
            "Planning cycles by result.",
            "counter",
            vec![
                ("{result=\"ok\"}".into(), s.cycles_ok.to_string()),
                ("{result=\"failed\"}".into(), s.cycles_failed.to_string()),
            ],
        );
        gauge(
            "commitd_actions_total",
            "Actions by execution result since start.",
            "counter",
            vec![
                ("{result=\"executed\"}".into(), s.executed.to_string()),
                ("{result=\"failed\"}".into(), s.failed.to_string()),
                ("{result=\"blocked\"}".into(), s.blocked.to_string()),
            ],
        );
        let pending = proposals
            .iter()
            .filter(|(st, _)| *st == ProposalState::Proposed)
            .map(|(_, n)| *n)
            .sum::<i64>();
        gauge(
            "commitd_pending_approvals",
            "Proposals waiting for a decision.",
            "gauge",
            vec![(String::new(), pending.to_string())],
        );
        gauge(
            "commitd_proposals",
            "Proposals by state.",
            "gauge",
            proposals
                .iter()
                .map(|(st, n)| (format!("{{state=\"{st}\"}}"), n.to_string()))
                .collect(),
        );
        if let Some((read_at, commitments)) = &s.inventory {
            let mut per_provider: BTreeMap<Provider, crate::domain::Money> = BTreeMap::new();
            for c in commitments.iter().filter(|c| c.is_active(now)) {
                *per_provider.entry(c.provider).or_default() += c.hourly_cost;
            }
            gauge(
                "commitd_commitment_hourly_usd",
                "Active commitments' amortized cost, USD per hour, by provider (as last read from the provider).",
                "gauge",
                per_provider
                    .iter()
                    .map(|(p, m)| (format!("{{provider=\"{p}\"}}"), m.to_string()))
                    .collect(),
            );
            gauge(
                "commitd_inventory_timestamp_seconds",
                "Unix time the provider's inventory behind commitd_commitment_hourly_usd was read.",
                "gauge",
                vec![(String::new(), read_at.to_string())],
            );
        }
        if let Some(e) = &s.expected {
            for (name, help, v) in [
                (
                    "commitd_expected_esr",
                    "Effective savings rate the last plan expects.",
                    e.esr,
                ),
                (
                    "commitd_expected_coverage",
                    "Coverage the last plan expects.",
                    e.coverage,
                ),
                (
                    "commitd_expected_utilization",
                    "Commitment utilization the last plan expects.",
                    e.utilization,
                ),
            ] {
                gauge(
                    name,
                    help,
                    "gauge",
                    vec![(String::new(), format!("{v:.6}"))],
                );
            }
        }
        if let Some(open) = &s.anomalies_open {
            let mut by: BTreeMap<(Provider, &'static str), u64> = BTreeMap::new();
            for a in open {
                *by.entry((a.group.provider, a.anomaly.kind.as_str()))
                    .or_default() += 1;
            }
            gauge(
                "commitd_anomalies_open",
                "Cost anomalies open at the last cycle, by provider and kind (purchases covering them are held).",
                "gauge",
                by.iter()
                    .map(|((p, k), n)| (format!("{{provider=\"{p}\",kind=\"{k}\"}}"), n.to_string()))
                    .collect(),
            );
            gauge(
                "commitd_anomaly_held_purchases",
                "Purchases the anomaly hold held back at the last plan.",
                "gauge",
                vec![(String::new(), s.held_purchases.to_string())],
            );
        }
        gauge(
            "commitd_anomalies_detected_total",
            "Cost anomalies reported (audit log, chat) since start, by provider and kind.",
            "counter",
            s.anomalies_detected
                .iter()
                .map(|((p, k), n)| (format!("{{provider=\"{p}\",kind=\"{k}\"}}"), n.to_string()))
                .collect(),
        );
        gauge(
            "commitd_executor_leader",
            "1 if this replica holds the executor lease.",
            "gauge",
            vec![(String::new(), if s.leader { "1" } else { "0" }.into())],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.cycle(
            1_800_000_000,
            true,
            1.25,
            Some(Expected {
                esr: 0.3,
                coverage: 0.8,
                utilization: 0.99,
            }),
        );
        m.tally(Tally {
            executed: 2,
            failed: 1,
            blocked: 0,
        });
        m.set_leader(true);
        let text = m.render(
            &[(ProposalState::Proposed, 3), (ProposalState::Executed, 2)],
            crate::domain::Hour(0),
        );
        // No inventory read yet: no commitments gauge rather than a false 0.
        assert!(!text.contains("commitd_commitment_hourly_usd"), "{text}");
        assert!(text.contains("commitd_last_cycle_success 1\n"), "{text}");
        assert!(text.contains("commitd_pending_approvals 3\n"), "{text}");
        assert!(
            text.contains("commitd_actions_total{result=\"executed\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("commitd_expected_esr 0.300000\n"), "{text}");
        assert!(
            text.contains("# TYPE commitd_cycles_total counter"),
            "{text}"
        );
        assert!(text.contains("commitd_executor_leader 1\n"), "{text}");
    }

    #[test]
    fn the_commitments_gauge_is_the_last_inventory_read() {
        use crate::domain::{
            CommitmentAmount, Hour, Instrument, Money, PaymentOption, Provider, Term,
        };
        let held = |id: &str, start: i64, cost: &str| Commitment {
            id: id.into(),
            provider: Provider::Aws,
            instrument: Instrument::ComputeSavingsPlan,
            term: Term::ONE_YEAR,
            payment: PaymentOption::NoUpfront,
            start: Hour(start),
            end: Hour(start + 8_760),
            region: None,
            instance_type: None,
            family: None,
            amount: CommitmentAmount::HourlySpend(Money::parse(cost).unwrap()),
            hourly_cost: Money::parse(cost).unwrap(),
            upfront: Money::ZERO,
        };
        let m = Metrics::default();
        assert!(!m.has_inventory());
        // Active at hour 100: the first two; the third starts later.
        m.set_inventory(
            &[
                held("a", 0, "1.5"),
                held("b", 50, "2.25"),
                held("c", 200, "9"),
            ],
            1_800_000_000,
        );
        assert!(m.has_inventory());
        let text = m.render(&[], Hour(100));
        assert!(
            text.contains("commitd_commitment_hourly_usd{provider=\"AWS\"} 3.75\n"),
            "{text}"
        );
        assert!(
            text.contains("commitd_inventory_timestamp_seconds 1800000000\n"),
            "{text}"
        );
        // A later read replaces the earlier one.
        m.set_inventory(&[held("a", 0, "1.5")], 1_800_000_600);
        let text = m.render(&[], Hour(100));
        assert!(
            text.contains("commitd_commitment_hourly_usd{provider=\"AWS\"} 1.5\n"),
            "{text}"
        );
    }
}
