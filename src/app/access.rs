//! Who holds a key, and what that holder may do: authentication from the
//! `authorization` header's value, authorization from the [`Scope`] a front
//! door names for the operation called.

use super::{App, Error, api_key::ApiKey, identity::parse_signature};
use crate::domain::{self, ApiKeyId, Mode, Reason, WorkspaceId, origin_allowed};

/// What a request presents for its key checks: the values of its
/// `authorization`, `origin` and `x-vevee-identity` headers (gRPC metadata
/// or HTTP headers; the REST face forwards them), `None` when absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// `Bearer <key>`.
    pub authorization: Option<&'a [u8]>,
    /// The browser's `Origin`, checked against `allowed_origins`.
    pub origin: Option<&'a [u8]>,
    /// The identity signature of the request's distinct_id.
    pub identity: Option<&'a [u8]>,
}

/// The holder of a valid key: the only workspace and mode a request sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The key's id, for logs (never the key itself).
    pub key_id: ApiKeyId,
    /// The key's workspace: the only one the request can see.
    pub workspace: WorkspaceId,
    /// The key's mode: the persons the request can see.
    pub mode: Mode,
    /// Secret keys may call every operation; public keys only client writes.
    pub secret: bool,
    /// The request's identity signature (`x-vevee-identity`, decoded), if
    /// it sent 64 hex digits; checked against the distinct_id by the write.
    pub identity: Option<[u8; 32]>,
}

/// What an operation requires of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Secret keys only.
    Secret,
    /// Secret keys, or public keys while `client_attribute_writes` is on.
    ClientWrite,
}

/// A request [`App::authorize`] refused.
#[derive(Debug)]
pub struct Denied {
    /// Why.
    pub error: Error,
    /// The key's holder, when the key itself is valid.
    pub principal: Option<Principal>,
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
    /// The [`Principal`] of a request's `credentials`, if it may call an
    /// operation of `scope`. A malformed key is refused before any look-up;
    /// a known one is answered from the catalog. Public keys must then come
    /// from an allowed origin and stay within their rate.
    ///
    /// A refusal names the key's [`Principal`] when the key is valid (a
    /// public key from a wrong origin, over its rate...), for the log line.
    pub async fn authorize(
        &self,
        credentials: Credentials<'_>,
        scope: Scope,
    ) -> Result<Principal, Denied> {
        let anonymous = |error| Denied {
            error,
            principal: None,
        };
        let Some(header) = credentials.authorization else {
            return Err(anonymous(Error::refused(
                Reason::MissingApiKey,
                "No API key: send `authorization: Bearer <key>` (a gRPC metadata entry or HTTP header).",
            )));
        };
        let key = std::str::from_utf8(header)
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .and_then(|(_, key)| ApiKey::parse(key.trim()))
            .ok_or_else(|| anonymous(invalid_key()))?;
        let principal = self
            .catalog()
            .principal(key.hash())
            .await
            .map_err(anonymous)?
            .ok_or_else(|| anonymous(invalid_key()))?;
        self.admit(principal, &key, credentials, scope)
            .await
            .map_err(|error| Denied {
                error,
                principal: Some(principal),
            })
    }

    /// The checks of a valid key's request.
    async fn admit(
        &self,
        mut principal: Principal,
        key: &ApiKey,
        credentials: Credentials<'_>,
        scope: Scope,
    ) -> Result<Principal, Error> {
        if principal.secret {
            return Ok(principal);
        }
        principal.identity = credentials.identity.and_then(parse_signature);
        let settings = match scope {
            Scope::Secret => None,
            Scope::ClientWrite => Some(self.catalog().settings(principal.workspace).await?),
        };
        match settings {
            None => Err(Error::refused(
                Reason::SecretKeyRequired,
                "This RPC needs a secret key (sk_live_ or sk_test_); public keys may only set and \
                 clear attribute values.",
            )),
            Some(settings) if settings.client_attribute_writes => {
                let origin = credentials.origin.and_then(|o| std::str::from_utf8(o).ok());
                if !origin_allowed(&settings.allowed_origins, origin) {
                    return Err(Error::refused(
                        Reason::OriginNotAllowed,
                        format!(
                            "This public key may not be used from the origin {}: add it to the \
                             workspace's allowed_origins, or call from an allowed site.",
                            origin.map_or("(none sent)".to_owned(), |o| format!("{o:?}"))
                        ),
                    ));
                }
                if let Some(limiter) = &self.inner.per_key {
                    limiter.take(key.hash()).map_err(|wait| {
                        rate_limited(wait, "This public key is over its request rate")
                    })?;
                }
                Ok(principal)
            }
            Some(_) => Err(Error::refused(
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
