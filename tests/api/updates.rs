//! UpdateAttributes (CONTRACT.md section 8): each operation on each type it
//! applies to, refusals, all or nothing, and no lost updates under
//! concurrency, with group commit on and off.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::{sync::Barrier, task::JoinSet};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use vevee_attributes::{
    domain::Mode,
    proto::v1::{self as pb, AttributeType, attribute_update::Operation as Op},
};

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{
        TestApp, archive, assert_refused, authed, define, error_attribute, list, multi_choice, n,
        s, set, single_choice, spawn_app,
    },
};

backend_tests! {
    each_operation_works_on_each_type_it_applies_to,
    operations_that_do_not_fit_the_type_are_attribute_operation_invalid,
    set_once_that_finds_a_value_keeps_it_and_says_not_applied,
    increments_crossing_min_max_or_integer_are_refused_and_write_nothing,
    add_keeps_the_stored_order_and_max_items_applies_to_the_result,
    removing_absent_elements_is_no_error,
    two_updates_of_one_attribute_are_refused,
    a_failing_update_writes_nothing_and_creates_no_person,
    updates_without_an_operation_or_out_of_count_are_refused,
    archived_attributes_refuse_updates_but_can_be_cleared,
    a_public_key_may_update_only_while_client_writes_are_on,
    fifty_concurrent_increments_add_exactly_fifty_with_group_commit,
    fifty_concurrent_increments_add_exactly_fifty_without_group_commit,
    fifty_concurrent_adds_keep_all_fifty_options_with_group_commit,
    fifty_concurrent_adds_keep_all_fifty_options_without_group_commit,
    fifty_concurrent_set_onces_have_exactly_one_winner_with_group_commit,
    fifty_concurrent_set_onces_have_exactly_one_winner_without_group_commit,
}

/// Flags that turn group commit (and coalesced reads) off.
const NO_GROUP_COMMIT: &[&str] = &["--max-write-batch", "1", "--max-read-batch", "1"];

/// One update of `attribute` with `op`.
pub(crate) fn upd(attribute: &str, op: Op) -> pb::AttributeUpdate {
    pb::AttributeUpdate {
        attribute: attribute.into(),
        operation: Some(op),
        if_etag: None,
    }
}

