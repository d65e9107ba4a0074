//! The tower layer that answers REST: a request that is not gRPC is matched
//! to its route, turned into the request message and sent inward as an
//! ordinary unary gRPC call of that method (so key scope, limits, timeouts,
//! logs and error mapping are gRPC's own); the reply comes back as JSON.
//! gRPC and gRPC-Web requests pass through untouched.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::{Code, Status, body::Body, codegen::BoxFuture};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use super::{
    Descriptors, json,
    openapi::OPENAPI_PATH,
    routes::{Match, RouteTable},
    status,
};
use crate::{
    grpc::{ERROR_DOMAIN, FromRest},
    metrics::Metrics,
};

/// What every connection's transcoder shares, built once at start-up.
struct Shared {
    routes: RouteTable,
    rpc_status: MessageDescriptor,
    openapi: Bytes,
    max_request_bytes: usize,
    metrics: Metrics,
    /// The `route` labels of the fixed paths, and of a path no route
    /// matches (the concrete path is never a label).
    healthz: Arc<str>,
    readyz: Arc<str>,
    openapi_route: Arc<str>,
    unmatched: Arc<str>,
}

/// Puts [`Transcoder`] in front of the gRPC services.
#[derive(Clone)]
pub struct TranscodeLayer {
    shared: Arc<Shared>,
}

impl TranscodeLayer {
    /// Reads the routes from the descriptor set; a REST body over
    /// `max_request_bytes` is refused with 413, as gRPC's are. Every
    /// request is counted in `metrics` (`http_server_*`).
    pub(crate) fn new(
        descriptors: &Descriptors,
        max_request_bytes: usize,
        metrics: &Metrics,
    ) -> Result<Self, super::Error> {
        let routes = RouteTable::from_pool(&descriptors.pool, &crate::proto::SERVICE_NAMES)?;
        let openapi = super::openapi::document(&descriptors.pool, &routes);
        Ok(Self {
            shared: Arc::new(Shared {
                routes,
                rpc_status: descriptors.rpc_status.clone(),
                openapi: Bytes::from(serde_json::to_vec_pretty(&openapi)?),
                max_request_bytes,
                metrics: metrics.clone(),
                healthz: "/healthz".into(),
                readyz: "/readyz".into(),
                openapi_route: OPENAPI_PATH.into(),
                unmatched: "unmatched".into(),
            }),
        })
    }
}

impl<S> Layer<S> for TranscodeLayer {
    type Service = Transcoder<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Transcoder {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// See [`TranscodeLayer`].
#[derive(Clone)]
pub struct Transcoder<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request<Body>> for Transcoder<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display + Send,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        if is_grpc(request.headers()) {
            return Box::pin(self.inner.call(request));
        }
        // The clone that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        // Made here, so that the inner call logs the id this answer returns.
        let id = crate::grpc::request_id(request.headers());
        request
            .headers_mut()
            .insert(crate::grpc::REQUEST_ID, id.clone());
        Box::pin(async move {
            let started = Instant::now();
            let method = method_label(request.method());
            let mut route = None;
            let mut response = rest(&shared, inner, request, &mut route).await;
            response.headers_mut().insert(crate::grpc::REQUEST_ID, id);
            let route = route.unwrap_or_else(|| shared.unmatched.clone());
            let status = response.status().as_u16();
            shared
                .metrics
                .http_request(&route, method, status, started.elapsed());
            Ok(response)
        })
    }
}

/// The `method` label: the standard methods' names, `other` for the rest
/// (a client's made-up method never becomes a label).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// gRPC and gRPC-Web (`application/grpc`, `application/grpc-web+proto`...)
/// go straight to the services.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Answers one REST request, setting `matched` to the `route` label of
/// the path when it has one.
async fn rest<S>(
    shared: &Shared,
    inner: S,
    request: Request<Body>,
    matched: &mut Option<Arc<str>>,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>> + Send,
    S::Future: Send,
    S::Error: std::fmt::Display,
{
    let (parts, body) = request.into_parts();
    let get = parts.method == Method::GET;
    *matched = match parts.uri.path() {
        "/healthz" => Some(shared.healthz.clone()),
        "/readyz" => Some(shared.readyz.clone()),
        OPENAPI_PATH => Some(shared.openapi_route.clone()),
        _ => None,
    };
    match parts.uri.path() {
        "/healthz" if get => return health_response(true),
        "/readyz" if get => return ready(inner, parts).await,
        OPENAPI_PATH if get => return json_response(StatusCode::OK, shared.openapi.clone()),
        "/healthz" | "/readyz" | OPENAPI_PATH => {
            return method_not_allowed(shared, &[Method::GET]);
        }
        _ => {}
    }
    let (route, message) = match shared.routes.find(&parts.method, parts.uri.path()) {
        Match::NotFound => {
            return error(
                shared,
                StatusCode::NOT_FOUND,
                &Status::not_found("Not Found"),
            );
        }
        Match::WrongMethod(allowed) => return method_not_allowed(shared, &allowed),
        Match::Found(route, variables) => {
            *matched = Some(route.path.clone());
            let bytes = match Limited::new(body, shared.max_request_bytes).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                    let status = crate::grpc::refusal(
                        crate::domain::Reason::RequestTooLarge,
                        format!(
                            "the request body is larger than the server accepts ({} bytes, see \
                         --max-request-bytes); send fewer or smaller values",
                            shared.max_request_bytes
                        ),
                    );
                    return error(shared, StatusCode::PAYLOAD_TOO_LARGE, &status);
                }
                Err(e) => {
                    return invalid_argument(
                        shared,
                        format!("the request body could not be read: {e}"),
                    );
                }
            };
            match json::request_message(route, &bytes, &variables, parts.uri.query()) {
                Ok(message) => (route, message),
                Err(bad) => return invalid_argument(shared, bad.0),
            }
        }
    };
    let reply = match call(
        inner,
        route.grpc_uri.clone(),
        parts,
        &message.encode_to_vec(),
    )
    .await
    {
        Ok(reply) => reply,
        Err(status) => return error(shared, status::http_status(status.code()), &status),
    };
    let written = DynamicMessage::decode(route.rpc.output(), reply)
        .map_err(|e| e.to_string())
        .and_then(|m| json::to_json(&m).map_err(|e| e.to_string()));
    match written {
        Ok(body) => json_response(StatusCode::OK, Bytes::from(body)),
        Err(e) => {
            tracing::error!(error = %e, method = %route.grpc_path, "a reply could not be written as JSON");
            let status = Status::internal("internal error; it has been logged");
            error(shared, StatusCode::INTERNAL_SERVER_ERROR, &status)
        }
    }
}

