//! CORS for browsers calling REST and gRPC-Web with public keys, answered
//! before anything else. Requests without an `Origin` (servers, grpcurl,
//! curl) never come from a browser and skip it, so native gRPC pays nothing.
//!
//! A preflight carries no key, so it cannot be checked against its
//! workspace's `allowed_origins`: it is answered (with
//! `Access-Control-Allow-Origin`) only for origins that some workspace
//! allows ([`SharedPreflightOrigins`], kept current by the caller). Other
//! requests mirror any origin, so a page whose request was sent reads its
//! answer, `origin_not_allowed` included: that check is per workspace, on
//! the key's own settings, inside.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header, request};
use tonic::{body::Body, codegen::BoxFuture};
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

use crate::domain::SharedPreflightOrigins;

/// Request headers a browser may send: the key, JSON, gRPC-Web's own, a
/// deadline, the identity signature of browser writes and a request id.
const ALLOWED_HEADERS: [&str; 7] = [
    "authorization",
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "x-vevee-identity",
    "x-request-id",
];

/// Response headers a browser's script may read: gRPC-Web's status (its
/// errors are in headers), when to retry, and the request id to quote in a
/// support request.
const EXPOSED_HEADERS: [&str; 5] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "retry-after",
    "x-request-id",
];

/// Applies [`BrowserCors`].
#[derive(Clone)]
pub struct BrowserCorsLayer {
    cors: CorsLayer,
}

impl BrowserCorsLayer {
    /// The request's origin (mirrored; on preflights only if `preflights`
    /// allow it), never credentials (keys travel in a header, not
    /// cookies), the API's methods, preflights cached for 2 hours.
    pub fn new(preflights: SharedPreflightOrigins) -> Self {
        let allow = move |origin: &HeaderValue, parts: &request::Parts| {
            // Only preflights reach tower-http's Cors as OPTIONS (see BrowserCors::call).
            parts.method != Method::OPTIONS
                || origin
                    .to_str()
                    .is_ok_and(|origin| preflights.get().allows(origin))
        };
        let cors = CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(allow))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
            .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
            .max_age(Duration::from_secs(7200));
        Self { cors }
    }
}

impl<S: Clone> Layer<S> for BrowserCorsLayer {
    type Service = BrowserCors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BrowserCors {
            cors: self.cors.layer(inner.clone()),
            plain: inner,
        }
    }
}

/// tower-http's [`Cors`] for requests with an `Origin`, with preflights
/// answered 204 (tower-http says 200); other requests go straight inward.
#[derive(Clone)]
pub struct BrowserCors<S> {
    cors: Cors<S>,
    plain: S,
}

impl<S> Service<Request<Body>> for BrowserCors<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Send,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both halves wrap clones of one always-ready service stack.
        match self.plain.poll_ready(cx) {
            Poll::Ready(Ok(())) => self.cors.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let headers = request.headers();
        if !headers.contains_key(header::ORIGIN) {
            return Box::pin(self.plain.call(request));
        }
        let options = request.method() == Method::OPTIONS;
        if options && !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            // Not a preflight: the router answers 405 with Allow.
            return Box::pin(self.plain.call(request));
        }
        let future = self.cors.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            if options {
                *response.status_mut() = StatusCode::NO_CONTENT;
            }
            Ok(response)
        })
    }
}
