//! `commitd report --month`: the monthly summary for finance, from the audit log written by
//! real daemon cycles, on SQLite and (when COMMITD_TEST_DATABASE_URL is set) PostgreSQL.

use crate::common;

use chrono::{Datelike, Utc};
use common::daemon::Setup;
use serde_json::Value;

fn backends() -> Vec<bool> {
    let mut b = vec![false];
    // Fails instead when COMMITD_TEST_REQUIRE_POSTGRES=1 and no server is named (CI).
    if common::daemon::postgres_url().is_some() {
        b.push(true);
    }
    b
}

fn this_month() -> String {
    let now = Utc::now();
    format!("{:04}-{:02}", now.year(), now.month())
}

fn previous_month() -> String {
    let now = Utc::now();
    let (y, m) = if now.month() == 1 {
        (now.year() - 1, 12)
    } else {
        (now.year(), now.month() - 1)
    };
    format!("{y:04}-{m:02}")
}

fn report(postgres: bool) {
    let s = Setup::new("autopilot", postgres).unwrap();
    // Two autopilot cycles on the simulated market: the plan file's first action (2.5 USD/h,
    // no upfront, 5000 expected savings) is bought each time; the second is blocked by policy.
    s.ok(&["run", "--once"]);
    s.ok(&["run", "--once"]);
    let month = this_month();
    let json: Value =
        serde_json::from_str(&s.ok(&["report", "--month", &month, "--json"])).unwrap();
    let bought = json["bought"].as_array().unwrap();
    assert_eq!(bought.len(), 2, "{json}");
    for b in bought {
        assert_eq!(b["instrument"], "ComputeSavingsPlan");
        assert_eq!(b["payment_option"], "NoUpfront");
        assert_eq!(b["term"], 1);
        assert_eq!(b["hourly_cost"], "2.5");
        assert_eq!(b["upfront"], "0");
        assert_eq!(b["term_total"], "21900", "2.5 USD/h x 8,760 h");
        assert_eq!(b["expected_savings"], "5000");
        assert_eq!(b["approved_by"], serde_json::json!(["autopilot:aws"]));
        assert!(!b["provider_request_id"].as_str().unwrap().is_empty());
    }
    assert_eq!(json["totals"]["purchases"], 2);
    assert_eq!(json["totals"]["hourly_cost"], "5");
    assert_eq!(json["totals"]["term_total"], "43800");
    assert_eq!(json["totals"]["expected_savings"], "10000");
    assert_eq!(json["portfolio"]["commitments"], 2);
    // Honest about what the log cannot show.
    assert!(json["realized_savings"].is_null());
    assert!(json["realized_savings_note"]
        .as_str()
        .unwrap()
        .contains("not computed"));

    let table = s.ok(&["report", "--month", &month]);
    assert!(table.contains("Commitments bought: 2"), "{table}");
    assert!(table.contains("autopilot:aws"), "{table}");
    // Money as people read it in the table; the JSON above and the CSV keep exact figures.
    assert!(table.contains("USD 21,900.00"), "{table}");
    assert!(!table.contains(" 21900 "), "{table}");
    assert!(table.contains("Realized savings: not computed"), "{table}");

    let csv = s.ok(&["report", "--month", &month, "--csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "header, 2 purchases, TOTAL:\n{csv}");
    assert!(
        lines[0].starts_with("month,executed_at,proposal_id"),
        "{csv}"
    );
    assert!(
        lines[3].starts_with(&format!("{month},TOTAL,")) && lines[3].contains(",5,0,43800,10000,"),
        "{csv}"
    );

    realized_from_a_hand_made_bill(&s, &month, bought);

    // The month before: nothing bought, nothing active.
    let before: Value =
        serde_json::from_str(&s.ok(&["report", "--month", &previous_month(), "--json"])).unwrap();
    assert_eq!(before["totals"]["purchases"], 0);
    assert_eq!(before["portfolio"]["commitments"], 0);
    assert_eq!(before["totals"]["hourly_cost"], "0");
}

/// The month's FOCUS bill, hand-made around what the daemon bought (figures by hand): the
/// first purchase appears under its savings plan ARN (matched by the ARN's last segment), the
/// second has no rows (not billed yet), and a savings plan commitd did not buy is in the bill.
/// * ours: Used 00:00 ListCost 10 EffectiveCost 7.5, Used 01:00 10 / 7.5, Unused 01:00 0.25
///   -> ODE 20, cost 15.25, realized 4.75 over 2 billed hours;
/// * foreign: Used 00:00 ListCost 3 EffectiveCost 2 -> realized 1. Portfolio: 5.75.
fn realized_from_a_hand_made_bill(s: &Setup, month: &str, bought: &[Value]) {
    let ours = bought[0]["commitment_id"].as_str().unwrap();
    let missing = bought[1]["commitment_id"].as_str().unwrap();
    assert_ne!(ours, missing);
    let arn = format!("arn:aws:savingsplans::111122223333:savingsplan/{ours}");
    let foreign = "arn:aws:savingsplans::111122223333:savingsplan/not-ours";
    let vm = "AWS,USD,eu-west-1,Compute,Amazon Elastic Compute Cloud,EU-BoxUsage:m6i.large";
    let h = |hour: u32| format!("{month}-01T{hour:02}:00:00Z");
    let rows = [
        format!("Usage,{},{},{vm},10,7.5,1,Committed,{arn},Used", h(0), h(1)),
        format!("Usage,{},{},{vm},10,7.5,1,Committed,{arn},Used", h(1), h(2)),
        format!(
            "Usage,{},{},{vm},0,0.25,0,Committed,{arn},Unused",
            h(1),
            h(2)
        ),
        format!(
            "Usage,{},{},{vm},3,2,1,Committed,{foreign},Used",
            h(0),
            h(1)
        ),
    ];
    let bill = s.path("bill.csv");
    std::fs::write(
        &bill,
        format!(
            "ChargeCategory,ChargePeriodStart,ChargePeriodEnd,ProviderName,BillingCurrency,RegionId,\
ServiceCategory,ServiceName,UsageType,ListCost,EffectiveCost,ConsumedQuantity,PricingCategory,\
CommitmentDiscountId,CommitmentDiscountStatus\n{}\n",
            rows.join("\n")
        ),
    )
    .unwrap();
    let bill = bill.to_str().unwrap();
    let json: Value =
        serde_json::from_str(&s.ok(&["report", "--month", month, "--focus", bill, "--json"]))
            .unwrap();
    let r = &json["realized"];
    assert_eq!(json["realized_savings"], "5.75", "{json}");
    assert_eq!(r["portfolio"]["commitments"], 2);
    assert_eq!(r["commitd"]["commitments"], 1);
    assert_eq!(r["commitd"]["realized_savings"], "4.75");
    assert_eq!(r["not_billed"], serde_json::json!([missing]));
    let all = r["commitments"].as_array().unwrap();
    let c = all.iter().find(|c| c["bought_by_commitd"] == true).unwrap();
    assert_eq!(c["bill_id"], arn.as_str());
    assert_eq!(c["commitd_commitment_id"], ours);
    assert_eq!(c["billed_hours"], 2);
    assert_eq!(c["covered_ode"], "20");
    assert_eq!(c["cost"], "15.25");
    assert_eq!(c["realized_savings"], "4.75");
    // Expected: 5000 over the term's hours, pro-rated to the 2 billed hours.
    let t = |k: &str| chrono::DateTime::parse_from_rfc3339(bought[0][k].as_str().unwrap()).unwrap();
    let term_hours = (t("end") - t("start")).num_hours();
    let expected = (rust_decimal::Decimal::from(5000 * 2)
        / rust_decimal::Decimal::from(term_hours))
    .round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointNearestEven)
    .normalize();
    assert_eq!(c["expected_savings"], expected.to_string());
    assert_eq!(r["commitd"]["expected_savings"], expected.to_string());
    let f = all
        .iter()
        .find(|c| c["bought_by_commitd"] == false)
        .unwrap();
    assert_eq!(f["bill_id"], foreign);
    assert!(f["expected_savings"].is_null());
    assert_eq!(f["realized_savings"], "1");

    let table = s.ok(&["report", "--month", month, "--focus", bill]);
    assert!(table.contains("USD 5.75 over 2 commitment(s)"), "{table}");
    assert!(
        table.contains(&format!("not billed yet?): {missing}")),
        "{table}"
    );
    let csv = s.ok(&["report", "--month", month, "--focus", bill, "--csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    // header, 2 purchases, TOTAL, 2 BILLED, 1 NOT_BILLED, REALIZED_TOTAL
    assert_eq!(lines.len(), 8, "{csv}");
    let billed: Vec<&&str> = lines[4..6]
        .iter()
        .filter(|l| l.starts_with(&format!("{month},BILLED,")))
        .collect();
    assert_eq!(billed.len(), 2, "{csv}");
    assert!(
        billed.iter().any(|l| l.contains(&format!(",{ours},"))
            && l.contains(&format!(",{arn},2,20,15.25,4.75,{expected},true"))),
        "{csv}"
    );
    assert!(
        lines[6].starts_with(&format!("{month},NOT_BILLED,")) && lines[6].contains(missing),
        "{csv}"
    );
    assert!(
        lines[7].starts_with(&format!("{month},REALIZED_TOTAL,"))
            && lines[7].ends_with(&format!(",,23,17.25,5.75,{expected},")),
        "{csv}"
    );
}

/// The FinOps Foundation's real sample (September 2024): the report's realized savings equal an
/// independent sum over the CSV (ListCost - EffectiveCost of the Used rows, minus the
/// EffectiveCost of Unused rows, of rows with a commitment), exact to the micro-dollar.
#[test]
fn realized_savings_of_the_real_focus_sample_match_an_independent_sum() {
    let sample = common::shared::focus_sample();
    // Money is micro-USD: each cell is rounded half-to-even to the micro-dollar as it is read
    // (the sample has 11 decimals), then summed exactly. The unrounded sum differs by at most
    // half a micro-dollar per row (here 0.14267902220 vs 0.142679).
    let dec = |s: &str| {
        if s == "NULL" || s.is_empty() {
            rust_decimal::Decimal::ZERO
        } else {
            s.parse::<rust_decimal::Decimal>()
                .unwrap()
                .round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointNearestEven)
        }
    };
    let mut reader = csv::Reader::from_path(&sample).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (cat, id, stat, list, eff, pc) = (
        col("ChargeCategory"),
        col("CommitmentDiscountId"),
        col("CommitmentDiscountStatus"),
        col("ListCost"),
        col("EffectiveCost"),
        col("PricingCategory"),
    );
    let mut savings = std::collections::BTreeMap::new();
    for r in reader.records() {
        let r = r.unwrap();
        // Oracle rows carry an empty id ("" in the file, not NULL): no commitment.
        if &r[cat] != "Usage" || matches!(&r[id], "NULL" | "") || &r[pc] == "Dynamic" {
            continue;
        }
        let s = savings
            .entry(r[id].to_string())
            .or_insert(rust_decimal::Decimal::ZERO);
        match &r[stat] {
            "Used" => *s += dec(&r[list]) - dec(&r[eff]),
            "Unused" => *s -= dec(&r[eff]),
            _ => {}
        }
    }
    assert_eq!(savings.len(), 2, "the sample has two savings plans");
    let total: rust_decimal::Decimal = savings.values().sum();
    assert!(total > rust_decimal::Decimal::ZERO);

    let s = Setup::new("datapilot", false).unwrap();
    let json: Value = serde_json::from_str(&s.ok(&[
        "report",
        "--month",
        "2024-09",
        "--focus",
        sample.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    let money = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };
    assert_eq!(money(&json["realized_savings"]), total, "{json}");
    let r = &json["realized"];
    assert_eq!(r["portfolio"]["commitments"], 2);
    assert_eq!(r["commitd"]["commitments"], 0);
    for c in r["commitments"].as_array().unwrap() {
        assert_eq!(c["bought_by_commitd"], false);
        assert_eq!(
            money(&c["realized_savings"]),
            savings[c["bill_id"].as_str().unwrap()]
        );
        assert_eq!(c["covered_rows_without_list_cost"], 0);
    }
    // A month outside the bill: no commitments, zero, not null (the bill was read).
    let empty: Value = serde_json::from_str(&s.ok(&[
        "report",
        "--month",
        "2024-08",
        "--focus",
        sample.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(empty["realized_savings"], "0");
    assert_eq!(empty["realized"]["portfolio"]["commitments"], 0);
}

#[test]
fn monthly_report_from_the_audit_log_on_every_backend() {
    for pg in backends() {
        report(pg);
    }
}

#[test]
fn a_bad_month_names_the_value_and_reads_nothing() {
    let s = Setup::new("datapilot", false).unwrap();
    for bad in ["2026-13", "2026-1", "Oct 2026"] {
        let out = s.commitd(&["report", "--month", bad]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("'{bad}'")) && err.contains("YYYY-MM"),
            "{err}"
        );
    }
    // A bill that cannot be read is an error before the database is opened.
    std::fs::write(s.path("bad.csv"), "ChargeCategory,ListCost\nUsage,1\n").unwrap();
    let out = s.commitd(&[
        "report",
        "--month",
        "2026-10",
        "--focus",
        s.path("bad.csv").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reading the FOCUS bill") && err.contains("missing required column"),
        "{err}"
    );
    // Nothing was created: the database is opened only for a valid month and bill.
    assert!(!s.path("state/commitd.db").exists());
}