/// `GET /readyz`: the gRPC health of the attributes service, asked through
/// the same path as a gRPC client would, so both probes give one signal.
async fn ready<S>(inner: S, parts: http::request::Parts) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: std::fmt::Display,
{
    use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse, health_check_response};
    let request = HealthCheckRequest {
        service: crate::proto::v1::attributes_service_server::SERVICE_NAME.to_owned(),
    };
    let uri = Uri::from_static("/grpc.health.v1.Health/Check");
    let serving = match call(inner, uri, parts, &request.encode_to_vec()).await {
        Ok(reply) => HealthCheckResponse::decode(reply)
            .is_ok_and(|r| r.status() == health_check_response::ServingStatus::Serving),
        Err(_) => false,
    };
    health_response(serving)
}

/// The body of both probes: 200 while serving, 503 otherwise.
fn health_response(serving: bool) -> Response<Body> {
    let (code, text) = if serving {
        (StatusCode::OK, r#"{"status":"SERVING"}"#)
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"NOT_SERVING"}"#,
        )
    };
    json_response(code, Bytes::from_static(text.as_bytes()))
}

/// Sends one message inward as a unary gRPC call of `uri`, with the REST
/// request's headers (the key, a deadline, the origin) and extensions (the
/// peer address), and returns the reply's message or its status.
async fn call<S>(
    mut inner: S,
    uri: Uri,
    parts: http::request::Parts,
    message: &[u8],
) -> Result<Bytes, Status>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: std::fmt::Display,
{
    let len = u32::try_from(message.len())
        .map_err(|_| Status::resource_exhausted("the request is too large"))?;
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(len);
    frame.put_slice(message);

    let mut request = Request::new(Body::new(Full::new(frame.freeze())));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_2;
    let headers = request.headers_mut();
    for (name, value) in &parts.headers {
        if forwarded(name) {
            headers.append(name, value.clone());
        }
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    *request.extensions_mut() = parts.extensions;
    request.extensions_mut().insert(FromRest);

    let response = inner
        .call(request)
        .await
        .map_err(|e| Status::unavailable(format!("the call could not be made: {e}")))?;
    let (head, body) = response.into_parts();
    // Errors of unary calls come as trailers-only responses.
    if let Some(status) = Status::from_header_map(&head.headers)
        && status.code() != Code::Ok
    {
        return Err(status);
    }
    let collected = body
        .collect()
        .await
        .map_err(|e| Status::unavailable(format!("the reply could not be read: {e}")))?;
    if let Some(trailers) = collected.trailers()
        && let Some(status) = Status::from_header_map(trailers)
        && status.code() != Code::Ok
    {
        return Err(status);
    }
    let data = collected.to_bytes();
    if let [0, a, b, c, d, ..] = data[..]
        && data.len() == 5 + u32::from_be_bytes([a, b, c, d]) as usize
    {
        return Ok(data.slice(5..));
    }
    Err(Status::internal(
        "the reply was not one uncompressed message",
    ))
}

/// Whether a REST request header travels with the inner call: not the ones
/// that frame the REST request itself, nor gRPC's own (encodings a REST
/// client cannot have negotiated), except a deadline.
fn forwarded(name: &header::HeaderName) -> bool {
    let framing = [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::HOST,
        header::TE,
        header::ACCEPT_ENCODING,
    ];
    if framing.contains(name) {
        return false;
    }
    name == "grpc-timeout" || !name.as_str().starts_with("grpc-")
}

/// A JSON response.
fn json_response(code: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(body)));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The error answer of `status`, with grpc-gateway's body, the challenge a
/// 401 must carry, and `Retry-After` when the status says when to retry.
fn error(shared: &Shared, code: StatusCode, status: &Status) -> Response<Body> {
    let mut response = json_response(
        code,
        Bytes::from(status::error_body(&shared.rpc_status, status)),
    );
    let headers = response.headers_mut();
    if code == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(delay) = status.get_details_retry_info().and_then(|r| r.retry_delay) {
        let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// 400 `invalid_argument`: a request this API cannot read.
fn invalid_argument(shared: &Shared, message: String) -> Response<Body> {
    let details = ErrorDetails::with_error_info(
        crate::domain::Reason::InvalidArgument.as_str(),
        ERROR_DOMAIN,
        std::collections::HashMap::new(),
    );
    let status = Status::with_error_details(Code::InvalidArgument, message, details);
    error(shared, StatusCode::BAD_REQUEST, &status)
}

/// 405 with the methods the path has.
fn method_not_allowed(shared: &Shared, allowed: &[Method]) -> Response<Body> {
    let mut response = error(
        shared,
        StatusCode::METHOD_NOT_ALLOWED,
        &Status::unimplemented("Method Not Allowed"),
    );
    let list = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(value) = HeaderValue::from_str(&list) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