/// UpdateAttributes of `updates`.
pub(crate) async fn update(
    app: &TestApp,
    key: &str,
    distinct_id: &str,
    updates: Vec<pb::AttributeUpdate>,
) -> Result<pb::UpdateAttributesResponse, Status> {
    app.attributes()
        .update_attributes(authed(
            key,
            pb::UpdateAttributesRequest {
                distinct_id: distinct_id.into(),
                updates,
                ..Default::default()
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The JSON value stored for `key` of `distinct_id`, read from the database.
pub(crate) async fn stored(
    app: &TestApp,
    ws: vevee_attributes::domain::WorkspaceId,
    distinct_id: &str,
    key: &str,
) -> Option<serde_json::Value> {
    app.store
        .read_values(ws, Mode::Live, distinct_id, None, true)
        .await
        .expect("read")
        .and_then(|p| p.values.into_iter().find(|v| v.key == key))
        .map(|v| v.value)
}

/// A multi_choice config with `max_items`.
fn multi_choice_max(options: &[&str], max_items: u32) -> pb::AttributeConfig {
    pb::AttributeConfig {
        config: Some(pb::attribute_config::Config::MultiChoice(
            pb::MultiChoiceConfig {
                options: options.iter().map(|o| (*o).to_owned()).collect(),
                allow_custom: false,
                max_items: Some(max_items),
            },
        )),
    }
}

/// A number config.
fn number(min: Option<f64>, max: Option<f64>, integer: bool) -> pb::AttributeConfig {
    pb::AttributeConfig {
        config: Some(pb::attribute_config::Config::Number(pb::NumberConfig {
            min,
            max,
            integer,
        })),
    }
}

fn b(v: bool) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::BoolValue(v)),
    }
}

/// Declares one attribute of every type: bio (text), age (number), vip
/// (boolean), born (date), persona (single_choice), topics (multi_choice).
async fn every_type(app: &TestApp, secret: &str) {
    define(app, "bio", secret, AttributeType::Text, None).await;
    define(app, "age", secret, AttributeType::Number, None).await;
    define(app, "vip", secret, AttributeType::Boolean, None).await;
    define(app, "born", secret, AttributeType::Date, None).await;
    define(
        app,
        "persona",
        secret,
        AttributeType::SingleChoice,
        Some(single_choice(&["teacher", "student"])),
    )
    .await;
    define(
        app,
        "topics",
        secret,
        AttributeType::MultiChoice,
        Some(multi_choice(&["history", "math", "science", "art"])),
    )
    .await;
}

async fn each_operation_works_on_each_type_it_applies_to(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    every_type(&app, sk).await;
    let values = [
        ("bio", s("hello"), s("hello")),
        ("age", s("41"), n(41.0)),
        ("vip", s("TRUE"), b(true)),
        ("born", s("1990-05-01"), s("1990-05-01")),
        ("persona", s("Teacher"), s("teacher")),
        ("topics", list(&["math", "cooking"]), list(&["math"])),
    ];
    // set, then set_once (not applied), then clear, then set_once (applied).
    let sets = values
        .iter()
        .map(|(k, v, _)| upd(k, Op::Set(v.clone())))
        .collect();
    let done = update(&app, sk, "u", sets).await.expect("set");
    assert!(!done.person_id.is_empty());
    for ((key, _, want), result) in values.iter().zip(&done.results) {
        assert_eq!(result.attribute, *key);
        assert_eq!(result.value.as_ref(), Some(want), "{key}");
        assert!(result.applied);
        assert!(!result.etag.is_empty());
    }
    let once = values
        .iter()
        .map(|(k, v, _)| upd(k, Op::SetOnce(v.clone())))
        .collect();
    let kept = update(&app, sk, "u", once).await.unwrap();
    assert!(kept.results.iter().all(|r| !r.applied), "{kept:?}");
    for (set, kept) in done.results.iter().zip(&kept.results) {
        assert_eq!(set.etag, kept.etag, "an unapplied update leaves the etag");
    }
    let clears = values
        .iter()
        .map(|(k, _, _)| upd(k, Op::Clear(())))
        .collect();
    let cleared = update(&app, sk, "u", clears).await.unwrap();
    for r in &cleared.results {
        assert!(r.applied && r.value.is_none() && r.etag.is_empty(), "{r:?}");
    }
    assert_eq!(stored(&app, keys.workspace, "u", "bio").await, None);
    let clears_again = values
        .iter()
        .map(|(k, _, _)| upd(k, Op::Clear(())))
        .collect();
    let nothing = update(&app, sk, "u", clears_again).await.unwrap();
    assert!(nothing.results.iter().all(|r| !r.applied));
    let once = values
        .iter()
        .map(|(k, v, _)| upd(k, Op::SetOnce(v.clone())))
        .collect();
    let first = update(&app, sk, "u", once).await.unwrap();
    for ((key, _, want), result) in values.iter().zip(&first.results) {
        assert!(result.applied, "{key}");
        assert_eq!(result.value.as_ref(), Some(want), "{key}");
    }

    // increment (number), add and remove (multi_choice).
    let changed = update(
        &app,
        sk,
        "u",
        vec![
            upd("age", Op::Increment(1.5)),
            upd("topics", Op::Add(list(&["ART", "history"]))),
        ],
    )
    .await
    .unwrap();
    assert_eq!(changed.results[0].value, Some(n(42.5)));
    assert_eq!(
        changed.results[1].value,
        Some(list(&["math", "art", "history"]))
    );
    let removed = update(&app, sk, "u", vec![upd("topics", Op::Remove(s(" Math ")))])
        .await
        .unwrap();
    assert_eq!(removed.results[0].value, Some(list(&["art", "history"])));
    assert_eq!(
        stored(&app, keys.workspace, "u", "topics").await,
        Some(serde_json::json!(["art", "history"]))
    );
    assert_eq!(
        stored(&app, keys.workspace, "u", "age").await,
        Some(serde_json::json!(42.5))
    );
    // Increment of a value never set counts from 0.
    let fresh = update(&app, sk, "new", vec![upd("age", Op::Increment(3.0))])
        .await
        .unwrap();
    assert_eq!(fresh.results[0].value, Some(n(3.0)));
    app.stop().await;
}

async fn operations_that_do_not_fit_the_type_are_attribute_operation_invalid(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    every_type(&app, sk).await;
    let misfits = [
        ("bio", Op::Increment(1.0)),
        ("vip", Op::Increment(1.0)),
        ("born", Op::Increment(1.0)),
        ("persona", Op::Increment(1.0)),
        ("topics", Op::Increment(1.0)),
        ("bio", Op::Add(s("a"))),
        ("age", Op::Add(s("1"))),
        ("vip", Op::Add(s("true"))),
        ("born", Op::Add(s("2020-01-01"))),
        ("persona", Op::Add(s("teacher"))),
        ("bio", Op::Remove(s("a"))),
        ("age", Op::Remove(s("1"))),
        ("vip", Op::Remove(s("true"))),
        ("born", Op::Remove(s("2020-01-01"))),
        ("persona", Op::Remove(s("teacher"))),
    ];
    for (key, op) in misfits {
        let status = assert_refused(
            update(&app, sk, "u", vec![upd(key, op.clone())]).await,
            Code::InvalidArgument,
            "attribute_operation_invalid",
        );
        assert_eq!(error_attribute(&status).as_deref(), Some(key), "{op:?}");
        let violations = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, "updates[0]");
    }
    assert!(
        app.store
            .read_values(keys.workspace, Mode::Live, "u", None, true)
            .await
            .unwrap()
            .is_none(),
        "no person was created"
    );
    app.stop().await;
}

