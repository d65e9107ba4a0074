//! Configuration of the service: every flag has an environment variable
//! fallback, so the same binary is configured by flags in development and by
//! env in containers.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

use crate::{app::Rate, storage::SqliteSynchronous};

/// A rate limit flag: a [`Rate`], or `off`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit(pub Option<Rate>);

impl std::str::FromStr for RateLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "off" => Ok(RateLimit(None)),
            rate => rate.parse().map(|r| RateLimit(Some(r))),
        }
    }
}

/// `--metrics-addr`: an address, or empty for no metrics listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<SocketAddr>);

impl std::str::FromStr for MetricsAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" => Ok(MetricsAddr(None)),
            addr => addr.parse().map(|a| MetricsAddr(Some(a))).map_err(|_| {
                format!(
                    "{addr:?} is not an IP:PORT address (e.g. 127.0.0.1:9464), \
                     nor empty (no metrics listener)"
                )
            }),
        }
    }
}

/// `--sqlite-synchronous`: the flag's spelling of [`SqliteSynchronous`]
/// (clap's derive stays in the front doors, off the storage types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSync {
    /// Every commit is on disk before it returns.
    Full,
    /// Faster; the last commits before a power loss may be lost.
    Normal,
}

impl From<SqliteSync> for SqliteSynchronous {
    fn from(flag: SqliteSync) -> Self {
        match flag {
            SqliteSync::Full => SqliteSynchronous::Full,
            SqliteSync::Normal => SqliteSynchronous::Normal,
        }
    }
}

/// Where the data lives and how the connection pool behaves.
#[derive(Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite://PATH` or `postgres://...`. Only `serve` and `migrate`
    /// create a missing SQLite file.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://vevee-attributes.db"
    )]
    pub database_url: String,

    /// Most connections the pool opens.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,

    /// How long a request waits for a pooled connection before failing with UNAVAILABLE.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub db_acquire_timeout: Duration,

    /// How long start-up keeps retrying an unreachable database before giving up.
    #[arg(long, env = "DB_CONNECT_RETRY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub db_connect_retry: Duration,

    /// SQLite only: `full` makes every acknowledged write survive a power cut;
    /// `normal` is faster but may lose the last writes on power loss (never corrupts).
    #[arg(long, env = "SQLITE_SYNCHRONOUS", value_enum, default_value = "full")]
    pub sqlite_synchronous: SqliteSync,
}

impl fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field("database_url", &redact_url(&self.database_url))
            .field("db_max_connections", &self.db_max_connections)
            .field("db_acquire_timeout", &self.db_acquire_timeout)
            .field("db_connect_retry", &self.db_connect_retry)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .finish()
    }
}

/// Replaces the password of a `scheme://user:password@host` URL with `***`,
/// so configuration can be logged. A URL that does not parse (a bad port, say)
/// loses its whole user part instead: it may still hold a password.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Cannot fail: the URL has a password, so it has a host.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => match url.split_once("://") {
            Some((scheme, rest)) if rest.contains('@') => {
                let host = rest.rsplit_once('@').map_or("", |(_, host)| host);
                format!("{scheme}://***@{host}")
            }
            _ => url.to_owned(),
        },
    }
}

