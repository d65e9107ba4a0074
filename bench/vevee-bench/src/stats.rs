//! Latency histogram, error counts by gRPC code, and the summary every
//! measured run prints (one JSON line, or text rendered from the same JSON).

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use serde_json::{Value as Json, json};

/// Latencies above this (an hour, in nanoseconds) are recorded as this.
const MAX_NANOS: u64 = 3_600_000_000_000;
/// Significant figures of the histogram: values within 0.1% of each other
/// share a bucket.
const SIGNIFICANT_FIGURES: u8 = 3;

/// Pseudo gRPC code of a request the client abandoned.
pub(crate) const CLIENT_TIMEOUT: i32 = -1;

/// Outcomes of one run (or one thread's share of it).
pub(crate) struct Stats {
    /// Latency of successful requests, in nanoseconds.
    ok: Histogram<u64>,
    /// Failed requests by gRPC code.
    pub(crate) errors: BTreeMap<i32, u64>,
    /// The first message seen per code, to tell what went wrong.
    pub(crate) first_error: BTreeMap<i32, String>,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats {
            ok: Histogram::new_with_max(MAX_NANOS, SIGNIFICANT_FIGURES)
                .expect("valid histogram bounds"),
            errors: BTreeMap::new(),
            first_error: BTreeMap::new(),
        }
    }

    /// Records a successful request that took `nanos`.
    pub(crate) fn ok(&mut self, nanos: u64) {
        self.ok.saturating_record(nanos);
    }

    pub(crate) fn error(&mut self, code: i32, message: impl FnOnce() -> String) {
        *self.errors.entry(code).or_default() += 1;
        self.first_error.entry(code).or_insert_with(message);
    }

    pub(crate) fn merge(&mut self, other: &Stats) {
        self.ok
            .add(&other.ok)
            .expect("histograms of the same bounds add up");
        for (code, n) in &other.errors {
            *self.errors.entry(*code).or_default() += n;
        }
        for (code, m) in &other.first_error {
            self.first_error.entry(*code).or_insert_with(|| m.clone());
        }
    }
}

pub(crate) fn code_name(code: i32) -> &'static str {
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
pub(crate) struct Summary<'a> {
    pub(crate) workload: String,
    pub(crate) concurrency: usize,
    pub(crate) connections: usize,
    pub(crate) threads: usize,
    pub(crate) population: usize,
    pub(crate) distribution: &'a str,
    pub(crate) values_per_request: u64,
    pub(crate) duration: Duration,
    pub(crate) stats: &'a Stats,
    /// Overrides the computed throughput (pgbench's own tps).
    pub(crate) throughput: Option<f64>,
    pub(crate) tags: &'a [(String, String)],
    pub(crate) extra: Json,
}

/// The 1-minute load average (0 where /proc/loadavg is missing).
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn ms(nanos: f64) -> f64 {
    (nanos / 1e6 * 1000.0).round() / 1000.0
}

impl Summary<'_> {
    fn to_json(&self) -> Json {
        let secs = self.duration.as_secs_f64();
        let ok = self.stats.ok.len();
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
                "p50": ms(h.value_at_quantile(0.50) as f64),
                "p90": ms(h.value_at_quantile(0.90) as f64),
                "p99": ms(h.value_at_quantile(0.99) as f64),
                "max": ms(h.max() as f64),
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

    pub(crate) fn print(&self, as_json: bool) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(stats: &Stats) -> Json {
        Summary {
            workload: "test".into(),
            concurrency: 1,
            connections: 1,
            threads: 1,
            population: 1,
            distribution: "uniform",
            values_per_request: 1,
            duration: Duration::from_secs(1),
            stats,
            throughput: None,
            tags: &[],
            extra: json!({}),
        }
        .to_json()
    }

    #[test]
    fn percentiles_in_milliseconds_within_a_tenth_of_a_percent() {
        // Two halves recorded apart and merged: 1 µs .. 1000 µs.
        let (mut a, mut b) = (Stats::new(), Stats::new());
        for us in 1..=1000u64 {
            if us % 2 == 0 { &mut a } else { &mut b }.ok(us * 1000);
        }
        a.merge(&b);
        let j = summary(&a);
        assert_eq!(j["ok"], 1000);
        assert_eq!(j["requests"], 1000);
        let l = &j["latency_ms"];
        for (p, want) in [
            ("p50", 0.5),
            ("p90", 0.9),
            ("p99", 0.99),
            ("max", 1.0),
            ("mean", 0.5005),
        ] {
            let got = l[p].as_f64().unwrap();
            assert!(
                (got - want).abs() <= want * 0.001 + 0.001,
                "{p}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn an_empty_run_reports_zeros_and_its_errors() {
        let mut stats = Stats::new();
        stats.error(CLIENT_TIMEOUT, || "slow".into());
        stats.error(CLIENT_TIMEOUT, || "ignored".into());
        let j = summary(&stats);
        assert_eq!(j["ok"], 0);
        assert_eq!(j["requests"], 2);
        assert_eq!(j["errors"], json!({"CLIENT_TIMEOUT": 2}));
        assert_eq!(stats.first_error[&CLIENT_TIMEOUT], "slow");
        for p in ["p50", "p90", "p99", "max", "mean"] {
            assert_eq!(j["latency_ms"][p], 0.0, "{p}");
        }
    }

    #[test]
    fn latencies_beyond_the_range_saturate() {
        let mut stats = Stats::new();
        stats.ok(u64::MAX);
        let max = summary(&stats)["latency_ms"]["max"].as_f64().unwrap();
        assert!((max - MAX_NANOS as f64 / 1e6).abs() <= MAX_NANOS as f64 / 1e6 * 0.001);
    }
}
