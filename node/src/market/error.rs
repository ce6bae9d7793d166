//! Why the market refused a request, with the HTTP status the API answers.

use crate::requester::core::{Refusal, RequesterError};

/// Why the market refused a request; `status` is the HTTP status the API
/// answers with.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct MarketError {
    /// HTTP status.
    pub status: u16,
    /// For a person.
    pub message: String,
    /// Where (a query column, a spec field).
    pub at: Option<String>,
}

impl MarketError {
    pub(crate) fn bad_request(message: impl Into<String>, at: Option<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            at,
        }
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: 404,
            message: message.into(),
            at: None,
        }
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: message.into(),
            at: None,
        }
    }
}

impl From<RequesterError> for MarketError {
    fn from(e: RequesterError) -> Self {
        let status = match e.kind {
            Refusal::BadRequest => 400,
            Refusal::NotFound => 404,
            Refusal::Conflict => 409,
            Refusal::Unavailable => 503,
        };
        Self {
            status,
            message: e.message,
            at: None,
        }
    }
}
