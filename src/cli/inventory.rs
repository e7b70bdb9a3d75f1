//! `commitd inventory --provider aws`: the savings plans and Reserved Instances an account owns,
//! read through the AWS SDK, as a table or JSON.
//!
//! Like every AWS tool it honours `AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL` and the
//! credential variables; the flags below override them for one run.

use super::runtime;
use crate::markets::aws::{AssumeRole, AwsClients, AwsSettings, RetrySettings};
use anyhow::Context;
use clap::ValueEnum;
use std::process::ExitCode;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProviderArg {
    Aws,
}

/// Connection flags shared by the AWS sub-commands.
#[derive(clap::Args, Debug, Clone)]
pub struct AwsArgs {
    /// AWS region (default: AWS_REGION or the profile's region).
    #[arg(long)]
    pub region: Option<String>,
    /// Endpoint override for a local peer or a VPC endpoint (default: AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Shared-config profile (default: AWS_PROFILE).
    #[arg(long)]
    pub profile: Option<String>,
    /// Role to assume in the target account (organizations: one run per linked account).
    #[arg(long, value_name = "ROLE_ARN")]
    pub assume_role: Option<String>,
    /// External id required by the role's trust policy.
    #[arg(long, requires = "assume_role")]
    pub external_id: Option<String>,
    /// Attempts per call (throttling and 5xx are retried with backoff and jitter).
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    /// Deadline for each call, retries included, in seconds.
    #[arg(long, default_value_t = 60)]
    pub deadline_secs: u64,
}

impl AwsArgs {
    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            profile: self.profile.clone(),
            assume_role: self.assume_role.as_ref().map(|arn| AssumeRole {
                role_arn: arn.clone(),
                external_id: self.external_id.clone(),
                session_name: None,
            }),
            static_credentials: None,
            retry: RetrySettings {
                max_attempts: self.max_attempts,
                deadline_ms: self.deadline_secs.saturating_mul(1000),
                ..RetrySettings::default()
            },
        }
    }
}

/// Show the commitments an account owns: savings plans (every state) and Reserved
/// Instances of the region, with what each commits to and until when.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The cloud provider.
    #[arg(long, value_enum)]
    pub provider: ProviderArg,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Print JSON (records, commitments and request ids) instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ProviderArg::Aws = args.provider;
    let rt = runtime()?;
    let called = rt.block_on(async {
        let clients = AwsClients::connect(&args.aws.settings()).await?;
        clients.inventory().await.map(|inv| (inv, clients.region))
    });
    let (called, region) = called.context("reading the AWS inventory")?;
    let inv = &called.value;
    if args.json {
        let out = serde_json::json!({
            "region": region,
            "savings_plans": inv.savings_plans,
            "reserved_instances": inv.reserved_instances,
            "skipped_savings_plans": inv.skipped,
            "commitments": inv.commitments(),
            "request_ids": called.request_ids,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("Savings plans ({}):", inv.savings_plans.len());
    if !inv.savings_plans.is_empty() {
        println!(
            "  {:<38} {:<24} {:<15} {:>12} {:<5} {:<16} {:<20} {:<20}",
            "id", "instrument", "state", "USD/hour", "term", "payment", "start", "end"
        );
    }
    for p in &inv.savings_plans {
        println!(
            "  {:<38} {:<24} {:<15} {:>12} {:<5} {:<16} {:<20} {:<20}{}",
            p.id,
            p.instrument.as_str(),
            p.state,
            p.commitment.to_string(),
            p.term.to_string(),
            p.payment.as_str(),
            p.start.format("%Y-%m-%d %H:%M"),
            p.end.format("%Y-%m-%d %H:%M"),
            p.family
                .as_ref()
                .map(|f| format!("  {f} in {}", p.region.as_deref().unwrap_or("?")))
                .unwrap_or_default()
        );
    }
    println!();
    println!(
        "Reserved Instances in {region} ({}):",
        inv.reserved_instances.len()
    );
    if !inv.reserved_instances.is_empty() {
        println!(
            "  {:<38} {:<28} {:<10} {:>5} {:<14} {:<5} {:<16} {:>12} {:<20}",
            "id", "instrument", "state", "count", "type", "term", "payment", "USD/inst-h", "end"
        );
    }
    for r in &inv.reserved_instances {
        println!(
            "  {:<38} {:<28} {:<10} {:>5} {:<14} {:<5} {:<16} {:>12} {:<20}",
            r.id,
            r.instrument.as_str(),
            r.state,
            r.count,
            r.instance_type,
            r.term.to_string(),
            r.payment.as_str(),
            r.effective_hourly_rate()
                .round_dp(6)
                .normalize()
                .to_string(),
            r.end.format("%Y-%m-%d %H:%M"),
        );
    }
    if !inv.skipped.is_empty() {
        println!();
        println!(
            "Not modelled (SageMaker/Database plans): {}",
            inv.skipped.join(", ")
        );
    }
    println!();
    println!(
        "{} commitment(s) cover usage now or are queued. Request ids: {}",
        inv.commitments().len(),
        called.request_ids.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
