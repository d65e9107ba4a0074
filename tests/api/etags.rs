//! Etags and `if_etag` preconditions (CONTRACT.md section 8): every stored
//! value's etag comes back from reads and writes and changes on every
//! change; a failed precondition is ABORTED `attribute_value_changed` with
//! the current etag, and nothing of the request is written.

use std::sync::Arc;

use tokio::{sync::Barrier, task::JoinSet};
use tonic::Code;
use tonic_types::StatusExt;
use vevee_attributes::proto::v1::{self as pb, AttributeType, attribute_update::Operation as Op};

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{
        TestApp, assert_refused, authed, define, error_attribute, get, n, s, set, spawn_app,
    },
    updates::{stored, upd, update},
};

backend_tests! {
    every_write_and_read_returns_the_stored_values_etag,
    a_failed_if_etag_is_aborted_with_the_current_etag_and_writes_nothing,
    an_empty_if_etag_writes_only_where_no_value_is_stored,
    validate_only_checks_preconditions_too,
    twenty_clients_reading_and_writing_with_if_etag_lose_no_update_with_group_commit,
    twenty_clients_reading_and_writing_with_if_etag_lose_no_update_without_group_commit,
}

/// An update of `attribute` with `op` only over `if_etag`.
fn guarded(attribute: &str, op: Op, if_etag: &str) -> pb::AttributeUpdate {
    pb::AttributeUpdate {
        if_etag: Some(if_etag.into()),
        ..upd(attribute, op)
    }
}

/// The etag GetAttributes reports for `attribute` of `distinct_id`.
async fn read_etag(app: &TestApp, key: &str, distinct_id: &str, attribute: &str) -> String {
    get(app, key, distinct_id)
        .await
        .unwrap()
        .attributes
        .into_iter()
        .find(|a| a.attribute == attribute)
        .map(|a| a.etag)
        .expect("a value")
}

/// The ErrorInfo metadata `etag` of a status.
fn error_etag(status: &tonic::Status) -> Option<String> {
    status
        .get_details_error_info()
        .and_then(|i| i.metadata.get("etag").cloned())
}

async fn every_write_and_read_returns_the_stored_values_etag(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "name", sk, AttributeType::Text, None).await;
    define(&app, "age", sk, AttributeType::Number, None).await;

    let one = set(&app, sk, "u", "name", s("Ada")).await.unwrap();
    assert_eq!(one.etag.len(), 32, "{one:?}");
    assert_eq!(read_etag(&app, sk, "u", "name").await, one.etag);

    let many = app
        .attributes()
        .set_attributes(authed(
            sk,
            pb::SetAttributesRequest {
                distinct_id: "u".into(),
                values: [("name".to_owned(), s("Ada")), ("age".to_owned(), n(36.0))].into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(
        many.etags["name"], one.etag,
        "a new write is a new version, even of the same value"
    );
    assert_eq!(read_etag(&app, sk, "u", "name").await, many.etags["name"]);
    assert_eq!(read_etag(&app, sk, "u", "age").await, many.etags["age"]);

    let updated = update(&app, sk, "u", vec![upd("age", Op::Increment(1.0))])
        .await
        .unwrap();
    let etag = &updated.results[0].etag;
    assert_ne!(etag, &many.etags["age"]);
    assert_eq!(&read_etag(&app, sk, "u", "age").await, etag);

    // Clear, then set again: the etag is not the one before the clear.
    update(&app, sk, "u", vec![upd("age", Op::Clear(()))])
        .await
        .unwrap();
    let again = set(&app, sk, "u", "age", n(37.0)).await.unwrap();
    assert_ne!(&again.etag, etag);
    app.stop().await;
}

async fn a_failed_if_etag_is_aborted_with_the_current_etag_and_writes_nothing(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "name", sk, AttributeType::Text, None).await;
    define(&app, "age", sk, AttributeType::Number, None).await;
    let first = set(&app, sk, "u", "age", n(1.0)).await.unwrap();
    let second = set(&app, sk, "u", "age", n(2.0)).await.unwrap();

    for stale in [first.etag.as_str(), "not an etag", ""] {
        let status = assert_refused(
            update(
                &app,
                sk,
                "u",
                vec![
                    upd("name", Op::Set(s("not written"))),
                    guarded("age", Op::Set(n(99.0)), stale),
                ],
            )
            .await,
            Code::Aborted,
            "attribute_value_changed",
        );
        assert_eq!(error_attribute(&status).as_deref(), Some("age"));
        assert_eq!(error_etag(&status), Some(second.etag.clone()), "{stale:?}");
        let violations = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, "updates[1]");
    }
    assert_eq!(
        stored(&app, keys.workspace, "u", "age").await,
        Some(serde_json::json!(2.0))
    );
    assert_eq!(stored(&app, keys.workspace, "u", "name").await, None);

    // With the current etag, it is applied.
    let done = update(
        &app,
        sk,
        "u",
        vec![guarded("age", Op::Increment(1.0), &second.etag)],
    )
    .await
    .unwrap();
    assert_eq!(done.results[0].value, Some(n(3.0)));
    app.stop().await;
}

