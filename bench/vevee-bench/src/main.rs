//! `vevee-bench`: the load generator and raw-database baselines behind
//! `bench/run.sh`.
//!
//! - `load` runs one RPC kind (SetAttribute, SetAttributes with 10 values,
//!   GetAttributes, or Health/Check) at a fixed concurrency over several
//!   HTTP/2 connections for a fixed time, and reports throughput, latency
//!   percentiles and errors by gRPC code, as text or JSON.
//! - `setup` declares the text attributes `a0`..`a9` and seeds a population
//!   of persons with 10 values each.
//! - `raw-sqlite` is the raw SQLite baseline: the same statements the
//!   service would need, through sqlx, with the service's SQLite setup.
//! - `pgbench-log` turns pgbench's per-transaction logs into the same JSON.
//! - `report` turns the JSON lines of a run into the markdown of
//!   `BENCHMARKS.md`.
//!
//! The client is kept lean because on a 2-core machine it shares the CPU
//! with the server: requests are built from pre-formatted strings, workers
//! of one OS thread share that thread's connections on a single-threaded
//! runtime (no cross-thread wake-ups), and the same client drives the
//! Health/Check baseline so that the ratio to it is fair.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::ExitCode,
    rc::Rc,
    str::FromStr,
    sync::{
        Arc, Barrier, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clap::{Args, Parser, Subcommand, ValueEnum};
use prost_types::{Value, value::Kind};
use serde_json::{Value as Json, json};
use tonic::{
    Code, Request, Status,
    metadata::{Ascii, MetadataValue},
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use vevee_attributes::proto::v1::{
    AttributeType, CreateAttributeDefinitionRequest, GetAttributesRequest, SetAttributeRequest,
    SetAttributesRequest, attribute_definitions_service_client::AttributeDefinitionsServiceClient,
    attributes_service_client::AttributesServiceClient,
};

/// Load generator and baselines for vevee-attributes.
// The same allocator as the server: the load generator shares the cores
// with it, so its own malloc time counts against every figure.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "vevee-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one RPC kind at a fixed concurrency for a fixed time.
    Load(LoadArgs),
    /// Declare the attributes a0..a9 and seed the population (10 values each).
    Setup(SetupArgs),
    /// Raw SQLite baseline: the service's SQLite setup, without the service.
    RawSqlite(RawSqliteArgs),
    /// Summarize pgbench per-transaction logs (`pgbench -l`) as JSON.
    PgbenchLog(PgbenchLogArgs),
    /// Render the JSON lines of a bench run as markdown.
    Report(ReportArgs),
}

/// The RPC a load run sends.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Rpc {
    /// SetAttribute of one of a0..a9.
    SetAttribute,
    /// SetAttributes of all of a0..a9.
    SetAttributes,
    /// GetAttributes of a person (seeded with 10 values).
    GetAttributes,
    /// grpc.health.v1.Health/Check: the baseline of the server itself.
    Health,
}

impl Rpc {
    fn name(self) -> &'static str {
        match self {
            Rpc::SetAttribute => "set-attribute",
            Rpc::SetAttributes => "set-attributes",
            Rpc::GetAttributes => "get-attributes",
            Rpc::Health => "health",
        }
    }

    /// Attribute values one request writes.
    fn values_written(self) -> u64 {
        match self {
            Rpc::SetAttribute => 1,
            Rpc::SetAttributes => ATTRIBUTES as u64,
            Rpc::GetAttributes | Rpc::Health => 0,
        }
    }
}

/// How distinct_ids are drawn from the population.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Distribution {
    /// Every id equally likely.
    Uniform,
    /// Id of rank k with probability proportional to 1/k^s.
    Zipf,
}

/// The attributes the benchmark uses: text attributes `a0`..`a9`.
const ATTRIBUTES: usize = 10;

/// Which persons requests address.
#[derive(Clone, Args)]
struct PopulationArgs {
    /// Number of persons: ids are `<prefix>0` .. `<prefix>(N-1)`.
    #[arg(long, default_value_t = 10_000)]
    population: usize,

    /// Prefix of distinct_ids.
    #[arg(long, default_value = "u")]
    prefix: String,

    /// How ids are drawn.
    #[arg(long, value_enum, default_value = "uniform")]
    distribution: Distribution,

    /// Exponent s of the Zipf distribution.
    #[arg(long, default_value_t = 1.0)]
    zipf_exponent: f64,
}

/// Where the server is and how to authenticate.
#[derive(Clone, Args)]
struct TargetArgs {
    /// Address of the server (host:port).
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: String,

    /// API key (a secret key for GetAttributes and setup); sent as
    /// `authorization: Bearer <key>`.
    #[arg(long, env = "VEVEE_KEY", hide_env_values = true)]
    key: Option<String>,
}

/// Flags shared by every measured run.
#[derive(Clone, Args)]
struct RunArgs {
    /// Requests in flight: this many workers, each looping request → response.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,

    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,

    /// Time run before measuring, not counted.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,

    /// A request slower than this is abandoned and counted as CLIENT_TIMEOUT.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,

    /// Print JSON (one line) instead of text.
    #[arg(long)]
    json: bool,

    /// `key=value` copied into the JSON's `tags` (repeatable), for `report`.
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,

    /// Seed of the id picker (0: from the clock).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Flags of `load`.
#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    target: TargetArgs,

    /// The RPC to send.
    #[arg(long, value_enum)]
    rpc: Rpc,

    /// HTTP/2 connections; workers are spread over them round-robin.
    #[arg(long, default_value_t = 4)]
    connections: usize,

    /// OS threads of the client, each a single-threaded runtime owning
    /// connections (at most one per connection).
    #[arg(long, default_value_t = 1)]
    threads: usize,