async fn set_once_that_finds_a_value_keeps_it_and_says_not_applied(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "referrer", sk, AttributeType::Text, None).await;
    set(&app, sk, "u", "referrer", s("newsletter"))
        .await
        .unwrap();
    let once = update(&app, sk, "u", vec![upd("referrer", Op::SetOnce(s("ads")))])
        .await
        .unwrap();
    assert!(!once.results[0].applied);
    assert_eq!(once.results[0].value, Some(s("newsletter")));
    assert_eq!(
        stored(&app, keys.workspace, "u", "referrer").await,
        Some(serde_json::json!("newsletter"))
    );
    app.stop().await;
}

async fn increments_crossing_min_max_or_integer_are_refused_and_write_nothing(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(
        &app,
        "seats",
        sk,
        AttributeType::Number,
        Some(number(Some(0.0), Some(10.0), true)),
    )
    .await;
    define(&app, "note", sk, AttributeType::Text, None).await;
    set(&app, sk, "u", "seats", n(9.0)).await.unwrap();
    update(&app, sk, "u", vec![upd("seats", Op::Increment(1.0))])
        .await
        .expect("10 is the max, inclusive");
    for by in [1.0, -11.0, 0.5] {
        let status = assert_refused(
            update(
                &app,
                sk,
                "u",
                vec![
                    upd("note", Op::Set(s("not written"))),
                    upd("seats", Op::Increment(by)),
                ],
            )
            .await,
            Code::InvalidArgument,
            "attribute_value_invalid",
        );
        assert_eq!(error_attribute(&status).as_deref(), Some("seats"));
        let violations = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field, "updates[1]");
        assert!(
            violations[0]
                .description
                .starts_with("attribute_value_invalid")
        );
    }
    assert_eq!(
        stored(&app, keys.workspace, "u", "seats").await,
        Some(serde_json::json!(10.0))
    );
    assert_eq!(stored(&app, keys.workspace, "u", "note").await, None);
    app.stop().await;
}

