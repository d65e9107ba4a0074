//! The key layer in front of the API services: each request's key is
//! checked by [`App::authorize`] against the [`Scope`] its method needs,
//! and the [`Principal`] is attached for the handler. Health and reflection
//! are not behind it: they need no key.

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

use crate::{
    app::{App, Credentials, Principal, Scope},
    proto::v1::attributes_service_server,
};

/// The one table of which methods public keys may call; everything else
/// behind the layer needs a secret key. `path` is `/<service>/<method>`.
fn scope(path: &str) -> Scope {
    let (service, method) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .unwrap_or_default();
    match (service, method) {
        (
            attributes_service_server::SERVICE_NAME,
            "SetAttribute" | "SetAttributes" | "UpdateAttributes" | "ClearAttribute",
        ) => Scope::ClientWrite,
        _ => Scope::Secret,
    }
}

/// A service that only sees requests with an authorized [`Principal`].
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    app: App,
}

impl<S> Guarded<S> {
    /// Puts `inner` behind the key checks of `app`.
    pub fn new(inner: S, app: App) -> Self {
        Self { inner, app }
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
        let app = self.app.clone();
        Box::pin(async move {
            // Only owned parts cross the await: the body is not Sync. The
            // origin is the browser's header on REST and gRPC-Web, and the
            // `origin` metadata on gRPC: one check for all three.
            let headers = request.headers();
            let [authorization, origin, identity] = [
                http::header::AUTHORIZATION.as_str(),
                "origin",
                "x-vevee-identity",
            ]
            .map(|name| headers.get(name).cloned());
            fn bytes(v: &Option<http::HeaderValue>) -> Option<&[u8]> {
                v.as_ref().map(http::HeaderValue::as_bytes)
            }
            let credentials = Credentials {
                authorization: bytes(&authorization),
                origin: bytes(&origin),
                identity: bytes(&identity),
            };
            let scope = scope(request.uri().path());
            match app.authorize(credentials, scope).await {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    let mut response = inner.call(request).await?;
                    // For the log line of a failed call (workspace, key id).
                    response.extensions_mut().insert(principal);
                    Ok(response)
                }
                Err(denied) => {
                    let mut response = Status::from(denied.error).into_http();
                    if let Some(principal) = denied.principal {
                        response.extensions_mut().insert(principal);
                    }
                    Ok(response)
                }
            }
        })
    }
}

/// The principal the layer attached to a request.
pub(super) fn principal<T>(request: &tonic::Request<T>) -> Result<Principal, Status> {
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
        for method in [
            "SetAttribute",
            "SetAttributes",
            "UpdateAttributes",
            "ClearAttribute",
        ] {
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
