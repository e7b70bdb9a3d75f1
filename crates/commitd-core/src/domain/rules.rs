//! The providers' market rules, in one place: what the replay assumes and what the markets
//! check before they call a cloud. AWS's Savings Plan return window, the Reserved Instance
//! Marketplace, splitting instances off a reservation, the remaining value of what is given up,
//! Azure's refund cap and Azure's exchange rules (`shared/domain.md` states each rule and its
//! source).
//!
//! Pure: the time of a decision is always passed in.

use crate::domain::{Commitment, CommitmentAmount, Hour, Instrument, Money, Provider};
use chrono::Datelike;
use serde::Serialize;

/// Azure refunds returned reservations up to USD 50,000 in any rolling 12 months (per billing
/// profile). The refund side of an *exchange* does not count against it: Microsoft's exchange
/// policy says "there's no penalty or annual limits for exchanges" and "the refund that results
/// from the exchange doesn't count against the refund limit" (Self-service exchanges and refunds
/// for Azure Reservations); [`check_azure_exchange`] therefore does not look at the cap.
pub const AZURE_REFUND_CAP: Money = Money::from_micros(50_000_000_000);

/// The first day (UTC) of Microsoft's announced rule: a reservation bought on or after it cannot
/// be exchanged into a savings plan, nor for services a savings plan covers (virtual machines
/// among them, which is every reservation commitd buys).
pub fn azure_savings_plan_exchange_cutoff() -> chrono::DateTime<chrono::Utc> {
    chrono::NaiveDate::from_ymd_opt(2027, 2, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// What an Azure exchange buys, as its rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AzureExchangeInto {
    /// A savings plan for compute (the "trade-in").
    SavingsPlan,
    /// Reservations; `savings_plan_service`: of a service a savings plan covers (virtual
    /// machines, dedicated hosts, App Service, ...).
    Reservation { savings_plan_service: bool },
}

/// One reservation given up in an Azure exchange: its name and when it was bought.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AzureExchangeSource {
    pub id: String,
    pub purchased: chrono::DateTime<chrono::Utc>,
}

/// Azure's rules on an exchange, judged before any call that changes something:
/// * at least one reservation is given up;
/// * **the 2027-02-01 rule** ([`azure_savings_plan_exchange_cutoff`]): a reservation bought on
///   or after that day is not exchanged into a savings plan or for a service a savings plan
///   covers;
/// * **the value rule**, when the amounts are known (Azure's `calculateExchange`): the new
///   purchases' lifetime commitment (`purchases`) is at least the refund of what is given up
///   (`refunds`, the remaining commitment).
///
/// The refund is not held to [`AZURE_REFUND_CAP`] (exchanges do not count against it).
pub fn check_azure_exchange(
    sources: &[AzureExchangeSource],
    into: AzureExchangeInto,
    amounts: Option<(Money, Money)>,
) -> Result<(), String> {
    if sources.is_empty() {
        return Err("an exchange gives up at least one reservation".into());
    }
    let cutoff = azure_savings_plan_exchange_cutoff();
    let covered = match into {
        AzureExchangeInto::SavingsPlan => Some("into a savings plan"),
        AzureExchangeInto::Reservation {
            savings_plan_service: true,
        } => Some("for reservations of a service a savings plan covers"),
        AzureExchangeInto::Reservation { .. } => None,
    };
    if let Some(what) = covered {
        let late: Vec<String> = sources
            .iter()
            .filter(|s| s.purchased >= cutoff)
            .map(|s| format!("{} (bought {})", s.id, s.purchased.format("%Y-%m-%d")))
            .collect();
        if !late.is_empty() {
            return Err(format!(
                "Azure does not exchange reservations bought on or after {} {what}: {}",
                cutoff.format("%Y-%m-%d"),
                late.join(", ")
            ));
        }
    }
    if let Some((refunds, purchases)) = amounts {
        if purchases < refunds {
            return Err(format!(
                "the new commitment of {purchases} USD is less than the {refunds} USD refunded for what is given up; Azure requires at least as much"
            ));
        }
    }
    Ok(())
}

