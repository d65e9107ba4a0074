//! The one error type of the application layer: every front door (gRPC, the
//! CLI) converts from it, and only from it.

use crate::{
    domain::{self, Reason},
    storage,
};

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A failure the client can act on; its reason decides the code.
    #[error(transparent)]
    Refused(#[from] domain::Error),
    /// A batch write with failing values: every failure with the request
    /// field it concerns (`values.<key>`, `updates[<i>]`), in request order
    /// (the first decides the code).
    #[error("{} of the values failed", .0.len())]
    Batch(Vec<(String, domain::Error)>),
    /// A public key over its rate (`rate_limited`), and when a retry can
    /// pass.
    #[error("{0}")]
    Limited(domain::Error, std::time::Duration),
    /// A defect or a broken database: logged in full, shown to clients as a
    /// bare internal error.
    #[error("internal error: {0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// The refusal of `reason` with `message`, naming no attribute.
    pub(crate) fn refused(reason: Reason, message: impl Into<String>) -> Self {
        Error::Refused(domain::Error::new(reason, message))
    }
}

impl Error {
    /// The error of an update's storage call: a refusal names each failing
    /// update by its position in the request (`updates[<i>]`); the
    /// request_id refusals get their reasons.
    pub(crate) fn from_update(err: storage::Error) -> Self {
        match err {
            storage::Error::Refused(failures) => Error::Batch(
                failures
                    .into_iter()
                    .map(|(i, e)| (format!("updates[{i}]"), e))
                    .collect(),
            ),
            storage::Error::RequestReused => Error::refused(
                Reason::RequestIdReused,
                "This request_id was already used in the last 24 hours for a different request \
                 (another body or another RPC); send a new request_id for a new request, and \
                 the same request_id only to retry the very same request.",
            ),
            storage::Error::RequestInProgress => Error::refused(
                Reason::RequestInProgress,
                "The first request with this request_id is still being applied; retry in a \
                 moment to get its response (it will not be applied twice).",
            ),
            other => other.into(),
        }
    }
}

impl From<storage::Error> for Error {
    fn from(err: storage::Error) -> Self {
        match err {
            storage::Error::Unavailable(source) => {
                tracing::warn!(error = %source, "database unavailable");
                Error::refused(
                    Reason::Unavailable,
                    "The database cannot be reached right now; the request was not applied and is \
                     safe to retry with backoff.",
                )
            }
            other => Error::Internal(other.into()),
        }
    }
}
