//! A crash at every step of an execution (the process aborted by `commitd-dev run`'s failpoint,
//! `COMMITD_TEST_FAILPOINT`), then a restart: the daemon reconciles with the provider first and never
//! buys twice. The simulated provider, on SQLite. (Moved from the daemon's cycle tests: the
//! product binary carries no failpoint.)

use crate::common;

use common::daemon::{eventually, Setup};

#[test]
fn a_crash_between_steps_never_buys_twice() {
    for step in [
        "after_begin_execution",
        "after_execution_requested",
        "after_purchase",
        "after_executed_event",
    ] {
        let s = Setup::new("autopilot", false).unwrap();
        // The process aborts (SIGABRT) at the failpoint, mid-execution.
        let out = s.commitd_env(&["run", "--once"], &[("COMMITD_TEST_FAILPOINT", step)]);
        assert!(!out.status.success(), "{step}: expected a crash");
        let p = &s.proposals()[0];
        // The outcome and its event commit together: a crash after them leaves `executed`.
        let mid = if step == "after_executed_event" {
            "executed"
        } else {
            "executing"
        };
        assert_eq!(p["state"], mid, "{step}");
        // Restart: the daemon reconciles with the provider before anything else.
        let d = s.spawn();
        let id = p["id"].as_str().unwrap().to_string();
        eventually(20, || {
            (s.proposal(&id)["state"] == "executed").then_some(())
        });
        // One commitment of 2.5 USD/h: bought once. The gauge is the inventory the daemon
        // read after reconciling (scrapes never read it).
        eventually(10, || {
            let (_, metrics) = d.get("/metrics", None);
            metrics
                .contains("commitd_commitment_hourly_usd{provider=\"AWS\"} 2.5\n")
                .then_some(())
        });
        let (status, stderr) = d.terminate();
        assert!(status.success(), "{stderr}");
        assert_eq!(s.events("executed").len(), 1, "{step}");
        // Every provider call is recorded before it is made. A crash before the call leaves
        // one whose outcome is unknown: the restart asks the market first (nothing there),
        // then calls again under the same key, recorded as a second request. A crash after
        // the call is settled by the lookup alone.
        let requests = match step {
            "after_begin_execution" | "after_execution_requested" => 2,
            _ => 1,
        };
        assert_eq!(s.events("execution_requested").len(), requests, "{step}");
        s.verify_audit();
    }
}
