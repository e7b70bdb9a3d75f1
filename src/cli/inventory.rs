//! `commitd inventory --provider aws|azure`: the commitments an account owns, read through the
//! provider's SDK, as a table or JSON. AWS: savings plans and Reserved Instances. Azure:
//! reservation orders, reservations, savings plan orders and savings plans.
//!
//! Like every AWS tool it honours `AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL` and the
//! credential variables; for Azure, `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//! `AZURE_CLIENT_SECRET` / `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST` and
//! `AZURE_RESOURCE_MANAGER_ENDPOINT`. The flags below override them for one run.

use super::runtime;
use crate::markets::aws::{AssumeRole, AwsClients, AwsSettings, RetrySettings};
use crate::markets::azure::{AzureClients, AzureRetrySettings, AzureSettings};
use anyhow::Context;
use clap::ValueEnum;
use std::process::ExitCode;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProviderArg {
    Aws,
    Azure,
}

/// Connection flags shared by the AWS sub-commands (`--endpoint-url`, `--max-attempts` and
/// `--deadline-secs` apply to Azure too).
#[derive(clap::Args, Debug, Clone)]
pub struct AwsArgs {
    /// AWS region (default: AWS_REGION or the profile's region); Azure: the location priced.
    #[arg(long)]
    pub region: Option<String>,
    /// Endpoint override for a local peer or a VPC endpoint (default: AWS_ENDPOINT_URL; Azure:
    /// AZURE_RESOURCE_MANAGER_ENDPOINT, else the public cloud).
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

/// Azure-only flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AzureArgs {
    /// Azure: the login host (default: AZURE_AUTHORITY_HOST, else login.microsoftonline.com).
    #[arg(long, value_name = "URL")]
    pub authority_host: Option<String>,
    /// Azure: authenticate with the managed identity (IMDS) instead of the environment.
    #[arg(long)]
    pub managed_identity: bool,
    /// Azure: the billing scope priced and bought in (/subscriptions/<id>).
    #[arg(long, value_name = "SCOPE", env = "COMMITD_AZURE__BILLING_SCOPE_ID")]
    pub billing_scope: Option<String>,
}

impl AzureArgs {
    pub fn settings(&self, common: &AwsArgs) -> AzureSettings {
        AzureSettings {
            endpoint_url: common.endpoint_url.clone(),
            authority_host: self.authority_host.clone(),
            managed_identity: self.managed_identity,
            managed_identity_endpoint: None,
            billing_scope_id: self.billing_scope.clone(),
            retry: AzureRetrySettings {
                max_retries: common.max_attempts.saturating_sub(1),
                max_total_ms: common.deadline_secs.saturating_mul(1000),
                ..AzureRetrySettings::default()
            },
        }
    }
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
    #[command(flatten)]
    pub azure: AzureArgs,
    /// Print JSON (records, commitments and request ids) instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.provider == ProviderArg::Azure {
        return run_azure(&args);
    }
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

/// `commitd inventory --provider azure`.
fn run_azure(args: &Args) -> anyhow::Result<ExitCode> {
    use crate::markets::azure::market::commitments;
    let rt = runtime()?;
    let settings = args.azure.settings(&args.aws);
    let answer = rt
        .block_on(async {
            let clients = AzureClients::connect(&settings)?;
            clients.inventory().await
        })
        .context("reading the Azure inventory")?;
    let inv = &answer.value;
    let (held, notes) = commitments(inv);
    if args.json {
        let out = serde_json::json!({
            "reservation_orders": inv.reservation_orders,
            "reservations": inv.reservations,
            "savings_plan_orders": inv.savings_plan_orders,
            "savings_plans": inv.savings_plans,
            "commitments": held,
            "notes": notes,
            "request_ids": answer.request_ids,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Reservation orders: {}; savings plan orders: {}",
        inv.reservation_orders.len(),
        inv.savings_plan_orders.len()
    );
    println!();
    println!("Reservations ({}):", inv.reservations.len());
    if !inv.reservations.is_empty() {
        println!(
            "  {:<76} {:<16} {:<10} {:>4} {:<5} {:<8} {:<8} {:<12} {:>7} {:<20}",
            "id", "sku", "location", "qty", "term", "billing", "scope", "state", "util30", "expiry"
        );
    }
    for r in &inv.reservations {
        let p = &r.properties;
        println!(
            "  {:<76} {:<16} {:<10} {:>4} {:<5} {:<8} {:<8} {:<12} {:>7} {:<20}",
            r.name.as_deref().unwrap_or(&r.id),
            r.sku.name.as_deref().unwrap_or("?"),
            r.location.as_deref().unwrap_or("?"),
            p.quantity.map(|q| q.to_string()).unwrap_or_default(),
            p.term.as_deref().unwrap_or("?"),
            p.billing_plan.as_deref().unwrap_or("-"),
            p.applied_scope_type.as_deref().unwrap_or("?"),
            p.provisioning_state.as_deref().unwrap_or("?"),
            p.utilization
                .as_ref()
                .and_then(|u| u.percent_over(30))
                .map(|v| format!("{v}%"))
                .unwrap_or_default(),
            p.expiry_date_time
                .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
                .or_else(|| p.expiry_date.map(|d| d.to_string()))
                .unwrap_or_default(),
        );
    }
    println!();
    println!("Savings plans ({}):", inv.savings_plans.len());
    if !inv.savings_plans.is_empty() {
        println!(
            "  {:<76} {:>12} {:<5} {:<8} {:<8} {:<12} {:>7} {:<20}",
            "id", "USD/hour", "term", "billing", "scope", "state", "util30", "expiry"
        );
    }
    for sp in &inv.savings_plans {
        let p = &sp.properties;
        println!(
            "  {:<76} {:>12} {:<5} {:<8} {:<8} {:<12} {:>7} {:<20}",
            sp.name.as_deref().unwrap_or(&sp.id),
            p.commitment
                .as_ref()
                .and_then(|c| c.amount)
                .map(|a| a.normalize().to_string())
                .unwrap_or_default(),
            p.term.as_deref().unwrap_or("?"),
            p.billing_plan.as_deref().unwrap_or("Upfront"),
            p.applied_scope_type.as_deref().unwrap_or("?"),
            p.provisioning_state.as_deref().unwrap_or("?"),
            p.utilization
                .as_ref()
                .and_then(|u| u.percent_over(30))
                .map(|v| format!("{v}%"))
                .unwrap_or_default(),
            p.expiry_date_time
                .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default(),
        );
    }
    for note in &notes {
        println!("note: {note}");
    }
    println!();
    println!(
        "{} commitment(s) cover usage now or are being created. Request ids: {}",
        held.len(),
        answer.request_ids.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