async fn add_keeps_the_stored_order_and_max_items_applies_to_the_result(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(
        &app,
        "topics",
        sk,
        AttributeType::MultiChoice,
        Some(multi_choice_max(&["history", "math", "science", "art"], 3)),
    )
    .await;
    set(&app, sk, "u", "topics", list(&["science", "history"]))
        .await
        .unwrap();
    let added = update(
        &app,
        sk,
        "u",
        vec![upd(
            "topics",
            Op::Add(list(&["HISTORY", "math", "cooking"])),
        )],
    )
    .await
    .unwrap();
    assert_eq!(
        added.results[0].value,
        Some(list(&["science", "history", "math"]))
    );
    // Adding what is there changes nothing.
    let same = update(&app, sk, "u", vec![upd("topics", Op::Add(s("math")))])
        .await
        .unwrap();
    assert!(!same.results[0].applied);
    assert_eq!(same.results[0].etag, added.results[0].etag);
    let status = assert_refused(
        update(&app, sk, "u", vec![upd("topics", Op::Add(s("art")))]).await,
        Code::InvalidArgument,
        "attribute_value_invalid",
    );
    assert!(status.message().contains("at most 3"), "{status:?}");
    assert_eq!(
        stored(&app, keys.workspace, "u", "topics").await,
        Some(serde_json::json!(["science", "history", "math"]))
    );
    app.stop().await;
}

async fn removing_absent_elements_is_no_error(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(
        &app,
        "topics",
        sk,
        AttributeType::MultiChoice,
        Some(multi_choice(&["history", "math", "science", "art"])),
    )
    .await;
    set(&app, sk, "u", "topics", list(&["math"])).await.unwrap();
    let none = update(
        &app,
        sk,
        "u",
        vec![upd("topics", Op::Remove(list(&["art", "cooking"])))],
    )
    .await
    .unwrap();
    assert!(!none.results[0].applied);
    assert_eq!(none.results[0].value, Some(list(&["math"])));
    // Of a person with no value at all, too.
    let nobody = update(
        &app,
        sk,
        "ghost",
        vec![upd("topics", Op::Remove(s("math")))],
    )
    .await
    .unwrap();
    assert!(!nobody.results[0].applied);
    assert!(nobody.results[0].value.is_none());
    assert!(nobody.person_id.is_empty(), "no person was created");
    let all = update(&app, sk, "u", vec![upd("topics", Op::Remove(s("MATH")))])
        .await
        .unwrap();
    assert!(all.results[0].applied);
    assert_eq!(all.results[0].value, Some(list(&[])));
    app.stop().await;
}

async fn two_updates_of_one_attribute_are_refused(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "age", sk, AttributeType::Number, None).await;
    let status = assert_refused(
        update(
            &app,
            sk,
            "u",
            vec![upd("age", Op::Set(n(1.0))), upd("age", Op::Increment(1.0))],
        )
        .await,
        Code::InvalidArgument,
        "attribute_operation_invalid",
    );
    let violations = status.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].field, "updates[1]");
    assert_eq!(stored(&app, keys.workspace, "u", "age").await, None);
    app.stop().await;
}

async fn a_failing_update_writes_nothing_and_creates_no_person(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    every_type(&app, sk).await;
    let status = assert_refused(
        update(
            &app,
            sk,
            "new",
            vec![
                upd("bio", Op::Set(s("ok"))),
                upd("persona", Op::Set(s("pilot"))),
                upd("undeclared", Op::Clear(())),
                upd("age", Op::Increment(1.0)),
            ],
        )
        .await,
        Code::InvalidArgument,
        "attribute_value_invalid",
    );
    let fields: Vec<String> = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["updates[1]", "updates[2]"]);
    assert_eq!(error_attribute(&status).as_deref(), Some("persona"));
    assert!(
        app.store
            .read_values(keys.workspace, Mode::Live, "new", None, true)
            .await
            .unwrap()
            .is_none()
    );
    app.stop().await;
}

