//! `raw-sqlite`: the raw SQLite baseline, the statements the service would
//! need through sqlx with the service's SQLite setup, without the service.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::{Args, ValueEnum};
use serde_json::json;
use tonic::Code;

use crate::{
    ATTRIBUTES, AnyResult, RunArgs,
    population::{Ids, PopulationArgs, clock_seed, distribution_name, worker_rng},
    stats::{CLIENT_TIMEOUT, Stats, Summary},
};

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
pub(crate) struct RawSqliteArgs {
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

/// Person `i`'s id in the raw table: 16 bytes, like the service's UUID blobs.
fn raw_person(i: usize) -> Vec<u8> {
    (i as u128).to_be_bytes().to_vec()
}

/// The workspace of every raw row.
const RAW_WORKSPACE: [u8; 16] = [7; 16];

pub(crate) fn raw_sqlite(args: RawSqliteArgs) -> AnyResult<()> {
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
            let mut rng = worker_rng(seed, worker);
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
                        Ok(Ok(())) => stats.ok(finished.duration_since(started).as_nanos() as u64),
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
