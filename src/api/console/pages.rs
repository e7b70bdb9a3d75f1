//! The console's pages: overview, proposals (queue and one proposal, with the decision
//! forms), audit (browse, one event, verify, export) and finance (the monthly report).
//!
//! Every page handler takes a [`LoggedIn`] session (no session, no page: the browser is sent
//! to the login page before the handler runs) and answers with [`ok_page`]; the decision forms
//! check the session with [`current`] before reading their body. Query parameters are parsed
//! before anything is read; a bad one is a 400 page naming it. The charts and figures the
//! daemon recorded when it planned (a proposal's usage and marginal value, the commitments'
//! utilization, the plans by month) are in `insight`.

use super::insight;
use super::view::{self, bar_chart, pct, usd, utc, Bar, Nav};
use super::{csrf_refusal, current, html_response, ok_page, problem, read_form, LoggedIn};
use crate::api::decide::{decide, DecideError, Verdict};
use crate::api::server::AppState;
use crate::audit::{EventBody, EventFilter, EventKind, ExportFormat};
use crate::domain::{Hour, Money};
use crate::identity::session::Session;
use crate::identity::Role;
use crate::policy::RuleCheck;
use crate::proposals::journal::term_total;
use crate::proposals::{ActionDigest, Proposal, ProposalError, ProposalState};
use crate::report::{self, Month};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The most rows a list page shows.
const MAX_ROWS: usize = 500;

pub(super) fn unavailable(session: &Session, what: &str, e: impl std::fmt::Display) -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(session),
        &format!("{what}: {e}"),
    )
}

fn bad_request(session: &Session, message: &str) -> Response {
    problem(StatusCode::BAD_REQUEST, Some(session), message)
}

fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn state_badge(state: ProposalState) -> Markup {
    html! { span class=(format!("badge state-{}", state.as_str())) { (state.as_str()) } }
}

// ---------------------------------------------------------------------------------------------
// Overview

