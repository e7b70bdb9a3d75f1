//! Azure reservation prices as a rate card the planner can use. `commitd offerings --provider
//! azure --region R --instance-type T` quotes `calculatePrice` for one instance (1 and 3 years,
//! monthly and upfront) and, when every quote answered, caches the card for a day under
//! `<data dir>/azure-offerings/` (like the AWS offerings). The daemon's Azure market
//! ([`super::AzureMarket::with_offerings_cache`]) offers every fresh cached card to the planner,
//! which takes them for the products its rate card already prices on demand
//! (`RateCard::overlay_commitment_offers`): the planner then prices reservations as Azure
//! quotes them. Savings plans have no price list at Azure (the hourly commitment is the
//! price), so the card holds reservations only.

use super::market::AzureMarket;
use crate::domain::{
    CommitmentAmount, Instrument, Money, Offer, PaymentOption, Product, Provider, RateCard, Term,
};
use crate::markets::{CachedRateCard, CommitmentMarket, PurchaseSpec, Quote};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::path::{Path, PathBuf};

/// A VM reservation discounts the compute of a size whatever runs on it (a Windows licence is
/// billed apart), so one quote prices the size's products of both operating systems.
pub const OPERATING_SYSTEMS: [&str; 2] = ["Linux", "Windows"];
/// Azure usage groups' tenancy (the ingest's).
pub const TENANCY: &str = "Shared";

/// The terms and payments quoted for one VM size.
pub const QUOTED: [(Term, PaymentOption); 4] = [
    (Term::ONE_YEAR, PaymentOption::NoUpfront),
    (Term::ONE_YEAR, PaymentOption::AllUpfront),
    (Term::THREE_YEARS, PaymentOption::NoUpfront),
    (Term::THREE_YEARS, PaymentOption::AllUpfront),
];

/// The purchase of one instance of `instance_type` in `region`, as quoted.
pub fn one_instance(
    region: &str,
    instance_type: &str,
    term: Term,
    payment: PaymentOption,
) -> PurchaseSpec {
    PurchaseSpec {
        provider: Provider::Azure,
        account: None,
        instrument: Instrument::AzureReservation,
        term,
        payment,
        region: Some(region.to_string()),
        family: None,
        instance_type: Some(instance_type.to_string()),
        os: None,
        tenancy: None,
        amount: CommitmentAmount::Instances(1),
    }
}

/// Every quote of [`QUOTED`] for one instance, and what failed (named).
pub async fn quote_reservations(
    market: &AzureMarket,
    region: &str,
    instance_type: &str,
) -> (Vec<(Term, PaymentOption, Quote)>, Vec<String>) {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (term, payment) in QUOTED {
        match market
            .quote(&one_instance(region, instance_type, term, payment))
            .await
        {
            Ok(q) => rows.push((term, payment, q)),
            Err(e) => failures.push(format!("{term} {payment}: {e}")),
        }
    }
    (rows, failures)
}

/// The rate card of quotes for one instance: USD per instance-hour over the term (the quote's
/// hourly cost, upfront included), all upfront or none.
pub fn rate_card(
    region: &str,
    instance_type: &str,
    quotes: &[(Term, PaymentOption, Quote)],
) -> RateCard {
    let mut card = RateCard::new();
    for (term, payment, q) in quotes {
        let offer = Offer {
            instrument: Instrument::AzureReservation,
            term: Some(*term),
            payment: *payment,
            effective_hourly_rate: q.hourly_cost.to_decimal().normalize(),
            upfront_share: if q.upfront > Money::ZERO {
                Decimal::ONE
            } else {
                Decimal::ZERO
            },
        };
        for os in OPERATING_SYSTEMS {
            card.insert(
                Product {
                    provider: Provider::Azure,
                    region: region.to_string(),
                    instance_type: instance_type.to_string(),
                    os: os.to_string(),
                    tenancy: TENANCY.to_string(),
                },
                offer.clone(),
            );
        }
    }
    card
}

/// The file cache of Azure cards, one JSON file per (region, VM size).
#[derive(Clone, Debug)]
pub struct AzureOfferingsCache {
    dir: PathBuf,
}

impl AzureOfferingsCache {
    pub fn new(data_dir: &Path) -> Self {
        AzureOfferingsCache {
            dir: data_dir.join("azure-offerings"),
        }
    }

    pub fn path(&self, region: &str, instance_type: &str) -> PathBuf {
        // Anything but [A-Za-z0-9._-] is replaced, so a hostile value cannot leave the directory.
        let safe: String = format!("{region}-{instance_type}.json")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(safe)
    }

    /// Writes the card (write, then rename: a crash never leaves half a file).
    pub fn store(&self, card: &CachedRateCard) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(&card.region, card.instance_type.as_deref().unwrap_or("all"));
        let text = serde_json::to_string_pretty(card).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Every fresh card in the cache, as one rate card, and how many cards it holds. Unreadable
    /// or stale files are skipped (a cache is only a cache).
    pub fn fresh(&self, now: DateTime<Utc>) -> (RateCard, usize) {
        let mut card = RateCard::new();
        let mut n = 0;
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return (card, 0);
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(cached) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<CachedRateCard>(&t).ok())
                .filter(|c| c.is_fresh(now))
            else {
                continue;
            };
            for (p, o) in cached.offers {
                card.insert(p, o);
            }
            n += 1;
        }
        (card, n)
    }
}
