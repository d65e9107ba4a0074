//! Idempotency keys (AIP-155, CONTRACT.md section 8): a request repeated
//! with its request_id applies once and gets the first response, also on
//! another server sharing the database and while the first is in flight;
//! another body or RPC with the same id is refused; malformed ids are
//! refused; the server deletes expired records itself.

use std::{sync::Arc, time::Duration};

use sqlx::Connection;
use tokio::{sync::Barrier, task::JoinSet};
use tonic::Code;
use vevee_attributes::proto::v1::{self as pb, AttributeType, attribute_update::Operation as Op};

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{TestApp, archive, assert_refused, authed, define, eventually, n, s, set, spawn_app},
    updates::{stored, upd},
};

backend_tests! {
    a_repeated_set_attribute_applies_once_and_returns_the_first_response,
    a_repeated_set_attributes_applies_once_and_returns_the_first_response,
    a_repeated_update_applies_once_and_returns_the_first_response,
    a_repeated_clear_applies_once_and_returns_the_first_response,
    a_request_id_repeated_on_another_server_sharing_the_database_applies_once,
    concurrent_duplicates_apply_once_and_the_others_wait_or_are_told_to_retry,
    a_request_id_reused_with_another_body_or_rpc_is_refused,
    a_malformed_request_id_is_invalid_argument_on_every_rpc,
    a_repeat_whose_checks_now_fail_still_gets_the_first_response,
    request_ids_are_kept_per_mode_and_dry_runs_record_none,
    expired_request_records_are_deleted_by_the_server_and_the_id_is_free_again,
}

const RID: &str = "6f1c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f";

fn set_req(
    distinct_id: &str,
    attribute: &str,
    value: prost_types::Value,
    rid: &str,
) -> pb::SetAttributeRequest {
    pb::SetAttributeRequest {
        distinct_id: distinct_id.into(),
        attribute: attribute.into(),
        value: Some(value),
        request_id: rid.into(),
        validate_only: false,
    }
}

fn incr_req(rid: &str, by: f64) -> pb::UpdateAttributesRequest {
    pb::UpdateAttributesRequest {
        distinct_id: "u".into(),
        updates: vec![upd("logins", Op::Increment(by))],
        request_id: rid.into(),
        validate_only: false,
    }
}

async fn incr(
    app: &TestApp,
    key: &str,
    rid: &str,
    by: f64,
) -> Result<pb::UpdateAttributesResponse, tonic::Status> {
    app.attributes()
        .update_attributes(authed(key, incr_req(rid, by)))
        .await
        .map(tonic::Response::into_inner)
}

async fn a_repeated_set_attribute_applies_once_and_returns_the_first_response(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "name", sk, AttributeType::Text, None).await;
    let call = || async {
        app.attributes()
            .set_attribute(authed(sk, set_req("u", "name", s("Ada"), RID)))
            .await
            .map(tonic::Response::into_inner)
    };
    let first = call().await.unwrap();
    set(&app, sk, "u", "name", s("Bob")).await.unwrap();
    let again = call().await.unwrap();
    assert_eq!(again, first, "the first response, etag and all");
    assert_eq!(
        stored(&app, keys.workspace, "u", "name").await,
        Some(serde_json::json!("Bob")),
        "the repeat wrote nothing"
    );
    app.stop().await;
}

async fn a_repeated_set_attributes_applies_once_and_returns_the_first_response(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "name", sk, AttributeType::Text, None).await;
    define(&app, "age", sk, AttributeType::Number, None).await;
    let call = |values: Vec<(&str, prost_types::Value)>| {
        let request = authed(
            sk,
            pb::SetAttributesRequest {
                distinct_id: "u".into(),
                values: values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                request_id: RID.into(),
                validate_only: false,
            },
        );
        let mut client = app.attributes();
        async move {
            client
                .set_attributes(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let first = call(vec![("name", s("Ada")), ("age", n(36.0))])
        .await
        .unwrap();
    set(&app, sk, "u", "age", n(1.0)).await.unwrap();
    // The same body in another map order is the same request.
    let again = call(vec![("age", n(36.0)), ("name", s("Ada"))])
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(
        stored(&app, keys.workspace, "u", "age").await,
        Some(serde_json::json!(1.0))
    );
    app.stop().await;
}

async fn a_repeated_update_applies_once_and_returns_the_first_response(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "logins", sk, AttributeType::Number, None).await;
    let first = incr(&app, sk, RID, 1.0).await.unwrap();
    let again = incr(&app, sk, RID, 1.0).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        stored(&app, keys.workspace, "u", "logins").await,
        Some(serde_json::json!(1.0)),
        "a retried increment adds once"
    );
    app.stop().await;
}

