//! `load`: one RPC kind at a fixed concurrency for a fixed time, over
//! several HTTP/2 connections shared by the workers of each client thread
//! (one single-threaded runtime per OS thread); or, with `--protocol rest`,
//! the same calls on the REST face, one HTTP/1.1 keep-alive connection per
//! worker (HTTP/1.1 has one request in flight per connection).

use std::{
    cell::RefCell,
    collections::HashMap,
    rc::Rc,
    sync::{
        Arc, Barrier, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use http_body_util::{BodyExt, Full};
use prost_types::{Value, value::Kind};
use serde_json::json;
use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use vevee_attributes::proto::v1::{
    AttributeUpdate, GetAttributesRequest, SetAttributeRequest, SetAttributesRequest,
    UpdateAttributesRequest, attribute_update::Operation,
    attributes_service_client::AttributesServiceClient,
};

use crate::{
    ATTRIBUTES, AnyResult, RunArgs, TargetArgs,
    population::{Ids, PopulationArgs, clock_seed, distribution_name, worker_rng},
    stats::{CLIENT_TIMEOUT, Stats, Summary},
};

/// The RPC a load run sends.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Rpc {
    /// SetAttribute of one of a0..a9.
    SetAttribute,
    /// SetAttributes of all of a0..a9.
    SetAttributes,
    /// GetAttributes of a person (seeded with 10 values).
    GetAttributes,
    /// UpdateAttributes with one `increment` of the number attribute `n0`.
    UpdateIncrement,
    /// SetAttribute of one of a0..a9 with a new request_id each time, so
    /// every request is recorded for its retries.
    SetAttributeRequestId,
    /// SetAttribute of one of a0..a9 as a browser writes: with a public key
    /// (`--key pk_...`) and each person's identity signature in
    /// `x-vevee-identity`, made from `--identity-secret` before the run.
    SetAttributeBrowser,
    /// grpc.health.v1.Health/Check: the baseline of the server itself.
    Health,
}

impl Rpc {
    fn name(self) -> &'static str {
        match self {
            Rpc::SetAttribute => "set-attribute",
            Rpc::SetAttributes => "set-attributes",
            Rpc::GetAttributes => "get-attributes",
            Rpc::UpdateIncrement => "update-increment",
            Rpc::SetAttributeRequestId => "set-attribute-request-id",
            Rpc::SetAttributeBrowser => "set-attribute-browser",
            Rpc::Health => "health",
        }
    }

    /// Attribute values one request writes.
    fn values_written(self) -> u64 {
        match self {
            Rpc::SetAttribute
            | Rpc::UpdateIncrement
            | Rpc::SetAttributeRequestId
            | Rpc::SetAttributeBrowser => 1,
            Rpc::SetAttributes => ATTRIBUTES as u64,
            Rpc::GetAttributes | Rpc::Health => 0,
        }
    }
}

/// How the calls travel.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// gRPC over HTTP/2.
    Grpc,
    /// The REST face: JSON over HTTP/1.1 keep-alive connections.
    Rest,
}

/// Flags of `load`.
#[derive(Args)]
pub(crate) struct LoadArgs {
    #[command(flatten)]
    target: TargetArgs,

    /// The RPC to send.
    #[arg(long, value_enum)]
    rpc: Rpc,

    /// gRPC, or its REST route (`--connections` is then the concurrency).
    #[arg(long, value_enum, default_value = "grpc")]
    protocol: Protocol,

    /// HTTP/2 connections; workers are spread over them round-robin.
    #[arg(long, default_value_t = 4)]
    connections: usize,

    /// OS threads of the client, each a single-threaded runtime owning
    /// connections (at most one per connection).
    #[arg(long, default_value_t = 1)]
    threads: usize,

    /// The workspace's identity secret (`identity-secrets create`), which
    /// signs every person's distinct_id for set-attribute-browser.
    #[arg(long, env = "VEVEE_IDENTITY_SECRET", hide_env_values = true)]
    identity_secret: Option<String>,

    #[command(flatten)]
    run: RunArgs,

    #[command(flatten)]
    population: PopulationArgs,
}

/// A text value.
pub(crate) fn text(s: String) -> Value {
    Value {
        kind: Some(Kind::StringValue(s)),
    }
}

