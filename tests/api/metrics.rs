//! The metrics listener (CONTRACT.md section 12) over the real server: a
//! known mix of gRPC and REST calls, scraped from `--metrics-addr` and read
//! with a Prometheus text parser, counts what was done with the labels
//! grpc-ecosystem and dashboards use, and never a key, distinct_id,
//! attribute key or value; the public listener serves no metrics.

use std::{collections::HashMap, net::SocketAddr};

use openmetrics_parser::{OpenMetricsValue, openmetrics::parse_openmetrics};
use reqwest::{Method, StatusCode};
use tonic::Code;
use vevee_attributes::proto::v1::AttributeType;

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{define, get, s, set, spawn_app},
    http::Rest,
    safety::allow_client_writes,
};

backend_tests! {
    a_known_mix_of_calls_is_counted_with_its_labels_and_no_private_value,
}

/// Made-up enough that no metric name or label could hold them by chance.
const PERSON: &str = "person-zq7-metrics";
const ATTRIBUTE: &str = "favourite_colour_zq7";
const VALUE: &str = "ultramarine-zq7";
const WRONG_KEY: &str = "sk_live_zq7WrongKeyThatDoesNotExist";

const ATTRIBUTES: &str = "vevee.attributes.v1.AttributesService";
const PERSON_ROUTE: &str = "/api/v1/persons/{distinct_id}/attributes";

