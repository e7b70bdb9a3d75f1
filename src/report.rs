//! The monthly summary for finance (`commitd report --month 2026-10`), built from the audit log
//! alone, so it can be produced anywhere the database is reachable and it says only what the
//! log proves:
//!
//! * **bought**: every purchase executed in the month (an `executed` event in `[month start,
//!   next month start)` UTC), with what the proposal said (instrument, term, payment, expected
//!   savings), what the provider confirmed (hourly cost, upfront, total over the term, start,
//!   end, commitment id, request id), and who approved it (the `approved` events' actors);
//! * **committed spend**: the month's purchases' hourly commitment, upfront and total over the
//!   term;
//! * **given up**: every return and RI Marketplace listing executed in the month (they buy
//!   nothing, so they are neither purchases nor committed spend), with the cost they stop and,
//!   for a listing, its asking price;
//! * **portfolio in the month**: every commitment commitd bought (in any month) that was active
//!   during the month, its amortized cost for the hours it was active, and its expected savings
//!   pro-rated to those hours (expected savings are stated over the whole term);
//! * **realized savings**: from the month's FOCUS bill when the configuration has a FOCUS
//!   source (`[source] focus`, or `--focus`): per commitment in the bill, the on-demand
//!   equivalent (ListCost) of the usage it covered minus its cost (Used + Unused
//!   EffectiveCost), next to commitd's expected savings pro-rated to the hours billed. Without
//!   a bill the log alone cannot show it: the report prints null and says why.
//!
//! Pure: it takes the events, the month and the bill's commitments, and returns the report.

use crate::audit::{Event, EventBody};
use crate::domain::{Money, Term};
use crate::ingest::BillCommitment;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// A calendar month, UTC. Serialized as "YYYY-MM". Ordered in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("'{value}' is not a month: expected YYYY-MM, e.g. 2026-10")]
pub struct MonthError {
    pub value: String,
}

impl Month {
    /// Parses `YYYY-MM` (exactly: four digits, a dash, two digits, month 01-12).
    pub fn parse(text: &str) -> Result<Month, MonthError> {
        let err = || MonthError {
            value: text.to_string(),
        };
        let (y, m) = text.split_once('-').ok_or_else(err)?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(err());
        }
        let year: i32 = y.parse().map_err(|_| err())?;
        let month: u32 = m.parse().map_err(|_| err())?;
        if !(1..=12).contains(&month) || year < 1970 {
            return Err(err());
        }
        Ok(Month { year, month })
    }

    pub fn start(self) -> DateTime<Utc> {
        Utc.from_utc_datetime(
            &NaiveDate::from_ymd_opt(self.year, self.month, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .unwrap_or_default(),
        )
    }

    /// The first instant of the next month.
    pub fn end(self) -> DateTime<Utc> {
        let (y, m) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        Month { year: y, month: m }.start()
    }

    pub fn hours(self) -> i64 {
        (self.end() - self.start()).num_hours()
    }
}

impl Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// One purchase commitd executed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Purchase {
    pub executed_at: DateTime<Utc>,
    pub proposal_id: String,
    pub provider: String,
    pub instrument: String,
    pub term: Option<Term>,
    pub payment_option: String,
    pub region: Option<String>,
    pub family: Option<String>,
    /// Amortized USD per hour the provider confirmed.
    pub hourly_cost: Money,
    pub upfront: Money,
    /// Total over the term (the executed event's amount).
    pub term_total: Money,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub commitment_id: String,
    pub provider_request_id: String,
    /// Expected savings over the whole term, from the plan's rationale.
    pub expected_savings: Money,
    /// Who approved it (people, or `autopilot:<policy>`), in order.
    pub approved_by: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    pub purchases: usize,
    pub hourly_cost: Money,
    pub upfront: Money,
    pub term_total: Money,
    pub expected_savings: Money,
}

/// Commitments commitd bought that were active during the month.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Portfolio {
    pub commitments: usize,
    /// Amortized cost of those commitments for the hours of the month they were active.
    pub amortized_cost: Money,
    /// Their expected savings, pro-rated from the term to those hours.
    pub expected_savings: Money,
    /// Executed purchases whose events lack start/end (not counted above).
    pub without_dates: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MonthlyReport {
    pub month: Month,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub bought: Vec<Purchase>,
    pub totals: Totals,
    /// Returns and Marketplace listings executed in the month.
    pub given_up: Vec<GivenUp>,
    pub portfolio: Portfolio,
    /// The whole portfolio's realized savings in the month (every commitment in the bill),
    /// or None without a FOCUS bill: see `realized_savings_note`.
    pub realized_savings: Option<Money>,
    pub realized_savings_note: String,
    /// The detail, when a FOCUS bill was read.
    pub realized: Option<Realized>,
}