async fn updates_without_an_operation_or_out_of_count_are_refused(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "age", sk, AttributeType::Number, None).await;
    let empty = pb::AttributeUpdate {
        attribute: "age".into(),
        operation: None,
        if_etag: None,
    };
    let status = assert_refused(
        update(&app, sk, "u", vec![empty]).await,
        Code::InvalidArgument,
        "attribute_operation_invalid",
    );
    assert_eq!(
        status.get_details_bad_request().unwrap().field_violations[0].field,
        "updates[0]"
    );
    assert_refused(
        update(&app, sk, "u", vec![]).await,
        Code::InvalidArgument,
        "too_many_values",
    );
    let many = (0..101).map(|_| upd("age", Op::Increment(1.0))).collect();
    assert_refused(
        update(&app, sk, "u", many).await,
        Code::InvalidArgument,
        "too_many_values",
    );
    assert_refused(
        update(&app, sk, "", vec![upd("age", Op::Increment(1.0))]).await,
        Code::InvalidArgument,
        "invalid_distinct_id",
    );
    app.stop().await;
}

async fn archived_attributes_refuse_updates_but_can_be_cleared(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "age", sk, AttributeType::Number, None).await;
    set(&app, sk, "u", "age", n(3.0)).await.unwrap();
    archive(&app, sk, "age").await;
    assert_refused(
        update(&app, sk, "u", vec![upd("age", Op::Increment(1.0))]).await,
        Code::FailedPrecondition,
        "attribute_archived",
    );
    let cleared = update(&app, sk, "u", vec![upd("age", Op::Clear(()))])
        .await
        .unwrap();
    assert!(cleared.results[0].applied);
    assert_eq!(stored(&app, keys.workspace, "u", "age").await, None);
    app.stop().await;
}

async fn a_public_key_may_update_only_while_client_writes_are_on(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    define(&app, "logins", &keys.sk_live, AttributeType::Number, None).await;
    let once = || vec![upd("logins", Op::Increment(1.0))];
    assert_refused(
        update(&app, &keys.pk_live, "u", once()).await,
        Code::PermissionDenied,
        "client_attribute_writes_disabled",
    );
    app.settings()
        .update_workspace_settings(authed(
            &keys.sk_live,
            pb::UpdateWorkspaceSettingsRequest {
                settings: Some(pb::WorkspaceSettings {
                    client_attribute_writes: true,
                    ..Default::default()
                }),
                update_mask: None,
            },
        ))
        .await
        .unwrap();
    let done = update(&app, &keys.pk_live, "u", once()).await.unwrap();
    assert_eq!(done.results[0].value, Some(n(1.0)));
    app.stop().await;
}

/// Runs `count` copies of `make(i)` at once, each its own UpdateAttributes
/// of person "hot", and returns every response.
async fn concurrently(
    app: &TestApp,
    key: &str,
    count: usize,
    make: impl Fn(usize) -> pb::AttributeUpdate,
) -> Vec<pb::UpdateAttributesResponse> {
    let start = Arc::new(Barrier::new(count));
    let mut calls = JoinSet::new();
    for i in 0..count {
        let (mut client, start) = (app.attributes(), start.clone());
        let request = authed(
            key,
            pb::UpdateAttributesRequest {
                distinct_id: "hot".into(),
                updates: vec![make(i)],
                ..Default::default()
            },
        );
        calls.spawn(async move {
            start.wait().await;
            client.update_attributes(request).await
        });
    }
    calls
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("no update fails").into_inner())
        .collect()
}

