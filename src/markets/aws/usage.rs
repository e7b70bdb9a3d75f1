//! Usage from Cost Explorer (GetCostAndUsage), for small accounts without FOCUS exports:
//! HOURLY granularity for the last 14 days (all Cost Explorer keeps at that grain, when hourly
//! data is enabled) and DAILY beyond, EC2 compute grouped by instance type and region.
//!
//! Costs are exact [`Money`]; usage quantities stay decimals as Cost Explorer wrote them.
//!
//! What is asked for: instance usage that a commitment could cover, i.e. Linux/UNIX, shared
//! tenancy, not Spot, and only the usage records (on demand, covered by a reservation, covered by
//! a savings plan), never the RI fees, whose quantity would count reserved hours a second time.
//! Cost Explorer allows two group-by keys and the pair is instance type and region, so
//! the operating system and tenancy come from the filter: a Windows or dedicated fleet needs
//! FOCUS exports. [`usage_model`] turns the rows into the usage model the planners read.

use super::client::AwsClients;
use super::convert;
use super::error::{from_sdk, AwsError, Called};
use crate::domain::{Money, UsageModel};
use chrono::{DateTime, Duration as ChronoDuration, DurationRound, NaiveDate, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;

/// How far back Cost Explorer keeps hourly data.
pub const HOURLY_DAYS: i64 = 14;

/// The service Cost Explorer names EC2 instance usage by.
pub const EC2_COMPUTE_SERVICE: &str = "Amazon Elastic Compute Cloud - Compute";

/// Record types that are instance usage: on demand, covered by a reservation, covered by a
/// savings plan. RI fees, savings plan fees and negations, credits and taxes are left out.
pub const USAGE_RECORD_TYPES: [&str; 3] = ["Usage", "DiscountedUsage", "SavingsPlanCoveredUsage"];

/// The platform and tenancy of the usage asked for (what the planned commitments price).
pub const PLATFORM: &str = "Linux/UNIX";
pub const TENANCY: &str = "Shared";

/// Spot usage can never be covered by a commitment.
pub const SPOT_PURCHASE_TYPE: &str = "Spot Instances";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Granularity {
    Hourly,
    Daily,
}

impl Granularity {
    fn api(self) -> aws_sdk_costexplorer::types::Granularity {
        match self {
            Granularity::Hourly => aws_sdk_costexplorer::types::Granularity::Hourly,
            Granularity::Daily => aws_sdk_costexplorer::types::Granularity::Daily,
        }
    }

    /// Hours in one period.
    pub fn hours(self) -> i64 {
        match self {
            Granularity::Hourly => 1,
            Granularity::Daily => 24,
        }
    }

    /// The period's name, for messages.
    fn period(self) -> &'static str {
        match self {
            Granularity::Hourly => "hour",
            Granularity::Daily => "day",
        }
    }

    /// Cost Explorer wants "2025-03-01T00:00:00Z" for hourly and "2025-03-01" for daily.
    fn format(self, t: DateTime<Utc>) -> String {
        match self {
            Granularity::Hourly => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            Granularity::Daily => t.format("%Y-%m-%d").to_string(),
        }
    }
}

/// One time window to query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub granularity: Granularity,
}

/// The windows covering `days` days back from `now`: hourly for the newest 14 days (from the
/// start of the hour), daily before (whole UTC days, ending where the hourly part starts).
pub fn usage_windows(now: DateTime<Utc>, days: i64) -> Vec<Window> {
    let end = now.duration_trunc(ChronoDuration::hours(1)).unwrap_or(now);
    let hourly_start = (end - ChronoDuration::days(HOURLY_DAYS.min(days)))
        .duration_trunc(ChronoDuration::days(1))
        .unwrap_or(end);
    let mut windows = Vec::new();
    if days > HOURLY_DAYS {
        let daily_start = hourly_start - ChronoDuration::days(days - HOURLY_DAYS);
        windows.push(Window {
            start: daily_start,
            end: hourly_start,
            granularity: Granularity::Daily,
        });
    }
    if end > hourly_start {
        windows.push(Window {
            start: hourly_start,
            end,
            granularity: Granularity::Hourly,
        });
    }
    windows
}

