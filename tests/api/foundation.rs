//! The service skeleton: health, reflection, shutdown, configuration errors.

use std::{process::Command, time::Duration};

use tokio_stream::StreamExt;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::{v1, v1alpha};

use crate::{
    common::TestDb,
    helpers::{connect, spawn_app, spawn_process},
};

const VEVEE_SERVICES: [&str; 3] = [
    "vevee.attributes.v1.AttributesService",
    "vevee.attributes.v1.AttributeDefinitionsService",
    "vevee.attributes.v1.WorkspaceSettingsService",
];

#[tokio::test]
async fn health_check_answers_serving_overall_and_per_service() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db.url, &[]).await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in std::iter::once("").chain(VEVEE_SERVICES) {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("check {service:?}: {e}"));
        assert_eq!(
            response.into_inner().status(),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn reflection_v1_lists_every_service_and_describes_a_message() {
    use v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let db = TestDb::sqlite();
    let app = spawn_app(&db.url, &[]).await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let requests = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "vevee.attributes.v1.SetAttributeRequest".into(),
            )),
        },
    ];
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection answers")
        .into_inner();

    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in VEVEE_SERVICES.into_iter().chain(["grpc.health.v1.Health"]) {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }

    let Some(MessageResponse::FileDescriptorResponse(files)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors");
    };
    let described = files.file_descriptor_proto.iter().any(|bytes| {
        let file = <prost_types::FileDescriptorProto as prost::Message>::decode(bytes.as_slice())
            .expect("a file descriptor");
        file.message_type.iter().any(|m| {
            m.name() == "SetAttributeRequest" && m.field.iter().any(|f| f.name() == "distinct_id")
        })
    });
    assert!(
        described,
        "SetAttributeRequest is described with its fields"
    );
    app.stop().await;
}

#[tokio::test]
async fn reflection_v1alpha_lists_every_service() {
    use v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let db = TestDb::sqlite();
    let app = spawn_app(&db.url, &[]).await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("v1alpha reflection answers")
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in VEVEE_SERVICES.into_iter().chain(["grpc.health.v1.Health"]) {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn sigterm_turns_an_open_health_watch_to_not_serving_and_exits_zero_within_the_grace() {
    sigterm_with_an_open_watch(&["--shutdown-grace", "2s"]).await;
}

#[tokio::test]
async fn a_single_threaded_server_also_shuts_down_within_the_grace() {
    sigterm_with_an_open_watch(&["--shutdown-grace", "2s", "--worker-threads", "1"]).await;
}

async fn sigterm_with_an_open_watch(flags: &[&str]) {
    let (mut process, _dir) = spawn_process(flags);
    let mut health = HealthClient::new(connect(process.addr).await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch opens")
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    let pid = process.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    let started = std::time::Instant::now();

    let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the watch hears of the shutdown")
        .expect("an update, not the end of the stream")
        .expect("not an error");
    assert_eq!(next.status(), ServingStatus::NotServing);

    // The open stream must not hold shutdown beyond the 2s grace (plus slack for a busy machine).
    let status = loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(6), "still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

/// Runs the binary with `args` and returns its exit success and stderr.
fn run_binary(args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let output = Command::new(env!("CARGO_BIN_EXE_vevee-attributes"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_unparsable_grpc_addr_exits_non_zero_with_one_line_naming_the_flag() {
    let (ok, stderr) = run_binary(&["serve", "--grpc-addr", "not-an-address"]);
    assert!(!ok);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--grpc-addr"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_port_in_use_exits_non_zero_with_one_line_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, stderr) = run_binary(&["serve", "--grpc-addr", &addr, "--metrics-addr", ""]);
    assert!(!ok);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--grpc-addr"), "{stderr}");
}

#[tokio::test]
async fn an_oversized_request_gets_resource_exhausted_and_the_server_keeps_serving() {
    use vevee_attributes::proto::v1::AttributeType;

    use crate::helpers::{define, s, set};

    let db = TestDb::sqlite();
    let app = spawn_app(&db.url, &["--max-request-bytes", "2048"]).await;
    let keys = app.workspace().await;
    define(&app, "bio", &keys.sk_live, AttributeType::Text, None).await;
    let status = set(&app, &keys.sk_live, "u", "bio", s(&"x".repeat(4096)))
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("--max-request-bytes"),
        "{status:?}"
    );
    {
        use tonic_types::StatusExt;
        let info = status.get_details_error_info().expect("an ErrorInfo");
        assert_eq!(info.reason, "request_too_large");
        assert_eq!(info.domain, "attributes.vevee.dev");
    }
    set(&app, &keys.sk_live, "u", "bio", s("short"))
        .await
        .expect("the next request is served");
    app.stop().await;
}

#[test]
fn an_unreachable_database_is_retried_for_the_bound_then_exits_with_one_line() {
    let started = std::time::Instant::now();
    let (ok, stderr) = run_binary(&[
        "serve",
        "--grpc-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "",
        "--database-url",
        "postgres://postgres:secret@127.0.0.1:1/nowhere",
        "--db-connect-retry",
        "1s",
    ]);
    assert!(!ok);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--database-url"), "{stderr}");
    assert!(stderr.contains("--db-connect-retry"), "{stderr}");
    assert!(
        !stderr.contains("secret"),
        "the password is redacted: {stderr}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1), "it retried");
}

#[test]
fn a_database_url_of_an_unknown_scheme_exits_with_one_line() {
    let (ok, stderr) = run_binary(&[
        "serve",
        "--grpc-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "",
        "--database-url",
        "mysql://localhost/db",
    ]);
    assert!(!ok);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--database-url"), "{stderr}");
}
