//! Connecting to Azure Resource Manager: the endpoint, the credential, the transport, the retry
//! policy, and the calls commitd makes through the generated clients of
//! `azure_mgmt_reservations` (Microsoft.Capacity 2022-11-01) and `azure_mgmt_billingbenefits`
//! (Microsoft.BillingBenefits 2022-11-01).
//!
//! * **Endpoint**: `endpoint_url` (from `--endpoint-url` or `[azure] endpoint_url`), else
//!   `AZURE_RESOURCE_MANAGER_ENDPOINT`, else the public cloud `https://management.azure.com`.
//! * **Requests** are built and sent by the SDK (`.send()`: URL, api-version, bearer token,
//!   retry policy); **answers** are read as raw JSON into [`super::model`] (see there why).
//! * **Long-running operations** (a reservation purchase, a savings plan alias) are polled here,
//!   not by the SDK: its generated poller re-requests the original URL with GET and looks only
//!   for a top-level `status`, which fails on these operations. [`AzureClients::poll`] follows
//!   `Azure-AsyncOperation` (else `Location`), honouring `Retry-After`.
//! * **Listings** follow `nextLink` page by page, only to the endpoint's own host (the bearer
//!   token is never sent elsewhere).

use super::credential::{AzureCredential, CredentialSource};
use super::error::AzureError;
use super::model::{
    AsyncOperation, CalculatePrice, ExchangeOperation, Page, RefundResponse, Reservation,
    ReservationOrder, SavingsPlan, SavingsPlanOrder, SavingsPlanOrderAlias, ValidateResponse,
};
use super::transport::HyperTransport;
use azure_core::headers::{HeaderName, Headers};
use azure_core::{
    ClientOptions, Context, ExponentialRetryOptions, HttpClient, Method, Pipeline, Request,
    RetryOptions, TransportOptions, Url,
};
use azure_mgmt_billingbenefits::package_2022_11_01 as benefits;
use azure_mgmt_reservations::package_2022_11 as capacity;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

pub const PUBLIC_ENDPOINT: &str = "https://management.azure.com";
pub const API_VERSION: &str = "2022-11-01";
/// Pages of one listing at most (a loop in `nextLink` stops here, named).
const MAX_PAGES: usize = 10_000;

/// The Azure RBAC actions of the calls this client makes, by call. The custom role in
/// `deploy/azure/commitd-role.json` grants exactly these (checked by `tests/deploy`).
pub const RBAC_ACTIONS: &[(&str, &str)] = &[
    (
        "ReservationOrder_List, ReservationOrder_Get",
        "Microsoft.Capacity/reservationorders/read",
    ),
    (
        "Reservation_List, Reservation_ListAll",
        "Microsoft.Capacity/reservationorders/reservations/read",
    ),
    (
        "ReservationOrder_Calculate",
        "Microsoft.Capacity/calculateprice/action",
    ),
    (
        "ReservationOrder_Purchase",
        "Microsoft.Capacity/reservationorders/write",
    ),
    (
        "ReservationOrder_Purchase",
        "Microsoft.Capacity/reservationorders/purchase/action",
    ),
    (
        "CalculateRefund_Post",
        "Microsoft.Capacity/reservationorders/calculaterefund/action",
    ),
    (
        "Return_Post",
        "Microsoft.Capacity/reservationorders/return/action",
    ),
    (
        "Reservation_ListRevisions",
        "Microsoft.Capacity/reservationorders/reservations/revisions/read",
    ),
    (
        "CalculateExchange_Post",
        "Microsoft.Capacity/calculateexchange/action",
    ),
    ("Exchange_Post", "Microsoft.Capacity/exchange/action"),
    (
        "SavingsPlanOrder_List",
        "Microsoft.BillingBenefits/savingsPlanOrders/read",
    ),
    (
        "SavingsPlan_List, SavingsPlan_ListAll",
        "Microsoft.BillingBenefits/savingsPlanOrders/savingsPlans/read",
    ),
    (
        "ValidatePurchase",
        "Microsoft.BillingBenefits/validate/action",
    ),
    (
        "SavingsPlanOrderAlias_Create",
        "Microsoft.BillingBenefits/savingsPlanOrderAliases/write",
    ),
    (
        "SavingsPlanOrderAlias_Get",
        "Microsoft.BillingBenefits/savingsPlanOrderAliases/read",
    ),
];