    #[command(flatten)]
    run: RunArgs,

    #[command(flatten)]
    population: PopulationArgs,
}

/// Flags of `setup`.
#[derive(Args)]
struct SetupArgs {
    #[command(flatten)]
    target: TargetArgs,

    /// Number of persons to seed (`<prefix>0` ..); 0 only declares attributes.
    #[arg(long, default_value_t = 10_000)]
    population: usize,

    /// Prefix of distinct_ids.
    #[arg(long, default_value = "u")]
    prefix: String,

    /// SetAttributes requests in flight while seeding.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,

    /// HTTP/2 connections used for seeding.
    #[arg(long, default_value_t = 4)]
    connections: usize,

    /// Give up seeding after this long.
    #[arg(long, default_value = "20m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// The statement a raw SQLite run repeats.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RawOp {
    /// One single-row upsert per `BEGIN IMMEDIATE` transaction.
    Upsert1,
    /// Ten single-row upserts in one `BEGIN IMMEDIATE` transaction.
    Upsert10,
    /// The 10 rows of one person by primary-key prefix.
    Select10,
}

impl RawOp {
    fn name(self) -> &'static str {
        match self {
            RawOp::Upsert1 => "upsert1",
            RawOp::Upsert10 => "upsert10",
            RawOp::Select10 => "select10",
        }
    }
}

/// SQLite's `synchronous` setting.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SqliteSync {
    /// Every commit is fsynced.
    Full,
    /// WAL commits are not fsynced (checkpoints are).
    Normal,
}

/// Flags of `raw-sqlite`.
#[derive(Args)]
struct RawSqliteArgs {
    /// Database file (created and seeded with population × 10 rows if empty).
    #[arg(long)]
    file: PathBuf,

    /// The statement to repeat.
    #[arg(long, value_enum, default_value = "upsert1")]
    op: RawOp,

    /// SQLite `synchronous`.
    #[arg(long, value_enum, default_value = "full")]
    synchronous: SqliteSync,

    /// Reader connections (select10), like the service's pool.
    #[arg(long, default_value_t = 10)]
    readers: u32,

    #[command(flatten)]
    run: RunArgs,

    #[command(flatten)]
    population: PopulationArgs,
}

/// Flags of `pgbench-log`.
#[derive(Args)]
struct PgbenchLogArgs {
    /// The per-transaction log files pgbench wrote (`-l --log-prefix`).
    #[arg(required = true)]
    files: Vec<PathBuf>,

    /// The name of the pgbench script (e.g. upsert1).
    #[arg(long)]
    op: String,

    /// pgbench clients.
    #[arg(long)]
    concurrency: usize,

    /// The tps pgbench printed; default: transactions / duration.
    #[arg(long)]
    tps: Option<f64>,

    /// pgbench's `-T`.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Duration,

    /// Persons in the scratch table.
    #[arg(long, default_value_t = 0)]
    population: usize,

    /// `key=value` copied into the JSON's `tags` (repeatable).
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
}

/// Flags of `report`.
#[derive(Args)]
struct ReportArgs {
    /// JSON lines written by the other commands (and by bench/run.sh).
    input: PathBuf,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Load(args) => load(args),
        Command::Setup(args) => setup(args),
        Command::RawSqlite(args) => raw_sqlite(args),
        Command::PgbenchLog(args) => pgbench_log(args),
        Command::Report(args) => report(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

// ---------------------------------------------------------------------------
// Latency histogram and statistics.

/// Values below this many nanoseconds have a bucket each.
const LINEAR: u64 = 256;
/// Sub-buckets per power of two above `LINEAR`: a relative error under 1%.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (LINEAR + (64 - 8) * SUB) as usize;

/// A log-linear histogram of nanoseconds.
#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
            sum: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < LINEAR {
            v as usize
        } else {
            let e = 63 - v.leading_zeros();
            let mantissa = (v >> (e - SUB_BITS)) - SUB;
            (LINEAR + u64::from(e - 8) * SUB + mantissa) as usize
        }
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < LINEAR {
            i
        } else {
            let j = i - LINEAR;
            let shift = j / SUB + 8 - u64::from(SUB_BITS);
            let lower = (SUB + j % SUB) << shift;
            lower + (1u64 << shift) / 2
        }
    }

    fn record(&mut self, nanos: u64) {
        self.counts[Self::index(nanos)] += 1;
        self.total += 1;
        self.max = self.max.max(nanos);
        self.sum += u128::from(nanos);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// The `p`-th percentile in nanoseconds (0 when empty).
    fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0 * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }

    fn mean(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            (self.sum / u128::from(self.total)) as u64
        }
    }
}

/// Pseudo gRPC code of a request the client abandoned.
const CLIENT_TIMEOUT: i32 = -1;

/// Outcomes of one run (or one thread's share of it).
struct Stats {
    /// Latency of successful requests.
    ok: Histogram,
    /// Failed requests by gRPC code.
    errors: BTreeMap<i32, u64>,
    /// The first message seen per code, to tell what went wrong.
    first_error: BTreeMap<i32, String>,
}

impl Stats {
    fn new() -> Self {
        Stats {
            ok: Histogram::new(),
            errors: BTreeMap::new(),
            first_error: BTreeMap::new(),
        }
    }

    fn error(&mut self, code: i32, message: impl FnOnce() -> String) {
        *self.errors.entry(code).or_default() += 1;
        self.first_error.entry(code).or_insert_with(message);
    }

    fn merge(&mut self, other: &Stats) {
        self.ok.merge(&other.ok);
        for (code, n) in &other.errors {
            *self.errors.entry(*code).or_default() += n;
        }
        for (code, m) in &other.first_error {
            self.first_error.entry(*code).or_insert_with(|| m.clone());
        }
    }
}

