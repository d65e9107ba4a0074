//! The tower layer in front of every RPC: one tracing span per call (method,
//! gRPC status code, latency; on failure the reason, workspace, key id, peer
//! and request id), the `grpc_server_*` metrics, a server-wide concurrency
//! limit and a per-request timeout, each answered with a gRPC status a
//! client can act on.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tonic::{
    Code, Status,
    body::Body,
    codegen::{BoxFuture, http},
    transport::server::TcpConnectInfo,
};
use tonic_types::StatusExt;
use tower::{Layer, Service};
use tracing::{Instrument, field::Empty};

use crate::{
    app::Principal,
    domain::Reason,
    metrics::{GrpcMethod, Metrics},
};

/// Marks a call the REST face made (an extension of the request): it is
/// counted once, in `http_server_*`, not again as gRPC.
#[derive(Debug, Clone, Copy)]
pub struct FromRest;

/// The `grpc_server_*` handles of every method the server serves, resolved
/// once, so that a call pays a map lookup and atomic adds.
#[derive(Clone)]
pub struct RpcMetrics {
    methods: Arc<HashMap<String, Arc<GrpcMethod>>>,
    /// Paths no service serves; a client's made-up path never becomes a label.
    unknown: Arc<GrpcMethod>,
}

impl RpcMetrics {
    /// The handles of the API's methods (from the build's descriptor set),
    /// health's and reflection's.
    pub fn new(metrics: &Metrics) -> Result<Self, prost_reflect::DescriptorError> {
        let pool = prost_reflect::DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)?;
        let mut methods = HashMap::new();
        let mut add = |kind, service: &str, method: &str| {
            methods.insert(
                format!("/{service}/{method}"),
                Arc::new(metrics.grpc_method(kind, service, method)),
            );
        };
        for service in pool.services() {
            for method in service.methods() {
                let kind = match (method.is_client_streaming(), method.is_server_streaming()) {
                    (false, false) => "unary",
                    (false, true) => "server_stream",
                    (true, false) => "client_stream",
                    (true, true) => "bidi_stream",
                };
                add(kind, service.full_name(), method.name());
            }
        }
        add("unary", "grpc.health.v1.Health", "Check");
        add("server_stream", "grpc.health.v1.Health", "Watch");
        for reflection in [
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            add("bidi_stream", reflection, "ServerReflectionInfo");
        }
        Ok(Self {
            methods: Arc::new(methods),
            unknown: Arc::new(metrics.grpc_method("unary", "unknown", "unknown")),
        })
    }

    fn method(&self, path: &str) -> Arc<GrpcMethod> {
        self.methods.get(path).unwrap_or(&self.unknown).clone()
    }
}

/// Configures [`RpcService`] around each routed service.
#[derive(Clone)]
pub struct RpcLayer {
    /// Shared by every connection: the limit is on the whole server, unlike
    /// tonic's `concurrency_limit_per_connection`.
    permits: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
    metrics: RpcMetrics,
}

impl RpcLayer {
    /// At most `concurrency_limit` RPCs in flight, each given `timeout` to
    /// answer, each counted in `metrics`.
    pub fn new(concurrency_limit: usize, timeout: Duration, metrics: RpcMetrics) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(concurrency_limit)),
            timeout,
            metrics,
        }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            permits: self.permits.clone(),
            timeout: self.timeout,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`RpcLayer`].
#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    permits: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
    metrics: RpcMetrics,
}