/// A commitment (or part of one) given up: returned, or listed on the RI Marketplace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GivenUp {
    pub executed_at: DateTime<Utc>,
    pub proposal_id: String,
    /// "return" or "sale".
    pub operation: String,
    pub provider: String,
    /// What the proposal described ("return sim-1 (...)", "list ri-1 on the RI Marketplace").
    pub what: String,
    /// The returned commitment, or the listing's id.
    pub id: String,
    pub provider_request_id: String,
    /// Amortized cost per hour no longer paid once it takes effect.
    pub hourly_cost_removed: Option<Money>,
    /// A listing's asking price (before AWS's fee).
    pub asking_price: Option<Money>,
    pub expected_savings: Money,
    pub approved_by: Vec<String>,
}

pub const REALIZED_NOTE: &str = "not computed: the audit log holds plans and purchases, not \
     billed usage; realized savings need the month's bill priced with and without these \
     commitments (set [source] focus, or pass --focus, to read the FOCUS export)";

pub const REALIZED_BILL_NOTE: &str = "realized savings = on-demand equivalent (ListCost) of the \
     usage each commitment covered - its Used and Unused EffectiveCost, for the month's hours, \
     over every commitment in the bill (including ones commitd did not buy); Purchase rows' \
     BilledCost (fees) is shown but not added, as FOCUS already amortizes it into EffectiveCost";

/// One commitment of the month's bill.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RealizedCommitment {
    /// FOCUS CommitmentDiscountId.
    pub bill_id: String,
    /// commitd's commitment id, when commitd bought it.
    pub commitd_commitment_id: Option<String>,
    pub bought_by_commitd: bool,
    pub provider: String,
    pub commitment_type: String,
    /// Hours of the month with Used or Unused rows of it.
    pub billed_hours: i64,
    /// On-demand equivalent of the usage it covered.
    pub covered_ode: Money,
    pub used_cost: Money,
    pub unused_cost: Money,
    /// used_cost + unused_cost.
    pub cost: Money,
    /// covered_ode - cost (negative when the commitment cost more than it saved).
    pub realized_savings: Money,
    /// commitd's expected savings pro-rated to `billed_hours` (None if commitd did not buy it).
    pub expected_savings: Option<Money>,
    /// BilledCost of its Purchase rows in the month (cash, not added: see the note).
    pub fees_billed: Money,
    /// Covered rows with no list price: `covered_ode` and `realized_savings` are lower bounds.
    pub covered_rows_without_list_cost: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RealizedTotals {
    pub commitments: usize,
    pub covered_ode: Money,
    pub cost: Money,
    pub realized_savings: Money,
    /// Expected savings pro-rated to the hours billed (commitd's commitments only).
    pub expected_savings: Money,
}

/// Realized savings of the month, from the FOCUS bill.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Realized {
    /// The FOCUS file or directory read.
    pub source: String,
    pub commitments: Vec<RealizedCommitment>,
    /// Every commitment in the bill.
    pub portfolio: RealizedTotals,
    /// The commitments commitd bought.
    pub commitd: RealizedTotals,
    /// commitd's commitments active in the month (by their start/end) with no rows in the
    /// bill: not billed yet, or billed under an id the report cannot match. Never guessed.
    pub not_billed: Vec<String>,
}

/// The FOCUS bill of the month, as the report needs it.
pub struct MonthBill<'a> {
    pub source: String,
    pub commitments: &'a [BillCommitment],
}

/// The commitments of `month`'s FOCUS bill read from `path` (a file or a directory tree): only
/// the month's hours are kept, rows spanning its edges split exactly. The error names the
/// export.
pub fn read_month_bill(
    path: &std::path::Path,
    month: Month,
) -> Result<Vec<BillCommitment>, String> {
    let range = crate::domain::HourRange::new(
        crate::domain::Hour::from_datetime(month.start()),
        crate::domain::Hour::from_datetime(month.end()),
    );
    let options = crate::sources::ReadOptions {
        range: Some(range),
        progress: false,
    };
    crate::sources::read_focus(path, &options)
        .map(|bill| bill.commitments)
        .map_err(|e| format!("reading the FOCUS bill {}: {e}", path.display()))
}

/// commitd's commitment id matches a bill's CommitmentDiscountId exactly, or as its last path
/// segment: an AWS savings plan ARN ends in `savingsplan/<savingsPlanId>`, an RI ARN in
/// `reserved-instances/<id>`, an Azure reservation path in `reservations/<id>`.
pub fn bill_id_matches(bill_id: &str, commitd_id: &str) -> bool {
    !commitd_id.is_empty()
        && (bill_id == commitd_id
            || bill_id
                .rsplit_once('/')
                .is_some_and(|(_, last)| last == commitd_id))
}