/// The replay's model of the AWS Reserved Instance Marketplace. AWS's rules (`shared/domain.md`,
/// the EC2 User Guide "Sell in the Reserved Instance Marketplace"): only Standard RIs, active
/// for at least 30 days, with at least a month left; the seller sets the upfront price, the
/// buyer takes over the recurring fee, the term is rounded down to whole months, and AWS keeps
/// a 12% service fee on the upfront price. Whether and when a listing sells is the market's:
/// the replay assumes every listing sells `sale_delay_hours` after it is listed (the RI keeps
/// applying, and billing, until then) at `price_bp` of the upfront price that its whole months
/// left are worth pro rata. Both are assumptions, stated in every report; AWS's USD 20,000 a
/// year seller limit (raised on request) is not modelled.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Marketplace {
    /// Hours from listing to sale.
    pub sale_delay_hours: i64,
    /// Asking price: basis points of the pro rata upfront of the whole months left at the sale.
    pub price_bp: u32,
    /// AWS's service fee: basis points of the upfront price (12%).
    pub fee_bp: u32,
}

impl Marketplace {
    /// Hours in the month of AWS's "at least one month left" and "rounded down to the month".
    pub const MONTH_HOURS: i64 = 730;
    /// AWS lets an RI be listed once it has been active this long (30 days).
    pub const MIN_AGE_HOURS: i64 = 30 * 24;
}

impl Marketplace {
    /// When a listing of `c` made at `now` sells, and the whole months it then has left; or
    /// which of AWS's rules it breaks (30 days active, a whole month left at the sale).
    pub fn listing(&self, c: &Commitment, now: Hour) -> Result<(Hour, i64), String> {
        if now.since(c.start) < Self::MIN_AGE_HOURS {
            return Err(format!(
                "{} has been active {} h, under the 30 days AWS requires before a listing",
                c.id,
                now.since(c.start)
            ));
        }
        let sold = now.plus(self.sale_delay_hours.max(0));
        let months = c.end.since(sold) / Self::MONTH_HOURS;
        if months < 1 {
            return Err(format!(
                "{} would have less than a month left when it sells ({sold})",
                c.id
            ));
        }
        Ok((sold, months))
    }

    /// The asking price of `count` instances of `c` listed with `months` whole months left at
    /// the sale: `price_bp` of their share of its upfront, pro rata over those months (rounded
    /// down to the micro-dollar). What the daemon asks when it lists.
    pub fn asking_price(&self, c: &Commitment, count: u32, months: i64) -> Result<Money, String> {
        let CommitmentAmount::Instances(n) = c.amount else {
            return Err(format!("{} is a savings plan, not a reservation", c.id));
        };
        let term_months = (c.term.hours() / Self::MONTH_HOURS).max(1) as i128;
        let price =
            c.upfront.micros() as i128 * count as i128 * months as i128 * self.price_bp as i128
                / (n.max(1) as i128 * term_months * 10_000);
        i64::try_from(price)
            .map(Money::from_micros)
            .map_err(|_| format!("{}: asking price out of range", c.id))
    }

    /// What the seller receives for `price`: the price less AWS's fee (rounded down).
    pub fn proceeds(&self, price: Money) -> Money {
        let kept = 10_000 - i128::from(self.fee_bp.min(10_000));
        Money::from_micros(
            i64::try_from(i128::from(price.micros()) * kept / 10_000).unwrap_or(i64::MAX),
        )
    }
}

impl Default for Marketplace {
    fn default() -> Self {
        Marketplace {
            sale_delay_hours: 14 * 24,
            price_bp: 9_000,
            fee_bp: 1_200,
        }
    }
}

/// Splits `count` instances off a reservation at `now`: the part given up (its cost and upfront
/// pro rata, rounded down to the micro-dollar, ending at `now`, id `{id}~{now}~{instances
/// before}`) and what is
/// kept (the rest, same id; None when all is given up). Both keep the original start, so that
/// the hours before `now` bill as they did.
pub fn split_off(
    c: &Commitment,
    count: u32,
    now: Hour,
) -> Result<(Commitment, Option<Commitment>), String> {
    let CommitmentAmount::Instances(n) = c.amount else {
        return Err(format!("{} is a savings plan, not a reservation", c.id));
    };
    if count == 0 || count > n {
        return Err(format!(
            "{}: cannot give up {count} of its {n} instances",
            c.id
        ));
    }
    let share =
        |m: Money| Money::from_micros((m.micros() as i128 * count as i128 / n as i128) as i64);
    let mut gone = c.clone();
    gone.end = now.min(c.end);
    gone.amount = CommitmentAmount::Instances(count);
    gone.hourly_cost = share(c.hourly_cost);
    gone.upfront = share(c.upfront);
    let kept = (count < n).then(|| {
        let mut k = c.clone();
        k.amount = CommitmentAmount::Instances(n - count);
        k.hourly_cost = c.hourly_cost - gone.hourly_cost;
        k.upfront = c.upfront - gone.upfront;
        k
    });
    if kept.is_some() {
        // Unique even when one decision splits the same reservation twice (an exchange and a
        // return): the instances held before the split differ each time.
        gone.id = format!("{}~{}~{n}", c.id, now.0);
    }
    Ok((gone, kept))
}

