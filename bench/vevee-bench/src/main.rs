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
//!
//! One module per tool ([`load`], [`setup`], [`raw_sqlite`], [`pgbench_log`],
//! [`report`]), plus what they share: [`stats`] (latency histogram, error
//! counts, the JSON/text summary) and [`population`] (which distinct_ids a run
//! addresses, and how they are drawn).

mod load;
mod pgbench_log;
mod population;
mod raw_sqlite;
mod report;
mod setup;
mod stats;

use std::{process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    load::LoadArgs, pgbench_log::PgbenchLogArgs, raw_sqlite::RawSqliteArgs, report::ReportArgs,
    setup::SetupArgs,
};

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

/// The attributes the benchmark uses: text attributes `a0`..`a9`.
pub(crate) const ATTRIBUTES: usize = 10;

/// The number attribute `setup` declares for the update-increment workload.
pub(crate) const COUNTER: &str = "n0";

/// Where the server is and how to authenticate.
#[derive(Clone, Args)]
pub(crate) struct TargetArgs {
    /// Address of the server (host:port).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub(crate) addr: String,

    /// API key (a secret key for GetAttributes and setup); sent as
    /// `authorization: Bearer <key>`.
    #[arg(long, env = "VEVEE_KEY", hide_env_values = true)]
    pub(crate) key: Option<String>,
}

/// Flags shared by every measured run.
#[derive(Clone, Args)]
pub(crate) struct RunArgs {
    /// Requests in flight: this many workers, each looping request → response.
    #[arg(long, default_value_t = 16)]
    pub(crate) concurrency: usize,

    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,

    /// Time run before measuring, not counted.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) warmup: Duration,

    /// A request slower than this is abandoned and counted as CLIENT_TIMEOUT.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) request_timeout: Duration,

    /// Print JSON (one line) instead of text.
    #[arg(long)]
    pub(crate) json: bool,

    /// `key=value` copied into the JSON's `tags` (repeatable), for `report`.
    #[arg(long = "tag", value_parser = parse_tag)]
    pub(crate) tags: Vec<(String, String)>,

    /// Seed of the id picker (0: from the clock).
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
}

pub(crate) fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Load(args) => load::load(args),
        Command::Setup(args) => setup::setup(args),
        Command::RawSqlite(args) => raw_sqlite::raw_sqlite(args),
        Command::PgbenchLog(args) => pgbench_log::pgbench_log(args),
        Command::Report(args) => report::report(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The error of any command: printed as `error: ...`, exit code 1.
pub(crate) type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
