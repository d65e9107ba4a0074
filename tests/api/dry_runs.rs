//! validate_only (AIP-163) on every write RPC: every check runs, the
//! response is the one the write would give, and nothing is written, no
//! person created (checked in the database).

use tonic::Code;
use vevee_attributes::{
    domain::{Mode, WorkspaceId},
    proto::v1::{self as pb, AttributeType, attribute_update::Operation as Op},
};

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{TestApp, assert_refused, authed, define, multi_choice, n, s, set, spawn_app},
    updates::{stored, upd},
};

backend_tests! {
    validate_only_set_attribute_writes_nothing_and_creates_no_person,
    validate_only_set_attributes_writes_nothing_and_creates_no_person,
    validate_only_update_attributes_writes_nothing_and_creates_no_person,
    validate_only_clear_attribute_removes_nothing,
}

/// Whether the database holds a person for `distinct_id`.
async fn exists(app: &TestApp, ws: WorkspaceId, distinct_id: &str) -> bool {
    app.store
        .read_values(ws, Mode::Live, distinct_id, None, true)
        .await
        .expect("read")
        .is_some()
}

async fn dry_set(
    app: &TestApp,
    key: &str,
    distinct_id: &str,
    attribute: &str,
    value: prost_types::Value,
) -> Result<pb::SetAttributeResponse, tonic::Status> {
    app.attributes()
        .set_attribute(authed(
            key,
            pb::SetAttributeRequest {
                distinct_id: distinct_id.into(),
                attribute: attribute.into(),
                value: Some(value),
                validate_only: true,
                ..Default::default()
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn validate_only_set_attribute_writes_nothing_and_creates_no_person(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "age", sk, AttributeType::Number, None).await;
    let dry = dry_set(&app, sk, "new", "age", s(" 42 ")).await.unwrap();
    assert_eq!(dry.person_id, "", "the person does not exist yet");
    assert_eq!(dry.value, Some(n(42.0)), "the value as it would be stored");
    assert!(!exists(&app, keys.workspace, "new").await);

    let real = set(&app, sk, "old", "age", n(1.0)).await.unwrap();
    let dry = dry_set(&app, sk, "old", "age", n(2.0)).await.unwrap();
    assert_eq!(dry.person_id, real.person_id);
    assert_eq!(
        stored(&app, keys.workspace, "old", "age").await,
        Some(serde_json::json!(1.0))
    );
    // Every check still runs.
    assert_refused(
        dry_set(&app, sk, "new", "age", s("many")).await,
        Code::InvalidArgument,
        "attribute_value_invalid",
    );
    assert_refused(
        dry_set(&app, sk, "new", "nope", s("x")).await,
        Code::InvalidArgument,
        "attribute_not_defined",
    );
    assert_refused(
        dry_set(&app, &keys.pk_live, "new", "age", n(1.0)).await,
        Code::PermissionDenied,
        "client_attribute_writes_disabled",
    );
    app.stop().await;
}

async fn validate_only_set_attributes_writes_nothing_and_creates_no_person(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "age", sk, AttributeType::Number, None).await;
    define(&app, "name", sk, AttributeType::Text, None).await;
    let request = |values: Vec<(&str, prost_types::Value)>| {
        authed(
            sk,
            pb::SetAttributesRequest {
                distinct_id: "new".into(),
                values: values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                validate_only: true,
                ..Default::default()
            },
        )
    };
    let dry = app
        .attributes()
        .set_attributes(request(vec![("age", s("7")), ("name", s("Ada"))]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.person_id, "");
    assert_eq!(dry.values.get("age"), Some(&n(7.0)));
    assert!(!exists(&app, keys.workspace, "new").await);
    assert_refused(
        app.attributes()
            .set_attributes(request(vec![("age", s("x")), ("name", s("Ada"))]))
            .await,
        Code::InvalidArgument,
        "attribute_value_invalid",
    );
    app.stop().await;
}

async fn validate_only_update_attributes_writes_nothing_and_creates_no_person(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "logins", sk, AttributeType::Number, None).await;
    define(
        &app,
        "topics",
        sk,
        AttributeType::MultiChoice,
        Some(multi_choice(&["math", "art"])),
    )
    .await;
    let dry = |distinct_id: &str, updates: Vec<pb::AttributeUpdate>| {
        authed(
            sk,
            pb::UpdateAttributesRequest {
                distinct_id: distinct_id.into(),
                updates,
                validate_only: true,
                ..Default::default()
            },
        )
    };
    let new = app
        .attributes()
        .update_attributes(dry(
            "new",
            vec![
                upd("logins", Op::Increment(2.0)),
                upd("topics", Op::Add(s("ART"))),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(new.person_id, "");
    assert_eq!(new.results[0].value, Some(n(2.0)));
    assert!(new.results.iter().all(|r| r.applied && r.etag.is_empty()));
    assert!(!exists(&app, keys.workspace, "new").await);

    let real = set(&app, sk, "old", "logins", n(5.0)).await.unwrap();
    let preview = app
        .attributes()
        .update_attributes(dry("old", vec![upd("logins", Op::Increment(1.0))]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.person_id, real.person_id);
    assert_eq!(preview.results[0].value, Some(n(6.0)));
    assert_eq!(
        stored(&app, keys.workspace, "old", "logins").await,
        Some(serde_json::json!(5.0))
    );
    // A refusal decided against the stored value is still a refusal.
    assert_refused(
        app.attributes()
            .update_attributes(dry("old", vec![upd("topics", Op::Increment(1.0))]))
            .await,
        Code::InvalidArgument,
        "attribute_operation_invalid",
    );
    app.stop().await;
}

async fn validate_only_clear_attribute_removes_nothing(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "age", sk, AttributeType::Number, None).await;
    set(&app, sk, "u", "age", n(3.0)).await.unwrap();
    let clear = |distinct_id: &str| {
        authed(
            sk,
            pb::ClearAttributeRequest {
                distinct_id: distinct_id.into(),
                attribute: "age".into(),
                validate_only: true,
                ..Default::default()
            },
        )
    };
    let dry = app
        .attributes()
        .clear_attribute(clear("u"))
        .await
        .unwrap()
        .into_inner();
    assert!(dry.cleared, "there is a value it would clear");
    assert_eq!(
        stored(&app, keys.workspace, "u", "age").await,
        Some(serde_json::json!(3.0))
    );
    let status = assert_refused(
        app.attributes().clear_attribute(clear("nobody")).await,
        Code::NotFound,
        "person_not_found",
    );
    assert_eq!(
        status.message(),
        "No person has the distinct_id \"nobody\" in this workspace and mode."
    );
    app.stop().await;
}