fn text(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key).and_then(|x| x.as_str()).map(str::to_string)
}

fn money(v: &serde_json::Value, key: &str) -> Option<Money> {
    v.get(key)
        .and_then(|x| x.as_str())
        .and_then(|s| Money::parse(s).ok())
}

fn time(v: &serde_json::Value, key: &str) -> Option<DateTime<Utc>> {
    text(v, key)
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// `amount` x `num` / `den`, rounded half-even to the micro-dollar.
fn pro_rata(amount: Money, num: i64, den: i64) -> Money {
    if den <= 0 {
        return Money::ZERO;
    }
    let d = amount.to_decimal() * Decimal::from(num) / Decimal::from(den);
    Money::from_decimal(d).unwrap_or(Money::ZERO)
}

/// Builds the report for `month` from the audit events (all of them, in chain order: the
/// proposals and approvals of a purchase may be older than the month).
pub fn build(month: Month, events: &[Event], bill: Option<&MonthBill<'_>>) -> MonthlyReport {
    let (from, until) = (month.start(), month.end());
    let mut proposed = BTreeMap::new();
    let mut approvers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    // What each execution was asked to do, as people read it ("return ...", "list ...").
    let mut asked: BTreeMap<&str, String> = BTreeMap::new();
    for e in events {
        match &e.body {
            EventBody::ExecutionRequested(x) => {
                if let Some(what) = text(&e.rationale, "what") {
                    asked.insert(x.proposal_id.as_str(), what);
                }
            }
            EventBody::ActionProposed(p) => {
                proposed.insert(p.proposal_id.as_str(), p);
            }
            EventBody::Approved(a) => approvers
                .entry(a.proposal_id.as_str())
                .or_default()
                .push(e.actor.clone()),
            _ => {}
        }
    }
    let mut all = Vec::new();
    let mut given_up = Vec::new();
    for e in events {
        let EventBody::Executed(x) = &e.body else {
            continue;
        };
        let p = proposed.get(x.proposal_id.as_str());
        let r = &e.rationale;
        let approved_by = approvers
            .get(x.proposal_id.as_str())
            .cloned()
            .unwrap_or_default();
        if let Some(operation @ ("return" | "sale")) = r["operation"].as_str() {
            if e.time >= from && e.time < until {
                given_up.push(GivenUp {
                    executed_at: e.time,
                    proposal_id: x.proposal_id.clone(),
                    operation: operation.to_string(),
                    provider: text(r, "provider").unwrap_or_default(),
                    what: asked
                        .get(x.proposal_id.as_str())
                        .cloned()
                        .unwrap_or_default(),
                    id: x.commitment_id.clone(),
                    provider_request_id: x.provider_request_id.clone(),
                    hourly_cost_removed: money(r, "hourly_cost_removed"),
                    asking_price: money(r, "asking_price"),
                    expected_savings: money(r, "expected_savings").unwrap_or(Money::ZERO),
                    approved_by,
                });
            }
            continue;
        }
        let term = p.map(|p| p.term);
        let hourly_cost = money(r, "hourly_cost")
            .or(p.map(|p| p.hourly_commitment))
            .unwrap_or(Money::ZERO);
        all.push(Purchase {
            executed_at: e.time,
            proposal_id: x.proposal_id.clone(),
            provider: text(r, "provider")
                .or(p.map(|p| p.provider.to_string()))
                .unwrap_or_default(),
            instrument: p.map(|p| p.instrument.to_string()).unwrap_or_default(),
            term,
            payment_option: p.map(|p| p.payment_option.to_string()).unwrap_or_default(),
            region: p.and_then(|p| p.region.clone()),
            family: p.and_then(|p| p.family.clone()),
            hourly_cost,
            upfront: money(r, "upfront")
                .or(p.map(|p| p.upfront))
                .unwrap_or(Money::ZERO),
            term_total: e
                .amount
                .as_ref()
                .map(|a| a.money)
                .or_else(|| term.and_then(|t| hourly_cost.times(t.hours())))
                .unwrap_or(Money::ZERO),
            start: time(r, "start"),
            end: time(r, "end"),
            commitment_id: x.commitment_id.clone(),
            provider_request_id: x.provider_request_id.clone(),
            expected_savings: money(r, "expected_savings")
                .or(p.map(|p| p.expected_savings))
                .unwrap_or(Money::ZERO),
            approved_by,
        });
    }

    let mut portfolio = Portfolio::default();
    for c in &all {
        if c.executed_at >= until {
            continue;
        }
        let (Some(start), Some(end)) = (c.start, c.end) else {
            portfolio.without_dates += 1;
            continue;
        };
        let overlap = (end.min(until) - start.max(from)).num_hours();
        if overlap <= 0 {
            continue;
        }
        portfolio.commitments += 1;
        portfolio.amortized_cost += c.hourly_cost.times(overlap).unwrap_or(Money::ZERO);
        let term_hours = (end - start).num_hours();
        portfolio.expected_savings += pro_rata(c.expected_savings, overlap, term_hours);
    }

    let realized = bill.map(|b| realize(month, &all, b));
    let bought: Vec<Purchase> = all
        .into_iter()
        .filter(|c| c.executed_at >= from && c.executed_at < until)
        .collect();
    let totals = Totals {
        purchases: bought.len(),
        hourly_cost: bought.iter().map(|c| c.hourly_cost).sum(),
        upfront: bought.iter().map(|c| c.upfront).sum(),
        term_total: bought.iter().map(|c| c.term_total).sum(),
        expected_savings: bought.iter().map(|c| c.expected_savings).sum(),
    };
    MonthlyReport {
        month,
        from,
        until,
        bought,
        totals,
        given_up,
        portfolio,
        realized_savings: realized.as_ref().map(|r| r.portfolio.realized_savings),
        realized_savings_note: if realized.is_some() {
            REALIZED_BILL_NOTE
        } else {
            REALIZED_NOTE
        }
        .to_string(),
        realized,
    }
}

/// Realized savings of the month from the bill's commitments (already clipped to the month's
/// hours by the ingest), matched to the commitments commitd bought up to the month's end.
fn realize(month: Month, all: &[Purchase], bill: &MonthBill<'_>) -> Realized {
    let (from, until) = (month.start(), month.end());
    let known: Vec<&Purchase> = all.iter().filter(|c| c.executed_at < until).collect();
    let mut matched = vec![false; known.len()];
    let mut commitments = Vec::new();
    let (mut portfolio, mut commitd) = (RealizedTotals::default(), RealizedTotals::default());
    for b in bill.commitments {
        let found = known
            .iter()
            .position(|c| bill_id_matches(&b.id, &c.commitment_id));
        let cost = b.total_used + b.total_unused;
        let realized_savings = b.total_covered_ode - cost;
        let expected_savings = found.map(|i| {
            matched[i] = true;
            let c = known[i];
            // Expected savings are stated over the whole term: pro-rate them to the hours the
            // bill shows the commitment working.
            let term_hours = match (c.start, c.end) {
                (Some(s), Some(e)) => (e - s).num_hours(),
                _ => c.term.map(|t| t.hours()).unwrap_or(0),
            };
            pro_rata(c.expected_savings, b.billed_hours, term_hours)
        });
        for t in [Some(&mut portfolio), found.map(|_| &mut commitd)]
            .into_iter()
            .flatten()
        {
            t.commitments += 1;
            t.covered_ode += b.total_covered_ode;
            t.cost += cost;
            t.realized_savings += realized_savings;
            t.expected_savings += expected_savings.unwrap_or(Money::ZERO);
        }
        commitments.push(RealizedCommitment {
            bill_id: b.id.clone(),
            commitd_commitment_id: found.map(|i| known[i].commitment_id.clone()),
            bought_by_commitd: found.is_some(),
            provider: b.provider.to_string(),
            commitment_type: b.commitment_type.clone(),
            billed_hours: b.billed_hours,
            covered_ode: b.total_covered_ode,
            used_cost: b.total_used,
            unused_cost: b.total_unused,
            cost,
            realized_savings,
            expected_savings,
            fees_billed: b.fees,
            covered_rows_without_list_cost: b.covered_rows_without_list_cost,
        });
    }
    let not_billed = known
        .iter()
        .zip(&matched)
        .filter(|(c, m)| {
            !**m && match (c.start, c.end) {
                (Some(s), Some(e)) => s < until && e > from,
                _ => false,
            }
        })
        .map(|(c, _)| c.commitment_id.clone())
        .collect();
    Realized {
        source: bill.source.clone(),
        commitments,
        portfolio,
        commitd,
        not_billed,
    }
}

impl MonthlyReport {
    /// The table for people.
    pub fn render(&self) -> String {
        let mut out = format!(
            "commitd monthly report {} ({} to {}, UTC)\n\n",
            self.month,
            self.from.format("%Y-%m-%d"),
            self.until.format("%Y-%m-%d")
        );
        out.push_str(&format!("Commitments bought: {}\n", self.totals.purchases));
        if !self.bought.is_empty() {
            out.push_str(&format!(
                "  {:<17} {:<8} {:<28} {:<4} {:<15} {:>14} {:>18} {:>18} {:>18}  {}\n",
                "executed",
                "provider",
                "instrument",
                "term",
                "payment",
                "per hour",
                "upfront",
                "term total",
                "exp. savings",
                "approved by"
            ));
        }
        for c in &self.bought {
            out.push_str(&format!(
                "  {:<17} {:<8} {:<28} {:<4} {:<15} {:>14} {:>18} {:>18} {:>18}  {}\n",
                c.executed_at.format("%Y-%m-%d %H:%M"),
                c.provider,
                c.instrument,
                c.term.map(|t| t.to_string()).unwrap_or_default(),
                c.payment_option,
                c.hourly_cost.for_people(),
                c.upfront.for_people(),
                c.term_total.for_people(),
                c.expected_savings.for_people(),
                if c.approved_by.is_empty() {
                    "-".to_string()
                } else {
                    c.approved_by.join(", ")
                }
            ));
            out.push_str(&format!(
                "      {} (request {})\n",
                c.commitment_id, c.provider_request_id
            ));
        }
        out.push_str(&format!(
            "\nSpend committed this month: {} per hour, {} upfront, {} over the terms\n",
            self.totals.hourly_cost.for_people(),
            self.totals.upfront.for_people(),
            self.totals.term_total.for_people()
        ));
        out.push_str(&format!(
            "Expected savings of this month's purchases (over their terms): {}\n",
            self.totals.expected_savings.for_people()
        ));
        if !self.given_up.is_empty() {
            out.push_str(&format!(
                "\nCommitments given up: {} (they buy nothing: not in the spend above)\n",
                self.given_up.len()
            ));
            for g in &self.given_up {
                out.push_str(&format!(
                    "  {} {:<6} {}\n      {} (request {}); stops {} per hour{}; expected savings {}; approved by {}\n",
                    g.executed_at.format("%Y-%m-%d %H:%M"),
                    g.operation,
                    g.what,
                    g.id,
                    g.provider_request_id,
                    g.hourly_cost_removed.map(Money::for_people).unwrap_or_else(|| "?".into()),
                    g.asking_price
                        .map(|m| format!(" once sold, asking {}", m.for_people()))
                        .unwrap_or_default(),
                    g.expected_savings.for_people(),
                    if g.approved_by.is_empty() {
                        "-".to_string()
                    } else {
                        g.approved_by.join(", ")
                    }
                ));
            }
        }
        out.push_str(&format!(
            "\nPortfolio active in {} (bought by commitd, any month): {} commitment(s)\n",
            self.month, self.portfolio.commitments
        ));
        out.push_str(&format!(
            "  amortized cost this month: {}; expected savings this month (pro-rated): {}\n",
            self.portfolio.amortized_cost.for_people(),
            self.portfolio.expected_savings.for_people()
        ));
        if self.portfolio.without_dates > 0 {
            out.push_str(&format!(
                "  {} purchase(s) without start/end in the log are not counted\n",
                self.portfolio.without_dates
            ));
        }
        match &self.realized {
            None => out.push_str(&format!(
                "\nRealized savings: {}\n",
                self.realized_savings_note
            )),
            Some(r) => out.push_str(&r.render(&self.month)),
        }
        out
    }

    /// CSV: one row per purchase bought in the month, then a TOTAL row.
    pub fn write_csv(&self, out: impl std::io::Write) -> Result<(), csv::Error> {
        let mut w = csv::Writer::from_writer(out);
        w.write_record([
            "month",
            "executed_at",
            "proposal_id",
            "provider",
            "instrument",
            "term_years",
            "payment_option",
            "region",
            "family",
            "hourly_cost",
            "upfront",
            "term_total",
            "expected_savings",
            "approved_by",
            "commitment_id",
            "provider_request_id",
            "start",
            "end",
            "bill_commitment_id",
            "billed_hours",
            "covered_ode",
            "commitment_cost",
            "realized_savings",
            "expected_savings_billed_hours",
            "bought_by_commitd",
        ])?;
        let month = self.month.to_string();
        let t = |d: Option<DateTime<Utc>>| d.map(|d| d.to_rfc3339()).unwrap_or_default();
        for c in &self.bought {
            w.write_record([
                month.clone(),
                c.executed_at.to_rfc3339(),
                c.proposal_id.clone(),
                c.provider.clone(),
                c.instrument.clone(),
                c.term.map(|t| t.years().to_string()).unwrap_or_default(),
                c.payment_option.clone(),
                c.region.clone().unwrap_or_default(),
                c.family.clone().unwrap_or_default(),
                c.hourly_cost.to_string(),
                c.upfront.to_string(),
                c.term_total.to_string(),
                c.expected_savings.to_string(),
                c.approved_by.join("; "),
                c.commitment_id.clone(),
                c.provider_request_id.clone(),
                t(c.start),
                t(c.end),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ])?;
        }
        let mut total = vec![month, "TOTAL".to_string()];
        total.extend(std::iter::repeat_n(String::new(), 7));
        total.extend([
            self.totals.hourly_cost.to_string(),
            self.totals.upfront.to_string(),
            self.totals.term_total.to_string(),
            self.totals.expected_savings.to_string(),
        ]);
        total.extend(std::iter::repeat_n(String::new(), 5 + 7));
        w.write_record(&total)?;
        if let Some(r) = &self.realized {
            // Same columns: the realized rows name their kind in executed_at, like TOTAL.
            let row = |kind: &str, commitment: &str, bill: &str, tail: [String; 6]| {
                let mut v = vec![self.month.to_string(), kind.to_string()];
                v.extend(std::iter::repeat_n(String::new(), 12));
                v.push(commitment.to_string());
                v.extend(std::iter::repeat_n(String::new(), 3));
                v.push(bill.to_string());
                v.extend(tail);
                v
            };
            for c in &r.commitments {
                w.write_record(row(
                    "BILLED",
                    c.commitd_commitment_id.as_deref().unwrap_or_default(),
                    &c.bill_id,
                    [
                        c.billed_hours.to_string(),
                        c.covered_ode.to_string(),
                        c.cost.to_string(),
                        c.realized_savings.to_string(),
                        c.expected_savings
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        c.bought_by_commitd.to_string(),
                    ],
                ))?;
            }
            for id in &r.not_billed {
                w.write_record(row("NOT_BILLED", id, "", Default::default()))?;
            }
            let p = &r.portfolio;
            w.write_record(row(
                "REALIZED_TOTAL",
                "",
                "",
                [
                    String::new(),
                    p.covered_ode.to_string(),
                    p.cost.to_string(),
                    p.realized_savings.to_string(),
                    p.expected_savings.to_string(),
                    String::new(),
                ],
            ))?;
        }
        w.flush()?;
        Ok(())
    }
}

impl Realized {
    fn render(&self, month: &Month) -> String {
        let mut out = format!(
            "\nRealized savings in {month} (FOCUS bill {}): {} over {} commitment(s) in the bill\n",
            self.source,
            self.portfolio.realized_savings.for_people(),
            self.portfolio.commitments
        );
        out.push_str(&format!(
            "  of which bought by commitd: {} commitment(s), realized {} vs expected {} \
             (pro-rated to the hours billed)\n",
            self.commitd.commitments,
            self.commitd.realized_savings.for_people(),
            self.commitd.expected_savings.for_people()
        ));
        if !self.commitments.is_empty() {
            out.push_str(&format!(
                "  {:<7} {:>6} {:>16} {:>16} {:>16} {:>16}  {}\n",
                "commitd", "hours", "on-demand eq.", "cost", "realized", "expected", "commitment"
            ));
        }
        for c in &self.commitments {
            out.push_str(&format!(
                "  {:<7} {:>6} {:>16} {:>16} {:>16} {:>16}  {}{}\n",
                if c.bought_by_commitd { "yes" } else { "no" },
                c.billed_hours,
                c.covered_ode.for_people(),
                c.cost.for_people(),
                c.realized_savings.for_people(),
                c.expected_savings
                    .map(Money::for_people)
                    .unwrap_or_else(|| "-".to_string()),
                c.bill_id,
                if c.covered_rows_without_list_cost > 0 {
                    format!(
                        " ({} covered row(s) without list price: a lower bound)",
                        c.covered_rows_without_list_cost
                    )
                } else {
                    String::new()
                }
            ));
        }
        if !self.not_billed.is_empty() {
            out.push_str(&format!(
                "  not in the bill (not billed yet?): {}\n",
                self.not_billed.join(", ")
            ));
        }
        out.push_str(&format!("  {REALIZED_BILL_NOTE}\n"));
        out
    }
}

/// Month boundaries are checked here because February and December are where they go wrong.
#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;

    #[test]
    fn returns_and_listings_are_given_up_not_bought() {
        use crate::audit::{Executed, ExecutionRequested};
        let at = Utc.with_ymd_and_hms(2026, 10, 5, 6, 0, 0).unwrap();
        let event = |id: i64,
                     body: EventBody,
                     rationale: serde_json::Value,
                     amount: Option<crate::audit::Amount>| Event {
            id,
            time: at,
            actor: "commitd".into(),
            subject: "p-1".into(),
            amount,
            rationale,
            body,
            prev_hash: String::new(),
            hash: String::new(),
        };
        let events = vec![
            event(
                1,
                EventBody::ExecutionRequested(ExecutionRequested {
                    proposal_id: "p-1".into(),
                    idempotency_key: "k".into(),
                    attempt: None,
                }),
                serde_json::json!({"what": "list ri-1 on the RI Marketplace (AWS ...)"}),
                None,
            ),
            event(
                2,
                EventBody::Executed(Executed {
                    proposal_id: "p-1".into(),
                    idempotency_key: "k".into(),
                    provider_request_id: "req-1".into(),
                    commitment_id: "ril-1".into(),
                }),
                serde_json::json!({
                    "provider": "aws", "operation": "sale", "asking_price": "886.95",
                    "hourly_cost_removed": "0.3",
                    "expected_savings": "120"
                }),
                None,
            ),
        ];
        let r = build(Month::parse("2026-10").unwrap(), &events, None);
        // A listing buys nothing: no purchase, no committed spend.
        assert!(r.bought.is_empty());
        assert_eq!(r.totals.term_total, Money::ZERO);
        assert_eq!(r.given_up.len(), 1);
        let g = &r.given_up[0];
        assert_eq!((g.operation.as_str(), g.id.as_str()), ("sale", "ril-1"));
        assert_eq!(g.hourly_cost_removed, Money::parse("0.3").ok());
        assert_eq!(g.asking_price, Money::parse("886.95").ok());
        let text = r.render();
        assert!(
            text.contains("Commitments given up: 1") && text.contains("list ri-1"),
            "{text}"
        );
        // Money as people read it; the JSON and CSV keep the exact figures.
        assert!(
            text.contains("stops USD 0.30 per hour once sold, asking USD 886.95;"),
            "{text}"
        );
    }

    #[test]
    fn months_parse_strictly_and_name_the_bad_value() {
        let m = Month::parse("2026-10").unwrap();
        assert_eq!(m.to_string(), "2026-10");
        assert_eq!(m.hours(), 31 * 24);
        assert_eq!(Month::parse("2028-02").unwrap().hours(), 29 * 24);
        let dec = Month::parse("2026-12").unwrap();
        assert_eq!(dec.end().year(), 2027);
        for bad in [
            "2026-13", "2026-1", "26-10", "2026/10", "2026-00", "october", "",
        ] {
            let e = Month::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn bill_ids_match_exactly_or_by_last_path_segment_only() {
        let arn = "arn:aws:savingsplans::111:savingsplan/sp-aaa";
        assert!(bill_id_matches(arn, "sp-aaa"));
        assert!(bill_id_matches(arn, arn));
        assert!(!bill_id_matches(arn, "aaa"), "a suffix is not a segment");
        assert!(!bill_id_matches(arn, "savingsplan/sp"));
        assert!(!bill_id_matches(arn, ""));
        assert!(bill_id_matches(
            "/providers/Microsoft.Capacity/reservationOrders/o1/reservations/r1",
            "r1"
        ));
    }

    fn purchase(id: &str, start: &str, end: &str, expected: &str) -> Purchase {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        Purchase {
            executed_at: t(start),
            proposal_id: format!("p-{id}"),
            provider: "AWS".into(),
            instrument: "ComputeSavingsPlan".into(),
            term: Some(Term::ONE_YEAR),
            payment_option: "NoUpfront".into(),
            region: None,
            family: None,
            hourly_cost: Money::parse("10").unwrap(),
            upfront: Money::ZERO,
            term_total: Money::ZERO,
            start: Some(t(start)),
            end: Some(t(end)),
            commitment_id: id.into(),
            provider_request_id: String::new(),
            expected_savings: Money::parse(expected).unwrap(),
            approved_by: Vec::new(),
        }
    }

    /// A hand-made bill, savings computed by hand:
    /// * sp-aaa (commitd's, matched by ARN suffix): Used 00:00 ListCost 10 EffectiveCost 6;
    ///   Used 01:00 10 / 6; Unused 01:00 EffectiveCost 1.5; a two-hour Used row from
    ///   Sep 30 23:00, ListCost 4 EffectiveCost 2, half of it in October (2 / 1); a Purchase
    ///   row, BilledCost 100 (cash, not added). ODE 22, cost 14.5, realized 7.5; billed 2 hours;
    ///   expected 8,760 over a 8,760-hour term -> 2.
    /// * sp-bbb (not commitd's): Used 00:00 ListCost 5 EffectiveCost 3 -> realized 2.
    /// * sp-ccc (commitd's, active in October): no rows -> not billed.
    /// * sp-old (commitd's, ended in September): not listed.
    #[test]
    fn realized_savings_from_a_hand_made_bill() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bill.csv");
        let head = "ChargeCategory,ChargePeriodStart,ChargePeriodEnd,ProviderName,BillingCurrency,\
RegionId,ServiceCategory,ServiceName,UsageType,ListCost,EffectiveCost,BilledCost,ConsumedQuantity,\
PricingCategory,CommitmentDiscountId,CommitmentDiscountStatus,CommitmentDiscountType,SubAccountId";
        let a = "arn:aws:savingsplans::111:savingsplan/sp-aaa";
        let b = "arn:aws:savingsplans::111:savingsplan/sp-bbb";
        let vm = "AWS,USD,us-east-1,Compute,Amazon Elastic Compute Cloud,USE1-BoxUsage:m5.large";
        let rows = [
            format!("Usage,2026-10-01T00:00:00Z,2026-10-01T01:00:00Z,{vm},10,6,0,1,Committed,{a},Used,Savings Plan,1"),
            format!("Usage,2026-10-01T01:00:00Z,2026-10-01T02:00:00Z,{vm},10,6,0,1,Committed,{a},Used,Savings Plan,1"),
            format!("Usage,2026-10-01T01:00:00Z,2026-10-01T02:00:00Z,{vm},0,1.5,1.5,0,Committed,{a},Unused,Savings Plan,1"),
            format!("Usage,2026-09-30T23:00:00Z,2026-10-01T01:00:00Z,{vm},4,2,0,2,Committed,{a},Used,Savings Plan,1"),
            format!("Purchase,2026-10-01T00:00:00Z,2026-10-02T00:00:00Z,{vm},0,0,100,0,Committed,{a},,Savings Plan,1"),
            format!("Usage,2026-10-01T00:00:00Z,2026-10-01T01:00:00Z,{vm},5,3,0,1,Committed,{b},Used,Savings Plan,1"),
            format!("Usage,2026-09-15T00:00:00Z,2026-09-15T01:00:00Z,{vm},50,1,0,1,Committed,{b},Used,Savings Plan,1"),
        ];
        std::fs::write(&path, format!("{head}\n{}\n", rows.join("\n"))).unwrap();
        let month = Month::parse("2026-10").unwrap();
        let range = crate::domain::HourRange::new(
            crate::domain::Hour::from_datetime(month.start()),
            crate::domain::Hour::from_datetime(month.end()),
        );
        let options = crate::sources::ReadOptions {
            range: Some(range),
            progress: false,
        };
        let bill = crate::sources::read_focus(&path, &options).unwrap();
        let all = [
            purchase(
                "sp-aaa",
                "2026-09-01T00:00:00Z",
                "2027-09-01T00:00:00Z",
                "8760",
            ),
            purchase(
                "sp-ccc",
                "2026-10-10T00:00:00Z",
                "2027-10-10T00:00:00Z",
                "100",
            ),
            purchase(
                "sp-old",
                "2025-09-01T00:00:00Z",
                "2026-09-01T00:00:00Z",
                "100",
            ),
        ];
        // 2026-09-01 to 2027-09-01 is 8,760 hours.
        let r = realize(
            month,
            &all,
            &MonthBill {
                source: "bill.csv".into(),
                commitments: &bill.commitments,
            },
        );
        let m = |s: &str| Money::parse(s).unwrap();
        assert_eq!(r.commitments.len(), 2);
        let ca = &r.commitments[0];
        assert_eq!(ca.bill_id, a);
        assert_eq!(ca.commitd_commitment_id.as_deref(), Some("sp-aaa"));
        assert_eq!(ca.billed_hours, 2);
        assert_eq!(ca.covered_ode, m("22"));
        assert_eq!(ca.used_cost, m("13"));
        assert_eq!(ca.unused_cost, m("1.5"));
        assert_eq!(ca.cost, m("14.5"));
        assert_eq!(ca.realized_savings, m("7.5"));
        assert_eq!(ca.expected_savings, Some(m("2")));
        assert_eq!(ca.fees_billed, m("100"));
        let cb = &r.commitments[1];
        assert!(!cb.bought_by_commitd && cb.expected_savings.is_none());
        assert_eq!(
            cb.realized_savings,
            m("2"),
            "September's row is outside the month"
        );
        assert_eq!(r.not_billed, vec!["sp-ccc".to_string()]);
        assert_eq!(r.portfolio.commitments, 2);
        assert_eq!(r.portfolio.realized_savings, m("9.5"));
        assert_eq!(r.commitd.commitments, 1);
        assert_eq!(r.commitd.realized_savings, m("7.5"));
        assert_eq!(r.commitd.expected_savings, m("2"));
    }

    #[test]
    fn pro_rata_is_exact_and_rounds_half_even() {
        let m = Money::parse("8760").unwrap();
        assert_eq!(pro_rata(m, 744, 8760), Money::parse("744").unwrap());
        assert_eq!(
            pro_rata(Money::parse("0.000001").unwrap(), 1, 2),
            Money::ZERO
        );
    }
}
