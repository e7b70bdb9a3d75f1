//! commitd's answer types read the official 2022-11-01 examples (shared/data/azure) as Azure
//! shapes them: seven fractional digits, dates without times, amounts as JSON numbers, and the
//! savings plan timestamps the generated billingbenefits models cannot read.

use crate::common::shared::shared;
use commitd::domain::{CommitmentAmount, Instrument, Money, PaymentOption, Term};
use commitd::markets::azure::market::{
    quoted_total, reservation_commitment, savings_plan_commitment,
};
use commitd::markets::azure::model::{
    CalculatePrice, Page, Reservation, ReservationOrder, SavingsPlan, SavingsPlanOrder,
    SavingsPlanOrderAlias, ValidateResponse,
};
use rust_decimal::Decimal;
use serde_json::Value;

fn example(api: &str, name: &str) -> Value {
    let path = shared().join(format!("data/azure/{api}/examples/{name}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn body<T: serde::de::DeserializeOwned>(api: &str, name: &str, status: &str) -> T {
    let v = example(api, name)["responses"][status]["body"].clone();
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{name} {status}: {e}"))
}

const CAP: &str = "microsoft.capacity-2022-11-01";
const BB: &str = "microsoft.billingbenefits-2022-11-01";

#[test]
fn reservation_examples_parse_and_become_commitments() {
    let orders: Page<ReservationOrder> = body(CAP, "GetReservationOrders.json", "200");
    assert_eq!(orders.value.len(), 3);
    assert!(orders.next_link.is_some());
    assert_eq!(orders.value[1].properties.original_quantity, Some(9));
    let order: ReservationOrder = body(CAP, "GetReservationOrderDetails.json", "200");
    assert_eq!(
        order
            .properties
            .expiry_date
            .map(|d| d.to_string())
            .as_deref(),
        Some("2018-08-30")
    );
    let purchased: ReservationOrder = body(CAP, "PurchaseReservationOrder.json", "202");
    assert_eq!(
        purchased.properties.provisioning_state.as_deref(),
        Some("Succeeded")
    );
    let list: Page<Reservation> = body(CAP, "GetReservations.json", "200");
    let r = &list.value[0];
    assert_eq!(r.properties.quantity, Some(2));
    assert_eq!(
        r.properties
            .utilization
            .as_ref()
            .and_then(|u| u.percent_over(30)),
        Some(Decimal::new(5, 2))
    );
    let (c, note) = reservation_commitment(r, None, &list.value).unwrap();
    assert_eq!(c.instrument, Instrument::AzureReservation);
    assert_eq!(c.term, Term::THREE_YEARS);
    assert_eq!(c.amount, CommitmentAmount::Instances(2));
    assert_eq!(c.instance_type.as_deref(), Some("Standard_D1"));
    assert_eq!(c.region.as_deref(), Some("westus"));
    assert!(c.end > c.start);
    // The listing carries no price: the commitment says its cost is unknown, not zero silently.
    assert!(note.unwrap().contains("no USD price"));
    let in_order: Page<Reservation> = body(CAP, "GetReservationsFromOrder.json", "200");
    assert!(!in_order.value.is_empty());
}

#[test]
fn calculate_price_example_gives_an_exact_total() {
    let price: CalculatePrice = body(CAP, "CalculateReservationOrder.json", "200");
    // The example's schedule lists 3 months, not the term's 12: the total is pricingCurrencyTotal.
    assert_eq!(
        quoted_total(&price, Term::ONE_YEAR).unwrap(),
        Decimal::from(46)
    );
    let mut monthly = price.clone();
    let p = monthly.properties.as_mut().unwrap();
    let one = p.payment_schedule[1].clone();
    p.payment_schedule = vec![one; 12];
    assert_eq!(
        quoted_total(&monthly, Term::ONE_YEAR).unwrap(),
        Decimal::from(46 * 12)
    );
    let mut euro = price;
    euro.properties
        .as_mut()
        .unwrap()
        .pricing_currency_total
        .as_mut()
        .unwrap()
        .currency_code = Some("EUR".into());
    let e = quoted_total(&euro, Term::ONE_YEAR).unwrap_err();
    assert!(e.contains("EUR"), "{e}");
}

#[test]
fn savings_plan_examples_parse_with_their_real_timestamps() {
    let list: Page<SavingsPlan> = body(BB, "SavingsPlansList.json", "200");
    assert!(!list.value.is_empty());
    let sp = &list.value[0];
    assert!(sp.properties.expiry_date_time.is_some());
    let c = savings_plan_commitment(sp).unwrap();
    assert_eq!(c.instrument, Instrument::AzureSavingsPlan);
    assert_eq!(
        c.amount,
        CommitmentAmount::HourlySpend(Money::parse("0.001").unwrap())
    );
    assert_eq!(c.payment, PaymentOption::AllUpfront);
    assert_eq!(c.region, None);
    let orders: Page<SavingsPlanOrder> = body(BB, "SavingsPlanOrderList.json", "200");
    assert_eq!(
        orders.value[0].properties.billing_plan.as_deref(),
        Some("P1M")
    );
    let alias: SavingsPlanOrderAlias = body(BB, "SavingsPlanOrderAliasCreate.json", "200");
    assert!(alias
        .properties
        .savings_plan_order_id
        .unwrap()
        .contains("savingsPlanOrders/"));
    let got: SavingsPlanOrderAlias = body(BB, "SavingsPlanOrderAliasGet.json", "200");
    assert_eq!(
        got.properties.commitment.unwrap().amount,
        Some(Decimal::new(1523, 2))
    );
    let validated: ValidateResponse = body(BB, "SavingsPlanValidatePurchase.json", "200");
    let results = &validated.benefits[0].benefits;
    assert_eq!(results[0].valid, Some(false));
    assert_eq!(
        results[0].reason_code.as_deref(),
        Some("CustomerCannotPurchaseSavingsPlan")
    );
    assert_eq!(results[1].valid, Some(true));
}

#[test]
fn the_generated_savings_plan_model_cannot_read_azure_timestamps() {
    // Why commitd parses BillingBenefits answers itself (docs/azure.md): if this starts to
    // pass, the SDK was fixed and model.rs can use the generated types again.
    let v = example(BB, "SavingsPlansList.json")["responses"]["200"]["body"]["value"][0].clone();
    let parsed = serde_json::from_value::<
        azure_mgmt_billingbenefits::package_2022_11_01::models::SavingsPlanModel,
    >(v);
    assert!(
        parsed.is_err(),
        "the generated model now parses Azure's dates"
    );
}