/// Flags of `vevee-attributes serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the one listener: gRPC, gRPC-Web and REST/JSON (HTTP/1.1
    /// and HTTP/2), `HOST:PORT` with an IP address or a host name (the first
    /// address it resolves to). `--listen-addr` is the same flag.
    #[arg(
        long,
        visible_alias = "listen-addr",
        env = "GRPC_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub grpc_addr: String,

    /// Address of the metrics listener (`GET /metrics`, Prometheus text),
    /// apart from the public one; empty: no metrics listener.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: MetricsAddr,

    /// The database and its pool.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// PEM certificate chain of the listener (with --tls-key): gRPC, gRPC-Web
    /// and REST are then served over TLS only, HTTP/2 via ALPN and HTTP/1.1.
    /// Re-read on SIGHUP and when the file changes; open connections stay.
    #[arg(long, env = "TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert's certificate (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// After SIGTERM/SIGINT, how long in-flight RPCs get to finish before the process exits.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Largest request accepted, in bytes: a larger gRPC message gets
    /// RESOURCE_EXHAUSTED, a larger REST body 413.
    #[arg(long, env = "MAX_REQUEST_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_request_bytes: usize,

    /// Longest time one RPC may run before it fails with DEADLINE_EXCEEDED.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Threads serving RPCs; 0 means one per available core. With 1, the
    /// server runs on a single-threaded runtime, which needs ~35% less CPU
    /// per request (no work stealing, no cross-thread wake-ups; BENCHMARKS.md):
    /// the better choice for a replica limited to one core.
    #[arg(long, env = "WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,

    /// Most RPCs served at once (all connections together); more get RESOURCE_EXHAUSTED.
    #[arg(long, env = "CONCURRENCY_LIMIT", default_value_t = 1024)]
    pub concurrency_limit: usize,

    /// Interval of HTTP/2 keepalive pings to idle clients.
    #[arg(long, env = "HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_interval: Duration,

    /// How long a keepalive ping may go unanswered before the connection is closed.
    #[arg(long, env = "HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_timeout: Duration,

    /// How stale cached keys, settings and definitions may be: a revoked key, a
    /// changed setting or an archived attribute takes effect on every replica within this.
    /// 0s: nothing is cached (every request reads the database).
    #[arg(long, env = "CACHE_TTL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub cache_ttl: Duration,

    /// How often the database is probed to report health.
    #[arg(long, env = "HEALTH_PROBE_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub health_probe_interval: Duration,

    /// Most writes committed together (group commit); 1 turns coalescing off.
    #[arg(long, env = "MAX_WRITE_BATCH", default_value_t = 256)]
    pub max_write_batch: usize,

    /// PostgreSQL only: most batches being committed at once. SQLite always
    /// commits one at a time (it has one writer). 2 measured best on 2 cores
    /// (BENCHMARKS.md): more slots make smaller batches and more fsyncs.
    #[arg(long, env = "WRITE_COMMITS_IN_FLIGHT", default_value_t = 2)]
    pub write_commits_in_flight: usize,

    /// PostgreSQL only: most reads answered by one query (reads that arrive
    /// while every read slot is busy are batched); 1 turns batching off.
    #[arg(long, env = "MAX_READ_BATCH", default_value_t = 128)]
    pub max_read_batch: usize,

    /// PostgreSQL only: most batches of reads running at once.
    #[arg(long, env = "READS_IN_FLIGHT", default_value_t = 2)]
    pub reads_in_flight: usize,

    /// Requests a second each public key may make on this replica, with its
    /// burst: `RATE/s[,burst=N]`, `RATE/min[,burst=N]`, or `off`. Per
    /// replica: N replicas behind a balancer let through up to N times it.
    /// Over it: RESOURCE_EXHAUSTED `rate_limited` with RetryInfo (REST:
    /// 429 and Retry-After). Secret keys are not limited.
    #[arg(long, env = "PUBLIC_KEY_RATE", default_value = "50/s,burst=100")]
    pub public_key_rate: RateLimit,

    /// Writes a second to one person (distinct_id) with public keys on this
    /// replica, with its burst; same syntax and answer as --public-key-rate.
    #[arg(
        long,
        env = "PUBLIC_KEY_RATE_PER_PERSON",
        default_value = "5/s,burst=20"
    )]
    pub public_key_rate_per_person: RateLimit,

    /// How often the server deletes request_id records past their 24 hours
    /// (AIP-155 idempotency); records outlive their retention by at most this.
    #[arg(long, env = "REQUEST_SWEEP_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub request_sweep_interval: Duration,

    /// Most values one statement of a purge (DeleteAttributeDefinition)
    /// deletes: 1-100000. Each batch is one short transaction, so smaller
    /// batches hold locks for less time and larger ones purge faster.
    #[arg(long, env = "PURGE_BATCH_SIZE", default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub purge_batch_size: u32,

    /// The wait between two batches of a purge, which leaves the database
    /// to other traffic.
    #[arg(long, env = "PURGE_BATCH_PAUSE", default_value = "20ms", value_parser = humantime::parse_duration)]
    pub purge_batch_pause: Duration,

    /// How long a replica's claim on a running purge lasts without progress
    /// (at least 1s): a killed server's purge is resumed by a restarted one
    /// or another replica after at most this, and replicas look for such
    /// purges every half of it.
    #[arg(long, env = "OPERATION_LEASE", default_value = "30s", value_parser = parse_lease)]
    pub operation_lease: Duration,

    /// Don't create a first workspace (and print its keys) when the database has none.
    #[arg(long, env = "NO_BOOTSTRAP")]
    pub no_bootstrap: bool,

    /// Don't migrate: refuse to start unless every migration of this release
    /// is applied, and run on a newer schema (the previous release during a
    /// rolling upgrade or a rollback; README "Upgrading").
    #[arg(long, env = "NO_MIGRATE")]
    pub no_migrate: bool,
}

/// A flag's value out of its range: `--flag VALUE: must be ...`, the one
/// line printed before exiting with status 2, as clap does for a bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} {value}: {allowed}")]
pub struct InvalidFlag {
    flag: &'static str,
    value: String,
    allowed: String,
}

