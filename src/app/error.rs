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
    /// A batch write with failing values: every failure with its attribute
    /// key, in key order (the first decides the code).
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
