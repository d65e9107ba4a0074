//! `pgbench-log`: pgbench's per-transaction logs (`pgbench -l`) as the same
//! JSON line the other measured runs print.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    time::Duration,
};

use clap::Args;
use serde_json::json;
use tonic::Code;

use crate::{
    ATTRIBUTES, AnyResult, parse_tag,
    stats::{Stats, Summary},
};

/// Flags of `pgbench-log`.
#[derive(Args)]
pub(crate) struct PgbenchLogArgs {
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

pub(crate) fn pgbench_log(args: PgbenchLogArgs) -> AnyResult<()> {
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
                Ok(us) => stats.ok(us * 1000),
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
