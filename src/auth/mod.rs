//! Authentication (who holds this key?) and authorization (may that key
//! call this method?), in one tower layer in front of the API services.
//! Health and reflection are not behind it: they need no key.

mod key;

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use tonic::{
    Status,
    body::Body,
    codegen::{BoxFuture, http},
    server::NamedService,
};
use tower::Service;

pub use self::key::{ApiKey, KEY_LEN};
use crate::{
    api::ApiError,
    cache::Catalog,
    domain::{Error, Reason},
    storage::{self, ApiKeyRecord, KeyKind, Mode, NewApiKey, Store, Workspace, WorkspaceId},
};

/// Creates a key of `kind` and `mode` for `workspace`; only its hash is
/// stored, so the returned [`ApiKey`] is the one chance to show it.
pub async fn issue_key(
    store: &dyn Store,
    workspace: WorkspaceId,
    kind: KeyKind,
    mode: Mode,
) -> Result<(ApiKey, ApiKeyRecord), storage::Error> {
    let key = ApiKey::generate(kind, mode)
        .map_err(|e| storage::Error::Unexpected(format!("no randomness: {e}").into()))?;
    let record = store
        .insert_api_key(NewApiKey {
            workspace,
            kind,
            mode,
            hash: key.hash(),
            display_prefix: key.display_prefix(),
        })
        .await?;
    Ok((key, record))
}

/// Creates a workspace with one key of each kind and mode: `sk_live_`,
/// `pk_live_`, `sk_test_`, `pk_test_`.
pub async fn create_workspace(
    store: &dyn Store,
    name: &str,
) -> Result<(Workspace, Vec<(ApiKey, ApiKeyRecord)>), storage::Error> {
    let workspace = store.create_workspace(name).await?;
    let mut keys = Vec::with_capacity(4);
    for mode in [Mode::Live, Mode::Test] {
        for kind in [KeyKind::Secret, KeyKind::Public] {
            keys.push(issue_key(store, workspace.id, kind, mode).await?);
        }
    }
    Ok((workspace, keys))
}

/// The holder of a valid key, as handlers see it (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The key's workspace: the only one the request can see.
    pub workspace: WorkspaceId,
    /// The key's mode: the persons the request can see.
    pub mode: Mode,
    /// Secret keys may call every RPC; public keys only client writes.
    pub secret: bool,
}

/// What a method requires of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Secret keys only.
    Secret,
    /// Secret keys, or public keys while `client_attribute_writes` is on.
    ClientWrite,
}

/// The one table of which methods public keys may call; everything else
/// behind the layer needs a secret key.
fn scope(path: &str) -> Scope {
    match path {
        "/vevee.attributes.v1.AttributesService/SetAttribute"
        | "/vevee.attributes.v1.AttributesService/SetAttributes"
        | "/vevee.attributes.v1.AttributesService/ClearAttribute" => Scope::ClientWrite,
        _ => Scope::Secret,
    }
}

/// The one answer to every key that isn't a valid, live key, so that the
/// answer tells nothing about which keys exist.
fn invalid_key() -> Error {
    Error::new(
        Reason::InvalidApiKey,
        "The API key is not valid: send `authorization: Bearer <key>` with a live key of your \
         workspace (sk_live_, sk_test_, pk_live_ or pk_test_).",
    )
}

/// Resolves the request's key to a [`Principal`] allowed to call its method.
async fn authorize(
    catalog: &Catalog,
    path: &str,
    header: Option<http::HeaderValue>,
) -> Result<Principal, ApiError> {
    let Some(header) = header else {
        return Err(Error::new(
            Reason::MissingApiKey,
            "No API key: send gRPC metadata `authorization: Bearer <key>`.",
        )
        .into());
    };
    let key = header
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .and_then(|(_, key)| ApiKey::parse(key.trim()))
        .ok_or_else(invalid_key)?;
    let principal = catalog
        .principal(key.hash())
        .await?
        .ok_or_else(invalid_key)?;
    if principal.secret {
        return Ok(principal);
    }
    match scope(path) {
        Scope::Secret => Err(Error::new(
            Reason::SecretKeyRequired,
            "This RPC needs a secret key (sk_live_ or sk_test_); public keys may only set and \
             clear attribute values.",
        )
        .into()),
        Scope::ClientWrite
            if catalog
                .settings(principal.workspace)
                .await?
                .client_attribute_writes =>
        {
            Ok(principal)
        }
        Scope::ClientWrite => Err(Error::new(
            Reason::ClientAttributeWritesDisabled,
            "Client-side attribute writes are off for this workspace: write with a secret key \
             from your backend, or turn on `client_attribute_writes` in the workspace settings.",
        )
        .into()),
    }
}

/// A service that only sees requests with an authorized [`Principal`].
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    catalog: Catalog,
}

impl<S> Guarded<S> {
    /// Puts `inner` behind key checks that use `catalog`.
    pub fn new(inner: S, catalog: Catalog) -> Self {
        Self { inner, catalog }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Guarded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let catalog = self.catalog.clone();
        Box::pin(async move {
            // Only owned parts cross the await: the body is not Sync.
            let header = request.headers().get(http::header::AUTHORIZATION).cloned();
            let path = request.uri().path().to_owned();
            match authorize(&catalog, &path, header).await {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(err) => Ok(Status::from(err).into_http()),
            }
        })
    }
}

/// The principal the layer attached to a request.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .copied()
        .ok_or_else(|| Status::internal("internal error: the request skipped authentication"))
}

#[cfg(test)]
mod tests {
    use super::{Scope, scope};

    #[test]
    fn public_keys_may_only_call_the_client_writes() {
        let base = "/vevee.attributes.v1.AttributesService/";
        for method in ["SetAttribute", "SetAttributes", "ClearAttribute"] {
            assert_eq!(
                scope(&format!("{base}{method}")),
                Scope::ClientWrite,
                "{method}"
            );
        }
        for path in [
            "/vevee.attributes.v1.AttributesService/GetAttributes",
            "/vevee.attributes.v1.AttributeDefinitionsService/CreateAttributeDefinition",
            "/vevee.attributes.v1.WorkspaceSettingsService/UpdateWorkspaceSettings",
            "/vevee.attributes.v1.AttributesService/SomethingNew",
        ] {
            assert_eq!(scope(path), Scope::Secret, "{path}");
        }
    }
}