fn code_name(code: i32) -> &'static str {
    match code {
        CLIENT_TIMEOUT => "CLIENT_TIMEOUT",
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "OTHER",
    }
}

/// What a run reports, as JSON (the text output is rendered from it).
struct Summary<'a> {
    workload: String,
    concurrency: usize,
    connections: usize,
    threads: usize,
    population: usize,
    distribution: &'a str,
    values_per_request: u64,
    duration: Duration,
    stats: &'a Stats,
    /// Overrides the computed throughput (pgbench's own tps).
    throughput: Option<f64>,
    tags: &'a [(String, String)],
    extra: Json,
}

/// The 1-minute load average (0 where /proc/loadavg is missing).
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn ms(nanos: u64) -> f64 {
    (nanos as f64 / 1e6 * 1000.0).round() / 1000.0
}

impl Summary<'_> {
    fn to_json(&self) -> Json {
        let secs = self.duration.as_secs_f64();
        let ok = self.stats.ok.total;
        let errors: u64 = self.stats.errors.values().sum();
        let throughput = self
            .throughput
            .unwrap_or(if secs > 0.0 { ok as f64 / secs } else { 0.0 });
        let h = &self.stats.ok;
        let error_counts: serde_json::Map<String, Json> = self
            .stats
            .errors
            .iter()
            .map(|(c, n)| (code_name(*c).to_owned(), json!(n)))
            .collect();
        let tags: serde_json::Map<String, Json> = self
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let mut out = json!({
            "workload": self.workload,
            "concurrency": self.concurrency,
            "connections": self.connections,
            "threads": self.threads,
            "population": self.population,
            "distribution": self.distribution,
            "duration_s": secs,
            "requests": ok + errors,
            "ok": ok,
            "errors": error_counts,
            "throughput_rps": (throughput * 10.0).round() / 10.0,
            "values_per_s": (throughput * self.values_per_request as f64).round(),
            "latency_ms": {
                "p50": ms(h.percentile(50.0)),
                "p90": ms(h.percentile(90.0)),
                "p99": ms(h.percentile(99.0)),
                "max": ms(h.max),
                "mean": ms(h.mean()),
            },
            "tags": tags,
            // Other work on the machine shows here: the run itself accounts
            // for about 2-3 on 2 cores.
            "loadavg_1m": loadavg(),
        });
        if let (Json::Object(out), Json::Object(extra)) = (&mut out, &self.extra) {
            out.extend(extra.clone());
        }
        out
    }

    fn print(&self, as_json: bool) {
        let j = self.to_json();
        let l = &j["latency_ms"];
        if as_json {
            println!("{j}");
            // A line for whoever watches the run.
            eprintln!(
                "{} c={}: {} req/s, p50 {} p99 {} max {} ms, errors {}",
                self.workload,
                self.concurrency,
                j["throughput_rps"],
                l["p50"],
                l["p99"],
                l["max"],
                j["errors"]
            );
            return;
        }
        println!(
            "{} concurrency={} connections={} threads={} population={} ({}) duration={:.1}s",
            self.workload,
            self.concurrency,
            self.connections,
            self.threads,
            self.population,
            self.distribution,
            self.duration.as_secs_f64()
        );
        print!("  throughput: {} req/s", j["throughput_rps"]);
        if self.values_per_request > 0 {
            print!(" ({} values/s)", j["values_per_s"]);
        }
        println!();
        println!(
            "  latency ms: p50 {} | p90 {} | p99 {} | max {} | mean {}",
            l["p50"], l["p90"], l["p99"], l["max"], l["mean"]
        );
        println!("  ok: {}  errors: {}", j["ok"], j["errors"]);
        for (code, message) in &self.stats.first_error {
            println!("  first {}: {message}", code_name(*code));
        }
    }
}

// ---------------------------------------------------------------------------
// Picking distinct_ids.

/// splitmix64: tiny, fast, and good enough to pick ids.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is negligible here).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The population's distinct_ids, pre-formatted, and how to draw them.
struct Ids {
    names: Vec<String>,
    /// Zipf's cumulative distribution over ranks; `None` for uniform.
    cdf: Option<Vec<f64>>,
}

impl Ids {
    fn new(p: &PopulationArgs) -> Result<Self, String> {
        if p.population == 0 {
            return Err("--population must be at least 1".into());
        }
        let names = (0..p.population)
            .map(|i| format!("{}{i}", p.prefix))
            .collect();
        let cdf = match p.distribution {
            Distribution::Uniform => None,
            Distribution::Zipf => {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (1..=p.population)
                    .map(|k| {
                        acc += (k as f64).powf(-p.zipf_exponent);
                        acc
                    })
                    .collect();
                for c in &mut cdf {
                    *c /= acc;
                }
                Some(cdf)
            }
        };
        Ok(Ids { names, cdf })
    }

    fn pick(&self, rng: &mut Rng) -> usize {
        match &self.cdf {
            None => rng.below(self.names.len()),
            Some(cdf) => {
                let u = rng.unit();
                cdf.partition_point(|&c| c < u).min(cdf.len() - 1)
            }
        }
    }
}

fn distribution_name(p: &PopulationArgs) -> String {
    match p.distribution {
        Distribution::Uniform => "uniform".into(),
        Distribution::Zipf => format!("zipf(s={})", p.zipf_exponent),
    }
}

fn clock_seed(seed: u64) -> u64 {
    if seed != 0 {
        return seed;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5EED)
}

// ---------------------------------------------------------------------------
// The gRPC load generator.

