//! `adjustments` (CONTRACT.md section 8): every write response says what
//! coercion did to each input, one test per kind, on each write RPC.

use vevee_attributes::proto::v1::{
    self as pb, AttributeType, adjustment::Kind, attribute_update::Operation as Op,
};

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{TestApp, authed, define, list, multi_choice, n, s, set, single_choice, spawn_app},
    updates::{upd, update},
};

backend_tests! {
    trimmed_is_reported,
    case_normalized_is_reported,
    truncated_is_reported_with_the_original_length,
    options_dropped_are_reported_with_the_dropped_elements,
    duplicates_dropped_are_reported_with_the_dropped_elements,
    converted_is_reported,
    a_value_stored_as_sent_has_no_adjustments_on_any_write,
    a_repeated_request_reports_the_first_adjustments,
}

fn kinds(adjustments: &[pb::Adjustment]) -> Vec<Kind> {
    adjustments.iter().map(|a| a.kind()).collect()
}

/// Every type, with a text that truncates at 5 characters.
async fn declare(app: &TestApp, sk: &str) {
    define(app, "age", sk, AttributeType::Number, None).await;
    define(app, "bio", sk, AttributeType::Text, None).await;
    define(
        app,
        "nick",
        sk,
        AttributeType::Text,
        Some(pb::AttributeConfig {
            config: Some(pb::attribute_config::Config::Text(pb::TextConfig {
                max_length: Some(5),
                truncate: true,
            })),
        }),
    )
    .await;
    define(
        app,
        "persona",
        sk,
        AttributeType::SingleChoice,
        Some(single_choice(&["teacher", "student"])),
    )
    .await;
    define(
        app,
        "topics",
        sk,
        AttributeType::MultiChoice,
        Some(multi_choice(&["history", "math", "science", "art"])),
    )
    .await;
}

async fn trimmed_is_reported(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    declare(&app, &keys.sk_live).await;
    let stored = set(&app, &keys.sk_live, "u", "persona", s("  student "))
        .await
        .unwrap();
    assert_eq!(kinds(&stored.adjustments), [Kind::Trimmed]);
    let number = set(&app, &keys.sk_live, "u", "age", s(" 7 "))
        .await
        .unwrap();
    assert_eq!(kinds(&number.adjustments), [Kind::Trimmed, Kind::Converted]);
    app.stop().await;
}

async fn case_normalized_is_reported(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    declare(&app, &keys.sk_live).await;
    let stored = set(&app, &keys.sk_live, "u", "persona", s("TEACHER"))
        .await
        .unwrap();
    assert_eq!(stored.value, Some(s("teacher")));
    assert_eq!(kinds(&stored.adjustments), [Kind::CaseNormalized]);
    app.stop().await;
}

async fn truncated_is_reported_with_the_original_length(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    declare(&app, &keys.sk_live).await;
    let stored = set(&app, &keys.sk_live, "u", "nick", s("Ada Lovelace"))
        .await
        .unwrap();
    assert_eq!(stored.value, Some(s("Ada L")));
    assert_eq!(kinds(&stored.adjustments), [Kind::Truncated]);
    assert_eq!(stored.adjustments[0].original_length, 12);
    app.stop().await;
}

async fn options_dropped_are_reported_with_the_dropped_elements(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    declare(&app, &keys.sk_live).await;
    let stored = set(
        &app,
        &keys.sk_live,
        "u",
        "topics",
        list(&["history", "math", "cooking", " knitting "]),
    )
    .await
    .unwrap();
    assert_eq!(stored.value, Some(list(&["history", "math"])));
    assert_eq!(kinds(&stored.adjustments), [Kind::OptionsDropped]);
    assert_eq!(stored.adjustments[0].dropped, ["cooking", "knitting"]);
    app.stop().await;
}

async fn duplicates_dropped_are_reported_with_the_dropped_elements(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    declare(&app, &keys.sk_live).await;
    let stored = set(&app, &keys.sk_live, "u", "topics", list(&["art", "art"]))
        .await
        .unwrap();
    assert_eq!(stored.value, Some(list(&["art"])));
    assert_eq!(kinds(&stored.adjustments), [Kind::DuplicatesDropped]);
    assert_eq!(stored.adjustments[0].dropped, ["art"]);
    app.stop().await;
}

async fn converted_is_reported(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    declare(&app, &keys.sk_live).await;
    let stored = set(&app, &keys.sk_live, "u", "bio", n(42.0)).await.unwrap();
    assert_eq!(stored.value, Some(s("42")));
    assert_eq!(kinds(&stored.adjustments), [Kind::Converted]);
    app.stop().await;
}

async fn a_value_stored_as_sent_has_no_adjustments_on_any_write(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    declare(&app, sk).await;
    let one = set(&app, sk, "u", "bio", s("  kept as sent  "))
        .await
        .unwrap();
    assert!(one.adjustments.is_empty(), "{one:?}");
    let many = app
        .attributes()
        .set_attributes(authed(
            sk,
            pb::SetAttributesRequest {
                distinct_id: "u".into(),
                values: [
                    ("age".to_owned(), n(3.0)),
                    ("persona".to_owned(), s("Student")),
                ]
                .into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(many.adjustments["age"].adjustments.is_empty());
    assert_eq!(
        kinds(&many.adjustments["persona"].adjustments),
        [Kind::CaseNormalized]
    );
    let updated = update(
        &app,
        sk,
        "u",
        vec![
            upd("age", Op::Increment(1.0)),
            upd("topics", Op::Add(list(&["ART", "cooking"]))),
        ],
    )
    .await
    .unwrap();
    assert!(updated.results[0].adjustments.is_empty());
    assert_eq!(
        kinds(&updated.results[1].adjustments),
        [Kind::CaseNormalized, Kind::OptionsDropped]
    );
    app.stop().await;
}

async fn a_repeated_request_reports_the_first_adjustments(db: &TestDb) {
    let app = spawn_app(&db.url, &["--cache-ttl", "0s"]).await;
    let keys = app.workspace().await;
    declare(&app, &keys.sk_live).await;
    let request = || {
        authed(
            &keys.sk_live,
            pb::UpdateAttributesRequest {
                distinct_id: "u".into(),
                updates: vec![upd("persona", Op::Set(s(" Teacher ")))],
                request_id: "2c9d8e7f-6a5b-4c3d-9e1f-0a2b3c4d5e6f".into(),
                validate_only: false,
            },
        )
    };
    let first = app.attributes().update_attributes(request()).await.unwrap();
    // Declared in the spelling sent, coercion would now only trim; the
    // repeat still reports what the first request's coercion did.
    app.definitions()
        .update_attribute_definition(authed(
            &keys.sk_live,
            pb::UpdateAttributeDefinitionRequest {
                key: "persona".into(),
                config: Some(single_choice(&["Teacher", "student"])),
                display_name: None,
                description: None,
                client_writable: None,
            },
        ))
        .await
        .unwrap();
    let again = app.attributes().update_attributes(request()).await.unwrap();
    let first = first.into_inner();
    assert_eq!(
        kinds(&first.results[0].adjustments),
        [Kind::Trimmed, Kind::CaseNormalized]
    );
    assert_eq!(again.into_inner(), first);
    app.stop().await;
}