/// Refuses `value` of `flag` outside `min..=max`.
fn within<T: PartialOrd + fmt::Display>(
    flag: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), InvalidFlag> {
    if value < min || value > max {
        return Err(InvalidFlag {
            flag,
            value: value.to_string(),
            allowed: format!("must be between {min} and {max}"),
        });
    }
    Ok(())
}

/// Refuses a duration of `flag` outside `min..=max`.
fn within_time(
    flag: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), InvalidFlag> {
    if value < min || value > max {
        return Err(InvalidFlag {
            flag,
            value: humantime::format_duration(value).to_string(),
            allowed: format!(
                "must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        });
    }
    Ok(())
}

/// Refuses an address that is not `HOST:PORT` (an IP address, `[v6]`, or a
/// host name, resolved when the listener is bound).
fn valid_address(flag: &'static str, addr: &str) -> Result<(), InvalidFlag> {
    let shaped = addr.parse::<std::net::SocketAddr>().is_ok()
        || addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.contains(':')
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && port.parse::<u16>().is_ok()
        });
    if shaped {
        return Ok(());
    }
    Err(InvalidFlag {
        flag,
        value: addr.to_owned(),
        allowed: "must be HOST:PORT, with an IP address or a host name and a port 0-65535"
            .to_owned(),
    })
}

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

impl DatabaseArgs {
    /// Refuses values that would panic or start a process that cannot work
    /// (a pool of no connections, a zero acquire timeout); clap only checks
    /// that they parse.
    pub fn validate(&self) -> Result<(), InvalidFlag> {
        within("--db-max-connections", self.db_max_connections, 1, 10_000)?;
        within_time(
            "--db-acquire-timeout",
            self.db_acquire_timeout,
            10 * MS,
            HOUR,
        )?;
        within_time(
            "--db-connect-retry",
            self.db_connect_retry,
            Duration::ZERO,
            DAY,
        )
    }
}

impl ServeArgs {
    /// Refuses values that would panic (a zero interval) or start a server
    /// that refuses everything (no concurrency, no time, no bytes).
    pub fn validate(&self) -> Result<(), InvalidFlag> {
        self.database.validate()?;
        valid_address("--grpc-addr", &self.grpc_addr)?;
        within("--max-request-bytes", self.max_request_bytes, 1024, 1 << 30)?;
        within_time("--request-timeout", self.request_timeout, MS, HOUR)?;
        within_time(
            "--shutdown-grace",
            self.shutdown_grace,
            Duration::ZERO,
            HOUR,
        )?;
        within("--worker-threads", self.worker_threads, 0, 1024)?;
        within("--concurrency-limit", self.concurrency_limit, 1, 1_000_000)?;
        within_time(
            "--http2-keepalive-interval",
            self.http2_keepalive_interval,
            SECOND,
            HOUR,
        )?;
        within_time(
            "--http2-keepalive-timeout",
            self.http2_keepalive_timeout,
            SECOND,
            HOUR,
        )?;
        // 0s is allowed: no caching, every request reads the database (tests
        // that change a setting and expect the next request to see it).
        within_time("--cache-ttl", self.cache_ttl, Duration::ZERO, HOUR)?;
        within_time(
            "--health-probe-interval",
            self.health_probe_interval,
            100 * MS,
            HOUR,
        )?;
        within("--max-write-batch", self.max_write_batch, 1, 10_000)?;
        within(
            "--write-commits-in-flight",
            self.write_commits_in_flight,
            1,
            64,
        )?;
        within("--max-read-batch", self.max_read_batch, 1, 10_000)?;
        within("--reads-in-flight", self.reads_in_flight, 1, 64)?;
        within_time(
            "--request-sweep-interval",
            self.request_sweep_interval,
            SECOND,
            DAY,
        )
    }
}

/// A lease of at least a second: shorter ones expire between two batches.
fn parse_lease(text: &str) -> Result<Duration, String> {
    let lease = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if lease < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(lease)
}

impl ServeArgs {
    /// The async runtime the server runs on (see `--worker-threads`).
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let threads = match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        if threads == 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted_from_database_urls() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/attrs"),
            "postgres://app:***@db:5432/attrs"
        );
        assert_eq!(
            redact_url("postgres://app@db/attrs"),
            "postgres://app@db/attrs"
        );
        assert_eq!(redact_url("sqlite://data.db"), "sqlite://data.db");
        assert_eq!(
            redact_url("postgres://app:p@ss@db/attrs"),
            "postgres://app:***@db/attrs"
        );
        assert_eq!(
            redact_url("postgres://app:s3cret@db:port/attrs"),
            "postgres://***@db:port/attrs"
        );
    }
}