fn text(s: String) -> Value {
    Value {
        kind: Some(Kind::StringValue(s)),
    }
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
    ids: Ids,
}

impl Prebuilt {
    fn new(rpc: Rpc, key: Option<&str>, ids: Ids) -> Result<Self, String> {
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
        Ok(Prebuilt {
            rpc,
            auth,
            attributes,
            values,
            maps,
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
                };
                self.attributes.set_attribute(p.request(message)).await?;
            }
            Rpc::SetAttributes => {
                let message = SetAttributesRequest {
                    distinct_id: distinct_id(),
                    values: p.maps[n % p.maps.len()].clone(),
                };
                self.attributes.set_attributes(p.request(message)).await?;
            }
            Rpc::GetAttributes => {
                let message = GetAttributesRequest {
                    distinct_id: distinct_id(),
                    attributes: Vec::new(),
                    include_archived: false,
                };
                let response = self.attributes.get_attributes(p.request(message)).await?;
                if response.get_ref().attributes.len() != ATTRIBUTES {
                    return Err(Status::failed_precondition(format!(
                        "{} has {} values, not {ATTRIBUTES}: is the population seeded?",
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

fn endpoint(addr: &str) -> AnyResult<Endpoint> {
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

fn load(args: LoadArgs) -> AnyResult<()> {
    let run = &args.run;
    if run.concurrency == 0 || args.connections == 0 || args.threads == 0 {
        return Err("--concurrency, --connections and --threads must be at least 1".into());
    }
    let connections = args.connections.min(run.concurrency);
    let threads = args.threads.min(connections);
    let ids = Ids::new(&args.population)?;
    let prebuilt = Arc::new(Prebuilt::new(args.rpc, args.target.key.as_deref(), ids)?);
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
        let timeout = run.request_timeout;
        handles.push(
            std::thread::Builder::new()
                .name(format!("bench-{t}"))
                .spawn(move || {
                    client_thread(
                        endpoint,
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
fn client_thread(
    endpoint: Endpoint,
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
        let mut channels = Vec::with_capacity(connections);
        let mut error = None;
        for _ in 0..connections {
            match endpoint.connect().await {
                Ok(channel) => channels.push(Clients::new(channel)),
                Err(err) => {
                    error = Some(format!("cannot connect to {}: {err:?}", endpoint.uri()));
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
            let mut clients = channels[connection].clone();
            let prebuilt = prebuilt.clone();
            let stats = stats.clone();
            let mut rng = Rng::new(seed ^ (worker as u64).wrapping_mul(0xA076_1D64_78BD_642F));
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
                        Ok(Ok(())) => stats
                            .ok
                            .record(finished.duration_since(started).as_nanos() as u64),
                        Ok(Err(status)) => {
                            stats.error(status.code() as i32, || status.message().to_owned())
                        }
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

// ---------------------------------------------------------------------------
// Setup: attributes and seed.

fn setup(args: SetupArgs) -> AnyResult<()> {
    let key = args
        .target
        .key
        .clone()
        .ok_or("--key (or VEVEE_KEY) is required: a secret key")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let endpoint = endpoint(&args.target.addr)?;
        let auth: MetadataValue<Ascii> = format!("Bearer {key}").parse()?;
        let with_auth = |mut r: Request<_>| {
            r.metadata_mut().insert("authorization", auth.clone());
            r
        };
        let channel = endpoint.connect().await?;
        let mut definitions = AttributeDefinitionsServiceClient::new(channel);
        let mut created = 0;
        for i in 0..ATTRIBUTES {
            let request = with_auth(Request::new(CreateAttributeDefinitionRequest {
                key: format!("a{i}"),
                r#type: AttributeType::Text as i32,
                config: None,
                display_name: format!("Bench attribute {i}"),
                description: String::new(),
            }));
            match definitions.create_attribute_definition(request).await {
                Ok(_) => created += 1,
                Err(status) if status.code() == Code::AlreadyExists => {}
                Err(status) => return Err(format!("declaring a{i}: {status}").into()),
            }
        }
        eprintln!(
            "attributes a0..a{}: {created} declared, {} already there",
            ATTRIBUTES - 1,
            ATTRIBUTES - created
        );
        if args.population == 0 {
            return Ok(());
        }

        let mut clients = Vec::new();
        for _ in 0..args.connections.max(1) {
            clients.push(AttributesServiceClient::new(endpoint.connect().await?));
        }
        let values: HashMap<String, Value> = (0..ATTRIBUTES)
            .map(|i| (format!("a{i}"), text(format!("s{i}"))))
            .collect();
        let next = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Stats::new()));
        let started = Instant::now();
        let deadline = started + args.timeout;
        let mut tasks = Vec::new();
        for w in 0..args.concurrency.max(1) {
            let mut client = clients[w % clients.len()].clone();
            let (next, done, errors, values) =
                (next.clone(), done.clone(), errors.clone(), values.clone());
            let prefix = args.prefix.clone();
            let population = args.population;
            let auth = auth.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= population || Instant::now() >= deadline {
                        break;
                    }
                    let mut request = Request::new(SetAttributesRequest {
                        distinct_id: format!("{prefix}{i}"),
                        values: values.clone(),
                    });
                    request.metadata_mut().insert("authorization", auth.clone());
                    let result = tokio::time::timeout(
                        Duration::from_secs(30),
                        client.set_attributes(request),
                    )
                    .await;
                    match result {
                        Ok(Ok(_)) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Err(status)) => errors
                            .lock()
                            .expect("not poisoned")
                            .error(status.code() as i32, || status.message().to_owned()),
                        Err(_) => errors
                            .lock()
                            .expect("not poisoned")
                            .error(CLIENT_TIMEOUT, || "no response within 30s".into()),
                    }
                }
            }));
        }
        let progress = {
            let done = done.clone();
            let population = args.population;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    let n = done.load(Ordering::Relaxed);
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!(
                        "  seeded {n}/{population} persons in {secs:.0}s ({:.0}/s)",
                        n as f64 / secs
                    );
                }
            })
        };
        for task in tasks {
            task.await?;
        }
        progress.abort();
        let n = done.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "seeded {n} persons x {ATTRIBUTES} values in {secs:.1}s ({:.0} persons/s)",
            n as f64 / secs
        );
        let errors = errors.lock().map_err(|_| "poisoned")?;
        if !errors.errors.is_empty() || n < args.population as u64 {
            for (code, count) in &errors.errors {
                eprintln!(
                    "  {count} x {}: {}",
                    code_name(*code),
                    errors.first_error.get(code).map_or("", String::as_str)
                );
            }
            return Err(
                format!("seeding failed: {n} of {} persons seeded", args.population).into(),
            );
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Raw SQLite baseline.

/// Person `i`'s id in the raw table: 16 bytes, like the service's UUID blobs.
fn raw_person(i: usize) -> Vec<u8> {
    (i as u128).to_be_bytes().to_vec()
}

/// The workspace of every raw row.
const RAW_WORKSPACE: [u8; 16] = [7; 16];

fn raw_sqlite(args: RawSqliteArgs) -> AnyResult<()> {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };

    let run = args.run.clone();
    if run.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    let ids = Arc::new(Ids::new(&args.population)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // The service's options: WAL, foreign keys, a 5 s busy timeout, the
        // chosen synchronous, one writer connection and a pool of readers.
        let options = SqliteConnectOptions::new()
            .filename(&args.file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .synchronous(match args.synchronous {
                SqliteSync::Full => SqliteSynchronous::Full,
                SqliteSync::Normal => SqliteSynchronous::Normal,
            });
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options.clone())
            .await?;
        // The shape of the service's attribute_values, without the foreign keys.
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS raw_values ( \
                 workspace_id BLOB NOT NULL, \
                 person_id BLOB NOT NULL, \
                 attribute_key TEXT NOT NULL, \
                 value TEXT NOT NULL CHECK (json_valid(value)), \
                 updated_at TEXT NOT NULL, \
                 PRIMARY KEY (workspace_id, person_id, attribute_key))",
        )
        .execute(&writer)
        .await?;
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM raw_values")
            .fetch_one(&writer)
            .await?;
        if rows == 0 {
            let started = Instant::now();
            let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
            let now = chrono::Utc::now();
            for i in 0..args.population.population {
                for k in 0..ATTRIBUTES {
                    sqlx::query(
                        "INSERT INTO raw_values VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .bind(&RAW_WORKSPACE[..])
                    .bind(raw_person(i))
                    .bind(format!("a{k}"))
                    .bind(format!("\"s{k}\""))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            eprintln!(
                "seeded raw_values with {} persons x {ATTRIBUTES} rows in {:.1}s",
                args.population.population,
                started.elapsed().as_secs_f64()
            );
        }
        let version: String = sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(&writer)
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(args.readers.max(1))
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await?;

        let seed = clock_seed(run.seed);
        let start = Instant::now();
        let measure_from = start + run.warmup;
        let until = measure_from + run.duration;
        let op = args.op;
        let timeout = run.request_timeout;
        let mut tasks = Vec::with_capacity(run.concurrency);
        for worker in 0..run.concurrency {
            let (writer, reader, ids) = (writer.clone(), reader.clone(), ids.clone());
            let mut rng = Rng::new(seed ^ (worker as u64).wrapping_mul(0xA076_1D64_78BD_642F));
            tasks.push(tokio::spawn(async move {
                let mut stats = Stats::new();
                let mut n = worker;
                loop {
                    let started = Instant::now();
                    if started >= until {
                        break;
                    }
                    let person = raw_person(ids.pick(&mut rng));
                    let work = async {
                        match op {
                            RawOp::Upsert1 | RawOp::Upsert10 => {
                                let keys = if op == RawOp::Upsert1 { 1 } else { ATTRIBUTES };
                                let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
                                let now = chrono::Utc::now();
                                for k in 0..keys {
                                    sqlx::query(
                                        "INSERT INTO raw_values \
                                             (workspace_id, person_id, attribute_key, value, updated_at) \
                                         VALUES (?1, ?2, ?3, ?4, ?5) \
                                         ON CONFLICT (workspace_id, person_id, attribute_key) \
                                         DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                                    )
                                    .bind(&RAW_WORKSPACE[..])
                                    .bind(&person)
                                    .bind(format!("a{}", (n + k) % ATTRIBUTES))
                                    .bind(format!("\"v{}\"", n % 16))
                                    .bind(now)
                                    .execute(&mut *tx)
                                    .await?;
                                }
                                tx.commit().await?;
                            }
                            RawOp::Select10 => {
                                let rows: Vec<(String, String, String)> = sqlx::query_as(
                                    "SELECT attribute_key, value, updated_at FROM raw_values \
                                     WHERE workspace_id = ?1 AND person_id = ?2 \
                                     ORDER BY attribute_key",
                                )
                                .bind(&RAW_WORKSPACE[..])
                                .bind(&person)
                                .fetch_all(&reader)
                                .await?;
                                if rows.len() != ATTRIBUTES {
                                    return Err(sqlx::Error::RowNotFound);
                                }
                            }
                        }
                        Ok::<(), sqlx::Error>(())
                    };
                    let result = tokio::time::timeout(timeout, work).await;
                    let finished = Instant::now();
                    n = n.wrapping_add(1);
                    if finished < measure_from || finished > until {
                        continue;
                    }
                    match result {
                        Ok(Ok(())) => stats
                            .ok
                            .record(finished.duration_since(started).as_nanos() as u64),
                        // Code UNKNOWN stands for any database error here.
                        Ok(Err(err)) => stats.error(Code::Unknown as i32, || err.to_string()),
                        Err(_) => stats.error(CLIENT_TIMEOUT, || {
                            format!("no result within {timeout:?}")
                        }),
                    }
                }
                stats
            }));
        }
        let mut total = Stats::new();
        for task in tasks {
            total.merge(&task.await?);
        }
        let sync = match args.synchronous {
            SqliteSync::Full => "FULL",
            SqliteSync::Normal => "NORMAL",
        };
        Summary {
            workload: format!("raw-sqlite-{}", op.name()),
            concurrency: run.concurrency,
            connections: if op == RawOp::Select10 { args.readers as usize } else { 1 },
            threads: 2,
            population: args.population.population,
            distribution: &distribution_name(&args.population),
            values_per_request: match op {
                RawOp::Upsert1 => 1,
                RawOp::Upsert10 => ATTRIBUTES as u64,
                RawOp::Select10 => 0,
            },
            duration: run.duration,
            stats: &total,
            throughput: None,
            tags: &run.tags,
            extra: json!({"op": op.name(), "sqlite_version": version, "synchronous": sync}),
        }
        .print(run.json);
        writer.close().await;
        reader.close().await;
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// pgbench logs.

fn pgbench_log(args: PgbenchLogArgs) -> AnyResult<()> {
    // Each line: client_id transaction_no time script_no time_epoch time_us
    // [schedule_lag], where `time` is the latency in microseconds.
    let mut stats = Stats::new();
    for file in &args.files {
        let reader = BufReader::new(std::fs::File::open(file)?);
        for line in reader.lines() {
            let line = line?;
            let mut fields = line.split_ascii_whitespace();
            let latency = fields.nth(2).ok_or_else(|| format!("bad line {line:?}"))?;
            match latency.parse::<u64>() {
                Ok(us) => stats.ok.record(us * 1000),
                // "failed" or "skipped" with --failures-detailed and friends.
                Err(_) => stats.error(Code::Unknown as i32, || line.clone()),
            }
        }
    }
    Summary {
        workload: format!("pgbench-{}", args.op),
        concurrency: args.concurrency,
        connections: args.concurrency,
        threads: if args.concurrency > 1 { 2 } else { 1 },
        population: args.population,
        distribution: "uniform",
        values_per_request: match args.op.as_str() {
            "upsert1" => 1,
            "upsert10" => ATTRIBUTES as u64,
            _ => 0,
        },
        duration: args.duration,
        stats: &stats,
        throughput: args.tps,
        tags: &args.tags,
        extra: json!({"op": args.op}),
    }
    .print(true);
    Ok(())
}

// ---------------------------------------------------------------------------
// Report.

/// The JSON lines of a run, with lookups by tags.
struct Results(Vec<Json>);

impl Results {
    fn find(&self, want: &[(&str, &str)]) -> Option<&Json> {
        self.0.iter().rev().find(|r| {
            want.iter()
                .all(|(k, v)| r["tags"][*k].as_str() == Some(*v) || r[*k].as_str() == Some(*v))
        })
    }

    fn find_at(&self, want: &[(&str, &str)], concurrency: usize) -> Option<&Json> {
        self.0.iter().rev().find(|r| {
            r["concurrency"].as_u64() == Some(concurrency as u64)
                && want
                    .iter()
                    .all(|(k, v)| r["tags"][*k].as_str() == Some(*v) || r[*k].as_str() == Some(*v))
        })
    }

    fn concurrencies(&self, want: &[(&str, &str)]) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .0
            .iter()
            .filter(|r| want.iter().all(|(k, v)| r["tags"][*k].as_str() == Some(*v)))
            .filter_map(|r| r["concurrency"].as_u64().map(|c| c as usize))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn rps(r: &Json) -> f64 {
    r["throughput_rps"].as_f64().unwrap_or(0.0)
}

fn lat(r: &Json, p: &str) -> f64 {
    r["latency_ms"][p].as_f64().unwrap_or(f64::NAN)
}

fn fmt_rps(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_errors(r: &Json) -> String {
    match r["errors"].as_object() {
        Some(map) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "0".into(),
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**not met**" }
}

fn report(args: ReportArgs) -> AnyResult<()> {
    let file = std::fs::File::open(&args.input)?;
    let mut rows = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        rows.push(Json::from_str(&line).map_err(|e| format!("{e}: {line}"))?);
    }
    let results = Results(rows);
    let mut out = String::new();
    let systems = [
        ("postgres", "PostgreSQL", "pgbench"),
        ("sqlite", "SQLite", "sqlx loop"),
    ];
    let rpcs = [
        ("set-attribute", "SetAttribute", Some("upsert1")),
        (
            "set-attributes",
            "SetAttributes (10 values)",
            Some("upsert10"),
        ),
        (
            "get-attributes",
            "GetAttributes (10 values)",
            Some("select10"),
        ),
        ("health", "Health/Check", None),
    ];
    for (system, title, raw_name) in systems {
        let concs = results.concurrencies(&[("system", system), ("suite", "matrix")]);
        if concs.is_empty() {
            continue;
        }
        let _ = writeln!(out, "### {title}\n");
        let _ = writeln!(
            out,
            "| RPC | conc. | req/s | values/s | p50 ms | p90 ms | p99 ms | max ms | errors | raw ({raw_name}) req/s | × raw | × Health | load |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
        );
        for (rpc, rpc_title, raw_op) in rpcs {
            for &c in &concs {
                let Some(r) = results.find_at(
                    &[("system", system), ("suite", "matrix"), ("workload", rpc)],
                    c,
                ) else {
                    continue;
                };
                let health = results
                    .find_at(
                        &[
                            ("system", system),
                            ("suite", "matrix"),
                            ("workload", "health"),
                        ],
                        c,
                    )
                    .map(rps)
                    .unwrap_or(0.0);
                let raw = raw_op.and_then(|op| {
                    results.find_at(&[("system", system), ("suite", "raw"), ("op", op)], c)
                });
                let (raw_rps, raw_ratio) = match raw {
                    Some(raw) => {
                        let clients = raw["concurrency"].as_u64().unwrap_or(0);
                        let note = raw["tags"]["clients"]
                            .as_str()
                            .filter(|n| *n != clients.to_string())
                            .map(|n| format!(" ({n} clients)"))
                            .unwrap_or_default();
                        (
                            format!("{}{note}", fmt_rps(rps(raw))),
                            ratio(rps(r), rps(raw)),
                        )
                    }
                    None => ("-".into(), "-".into()),
                };
                let values = r["values_per_s"].as_f64().unwrap_or(0.0);
                let _ = writeln!(
                    out,
                    "| {rpc_title} | {c} | {} | {} | {} | {} | {} | {} | {} | {raw_rps} | {raw_ratio} | {} | {:.1} |",
                    fmt_rps(rps(r)),
                    if values > 0.0 {
                        format!("{values:.0}")
                    } else {
                        "-".into()
                    },
                    fmt_ms(lat(r, "p50")),
                    fmt_ms(lat(r, "p90")),
                    fmt_ms(lat(r, "p99")),
                    fmt_ms(lat(r, "max")),
                    fmt_errors(r),
                    if rpc == "health" {
                        "1.00x".into()
                    } else {
                        ratio(rps(r), health)
                    },
                    r["loadavg_1m"].as_f64().unwrap_or(0.0),
                );
            }
        }
        out.push('\n');
        // The baselines themselves.
        let raw_concs = results.concurrencies(&[("system", system), ("suite", "raw")]);
        if !raw_concs.is_empty() {
            let _ = writeln!(out, "Raw baselines ({raw_name}):\n");
            let _ = writeln!(
                out,
                "| statement | clients | tx/s | p50 ms | p90 ms | p99 ms | max ms | errors |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
            for op in ["upsert1", "upsert10", "select10"] {
                for &c in &raw_concs {
                    if let Some(r) =
                        results.find_at(&[("system", system), ("suite", "raw"), ("op", op)], c)
                    {
                        let clients = r["tags"]["clients"]
                            .as_str()
                            .map_or_else(|| c.to_string(), str::to_owned);
                        let _ = writeln!(
                            out,
                            "| {op} | {clients} | {} | {} | {} | {} | {} | {} |",
                            fmt_rps(rps(r)),
                            fmt_ms(lat(r, "p50")),
                            fmt_ms(lat(r, "p90")),
                            fmt_ms(lat(r, "p99")),
                            fmt_ms(lat(r, "max")),
                            fmt_errors(r),
                        );
                    }
                }
            }
            out.push('\n');
        }
    }

    // Zipf.
    let zipf: Vec<&Json> = results
        .0
        .iter()
        .filter(|r| r["tags"]["suite"].as_str() == Some("zipf"))
        .collect();
    if !zipf.is_empty() {
        let _ = writeln!(out, "### Skewed ids (Zipf) vs uniform\n");
        let _ = writeln!(
            out,
            "| system | RPC | conc. | distribution | req/s | p50 ms | p99 ms | errors | uniform req/s | × uniform |"
        );
        let _ = writeln!(out, "|---|---|---:|---|---:|---:|---:|---|---:|---:|");
        for r in zipf {
            let system = r["tags"]["system"].as_str().unwrap_or("?");
            let workload = r["workload"].as_str().unwrap_or("?");
            let c = r["concurrency"].as_u64().unwrap_or(0) as usize;
            let uniform = results
                .find_at(
                    &[
                        ("system", system),
                        ("suite", "matrix"),
                        ("workload", workload),
                    ],
                    c,
                )
                .map(rps)
                .unwrap_or(0.0);
            let _ = writeln!(
                out,
                "| {system} | {workload} | {c} | {} | {} | {} | {} | {} | {} | {} |",
                r["distribution"].as_str().unwrap_or("?"),
                fmt_rps(rps(r)),
                fmt_ms(lat(r, "p50")),
                fmt_ms(lat(r, "p99")),
                fmt_errors(r),
                if uniform > 0.0 {
                    fmt_rps(uniform)
                } else {
                    "-".into()
                },
                ratio(rps(r), uniform),
            );
        }
        out.push('\n');
    }

    // Memory.
    let rss: Vec<&Json> = results
        .0
        .iter()
        .filter(|r| r["tags"]["suite"].as_str() == Some("rss"))
        .collect();
    if !rss.is_empty() {
        let _ = writeln!(out, "### Server resident memory (VmRSS)\n");
        let _ = writeln!(out, "| system | when | RSS MiB | load during the sample |");
        let _ = writeln!(out, "|---|---|---:|---|");
        for r in &rss {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {} |",
                r["tags"]["system"].as_str().unwrap_or("?"),
                r["tags"]["phase"].as_str().unwrap_or("?"),
                r["rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
                r["load"].as_str().unwrap_or("-"),
            );
        }
        out.push('\n');
    }

    // Population size.
    let small = |rpc| {
        results.find(&[
            ("suite", "population"),
            ("persons", "small"),
            ("workload", rpc),
        ])
    };
    let large = |rpc| {
        results.find(&[
            ("suite", "population"),
            ("persons", "large"),
            ("workload", rpc),
        ])
    };
    if small("set-attribute").is_some() || large("set-attribute").is_some() {
        let _ = writeln!(
            out,
            "### PostgreSQL: few vs many persons (10 values each), 64 concurrent\n"
        );
        let _ = writeln!(
            out,
            "| RPC | persons | req/s | p50 ms | p99 ms | errors | × fewer req/s | × fewer p99 |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---|---:|---:|");
        // A row of the table: `r`, with its ratios to `base` when given.
        let mut row = |title: &str, r: Option<&Json>, base: Option<&Json>| {
            let Some(r) = r else { return };
            let (x_rps, x_p99) = match base {
                Some(b) => (ratio(rps(r), rps(b)), ratio(lat(r, "p99"), lat(b, "p99"))),
                None => ("-".into(), "-".into()),
            };
            let _ = writeln!(
                out,
                "| {title} | {} | {} | {} | {} | {} | {x_rps} | {x_p99} |",
                r["population"],
                fmt_rps(rps(r)),
                fmt_ms(lat(r, "p50")),
                fmt_ms(lat(r, "p99")),
                fmt_errors(r),
            );
        };
        for (rpc, title) in [
            ("set-attribute", "SetAttribute"),
            ("get-attributes", "GetAttributes"),
        ] {
            row(title, small(rpc), None);
            row(title, large(rpc), small(rpc));
        }
        // The raw database at the same concurrency, few vs many persons.
        for (op, title) in [
            ("upsert1", "raw upsert1 (pgbench)"),
            ("select10", "raw select10 (pgbench)"),
        ] {
            let few = results.find_at(&[("system", "postgres"), ("suite", "raw"), ("op", op)], 64);
            row(title, few, None);
            row(
                title,
                results.find(&[("suite", "raw-population"), ("op", op)]),
                few,
            );
        }
        if let Some(seed) = results.find(&[("suite", "seed")]) {
            let _ = writeln!(
                out,
                "\nSeeding {} persons × 10 values by SQL took {:.0} s.",
                seed["persons"],
                seed["seconds"].as_f64().unwrap_or(0.0)
            );
        }
        out.push('\n');
    }

    // Targets of the issue.
    let _ = writeln!(out, "### Targets\n");
    let _ = writeln!(out, "| target | measured | verdict |");
    let _ = writeln!(out, "|---|---|---|");
    let matrix = |system, rpc, c| {
        results.find_at(
            &[("system", system), ("suite", "matrix"), ("workload", rpc)],
            c,
        )
    };
    let raw =
        |system, op, c| results.find_at(&[("system", system), ("suite", "raw"), ("op", op)], c);
    if let (Some(s), Some(b)) = (
        matrix("postgres", "set-attribute", 64),
        raw("postgres", "upsert1", 16),
    ) {
        let x = rps(s) / rps(b);
        let _ = writeln!(
            out,
            "| PostgreSQL SetAttribute @64 ≥ 1.5× pgbench single-row upsert @16 | {} vs {} req/s = {x:.2}× | {} |",
            fmt_rps(rps(s)),
            fmt_rps(rps(b)),
            verdict(x >= 1.5)
        );
        let p99 = lat(s, "p99");
        let _ = writeln!(
            out,
            "| PostgreSQL SetAttribute @64 p99 < 10 ms | {} ms | {} |",
            fmt_ms(p99),
            verdict(p99 < 10.0)
        );
    }
    if let (Some(s), Some(b)) = (
        matrix("sqlite", "set-attribute", 64),
        raw("sqlite", "upsert1", 64),
    ) {
        let x = rps(s) / rps(b);
        let _ = writeln!(
            out,
            "| SQLite SetAttribute @64 ≥ 2× raw single-row transactions @64 (synchronous=FULL) | {} vs {} req/s = {x:.2}× | {} |",
            fmt_rps(rps(s)),
            fmt_rps(rps(b)),
            verdict(x >= 2.0)
        );
    }
    if let (Some(s), Some(b)) = (
        matrix("postgres", "get-attributes", 64),
        raw("postgres", "select10", 16),
    ) {
        let x = rps(s) / rps(b);
        let _ = writeln!(
            out,
            "| PostgreSQL GetAttributes @64 ≥ 0.8× pgbench 10-row select @16 | {} vs {} req/s = {x:.2}× | {} |",
            fmt_rps(rps(s)),
            fmt_rps(rps(b)),
            verdict(x >= 0.8)
        );
    }
    for r in &rss {
        if r["tags"]["phase"].as_str() == Some("1000 streams") {
            let mib = r["rss_kib"].as_f64().unwrap_or(0.0) / 1024.0;
            let _ = writeln!(
                out,
                "| {} RSS at 1,000 concurrent streams < 100 MiB | {mib:.1} MiB | {} |",
                r["tags"]["system"].as_str().unwrap_or("?"),
                verdict(mib < 100.0)
            );
        }
    }
    for (rpc, title) in [
        ("set-attribute", "SetAttribute"),
        ("get-attributes", "GetAttributes"),
    ] {
        if let (Some(a), Some(b)) = (small(rpc), large(rpc)) {
            let x = rps(b) / rps(a);
            let y = lat(b, "p99") / lat(a, "p99");
            let _ = writeln!(
                out,
                "| PostgreSQL {title} @64 with {} persons within 20% of {} | req/s {x:.2}×, p99 {y:.2}× | {} |",
                b["population"],
                a["population"],
                verdict((0.8..=1.2).contains(&x) && y <= 1.2)
            );
        }
    }
    print!("{out}");
    Ok(())
}