impl<S> Service<http::Request<Body>> for RpcService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let request_id = request_id(request.headers());
        // The REST face set one already; gRPC calls get theirs here.
        request.headers_mut().insert(REQUEST_ID, request_id.clone());
        let span = tracing::info_span!(
            "rpc",
            method = %request.uri().path(),
            trace_id = Empty,
            code = Empty,
            latency_ms = Empty,
            reason = Empty,
            workspace = Empty,
            key_id = Empty,
            peer = Empty,
            request_id = Empty,
        );
        if let Some(trace) = trace_id(request.headers()) {
            span.record("trace_id", trace);
        }
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr);
        // Over the limit the request is answered at once rather than queued:
        // a queue would only turn overload into timeouts.
        let permit = self.permits.clone().try_acquire_owned();
        // The clone that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let timeout = self.timeout;
        let observed = (request.extensions().get::<FromRest>().is_none())
            .then(|| self.metrics.method(request.uri().path()));
        Box::pin(
            async move {
                let started = Instant::now();
                if let Some(method) = &observed {
                    method.started();
                }
                let response = match permit {
                    Err(_) => Ok(Status::resource_exhausted(
                        "the server is at its concurrency limit; retry with backoff",
                    )
                    .into_http()),
                    Ok(_permit) => match tokio::time::timeout(timeout, inner.call(request)).await {
                        Ok(response) => response,
                        Err(_) => Ok(Status::deadline_exceeded(format!(
                            "the request did not finish within the server's timeout of {timeout:?}"
                        ))
                        .into_http()),
                    },
                };
                let mut response = response.map(oversized_as_resource_exhausted);
                if let Ok(response) = &mut response {
                    let took = started.elapsed();
                    if let Some(method) = &observed {
                        method.handled(grpc_code(response).unwrap_or(Code::Ok) as i32, took);
                    }
                    record_outcome(response, took, peer, &request_id);
                    response.headers_mut().insert(REQUEST_ID, request_id);
                }
                response
            }
            .instrument(span),
        )
    }
}

/// The header (and gRPC metadata key) of a request's id: the caller's,
/// when it sent a usable one, else made by the server; returned on the
/// response and written on the request's log lines.
pub const REQUEST_ID: &str = "x-request-id";

