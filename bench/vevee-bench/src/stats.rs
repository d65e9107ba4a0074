//! Latency histogram, error counts by gRPC code, and the summary every
//! measured run prints (one JSON line, or text rendered from the same JSON).

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value as Json, json};

/// Values below this many nanoseconds have a bucket each.
const LINEAR: u64 = 256;
/// Sub-buckets per power of two above `LINEAR`: a relative error under 1%.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (LINEAR + (64 - 8) * SUB) as usize;

/// A log-linear histogram of nanoseconds.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Histogram {
    pub(crate) fn new() -> Self {
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

    pub(crate) fn record(&mut self, nanos: u64) {
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
pub(crate) const CLIENT_TIMEOUT: i32 = -1;

/// Outcomes of one run (or one thread's share of it).
pub(crate) struct Stats {
    /// Latency of successful requests.
    pub(crate) ok: Histogram,
    /// Failed requests by gRPC code.
    pub(crate) errors: BTreeMap<i32, u64>,
    /// The first message seen per code, to tell what went wrong.
    pub(crate) first_error: BTreeMap<i32, String>,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats {
            ok: Histogram::new(),
            errors: BTreeMap::new(),
            first_error: BTreeMap::new(),
        }
    }

    pub(crate) fn error(&mut self, code: i32, message: impl FnOnce() -> String) {
        *self.errors.entry(code).or_default() += 1;
        self.first_error.entry(code).or_insert_with(message);
    }

    pub(crate) fn merge(&mut self, other: &Stats) {
        self.ok.merge(&other.ok);
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