/// Retries, deadlines and polling of every Azure call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureRetrySettings {
    /// Retries after the first attempt (throttling, 5xx, lost connections), by azure_core's
    /// exponential policy; a `Retry-After` longer than its delay wins.
    pub max_retries: u32,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Bound on all the retries of one call.
    pub max_total_ms: u64,
    /// Bound on one attempt (connect, send, the whole answer).
    pub attempt_timeout_ms: u64,
    /// Bound on polling one long-running operation.
    pub operation_timeout_ms: u64,
    /// Wait between polls when Azure sends no `Retry-After`.
    pub poll_interval_ms: u64,
    /// The longest `Retry-After` honoured between polls.
    pub max_poll_interval_ms: u64,
}

impl Default for AzureRetrySettings {
    fn default() -> Self {
        AzureRetrySettings {
            max_retries: 4,
            initial_delay_ms: 500,
            max_delay_ms: 30_000,
            max_total_ms: 120_000,
            attempt_timeout_ms: 30_000,
            operation_timeout_ms: 600_000,
            poll_interval_ms: 5_000,
            max_poll_interval_ms: 60_000,
        }
    }
}

/// How to reach Azure.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureSettings {
    /// Resource Manager endpoint; None: `AZURE_RESOURCE_MANAGER_ENDPOINT`, else the public cloud.
    pub endpoint_url: Option<String>,
    /// Login host; None: `AZURE_AUTHORITY_HOST`, else `https://login.microsoftonline.com`.
    pub authority_host: Option<String>,
    /// Use the VM's / pod's managed identity (IMDS) instead of the environment credential.
    pub managed_identity: bool,
    /// The IMDS token endpoint (a local peer in tests); None: 169.254.169.254.
    pub managed_identity_endpoint: Option<String>,
    /// Where purchases are billed: `/subscriptions/{id}` or a billing account / profile scope.
    /// A purchase whose spec names an account (a subscription id) is billed there instead.
    pub billing_scope_id: Option<String>,
    pub retry: AzureRetrySettings,
}

impl AzureSettings {
    /// The endpoint in force: the setting, else `AZURE_RESOURCE_MANAGER_ENDPOINT`, else public.
    pub fn endpoint(&self, var: &dyn Fn(&str) -> Option<String>) -> Result<Url, AzureError> {
        let (from, text) = match &self.endpoint_url {
            Some(u) => ("endpoint_url", u.clone()),
            None => match var("AZURE_RESOURCE_MANAGER_ENDPOINT").filter(|v| !v.trim().is_empty()) {
                Some(u) => ("AZURE_RESOURCE_MANAGER_ENDPOINT", u),
                None => ("the public cloud", PUBLIC_ENDPOINT.to_string()),
            },
        };
        let url = Url::parse(text.trim())
            .map_err(|e| AzureError::Config(format!("{from} '{text}' is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(AzureError::Config(format!(
                "{from} '{text}' is not an http:// or https:// URL"
            )));
        }
        Ok(url)
    }
}

/// A value and the request ids (`x-ms-request-id`) of the calls that produced it.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer<T> {
    pub value: T,
    pub request_ids: Vec<String>,
}

impl<T> Answer<T> {
    pub fn request_id(&self) -> String {
        self.request_ids.join(",")
    }
}

/// What a mutating long-running call left: Azure accepted it (`request_id`), and polling it
/// either confirmed the end (`Ok`) or failed (`Err`: the operation may still complete; read the
/// resource back).
#[derive(Debug)]
pub struct Accepted {
    pub request_id: String,
    pub status: u16,
    pub poll: Result<(), AzureError>,
}

/// Everything commitd owns at Azure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inventory {
    pub reservation_orders: Vec<ReservationOrder>,
    pub reservations: Vec<Reservation>,
    pub savings_plan_orders: Vec<SavingsPlanOrder>,
    pub savings_plans: Vec<SavingsPlan>,
}