/// Cost and usage of one instance type in one region over one period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CostRow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub granularity: Granularity,
    pub instance_type: String,
    pub region: String,
    pub cost: Money,
    /// Instance-hours.
    pub usage_quantity: Decimal,
    /// Cost Explorer marks the newest periods as estimated: they will still change.
    pub estimated: bool,
}

const OP: &str = "GetCostAndUsage";

fn parse_period(text: &str) -> Option<DateTime<Utc>> {
    convert::datetime_from_str(text).or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
    })
}

/// Maps one page of results.
pub fn cost_rows(
    out: &aws_sdk_costexplorer::operation::get_cost_and_usage::GetCostAndUsageOutput,
    granularity: Granularity,
    request_id: Option<&str>,
) -> Result<Vec<CostRow>, AwsError> {
    let mut rows = Vec::new();
    for (i, result) in out.results_by_time().iter().enumerate() {
        let field = |name: &str| format!("ResultsByTime[{i}].{name}");
        let period = result
            .time_period()
            .ok_or_else(|| AwsError::bad(OP, &field("TimePeriod"), "missing", request_id))?;
        let start = parse_period(period.start()).ok_or_else(|| {
            AwsError::bad(
                OP,
                &field("TimePeriod.Start"),
                format!("'{}' is not a date", period.start()),
                request_id,
            )
        })?;
        let end = parse_period(period.end()).ok_or_else(|| {
            AwsError::bad(
                OP,
                &field("TimePeriod.End"),
                format!("'{}' is not a date", period.end()),
                request_id,
            )
        })?;
        for (j, group) in result.groups().iter().enumerate() {
            let keys = group.keys();
            let (Some(instance_type), Some(region)) = (keys.first(), keys.get(1)) else {
                return Err(AwsError::bad(
                    OP,
                    &field(&format!("Groups[{j}].Keys")),
                    format!("expected [instance type, region], got {keys:?}"),
                    request_id,
                ));
            };
            let metric = |name: &str| -> Result<Decimal, AwsError> {
                let amount = group
                    .metrics()
                    .and_then(|m| m.get(name))
                    .and_then(|v| v.amount())
                    .unwrap_or("0");
                convert::decimal_from_str(amount).ok_or_else(|| {
                    AwsError::bad(
                        OP,
                        &field(&format!("Groups[{j}].Metrics.{name}.Amount")),
                        format!("'{amount}' is not a decimal"),
                        request_id,
                    )
                })
            };
            let cost = metric("UnblendedCost")?;
            rows.push(CostRow {
                start,
                end,
                granularity,
                instance_type: instance_type.clone(),
                region: region.clone(),
                cost: Money::from_decimal(cost).ok_or_else(|| {
                    AwsError::bad(
                        OP,
                        &field(&format!("Groups[{j}].Metrics.UnblendedCost.Amount")),
                        "out of range",
                        request_id,
                    )
                })?,
                usage_quantity: metric("UsageQuantity")?,
                estimated: result.estimated(),
            });
        }
    }
    Ok(rows)
}