async fn a_repeated_clear_applies_once_and_returns_the_first_response(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "name", sk, AttributeType::Text, None).await;
    set(&app, sk, "u", "name", s("Ada")).await.unwrap();
    let call = || async {
        app.attributes()
            .clear_attribute(authed(
                sk,
                pb::ClearAttributeRequest {
                    distinct_id: "u".into(),
                    attribute: "name".into(),
                    request_id: RID.into(),
                    validate_only: false,
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    };
    let first = call().await.unwrap();
    assert!(first.cleared);
    set(&app, sk, "u", "name", s("Bob")).await.unwrap();
    let again = call().await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        stored(&app, keys.workspace, "u", "name").await,
        Some(serde_json::json!("Bob")),
        "the repeat cleared nothing"
    );
    // An unknown person is person_not_found, repeated or not.
    for _ in 0..2 {
        assert_refused(
            app.attributes()
                .clear_attribute(authed(
                    sk,
                    pb::ClearAttributeRequest {
                        distinct_id: "nobody".into(),
                        attribute: "name".into(),
                        request_id: "0b7c2a7e-1f3e-4e7a-9a51-3f2d1c0b9a88".into(),
                        validate_only: false,
                    },
                ))
                .await,
            Code::NotFound,
            "person_not_found",
        );
    }
    app.stop().await;
}

async fn a_request_id_repeated_on_another_server_sharing_the_database_applies_once(db: &TestDb) {
    let one = spawn_app(&db.url, &[]).await;
    let two = spawn_app(&db.url, &[]).await;
    let keys = one.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&one, "logins", sk, AttributeType::Number, None).await;
    let first = incr(&one, sk, RID, 1.0).await.unwrap();
    let again = incr(&two, sk, RID, 1.0).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        stored(&one, keys.workspace, "u", "logins").await,
        Some(serde_json::json!(1.0))
    );
    two.stop().await;
    one.stop().await;
}