pub(super) async fn overview(State(s): State<AppState>, LoggedIn(session): LoggedIn) -> Response {
    let now = Utc::now();
    let pending = match s.proposals.list(Some(ProposalState::Proposed)).await {
        Ok(p) => p,
        Err(e) => return unavailable(&session, "reading proposals", e),
    };
    let counts = match s.proposals.counts().await {
        Ok(c) => c,
        Err(e) => return unavailable(&session, "counting proposals", e),
    };
    let snap = s.metrics.snapshot();
    let ready = s.ready.load(std::sync::atomic::Ordering::SeqCst);
    let policies = s.console.policies.as_ref().map(|f| f());
    let months = match insight::plan_events(&s, now).await {
        Ok(events) => insight::by_month(&events),
        Err(e) => return unavailable(&session, "reading the audit log", e),
    };

    let state_bars: Vec<Bar> = ProposalState::ALL
        .iter()
        .filter_map(|st| {
            let n = counts.iter().find(|(c, _)| c == st).map_or(0, |(_, n)| *n);
            (n > 0).then(|| Bar {
                label: st.as_str().into(),
                value: n as f64,
                shown: n.to_string(),
            })
        })
        .collect();

    let body = html! {
        section aria-labelledby="pending-h" {
            h2 #pending-h { "Waiting for approval" }
            @if pending.is_empty() {
                p { "No proposal is waiting for a decision." }
            } @else {
                p { strong { (pending.len()) } " proposal(s) wait for a decision. " a href="/ui/proposals?state=proposed" { "See the queue" } }
                (proposal_table(&pending.iter().take(10).collect::<Vec<_>>(), "The queue, newest first (first 10)"))
            }
        }
        div.grid {
            section aria-labelledby="service-h" {
                h2 #service-h { "Service" }
                dl {
                    dt { "HTTP server" } dd { @if ready { "ready" } @else { "starting or stopping" } }
                    dt { "Last planning cycle" }
                    dd {
                        @match (snap.last_cycle_unix.and_then(|u| DateTime::from_timestamp(u, 0)), snap.last_cycle_ok) {
                            (Some(t), Some(ok)) => {
                                (utc(t)) ": "
                                @if ok { span.ok { "succeeded" } } @else { span.bad { "failed" } }
                                " in " (format!("{:.1}", snap.last_cycle_seconds)) " s"
                            }
                            _ => { "none since this process started" }
                        }
                    }
                    dt { "Cycles" } dd { (snap.cycles_ok) " succeeded, " (snap.cycles_failed) " failed" }
                    dt { "Executions" } dd { (snap.executed) " executed, " (snap.failed) " failed, " (snap.blocked) " blocked by policy" }
                    dt { "Executor lease" } dd { @if snap.leader { "held by this replica" } @else { "not held by this replica" } }
                    @if let Some(x) = snap.expected {
                        dt { "Last plan expects" }
                        dd { "coverage " (pct(x.coverage)) ", utilization " (pct(x.utilization)) ", effective savings rate " (pct(x.esr)) }
                    }
                }
            }
            section aria-labelledby="kill-h" {
                h2 #kill-h { "Kill switches and modes" }
                @match &policies {
                    None => { p.muted { "The policies are not available to this server." } }
                    Some(Err(e)) => { p.bad role="alert" { "The policies do not load, so nothing executes: " (e) } }
                    Some(Ok(set)) if set.policies.is_empty() => { p.bad { "No policy: nothing is bought without one." } }
                    Some(Ok(set)) => {
                        div.table-wrap {
                            table {
                                caption { "Policies in force" }
                                thead { tr { th scope="col" { "Policy" } th scope="col" { "Kill switch" } th scope="col" { "Mode" } } }
                                tbody {
                                    @for p in &set.policies {
                                        tr {
                                            th scope="row" { (p.name) }
                                            td { @if p.kill_switch { span.bad { "ON: nothing executes" } } @else { "off" } }
                                            td { (p.mode.map_or("the service's".to_string(), |m| format!("{m:?}").to_lowercase())) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="anomaly-h" {
            h2 #anomaly-h { "Cost anomalies" }
            (anomalies(snap.anomalies_open.as_deref()))
        }
        section aria-labelledby="month-h" {
            h2 #month-h { "Coverage, utilization and savings rate by month" }
            (insight::monthly_section(&months, now))
        }
        section aria-labelledby="commit-h" {
            h2 #commit-h { "Commitments" }
            (commitments(&snap.inventory, now))
        }
        section aria-labelledby="states-h" {
            h2 #states-h { "Proposals by state" }
            (bar_chart("states", "Proposals by state (all time)", &state_bars))
        }
    };
    ok_page(&session, "Overview", Nav::Overview, body)
}

fn commitments(
    inventory: &Option<(i64, Vec<crate::domain::Commitment>)>,
    now: DateTime<Utc>,
) -> Markup {
    let Some((read_at, all)) = inventory else {
        return html! { p.muted { "No inventory read yet: the executor's leader reads it at each cycle (this server never calls the provider for a page)." } };
    };
    let hour = Hour::from_datetime(now);
    let active: Vec<_> = all.iter().filter(|c| c.is_active(hour)).collect();
    let mut by_kind: BTreeMap<String, Money> = BTreeMap::new();
    for c in &active {
        *by_kind
            .entry(format!("{} {}", c.provider, c.instrument))
            .or_insert(Money::ZERO) += c.hourly_cost;
    }
    let bars: Vec<Bar> = by_kind
        .iter()
        .map(|(k, m)| Bar {
            label: k.clone(),
            value: m.micros() as f64,
            shown: format!("{} / h", view::usd_text(*m)),
        })
        .collect();
    let mut expiring: Vec<_> = active
        .iter()
        .filter(|c| c.end.to_datetime() <= now + Duration::days(90))
        .collect();
    expiring.sort_by_key(|c| c.end);
    let within = |days: i64| {
        expiring
            .iter()
            .filter(|c| c.end.to_datetime() <= now + Duration::days(days))
            .count()
    };
    let read = DateTime::from_timestamp(*read_at, 0).unwrap_or(now);
    html! {
        p { (active.len()) " active commitment(s), as read from the provider at " (utc(read)) ". " a href="/ui/commitments" { "The portfolio with utilization and lock-in" } }
        (bar_chart("spend", "Commitment spend per hour by provider and instrument (amortized)", &bars))
        h3 { "Expiring" }
        ul.counts {
            li { "within 30 days: " strong { (within(30)) } }
            li { "within 60 days: " strong { (within(60)) } }
            li { "within 90 days: " strong { (within(90)) } }
        }
        @if !expiring.is_empty() {
            div.table-wrap {
                table {
                    caption { "Commitments ending in the next 90 days" }
                    thead { tr { th scope="col" { "Commitment" } th scope="col" { "What" } th scope="col" { "Cost per hour" } th scope="col" { "Ends" } } }
                    tbody {
                        @for c in &expiring {
                            tr {
                                th scope="row" { (c.id) }
                                td { (c.provider) " " (c.instrument) " " (c.term) " " (c.payment) }
                                td.num { (usd(c.hourly_cost)) }
                                td { (utc(c.end.to_datetime())) }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Proposals

/// The anomalies the last cycle found open (purchases covering them are held).
fn anomalies(open: Option<&[crate::plan::hold::GroupAnomaly]>) -> Markup {
    html! {
        @match open {
            None => { p.muted { "No cycle has watched the usage since this process started." } }
            Some([]) => { p { "No cost anomaly is open." } }
            Some(list) => {
                p { strong { (list.len()) } " anomal" (if list.len() == 1 { "y is" } else { "ies are" }) " open: purchases covering them are held until they end (" a href="/ui/audit?kind=anomaly_detected" { "their audit events" } ")." }
                div.table-wrap {
                    table {
                        caption { "Open cost anomalies (as of the last cycle)" }
                        thead { tr {
                            th scope="col" { "Usage group" } th scope="col" { "Kind" } th scope="col" { "Since" }
                            th scope="col" { "Peak (instances)" } th scope="col" { "Expected" } th scope="col" { "Off the model so far" }
                        } }
                        tbody {
                            @for a in list {
                                tr {
                                    th scope="row" { (a.group) }
                                    td { (a.anomaly.kind.as_str().replace('_', " ")) }
                                    td { (utc(a.anomaly.start.to_datetime())) }
                                    td { (format!("{:.1}", a.anomaly.peak)) }
                                    td { (format!("{:.1}", a.anomaly.expected_at_peak)) }
                                    td { (usd(a.anomaly.excess_cost)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn proposal_table(list: &[&Proposal], caption: &str) -> Markup {
    html! {
        div.table-wrap {
            table {
                caption { (caption) }
                thead {
                    tr {
                        th scope="col" { "Proposal" }
                        th scope="col" { "State" }
                        th scope="col" { "What" }
                        th scope="col" { "Cost per hour" }
                        th scope="col" { "Upfront" }
                        th scope="col" { "Expected savings" }
                        th scope="col" { "Approvals" }
                        th scope="col" { "Created" }
                    }
                }
                tbody {
                    @for p in list {
                        tr {
                            th scope="row" { a href=(format!("/ui/proposals/{}", url_encode(&p.id))) { (p.id) } }
                            td { (state_badge(p.state)) }
                            td { (p.action.describe()) }
                            td.num { (usd(p.action.hourly_cost)) }
                            td.num { (usd(p.action.upfront)) }
                            td.num { (usd(p.action.expected_savings)) }
                            td.num { (p.approvals()) " of " (p.approvals_needed) }
                            td { (utc(p.created_at)) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize, Default)]
pub(super) struct ProposalsQuery {
    state: Option<String>,
    /// 1-based page of [`MAX_ROWS`] proposals, newest first.
    page: Option<String>,
}

/// A 1-based page number (default 1).
fn page_number(text: Option<&str>) -> Result<usize, String> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(1),
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| format!("page '{t}' is not a page number (1, 2, ...)")),
    }
}

pub(super) async fn proposals(
    State(s): State<AppState>,
    LoggedIn(session): LoggedIn,
    Query(q): Query<ProposalsQuery>,
) -> Response {
    let state = match q.state.as_deref().map(str::trim) {
        None | Some("") | Some("all") => None,
        Some(text) => match ProposalState::parse(text) {
            Some(st) => Some(st),
            None => return bad_request(&session, &format!("unknown state '{text}'")),
        },
    };
    let list = match s.proposals.list(state).await {
        Ok(l) => l,
        Err(e) => return unavailable(&session, "reading proposals", e),
    };
    let page = match page_number(q.page.as_deref()) {
        Ok(p) => p,
        Err(e) => return bad_request(&session, &e),
    };
    let first = (page - 1) * MAX_ROWS;
    let shown: Vec<&Proposal> = list.iter().skip(first).take(MAX_ROWS).collect();
    let pages = list.len().div_ceil(MAX_ROWS).max(1);
    let state_param = state.map_or("all", |st| st.as_str());
    let caption = if list.len() > MAX_ROWS {
        format!(
            "{} proposal(s), newest first: {} to {} (page {page} of {pages})",
            list.len(),
            (first + 1).min(list.len()),
            first + shown.len()
        )
    } else {
        format!("{} proposal(s), newest first", list.len())
    };
    let body = html! {
        form.filters method="get" action="/ui/proposals" {
            label for="state" { "State" }
            select #state name="state" {
                option value="all" selected[state.is_none()] { "all" }
                @for st in ProposalState::ALL {
                    option value=(st.as_str()) selected[state == Some(st)] { (st.as_str()) }
                }
            }
            button type="submit" { "Filter" }
        }
        @if list.is_empty() {
            p { "No proposal" @if let Some(st) = state { " in state " (st.as_str()) } "." }
        } @else {
            @if shown.is_empty() {
                p { "No proposal on page " (page) " (there are " (pages) ")." }
            } @else {
                (proposal_table(&shown, &caption))
            }
            @if pages > 1 {
                nav.pages aria-label="Pages" {
                    @if page > 1 { a #newer rel="prev" href=(format!("/ui/proposals?state={state_param}&page={}", page - 1)) { "← Newer" } " " }
                    "Page " (page) " of " (pages)
                    @if page < pages { " " a #older rel="next" href=(format!("/ui/proposals?state={state_param}&page={}", page + 1)) { "Older →" } }
                }
            }
        }
    };
    ok_page(&session, "Proposals", Nav::Proposals, body)
}

#[derive(Deserialize, Default)]
pub(super) struct ProposalQuery {
    done: Option<String>,
}

pub(super) async fn proposal(
    State(s): State<AppState>,
    LoggedIn(session): LoggedIn,
    Path(id): Path<String>,
    Query(q): Query<ProposalQuery>,
) -> Response {
    let flash = match q.done.as_deref() {
        Some("approved") => Some((true, "Your approval was recorded.".to_string())),
        Some("rejected") => Some((true, "Your rejection was recorded.".to_string())),
        _ => None,
    };
    proposal_view(&s, &session, &id, StatusCode::OK, flash).await
}

/// One proposal on one screen: what and where, the money, the plan's expectations, the policy
/// checks with their rules, the decisions, the audit trail, and the decision forms.
async fn proposal_view(
    s: &AppState,
    session: &Session,
    id: &str,
    status: StatusCode,
    flash: Option<(bool, String)>,
) -> Response {
    let p = match s.proposals.get(id).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return problem(
                StatusCode::NOT_FOUND,
                Some(session),
                &format!("proposal {id} does not exist"),
            )
        }
        Err(e) => return unavailable(session, "reading the proposal", e),
    };
    let events = match s.audit.about(&p.id).await {
        Ok(e) => e,
        Err(e) => return unavailable(session, "reading the audit log", e),
    };
    let proposed = events
        .iter()
        .find(|e| matches!(e.body, EventBody::ActionProposed(_)));
    let checks: Vec<RuleCheck> = proposed
        .and_then(|e| e.rationale.get("checks"))
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let verdict = proposed.and_then(|e| e.rationale.get("verdict")).map(|v| {
        match v.get("verdict").and_then(|x| x.as_str()) {
            Some("needs_approval") => format!(
                "needs approval by {} person(s)",
                v.get("approvers").and_then(|x| x.as_u64()).unwrap_or(1)
            ),
            Some(other) => other.replace('_', " "),
            None => v.to_string(),
        }
    });
    let a = &p.action;
    let spec = &a.spec;
    let digest = a.digest();
    let me = &session.principal;
    let decided_by_me = p.decisions.iter().any(|d| d.actor == me.name);
    let can_decide = me.role >= Role::Approver
        && p.state == ProposalState::Proposed
        && p.proposer != me.name
        && !decided_by_me;
    let why_not = if p.state != ProposalState::Proposed {
        Some(format!(
            "This proposal is {}: it is not open for decisions.",
            p.state
        ))
    } else if me.role < Role::Approver {
        Some(format!(
            "Your role ({}) can read proposals but not decide on them.",
            me.role.as_str()
        ))
    } else if p.proposer == me.name {
        Some("You proposed this; someone else must decide on it.".to_string())
    } else if decided_by_me {
        Some("You already decided on this proposal; another approver must add theirs.".into())
    } else {
        None
    };
    let term_hours = spec.term.hours();
    let evidence = insight::evidence_of(proposed);
    // The anomaly hold in the cycle that proposed it: purchases held back or kept.
    let holds: Vec<String> = proposed
        .and_then(|e| e.rationale.get("anomaly_holds"))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let body = html! {
        @if let Some((ok, text)) = &flash { (view::flash(*ok, text)) }
        p.lead { (a.describe()) " " (state_badge(p.state)) }
        div.grid {
            section aria-labelledby="what-h" {
                h2 #what-h { "What and where" }
                dl {
                    dt { "Operation" } dd { (serde_json::to_value(&a.operation).ok().and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string)).unwrap_or_else(|| "purchase".into())) }
                    dt { "Provider" } dd { (spec.provider) }
                    dt { "Account" } dd { (spec.account.as_deref().unwrap_or("the payer account")) }
                    dt { "Instrument" } dd { (spec.instrument) }
                    dt { "Term" } dd { (spec.term) " (" (term_hours) " hours)" }
                    dt { "Payment" } dd { (spec.payment) }
                    @if let Some(r) = &spec.region { dt { "Region" } dd { (r) } }
                    @if let Some(f) = &spec.family { dt { "Family" } dd { (f) } }
                    @if let Some(t) = &spec.instance_type { dt { "Instance type" } dd { (t) } }
                    dt { "Policy" } dd { (p.policy) }
                    dt { "Proposed by" } dd { (p.proposer) " at " (utc(p.created_at)) }
                    dt { "Open until" } dd { (utc(p.expires_at)) }
                }
            }
            section aria-labelledby="money-h" {
                h2 #money-h { "Money" }
                dl {
                    dt { "Cost per hour (amortized, approved ceiling)" } dd { (usd(a.hourly_cost)) }
                    dt { "Upfront (approved ceiling)" } dd { (usd(a.upfront)) }
                    dt { "Total over the term" } dd { (usd(term_total(a))) }
                    dt { "Expected savings against on demand" } dd { (usd(a.expected_savings)) }
                    dt { "Expected utilization" } dd { (a.expected_utilization.map_or("not computed".to_string(), pct)) }
                }
                @if !a.summary.is_empty() { p { strong { "Why: " } (a.summary) } }
            }
        }
        (insight::evidence_section(evidence.as_ref(), term_hours))
        @if !holds.is_empty() {
            section aria-labelledby="hold-h" {
                h2 #hold-h { "Anomaly hold" }
                p { "When this was proposed, a cost anomaly was open on usage its plan could cover:" }
                ul { @for h in &holds { li { (h) } } }
            }
        }
        section aria-labelledby="checks-h" {
            h2 #checks-h { "Policy checks" }
            @if let Some(v) = &verdict { p { "Verdict when proposed: " strong { (v) } "; " (p.approvals_needed) " distinct approver(s) needed." } }
            @if checks.is_empty() {
                p.muted { "No policy checks were recorded with this proposal." }
            } @else {
                div.table-wrap {
                    table {
                        caption { "Every rule the policy judged, as recorded when it was proposed" }
                        thead { tr { th scope="col" { "Rule" } th scope="col" { "Result" } th scope="col" { "Detail" } } }
                        tbody {
                            @for c in &checks {
                                tr {
                                    th scope="row" { code { (c.rule.as_str()) } }
                                    td { @if c.passed { span.ok { "passed" } } @else { span.bad { "failed" } } }
                                    td { (c.detail) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="decisions-h" {
            h2 #decisions-h { "Approvals" }
            p { (p.approvals()) " of " (p.approvals_needed) " approval(s). Approvals bind to the action digest " code.digest { (digest) } "." }
            @if !p.decisions.is_empty() {
                div.table-wrap {
                    table {
                        caption { "Decisions, oldest first" }
                        thead { tr { th scope="col" { "Who" } th scope="col" { "Decision" } th scope="col" { "When" } th scope="col" { "Reason" } th scope="col" { "Digest approved" } } }
                        tbody {
                            @for d in &p.decisions {
                                tr {
                                    th scope="row" { (d.actor) }
                                    td { @if d.approve { "approved" } @else { "rejected" } }
                                    td { (utc(d.at)) }
                                    td { (d.reason.as_deref().unwrap_or("")) }
                                    td {
                                        @match &d.action_digest {
                                            Some(x) if *x == digest => { span.ok { "this action" } }
                                            Some(_) => { span.bad { "another action" } }
                                            None => { "not recorded" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(outcome) = &p.outcome { p { strong { "Outcome: " } (outcome) } }
            @if let Some(c) = &p.commitment_id { p { strong { "Commitment: " } (c) } }
        }
        @if can_decide {
            section.decide aria-labelledby="decide-h" {
                h2 #decide-h { "Decide" }
                div.grid {
                    form method="post" action=(format!("/ui/proposals/{}/approve", url_encode(&p.id))) {
                        input type="hidden" name="csrf" value=(session.csrf);
                        p {
                            label for="approve-reason" { "Reason (optional)" }
                            textarea #approve-reason name="reason" rows="2" maxlength="2000" {}
                        }
                        p { button #approve .primary type="submit" { "Approve " (a.describe()) } }
                    }
                    form method="post" action=(format!("/ui/proposals/{}/reject", url_encode(&p.id))) {
                        input type="hidden" name="csrf" value=(session.csrf);
                        p {
                            label for="reject-reason" { "Reason (required)" }
                            textarea #reject-reason name="reason" rows="2" maxlength="2000" required {}
                        }
                        p { button #reject type="submit" { "Reject" } }
                    }
                }
            }
        } @else if let Some(text) = &why_not {
            p.muted { (text) }
        }
        section aria-labelledby="trail-h" {
            h2 #trail-h { "Audit trail" }
            (event_table(&events.iter().collect::<Vec<_>>(), "Every audit event about this proposal"))
        }
    };
    html_response(
        status,
        view::page(
            &format!("Proposal {}", p.id),
            Some(session),
            Some(Nav::Proposals),
            body,
        ),
    )
}

pub(super) async fn approve(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    decision(s, headers, id, request, true).await
}

pub(super) async fn reject(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    decision(s, headers, id, request, false).await
}

fn decide_status(e: &DecideError) -> StatusCode {
    match e {
        DecideError::Role { .. } => StatusCode::FORBIDDEN,
        DecideError::Proposal(p) => match p {
            ProposalError::NotFound(_) => StatusCode::NOT_FOUND,
            ProposalError::NotOpen { .. }
            | ProposalError::Expired { .. }
            | ProposalError::AlreadyDecided { .. } => StatusCode::CONFLICT,
            ProposalError::SelfApproval { .. } => StatusCode::FORBIDDEN,
            ProposalError::NoReason(_) => StatusCode::BAD_REQUEST,
            ProposalError::Database { .. }
            | ProposalError::Corrupt { .. }
            | ProposalError::Audit(_)
            | ProposalError::Fenced(_) => StatusCode::INTERNAL_SERVER_ERROR,
        },
    }
}

/// A decision form: the session first, then the body (bounded), then the CSRF token, then the
/// shared decision path. A refusal shows the proposal again with the reason.
async fn decision(
    s: AppState,
    headers: HeaderMap,
    id: String,
    request: Request,
    approve: bool,
) -> Response {
    let session = match current(&s, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let form = match read_form(&s, Some(&session), &headers, request.into_body()).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Some(refused) = csrf_refusal(&session, &form) {
        return refused;
    }
    let reason = form
        .get("reason")
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    let verdict = if approve {
        Verdict::Approve { reason }
    } else {
        Verdict::Reject {
            reason: reason.unwrap_or_default(),
        }
    };
    match decide(&s, &session.principal, &id, verdict, Utc::now()).await {
        Ok(p) => {
            let done = if approve { "approved" } else { "rejected" };
            let location = format!("/ui/proposals/{}?done={done}", url_encode(&p.id));
            let mut r = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Err(e) => {
            let status = decide_status(&e);
            if matches!(&e, DecideError::Proposal(ProposalError::NotFound(_))) {
                return problem(status, Some(&session), &e.to_string());
            }
            let text = format!("Refused, nothing changed: {e}");
            proposal_view(&s, &session, &id, status, Some((false, text))).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Audit

fn event_table(events: &[&crate::audit::Event], caption: &str) -> Markup {
    html! {
        @if events.is_empty() {
            p.muted { "No event." }
        } @else {
            div.table-wrap {
                table {
                    caption { (caption) }
                    thead { tr { th scope="col" { "#" } th scope="col" { "Time" } th scope="col" { "Kind" } th scope="col" { "Actor" } th scope="col" { "Subject" } th scope="col" { "Amount" } } }
                    tbody {
                        @for e in events {
                            tr {
                                th scope="row" { a href=(format!("/ui/audit/{}", e.id)) { (e.id) } }
                                td { (utc(e.time)) }
                                td { code { (e.kind().as_str()) } }
                                td { (e.actor) }
                                td {
                                    @if e.subject.starts_with("p-") {
                                        a href=(format!("/ui/proposals/{}", url_encode(&e.subject))) { (e.subject) }
                                    } @else { (e.subject) }
                                }
                                td.num { @if let Some(a) = &e.amount { @if a.currency == "USD" { (usd(a.money)) } @else { (a.money) " " (a.currency) } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize, Default)]
pub(super) struct AuditQuery {
    kind: Option<String>,
    actor: Option<String>,
    since: Option<String>,
    until: Option<String>,
    format: Option<String>,
    /// Only events before this one (the next page of older events).
    before: Option<String>,
}

/// A `YYYY-MM-DD` date as the start of that UTC day.
fn day(field: &str, text: &str) -> Result<DateTime<Utc>, String> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{field} '{text}' is not a date: expected YYYY-MM-DD"))
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|t| !t.is_empty())
}

/// The filter a query asks for: kind, and the dates `[since, until]` (both whole UTC days).
fn audit_filter(q: &AuditQuery) -> Result<EventFilter, String> {
    let kind = match non_empty(&q.kind) {
        None | Some("all") => None,
        Some(k) => Some(EventKind::parse(k).ok_or_else(|| format!("unknown event kind '{k}'"))?),
    };
    let since = non_empty(&q.since).map(|t| day("since", t)).transpose()?;
    let until = non_empty(&q.until)
        .map(|t| {
            day("until", t)?
                .checked_add_signed(Duration::days(1))
                .ok_or_else(|| format!("until '{t}' is out of range"))
        })
        .transpose()?;
    if let (Some(a), Some(b)) = (since, until) {
        if a >= b {
            return Err("'since' must not be after 'until'".into());
        }
    }
    Ok(EventFilter { kind, since, until })
}

/// The audit page with the same filters, before event `before` (None: the newest).
fn audit_link(q: &AuditQuery, before: Option<i64>) -> String {
    let mut f = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("kind", &q.kind),
        ("actor", &q.actor),
        ("since", &q.since),
        ("until", &q.until),
    ] {
        if let Some(v) = non_empty(v) {
            f.append_pair(k, v);
        }
    }
    if let Some(b) = before {
        f.append_pair("before", &b.to_string());
    }
    format!("/ui/audit?{}", f.finish())
}

pub(super) async fn audit(
    State(s): State<AppState>,
    LoggedIn(session): LoggedIn,
    Query(q): Query<AuditQuery>,
) -> Response {
    let filter = match audit_filter(&q) {
        Ok(f) => f,
        Err(e) => return bad_request(&session, &e),
    };
    let actor = non_empty(&q.actor).map(str::to_string);
    let before = match non_empty(&q.before).map(|t| (t, t.parse::<i64>())) {
        None => None,
        Some((_, Ok(n))) if n > 0 => Some(n),
        Some((t, _)) => {
            return bad_request(&session, &format!("before '{t}' is not an event number"))
        }
    };
    let events = s
        .audit
        .page(&filter, actor.as_deref(), before, MAX_ROWS as u32)
        .await;
    let events = match events {
        Ok(e) => e,
        Err(e) => return unavailable(&session, "reading the audit log", e),
    };
    let newest_first: Vec<_> = events.iter().rev().collect();
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/ui/audit" {
            label for="kind" { "Kind" }
            select #kind name="kind" {
                option value="all" selected[filter.kind.is_none()] { "all" }
                @for k in EventKind::ALL {
                    option value=(k.as_str()) selected[filter.kind == Some(*k)] { (k.as_str()) }
                }
            }
            label for="actor" { "Actor" }
            input #actor type="text" name="actor" value=(v(&q.actor)) size="16";
            label for="since" { "From (UTC day)" }
            input #since type="date" name="since" value=(v(&q.since));
            label for="until" { "To (UTC day, included)" }
            input #until type="date" name="until" value=(v(&q.until));
            button type="submit" { "Filter" }
        }
        div.grid {
            section aria-labelledby="verify-h" {
                h2 #verify-h { "Verify the chain" }
                form method="get" action="/ui/audit/verify" {
                    p { "Recomputes every event's hash and link, from the first event to the last." }
                    button #verify type="submit" { "Run verify" }
                }
            }
            section aria-labelledby="export-h" {
                h2 #export-h { "Export" }
                form method="get" action="/ui/audit/export" {
                    input type="hidden" name="kind" value=(filter.kind.map_or("all", |k| k.as_str()));
                    input type="hidden" name="since" value=(v(&q.since));
                    input type="hidden" name="until" value=(v(&q.until));
                    fieldset {
                        legend { "The filtered events (kind and dates above) as" }
                        label { input type="radio" name="format" value="csv" checked; " CSV" }
                        label { input type="radio" name="format" value="jsonl"; " JSONL" }
                    }
                    button #export type="submit" { "Download" }
                }
            }
        }
        (event_table(&newest_first, &format!("{} event(s), newest first{}{}", newest_first.len(), before.map_or(String::new(), |b| format!(", before event {b}")), if newest_first.len() == MAX_ROWS { format!(" (the last {MAX_ROWS} matching)") } else { String::new() })))
        @if before.is_some() || newest_first.len() == MAX_ROWS {
            nav.pages aria-label="Pages" {
                @if before.is_some() { a #newest href=(audit_link(&q, None)) { "← Newest" } " " }
                @if let (true, Some(oldest)) = (newest_first.len() == MAX_ROWS, newest_first.last()) {
                    a #older rel="next" href=(audit_link(&q, Some(oldest.id))) { "Older events →" }
                }
            }
        }
    };
    ok_page(&session, "Audit log", Nav::Audit, body)
}

pub(super) async fn event(
    State(s): State<AppState>,
    LoggedIn(session): LoggedIn,
    Path(id): Path<String>,
) -> Response {
    let Ok(n) = id.trim().parse::<i64>() else {
        return bad_request(&session, &format!("'{id}' is not an event number"));
    };
    let e = match s.audit.get(n).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            return problem(
                StatusCode::NOT_FOUND,
                Some(&session),
                &format!("audit event {n} does not exist"),
            )
        }
        Err(e) => return unavailable(&session, "reading the audit log", e),
    };
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let payload = e.body.payload().unwrap_or(serde_json::Value::Null);
    let body = html! {
        dl {
            dt { "Time" } dd { (utc(e.time)) " (" (crate::audit::canonical::format_time(e.time)) ")" }
            dt { "Kind" } dd { code { (e.kind().as_str()) } }
            dt { "Actor" } dd { (e.actor) }
            dt { "Subject" } dd {
                @if e.subject.starts_with("p-") {
                    a href=(format!("/ui/proposals/{}", url_encode(&e.subject))) { (e.subject) }
                } @else { (e.subject) }
            }
            @if let Some(a) = &e.amount { dt { "Amount" } dd { (a.money) " " (a.currency) } }
            dt { "Hash" } dd { code.digest { (e.hash) } }
            dt { "Previous hash" } dd { code.digest { (e.prev_hash) } }
        }
        h2 { "Facts" }
        pre { (pretty(&payload)) }
        h2 { "Rationale" }
        pre { (pretty(&e.rationale)) }
        p {
            @if n > 1 { a href=(format!("/ui/audit/{}", n - 1)) { "Previous event" } " · " }
            a href=(format!("/ui/audit/{}", n + 1)) { "Next event" }
        }
    };
    ok_page(&session, &format!("Audit event {n}"), Nav::Audit, body)
}

pub(super) async fn verify(State(s): State<AppState>, LoggedIn(session): LoggedIn) -> Response {
    let report = match s.audit.verify().await {
        Ok(r) => r,
        Err(e) => return unavailable(&session, "verifying the audit log", e),
    };
    let body = html! {
        @match &report.first_bad {
            None => {
                p.flash.ok role="status" #verdict {
                    "Intact: " (report.verified) " event(s) verified, every hash and link matches."
                }
                @if let Some((id, hash)) = &report.head {
                    p { "Head: event " a href=(format!("/ui/audit/{id}")) { (id) } ", hash " code.digest { (hash) } ". Record it outside the database to detect a later truncation." }
                }
            }
            Some(bad) => {
                p.flash.bad role="alert" #verdict { "BROKEN: " (bad.to_string()) }
                p { (report.verified) " event(s) before it verified." }
            }
        }
        p.muted { "Checked at " (utc(Utc::now())) ". Signed checkpoints outside the database are checked by " code { "commitd audit verify --checkpoints" } ", not here." }
        p { a href="/ui/audit" { "Back to the audit log" } }
    };
    ok_page(&session, "Audit verification", Nav::Audit, body)
}

pub(super) async fn export(
    State(s): State<AppState>,
    LoggedIn(session): LoggedIn,
    Query(q): Query<AuditQuery>,
) -> Response {
    let filter = match audit_filter(&q) {
        Ok(f) => f,
        Err(e) => return bad_request(&session, &e),
    };
    let (format, ext, mime) = match non_empty(&q.format) {
        Some("csv") | None => (ExportFormat::Csv, "csv", "text/csv; charset=utf-8"),
        Some("jsonl") => (ExportFormat::Jsonl, "jsonl", "application/x-ndjson"),
        Some(other) => {
            return bad_request(&session, &format!("unknown format '{other}': csv or jsonl"))
        }
    };
    let mut buf: Vec<u8> = Vec::new();
    if let Err(e) = s.audit.export(&filter, format, &mut buf).await {
        return unavailable(&session, "exporting the audit log", e);
    }
    let range = |d: Option<DateTime<Utc>>| {
        d.map_or("all".to_string(), |d| d.format("%Y-%m-%d").to_string())
    };
    let name = format!(
        "commitd-audit-{}-{}.{ext}",
        range(filter.since),
        range(filter.until.map(|u| u - Duration::days(1)))
    );
    (
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        buf,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Finance

#[derive(Deserialize, Default)]
pub(super) struct FinanceQuery {
    month: Option<String>,
}

fn month_of(q: &FinanceQuery) -> Result<Month, String> {
    match non_empty(&q.month) {
        Some(m) => Month::parse(m).map_err(|e| e.to_string()),
        None => {
            let now = Utc::now();
            Ok(Month {
                year: now.year(),
                month: now.month(),
            })
        }
    }
}

/// The month the query names (this month by default) and its report, or the error page: what
/// the finance page and its CSV both start from.
async fn the_month(
    s: &AppState,
    session: &Session,
    q: &FinanceQuery,
) -> Result<(Month, report::MonthlyReport), Response> {
    let month = month_of(q).map_err(|e| bad_request(session, &e))?;
    let r = monthly(s, month)
        .await
        .map_err(|e| unavailable(session, "building the month's report", e))?;
    Ok((month, r))
}

async fn monthly(s: &AppState, month: Month) -> Result<report::MonthlyReport, String> {
    // Everything up to the end of the month: proposals and approvals of a purchase may be
    // older than the month, and earlier purchases make up the month's portfolio.
    let events = s
        .audit
        .list(
            &EventFilter {
                kind: None,
                since: None,
                until: Some(month.end()),
            },
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
    let Some(read) = s.console.bill.clone() else {
        return Ok(report::build(month, &events, None));
    };
    // Reading an export is blocking file work.
    let (source, commitments) = tokio::task::spawn_blocking(move || read(month))
        .await
        .map_err(|e| format!("reading the FOCUS bill: {e}"))??;
    let bill = report::MonthBill {
        source,
        commitments: &commitments,
    };
    Ok(report::build(month, &events, Some(&bill)))
}

pub(super) fn shift(m: Month, by: i32) -> Month {
    let index = m.year * 12 + m.month as i32 - 1 + by;
    Month {
        year: index.div_euclid(12),
        month: (index.rem_euclid(12) + 1) as u32,
    }
}

pub(super) async fn finance(
    State(s): State<AppState>,
    LoggedIn(session): LoggedIn,
    Query(q): Query<FinanceQuery>,
) -> Response {
    let (month, r) = match the_month(&s, &session, &q).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let mut by_instrument: BTreeMap<String, Money> = BTreeMap::new();
    for b in &r.bought {
        *by_instrument
            .entry(format!("{} {}", b.provider, b.instrument))
            .or_insert(Money::ZERO) += b.term_total;
    }
    let bars: Vec<Bar> = by_instrument
        .iter()
        .map(|(k, m)| Bar {
            label: k.clone(),
            value: m.micros() as f64,
            shown: view::usd_text(*m),
        })
        .collect();
    let (prev, next) = (shift(month, -1), shift(month, 1));
    let body = html! {
        form.filters method="get" action="/ui/finance" {
            label for="month" { "Month (UTC)" }
            input #month type="month" name="month" value=(month.to_string()) pattern="[0-9]{4}-[0-9]{2}";
            button type="submit" { "Show" }
            a href=(format!("/ui/finance?month={prev}")) { "← " (prev) }
            a href=(format!("/ui/finance?month={next}")) { (next) " →" }
            a.button #csv href=(format!("/ui/finance/report.csv?month={month}")) download { "Download CSV" }
        }
        p { "From " (utc(r.from)) " to " (utc(r.until)) ", from the audit log alone." }
        div.grid {
            section aria-labelledby="bought-h" {
                h2 #bought-h { "Committed in the month" }
                dl {
                    dt { "Purchases" } dd { (r.totals.purchases) }
                    dt { "Hourly commitment added" } dd { (usd(r.totals.hourly_cost)) " / h" }
                    dt { "Upfront paid" } dd { (usd(r.totals.upfront)) }
                    dt { "Total over the terms" } dd { (usd(r.totals.term_total)) }
                    dt { "Expected savings (over the terms)" } dd { (usd(r.totals.expected_savings)) }
                }
            }
            section aria-labelledby="portfolio-h" {
                h2 #portfolio-h { "Portfolio active in the month" }
                dl {
                    dt { "Commitments" } dd { (r.portfolio.commitments) }
                    dt { "Amortized cost for the month" } dd { (usd(r.portfolio.amortized_cost)) }
                    dt { "Expected savings, pro-rated" } dd { (usd(r.portfolio.expected_savings)) }
                    @if r.portfolio.without_dates > 0 { dt { "Without dates (not counted)" } dd { (r.portfolio.without_dates) } }
                }
            }
        }
        (bar_chart("bought", "Committed in the month by provider and instrument (total over the term)", &bars))
        @if !r.bought.is_empty() {
            div.table-wrap {
                table {
                    caption { "Purchases executed in the month" }
                    thead { tr {
                        th scope="col" { "Executed" } th scope="col" { "Proposal" } th scope="col" { "What" }
                        th scope="col" { "Cost per hour" } th scope="col" { "Upfront" } th scope="col" { "Total over term" }
                        th scope="col" { "Expected savings" } th scope="col" { "Approved by" } th scope="col" { "Commitment" }
                    } }
                    tbody {
                        @for b in &r.bought {
                            tr {
                                td { (utc(b.executed_at)) }
                                th scope="row" { a href=(format!("/ui/proposals/{}", url_encode(&b.proposal_id))) { (b.proposal_id) } }
                                td { (b.provider) " " (b.instrument) " " (b.term.map_or(String::new(), |t| t.to_string())) " " (b.payment_option) }
                                td.num { (usd(b.hourly_cost)) }
                                td.num { (usd(b.upfront)) }
                                td.num { (usd(b.term_total)) }
                                td.num { (usd(b.expected_savings)) }
                                td { (b.approved_by.join(", ")) }
                                td { (b.commitment_id) }
                            }
                        }
                    }
                }
            }
        }
        @if !r.given_up.is_empty() {
            div.table-wrap {
                table {
                    caption { "Returned or listed in the month" }
                    thead { tr { th scope="col" { "Executed" } th scope="col" { "What" } th scope="col" { "Cost per hour removed" } th scope="col" { "Approved by" } } }
                    tbody {
                        @for g in &r.given_up {
                            tr {
                                td { (utc(g.executed_at)) }
                                th scope="row" { (g.what) }
                                td.num { @if let Some(m) = g.hourly_cost_removed { (usd(m)) } }
                                td { (g.approved_by.join(", ")) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="realized-h" {
            h2 #realized-h { "Realized against expected savings" }
            @match &r.realized {
                Some(x) => { (realized_section(x)) }
                None => { p.muted { "Realized savings are " (r.realized_savings_note) "." } }
            }
        }
    };
    ok_page(&session, &format!("Finance {month}"), Nav::Finance, body)
}

/// Realized savings from the month's bill, next to what commitd expected of its commitments.
fn realized_section(x: &report::Realized) -> Markup {
    let bars: Vec<Bar> = [
        ("commitd's, expected", x.commitd.expected_savings),
        ("commitd's, realized", x.commitd.realized_savings),
        ("every commitment, realized", x.portfolio.realized_savings),
    ]
    .iter()
    .map(|(label, m)| Bar {
        label: (*label).to_string(),
        value: m.micros().max(0) as f64,
        shown: view::usd_text(*m),
    })
    .collect();
    html! {
        p { "From the FOCUS bill " code { (x.source) } ": the on-demand equivalent of the usage each commitment covered, less its cost, for the month's hours." }
        dl {
            dt { "commitd's commitments: realized" } dd #realized-commitd { (usd(x.commitd.realized_savings)) " over " (x.commitd.commitments) " commitment(s)" }
            dt { "commitd's commitments: expected, pro-rated to the hours billed" } dd #expected-commitd { (usd(x.commitd.expected_savings)) }
            dt { "Every commitment in the bill: realized" } dd #realized-all { (usd(x.portfolio.realized_savings)) " over " (x.portfolio.commitments) " commitment(s)" }
        }
        (bar_chart("realized", "Realized against expected savings in the month", &bars))
        @if !x.commitments.is_empty() {
            div.table-wrap {
                table {
                    caption { "Commitments in the month's bill" }
                    thead { tr {
                        th scope="col" { "Commitment" } th scope="col" { "Bought by commitd" } th scope="col" { "Hours billed" }
                        th scope="col" { "Covered (on-demand equivalent)" } th scope="col" { "Cost" }
                        th scope="col" { "Realized" } th scope="col" { "Expected" }
                    } }
                    tbody {
                        @for c in &x.commitments {
                            tr {
                                th scope="row" { code { (c.bill_id) } }
                                td { @if c.bought_by_commitd { "yes" } @else { "no" } }
                                td.num { (c.billed_hours) }
                                td.num { (usd(c.covered_ode)) }
                                td.num { (usd(c.cost)) }
                                td.num { (usd(c.realized_savings)) }
                                td.num { @if let Some(e) = c.expected_savings { (usd(e)) } @else { "-" } }
                            }
                        }
                    }
                }
            }
        }
        @if !x.not_billed.is_empty() {
            p { "Active in the month but not in the bill (not billed yet, or under an id the report cannot match): " (x.not_billed.join(", ")) }
        }
    }
}

pub(super) async fn finance_csv(
    State(s): State<AppState>,
    LoggedIn(session): LoggedIn,
    Query(q): Query<FinanceQuery>,
) -> Response {
    let (month, r) = match the_month(&s, &session, &q).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let mut buf: Vec<u8> = Vec::new();
    if let Err(e) = r.write_csv(&mut buf) {
        return unavailable(&session, "writing the CSV", e);
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"commitd-report-{month}.csv\""),
            ),
        ],
        buf,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_shift_across_years() {
        let m = |y, mo| Month { year: y, month: mo };
        assert_eq!(shift(m(2026, 1), -1), m(2025, 12));
        assert_eq!(shift(m(2026, 12), 1), m(2027, 1));
        assert_eq!(shift(m(2026, 6), 0), m(2026, 6));
    }

    #[test]
    fn audit_filters_refuse_bad_input() {
        let q = |kind: &str, since: &str, until: &str| AuditQuery {
            kind: Some(kind.into()),
            since: Some(since.into()),
            until: Some(until.into()),
            ..AuditQuery::default()
        };
        let f = audit_filter(&q("approved", "2026-10-01", "2026-10-31")).unwrap();
        assert_eq!(f.kind, Some(EventKind::Approved));
        assert_eq!(f.since.unwrap().to_rfc3339(), "2026-10-01T00:00:00+00:00");
        // The end day is included.
        assert_eq!(f.until.unwrap().to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert!(audit_filter(&q("nope", "", ""))
            .unwrap_err()
            .contains("nope"));
        assert!(audit_filter(&q("all", "2026-13-01", ""))
            .unwrap_err()
            .contains("since"));
        assert!(audit_filter(&q("all", "2026-10-02", "2026-10-01")).is_err());
        // The last day chrono knows: refused, not a panic.
        let last = NaiveDate::MAX.format("%Y-%m-%d").to_string();
        assert!(audit_filter(&q("all", "", &last)).is_err());
        assert_eq!(
            audit_filter(&q("all", "", "")).unwrap(),
            EventFilter::default()
        );
    }
}