async fn fifty_concurrent_increments(db: &TestDb, flags: &[&str]) {
    let app = spawn_app(&db.url, flags).await;
    let keys = app.workspace().await;
    define(&app, "logins", &keys.sk_live, AttributeType::Number, None).await;
    let answers = concurrently(&app, &keys.sk_live, 50, |_| {
        upd("logins", Op::Increment(1.0))
    })
    .await;
    let mut seen: Vec<f64> = answers
        .iter()
        .map(
            |a| match a.results[0].value.as_ref().and_then(|v| v.kind.clone()) {
                Some(prost_types::value::Kind::NumberValue(x)) => x,
                other => panic!("not a number: {other:?}"),
            },
        )
        .collect();
    seen.sort_by(f64::total_cmp);
    let expected: Vec<f64> = (1..=50).map(f64::from).collect();
    assert_eq!(seen, expected, "each increment saw the one before");
    assert_eq!(
        stored(&app, keys.workspace, "hot", "logins").await,
        Some(serde_json::json!(50.0))
    );
    let persons: HashSet<_> = answers.iter().map(|a| a.person_id.clone()).collect();
    assert_eq!(persons.len(), 1);
    app.stop().await;
}

async fn fifty_concurrent_increments_add_exactly_fifty_with_group_commit(db: &TestDb) {
    fifty_concurrent_increments(db, &[]).await;
}

async fn fifty_concurrent_increments_add_exactly_fifty_without_group_commit(db: &TestDb) {
    fifty_concurrent_increments(db, NO_GROUP_COMMIT).await;
}

async fn fifty_concurrent_adds(db: &TestDb, flags: &[&str]) {
    let app = spawn_app(&db.url, flags).await;
    let keys = app.workspace().await;
    let options: Vec<String> = (0..50).map(|i| format!("option_{i}")).collect();
    let refs: Vec<&str> = options.iter().map(String::as_str).collect();
    define(
        &app,
        "tags",
        &keys.sk_live,
        AttributeType::MultiChoice,
        Some(multi_choice(&refs)),
    )
    .await;
    concurrently(&app, &keys.sk_live, 50, |i| {
        upd("tags", Op::Add(s(&format!("option_{i}"))))
    })
    .await;
    let kept = stored(&app, keys.workspace, "hot", "tags")
        .await
        .expect("a value");
    let kept: HashSet<String> = kept
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kept, options.into_iter().collect::<HashSet<_>>());
    app.stop().await;
}

async fn fifty_concurrent_adds_keep_all_fifty_options_with_group_commit(db: &TestDb) {
    fifty_concurrent_adds(db, &[]).await;
}

async fn fifty_concurrent_adds_keep_all_fifty_options_without_group_commit(db: &TestDb) {
    fifty_concurrent_adds(db, NO_GROUP_COMMIT).await;
}

async fn fifty_concurrent_set_onces(db: &TestDb, flags: &[&str]) {
    let app = spawn_app(&db.url, flags).await;
    let keys = app.workspace().await;
    define(&app, "referrer", &keys.sk_live, AttributeType::Text, None).await;
    let answers = concurrently(&app, &keys.sk_live, 50, |i| {
        upd("referrer", Op::SetOnce(s(&format!("source {i}"))))
    })
    .await;
    let winners: Vec<_> = answers.iter().filter(|a| a.results[0].applied).collect();
    assert_eq!(winners.len(), 1, "exactly one set_once wins");
    let won = winners[0].results[0].value.clone();
    for a in &answers {
        assert_eq!(a.results[0].value, won, "everyone sees the winner's value");
    }
    let text = match won.and_then(|v| v.kind) {
        Some(prost_types::value::Kind::StringValue(t)) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        stored(&app, keys.workspace, "hot", "referrer").await,
        Some(serde_json::json!(text))
    );
    app.stop().await;
}

async fn fifty_concurrent_set_onces_have_exactly_one_winner_with_group_commit(db: &TestDb) {
    fifty_concurrent_set_onces(db, &[]).await;
}

async fn fifty_concurrent_set_onces_have_exactly_one_winner_without_group_commit(db: &TestDb) {
    fifty_concurrent_set_onces(db, NO_GROUP_COMMIT).await;
}