async fn concurrent_duplicates_apply_once_and_the_others_wait_or_are_told_to_retry(db: &TestDb) {
    let one = Arc::new(spawn_app(&db.url, &[]).await);
    let two = Arc::new(spawn_app(&db.url, &["--max-write-batch", "1"]).await);
    let keys = one.workspace().await;
    let sk = keys.sk_live.clone();
    define(&one, "logins", &sk, AttributeType::Number, None).await;
    let start = Arc::new(Barrier::new(20));
    let mut calls = JoinSet::new();
    for i in 0..20 {
        let app = if i % 2 == 0 { one.clone() } else { two.clone() };
        let (start, sk) = (start.clone(), sk.clone());
        calls.spawn(async move {
            start.wait().await;
            // A client retries request_in_progress, as the contract says.
            loop {
                match incr(&app, &sk, RID, 1.0).await {
                    Ok(response) => return response,
                    Err(status) => {
                        assert_eq!(status.code(), Code::Aborted, "{status:?}");
                        let info = tonic_types::StatusExt::get_details_error_info(&status);
                        assert_eq!(info.unwrap().reason, "request_in_progress");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    let responses = calls.join_all().await;
    assert!(
        responses.iter().all(|r| *r == responses[0]),
        "{responses:?}"
    );
    assert_eq!(
        stored(&one, keys.workspace, "u", "logins").await,
        Some(serde_json::json!(1.0)),
        "applied exactly once"
    );
    Arc::into_inner(two).unwrap().stop().await;
    Arc::into_inner(one).unwrap().stop().await;
}

async fn a_request_id_reused_with_another_body_or_rpc_is_refused(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "logins", sk, AttributeType::Number, None).await;
    incr(&app, sk, RID, 1.0).await.unwrap();
    assert_refused(
        incr(&app, sk, RID, 2.0).await,
        Code::InvalidArgument,
        "request_id_reused",
    );
    assert_refused(
        app.attributes()
            .set_attribute(authed(sk, set_req("u", "logins", n(5.0), RID)))
            .await,
        Code::InvalidArgument,
        "request_id_reused",
    );
    // Two requests in one group commit: the second is another body.
    let other = "9d3a4c1b-2e5f-4a6b-8c7d-0e1f2a3b4c5d";
    let (a, b) = tokio::join!(incr(&app, sk, other, 1.0), incr(&app, sk, other, 3.0));
    let outcomes = [a.is_ok(), b.is_ok()];
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{outcomes:?}");
    let refused = if a.is_err() { a } else { b };
    let status = refused.unwrap_err();
    let reason = tonic_types::StatusExt::get_details_error_info(&status)
        .unwrap()
        .reason;
    assert!(
        reason == "request_id_reused" || reason == "request_in_progress",
        "{status:?}"
    );
    app.stop().await;
}

async fn a_malformed_request_id_is_invalid_argument_on_every_rpc(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "logins", sk, AttributeType::Number, None).await;
    let bad = "not-a-uuid";
    assert_refused(
        app.attributes()
            .set_attribute(authed(sk, set_req("u", "logins", n(1.0), bad)))
            .await,
        Code::InvalidArgument,
        "invalid_argument",
    );
    assert_refused(
        app.attributes()
            .set_attributes(authed(
                sk,
                pb::SetAttributesRequest {
                    distinct_id: "u".into(),
                    values: [("logins".to_owned(), n(1.0))].into(),
                    request_id: bad.into(),
                    validate_only: false,
                },
            ))
            .await,
        Code::InvalidArgument,
        "invalid_argument",
    );
    assert_refused(
        incr(&app, sk, bad, 1.0).await,
        Code::InvalidArgument,
        "invalid_argument",
    );
    let status = assert_refused(
        app.attributes()
            .clear_attribute(authed(
                sk,
                pb::ClearAttributeRequest {
                    distinct_id: "u".into(),
                    attribute: "logins".into(),
                    request_id: bad.into(),
                    validate_only: true,
                },
            ))
            .await,
        Code::InvalidArgument,
        "invalid_argument",
    );
    assert!(status.message().starts_with("request_id:"), "{status:?}");
    assert_eq!(stored(&app, keys.workspace, "u", "logins").await, None);
    app.stop().await;
}

async fn a_repeat_whose_checks_now_fail_still_gets_the_first_response(db: &TestDb) {
    let app = spawn_app(&db.url, &["--cache-ttl", "0s"]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "logins", sk, AttributeType::Number, None).await;
    let first = incr(&app, sk, RID, 1.0).await.unwrap();
    let set_first = app
        .attributes()
        .set_attribute(authed(
            sk,
            set_req(
                "v",
                "logins",
                n(3.0),
                "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    archive(&app, sk, "logins").await;
    assert_eq!(incr(&app, sk, RID, 1.0).await.unwrap(), first);
    let set_again = app
        .attributes()
        .set_attribute(authed(
            sk,
            set_req(
                "v",
                "logins",
                n(3.0),
                "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set_again, set_first);
    // A new request is refused as usual.
    assert_refused(
        incr(&app, sk, "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", 1.0).await,
        Code::FailedPrecondition,
        "attribute_archived",
    );
    app.stop().await;
}

async fn request_ids_are_kept_per_mode_and_dry_runs_record_none(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    define(&app, "logins", &keys.sk_live, AttributeType::Number, None).await;
    let dry = app
        .attributes()
        .update_attributes(authed(
            &keys.sk_live,
            pb::UpdateAttributesRequest {
                validate_only: true,
                ..incr_req(RID, 5.0)
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.results[0].value, Some(n(5.0)));
    // The dry run did not take the id: a real request with another body may.
    incr(&app, &keys.sk_live, RID, 1.0).await.unwrap();
    // The test mode has its own ids.
    let test = incr(&app, &keys.sk_test, RID, 2.0).await.unwrap();
    assert_eq!(test.results[0].value, Some(n(2.0)));
    app.stop().await;
}

/// Moves every request record of the database `hours` into the past.
async fn age_requests(db: &TestDb, hours: i64) {
    let at = chrono::Utc::now() - chrono::TimeDelta::hours(hours);
    let sql = "UPDATE requests SET created_at = $1";
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query(sql).bind(at).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query(sql).bind(at).execute(&mut conn).await.unwrap();
    }
}

/// How many request records the database holds.
async fn requests_count(db: &TestDb) -> i64 {
    let sql = "SELECT count(*) FROM requests";
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
    }
}

async fn expired_request_records_are_deleted_by_the_server_and_the_id_is_free_again(db: &TestDb) {
    let app = spawn_app(&db.url, &["--request-sweep-interval", "100ms"]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "logins", sk, AttributeType::Number, None).await;
    incr(&app, sk, RID, 1.0).await.unwrap();
    assert_eq!(requests_count(db).await, 1);
    // A day and a bit later, the id is free again: the repeat applies.
    age_requests(db, 25).await;
    let later = incr(&app, sk, RID, 1.0).await.unwrap();
    assert_eq!(later.results[0].value, Some(n(2.0)));
    // And the server deletes expired records by itself.
    age_requests(db, 25).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            requests_count(db).await == 0
        })
        .await,
        "the expired record was not deleted"
    );
    app.stop().await;
}