/// One value of the exposition: a counter's `_total`, a gauge, a
/// histogram's `_count` and `_sum`, an info's `_info` (1).
struct Point {
    metric: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// `GET /metrics` of the metrics listener, parsed by an OpenMetrics parser.
async fn scrape(addr: SocketAddr) -> (String, Vec<Point>) {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("the metrics listener answers");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let exposition = parse_openmetrics(&text).unwrap_or_else(|e| panic!("{e:?} in {text}"));
    let mut points = Vec::new();
    for (name, family) in &exposition.families {
        for sample in family.iter_samples() {
            let labels: HashMap<String, String> = sample
                .get_labelset()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut push = |suffix: &str, value: f64| {
                points.push(Point {
                    metric: format!("{name}{suffix}"),
                    labels: labels.clone(),
                    value,
                })
            };
            match &sample.value {
                OpenMetricsValue::Counter(c) => push("_total", c.value.as_f64()),
                OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => push("", n.as_f64()),
                OpenMetricsValue::Histogram(h) => {
                    push("_count", h.count.unwrap_or_default() as f64);
                    push("_sum", h.sum.as_ref().map_or(0.0, |s| s.as_f64()));
                }
                OpenMetricsValue::Info => push("_info", 1.0),
                other => panic!("{name}: unexpected {other:?}"),
            }
        }
    }
    (text, points)
}

/// The sum of the values of `metric` whose labels include `labels` (0 when
/// there are none).
fn value(scrape: &[Point], metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .iter()
        .filter(|p| p.metric == metric)
        .filter(|p| {
            labels
                .iter()
                .all(|(k, v)| p.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|p| p.value)
        .sum()
}

/// The labels of `SetAttribute` with `code`.
fn set_attribute(code: &'static str) -> [(&'static str, &'static str); 4] {
    [
        ("grpc_service", ATTRIBUTES),
        ("grpc_method", "SetAttribute"),
        ("grpc_type", "unary"),
        ("grpc_code", code),
    ]
}

async fn a_known_mix_of_calls_is_counted_with_its_labels_and_no_private_value(db: &TestDb) {
    let app = spawn_app(
        &db.url,
        &[
            "--public-key-rate",
            "1/min,burst=1",
            "--public-key-rate-per-person",
            "off",
        ],
    )
    .await;
    let metrics = app.metrics_addr.expect("a metrics listener");
    let keys = app.workspace().await;
    allow_client_writes(&app, &keys).await;
    define(&app, ATTRIBUTE, &keys.sk_live, AttributeType::Text, None).await;

    // gRPC: three writes pass (two with the secret key, one with the public
    // key's only token); a wrong key and the public key's second call are
    // refused before any write.
    for key in [&keys.sk_live, &keys.sk_live, &keys.pk_live] {
        set(&app, key, PERSON, ATTRIBUTE, s(VALUE))
            .await
            .expect("written");
    }
    let wrong = set(&app, WRONG_KEY, PERSON, ATTRIBUTE, s(VALUE)).await;
    assert_eq!(wrong.unwrap_err().code(), Code::Unauthenticated);
    let limited = set(&app, &keys.pk_live, PERSON, ATTRIBUTE, s(VALUE)).await;
    assert_eq!(limited.unwrap_err().code(), Code::ResourceExhausted);
    get(&app, &keys.sk_live, PERSON).await.expect("read");

    // REST: one read passes, one is refused, one path matches no route.
    let [rest, _] = Rest::both(&app);
    let path = format!("/api/v1/persons/{PERSON}/attributes?attributes={ATTRIBUTE}");
    let ok = rest
        .send(Method::GET, &path, Some(&keys.sk_live), None, &[])
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let refused = rest
        .send(Method::GET, &path, Some(WRONG_KEY), None, &[])
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    let unknown = format!("/api/v1/{PERSON}/{VALUE}");
    let nowhere = rest.send(Method::GET, &unknown, None, None, &[]).await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);

    // The public listener has no metrics: /metrics is just an unknown path.
    let public = rest.send(Method::GET, "/metrics", None, None, &[]).await;
    assert_eq!(public.status, StatusCode::NOT_FOUND);
    assert!(!public.text.contains("grpc_server"), "{}", public.text);

    let (text, scrape) = scrape(metrics).await;

    // gRPC, counted once per call with grpc-ecosystem's names and codes.
    let started = [
        ("grpc_service", ATTRIBUTES),
        ("grpc_method", "SetAttribute"),
        ("grpc_type", "unary"),
    ];
    assert_eq!(value(&scrape, "grpc_server_started_total", &started), 5.0);
    assert_eq!(
        value(&scrape, "grpc_server_handled_total", &set_attribute("OK")),
        3.0
    );
    assert_eq!(
        value(
            &scrape,
            "grpc_server_handled_total",
            &set_attribute("Unauthenticated")
        ),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "grpc_server_handled_total",
            &set_attribute("ResourceExhausted")
        ),
        1.0
    );
    assert_eq!(
        value(&scrape, "grpc_server_handling_seconds_count", &started),
        5.0
    );
    // The REST reads became GetAttributes calls inside: counted as REST
    // only, so the one gRPC GetAttributes is all grpc_server_* has.
    let get_attributes = [
        ("grpc_service", ATTRIBUTES),
        ("grpc_method", "GetAttributes"),
    ];
    assert_eq!(
        value(&scrape, "grpc_server_started_total", &get_attributes),
        1.0
    );

    // REST, by route template, never the concrete path.
    let route = |status| {
        [
            ("route", PERSON_ROUTE),
            ("method", "GET"),
            ("status", status),
        ]
    };
    assert_eq!(
        value(&scrape, "http_server_requests_total", &route("200")),
        1.0
    );
    assert_eq!(
        value(&scrape, "http_server_requests_total", &route("401")),
        1.0
    );
    let unmatched = [("route", "unmatched"), ("status", "404")];
    assert_eq!(
        value(&scrape, "http_server_requests_total", &unmatched),
        2.0,
        "the unknown path and the public /metrics"
    );
    assert_eq!(
        value(
            &scrape,
            "http_server_request_duration_seconds_count",
            &[("route", PERSON_ROUTE), ("method", "GET")]
        ),
        2.0
    );

    // The three writes went through group commit (one lane or the other):
    // batch sizes add up to the writes made.
    let written = value(
        &scrape,
        "vevee_group_commit_batch_size_sum",
        &[("op", "write")],
    ) + value(
        &scrape,
        "vevee_group_commit_batch_size_sum",
        &[("op", "update")],
    );
    assert_eq!(written, 3.0, "{text}");
    let batches = value(
        &scrape,
        "vevee_group_commit_duration_seconds_count",
        &[("op", "write")],
    ) + value(
        &scrape,
        "vevee_group_commit_duration_seconds_count",
        &[("op", "update")],
    );
    assert!((1.0..=3.0).contains(&batches), "{batches} batches");

    assert_eq!(
        value(&scrape, "vevee_rate_limited_total", &[("limit", "per_key")]),
        1.0
    );
    assert!(value(&scrape, "vevee_cache_hits_total", &[("cache", "keys")]) >= 1.0);
    assert!(value(&scrape, "vevee_cache_misses_total", &[("cache", "keys")]) >= 2.0);
    let pool = if db.url.starts_with("sqlite:") {
        "writer"
    } else {
        "main"
    };
    assert!(
        value(&scrape, "vevee_db_pool_max_connections", &[("pool", pool)]) >= 1.0,
        "{text}"
    );
    let open = value(&scrape, "vevee_db_pool_connections", &[("pool", pool)]);
    assert!(open >= 1.0, "{text}");
    assert_eq!(
        value(
            &scrape,
            "vevee_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // No label value holds a key, the distinct_id, the attribute key or the value.
    let private = [
        keys.sk_live.as_str(),
        keys.pk_live.as_str(),
        WRONG_KEY,
        PERSON,
        ATTRIBUTE,
        VALUE,
    ];
    assert!(scrape.len() > 20, "{text}");
    for point in &scrape {
        for (name, label) in &point.labels {
            for secret in private {
                assert!(
                    !label.contains(secret),
                    "{} has {name}={label:?}",
                    point.metric
                );
            }
        }
    }
    for secret in private {
        assert!(!text.contains(secret), "{secret} in the scrape");
    }

    // The metrics listener serves only /metrics.
    let other = reqwest::get(format!("http://{metrics}/api/v1/openapi.json"))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_metrics_addr_serves_no_metrics_listener() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db.url, &["--metrics-addr", ""]).await;
    assert_eq!(app.metrics_addr, None);
    app.stop().await;
}

/// Runs the binary's `serve` with `args`; returns whether it succeeded and its stderr.
fn serve(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vevee-attributes"))
        .arg("serve")
        .args(args)
        .env("DATABASE_URL", "sqlite::memory:")
        .output()
        .expect("the binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_metrics_addr_that_is_no_address_is_refused_naming_the_flag() {
    let (ok, stderr) = serve(&["--grpc-addr", "127.0.0.1:0", "--metrics-addr", "nope"]);
    assert!(!ok);
    assert!(stderr.contains("--metrics-addr"), "{stderr}");
    assert!(stderr.contains("IP:PORT"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn metrics_on_the_public_listeners_address_are_refused_naming_the_flag() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let (ok, stderr) = serve(&["--grpc-addr", &addr, "--metrics-addr", &addr]);
    assert!(!ok);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--metrics-addr") && stderr.contains("must differ from --grpc-addr"),
        "{stderr}"
    );
}
