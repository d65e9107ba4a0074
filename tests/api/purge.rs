//! Purging an attribute (CONTRACT.md section 9): DeleteAttributeDefinition
//! of an archived definition runs as a long-running operation that deletes
//! every value of it in every mode, then the definition, and survives the
//! server being killed in the middle.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value as Json, json};
use sqlx::Connection;
use tonic::{Code, transport::Channel};
use vevee_attributes::{
    domain::{Mode, WorkspaceId},
    proto::{
        longrunning::{
            GetOperationRequest, ListOperationsRequest, Operation, operation,
            operations_client::OperationsClient,
        },
        v1::{self as pb, PurgeAttributeMetadata, PurgeAttributeResponse},
    },
    storage::{PersonWrite, Store},
};

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{
        archive, assert_refused, authed, connect, define, eventually, get, s, set, spawn_app,
    },
    http::Rest,
    process::ServerProcess,
};

backend_tests! {
    a_purge_deletes_every_value_in_every_mode_and_frees_the_key,
    only_an_archived_definition_can_be_purged,
    operations_are_read_and_listed_over_grpc_and_rest,
    a_purge_interrupted_by_sigkill_is_resumed_after_a_restart,
}

/// How many values of `key` the database holds, every mode together.
async fn stored_values(db: &TestDb, key: &str) -> i64 {
    let sql = "SELECT count(*) FROM attribute_values WHERE attribute_key = $1";
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(sql)
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(sql)
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
}

/// Writes `persons` persons with a value of `key` in `mode`, straight to
/// the store (faster than the API for thousands).
async fn load(store: &dyn Store, ws: WorkspaceId, mode: Mode, key: &str, persons: usize) {
    for chunk in (0..persons).collect::<Vec<_>>().chunks(500) {
        let writes = chunk
            .iter()
            .map(|i| PersonWrite {
                workspace: ws,
                mode,
                distinct_id: format!("p{i}"),
                values: vec![(key.to_owned(), json!(format!("v{i}")))],
            })
            .collect();
        for result in store.write_batch(writes).await.unwrap() {
            result.unwrap();
        }
    }
}

fn delete_request(secret: &str, key: &str) -> tonic::Request<pb::DeleteAttributeDefinitionRequest> {
    authed(
        secret,
        pb::DeleteAttributeDefinitionRequest { key: key.into() },
    )
}

/// The operation named `name`, read with `secret`.
async fn poll(channel: &Channel, secret: &str, name: &str) -> Operation {
    OperationsClient::new(channel.clone())
        .get_operation(authed(secret, GetOperationRequest { name: name.into() }))
        .await
        .unwrap()
        .into_inner()
}