async fn an_empty_if_etag_writes_only_where_no_value_is_stored(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "name", sk, AttributeType::Text, None).await;
    let created = update(&app, sk, "u", vec![guarded("name", Op::Set(s("Ada")), "")])
        .await
        .expect("nothing was stored");
    let status = assert_refused(
        update(&app, sk, "u", vec![guarded("name", Op::Set(s("Bob")), "")]).await,
        Code::Aborted,
        "attribute_value_changed",
    );
    assert_eq!(error_etag(&status), Some(created.results[0].etag.clone()));
    // A value that was cleared: the precondition names no etag ("").
    update(&app, sk, "u", vec![upd("name", Op::Clear(()))])
        .await
        .unwrap();
    let status = assert_refused(
        update(
            &app,
            sk,
            "u",
            vec![guarded("name", Op::Set(s("Cy")), &created.results[0].etag)],
        )
        .await,
        Code::Aborted,
        "attribute_value_changed",
    );
    assert_eq!(error_etag(&status).as_deref(), Some(""));
    app.stop().await;
}

async fn validate_only_checks_preconditions_too(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "name", sk, AttributeType::Text, None).await;
    let stored_now = set(&app, sk, "u", "name", s("Ada")).await.unwrap();
    let status = assert_refused(
        app.attributes()
            .update_attributes(authed(
                sk,
                pb::UpdateAttributesRequest {
                    distinct_id: "u".into(),
                    updates: vec![guarded("name", Op::Set(s("Bob")), "")],
                    validate_only: true,
                    ..Default::default()
                },
            ))
            .await,
        Code::Aborted,
        "attribute_value_changed",
    );
    assert_eq!(error_etag(&status), Some(stored_now.etag));
    app.stop().await;
}

/// 20 clients each add one to a number by reading it and writing the
/// result with `if_etag`, retrying on `attribute_value_changed`.
async fn twenty_read_modify_write_clients(db: &TestDb, flags: &[&str]) {
    let app = spawn_app(&db.url, flags).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.clone();
    define(&app, "count", &sk, AttributeType::Number, None).await;
    set(&app, &sk, "hot", "count", n(0.0)).await.unwrap();
    let app = Arc::new(app);
    let start = Arc::new(Barrier::new(20));
    let mut clients = JoinSet::new();
    for _ in 0..20 {
        let (app, start, sk) = (app.clone(), start.clone(), sk.clone());
        clients.spawn(async move {
            start.wait().await;
            let mut retries = 0;
            loop {
                let read = get(&app, &sk, "hot").await.unwrap();
                let value = &read.attributes[0];
                let count = match value.value.as_ref().and_then(|v| v.kind.clone()) {
                    Some(prost_types::value::Kind::NumberValue(x)) => x,
                    other => panic!("{other:?}"),
                };
                let write = update(
                    &app,
                    &sk,
                    "hot",
                    vec![guarded("count", Op::Set(n(count + 1.0)), &value.etag)],
                )
                .await;
                match write {
                    Ok(_) => return retries,
                    Err(status) => {
                        assert_eq!(status.code(), Code::Aborted, "{status:?}");
                        retries += 1;
                    }
                }
            }
        });
    }
    let retries: usize = clients.join_all().await.into_iter().sum();
    assert_eq!(
        stored(&app, keys.workspace, "hot", "count").await,
        Some(serde_json::json!(20.0)),
        "no update lost ({retries} retries)"
    );
    Arc::into_inner(app).expect("clients are done").stop().await;
}

async fn twenty_clients_reading_and_writing_with_if_etag_lose_no_update_with_group_commit(
    db: &TestDb,
) {
    twenty_read_modify_write_clients(db, &[]).await;
}

async fn twenty_clients_reading_and_writing_with_if_etag_lose_no_update_without_group_commit(
    db: &TestDb,
) {
    twenty_read_modify_write_clients(db, &["--max-write-batch", "1", "--max-read-batch", "1"])
        .await;
}
