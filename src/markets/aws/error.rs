//! Errors of the AWS provider, and the one place that turns an SDK error into them.
//!
//! The distinction that matters to the executor is *what it may do next*:
//! * [`AwsError::Rejected`]: AWS answered with a 4xx (validation, not found, quota). Final: the
//!   same request will fail again; record it and stop.
//! * [`AwsError::Unavailable`] / [`AwsError::DeadlineExceeded`]: throttling or 5xx that outlasted
//!   the retry budget. Nothing was bought; a later cycle may try again.
//! * [`AwsError::NoResponse`]: the request left but no answer came back (connection dropped,
//!   unparseable reply). The purchase *may* have happened: the executor must reconcile with the
//!   inventory (or resend with the same client token) before buying anything else.
//!
//! Every variant that came from an HTTP exchange carries the request id AWS assigned, so the
//! audit log can point at the exact call.

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use std::time::Duration;

/// The result of one AWS call (or one paginated listing) with the request ids AWS returned.
#[derive(Clone, Debug, PartialEq)]
pub struct Called<T> {
    pub value: T,
    /// One per HTTP exchange that produced `value`, in order (several for a paginated listing).
    pub request_ids: Vec<String>,
}

impl<T> Called<T> {
    pub fn new(value: T, request_id: Option<&str>) -> Self {
        Called {
            value,
            request_ids: request_id.map(str::to_string).into_iter().collect(),
        }
    }

    /// The last request id (the one that produced the final answer).
    pub fn request_id(&self) -> Option<&str> {
        self.request_ids.last().map(String::as_str)
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Called<U> {
        Called {
            value: f(self.value),
            request_ids: self.request_ids,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// A final 4xx answer: retrying the same request cannot succeed.
    #[error("AWS {operation} rejected the request: {code}: {message} (HTTP {status}, request id {})", request_id.as_deref().unwrap_or("none"))]
    Rejected {
        operation: &'static str,
        code: String,
        message: String,
        status: u16,
        request_id: Option<String>,
    },
    /// Throttling or a server error that was still failing when the retry budget ran out.
    #[error("AWS {operation} still failing after retries: {code}: {message} (HTTP {status}, request id {})", request_id.as_deref().unwrap_or("none"))]
    Unavailable {
        operation: &'static str,
        code: String,
        message: String,
        status: u16,
        request_id: Option<String>,
    },
    /// The whole call (all attempts and backoff) took longer than the configured deadline.
    #[error("AWS {operation} did not complete within its deadline of {deadline:?}")]
    DeadlineExceeded {
        operation: &'static str,
        deadline: Option<Duration>,
    },
    /// No usable answer arrived: the request may or may not have taken effect.
    #[error("AWS {operation}: no usable response ({message}); a purchase or return may have been applied: reconcile before retrying")]
    NoResponse {
        operation: &'static str,
        message: String,
    },
    /// The answer parsed but lacks a field commitd needs, or holds a value it cannot use.
    #[error("AWS {operation}: response field '{field}': {message} (request id {})", request_id.as_deref().unwrap_or("none"))]
    BadResponse {
        operation: &'static str,
        field: String,
        message: String,
        request_id: Option<String>,
    },
    /// A rule refused the action (return window, invalid exchange quote, true-up over the
    /// limit); nothing was changed. `request_id` is the call whose answer led to the refusal.
    #[error("AWS {operation} refused: {reason} (request id {})", request_id.as_deref().unwrap_or("none"))]
    Refused {
        operation: &'static str,
        reason: String,
        request_id: Option<String>,
    },
    /// The request was refused locally, before anything was sent.
    #[error("{operation}: {message}")]
    Invalid {
        operation: &'static str,
        message: String,
    },
    /// Configuration or credentials could not be set up.
    #[error("AWS configuration: {0}")]
    Config(String),
}

impl AwsError {
    /// The request id of the exchange that failed, when AWS gave one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            AwsError::Rejected { request_id, .. }
            | AwsError::Unavailable { request_id, .. }
            | AwsError::BadResponse { request_id, .. }
            | AwsError::Refused { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// True when the outcome of a mutating call is unknown and must be reconciled.
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            AwsError::NoResponse { .. } | AwsError::DeadlineExceeded { .. }
        )
    }

    /// The AWS operation the error belongs to (None: configuration).
    pub fn operation(&self) -> Option<&'static str> {
        match self {
            AwsError::Rejected { operation, .. }
            | AwsError::Unavailable { operation, .. }
            | AwsError::DeadlineExceeded { operation, .. }
            | AwsError::NoResponse { operation, .. }
            | AwsError::BadResponse { operation, .. }
            | AwsError::Refused { operation, .. }
            | AwsError::Invalid { operation, .. } => Some(operation),
            AwsError::Config(_) => None,
        }
    }

    /// True for AWS's throttling answers: AWS refuses those before acting on the request.
    pub fn is_throttling(&self) -> bool {
        match self {
            AwsError::Unavailable { code, status, .. }
            | AwsError::Rejected { code, status, .. } => {
                *status == 429 || THROTTLING_CODES.contains(&code.as_str())
            }
            _ => false,
        }
    }

    /// True when the call may have been applied although it reported an error, on a call AWS
    /// does not deduplicate ([`Resend::Repeats`]): no answer (lost connection, deadline), a
    /// server error (AWS may fail after acting), or an answer that arrived but could not be
    /// used. Throttling is not: AWS throttles before acting. On every other call such errors
    /// are merely transient: a read changed nothing, and a deduplicated call resent with its
    /// client token cannot act twice.
    pub fn may_have_applied(&self) -> bool {
        let Some(operation) = self.operation() else {
            return false;
        };
        if resend_rule(operation) != Resend::Repeats {
            return false;
        }
        match self {
            AwsError::NoResponse { .. }
            | AwsError::DeadlineExceeded { .. }
            | AwsError::BadResponse { .. } => true,
            AwsError::Unavailable { status, .. } => *status >= 500 && !self.is_throttling(),
            _ => false,
        }
    }

    /// True when a later attempt may succeed (throttling, 5xx, deadline, lost response).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AwsError::Unavailable { .. }
                | AwsError::DeadlineExceeded { .. }
                | AwsError::NoResponse { .. }
        )
    }

    /// The AWS error code of a service answer ("ValidationException", "RequestLimitExceeded").
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Rejected { code, .. } | AwsError::Unavailable { code, .. } => Some(code),
            _ => None,
        }
    }

    pub(crate) fn invalid(operation: &'static str, message: impl Into<String>) -> Self {
        AwsError::Invalid {
            operation,
            message: message.into(),
        }
    }

    pub(crate) fn bad(
        operation: &'static str,
        field: &str,
        message: impl Into<String>,
        request_id: Option<&str>,
    ) -> Self {
        AwsError::BadResponse {
            operation,
            field: field.to_string(),
            message: message.into(),
            request_id: request_id.map(str::to_string),
        }
    }
}

