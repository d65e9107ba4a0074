//! CORS for browsers calling REST and gRPC-Web with public keys, answered
//! before anything else. Requests without an `Origin` (servers, grpcurl,
//! curl) never come from a browser and skip it, so native gRPC pays nothing.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderName, Method, Request, Response, StatusCode, header};
use tonic::{body::Body, codegen::BoxFuture};
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

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
    /// Any origin (mirrored), never credentials (keys travel in a header,
    /// not cookies), the API's methods, preflights cached for 2 hours.
    pub fn new() -> Self {
        let cors = CorsLayer::new()
            .allow_origin(AllowOrigin::mirror_request())
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
            .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
            .max_age(Duration::from_secs(7200));
        Self { cors }
    }
}

impl Default for BrowserCorsLayer {
    fn default() -> Self {
        Self::new()
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