/// A request_id no other request of this or an earlier run used: the
/// process's clock seed and a counter, spelled as a UUID (the server checks
/// the syntax only).
fn request_id() -> String {
    use std::sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    };
    static BASE: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| clock_seed(0));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        base >> 32,
        (base >> 16) & 0xffff,
        base & 0xfff,
        (n >> 48) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

/// Everything a worker needs to build its requests without formatting.
struct Prebuilt {
    rpc: Rpc,
    auth: Option<MetadataValue<Ascii>>,
    attributes: Vec<String>,
    /// Single values SetAttribute rotates through.
    values: Vec<Value>,
    /// Whole value maps SetAttributes rotates through.
    maps: Vec<HashMap<String, Value>>,
    /// The same maps as JSON objects, for REST.
    json_maps: Vec<String>,
    /// Each person's identity signature (set-attribute-browser), by id.
    identities: Vec<MetadataValue<Ascii>>,
    ids: Ids,
}

/// hex(HMAC-SHA256(secret, distinct_id)), as a customer's backend signs a
/// user for the page.
fn identity_signature(secret: &str, distinct_id: &str) -> MetadataValue<Ascii> {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(distinct_id.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex.parse().expect("hex is ASCII")
}

impl Prebuilt {
    fn new(
        rpc: Rpc,
        key: Option<&str>,
        identity_secret: Option<&str>,
        ids: Ids,
    ) -> Result<Self, String> {
        let auth = key
            .map(|k| {
                format!("Bearer {k}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| "the key is not ASCII".to_owned())
            })
            .transpose()?;
        if auth.is_none() && rpc != Rpc::Health {
            return Err("--key (or VEVEE_KEY) is required for this RPC".into());
        }
        // Signed before the run, so that the generator's HMACs are not measured.
        let identities = match (rpc, identity_secret) {
            (Rpc::SetAttributeBrowser, Some(secret)) => ids
                .names
                .iter()
                .map(|name| identity_signature(secret, name))
                .collect(),
            (Rpc::SetAttributeBrowser, None) => {
                return Err(
                    "--identity-secret (or VEVEE_IDENTITY_SECRET) is required for this RPC".into(),
                );
            }
            _ => Vec::new(),
        };
        let attributes: Vec<String> = (0..ATTRIBUTES).map(|i| format!("a{i}")).collect();
        let values = (0..16).map(|i| text(format!("v{i}"))).collect();
        let maps = (0..4)
            .map(|round| {
                attributes
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (a.clone(), text(format!("s{round}-{i}"))))
                    .collect()
            })
            .collect();
        let json_maps = (0..4)
            .map(|round| {
                let map: serde_json::Map<String, serde_json::Value> = attributes
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (a.clone(), json!(format!("s{round}-{i}"))))
                    .collect();
                serde_json::Value::Object(map).to_string()
            })
            .collect();
        Ok(Prebuilt {
            rpc,
            auth,
            attributes,
            values,
            maps,
            json_maps,
            identities,
            ids,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(auth) = &self.auth {
            request.metadata_mut().insert("authorization", auth.clone());
        }
        request
    }
}

/// One REST connection: HTTP/1.1 keep-alive, a request at a time.
struct RestClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
}

impl RestClient {
    async fn connect(addr: &str) -> Result<Self, String> {
        let authority = addr.trim_start_matches("http://").to_owned();
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
        tokio::task::spawn_local(connection);
        Ok(RestClient { sender, authority })
    }

    /// Sends request number `n` of a worker, for person `id`; an error is
    /// the gRPC code of grpc-gateway's error body.
    async fn call(&mut self, p: &Prebuilt, id: usize, n: usize) -> Result<(), (i32, String)> {
        let name = &p.ids.names[id];
        let (method, path, body) = match p.rpc {
            Rpc::SetAttribute | Rpc::SetAttributeBrowser => (
                "POST",
                "/api/v1/attributes/values".to_owned(),
                format!(
                    r#"{{"distinctId":"{name}","attribute":"{}","value":"v{}"}}"#,
                    p.attributes[n % ATTRIBUTES],
                    n % p.values.len()
                ),
            ),
            Rpc::SetAttributes => (
                "POST",
                "/api/v1/attributes/values:batchSet".to_owned(),
                format!(
                    r#"{{"distinctId":"{name}","values":{}}}"#,
                    p.json_maps[n % p.json_maps.len()]
                ),
            ),
            Rpc::GetAttributes => (
                "GET",
                format!("/api/v1/persons/{name}/attributes"),
                String::new(),
            ),
            Rpc::UpdateIncrement => (
                "POST",
                format!("/api/v1/persons/{name}/attributes:update"),
                format!(
                    r#"{{"updates":[{{"attribute":"{}","increment":1}}]}}"#,
                    crate::COUNTER
                ),
            ),
            Rpc::SetAttributeRequestId => (
                "POST",
                "/api/v1/attributes/values".to_owned(),
                format!(
                    r#"{{"distinctId":"{name}","attribute":"{}","value":"v{}","requestId":"{}"}}"#,
                    p.attributes[n % ATTRIBUTES],
                    n % p.values.len(),
                    request_id()
                ),
            ),
            Rpc::Health => ("GET", "/readyz".to_owned(), String::new()),
        };
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority)
            .header("content-type", "application/json");
        if let Some(auth) = &p.auth {
            request = request.header("authorization", auth.as_bytes());
        }
        if let Some(identity) = p.identities.get(id) {
            request = request.header("x-vevee-identity", identity.as_bytes());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| (2, e.to_string()))?;
        self.sender
            .ready()
            .await
            .map_err(|e| (14, format!("connection: {e}")))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| (14, format!("request: {e}")))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| (14, format!("body: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let code = error["code"].as_i64().unwrap_or(2) as i32;
            return Err((code, format!("HTTP {status}: {}", error["message"])));
        }
        if p.rpc == Rpc::GetAttributes {
            // Cheaper than parsing: each value carries one updatedAt.
            let values = body.windows(11).filter(|w| w == b"\"updatedAt\"").count();
            // At least the seeded ten: the update workloads add a counter.
            if values < ATTRIBUTES {
                return Err((
                    9,
                    format!(
                        "{name} has {values} values, fewer than {ATTRIBUTES}: is the population seeded?"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A worker's connection. (One per worker, built once: the size of the
/// gRPC variant does not matter.)
#[allow(clippy::large_enum_variant)]
enum Client {
    Grpc(Clients),
    Rest(RestClient),
}

impl Client {
    async fn call(&mut self, p: &Prebuilt, id: usize, n: usize) -> Result<(), (i32, String)> {
        match self {
            Client::Grpc(clients) => clients
                .call(p, id, n)
                .await
                .map_err(|s| (s.code() as i32, s.message().to_owned())),
            Client::Rest(rest) => rest.call(p, id, n).await,
        }
    }
}

/// The clients of one connection.
#[derive(Clone)]
struct Clients {
    attributes: AttributesServiceClient<Channel>,
    health: HealthClient<Channel>,
}

impl Clients {
    fn new(channel: Channel) -> Self {
        Clients {
            attributes: AttributesServiceClient::new(channel.clone())
                .max_decoding_message_size(16 << 20),
            health: HealthClient::new(channel),
        }
    }

    /// Sends request number `n` of a worker, for person `id`.
    async fn call(&mut self, p: &Prebuilt, id: usize, n: usize) -> Result<(), Status> {
        let distinct_id = || p.ids.names[id].clone();
        match p.rpc {
            Rpc::SetAttribute => {
                let message = SetAttributeRequest {
                    distinct_id: distinct_id(),
                    attribute: p.attributes[n % ATTRIBUTES].clone(),
                    value: Some(p.values[n % p.values.len()].clone()),
                    ..Default::default()
                };
                self.attributes.set_attribute(p.request(message)).await?;
            }
            Rpc::SetAttributes => {
                let message = SetAttributesRequest {
                    distinct_id: distinct_id(),
                    values: p.maps[n % p.maps.len()].clone(),
                    ..Default::default()
                };
                self.attributes.set_attributes(p.request(message)).await?;
            }
            Rpc::UpdateIncrement => {
                let message = UpdateAttributesRequest {
                    distinct_id: distinct_id(),
                    updates: vec![AttributeUpdate {
                        attribute: crate::COUNTER.into(),
                        operation: Some(Operation::Increment(1.0)),
                        if_etag: None,
                    }],
                    ..Default::default()
                };
                self.attributes
                    .update_attributes(p.request(message))
                    .await?;
            }
            Rpc::SetAttributeRequestId => {
                let message = SetAttributeRequest {
                    distinct_id: distinct_id(),
                    attribute: p.attributes[n % ATTRIBUTES].clone(),
                    value: Some(p.values[n % p.values.len()].clone()),
                    request_id: request_id(),
                    validate_only: false,
                };
                self.attributes.set_attribute(p.request(message)).await?;
            }
            Rpc::SetAttributeBrowser => {
                let message = SetAttributeRequest {
                    distinct_id: distinct_id(),
                    attribute: p.attributes[n % ATTRIBUTES].clone(),
                    value: Some(p.values[n % p.values.len()].clone()),
                    ..Default::default()
                };
                let mut request = p.request(message);
                request
                    .metadata_mut()
                    .insert("x-vevee-identity", p.identities[id].clone());
                self.attributes.set_attribute(request).await?;
            }
            Rpc::GetAttributes => {
                let message = GetAttributesRequest {
                    distinct_id: distinct_id(),
                    attributes: Vec::new(),
                    include_archived: false,
                };
                let response = self.attributes.get_attributes(p.request(message)).await?;
                // At least the seeded ten: the update workloads add a counter.
                if response.get_ref().attributes.len() < ATTRIBUTES {
                    return Err(Status::failed_precondition(format!(
                        "{} has {} values, fewer than {ATTRIBUTES}: is the population seeded?",
                        p.ids.names[id],
                        response.get_ref().attributes.len()
                    )));
                }
            }
            Rpc::Health => {
                let message = HealthCheckRequest {
                    service: String::new(),
                };
                self.health.check(p.request(message)).await?;
            }
        }
        Ok(())
    }
}

/// The endpoint of the server at `addr` (`host:port` or a URI), tuned for
/// many concurrent streams per connection.
pub(crate) fn endpoint(addr: &str) -> AnyResult<Endpoint> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    Ok(Endpoint::from_shared(uri)?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        // Many streams per connection: don't let the default 64 KiB windows
        // throttle 256 concurrent requests.
        .initial_connection_window_size(8 << 20)
        .initial_stream_window_size(1 << 20))
}

/// The time line every thread follows.
struct Timeline {
    measure_from: Instant,
    until: Instant,
}

/// Coordination of the client threads.
struct Shared {
    connected: Barrier,
    go: Barrier,
    failed: AtomicBool,
    timeline: Mutex<Option<Timeline>>,
}

pub(crate) fn load(args: LoadArgs) -> AnyResult<()> {
    let run = &args.run;
    if run.concurrency == 0 || args.connections == 0 || args.threads == 0 {
        return Err("--concurrency, --connections and --threads must be at least 1".into());
    }
    let rest = args.protocol == Protocol::Rest;
    let connections = if rest {
        run.concurrency
    } else {
        args.connections.min(run.concurrency)
    };
    let threads = args.threads.min(connections);
    let ids = Ids::new(&args.population)?;
    let prebuilt = Arc::new(Prebuilt::new(
        args.rpc,
        args.target.key.as_deref(),
        args.identity_secret.as_deref(),
        ids,
    )?);
    let endpoint = endpoint(&args.target.addr)?;
    let shared = Arc::new(Shared {
        connected: Barrier::new(threads + 1),
        go: Barrier::new(threads + 1),
        failed: AtomicBool::new(false),
        timeline: Mutex::new(None),
    });
    let seed = clock_seed(run.seed);

    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        // Connection c lives on thread c % threads; worker w uses connection
        // w % connections, so every thread gets its share of both.
        let my_connections: Vec<usize> = (0..connections).filter(|c| c % threads == t).collect();
        let my_workers: Vec<(usize, usize)> = (0..run.concurrency)
            .filter(|w| (w % connections) % threads == t)
            .map(|w| {
                (
                    w,
                    my_connections
                        .iter()
                        .position(|&c| c == w % connections)
                        .unwrap_or(0),
                )
            })
            .collect();
        let shared = shared.clone();
        let prebuilt = prebuilt.clone();
        let endpoint = endpoint.clone();
        let rest_addr = rest.then(|| args.target.addr.clone());
        let timeout = run.request_timeout;
        handles.push(
            std::thread::Builder::new()
                .name(format!("bench-{t}"))
                .spawn(move || {
                    client_thread(
                        endpoint,
                        rest_addr,
                        my_connections.len(),
                        my_workers,
                        prebuilt,
                        shared,
                        timeout,
                        seed,
                    )
                })?,
        );
    }

    shared.connected.wait();
    let start = Instant::now();
    *shared.timeline.lock().map_err(|_| "poisoned")? = Some(Timeline {
        measure_from: start + run.warmup,
        until: start + run.warmup + run.duration,
    });
    shared.go.wait();

    let mut total = Stats::new();
    let mut failure = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(stats)) => total.merge(&stats),
            Ok(Err(err)) => failure = Some(err),
            Err(_) => failure = Some("a client thread panicked".into()),
        }
    }
    if let Some(err) = failure {
        return Err(err.into());
    }
    Summary {
        workload: args.rpc.name().to_owned(),
        concurrency: run.concurrency,
        connections,
        threads,
        population: args.population.population,
        distribution: &distribution_name(&args.population),
        values_per_request: args.rpc.values_written(),
        duration: run.duration,
        stats: &total,
        throughput: None,
        tags: &run.tags,
        extra: json!({}),
    }
    .print(run.json);
    Ok(())
}

/// One client thread: a single-threaded runtime with its connections and
/// workers. Returns its share of the statistics.
#[allow(clippy::too_many_arguments)]
fn client_thread(
    endpoint: Endpoint,
    rest_addr: Option<String>,
    connections: usize,
    workers: Vec<(usize, usize)>,
    prebuilt: Arc<Prebuilt>,
    shared: Arc<Shared>,
    timeout: Duration,
    seed: u64,
) -> Result<Stats, String> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            // Still pass both barriers, so that the others don't wait forever.
            shared.failed.store(true, Ordering::SeqCst);
            shared.connected.wait();
            shared.go.wait();
            return Err(format!("cannot start a runtime: {err}"));
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        // gRPC connections are shared by workers (cloned); a REST one
        // belongs to one worker (taken).
        let mut channels: Vec<Option<Client>> = Vec::with_capacity(connections);
        let mut error = None;
        for _ in 0..connections {
            let client = match &rest_addr {
                Some(addr) => RestClient::connect(addr).await.map(Client::Rest),
                None => endpoint
                    .connect()
                    .await
                    .map(|c| Client::Grpc(Clients::new(c)))
                    .map_err(|e| format!("cannot connect to {}: {e:?}", endpoint.uri())),
            };
            match client {
                Ok(client) => channels.push(Some(client)),
                Err(err) => {
                    error = Some(err);
                    break;
                }
            }
        }
        if error.is_some() {
            shared.failed.store(true, Ordering::SeqCst);
        }
        // Blocking this thread is fine here: nothing is in flight yet.
        shared.connected.wait();
        shared.go.wait();
        if let Some(error) = error {
            return Err(error);
        }
        if shared.failed.load(Ordering::SeqCst) {
            return Err("another client thread failed".into());
        }
        let (measure_from, until) = {
            let guard = shared.timeline.lock().map_err(|_| "poisoned")?;
            let timeline = guard.as_ref().ok_or("no timeline")?;
            (timeline.measure_from, timeline.until)
        };
        let stats = Rc::new(RefCell::new(Stats::new()));
        let mut tasks = Vec::with_capacity(workers.len());
        for (worker, connection) in workers {
            let mut clients = match &channels[connection] {
                Some(Client::Grpc(clients)) => Client::Grpc(clients.clone()),
                _ => channels[connection]
                    .take()
                    .ok_or("one REST connection per worker")?,
            };
            let prebuilt = prebuilt.clone();
            let stats = stats.clone();
            let mut rng = worker_rng(seed, worker);
            tasks.push(tokio::task::spawn_local(async move {
                let mut n = worker;
                loop {
                    let started = Instant::now();
                    if started >= until {
                        break;
                    }
                    let id = prebuilt.ids.pick(&mut rng);
                    let result =
                        tokio::time::timeout(timeout, clients.call(&prebuilt, id, n)).await;
                    let finished = Instant::now();
                    n = n.wrapping_add(1);
                    // Completions inside the measured window count.
                    if finished < measure_from || finished > until {
                        continue;
                    }
                    let mut stats = stats.borrow_mut();
                    match result {
                        Ok(Ok(())) => stats.ok(finished.duration_since(started).as_nanos() as u64),
                        Ok(Err((code, message))) => stats.error(code, || message),
                        Err(_) => stats
                            .error(CLIENT_TIMEOUT, || format!("no response within {timeout:?}")),
                    }
                }
            }));
        }
        for task in tasks {
            task.await.map_err(|e| format!("a worker failed: {e}"))?;
        }
        let stats = stats.replace(Stats::new());
        Ok(stats)
    })
}