impl AwsClients {
    /// EC2 compute cost and usage for one window, grouped by instance type and region.
    pub async fn cost_and_usage(&self, window: Window) -> Result<Called<Vec<CostRow>>, AwsError> {
        use aws_sdk_costexplorer::types::{
            Dimension, DimensionValues, Expression, GroupDefinition, GroupDefinitionType,
        };
        let period = aws_sdk_costexplorer::types::DateInterval::builder()
            .start(window.granularity.format(window.start))
            .end(window.granularity.format(window.end))
            .build()
            .map_err(|e| AwsError::invalid(OP, e.to_string()))?;
        let group = |key: &str| {
            GroupDefinition::builder()
                .r#type(GroupDefinitionType::Dimension)
                .key(key)
                .build()
        };
        let is = |key: Dimension, values: &[&str]| {
            Expression::builder()
                .dimensions(
                    DimensionValues::builder()
                        .key(key)
                        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
                        .build(),
                )
                .build()
        };
        let filter = Expression::builder()
            .and(is(Dimension::Service, &[EC2_COMPUTE_SERVICE]))
            .and(is(Dimension::RecordType, &USAGE_RECORD_TYPES))
            .and(is(Dimension::Platform, &[PLATFORM]))
            .and(is(Dimension::Tenancy, &[TENANCY]))
            .and(
                Expression::builder()
                    .not(is(Dimension::PurchaseType, &[SPOT_PURCHASE_TYPE]))
                    .build(),
            )
            .build();
        let mut rows = Vec::new();
        let mut request_ids = Vec::new();
        let mut next: Option<String> = None;
        for _page in 0..1000 {
            let out = self
                .cost_explorer
                .get_cost_and_usage()
                .time_period(period.clone())
                .granularity(window.granularity.api())
                .metrics("UnblendedCost")
                .metrics("UsageQuantity")
                .group_by(group("INSTANCE_TYPE"))
                .group_by(group("REGION"))
                .filter(filter.clone())
                .set_next_page_token(next.take())
                .send()
                .await
                .map_err(|e| from_sdk(OP, self.deadline, e))?;
            let rid =
                aws_sdk_costexplorer::operation::RequestId::request_id(&out).map(str::to_string);
            rows.extend(cost_rows(&out, window.granularity, rid.as_deref())?);
            request_ids.extend(rid);
            match out.next_page_token().filter(|t| !t.is_empty()) {
                Some(t) => next = Some(t.to_string()),
                None => break,
            }
        }
        Ok(Called {
            value: rows,
            request_ids,
        })
    }

    /// Hourly rows for the newest 14 days and daily rows before, `days` back from `now`. An account
    /// without hourly granularity (Cost Explorer rejects the hourly query with a
    /// ValidationException) gets the newest 14 days at daily grain too, whole days only.
    pub async fn usage_history(
        &self,
        now: DateTime<Utc>,
        days: i64,
    ) -> Result<Called<Vec<CostRow>>, AwsError> {
        let mut all = Called {
            value: Vec::new(),
            request_ids: Vec::new(),
        };
        for window in usage_windows(now, days) {
            let part = match self.cost_and_usage(window).await {
                // Hourly data is opt-in (and kept 14 days): without it Cost Explorer rejects
                // the hourly query as invalid. The same window at daily grain (whole days, so
                // today's partial day is left out) still gives the planner the usage.
                Err(AwsError::Rejected { code, message, .. })
                    if window.granularity == Granularity::Hourly
                        && code == "ValidationException" =>
                {
                    tracing::warn!(%message, "Cost Explorer refused hourly granularity; reading the last 14 days daily");
                    let end = window
                        .end
                        .duration_trunc(ChronoDuration::days(1))
                        .unwrap_or(window.end);
                    if end <= window.start {
                        continue;
                    }
                    self.cost_and_usage(Window {
                        start: window.start,
                        end,
                        granularity: Granularity::Daily,
                    })
                    .await?
                }
                other => other?,
            };
            all.value.extend(part.value);
            all.request_ids.extend(part.request_ids);
        }
        Ok(all)
    }
}

