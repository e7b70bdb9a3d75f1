//! Errors of the Azure provider, and the one place that turns an azure_core error into them.
//!
//! As for AWS, what matters to the executor is what it may do next:
//! * [`AzureError::Rejected`]: Azure answered 4xx (validation, not found, authorization). Final.
//! * [`AzureError::Unavailable`]: throttling (429) or 5xx that outlasted the retries.
//! * [`AzureError::NoResponse`]: the request left, no usable answer came back. A purchase *may*
//!   have been made: the order is looked up by its id before anything else.
//! * [`AzureError::OperationFailed`]: a long-running operation ended `Failed` / `Canceled`.
//! * [`AzureError::Credential`]: no token (the message names the credential and the variable,
//!   never a secret).

#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    #[error("Azure {operation} rejected the request: {code}: {message} (HTTP {status})")]
    Rejected {
        operation: &'static str,
        code: String,
        message: String,
        status: u16,
    },
    #[error("Azure {operation} still failing after retries: {code}: {message} (HTTP {status})")]
    Unavailable {
        operation: &'static str,
        code: String,
        message: String,
        status: u16,
    },
    #[error("Azure {operation}: no usable response ({message}); a purchase may have been applied: look the order up before retrying")]
    NoResponse {
        operation: &'static str,
        message: String,
    },
    #[error("Azure {operation}: response field '{field}': {message}")]
    BadResponse {
        operation: &'static str,
        field: String,
        message: String,
    },
    #[error("Azure {operation}: the long-running operation ended {status}: {message}")]
    OperationFailed {
        operation: &'static str,
        status: String,
        message: String,
    },
    #[error("Azure {operation}: the long-running operation did not finish within {seconds} s (last status {status})")]
    OperationTimedOut {
        operation: &'static str,
        seconds: u64,
        status: String,
    },
    /// A token could not be obtained. `transient`: the token endpoint failed or did not answer
    /// (a later attempt may work); otherwise the credential itself was refused or is missing.
    #[error("Azure credential ({credential}): {message}")]
    Credential {
        credential: &'static str,
        message: String,
        transient: bool,
    },
    /// Refused locally, before anything was sent.
    #[error("{operation}: {message}")]
    Invalid {
        operation: &'static str,
        message: String,
    },
    #[error("Azure configuration: {0}")]
    Config(String),
}

impl AzureError {
    pub fn operation(&self) -> Option<&'static str> {
        match self {
            AzureError::Rejected { operation, .. }
            | AzureError::Unavailable { operation, .. }
            | AzureError::NoResponse { operation, .. }
            | AzureError::BadResponse { operation, .. }
            | AzureError::OperationFailed { operation, .. }
            | AzureError::OperationTimedOut { operation, .. }
            | AzureError::Invalid { operation, .. } => Some(operation),
            AzureError::Credential { .. } | AzureError::Config(_) => None,
        }
    }

    /// The HTTP status of a service answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            AzureError::Rejected { status, .. } | AzureError::Unavailable { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// A 404: the resource does not exist (an order id never used, an alias never created).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True when a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            AzureError::Unavailable { .. }
            | AzureError::NoResponse { .. }
            | AzureError::OperationTimedOut { .. } => true,
            AzureError::Credential { transient, .. } => *transient,
            _ => false,
        }
    }

    pub(crate) fn bad(operation: &'static str, field: &str, message: impl Into<String>) -> Self {
        AzureError::BadResponse {
            operation,
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Maps an azure_core error (after its retry policy) for `operation`.
    pub fn from_core(operation: &'static str, err: azure_core::Error) -> AzureError {
        use azure_core::error::ErrorKind;
        // Our credential's own error passes through the SDK unchanged: give it back as it was.
        let err = if matches!(err.kind(), ErrorKind::Credential) {
            match err.into_downcast::<AzureError>() {
                Ok(own) => return own,
                Err(other) => other,
            }
        } else {
            err
        };
        if let Some(http) = err.as_http_error() {
            let status = u16::from(http.status());
            let code = http.error_code().unwrap_or("Unknown").to_string();
            let message = http.error_message().unwrap_or("").to_string();
            return if status >= 500 || status == 429 || status == 408 {
                AzureError::Unavailable {
                    operation,
                    code,
                    message,
                    status,
                }
            } else {
                AzureError::Rejected {
                    operation,
                    code,
                    message,
                    status,
                }
            };
        }
        // A credential error passes through the SDK as our own Credential error.
        let message = super::transport::error_chain(&err);
        match err.kind() {
            ErrorKind::HttpResponse { status, error_code } => {
                let status = u16::from(*status);
                let code = error_code.clone().unwrap_or_else(|| "Unknown".into());
                if status >= 500 || status == 429 {
                    AzureError::Unavailable {
                        operation,
                        code,
                        message,
                        status,
                    }
                } else {
                    AzureError::Rejected {
                        operation,
                        code,
                        message,
                        status,
                    }
                }
            }
            ErrorKind::Credential => AzureError::Credential {
                credential: "token",
                message,
                transient: false,
            },
            ErrorKind::DataConversion => AzureError::bad(operation, "(body)", message),
            ErrorKind::Io => AzureError::NoResponse { operation, message },
            _ => AzureError::NoResponse { operation, message },
        }
    }
}
