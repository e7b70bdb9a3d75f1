//! `commitd offerings --provider aws --region R [--instance-type T]`: what commitments cost in
//! a region, from the Savings Plans and EC2 offering APIs, as the optimizer's rate card.
//!
//! Cards are cached for a day under `<data dir>/aws-offerings/`; `--refresh` fetches anew.
//! `--provider azure` quotes reservations for one VM size and caches the card under
//! `<data dir>/azure-offerings/`, where the daemon's Azure market reads it.

use super::inventory::{AwsArgs, AzureArgs, ProviderArg};
use super::runtime;
use crate::markets::aws::offerings::OfferingsCache;
use crate::markets::aws::AwsClients;
use crate::markets::CachedRateCard;
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
    #[command(flatten)]
    pub azure: AzureArgs,
    /// Only this instance type (e.g. m5.large; Azure: the VM size, e.g. Standard_D2s_v5).
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
    if args.provider == ProviderArg::Azure {
        return run_azure(&args);
    }
    if args.aws.region.is_none() && std::env::var_os("AWS_REGION").is_none() {
        anyhow::bail!("--region is required (or set AWS_REGION)");
    }
    let cache = OfferingsCache::new(&args.data_dir);
    let rt = runtime()?;
    let now = chrono::Utc::now();
    let lookup = rt.block_on(async {
        let clients = AwsClients::connect(&args.aws.settings()).await?;
        let it = args.instance_type.as_deref();
        if !args.refresh {
            // A corrupt cache is only a cache: fetch anew.
            if let Ok(Some(card)) = cache.load(&clients.region, it) {
                if card.is_fresh(now) {
                    return Ok::<_, crate::markets::aws::offerings::CacheError>((
                        card,
                        true,
                        Vec::new(),
                        Vec::new(),
                    ));
                }
            }
        }
        // Each offering API on its own: one that fails is named, the other still prints.
        let fetched = clients.fetch_rate_card_each(it).await?;
        let card = CachedRateCard::new(now, &clients.region, it, &fetched.card.value);
        // Only a complete card is cached: a partial one would hide offers for a day.
        if fetched.failed.is_empty() {
            cache.store(&card)?;
        }
        Ok((card, false, fetched.card.request_ids, fetched.failed))
    });
    let (card, from_cache, request_ids, failed) = lookup.context("reading AWS offerings")?;
    for f in &failed {
        eprintln!("warning: not listed, the call failed: {f}");
    }
    if args.json {
        let out = serde_json::json!({
            "region": card.region,
            "instance_type": card.instance_type,
            "fetched_at": card.fetched_at,
            "from_cache": from_cache,
            "failed": failed,
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

/// `commitd offerings --provider azure --region R --instance-type T`: the reservation prices
/// `calculatePrice` quotes for one instance (1 and 3 years, monthly and upfront). A quote that
/// fails is named and the others are still printed; the command fails only if all fail. When
/// every quote answered, the card is cached under `<data dir>/azure-offerings/` for the
/// daemon's planner (`markets::azure::offerings`).
fn run_azure(args: &Args) -> anyhow::Result<ExitCode> {
    use crate::markets::azure::offerings::{quote_reservations, rate_card, AzureOfferingsCache};
    use crate::markets::azure::{AzureClients, AzureMarket};
    let Some(region) = args.aws.region.clone() else {
        anyhow::bail!("--region is required for Azure (the location, e.g. westus)");
    };
    let Some(instance_type) = args.instance_type.clone() else {
        anyhow::bail!("--instance-type is required for Azure (the VM size, e.g. Standard_D2s_v5)");
    };
    let settings = args.azure.settings(&args.aws);
    let rt = runtime()?;
    let market = AzureMarket::new(AzureClients::connect(&settings).context("connecting to Azure")?);
    let (rows, failures) = rt.block_on(quote_reservations(&market, &region, &instance_type));
    // Only a complete card is cached: a partial one would hide offers for a day.
    let cached = if failures.is_empty() {
        let card = CachedRateCard::new(
            chrono::Utc::now(),
            &region,
            Some(&instance_type),
            &rate_card(&region, &instance_type, &rows),
        );
        Some(
            AzureOfferingsCache::new(&args.data_dir)
                .store(&card)
                .context("caching the Azure offerings")?,
        )
    } else {
        None
    };
    if args.json {
        let out = serde_json::json!({
            "region": region,
            "instance_type": instance_type,
            "reservations": rows.iter().map(|(t, p, q)| serde_json::json!({
                "term": t, "payment": p, "hourly_cost": q.hourly_cost, "upfront": q.upfront, "offering": q.offering,
            })).collect::<Vec<_>>(),
            "failed": failures,
            "cached": cached.as_ref().map(|p| p.display().to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("Azure reservation prices for 1 x {instance_type} in {region} (calculatePrice):");
        println!(
            "  {:<5} {:<12} {:>14} {:>12}",
            "term", "payment", "USD/inst-h", "upfront"
        );
        for (t, p, q) in &rows {
            println!(
                "  {:<5} {:<12} {:>14} {:>12}",
                t.to_string(),
                p.as_str(),
                q.hourly_cost.to_string(),
                q.upfront.to_string()
            );
        }
        for f in &failures {
            println!("failed: {f}");
        }
        if let Some(p) = &cached {
            println!("Cached for the planner: {}", p.display());
        }
    }
    if rows.is_empty() {
        anyhow::bail!("every Azure price quote failed: {}", failures.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}