/// Cost Explorer's rows as the usage model the planners read, with notes for the audit log.
///
/// * Hourly rows fill their hour; a daily row is spread evenly over its 24 hours (Cost Explorer
///   keeps hourly data for 14 days only, so older history has no shape inside the day).
/// * The on-demand-equivalent cost is the quantity at the group's on-demand price, taken as the
///   highest cost per instance-hour any row shows: rows covered by a reservation cost less (their
///   usage records are free) and rows covered by a savings plan show the on-demand price, so the
///   highest is the on-demand price whenever any period had on-demand or plan-covered usage. A
///   group whose every row is covered by reservations gets no price here (the rate card's, when
///   it has one, is used by the planner).
/// * The newest hour with a row is the last observed one; later hours are unknown, not zero.
///
/// Errors name the row: a negative or non-finite quantity or cost, a period that does not start
/// and end on whole hours, or a row whose period is neither an hour nor a day.
pub fn usage_model(rows: &[CostRow]) -> Result<(UsageModel, Vec<String>), String> {
    use crate::domain::{GroupSeries, Hour, HourRange, IgnoredRows, Provider, UsageGroup};
    use std::collections::BTreeMap;

    let mut notes = Vec::new();
    let mut start: Option<Hour> = None;
    let mut end: Option<Hour> = None;
    for (i, r) in rows.iter().enumerate() {
        let (s, e) = (Hour::from_datetime(r.start), Hour::from_datetime(r.end));
        let whole = r.start.timestamp() % 3600 == 0 && r.end.timestamp() % 3600 == 0;
        if !whole || e.since(s) != r.granularity.hours() {
            return Err(format!(
                "Cost Explorer row {i} ({} {}): period {} to {} is not one {}",
                r.instance_type,
                r.region,
                r.start.to_rfc3339(),
                r.end.to_rfc3339(),
                r.granularity.period()
            ));
        }
        if r.usage_quantity < Decimal::ZERO || r.cost < Money::ZERO {
            return Err(format!(
                "Cost Explorer row {i} ({} {} at {}): negative usage quantity {} or cost {}",
                r.instance_type,
                r.region,
                r.start.to_rfc3339(),
                r.usage_quantity,
                r.cost
            ));
        }
        start = Some(start.map_or(s, |x| x.min(s)));
        end = Some(end.map_or(e, |x| x.max(e)));
    }
    let (Some(start), Some(end)) = (start, end) else {
        return Err("Cost Explorer returned no EC2 instance usage (Linux/UNIX, shared tenancy, not Spot) in the window".into());
    };
    let range = HourRange::new(start, end);
    let hours = range.len();

    // The on-demand price of each group: the highest cost per instance-hour of its rows.
    let key = |r: &CostRow| {
        UsageGroup::new(
            Provider::Aws,
            &r.region,
            &r.instance_type,
            None,
            "Linux",
            TENANCY,
        )
    };
    let mut price: BTreeMap<UsageGroup, Decimal> = BTreeMap::new();
    for r in rows {
        let entry = price.entry(key(r)).or_insert(Decimal::ZERO);
        if r.usage_quantity > Decimal::ZERO {
            let per_hour = r.cost.to_decimal() / r.usage_quantity;
            if per_hour > *entry {
                *entry = per_hour;
            }
        }
    }
    let mut series: BTreeMap<UsageGroup, GroupSeries> = BTreeMap::new();
    for r in rows {
        let group = key(r);
        let p = price.get(&group).copied().unwrap_or(Decimal::ZERO);
        let g = series
            .entry(group.clone())
            .or_insert_with(|| GroupSeries::empty(group, hours));
        let ode = Money::from_decimal((r.usage_quantity * p).round_dp(6)).ok_or_else(|| {
            format!(
                "Cost Explorer row ({} {} at {}): cost out of range",
                r.instance_type,
                r.region,
                r.start.to_rfc3339()
            )
        })?;
        g.total_ode = g
            .total_ode
            .checked_add(ode)
            .ok_or("Cost Explorer costs overflow")?;
        let first = Hour::from_datetime(r.start).since(start) as usize;
        let span = r.granularity.hours() as usize;
        let q = r.usage_quantity.to_f64().unwrap_or(0.0) / span as f64;
        let o = ode.to_f64() / span as f64;
        for h in first..(first + span).min(hours) {
            g.quantity[h] += q;
            g.ode[h] += o;
        }
    }
    for (group, p) in &price {
        if *p == Decimal::ZERO {
            notes.push(format!(
                "{group}: Cost Explorer shows no on-demand or plan-covered usage, so no on-demand price (the rate card's is used if it has one)"
            ));
        }
    }
    let groups: Vec<GroupSeries> = series.into_values().collect();
    let daily = rows
        .iter()
        .filter(|r| r.granularity == Granularity::Daily)
        .count();
    if daily == rows.len() {
        notes.push(
            "Cost Explorer gave daily rows only (hourly granularity off, or a short window): \
             no shape inside the day; enable hourly granularity in Cost Explorer's settings"
                .to_string(),
        );
    }
    let estimated = rows.iter().filter(|r| r.estimated).count();
    notes.push(format!(
        "Cost Explorer: {} rows ({daily} daily, spread evenly over their hours; {estimated} still estimated), {} usage groups, hours {} to {}",
        rows.len(),
        groups.len(),
        start.to_datetime().to_rfc3339(),
        end.to_datetime().to_rfc3339()
    ));
    Ok((
        UsageModel {
            range,
            currency: "USD".into(),
            groups,
            commitments: Vec::new(),
            last_observed: Some(end.plus(-1)),
            rows_read: rows.len() as u64,
            ignored: IgnoredRows::default(),
        },
        notes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn windows_are_hourly_for_fourteen_days_then_daily() {
        let w = usage_windows(at("2025-03-20T10:37:00Z"), 30);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].granularity, Granularity::Daily);
        assert_eq!(w[0].start, at("2025-02-18T00:00:00Z"));
        assert_eq!(w[0].end, at("2025-03-06T00:00:00Z"));
        assert_eq!(w[1].granularity, Granularity::Hourly);
        assert_eq!(w[1].start, w[0].end);
        assert_eq!(w[1].end, at("2025-03-20T10:00:00Z"));
        assert_eq!(Granularity::Hourly.format(w[1].end), "2025-03-20T10:00:00Z");
        assert_eq!(Granularity::Daily.format(w[0].start), "2025-02-18");
        let short = usage_windows(at("2025-03-20T10:37:00Z"), 3);
        assert_eq!(short.len(), 1);
        assert_eq!(short[0].start, at("2025-03-17T00:00:00Z"));
    }

    #[test]
    fn rows_keep_exact_cost_and_name_bad_fields() {
        use aws_sdk_costexplorer::types::{DateInterval, Group, MetricValue, ResultByTime};
        let out =
            aws_sdk_costexplorer::operation::get_cost_and_usage::GetCostAndUsageOutput::builder()
                .results_by_time(
                    ResultByTime::builder()
                        .time_period(
                            DateInterval::builder()
                                .start("2025-03-01")
                                .end("2025-03-02")
                                .build()
                                .unwrap(),
                        )
                        .groups(
                            Group::builder()
                                .keys("m5.large")
                                .keys("us-east-1")
                                .metrics(
                                    "UnblendedCost",
                                    MetricValue::builder().amount("2.304").unit("USD").build(),
                                )
                                .metrics(
                                    "UsageQuantity",
                                    MetricValue::builder().amount("24").unit("Hrs").build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build();
        let rows = cost_rows(&out, Granularity::Daily, None).unwrap();
        assert_eq!(rows[0].cost, Money::parse("2.304").unwrap());
        assert_eq!(rows[0].usage_quantity, Decimal::from(24));
        assert_eq!(rows[0].start, at("2025-03-01T00:00:00Z"));

        let bad =
            aws_sdk_costexplorer::operation::get_cost_and_usage::GetCostAndUsageOutput::builder()
                .results_by_time(
                    ResultByTime::builder()
                        .time_period(
                            DateInterval::builder()
                                .start("2025-03-01")
                                .end("2025-03-02")
                                .build()
                                .unwrap(),
                        )
                        .groups(
                            Group::builder()
                                .keys("m5.large")
                                .keys("us-east-1")
                                .metrics(
                                    "UnblendedCost",
                                    MetricValue::builder().amount("abc").build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build();
        let err = cost_rows(&bad, Granularity::Daily, Some("rid-1"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ResultsByTime[0].Groups[0].Metrics.UnblendedCost.Amount"),
            "{err}"
        );
    }
    fn row(start: &str, g: Granularity, t: &str, cost: &str, qty: &str) -> CostRow {
        let start = at(start);
        CostRow {
            start,
            end: start + ChronoDuration::hours(g.hours()),
            granularity: g,
            instance_type: t.into(),
            region: "eu-west-1".into(),
            cost: Money::parse(cost).unwrap(),
            usage_quantity: cost_qty(qty),
            estimated: false,
        }
    }

    fn cost_qty(q: &str) -> Decimal {
        q.parse().unwrap()
    }

    #[test]
    fn usage_model_spreads_days_prices_from_the_dearest_row_and_marks_the_last_hour() {
        let rows = vec![
            // A day fully covered by reservations: the usage records cost nothing.
            row(
                "2025-03-01T00:00:00Z",
                Granularity::Daily,
                "m5.large",
                "0",
                "48",
            ),
            // A day on demand: 24 h x 0.096.
            row(
                "2025-03-02T00:00:00Z",
                Granularity::Daily,
                "m5.large",
                "2.304",
                "24",
            ),
            row(
                "2025-03-03T00:00:00Z",
                Granularity::Hourly,
                "m5.large",
                "0.192",
                "2",
            ),
            // Only ever covered by reservations: no price.
            row(
                "2025-03-03T00:00:00Z",
                Granularity::Hourly,
                "c5.large",
                "0",
                "3",
            ),
        ];
        let (m, notes) = usage_model(&rows).unwrap();
        assert_eq!(m.range.len(), 49);
        assert_eq!(
            m.last_observed.unwrap().to_datetime(),
            at("2025-03-03T00:00:00Z")
        );
        let m5 = m
            .groups
            .iter()
            .find(|g| g.group.instance_type == "m5.large")
            .unwrap();
        assert_eq!(
            (m5.group.os.as_str(), m5.group.tenancy.as_str()),
            ("Linux", "Shared")
        );
        assert_eq!(m5.group.family, "m5");
        assert!((m5.quantity[0] - 2.0).abs() < 1e-12, "48 h over one day");
        assert!((m5.quantity[24] - 1.0).abs() < 1e-12);
        assert!((m5.quantity[48] - 2.0).abs() < 1e-12);
        // ODE at 0.096/h for every instance-hour, covered or not: (48 + 24 + 2) x 0.096.
        assert_eq!(m5.total_ode, Money::parse("7.104").unwrap());
        assert!((m5.ode[0] - 0.192).abs() < 1e-9);
        let c5 = m
            .groups
            .iter()
            .find(|g| g.group.instance_type == "c5.large")
            .unwrap();
        assert_eq!(c5.total_ode, Money::ZERO);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("c5.large") && n.contains("no on-demand price")),
            "{notes:?}"
        );
    }

    #[test]
    fn usage_model_refuses_bad_rows_and_empty_answers() {
        let mut bad = row(
            "2025-03-03T00:00:00Z",
            Granularity::Hourly,
            "m5.large",
            "0.1",
            "1",
        );
        bad.usage_quantity = Decimal::from(-1);
        let err = usage_model(&[bad]).unwrap_err();
        assert!(err.contains("row 0") && err.contains("negative"), "{err}");
        let mut odd = row(
            "2025-03-03T00:00:00Z",
            Granularity::Daily,
            "m5.large",
            "0.1",
            "1",
        );
        odd.end = at("2025-03-03T05:00:00Z");
        let err = usage_model(&[odd]).unwrap_err();
        assert!(err.contains("is not one day"), "{err}");
        assert!(usage_model(&[])
            .unwrap_err()
            .contains("no EC2 instance usage"));
    }
}
