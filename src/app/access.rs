//! Who holds a key, and what that holder may do: authentication from the
//! `authorization` header's value, authorization from the [`Scope`] a front
//! door names for the operation called.

use super::{App, Error, api_key::ApiKey};
use crate::domain::{self, Mode, Reason, WorkspaceId};

/// The holder of a valid key: the only workspace and mode a request sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The key's workspace: the only one the request can see.
    pub workspace: WorkspaceId,
    /// The key's mode: the persons the request can see.
    pub mode: Mode,
    /// Secret keys may call every operation; public keys only client writes.
    pub secret: bool,
}

/// What an operation requires of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Secret keys only.
    Secret,
    /// Secret keys, or public keys while `client_attribute_writes` is on.
    ClientWrite,
}

/// The one answer to every key that isn't a valid, live key, so that the
/// answer tells nothing about which keys exist.
fn invalid_key() -> Error {
    Error::refused(
        Reason::InvalidApiKey,
        "The API key is not valid: send `authorization: Bearer <key>` with a live key of your \
         workspace (sk_live_, sk_test_, pk_live_ or pk_test_).",
    )
}

impl App {
    /// The [`Principal`] of an `authorization` value (`Bearer <key>`; `None`
    /// when the request had none), if it may call an operation of `scope`.
    /// A malformed key is refused before any look-up; a known one is
    /// answered from the catalog.
    pub async fn authorize(
        &self,
        authorization: Option<&[u8]>,
        scope: Scope,
    ) -> Result<Principal, Error> {
        let Some(header) = authorization else {
            return Err(Error::refused(
                Reason::MissingApiKey,
                "No API key: send `authorization: Bearer <key>` (a gRPC metadata entry or HTTP header).",
            ));
        };
        let key = std::str::from_utf8(header)
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .and_then(|(_, key)| ApiKey::parse(key.trim()))
            .ok_or_else(invalid_key)?;
        let principal = self
            .catalog()
            .principal(key.hash())
            .await?
            .ok_or_else(invalid_key)?;
        if principal.secret {
            return Ok(principal);
        }
        match scope {
            Scope::Secret => Err(Error::refused(
                Reason::SecretKeyRequired,
                "This RPC needs a secret key (sk_live_ or sk_test_); public keys may only set and \
                 clear attribute values.",
            )),
            Scope::ClientWrite
                if self
                    .catalog()
                    .settings(principal.workspace)
                    .await?
                    .client_attribute_writes =>
            {
                if let Some(limiter) = &self.inner.per_key {
                    limiter.take(key.hash()).map_err(|wait| {
                        rate_limited(wait, "This public key is over its request rate")
                    })?;
                }
                Ok(principal)
            }
            Scope::ClientWrite => Err(Error::refused(
                Reason::ClientAttributeWritesDisabled,
                "Client-side attribute writes are off for this workspace: write with a secret key \
                 from your backend, or turn on `client_attribute_writes` in the workspace settings.",
            )),
        }
    }
}

/// `rate_limited`, retryable after `wait`; `what` says which limit.
pub(super) fn rate_limited(wait: std::time::Duration, what: &str) -> Error {
    Error::Limited(
        domain::Error::new(
            Reason::RateLimited,
            format!(
                "{what} on this server; retry in {} ms (RetryInfo, or Retry-After over REST).",
                wait.as_millis().max(1)
            ),
        ),
        wait,
    )
}
