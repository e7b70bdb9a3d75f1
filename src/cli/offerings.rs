//! `commitd offerings --provider aws --region R [--instance-type T]`: what commitments cost in
//! a region, from the Savings Plans and EC2 offering APIs, as the optimizer's rate card.
//!
//! Cards are cached for a day under `<data dir>/aws-offerings/`; `--refresh` fetches anew.

use super::inventory::{AwsArgs, ProviderArg};
use super::runtime;
use crate::markets::aws::offerings::{CachedRateCard, OfferingsCache};
use crate::markets::aws::AwsClients;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// Show savings plan rates and Reserved Instance prices for a region as rate-card offers
/// (USD per instance-hour, upfront amortized over the term).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The cloud provider.
    #[arg(long, value_enum)]
    pub provider: ProviderArg,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Only this instance type (e.g. m5.large).
    #[arg(long)]
    pub instance_type: Option<String>,
    /// Directory for the offerings cache.
    #[arg(long, env = "COMMITD_DATA_DIR", default_value = "commitd-data")]
    pub data_dir: PathBuf,
    /// Ignore a cached card and fetch from AWS.
    #[arg(long)]
    pub refresh: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ProviderArg::Aws = args.provider;
    if args.aws.region.is_none() && std::env::var_os("AWS_REGION").is_none() {
        anyhow::bail!("--region is required (or set AWS_REGION)");
    }
    let cache = OfferingsCache::new(&args.data_dir);
    let rt = runtime()?;
    let now = chrono::Utc::now();
    let lookup = rt.block_on(async {
        let clients = AwsClients::connect(&args.aws.settings()).await?;
        if args.refresh {
            let fetched = clients
                .fetch_rate_card(args.instance_type.as_deref())
                .await?;
            let card = CachedRateCard::new(
                now,
                &clients.region,
                args.instance_type.as_deref(),
                &fetched.value,
            );
            cache.store(&card)?;
            Ok::<_, crate::markets::aws::offerings::CacheError>((card, false, fetched.request_ids))
        } else {
            let l = cache
                .get_or_refresh(&clients, args.instance_type.as_deref(), now)
                .await?;
            Ok((l.card, l.from_cache, l.request_ids))
        }
    });
    let (card, from_cache, request_ids) = lookup.context("reading AWS offerings")?;
    if args.json {
        let out = serde_json::json!({
            "region": card.region,
            "instance_type": card.instance_type,
            "fetched_at": card.fetched_at,
            "from_cache": from_cache,
            "offers": card.offers.iter().map(|(p, o)| serde_json::json!({"product": p, "offer": o})).collect::<Vec<_>>(),
            "request_ids": request_ids,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} offers in {}{}, fetched {}{}",
        card.offers.len(),
        card.region,
        card.instance_type
            .as_deref()
            .map(|t| format!(" for {t}"))
            .unwrap_or_default(),
        card.fetched_at.format("%Y-%m-%d %H:%M UTC"),
        if from_cache { " (cached)" } else { "" }
    );
    println!(
        "  {:<14} {:<8} {:<9} {:<30} {:<5} {:<16} {:>12} {:>8}",
        "type", "os", "tenancy", "instrument", "term", "payment", "USD/inst-h", "upfront"
    );
    for (p, o) in &card.offers {
        println!(
            "  {:<14} {:<8} {:<9} {:<30} {:<5} {:<16} {:>12} {:>8}",
            p.instance_type,
            p.os,
            p.tenancy,
            o.instrument.as_str(),
            o.term.map(|t| t.to_string()).unwrap_or_default(),
            o.payment.as_str(),
            o.effective_hourly_rate.normalize().to_string(),
            o.upfront_share.normalize().to_string(),
        );
    }
    if !request_ids.is_empty() {
        println!("Request ids: {}", request_ids.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
