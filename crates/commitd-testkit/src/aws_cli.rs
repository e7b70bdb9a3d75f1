//! `commitd-dev aws-test-server`: the local AWS-compatible peer as a process, for demos and for
//! trying the AWS commands without an account:
//!
//! ```text
//! commitd-dev aws-test-server --listen 127.0.0.1:4566 &
//! AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_REGION=us-east-1 \
//!   AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test commitd offerings --provider aws --region us-east-1
//! ```
//!
//! Faults and the clock are steered through `POST /_commitd/faults` and `/_commitd/clock`.

use crate::aws_server::{TestServer, World};
use anyhow::Context;
use commitd::cli::runtime;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

/// Run the local AWS-compatible test server (Savings Plans and EC2 Reserved Instances) with
/// a demo catalogue. Development and testing only: it holds no real commitments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the first line printed is the URL).
    #[arg(long, default_value = "127.0.0.1:4566")]
    pub listen: SocketAddr,
    /// Region of the simulated account and its catalogue.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        let server = TestServer::bind(args.listen, World::demo(&args.region))
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        // The first line is machine-readable, so scripts and tests can find a port-0 server.
        println!("{}", server.endpoint());
        std::io::stdout().flush()?;
        eprintln!("AWS test server for {} (Ctrl-C to stop)", args.region);
        tokio::select! {
            _ = server.run_forever() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Measure the AWS client against an in-process test server over loopback HTTP: N idempotent
/// CreateSavingsPlan calls through the SDK, then the inventory that lists them. Figures for
/// docs/benchmarks/aws.md; the server is the local peer, so this measures commitd + the SDK +
/// HTTP, not AWS.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Number of purchases.
    #[arg(long, default_value_t = 500)]
    pub purchases: u32,
    /// Results per page the server returns for listings.
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    use commitd::markets::aws::execute::SavingsPlanPurchase;
    use commitd::markets::aws::{AwsClients, AwsSettings, StaticCredentials};
    use commitd_core::domain::{Instrument, Money, PaymentOption, Term};
    use std::time::Instant;
    let rt = runtime()?;
    rt.block_on(async {
        let mut world = World::demo("us-east-1");
        world.page_size = args.page_size.max(1);
        let server = TestServer::start(world).await?;
        let clients = AwsClients::connect(&AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(server.endpoint()),
            static_credentials: Some(StaticCredentials {
                access_key_id: "bench".into(),
                secret_access_key: "bench".into(),
            }),
            ..AwsSettings::default()
        })
        .await?;
        let offering = clients
            .find_savings_plan_offering(
                Instrument::ComputeSavingsPlan,
                Term::ONE_YEAR,
                PaymentOption::NoUpfront,
                None,
            )
            .await?
            .value
            .context("the demo catalogue has a Compute offering")?;
        let mut latencies = Vec::with_capacity(args.purchases as usize);
        let started = Instant::now();
        for i in 0..args.purchases {
            let t = Instant::now();
            clients
                .create_savings_plan(&SavingsPlanPurchase {
                    idempotency_key: format!("bench-{i}"),
                    offering_id: offering.offering_id.clone(),
                    commitment: Money::from_micros(1_000 + i as i64 * 10),
                    payment: PaymentOption::NoUpfront,
                    term: Term::ONE_YEAR,
                    purchase_time: None,
                })
                .await?;
            latencies.push(t.elapsed());
        }
        let total = started.elapsed();
        let t = Instant::now();
        let inv = clients.inventory().await?;
        let inventory_time = t.elapsed();
        latencies.sort();
        let pct = |p: f64| {
            let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            latencies.get(i).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
        };
        println!(
            "purchases: {} in {:.3} s ({:.0}/s); latency ms p50 {:.2} p95 {:.2} p99 {:.2} max {:.2}",
            args.purchases,
            total.as_secs_f64(),
            args.purchases as f64 / total.as_secs_f64().max(1e-9),
            pct(0.5),
            pct(0.95),
            pct(0.99),
            pct(1.0)
        );
        println!(
            "inventory: {} savings plans in {} calls, {:.1} ms",
            inv.value.savings_plans.len(),
            inv.request_ids.len(),
            inventory_time.as_secs_f64() * 1e3
        );
        Ok(ExitCode::SUCCESS)
    })
}