/// Polls `name` until it is done (at most `bound`).
async fn until_done(channel: &Channel, secret: &str, name: &str, bound: Duration) -> Operation {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let op = poll(channel, secret, name).await;
        if op.done {
            return op;
        }
        assert!(tokio::time::Instant::now() < deadline, "not done: {op:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metadata(op: &Operation) -> PurgeAttributeMetadata {
    let any = op.metadata.as_ref().expect("metadata");
    assert_eq!(
        any.type_url,
        "type.googleapis.com/vevee.attributes.v1.PurgeAttributeMetadata"
    );
    prost::Message::decode(any.value.as_slice()).unwrap()
}

fn response(op: &Operation) -> PurgeAttributeResponse {
    match &op.result {
        Some(operation::Result::Response(any)) => {
            assert_eq!(
                any.type_url,
                "type.googleapis.com/vevee.attributes.v1.PurgeAttributeResponse"
            );
            prost::Message::decode(any.value.as_slice()).unwrap()
        }
        other => panic!("not a response: {other:?}"),
    }
}

async fn a_purge_deletes_every_value_in_every_mode_and_frees_the_key(db: &TestDb) {
    let app = spawn_app(&db.url, &["--purge-batch-size", "7"]).await;
    let keys = app.workspace().await;
    define(&app, "plan", &keys.sk_live, pb::AttributeType::Text, None).await;
    define(&app, "kept", &keys.sk_live, pb::AttributeType::Text, None).await;
    load(app.store.as_ref(), keys.workspace, Mode::Live, "plan", 40).await;
    load(app.store.as_ref(), keys.workspace, Mode::Test, "plan", 25).await;
    set(&app, &keys.sk_live, "p1", "kept", s("stays"))
        .await
        .unwrap();
    assert_eq!(stored_values(db, "plan").await, 65);

    archive(&app, &keys.sk_live, "plan").await;
    let started = app
        .definitions()
        .delete_attribute_definition(delete_request(&keys.sk_live, "plan"))
        .await
        .unwrap()
        .into_inner();
    assert!(started.name.starts_with("operations/"), "{}", started.name);
    assert_eq!(metadata(&started).key, "plan");
    let done = until_done(
        &app.channel,
        &keys.sk_live,
        &started.name,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        response(&done),
        PurgeAttributeResponse {
            key: "plan".into(),
            values_deleted: 65
        }
    );
    let meta = metadata(&done);
    assert_eq!(meta.values_deleted, 65);
    assert!(meta.end_time.is_some());
    assert_eq!(stored_values(db, "plan").await, 0);
    assert_eq!(stored_values(db, "kept").await, 1);

    // The key reads as never declared, and can be declared again, with a
    // fresh value space (of another type, even).
    let gone = app
        .definitions()
        .get_attribute_definition(authed(
            &keys.sk_live,
            pb::GetAttributeDefinitionRequest { key: "plan".into() },
        ))
        .await;
    assert_refused(gone, Code::NotFound, "attribute_definition_not_found");
    let write = set(&app, &keys.sk_live, "p1", "plan", s("x")).await;
    assert_refused(write, Code::InvalidArgument, "attribute_not_defined");
    define(
        &app,
        "plan",
        &keys.sk_live,
        pb::AttributeType::Boolean,
        None,
    )
    .await;
    let person = get(&app, &keys.sk_live, "p1").await.unwrap();
    let keys: Vec<&str> = person
        .attributes
        .iter()
        .map(|a| a.attribute.as_str())
        .collect();
    assert_eq!(keys, ["kept"]);
    app.stop().await;
}

async fn only_an_archived_definition_can_be_purged(db: &TestDb) {
    let app = spawn_app(
        &db.url,
        &["--purge-batch-size", "1", "--purge-batch-pause", "200ms"],
    )
    .await;
    let keys = app.workspace().await;
    define(&app, "plan", &keys.sk_live, pb::AttributeType::Text, None).await;
    let refused = app
        .definitions()
        .delete_attribute_definition(delete_request(&keys.sk_live, "plan"))
        .await;
    assert_refused(refused, Code::FailedPrecondition, "attribute_not_archived");
    let unknown = app
        .definitions()
        .delete_attribute_definition(delete_request(&keys.sk_live, "nope"))
        .await;
    assert_refused(unknown, Code::NotFound, "attribute_definition_not_found");
    let public = app
        .definitions()
        .delete_attribute_definition(delete_request(&keys.pk_live, "plan"))
        .await;
    assert_refused(public, Code::PermissionDenied, "secret_key_required");

    // While a slow purge runs: the key is taken, the attribute cannot be
    // unarchived, and asking again returns the same operation.
    load(app.store.as_ref(), keys.workspace, Mode::Live, "plan", 20).await;
    archive(&app, &keys.sk_live, "plan").await;
    let first = app
        .definitions()
        .delete_attribute_definition(delete_request(&keys.sk_live, "plan"))
        .await
        .unwrap()
        .into_inner();
    let again = app
        .definitions()
        .delete_attribute_definition(delete_request(&keys.sk_live, "plan"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.name, again.name);
    let redeclare = app
        .definitions()
        .create_attribute_definition(authed(
            &keys.sk_live,
            pb::CreateAttributeDefinitionRequest {
                key: "plan".into(),
                r#type: pb::AttributeType::Text.into(),
                ..Default::default()
            },
        ))
        .await;
    assert_refused(redeclare, Code::AlreadyExists, "attribute_already_exists");
    let unarchive = app
        .definitions()
        .unarchive_attribute_definition(authed(
            &keys.sk_live,
            pb::UnarchiveAttributeDefinitionRequest { key: "plan".into() },
        ))
        .await;
    assert_refused(unarchive, Code::FailedPrecondition, "attribute_archived");
    let running = poll(&app.channel, &keys.sk_live, &first.name).await;
    assert!(!running.done, "{running:?}");
    assert!(running.result.is_none());
    until_done(
        &app.channel,
        &keys.sk_live,
        &first.name,
        Duration::from_secs(30),
    )
    .await;
    app.stop().await;
}

async fn operations_are_read_and_listed_over_grpc_and_rest(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let other = app.workspace().await;
    let mut names = Vec::new();
    for key in ["a", "b", "c"] {
        define(&app, key, &keys.sk_live, pb::AttributeType::Text, None).await;
        set(&app, &keys.sk_live, "p", key, s("v")).await.unwrap();
        archive(&app, &keys.sk_live, key).await;
        let op = app
            .definitions()
            .delete_attribute_definition(delete_request(&keys.sk_live, key))
            .await
            .unwrap()
            .into_inner();
        until_done(
            &app.channel,
            &keys.sk_live,
            &op.name,
            Duration::from_secs(30),
        )
        .await;
        names.push(op.name);
    }
    let mut client = OperationsClient::new(app.channel.clone());
    let list = |key: &str, page_size: i32, page_token: String| {
        authed(
            key,
            ListOperationsRequest {
                page_size,
                page_token,
                ..Default::default()
            },
        )
    };
    // Newest first, two pages.
    let first = client
        .list_operations(list(&keys.sk_live, 2, String::new()))
        .await
        .unwrap()
        .into_inner();
    let second = client
        .list_operations(list(&keys.sk_live, 2, first.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<String> = first
        .operations
        .iter()
        .chain(&second.operations)
        .map(|op| op.name.clone())
        .collect();
    assert_eq!(listed, names.iter().rev().cloned().collect::<Vec<_>>());
    assert!(second.next_page_token.is_empty());
    // Another workspace sees none of them; a test-mode key sees them all
    // (operations belong to the workspace).
    let foreign = client
        .list_operations(list(&other.sk_live, 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(foreign.operations.is_empty());
    let hidden = client
        .get_operation(authed(
            &other.sk_live,
            GetOperationRequest {
                name: names[0].clone(),
            },
        ))
        .await;
    assert_refused(hidden, Code::NotFound, "operation_not_found");
    let garbage = client
        .get_operation(authed(
            &keys.sk_live,
            GetOperationRequest {
                name: "operations/x".into(),
            },
        ))
        .await;
    assert_refused(garbage, Code::NotFound, "operation_not_found");
    let filtered = client
        .list_operations(authed(
            &keys.sk_live,
            ListOperationsRequest {
                filter: "done=true".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_refused(filtered, Code::InvalidArgument, "invalid_argument");
    let bad_token = client
        .list_operations(list(&keys.sk_live, 0, "nope".into()))
        .await;
    assert_refused(bad_token, Code::InvalidArgument, "invalid_argument");
    let public = client
        .list_operations(list(&keys.pk_live, 0, String::new()))
        .await;
    assert_refused(public, Code::PermissionDenied, "secret_key_required");
    let test_mode = client
        .list_operations(list(&keys.sk_test, 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(test_mode.operations.len(), 3);

    // REST: DELETE starts a purge, GET reads an operation by its id, and the
    // list route lists them, with metadata and response as typed JSON.
    let [rest, _] = Rest::both(&app);
    define(&app, "d", &keys.sk_live, pb::AttributeType::Text, None).await;
    rest.call(
        Method::DELETE,
        "/api/v1/attributes/definitions/d",
        &keys.sk_live,
        Json::Null,
    )
    .await
    .refused(400, Code::FailedPrecondition, "attribute_not_archived");
    archive(&app, &keys.sk_live, "d").await;
    let started = rest
        .ok(
            Method::DELETE,
            "/api/v1/attributes/definitions/d",
            &keys.sk_live,
            Json::Null,
        )
        .await;
    let name = started["name"].as_str().unwrap().to_owned();
    let id = name.strip_prefix("operations/").unwrap().to_owned();
    assert_eq!(
        started["metadata"]["@type"],
        "type.googleapis.com/vevee.attributes.v1.PurgeAttributeMetadata"
    );
    assert_eq!(started["metadata"]["key"], "d");
    let path = format!("/api/v1/operations/{id}");
    assert!(
        eventually(Duration::from_secs(30), || async {
            rest.ok(Method::GET, &path, &keys.sk_live, Json::Null).await["done"] == true
        })
        .await
    );
    let done = rest.ok(Method::GET, &path, &keys.sk_live, Json::Null).await;
    assert_eq!(done["name"], name);
    assert_eq!(
        done["response"],
        json!({
            "@type": "type.googleapis.com/vevee.attributes.v1.PurgeAttributeResponse",
            "key": "d",
            "valuesDeleted": "0",
        })
    );
    let listed = rest
        .ok(
            Method::GET,
            "/api/v1/operations?pageSize=1",
            &keys.sk_live,
            Json::Null,
        )
        .await;
    assert_eq!(listed["operations"][0]["name"], name);
    assert!(!listed["nextPageToken"].as_str().unwrap().is_empty());
    rest.call(
        Method::GET,
        "/api/v1/operations/0123",
        &keys.sk_live,
        Json::Null,
    )
    .await
    .refused(404, Code::NotFound, "operation_not_found");
    app.stop().await;
}

async fn a_purge_interrupted_by_sigkill_is_resumed_after_a_restart(db: &TestDb) {
    let flags = [
        "--no-bootstrap",
        "--purge-batch-size",
        "20",
        "--purge-batch-pause",
        "30ms",
        "--operation-lease",
        "2s",
    ];
    // Set up through an in-process server, stopped before the real one runs.
    let setup = spawn_app(&db.url, &[]).await;
    let keys = setup.workspace().await;
    define(&setup, "plan", &keys.sk_live, pb::AttributeType::Text, None).await;
    load(
        setup.store.as_ref(),
        keys.workspace,
        Mode::Live,
        "plan",
        2000,
    )
    .await;
    load(
        setup.store.as_ref(),
        keys.workspace,
        Mode::Test,
        "plan",
        1000,
    )
    .await;
    archive(&setup, &keys.sk_live, "plan").await;
    setup.stop().await;

    let mut server = ServerProcess::start(&db.url, &flags);
    let channel = connect(server.addr).await;
    let started = pb::attribute_definitions_service_client::AttributeDefinitionsServiceClient::new(
        channel.clone(),
    )
    .delete_attribute_definition(delete_request(&keys.sk_live, "plan"))
    .await
    .unwrap()
    .into_inner();
    // Killed once part of the values are gone (150 batches in all).
    assert!(
        eventually(Duration::from_secs(30), || async {
            metadata(&poll(&channel, &keys.sk_live, &started.name).await).values_deleted >= 200
        })
        .await
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let left = stored_values(db, "plan").await;
    assert!(left > 0 && left < 3000, "{left} values left at the kill");

    let restarted = ServerProcess::start(&db.url, &flags);
    let channel = connect(restarted.addr).await;
    let done = until_done(
        &channel,
        &keys.sk_live,
        &started.name,
        Duration::from_secs(60),
    )
    .await;
    // Batches commit with their count, so resuming counts every value once.
    assert_eq!(response(&done).values_deleted, 3000, "{done:?}");
    assert!(metadata(&done).end_time.is_some());
    assert_eq!(stored_values(db, "plan").await, 0);
}
