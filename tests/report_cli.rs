//! `commitd report --month`: the monthly summary for finance, from the audit log written by
//! real daemon cycles, on SQLite and (when COMMITD_TEST_DATABASE_URL is set) PostgreSQL.

mod daemon_support;

use chrono::{Datelike, Utc};
use daemon_support::Setup;
use serde_json::Value;

fn backends() -> Vec<bool> {
    let mut b = vec![false];
    if std::env::var("COMMITD_TEST_DATABASE_URL").is_ok() {
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

    // The month before: nothing bought, nothing active.
    let before: Value =
        serde_json::from_str(&s.ok(&["report", "--month", &previous_month(), "--json"])).unwrap();
    assert_eq!(before["totals"]["purchases"], 0);
    assert_eq!(before["portfolio"]["commitments"], 0);
    assert_eq!(before["totals"]["hourly_cost"], "0");
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
    // Nothing was created: the database is opened only for a valid month.
    assert!(!s.path("state/commitd.db").exists());
}