/// The remaining value of `count` instances of `c` given up at `now`: their share of its
/// hourly cost (as [`split_off`] splits it) x the hours left. An exchange's sources are worth
/// this, and a return refunds it.
pub fn remaining_value(c: &Commitment, count: u32, now: Hour) -> Result<Money, String> {
    split_off(c, count, now)?
        .0
        .hourly_cost
        .times(c.end.since(now))
        .ok_or_else(|| format!("{}: remaining value out of range", c.id))
}

/// AWS's return window, judged at `at`: an active AWS savings plan of at most 100 USD/h,
/// returned within 7 days of its start and in the same UTC month; or a queued plan (not started
/// yet, any size), which is withdrawn instead (DeleteQueuedSavingsPlan).
pub fn check_savings_plan_return(
    c: &Commitment,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), String> {
    if c.provider != Provider::Aws
        || !matches!(
            c.instrument,
            Instrument::ComputeSavingsPlan | Instrument::Ec2InstanceSavingsPlan
        )
    {
        return Err(format!(
            "{} is a {} {}; only AWS savings plans can be returned",
            c.id, c.provider, c.instrument
        ));
    }
    let hour = Hour::from_datetime(at);
    if hour < c.start {
        return Ok(());
    }
    if c.hourly_cost > Money::from_units(100) {
        return Err(format!(
            "{} commits {} USD/hour; only plans of at most 100 USD/hour can be returned",
            c.id, c.hourly_cost
        ));
    }
    if hour.since(c.start) >= 7 * 24 {
        return Err(format!(
            "{} started {}, more than 7 days before {}",
            c.id,
            c.start.to_datetime().to_rfc3339(),
            at.to_rfc3339()
        ));
    }
    let start = c.start.to_datetime();
    if (start.year(), start.month()) != (at.year(), at.month()) {
        return Err(format!(
            "{} started in {}-{:02}; returns are only allowed in the same UTC month",
            c.id,
            start.year(),
            start.month()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod azure_exchange_tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn bought(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> AzureExchangeSource {
        AzureExchangeSource {
            id: "order/res".into(),
            purchased: Utc.with_ymd_and_hms(y, m, d, h, min, s).unwrap(),
        }
    }

    #[test]
    fn reservations_bought_from_2027_02_01_are_not_exchanged_into_savings_plan_territory() {
        let vm = AzureExchangeInto::Reservation {
            savings_plan_service: true,
        };
        let before = [bought(2027, 1, 31, 23, 59, 59)];
        let on = [bought(2027, 2, 1, 0, 0, 0)];
        assert!(check_azure_exchange(&before, AzureExchangeInto::SavingsPlan, None).is_ok());
        assert!(check_azure_exchange(&before, vm, None).is_ok());
        let e = check_azure_exchange(&on, AzureExchangeInto::SavingsPlan, None).unwrap_err();
        assert!(e.contains("2027-02-01 into a savings plan"), "{e}");
        assert!(e.contains("order/res (bought 2027-02-01)"), "{e}");
        let e = check_azure_exchange(&on, vm, None).unwrap_err();
        assert!(e.contains("a service a savings plan covers"), "{e}");
        // A service no savings plan covers is not held to the date.
        let other = AzureExchangeInto::Reservation {
            savings_plan_service: false,
        };
        assert!(check_azure_exchange(&on, other, None).is_ok());
        assert!(check_azure_exchange(&[], other, None).is_err());
    }

    #[test]
    fn the_new_commitment_covers_at_least_the_refund() {
        let s = [bought(2026, 5, 1, 0, 0, 0)];
        let into = AzureExchangeInto::SavingsPlan;
        let usd = Money::from_units;
        assert!(check_azure_exchange(&s, into, Some((usd(100), usd(100)))).is_ok());
        assert!(check_azure_exchange(&s, into, Some((usd(100), usd(250)))).is_ok());
        let e = check_azure_exchange(&s, into, Some((usd(100), Money::from_micros(99_999_999))))
            .unwrap_err();
        assert!(e.contains("less than the 100"), "{e}");
    }
}
