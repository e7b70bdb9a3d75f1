//! Usage from Cost Explorer (GetCostAndUsage), for small accounts without FOCUS exports:
//! HOURLY granularity for the last 14 days (all Cost Explorer keeps at that grain, when hourly
//! data is enabled) and DAILY beyond, EC2 compute grouped by instance type and region.
//!
//! Costs are exact [`Money`]; usage quantities stay decimals as Cost Explorer wrote them.

use super::client::AwsClients;
use super::convert;
use super::error::{from_sdk, AwsError, Called};
use crate::domain::Money;
use chrono::{DateTime, Duration as ChronoDuration, DurationRound, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

/// How far back Cost Explorer keeps hourly data.
pub const HOURLY_DAYS: i64 = 14;

/// The service Cost Explorer names EC2 instance usage by.
pub const EC2_COMPUTE_SERVICE: &str = "Amazon Elastic Compute Cloud - Compute";

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
        let filter = Expression::builder()
            .dimensions(
                DimensionValues::builder()
                    .key(Dimension::Service)
                    .values(EC2_COMPUTE_SERVICE)
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

    /// Hourly rows for the newest 14 days and daily rows before, `days` back from `now`.
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
            let part = self.cost_and_usage(window).await?;
            all.value.extend(part.value);
            all.request_ids.extend(part.request_ids);
        }
        Ok(all)
    }
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
}
