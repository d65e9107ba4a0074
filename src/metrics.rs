//! The service's Prometheus metrics (CONTRACT.md section 12): the registry,
//! typed handles for every layer to count with, and the text it serves.
//!
//! Every layer may import this module and it imports none of them, so the
//! storage and app layers count without knowing the front doors. Handles
//! are resolved once (per method, per cache, per limit) where the labels
//! allow, so that the hot path pays an atomic add, not a label lookup.
//!
//! No label ever holds a key, a distinct_id, an attribute key or a value:
//! labels are method and route names, codes, and names fixed in the code.

use std::{
    sync::{Arc, LazyLock, OnceLock},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram, info::Info},
    registry::Registry,
};

/// The content type of [`Metrics::encode`]'s text (OpenMetrics, which
/// Prometheus reads natively and negotiates first).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Seconds buckets for request and commit latencies: the service answers in
/// well under a millisecond when warm, so the Prometheus defaults (from 5 ms)
/// would put every call in the first bucket.
const SECONDS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// Number of gRPC status codes (0 OK ..= 16 UNAUTHENTICATED).
const GRPC_CODES: usize = 17;

/// The metrics of one server, cheap to clone (one reference count).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    grpc_started: Family<GrpcLabels, Counter>,
    grpc_handled: Family<GrpcHandledLabels, Counter>,
    grpc_handling: Family<GrpcLabels, Histogram, fn() -> Histogram>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpRouteLabels, Histogram, fn() -> Histogram>,
    batch_size: Family<BatchLabels, Histogram, fn() -> Histogram>,
    batch_seconds: Family<BatchLabels, Histogram, fn() -> Histogram>,
    cache_hits: Family<CacheLabels, Counter>,
    cache_misses: Family<CacheLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
    pool_connections: Family<PoolLabels, Gauge>,
    pool_max: Family<PoolNameLabels, Gauge>,
    /// Read at each scrape: the pool's own counts, so nothing is kept in step.
    pools: OnceLock<Box<dyn Fn() -> Vec<PoolUsage> + Send + Sync>>,
}

/// `grpc_type`, `grpc_service`, `grpc_method`, as grpc-ecosystem's
/// interceptors label them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    grpc_type: &'static str,
    grpc_service: Arc<str>,
    grpc_method: Arc<str>,
}

