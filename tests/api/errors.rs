//! Every error reason of CONTRACT.md section 5 that a client can trigger,
//! each with its gRPC code, ErrorInfo reason and domain.

use std::collections::HashMap;

use tonic::{Code, Request};
use vevee_attributes::proto::v1::{self as pb, AttributeType};

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{
        TestApp, archive, assert_refused, authed, define, error_attribute, get, s, set,
        single_choice, spawn_app,
    },
};

backend_tests! {
    an_undeclared_or_malformed_attribute_is_not_defined,
    a_value_that_does_not_fit_the_type_is_invalid,
    a_null_or_missing_value_is_invalid,
    text_over_max_length_is_too_long,
    writes_to_an_archived_attribute_are_refused,
    a_public_key_write_while_client_writes_are_off_is_refused,
    a_public_key_on_a_secret_only_rpc_is_refused,
    a_request_without_a_key_is_missing_api_key,
    malformed_and_unknown_keys_are_invalid_api_key,
    bad_distinct_ids_are_refused,
    reading_or_clearing_an_unknown_person_is_person_not_found,
    declaring_a_taken_key_is_attribute_already_exists,
    definition_rpcs_on_an_unknown_key_are_not_found,
    bad_definitions_are_invalid_attribute_definition,
    zero_or_over_a_hundred_values_is_too_many_values,
    a_bad_page_token_or_update_mask_is_invalid_argument,
}

/// A server and a workspace with `persona` (single_choice) and `name` (text).
async fn setup(db: &TestDb) -> (TestApp, crate::helpers::Keys) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    define(
        &app,
        "persona",
        &keys.sk_live,
        AttributeType::SingleChoice,
        Some(single_choice(&["teacher", "student"])),
    )
    .await;
    define(&app, "name", &keys.sk_live, AttributeType::Text, None).await;
    (app, keys)
}

