//! The inputs digest: SHA-256 (hex) of everything a plan was computed from, recorded with the
//! plan in the audit log (`plan_computed`). Equal digests mean equal inputs, so an auditor can
//! tell when two plans saw the same data, and a plan id names what it decided on. One
//! implementation for the daemon's cycles and `commitd plan`.
//!
//! What is hashed, each part framed by its name and length so that no two different inputs
//! run together into the same bytes: the source's name, the decision hour, the usage (every
//! group's key and every hour of its quantity, on-demand-equivalent and covered cost, bit for
//! bit), the rate card, the portfolio, the policy bounds and the method (the planner's
//! configuration, or `commitd plan`'s demand source and solver options).

use crate::domain::{Commitment, Hour, RateCard, UsageModel};
use crate::optimize::Constraints;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What a plan is computed from.
pub struct Inputs<'a, M: Serialize> {
    /// The usage source's name (a scenario's, a FOCUS directory's, `cost-explorer`).
    pub source: &'a str,
    pub at: Hour,
    pub usage: &'a UsageModel,
    pub rates: &'a RateCard,
    pub portfolio: &'a [Commitment],
    pub bounds: &'a Constraints,
    /// How the plan is computed: the planner configuration, or demand source and options.
    pub method: &'a M,
}

/// The digest of `inputs`. A part that cannot be serialized (none of the core's types fails)
/// is an error naming it rather than a silently shorter hash.
pub fn inputs_digest<M: Serialize>(inputs: &Inputs<'_, M>) -> Result<String, String> {
    let mut h = Framed(Sha256::new());
    h.part("source", inputs.source.as_bytes());
    h.part("at", &inputs.at.0.to_le_bytes());
    let u = inputs.usage;
    h.part(
        "range",
        &[u.range.start.0.to_le_bytes(), u.range.end.0.to_le_bytes()].concat(),
    );
    h.part("currency", u.currency.as_bytes());
    let last = u.last_observed.map_or(i64::MIN, |h| h.0);
    h.part("last_observed", &last.to_le_bytes());
    for g in &u.groups {
        h.part("group", g.group.to_string().as_bytes());
        for series in [&g.quantity, &g.ode, &g.covered_ode] {
            let bytes: Vec<u8> = series
                .iter()
                .flat_map(|v| v.to_bits().to_le_bytes())
                .collect();
            h.part("series", &bytes);
        }
    }
    // The rate card is a map keyed by product, which JSON cannot key: a list of pairs.
    let rates: Vec<_> = inputs.rates.products().collect();
    h.part("rates", &json("rate card", &rates)?);
    h.part("portfolio", &json("portfolio", &inputs.portfolio)?);
    h.part("bounds", &json("policy bounds", inputs.bounds)?);
    h.part("method", &json("method", inputs.method)?);
    Ok(hex::encode(h.0.finalize()))
}

/// A hash fed in named, length-prefixed parts.
struct Framed(Sha256);

impl Framed {
    fn part(&mut self, name: &str, bytes: &[u8]) {
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }
}

/// `v` as JSON bytes; the error names the part.
fn json<T: Serialize + ?Sized>(name: &str, v: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(v).map_err(|e| format!("inputs digest: serializing the {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        GroupSeries, HourRange, Instrument, Offer, PaymentOption, Product, Provider, UsageGroup,
    };

    fn usage() -> UsageModel {
        let group = UsageGroup::new(
            Provider::Aws,
            "us-east-1",
            "m5.large",
            None,
            "Linux",
            "Shared",
        );
        let mut g = GroupSeries::empty(group, 3);
        g.quantity = vec![1.0, 2.0, 3.0];
        UsageModel {
            range: HourRange::new(Hour(0), Hour(3)),
            currency: "USD".into(),
            groups: vec![g],
            commitments: Vec::new(),
            last_observed: Some(Hour(2)),
            rows_read: 3,
            ignored: Default::default(),
        }
    }

    fn digest(usage: &UsageModel, rates: &RateCard, method: &str) -> String {
        inputs_digest(&Inputs {
            source: "s",
            at: Hour(3),
            usage,
            rates,
            portfolio: &[],
            bounds: &Constraints::one_year_only(),
            method: &method,
        })
        .unwrap()
    }

    #[test]
    fn equal_inputs_give_equal_digests_and_any_change_a_different_one() {
        let u = usage();
        let rates = RateCard::new();
        let base = digest(&u, &rates, "forecast");
        assert_eq!(base, digest(&u, &rates, "forecast"));
        assert_ne!(base, digest(&u, &rates, "hindsight"));
        // One hour of usage, not only the totals.
        let mut moved = u.clone();
        moved.groups[0].quantity = vec![1.0, 3.0, 2.0];
        assert_ne!(base, digest(&moved, &rates, "forecast"));
        let mut priced = RateCard::new();
        let g = &u.groups[0].group;
        priced.insert(
            Product {
                provider: g.provider,
                region: g.region.clone(),
                instance_type: g.instance_type.clone(),
                os: g.os.clone(),
                tenancy: g.tenancy.clone(),
            },
            Offer {
                instrument: Instrument::OnDemand,
                term: None,
                payment: PaymentOption::NoUpfront,
                effective_hourly_rate: rust_decimal::Decimal::new(96, 3),
                upfront_share: rust_decimal::Decimal::ZERO,
            },
        );
        assert_ne!(base, digest(&u, &priced, "forecast"));
    }
}