/// [`GrpcLabels`] and the `grpc_code` the call ended with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcHandledLabels {
    grpc_type: &'static str,
    grpc_service: Arc<str>,
    grpc_method: Arc<str>,
    grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: Arc<str>,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpRouteLabels {
    route: Arc<str>,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BatchLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolNameLabels {
    pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// Database errors by kind, for the whole process. The one place every
/// sqlx error passes is storage's `From<sqlx::Error>`, reached through `?`
/// from every query; a handle threaded to it would have to pass through
/// every storage method. Each server's registry shows this one family.
static DATABASE_ERRORS: LazyLock<Family<KindLabels, Counter>> = LazyLock::new(Family::default);

/// Counts a database error of `kind` (a fixed name such as `pool_timeout`).
pub fn database_error(kind: &'static str) {
    DATABASE_ERRORS.get_or_create(&KindLabels { kind }).inc();
}

/// The count of database errors of `kind` so far in this process.
pub fn database_errors(kind: &'static str) -> u64 {
    DATABASE_ERRORS
        .get(&KindLabels { kind })
        .map_or(0, |c| c.get())
}

fn seconds() -> Histogram {
    Histogram::new(SECONDS)
}

fn batch_sizes() -> Histogram {
    // 1, 2, 4, ... 1024: the batch limit (--max-write-batch) is 256 by default.
    Histogram::new((0..=10).map(|i| f64::from(1u32 << i)))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric of the service, `vevee_build_info`
    /// set to this build's version.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let grpc_started = Family::<GrpcLabels, Counter>::default();
        registry.register(
            "grpc_server_started",
            "RPCs started on the server (gRPC and gRPC-Web).",
            grpc_started.clone(),
        );
        let grpc_handled = Family::<GrpcHandledLabels, Counter>::default();
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, by gRPC status code.",
            grpc_handled.clone(),
        );
        let grpc_handling: Family<GrpcLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(seconds);
        registry.register(
            "grpc_server_handling_seconds",
            "Time from receiving an RPC to its response headers (for a unary RPC, its answer).",
            grpc_handling.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_server_requests",
            "REST requests answered, by route template, method and HTTP status.",
            http_requests.clone(),
        );
        let http_duration: Family<HttpRouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(seconds);
        registry.register(
            "http_server_request_duration_seconds",
            "Time to answer a REST request, by route template and method.",
            http_duration.clone(),
        );
        let batch_size: Family<BatchLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(batch_sizes);
        registry.register(
            "vevee_group_commit_batch_size",
            "Operations per group-commit batch (op: write, update, read).",
            batch_size.clone(),
        );
        let batch_seconds: Family<BatchLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(seconds);
        registry.register(
            "vevee_group_commit_duration_seconds",
            "Time one group-commit batch takes in the database (a write batch: its durable commit).",
            batch_seconds.clone(),
        );
        registry.register(
            "vevee_database_errors",
            "Database errors by kind (pool_timeout: a request waited --db-acquire-timeout for a connection).",
            DATABASE_ERRORS.clone(),
        );
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "vevee_db_pool_connections",
            "Open database connections by pool and state (in_use, idle).",
            pool_connections.clone(),
        );
        let pool_max = Family::<PoolNameLabels, Gauge>::default();
        registry.register(
            "vevee_db_pool_max_connections",
            "Most connections each database pool opens.",
            pool_max.clone(),
        );
        let cache_hits = Family::<CacheLabels, Counter>::default();
        registry.register(
            "vevee_cache_hits",
            "Lookups answered from a cache (keys, settings, identity_secrets, definitions).",
            cache_hits.clone(),
        );
        let cache_misses = Family::<CacheLabels, Counter>::default();
        registry.register(
            "vevee_cache_misses",
            "Lookups that loaded from the database (absent or older than --cache-ttl).",
            cache_misses.clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "vevee_rate_limited",
            "Requests refused by a public-key rate limit (limit: per_key, per_person).",
            rate_limited.clone(),
        );
        registry.register(
            "vevee_build",
            "The running build.",
            Info::new(VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                grpc_started,
                grpc_handled,
                grpc_handling,
                http_requests,
                http_duration,
                batch_size,
                batch_seconds,
                cache_hits,
                cache_misses,
                rate_limited,
                pool_connections,
                pool_max,
                pools: OnceLock::new(),
            }),
        }
    }

    /// Reads the database pools' usage from `pools` at each scrape. Only
    /// the first call counts (a server has one database).
    pub fn observe_pools(&self, pools: impl Fn() -> Vec<PoolUsage> + Send + Sync + 'static) {
        let _ = self.inner.pools.set(Box::new(pools));
    }

    /// The metrics in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let inner = &self.inner;
        if let Some(pools) = inner.pools.get() {
            for usage in pools() {
                let state = |state| PoolLabels {
                    pool: usage.pool,
                    state,
                };
                inner
                    .pool_connections
                    .get_or_create(&state("in_use"))
                    .set(i64::from(usage.size.saturating_sub(usage.idle)));
                inner
                    .pool_connections
                    .get_or_create(&state("idle"))
                    .set(i64::from(usage.idle));
                inner
                    .pool_max
                    .get_or_create(&PoolNameLabels { pool: usage.pool })
                    .set(i64::from(usage.max));
            }
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &inner.registry);
        text
    }

    /// The handles of one gRPC method, resolved once: `kind` is
    /// grpc-ecosystem's `grpc_type` (`unary`, `server_stream`, ...).
    pub fn grpc_method(&self, kind: &'static str, service: &str, method: &str) -> GrpcMethod {
        let labels = GrpcLabels {
            grpc_type: kind,
            grpc_service: service.into(),
            grpc_method: method.into(),
        };
        GrpcMethod {
            started: self.inner.grpc_started.get_or_create_owned(&labels),
            handling: self.inner.grpc_handling.get_or_create_owned(&labels),
            handled: Arc::new(std::array::from_fn(|_| OnceLock::new())),
            family: self.inner.grpc_handled.clone(),
            labels,
        }
    }

    /// Records one answered REST request: `route` is the matched template
    /// (never the concrete path), `method` the HTTP method's name.
    pub fn http_request(
        &self,
        route: &Arc<str>,
        method: &'static str,
        status: u16,
        took: Duration,
    ) {
        self.inner
            .http_requests
            .get_or_create(&HttpLabels {
                route: route.clone(),
                method,
                status,
            })
            .inc();
        self.inner
            .http_duration
            .get_or_create(&HttpRouteLabels {
                route: route.clone(),
                method,
            })
            .observe(took.as_secs_f64());
    }

    /// The handles of one group-commit lane (`op`: write, update, read).
    pub fn batches(&self, op: &'static str) -> Batches {
        let labels = BatchLabels { op };
        Batches {
            size: self.inner.batch_size.get_or_create_owned(&labels),
            seconds: self.inner.batch_seconds.get_or_create_owned(&labels),
        }
    }

    /// The hit and miss counters of the cache named `cache`.
    pub fn cache(&self, cache: &'static str) -> CacheCounters {
        let labels = CacheLabels { cache };
        CacheCounters {
            hits: self.inner.cache_hits.get_or_create_owned(&labels),
            misses: self.inner.cache_misses.get_or_create_owned(&labels),
        }
    }

    /// The refusal counter of the rate limit named `limit`.
    pub fn rate_limit(&self, limit: &'static str) -> Tally {
        Tally(
            self.inner
                .rate_limited
                .get_or_create_owned(&LimitLabels { limit }),
        )
    }
}

