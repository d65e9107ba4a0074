//! `report`: the JSON lines of a bench run as the markdown of
//! `BENCHMARKS.md`.

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader},
    path::PathBuf,
    str::FromStr,
};

use clap::Args;
use serde_json::Value as Json;

use crate::AnyResult;

/// Flags of `report`.
#[derive(Args)]
pub(crate) struct ReportArgs {
    /// JSON lines written by the other commands (and by bench/run.sh).
    input: PathBuf,
}

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

pub(crate) fn report(args: ReportArgs) -> AnyResult<()> {
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

    rest_section(&results, &mut out);

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

    // Update operations and idempotency keys (issue 13's targets), and
    // signed public-key writes (issue 16's).
    let writes: Vec<&Json> = results
        .0
        .iter()
        .filter(|r| r["tags"]["suite"].as_str() == Some("writes"))
        .collect();
    if !writes.is_empty() {
        let _ = writeln!(
            out,
            "### Update operations, request_ids and browser writes vs SetAttribute\n"
        );
        let _ = writeln!(
            out,
            "| system | RPC | conc. | req/s | p50 ms | p99 ms | errors | SetAttribute req/s | × SetAttribute | target |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---|---:|---:|---:|");
        for r in writes {
            let system = r["tags"]["system"].as_str().unwrap_or("?");
            let workload = r["workload"].as_str().unwrap_or("?");
            let c = r["concurrency"].as_u64().unwrap_or(0) as usize;
            let plain = results
                .find_at(
                    &[
                        ("system", system),
                        ("suite", "matrix"),
                        ("workload", "set-attribute"),
                    ],
                    c,
                )
                .map(rps)
                .unwrap_or(0.0);
            let target = match workload {
                "update-increment" => "≥ 0.8",
                "set-attribute-request-id" => "≥ 0.7",
                "set-attribute-browser" => "≥ 0.9",
                _ => "-",
            };
            let _ = writeln!(
                out,
                "| {system} | {workload} | {c} | {} | {} | {} | {} | {} | {} | {target} |",
                fmt_rps(rps(r)),
                fmt_ms(lat(r, "p50")),
                fmt_ms(lat(r, "p99")),
                fmt_errors(r),
                if plain > 0.0 {
                    fmt_rps(plain)
                } else {
                    "-".into()
                },
                ratio(rps(r), plain),
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

/// The REST face beside gRPC, run for run in the same server, and the
/// targets of the HTTP face issue (PostgreSQL, 64 concurrent, ≥ 0.7x).
fn rest_section(results: &Results, out: &mut String) {
    let rpcs = [
        ("set-attribute", "SetAttribute"),
        ("get-attributes", "GetAttributes (10 values)"),
    ];
    let mut header = false;
    for (system, title) in [("postgres", "PostgreSQL"), ("sqlite", "SQLite")] {
        let concs = results.concurrencies(&[("system", system), ("suite", "rest")]);
        if concs.is_empty() {
            continue;
        }
        if !header {
            let _ = writeln!(
                out,
                "### REST (JSON over HTTP/1.1 keep-alive, one connection per client) vs gRPC\n"
            );
            let _ = writeln!(
                out,
                "| system | RPC | conc. | REST req/s | p50 ms | p99 ms | errors | gRPC req/s | × gRPC |"
            );
            let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---|---:|---:|");
            header = true;
        }
        for (rpc, rpc_title) in rpcs {
            for &c in &concs {
                let Some(r) = results.find_at(
                    &[("system", system), ("suite", "rest"), ("workload", rpc)],
                    c,
                ) else {
                    continue;
                };
                let grpc = results
                    .find_at(
                        &[("system", system), ("suite", "matrix"), ("workload", rpc)],
                        c,
                    )
                    .map(rps)
                    .unwrap_or(0.0);
                let _ = writeln!(
                    out,
                    "| {title} | {rpc_title} | {c} | {} | {} | {} | {} | {} | {} |",
                    fmt_rps(rps(r)),
                    fmt_ms(lat(r, "p50")),
                    fmt_ms(lat(r, "p99")),
                    fmt_errors(r),
                    fmt_rps(grpc),
                    ratio(rps(r), grpc),
                );
            }
        }
    }
    if !header {
        return;
    }
    out.push('\n');
    for (rpc, name) in rpcs {
        let at = |suite| {
            results
                .find_at(
                    &[("system", "postgres"), ("suite", suite), ("workload", rpc)],
                    64,
                )
                .map(rps)
        };
        if let (Some(rest), Some(grpc)) = (at("rest"), at("matrix")) {
            let _ = writeln!(
                out,
                "- Target: REST {name} at 64 concurrent on PostgreSQL ≥ 0.7x gRPC: {} ({}).",
                ratio(rest, grpc),
                verdict(rest >= 0.7 * grpc)
            );
        }
    }
    out.push('\n');
}
