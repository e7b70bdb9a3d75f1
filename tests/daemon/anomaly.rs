//! The anomaly watch in the daemon: a spike injected into a generated scenario, open when the
//! daemon's first cycle decides, holds the purchases covering it (the same decision without
//! the hold buys them), is written to the audit log and posted to the chat webhook once, ends
//! at a later cycle (one more event and message), and the chain still verifies.

use super::equivalence::write_policies;
use commitd::audit::EventKind;
use commitd_testkit::synth::{self, Shape};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A chat webhook that records every body it is posted (keep-alive connections included).
async fn hook() -> (String, Arc<Mutex<Vec<String>>>) {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let store = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// A steady 4-group scenario whose largest group triples for 12 hours around what the first
/// cycle knows (billed 48 hours before the decision time): open when it decides. Returns the
/// spiking group's instance type.
fn scenario(dir: &Path) -> String {
    let config = synth::Config {
        shape: Shape::Steady,
        groups: 4,
        seed: 3,
        history_months: 2,
        evaluation_months: 1,
        commitments: false,
        ..synth::Config::default()
    };
    let mut org = synth::build(&config).unwrap();
    let cut = org.decision_time.since(org.history_start) as usize - 48;
    let mean = |d: &[f64]| d.iter().sum::<f64>() / d.len().max(1) as f64;
    let g = (0..org.groups.len())
        .max_by(|&a, &b| {
            (mean(&org.groups[a].demand) * org.groups[a].product.on_demand())
                .total_cmp(&(mean(&org.groups[b].demand) * org.groups[b].product.on_demand()))
        })
        .unwrap();
    for v in &mut org.groups[g].demand[cut - 6..cut + 6] {
        *v *= 3.0;
    }
    synth::write(&org, dir).unwrap();
    org.groups[g].product.instance_type.to_string()
}

async fn app(dir: &Path, scenario: &Path, hook: &str, hold: bool) -> commitd::startup::Application {
    write_policies(&dir.join("policies"));
    let path = dir.join("commitd.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"state\"\nmode = \"autopilot\"\npolicies_dir = \"policies\"\n\
             billing_latency_hours = 48\n\
             [source]\nscenario = \"{}\"\nscenario_follows_clock = true\n\
             [planner]\nanomaly_hold = {hold}\n\
             [daemon]\nwebhook_url = \"{hook}\"\npublic_url = \"http://commitd.test\"\n",
            scenario.display()
        ),
    )
    .unwrap();
    let config = commitd::config::Config::load_with_env(Some(&path), &Default::default()).unwrap();
    commitd::startup::Application::build(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_spike_holds_purchases_and_is_alerted_once() {
    let dir = tempfile::tempdir().unwrap();
    let scenario_dir = dir.path().join("scenario");
    let spiking = scenario(&scenario_dir);
    let scenario = commitd::sources::load_scenario(&scenario_dir).unwrap();
    let at = scenario.window.decision_time;
    let (url, bodies) = hook().await;

    // Without the hold, the first cycle buys into the group (it watches and alerts all the same).
    let off = tempfile::tempdir().unwrap();
    let unheld = app(off.path(), &scenario_dir, &url, false).await;
    let plan = unheld
        .service()
        .cycle(at.to_datetime())
        .await
        .unwrap()
        .plan
        .unwrap();
    assert!(plan.holds.is_empty(), "{}", plan.render());
    let unheld_actions: Vec<String> = plan.actions.iter().map(|a| a.describe()).collect();
    bodies.lock().unwrap().clear();

    let on = tempfile::tempdir().unwrap();
    let app = app(on.path(), &scenario_dir, &url, true).await;
    let daemon = app.service();
    let report = daemon.cycle(at.to_datetime()).await.unwrap();
    let plan = report.plan.unwrap();
    let news = plan.anomalies.clone().unwrap();
    let open: Vec<_> = news
        .open
        .iter()
        .filter(|a| a.group.instance_type == spiking)
        .collect();
    assert_eq!(open.len(), 1, "{news:?}");
    let id = open[0].id();
    // The purchases covering it are held: said in the plan, absent from its actions, and
    // each of them was bought without the hold.
    let held: Vec<&String> = plan
        .holds
        .iter()
        .filter(|h| h.contains("not proposed"))
        .collect();
    assert!(!held.is_empty(), "{}", plan.render());
    assert!(held.iter().all(|h| h.contains(&spiking)), "{held:?}");
    assert!(plan.notes.iter().any(|n| n.starts_with("anomaly hold:")));
    for a in &plan.actions {
        assert_ne!(
            a.spec.instance_type.as_deref(),
            Some(spiking.as_str()),
            "{}",
            plan.render()
        );
    }
    assert!(
        unheld_actions.len() > plan.actions.len(),
        "held {:?}; without the hold: {unheld_actions:?}",
        plan.actions
            .iter()
            .map(|a| a.describe())
            .collect::<Vec<_>>()
    );
    // Every proposal of the cycle carries the hold in its rationale.
    let proposed = daemon
        .audit
        .list(
            &commitd::audit::EventFilter {
                kind: Some(EventKind::ActionProposed),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert!(!proposed.is_empty());
    for e in &proposed {
        let holds = e.rationale["anomaly_holds"].as_array().unwrap();
        assert!(!holds.is_empty(), "{}", e.rationale);
    }

    // Audited and posted once, with the next cycles reporting its end once.
    let kinds =
        |events: &[commitd::audit::Event]| events.iter().map(|e| e.kind()).collect::<Vec<_>>();
    let events = daemon.audit.about(&id).await.unwrap();
    assert_eq!(kinds(&events), vec![EventKind::AnomalyDetected]);
    for day in 1..=3 {
        daemon.cycle(at.plus(24 * day).to_datetime()).await.unwrap();
    }
    let events = daemon.audit.about(&id).await.unwrap();
    assert_eq!(
        kinds(&events),
        vec![EventKind::AnomalyDetected, EventKind::AnomalyEnded]
    );
    let posted = bodies.lock().unwrap().clone();
    let about = |what: &str| {
        posted
            .iter()
            .filter(|b| b.contains(what) && b.contains(&spiking))
            .count()
    };
    assert_eq!(about("commitd: cost anomaly (spike)"), 1, "{posted:?}");
    assert_eq!(about("is over"), 1, "{posted:?}");
    // Shown on /metrics' figures: nothing open once it ended, one reported.
    let text = daemon.metrics.render(&[], at.plus(72));
    assert!(
        text.contains("commitd_anomalies_detected_total{provider=\"AWS\",kind=\"spike\"}"),
        "{text}"
    );
    assert!(daemon.audit.verify().await.unwrap().is_ok());
}