async fn an_undeclared_or_malformed_attribute_is_not_defined(db: &TestDb) {
    let (app, keys) = setup(db).await;
    let status = assert_refused(
        set(&app, &keys.sk_live, "u", "nope", s("x")).await,
        Code::InvalidArgument,
        "attribute_not_defined",
    );
    assert_eq!(error_attribute(&status).as_deref(), Some("nope"));
    let status = assert_refused(
        set(&app, &keys.sk_live, "u", "Not A Key!", s("x")).await,
        Code::InvalidArgument,
        "attribute_not_defined",
    );
    // A malformed key is named like an undeclared one.
    assert_eq!(error_attribute(&status).as_deref(), Some("Not A Key!"));
    set(&app, &keys.sk_live, "u", "name", s("Ada"))
        .await
        .unwrap();
    assert_refused(
        app.attributes()
            .clear_attribute(authed(
                &keys.sk_live,
                pb::ClearAttributeRequest {
                    distinct_id: "u".into(),
                    attribute: "nope".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "attribute_not_defined",
    );
    assert_refused(
        app.attributes()
            .get_attributes(authed(
                &keys.sk_live,
                pb::GetAttributesRequest {
                    distinct_id: "u".into(),
                    attributes: vec!["name".into(), "nope".into()],
                    include_archived: false,
                },
            ))
            .await,
        Code::InvalidArgument,
        "attribute_not_defined",
    );
    let status = assert_refused(
        app.attributes()
            .get_attributes(authed(
                &keys.sk_live,
                pb::GetAttributesRequest {
                    distinct_id: "u".into(),
                    attributes: vec!["name".into(), "Bad-Key".into()],
                    include_archived: false,
                },
            ))
            .await,
        Code::InvalidArgument,
        "attribute_not_defined",
    );
    assert_eq!(error_attribute(&status).as_deref(), Some("Bad-Key"));
    // Messages to people never show Rust's debug formatting.
    let status = assert_refused(
        get(&app, &keys.sk_live, "nobody").await,
        Code::NotFound,
        "person_not_found",
    );
    assert!(
        !status.message().contains("DistinctId("),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("\"nobody\""),
        "{}",
        status.message()
    );
    app.stop().await;
}

async fn a_value_that_does_not_fit_the_type_is_invalid(db: &TestDb) {
    let (app, keys) = setup(db).await;
    let status = assert_refused(
        set(&app, &keys.sk_live, "u", "persona", s("cooking")).await,
        Code::InvalidArgument,
        "attribute_value_invalid",
    );
    assert_eq!(error_attribute(&status).as_deref(), Some("persona"));
    assert!(
        status.message().contains("teacher, student"),
        "the message lists the options: {}",
        status.message()
    );
    app.stop().await;
}

async fn a_null_or_missing_value_is_invalid(db: &TestDb) {
    let (app, keys) = setup(db).await;
    let null = prost_types::Value {
        kind: Some(prost_types::value::Kind::NullValue(0)),
    };
    assert_refused(
        set(&app, &keys.sk_live, "u", "name", null).await,
        Code::InvalidArgument,
        "attribute_value_invalid",
    );
    let missing = app
        .attributes()
        .set_attribute(authed(
            &keys.sk_live,
            pb::SetAttributeRequest {
                distinct_id: "u".into(),
                attribute: "name".into(),
                value: None,
                ..Default::default()
            },
        ))
        .await;
    assert_refused(missing, Code::InvalidArgument, "attribute_value_invalid");
    app.stop().await;
}

async fn text_over_max_length_is_too_long(db: &TestDb) {
    let (app, keys) = setup(db).await;
    set(&app, &keys.sk_live, "u", "name", s(&"é".repeat(255)))
        .await
        .expect("255 characters fit");
    assert_refused(
        set(&app, &keys.sk_live, "u", "name", s(&"é".repeat(256))).await,
        Code::InvalidArgument,
        "attribute_value_too_long",
    );
    app.stop().await;
}

async fn writes_to_an_archived_attribute_are_refused(db: &TestDb) {
    let (app, keys) = setup(db).await;
    archive(&app, &keys.sk_live, "name").await;
    let status = assert_refused(
        set(&app, &keys.sk_live, "u", "name", s("Ada")).await,
        Code::FailedPrecondition,
        "attribute_archived",
    );
    assert_eq!(error_attribute(&status).as_deref(), Some("name"));
    app.stop().await;
}

async fn a_public_key_write_while_client_writes_are_off_is_refused(db: &TestDb) {
    let (app, keys) = setup(db).await;
    assert_refused(
        set(&app, &keys.pk_live, "u", "persona", s("teacher")).await,
        Code::PermissionDenied,
        "client_attribute_writes_disabled",
    );
    app.stop().await;
}

async fn a_public_key_on_a_secret_only_rpc_is_refused(db: &TestDb) {
    let (app, keys) = setup(db).await;
    assert_refused(
        get(&app, &keys.pk_live, "u").await,
        Code::PermissionDenied,
        "secret_key_required",
    );
    app.stop().await;
}

async fn a_request_without_a_key_is_missing_api_key(db: &TestDb) {
    let (app, _keys) = setup(db).await;
    let result = app
        .attributes()
        .set_attribute(Request::new(pb::SetAttributeRequest {
            distinct_id: "u".into(),
            attribute: "name".into(),
            value: Some(s("x")),
            ..Default::default()
        }))
        .await;
    assert_refused(result, Code::Unauthenticated, "missing_api_key");
    app.stop().await;
}

async fn malformed_and_unknown_keys_are_invalid_api_key(db: &TestDb) {
    let (app, keys) = setup(db).await;
    // A key of another database: well-formed, checksum right, unknown here.
    let unknown = vevee_attributes::app::ApiKey::generate(
        vevee_attributes::domain::KeyKind::Secret,
        vevee_attributes::domain::Mode::Live,
    )
    .unwrap();
    let truncated = &keys.sk_live[..keys.sk_live.len() - 1];
    let wrong_prefix = keys.sk_live.replacen("sk_", "xk_", 1);
    let mut messages = Vec::new();
    for key in [
        unknown.expose(),
        truncated,
        wrong_prefix.as_str(),
        "",
        "Basic abc",
    ] {
        let status = assert_refused(
            set(&app, key, "u", "name", s("x")).await,
            Code::Unauthenticated,
            "invalid_api_key",
        );
        messages.push(status.message().to_owned());
    }
    messages.dedup();
    assert_eq!(
        messages.len(),
        1,
        "one fixed message for every bad key: {messages:?}"
    );
    app.stop().await;
}

async fn bad_distinct_ids_are_refused(db: &TestDb) {
    let (app, keys) = setup(db).await;
    set(&app, &keys.sk_live, &"é".repeat(200), "name", s("x"))
        .await
        .expect("200 characters fit");
    for bad in [
        String::new(),
        "é".repeat(201),
        "tab\there".into(),
        "del\u{7f}".into(),
    ] {
        assert_refused(
            set(&app, &keys.sk_live, &bad, "name", s("x")).await,
            Code::InvalidArgument,
            "invalid_distinct_id",
        );
    }
    app.stop().await;
}

async fn reading_or_clearing_an_unknown_person_is_person_not_found(db: &TestDb) {
    let (app, keys) = setup(db).await;
    assert_refused(
        get(&app, &keys.sk_live, "ghost").await,
        Code::NotFound,
        "person_not_found",
    );
    assert_refused(
        app.attributes()
            .clear_attribute(authed(
                &keys.sk_live,
                pb::ClearAttributeRequest {
                    distinct_id: "ghost".into(),
                    attribute: "name".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::NotFound,
        "person_not_found",
    );
    app.stop().await;
}

async fn declaring_a_taken_key_is_attribute_already_exists(db: &TestDb) {
    let (app, keys) = setup(db).await;
    let result = app
        .definitions()
        .create_attribute_definition(authed(
            &keys.sk_live,
            pb::CreateAttributeDefinitionRequest {
                key: "name".into(),
                r#type: AttributeType::Number.into(),
                config: None,
                display_name: String::new(),
                description: String::new(),
                client_writable: None,
            },
        ))
        .await;
    let status = assert_refused(result, Code::AlreadyExists, "attribute_already_exists");
    assert_eq!(error_attribute(&status).as_deref(), Some("name"));
    app.stop().await;
}

async fn definition_rpcs_on_an_unknown_key_are_not_found(db: &TestDb) {
    let (app, keys) = setup(db).await;
    let mut client = app.definitions();
    let key = || "ghost".to_owned();
    assert_refused(
        client
            .get_attribute_definition(authed(
                &keys.sk_live,
                pb::GetAttributeDefinitionRequest { key: key() },
            ))
            .await,
        Code::NotFound,
        "attribute_definition_not_found",
    );
    assert_refused(
        client
            .update_attribute_definition(authed(
                &keys.sk_live,
                pb::UpdateAttributeDefinitionRequest {
                    key: key(),
                    config: None,
                    display_name: Some("Ghost".into()),
                    description: None,
                    client_writable: None,
                },
            ))
            .await,
        Code::NotFound,
        "attribute_definition_not_found",
    );
    assert_refused(
        client
            .archive_attribute_definition(authed(
                &keys.sk_live,
                pb::ArchiveAttributeDefinitionRequest { key: key() },
            ))
            .await,
        Code::NotFound,
        "attribute_definition_not_found",
    );
    assert_refused(
        client
            .unarchive_attribute_definition(authed(
                &keys.sk_live,
                pb::UnarchiveAttributeDefinitionRequest {
                    key: "Not A Key".into(),
                },
            ))
            .await,
        Code::NotFound,
        "attribute_definition_not_found",
    );
    app.stop().await;
}

async fn bad_definitions_are_invalid_attribute_definition(db: &TestDb) {
    let (app, keys) = setup(db).await;
    let mut client = app.definitions();
    let create = |key: &str, t: AttributeType, config: Option<pb::AttributeConfig>| {
        authed(
            &keys.sk_live,
            pb::CreateAttributeDefinitionRequest {
                key: key.into(),
                r#type: t.into(),
                config,
                display_name: String::new(),
                description: String::new(),
                client_writable: None,
            },
        )
    };
    let cases = [
        create("Bad-Key", AttributeType::Text, None),
        create("ok_key", AttributeType::Unspecified, None),
        create("choices", AttributeType::SingleChoice, None),
        create(
            "dupes",
            AttributeType::SingleChoice,
            Some(single_choice(&["Math", "math"])),
        ),
        create("mismatch", AttributeType::Text, Some(single_choice(&["a"]))),
        create(
            "range",
            AttributeType::Number,
            Some(pb::AttributeConfig {
                config: Some(pb::attribute_config::Config::Number(pb::NumberConfig {
                    min: Some(5.0),
                    max: Some(1.0),
                    integer: false,
                })),
            }),
        ),
    ];
    for request in cases {
        let key = request.get_ref().key.clone();
        let status = client.create_attribute_definition(request).await;
        let status = assert_refused(
            status,
            Code::InvalidArgument,
            "invalid_attribute_definition",
        );
        assert!(!status.message().is_empty(), "{key}");
    }
    // The type cannot change.
    let update = client
        .update_attribute_definition(authed(
            &keys.sk_live,
            pb::UpdateAttributeDefinitionRequest {
                key: "name".into(),
                config: Some(single_choice(&["a"])),
                display_name: None,
                description: None,
                client_writable: None,
            },
        ))
        .await;
    let status = assert_refused(
        update,
        Code::InvalidArgument,
        "invalid_attribute_definition",
    );
    assert!(
        status.message().starts_with("config"),
        "{}",
        status.message()
    );
    app.stop().await;
}

async fn zero_or_over_a_hundred_values_is_too_many_values(db: &TestDb) {
    let (app, keys) = setup(db).await;
    for count in [0, 101] {
        let values: HashMap<String, prost_types::Value> =
            (0..count).map(|i| (format!("k{i}"), s("x"))).collect();
        let result = app
            .attributes()
            .set_attributes(authed(
                &keys.sk_live,
                pb::SetAttributesRequest {
                    distinct_id: "u".into(),
                    values,
                    ..Default::default()
                },
            ))
            .await;
        assert_refused(result, Code::InvalidArgument, "too_many_values");
    }
    app.stop().await;
}

async fn a_bad_page_token_or_update_mask_is_invalid_argument(db: &TestDb) {
    let (app, keys) = setup(db).await;
    let list = app
        .definitions()
        .list_attribute_definitions(authed(
            &keys.sk_live,
            pb::ListAttributeDefinitionsRequest {
                include_archived: false,
                page_size: 10,
                page_token: "not-a-token".into(),
            },
        ))
        .await;
    assert_refused(list, Code::InvalidArgument, "invalid_argument");
    let update = app
        .settings()
        .update_workspace_settings(authed(
            &keys.sk_live,
            pb::UpdateWorkspaceSettingsRequest {
                settings: Some(pb::WorkspaceSettings {
                    client_attribute_writes: true,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["no_such_setting".into()],
                }),
            },
        ))
        .await;
    assert_refused(update, Code::InvalidArgument, "invalid_argument");
    app.stop().await;
}