/// One database pool's connections at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Which pool (`main`; SQLite: `reader`, `writer`).
    pub pool: &'static str,
    /// Connections open, in use or idle.
    pub size: u32,
    /// Connections open and idle.
    pub idle: u32,
    /// The most it opens.
    pub max: u32,
}

/// The counters of one gRPC method; see [`Metrics::grpc_method`].
#[derive(Clone)]
pub struct GrpcMethod {
    started: Counter,
    handling: Histogram,
    /// One counter per code, made on first use so that only codes that
    /// happened are exposed.
    handled: Arc<[OnceLock<Counter>; GRPC_CODES]>,
    family: Family<GrpcHandledLabels, Counter>,
    labels: GrpcLabels,
}

impl GrpcMethod {
    /// Counts a call arriving.
    pub fn started(&self) {
        self.started.inc();
    }

    /// Counts a call answered with the gRPC status `code` (0..=16) after `took`.
    pub fn handled(&self, code: i32, took: Duration) {
        self.handling.observe(took.as_secs_f64());
        // A code outside the standard ones is counted as Unknown, as gRPC reads it.
        let index = usize::try_from(code)
            .ok()
            .filter(|c| *c < GRPC_CODES)
            .unwrap_or(2);
        self.handled[index]
            .get_or_init(|| {
                self.family.get_or_create_owned(&GrpcHandledLabels {
                    grpc_type: self.labels.grpc_type,
                    grpc_service: self.labels.grpc_service.clone(),
                    grpc_method: self.labels.grpc_method.clone(),
                    grpc_code: CODE_NAMES[index],
                })
            })
            .inc();
    }
}

/// The names grpc-ecosystem's interceptors give the codes (Go's `codes.Code`).
const CODE_NAMES: [&str; GRPC_CODES] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// One counter, resolved to its labels.
#[derive(Clone, Debug)]
pub struct Tally(Counter);

impl Tally {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }
}

/// The histograms of one group-commit lane; see [`Metrics::batches`].
#[derive(Clone)]
pub struct Batches {
    size: Histogram,
    seconds: Histogram,
}

impl Batches {
    /// Records one batch of `size` operations that took `took`.
    pub fn observe(&self, size: usize, took: Duration) {
        self.size.observe(size as f64);
        self.seconds.observe(took.as_secs_f64());
    }
}

/// The counters of one cache; see [`Metrics::cache`].
#[derive(Clone)]
pub struct CacheCounters {
    hits: Counter,
    misses: Counter,
}

impl CacheCounters {
    /// Counts a lookup answered from the cache.
    pub fn hit(&self) {
        self.hits.inc();
    }

    /// Counts a lookup that loaded.
    pub fn miss(&self) {
        self.misses.inc();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Metrics;

    #[test]
    fn a_code_is_labelled_with_its_grpc_ecosystem_name_and_counted_once_per_call() {
        let metrics = Metrics::new();
        let method = metrics.grpc_method("unary", "pkg.Service", "Call");
        method.started();
        method.handled(16, Duration::from_millis(1));
        method.handled(16, Duration::from_millis(1));
        method.handled(0, Duration::from_millis(1));
        let text = metrics.encode();
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.starts_with("grpc_server_handled_total") && l.contains(needle))
                .map(str::to_owned)
        };
        assert_eq!(
            line("Unauthenticated").as_deref(),
            Some(
                "grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"pkg.Service\",\
                 grpc_method=\"Call\",grpc_code=\"Unauthenticated\"} 2"
            ),
            "{text}"
        );
        assert!(line("grpc_code=\"OK\"} 1").is_some(), "{text}");
        assert!(text.contains("vevee_build_info{version=\""), "{text}");
    }
}