/// The name of the dry run of PurchaseReservedInstancesOffering in errors: a dry run never
/// buys, so its failures are never ambiguous (see [`resend_rule`]).
pub const PURCHASE_RI_DRY_RUN: &str = "PurchaseReservedInstancesOffering (dry run)";

/// What a second copy of a call does at AWS, which decides what an unanswered call may have
/// done. The one table of it: [`AwsError::may_have_applied`] and the market's
/// `deduplicates` follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// Reads, quotes and dry runs: they change nothing.
    Harmless,
    /// Mutations AWS deduplicates by a client token (CreateSavingsPlan, ReturnSavingsPlan,
    /// CreateReservedInstancesListing), or that are idempotent by state (DeleteQueuedSavingsPlan
    /// of a plan already deleted is refused, CreateTags writes the same tag again): the same
    /// request resent cannot act twice.
    Deduplicated,
    /// Mutations without a client token (PurchaseReservedInstancesOffering,
    /// AcceptReservedInstancesExchangeQuote): a second copy acts a second time, so after an
    /// unknown outcome the account must be looked at, never the call resent. Any operation
    /// not known to be harmless or deduplicated is taken to be one of these.
    Repeats,
}

pub fn resend_rule(operation: &str) -> Resend {
    match operation {
        "CreateSavingsPlan"
        | "ReturnSavingsPlan"
        | "CreateReservedInstancesListing"
        | "DeleteQueuedSavingsPlan"
        | "CreateTags" => Resend::Deduplicated,
        PURCHASE_RI_DRY_RUN | "AssumeRole" => Resend::Harmless,
        op if op.starts_with("Describe") || op.starts_with("Get") => Resend::Harmless,
        _ => Resend::Repeats,
    }
}

/// Error codes AWS uses for throttling; the SDK retries these, and when they outlast the retry
/// budget the result is [`AwsError::Unavailable`], not a final rejection.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "EC2ThrottledException",
];

/// Maps an SDK error (after the SDK's own retries) to an [`AwsError`].
pub(crate) fn from_sdk<E>(
    operation: &'static str,
    deadline: Option<Duration>,
    err: SdkError<E, HttpResponse>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let request_id = service
                .raw()
                .headers()
                .get("x-amzn-requestid")
                .or_else(|| service.raw().headers().get("x-amz-request-id"))
                .map(str::to_string);
            let e = service.err();
            let code = e.code().unwrap_or("Unknown").to_string();
            let message = e.message().unwrap_or("").to_string();
            if status >= 500 || status == 429 || THROTTLING_CODES.contains(&code.as_str()) {
                AwsError::Unavailable {
                    operation,
                    code,
                    message,
                    status,
                    request_id,
                }
            } else {
                AwsError::Rejected {
                    operation,
                    code,
                    message,
                    status,
                    request_id,
                }
            }
        }
        SdkError::TimeoutError(_) => AwsError::DeadlineExceeded {
            operation,
            deadline,
        },
        other @ SdkError::ConstructionFailure(_) => AwsError::Invalid {
            operation,
            message: format!("request could not be built: {}", chain(&other)),
        },
        other => AwsError::NoResponse {
            operation,
            message: chain(&other),
        },
    }
}

/// "dispatch failure: io error: connection refused": each cause once, without Debug dumps.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}