/// The generated clients and what they share.
#[derive(Clone)]
pub struct AzureClients {
    pub capacity: capacity::Client,
    /// Microsoft.Capacity without retries, for the calls that carry no client token.
    capacity_once: capacity::Client,
    pub benefits: benefits::Client,
    pipeline: Pipeline,
    credential: Arc<AzureCredential>,
    endpoint: Url,
    scopes: Vec<String>,
    settings: AzureSettings,
}

impl std::fmt::Debug for AzureClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureClients")
            .field("endpoint", &self.endpoint.as_str())
            .field("credential", &self.credential)
            .finish()
    }
}

fn header<'a>(headers: &'a Headers, name: &'static str) -> Option<&'a str> {
    headers.get_optional_str(&HeaderName::from_static(name))
}

fn request_id(headers: &Headers) -> Option<String> {
    header(headers, "x-ms-request-id")
        .or_else(|| header(headers, "x-ms-correlation-request-id"))
        .map(str::to_string)
}

impl AzureClients {
    /// Builds the clients with the process environment's credential and endpoint.
    pub fn connect(settings: &AzureSettings) -> Result<AzureClients, AzureError> {
        let var = |k: &str| std::env::var(k).ok();
        Self::connect_with(settings, &var)
    }

    /// Like [`AzureClients::connect`] with an explicit environment (`var` reads a variable).
    /// Fails on configuration only; the first token is requested at the first call.
    pub fn connect_with(
        settings: &AzureSettings,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AzureClients, AzureError> {
        let endpoint = settings.endpoint(var)?;
        let r = &settings.retry;
        let transport = Arc::new(
            HyperTransport::new(Duration::from_millis(r.attempt_timeout_ms.max(1)))
                .map_err(AzureError::Config)?,
        );
        let mut source = CredentialSource::from_env(var, settings.managed_identity)?;
        if let (CredentialSource::ManagedIdentity { endpoint, .. }, Some(custom)) =
            (&mut source, &settings.managed_identity_endpoint)
        {
            endpoint.clone_from(custom);
        }
        let authority = settings
            .authority_host
            .clone()
            .or_else(|| var("AZURE_AUTHORITY_HOST"));
        let credential = Arc::new(AzureCredential::new(
            source,
            authority.as_deref(),
            transport.clone(),
        ));
        let retry = RetryOptions::exponential(
            ExponentialRetryOptions::default()
                .max_retries(r.max_retries)
                .initial_delay(Duration::from_millis(r.initial_delay_ms))
                .max_delay(Duration::from_millis(r.max_delay_ms))
                .max_total_elapsed(Duration::from_millis(r.max_total_ms)),
        );
        let http: Arc<dyn HttpClient> = transport;
        let transport_options = TransportOptions::new(http);
        let config = |e: azure_core::Error| AzureError::Config(format!("building the client: {e}"));
        let capacity = capacity::ClientBuilder::new(credential.clone())
            .endpoint(endpoint.clone())
            .transport(transport_options.clone())
            .retry(retry.clone())
            .build()
            .map_err(config)?;
        // Calls without a client token (a return) are sent once: a retry after a lost answer
        // could act twice; the market settles such an outcome by reading Azure's state.
        let capacity_once = capacity::ClientBuilder::new(credential.clone())
            .endpoint(endpoint.clone())
            .transport(transport_options.clone())
            .retry(RetryOptions::none())
            .build()
            .map_err(config)?;
        let benefits = benefits::ClientBuilder::new(credential.clone())
            .endpoint(endpoint.clone())
            .transport(transport_options.clone())
            .retry(retry.clone())
            .build()
            .map_err(config)?;
        let pipeline = Pipeline::new(
            Some("commitd"),
            Some(env!("CARGO_PKG_VERSION")),
            ClientOptions::new(transport_options).retry(retry),
            Vec::new(),
            Vec::new(),
        );
        let scope = endpoint
            .join(azure_core::auth::DEFAULT_SCOPE_SUFFIX)
            .map_err(|e| AzureError::Config(format!("token scope: {e}")))?
            .to_string();
        Ok(AzureClients {
            capacity,
            capacity_once,
            benefits,
            pipeline,
            credential,
            endpoint,
            scopes: vec![scope],
            settings: settings.clone(),
        })
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    pub fn settings(&self) -> &AzureSettings {
        &self.settings
    }

    pub fn credential(&self) -> &AzureCredential {
        &self.credential
    }

    /// A GET through the shared pipeline (retries, transport) with a bearer token: for the
    /// pages after the first, the listings the generated clients only offer as typed streams,
    /// and long-running operation status URLs.
    async fn get_raw(
        &self,
        operation: &'static str,
        url: Url,
    ) -> Result<(u16, Headers, bytes::Bytes), AzureError> {
        use azure_core::auth::TokenCredential;
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        let token = self
            .credential
            .get_token(&scopes)
            .await
            .map_err(|e| AzureError::from_core(operation, e))?;
        let mut req = Request::new(url, Method::Get);
        req.insert_header("authorization", format!("Bearer {}", token.token.secret()));
        let response = self
            .pipeline
            .send(&Context::default(), &mut req)
            .await
            .map_err(|e| AzureError::from_core(operation, e))?;
        let status = u16::from(response.status());
        let (_, headers, body) = response.deconstruct();
        let bytes = body.collect().await.map_err(|e| AzureError::NoResponse {
            operation,
            message: format!("reading the answer: {e}"),
        })?;
        Ok((status, headers, bytes))
    }

    /// Whether `url` is on the endpoint's own origin (scheme, host, port).
    fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.endpoint.scheme()
            && url.host_str() == self.endpoint.host_str()
            && url.port_or_known_default() == self.endpoint.port_or_known_default()
    }

    /// Every item of a listing at `path`, following `nextLink`.
    pub async fn list_all<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
    ) -> Result<Answer<Vec<T>>, AzureError> {
        let mut url = self.endpoint.join(path).map_err(|e| AzureError::Invalid {
            operation,
            message: format!("path {path}: {e}"),
        })?;
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION);
        let mut items = Vec::new();
        let mut request_ids = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..MAX_PAGES {
            seen.insert(url.to_string());
            let (_, headers, body) = self.get_raw(operation, url.clone()).await?;
            request_ids.extend(request_id(&headers));
            let page: Page<T> = serde_json::from_slice(&body)
                .map_err(|e| AzureError::bad(operation, "value", e.to_string()))?;
            items.extend(page.value);
            let Some(next) = page.next_link.filter(|n| !n.trim().is_empty()) else {
                return Ok(Answer {
                    value: items,
                    request_ids,
                });
            };
            let mut next_url = Url::parse(&next)
                .or_else(|_| self.endpoint.join(&next))
                .map_err(|e| AzureError::bad(operation, "nextLink", format!("'{next}': {e}")))?;
            if !self.same_origin(&next_url) {
                return Err(AzureError::bad(
                    operation,
                    "nextLink",
                    format!(
                        "'{}' is not on the endpoint {}; not followed (the token goes to the endpoint only)",
                        next_url.origin().ascii_serialization(),
                        self.endpoint.origin().ascii_serialization()
                    ),
                ));
            }
            if !next_url.query_pairs().any(|(k, _)| k == "api-version") {
                next_url
                    .query_pairs_mut()
                    .append_pair("api-version", API_VERSION);
            }
            if seen.contains(next_url.as_str()) {
                return Err(AzureError::bad(
                    operation,
                    "nextLink",
                    format!("points back at a page already read ({next_url})"),
                ));
            }
            url = next_url;
        }
        Err(AzureError::bad(
            operation,
            "nextLink",
            format!("more than {MAX_PAGES} pages"),
        ))
    }

    /// Polls a long-running operation from the headers of its first answer until it ends.
    pub async fn poll(&self, operation: &'static str, first: &Headers) -> Result<(), AzureError> {
        self.poll_body(operation, first).await.map(|_| ())
    }

    /// Like [`AzureClients::poll`], and the final answer's body: the `Azure-AsyncOperation`
    /// status body (an operation whose result is that body, `final-state-via:
    /// azure-async-operation`), or the `Location`'s final answer; None when there was nothing
    /// to poll.
    pub async fn poll_body(
        &self,
        operation: &'static str,
        first: &Headers,
    ) -> Result<Option<bytes::Bytes>, AzureError> {
        let r = &self.settings.retry;
        let async_op = header(first, "azure-asyncoperation").map(str::to_string);
        let location = header(first, "location").map(str::to_string);
        let (target, via_status) = match (async_op, location) {
            (Some(u), _) => (u, true),
            (None, Some(u)) => (u, false),
            (None, None) => return Ok(None),
        };
        let url = Url::parse(&target).map_err(|e| {
            AzureError::bad(
                operation,
                "Azure-AsyncOperation",
                format!("'{target}': {e}"),
            )
        })?;
        if !self.same_origin(&url) {
            return Err(AzureError::bad(
                operation,
                "Azure-AsyncOperation",
                format!(
                    "'{}' is not on the endpoint; not polled",
                    url.origin().ascii_serialization()
                ),
            ));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(r.operation_timeout_ms);
        let mut wait = retry_after(first, r);
        let mut last = "Accepted".to_string();
        loop {
            if tokio::time::Instant::now() + wait > deadline {
                return Err(AzureError::OperationTimedOut {
                    operation,
                    seconds: r.operation_timeout_ms / 1000,
                    status: last,
                });
            }
            azure_core::sleep(wait).await;
            let (status, headers, body) = self.get_raw(operation, url.clone()).await?;
            wait = retry_after(&headers, r);
            if via_status {
                let op: AsyncOperation = serde_json::from_slice(&body)
                    .map_err(|e| AzureError::bad(operation, "status", e.to_string()))?;
                let s = op.status.unwrap_or_default();
                match s.to_ascii_lowercase().as_str() {
                    "succeeded" => return Ok(Some(body)),
                    "failed" | "canceled" | "cancelled" => {
                        let detail = op.error.map(|e| {
                            format!(
                                "{}: {}",
                                e.code.unwrap_or_default(),
                                e.message.unwrap_or_default()
                            )
                        });
                        return Err(AzureError::OperationFailed {
                            operation,
                            status: s,
                            message: detail.unwrap_or_else(|| "no error given".into()),
                        });
                    }
                    _ => last = s,
                }
            } else if status != 202 {
                return Ok(Some(body));
            }
        }
    }

    /// Reads a mutating call's first answer and polls it; errors before Azure accepted the
    /// call are returned as they are, errors after it are in [`Accepted::poll`].
    async fn accept(
        &self,
        operation: &'static str,
        sent: azure_core::Result<azure_core::Response>,
    ) -> Result<Accepted, AzureError> {
        let response = sent.map_err(|e| AzureError::from_core(operation, e))?;
        let status = u16::from(response.status());
        let headers = response.headers().clone();
        let request_id = request_id(&headers).unwrap_or_default();
        let poll = self.poll(operation, &headers).await;
        Ok(Accepted {
            request_id,
            status,
            poll,
        })
    }

    async fn read<T: DeserializeOwned>(
        operation: &'static str,
        response: azure_core::Response,
    ) -> Result<Answer<T>, AzureError> {
        let rid = request_id(response.headers());
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| AzureError::NoResponse {
                operation,
                message: format!("reading the answer: {e}"),
            })?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| AzureError::bad(operation, "(body)", e.to_string()))?;
        Ok(Answer {
            value,
            request_ids: rid.into_iter().collect(),
        })
    }

    /// A reservation order by id, with its plan information (prices); None: no such order.
    pub async fn reservation_order(
        &self,
        order_id: &str,
    ) -> Result<Option<Answer<ReservationOrder>>, AzureError> {
        const OP: &str = "ReservationOrder_Get";
        let sent = self
            .capacity
            .reservation_order_client()
            .get(order_id)
            .expand("planInformation")
            .send()
            .await;
        match sent {
            Ok(r) => Ok(Some(Self::read(OP, r.into_raw_response()).await?)),
            Err(e) => match AzureError::from_core(OP, e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    pub async fn reservations_in_order(
        &self,
        order_id: &str,
    ) -> Result<Answer<Vec<Reservation>>, AzureError> {
        self.list_all(
            "Reservation_List",
            &format!("/providers/Microsoft.Capacity/reservationOrders/{order_id}/reservations"),
        )
        .await
    }

    /// `calculatePrice` for a reservation purchase request.
    pub async fn calculate_price(
        &self,
        body: capacity::models::PurchaseRequest,
    ) -> Result<Answer<CalculatePrice>, AzureError> {
        const OP: &str = "ReservationOrder_Calculate";
        let r = self
            .capacity
            .reservation_order_client()
            .calculate(body)
            .send()
            .await
            .map_err(|e| AzureError::from_core(OP, e))?;
        Self::read(OP, r.into_raw_response()).await
    }

    /// PUT `reservationOrders/{order_id}`: the purchase, idempotent on the order id.
    pub async fn purchase_reservation(
        &self,
        order_id: &str,
        body: capacity::models::PurchaseRequest,
    ) -> Result<Accepted, AzureError> {
        const OP: &str = "ReservationOrder_Purchase";
        let sent = self
            .capacity
            .reservation_order_client()
            .purchase(order_id, body)
            .send()
            .await
            .map(|r| r.into_raw_response());
        self.accept(OP, sent).await
    }

    /// A savings plan order alias by name; None: never created.
    pub async fn savings_plan_alias(
        &self,
        name: &str,
    ) -> Result<Option<Answer<SavingsPlanOrderAlias>>, AzureError> {
        const OP: &str = "SavingsPlanOrderAlias_Get";
        let sent = self
            .benefits
            .savings_plan_order_alias_client()
            .get(name)
            .send()
            .await;
        match sent {
            Ok(r) => Ok(Some(Self::read(OP, r.into_raw_response()).await?)),
            Err(e) => match AzureError::from_core(OP, e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// PUT `savingsPlanOrderAliases/{name}`: the purchase, idempotent on the alias name.
    pub async fn create_savings_plan_alias(
        &self,
        name: &str,
        body: benefits::models::SavingsPlanOrderAliasModel,
    ) -> Result<Accepted, AzureError> {
        const OP: &str = "SavingsPlanOrderAlias_Create";
        let sent = self
            .benefits
            .savings_plan_order_alias_client()
            .create(name, body)
            .send()
            .await
            .map(|r| r.into_raw_response());
        self.accept(OP, sent).await
    }

    pub async fn savings_plans_in_order(
        &self,
        order_id: &str,
    ) -> Result<Answer<Vec<SavingsPlan>>, AzureError> {
        self.list_all(
            "SavingsPlan_List",
            &format!(
                "/providers/Microsoft.BillingBenefits/savingsPlanOrders/{order_id}/savingsPlans"
            ),
        )
        .await
    }

    /// `validate` for savings plan purchases.
    pub async fn validate_savings_plans(
        &self,
        body: benefits::models::SavingsPlanPurchaseValidateRequest,
    ) -> Result<Answer<ValidateResponse>, AzureError> {
        const OP: &str = "ValidatePurchase";
        let r = self
            .benefits
            .validate_purchase(body)
            .send()
            .await
            .map_err(|e| AzureError::from_core(OP, e))?;
        Self::read(OP, r.into_raw_response()).await
    }

    /// `calculateRefund`: what returning `quantity` instances of `reservation_id` (its full
    /// resource id) would give back, with the refund policy's verdict and a session id for
    /// [`AzureClients::return_reservation`]. Changes nothing.
    pub async fn calculate_refund(
        &self,
        order_id: &str,
        reservation_id: &str,
        quantity: u32,
    ) -> Result<Answer<RefundResponse>, AzureError> {
        const OP: &str = "CalculateRefund_Post";
        let body = capacity::models::CalculateRefundRequest {
            id: Some(format!(
                "/providers/microsoft.capacity/reservationOrders/{order_id}"
            )),
            properties: Some(capacity::models::CalculateRefundRequestProperties {
                scope: Some("Reservation".into()),
                reservation_to_return: Some(to_return(reservation_id, quantity, OP)?),
            }),
        };
        let r = self
            .capacity
            .calculate_refund_client()
            .post(order_id, body)
            .send()
            .await
            .map_err(|e| AzureError::from_core(OP, e))?;
        Self::read(OP, r.into_raw_response()).await
    }

    /// `return`: gives `quantity` instances of `reservation_id` back under the session of a
    /// `calculateRefund`. Azure answers 202 with the refund; the call carries no client token,
    /// so an answer lost after Azure acted is only settled by reading the reservation back.
    pub async fn return_reservation(
        &self,
        order_id: &str,
        reservation_id: &str,
        quantity: u32,
        session_id: &str,
        reason: &str,
    ) -> Result<Answer<RefundResponse>, AzureError> {
        const OP: &str = "Return_Post";
        let body = capacity::models::RefundRequest {
            properties: Some(capacity::models::RefundRequestProperties {
                session_id: Some(session_id.to_string()),
                scope: Some("Reservation".into()),
                reservation_to_return: Some(to_return(reservation_id, quantity, OP)?),
                return_reason: Some(reason.to_string()),
            }),
        };
        // `.send()`: awaiting the builder would poll and parse the answer as an order.
        let r = self
            .capacity_once
            .return_client()
            .post(order_id, body)
            .send()
            .await
            .map_err(|e| AzureError::from_core(OP, e))?;
        Self::read(OP, r.into_raw_response()).await
    }

    /// The revisions of a reservation (`Reservation_ListRevisions`): one item per change, each
    /// with its `etag` (revision number), quantity and `effectiveDateTime`.
    pub async fn reservation_revisions(
        &self,
        order_id: &str,
        reservation_id: &str,
    ) -> Result<Answer<Vec<Reservation>>, AzureError> {
        self.list_all(
            "Reservation_ListRevisions",
            &format!(
                "/providers/Microsoft.Capacity/reservationOrders/{order_id}/reservations/{reservation_id}/revisions"
            ),
        )
        .await
    }

    /// `calculateExchange`: what giving up the reservations and buying the purchases of `body`
    /// would refund and cost, the exchange policy's verdict, and a session id for
    /// [`AzureClients::exchange`]. Long-running (answered at its `Azure-AsyncOperation`);
    /// changes nothing, so it goes through the retrying client.
    pub async fn calculate_exchange(
        &self,
        body: capacity::models::CalculateExchangeRequest,
    ) -> Result<Answer<ExchangeOperation>, AzureError> {
        const OP: &str = "CalculateExchange_Post";
        let r = self
            .capacity
            .calculate_exchange_client()
            .post(body)
            .send()
            .await
            .map_err(|e| AzureError::from_core(OP, e))?;
        self.final_answer(OP, r.into_raw_response()).await
    }

    /// `exchange` under the session of a `calculateExchange`. It carries no client token, so it
    /// is sent **once** (the client without retries): any error after sending may hide an
    /// exchange Azure made, which only reading Azure's state settles. The answer is the
    /// operation's final body (polled); an error while polling is returned as it is, after the
    /// call was accepted.
    pub async fn exchange(
        &self,
        session_id: &str,
    ) -> Result<Answer<ExchangeOperation>, AzureError> {
        const OP: &str = "Exchange_Post";
        let body = capacity::models::ExchangeRequest {
            properties: Some(capacity::models::ExchangeRequestProperties {
                session_id: Some(session_id.to_string()),
            }),
        };
        let r = self
            .capacity_once
            .exchange_client()
            .post(body)
            .send()
            .await
            .map_err(|e| AzureError::from_core(OP, e))?;
        self.final_answer(OP, r.into_raw_response()).await
    }

    /// The result of a long-running POST: its first answer's body when complete (200), else
    /// the body its status URL ends with.
    async fn final_answer<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        response: azure_core::Response,
    ) -> Result<Answer<T>, AzureError> {
        let status = u16::from(response.status());
        let headers = response.headers().clone();
        let mut request_ids: Vec<String> = request_id(&headers).into_iter().collect();
        // The first answer is read whole even when it is only an acceptance: an answer that
        // breaks off is an error here, not a success.
        let first = response
            .into_body()
            .collect()
            .await
            .map_err(|e| AzureError::NoResponse {
                operation,
                message: format!("reading the answer: {e}"),
            })?;
        let body = if status == 200 && !first.is_empty() {
            first
        } else {
            match self.poll_body(operation, &headers).await? {
                Some(b) => b,
                None => first,
            }
        };
        let value = serde_json::from_slice(&body)
            .map_err(|e| AzureError::bad(operation, "(body)", e.to_string()))?;
        request_ids.dedup();
        Ok(Answer { value, request_ids })
    }

    /// Reservation orders (with their plan information), reservations, savings plan orders and
    /// savings plans: four listings, paging followed, then one GET per live reservation order
    /// for its price (the listing does not carry it).
    pub async fn inventory(&self) -> Result<Answer<Inventory>, AzureError> {
        let mut ids = Vec::new();
        let orders: Answer<Vec<ReservationOrder>> = self
            .list_all(
                "ReservationOrder_List",
                "/providers/Microsoft.Capacity/reservationOrders",
            )
            .await?;
        ids.extend(orders.request_ids);
        let reservations: Answer<Vec<Reservation>> = self
            .list_all(
                "Reservation_ListAll",
                "/providers/Microsoft.Capacity/reservations",
            )
            .await?;
        ids.extend(reservations.request_ids);
        let sp_orders: Answer<Vec<SavingsPlanOrder>> = self
            .list_all(
                "SavingsPlanOrder_List",
                "/providers/Microsoft.BillingBenefits/savingsPlanOrders",
            )
            .await?;
        ids.extend(sp_orders.request_ids);
        let plans: Answer<Vec<SavingsPlan>> = self
            .list_all(
                "SavingsPlan_ListAll",
                "/providers/Microsoft.BillingBenefits/savingsPlans",
            )
            .await?;
        ids.extend(plans.request_ids);
        let mut detailed = Vec::with_capacity(orders.value.len());
        for order in orders.value {
            let live = reservations
                .value
                .iter()
                .any(|r| super::market::order_of(&r.id) == Some(order.name.to_ascii_lowercase()));
            if live && order.properties.plan_information.is_none() {
                if let Some(full) = self.reservation_order(&order.name).await? {
                    ids.extend(full.request_ids);
                    detailed.push(full.value);
                    continue;
                }
            }
            detailed.push(order);
        }
        Ok(Answer {
            value: Inventory {
                reservation_orders: detailed,
                reservations: reservations.value,
                savings_plan_orders: sp_orders.value,
                savings_plans: plans.value,
            },
            request_ids: ids,
        })
    }
}

fn to_return(
    reservation_id: &str,
    quantity: u32,
    operation: &'static str,
) -> Result<capacity::models::ReservationToReturn, AzureError> {
    let quantity = i32::try_from(quantity)
        .ok()
        .filter(|q| *q > 0)
        .ok_or_else(|| {
            AzureError::bad(
                operation,
                "quantity",
                format!("{quantity} is not 1 or more"),
            )
        })?;
    Ok(capacity::models::ReservationToReturn {
        reservation_id: Some(reservation_id.to_string()),
        quantity: Some(quantity),
    })
}

/// The wait a `Retry-After` (seconds) asks for, within the configured bounds.
fn retry_after(headers: &Headers, r: &AzureRetrySettings) -> Duration {
    let asked = header(headers, "retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000))
        .unwrap_or(r.poll_interval_ms);
    Duration::from_millis(asked.min(r.max_poll_interval_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_the_setting_then_the_environment_then_the_public_cloud() {
        let none = |_: &str| None;
        let env = |k: &str| {
            (k == "AZURE_RESOURCE_MANAGER_ENDPOINT")
                .then(|| "https://management.usgovcloudapi.net".to_string())
        };
        let mut s = AzureSettings::default();
        assert_eq!(
            s.endpoint(&none).unwrap().as_str(),
            "https://management.azure.com/"
        );
        assert_eq!(
            s.endpoint(&env).unwrap().host_str(),
            Some("management.usgovcloudapi.net")
        );
        s.endpoint_url = Some("http://127.0.0.1:8080".into());
        assert_eq!(s.endpoint(&env).unwrap().port(), Some(8080));
        s.endpoint_url = Some("ftp://x".into());
        let e = s.endpoint(&none).unwrap_err().to_string();
        assert!(e.contains("endpoint_url 'ftp://x'"), "{e}");
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let r = AzureRetrySettings::default();
        let mut h = Headers::new();
        assert_eq!(retry_after(&h, &r), Duration::from_millis(5_000));
        h.insert("retry-after", "2");
        assert_eq!(retry_after(&h, &r), Duration::from_secs(2));
        h.insert("retry-after", "3600");
        assert_eq!(retry_after(&h, &r), Duration::from_secs(60));
    }
}