/// The request's id: its `x-request-id` when that is 1 to 128 visible ASCII
/// characters, else a new one (a random prefix per process and a counter:
/// unique without a system call per request).
pub fn request_id(headers: &http::HeaderMap) -> http::HeaderValue {
    if let Some(given) = headers.get(REQUEST_ID)
        && (1..=128).contains(&given.len())
        && given.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return given.clone();
    }
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 4];
        // Without randomness, ids are still unique within the process.
        let _ = getrandom::fill(&mut bytes);
        u32::from_le_bytes(bytes)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    http::HeaderValue::try_from(format!("{prefix:08x}{n:012x}"))
        .expect("hex digits are a valid header value")
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`),
/// if it has one that is not all zeros.
fn trace_id(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (_version, trace, parent) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(trace, 32) && hex(parent, 16) && trace.bytes().any(|b| b != b'0')).then_some(trace)
}

/// tonic refuses a request over `max_decoding_message_size` with OUT_OF_RANGE;
/// gRPC's status-code guide (and the Go and C++ servers) use
/// RESOURCE_EXHAUSTED, which clients treat as "make it smaller". Our handlers
/// never answer OUT_OF_RANGE, so only the codec's refusal is rewritten.
fn oversized_as_resource_exhausted(response: http::Response<Body>) -> http::Response<Body> {
    let oversized = grpc_code(&response) == Some(Code::OutOfRange)
        && response
            .headers()
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| {
                m.contains("message%20length%20too%20large")
                    || m.contains("message length too large")
            });
    if !oversized {
        return response;
    }
    super::refusal(
        Reason::RequestTooLarge,
        "the request message is larger than the server accepts (see --max-request-bytes); \
         send fewer or smaller values",
    )
    .into_http()
}

/// The `grpc-status` in the response headers, if any.
fn grpc_code(response: &http::Response<Body>) -> Option<Code> {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
}

/// Records the status code on the current span and logs the call. Errors of
/// unary RPCs are always in the headers (a trailers-only response); a
/// response without `grpc-status` there is a success or an open stream. A
/// failed call's line also names its reason (the ErrorInfo's), the
/// workspace and key id of its key (never the key), the peer and the
/// request id.
fn record_outcome(
    response: &http::Response<Body>,
    elapsed: Duration,
    peer: Option<SocketAddr>,
    request_id: &http::HeaderValue,
) {
    let code = grpc_code(response).unwrap_or(Code::Ok);
    // Recording formats the fields into the span (a few allocations): on
    // the hot path of a busy server, only when the line will be written.
    if code == Code::Ok && !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let span = tracing::Span::current();
    span.record("code", tracing::field::debug(code));
    // Microseconds are all a person reads; f64 noise is not.
    span.record(
        "latency_ms",
        (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0,
    );
    if let Ok(id) = request_id.to_str() {
        span.record("request_id", id);
    }
    if let Some(peer) = peer {
        span.record("peer", tracing::field::display(peer));
    }
    if let Some(principal) = response.extensions().get::<Principal>() {
        span.record("workspace", tracing::field::display(principal.workspace));
        span.record("key_id", tracing::field::display(principal.key_id));
    }
    if code != Code::Ok
        && let Some(status) = Status::from_header_map(response.headers())
        && let Some(info) = status.get_details_error_info()
    {
        span.record("reason", info.reason.as_str());
    }
    match code {
        Code::Ok => tracing::debug!("rpc finished"),
        Code::Internal
        | Code::Unknown
        | Code::Unavailable
        | Code::DataLoss
        | Code::DeadlineExceeded
        | Code::ResourceExhausted => tracing::warn!("rpc failed"),
        _ => tracing::info!("rpc refused"),
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, time::Duration};

    use tonic::{Code, Status, body::Body, codegen::http};
    use tower::{Layer, Service, ServiceExt};

    use super::{RpcLayer, RpcMetrics};
    use crate::metrics::Metrics;

    fn layer(limit: usize, timeout: Duration) -> RpcLayer {
        RpcLayer::new(
            limit,
            timeout,
            RpcMetrics::new(&Metrics::new()).expect("the build's descriptors"),
        )
    }

    /// An inner service that answers OK after `delay`.
    fn slow(
        delay: Duration,
    ) -> impl Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send {
        tower::service_fn(move |_req: http::Request<Body>| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(http::Response::new(Body::default()))
        })
    }

    fn code_of(response: &http::Response<Body>) -> Code {
        super::grpc_code(response).unwrap_or(Code::Ok)
    }

    fn request() -> http::Request<Body> {
        http::Request::builder()
            .uri("/vevee.attributes.v1.AttributesService/SetAttribute")
            .body(Body::default())
            .unwrap()
    }

    #[tokio::test]
    async fn calls_over_the_concurrency_limit_get_resource_exhausted_and_later_ones_pass() {
        let svc = layer(1, Duration::from_secs(5)).layer(slow(Duration::from_millis(200)));
        let first = tokio::spawn(svc.clone().oneshot(request()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = svc.clone().oneshot(request()).await.unwrap();
        assert_eq!(code_of(&refused), Code::ResourceExhausted);
        assert_eq!(code_of(&first.await.unwrap().unwrap()), Code::Ok);
        let after = svc.oneshot(request()).await.unwrap();
        assert_eq!(code_of(&after), Code::Ok);
    }

    #[tokio::test]
    async fn calls_past_the_timeout_get_deadline_exceeded() {
        let svc = layer(8, Duration::from_millis(50)).layer(slow(Duration::from_secs(5)));
        let response = svc.oneshot(request()).await.unwrap();
        assert_eq!(code_of(&response), Code::DeadlineExceeded);
    }

    #[tokio::test]
    async fn the_codec_refusing_an_oversized_message_becomes_resource_exhausted() {
        let inner = tower::service_fn(|_req: http::Request<Body>| async {
            Ok::<_, Infallible>(
                Status::out_of_range(
                    "Error, decoded message length too large: found 9 bytes, the limit is: 4 bytes",
                )
                .into_http(),
            )
        });
        let svc = layer(8, Duration::from_secs(5)).layer(inner);
        let response = svc.oneshot(request()).await.unwrap();
        assert_eq!(code_of(&response), Code::ResourceExhausted);
    }
}
