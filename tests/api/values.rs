//! Writing and reading values end to end: the seed's examples, batches,
//! clearing, and concurrent first writes.

use std::collections::{HashMap, HashSet};

use tonic::Code;
use tonic_types::StatusExt;
use vevee_attributes::proto::v1::{self as pb, AttributeType};

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{
        archive, assert_refused, authed, define, get, list, multi_choice, n, s, set, single_choice,
        spawn_app,
    },
};

backend_tests! {
    seed_persona_single_choice_set_to_teacher,
    seed_topics_multi_choice_keeps_the_matching_subset,
    values_read_back_sorted_with_their_update_time,
    set_attributes_stores_every_value_as_normalized,
    set_attributes_is_all_or_nothing_with_one_violation_per_failing_value,
    clear_reports_whether_a_value_was_set_and_works_on_archived_attributes,
    a_person_whose_values_were_cleared_still_exists,
    archived_values_are_hidden_unless_asked_for,
    fifty_concurrent_first_writes_get_one_person_id,
}

async fn seed_persona_single_choice_set_to_teacher(db: &TestDb) {
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

    let stored = set(&app, &keys.sk_live, "user-1", "persona", s("teacher"))
        .await
        .expect("stored");
    assert_eq!(stored.attribute, "persona");
    assert_eq!(stored.value, Some(s("teacher")));
    assert!(!stored.person_id.is_empty());
    assert_ne!(
        stored.person_id, "user-1",
        "person ids are not the distinct_id"
    );

    // Case-insensitive, trimmed, stored in the declared spelling.
    let again = set(&app, &keys.sk_live, "user-1", "persona", s("  STUDENT "))
        .await
        .unwrap();
    assert_eq!(again.value, Some(s("student")));
    assert_eq!(again.person_id, stored.person_id, "the person is stable");

    let read = get(&app, &keys.sk_live, "user-1").await.unwrap();
    assert_eq!(read.person_id, stored.person_id);
    assert_eq!(read.attributes.len(), 1);
    assert_eq!(read.attributes[0].value, Some(s("student")));
    app.stop().await;
}

async fn seed_topics_multi_choice_keeps_the_matching_subset(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    define(
        &app,
        "topics",
        &keys.sk_live,
        AttributeType::MultiChoice,
        Some(multi_choice(&["history", "math", "science", "art"])),
    )
    .await;
    let stored = set(
        &app,
        &keys.sk_live,
        "user-1",
        "topics",
        list(&["history", "math", "cooking"]),
    )
    .await
    .unwrap();
    assert_eq!(stored.value, Some(list(&["history", "math"])));
    let read = get(&app, &keys.sk_live, "user-1").await.unwrap();
    assert_eq!(read.attributes[0].attribute, "topics");
    assert_eq!(read.attributes[0].value, Some(list(&["history", "math"])));
    app.stop().await;
}

async fn values_read_back_sorted_with_their_update_time(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    for key in ["zeta", "alpha", "mid"] {
        define(&app, key, &keys.sk_live, AttributeType::Text, None).await;
    }
    for key in ["zeta", "alpha", "mid"] {
        set(&app, &keys.sk_live, "u", key, s(key)).await.unwrap();
    }
    let read = get(&app, &keys.sk_live, "u").await.unwrap();
    let order: Vec<_> = read
        .attributes
        .iter()
        .map(|a| a.attribute.as_str())
        .collect();
    assert_eq!(order, ["alpha", "mid", "zeta"]);
    assert!(read.attributes.iter().all(|a| a.updated_at.is_some()));

    let filtered = app
        .attributes()
        .get_attributes(authed(
            &keys.sk_live,
            pb::GetAttributesRequest {
                distinct_id: "u".into(),
                attributes: vec!["zeta".into()],
                include_archived: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(filtered.attributes.len(), 1);
    assert_eq!(filtered.attributes[0].attribute, "zeta");
    app.stop().await;
}

async fn set_attributes_stores_every_value_as_normalized(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    define(&app, "seats", &keys.sk_live, AttributeType::Number, None).await;
    define(
        &app,
        "persona",
        &keys.sk_live,
        AttributeType::SingleChoice,
        Some(single_choice(&["teacher", "student"])),
    )
    .await;
    let response = app
        .attributes()
        .set_attributes(authed(
            &keys.sk_live,
            pb::SetAttributesRequest {
                distinct_id: "u".into(),
                values: HashMap::from([
                    ("seats".to_owned(), s(" 12 ")),
                    ("persona".to_owned(), s("Teacher")),
                ]),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.values["seats"], n(12.0));
    assert_eq!(response.values["persona"], s("teacher"));
    assert_eq!(
        get(&app, &keys.sk_live, "u")
            .await
            .unwrap()
            .attributes
            .len(),
        2
    );
    app.stop().await;
}

async fn set_attributes_is_all_or_nothing_with_one_violation_per_failing_value(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    define(&app, "seats", &keys.sk_live, AttributeType::Number, None).await;
    define(&app, "name", &keys.sk_live, AttributeType::Text, None).await;
    define(&app, "zzz_old", &keys.sk_live, AttributeType::Text, None).await;
    archive(&app, &keys.sk_live, "zzz_old").await;

    let result = app
        .attributes()
        .set_attributes(authed(
            &keys.sk_live,
            pb::SetAttributesRequest {
                distinct_id: "new-person".into(),
                values: HashMap::from([
                    ("name".to_owned(), s("Ada")),
                    ("seats".to_owned(), s("many")),
                    ("undeclared".to_owned(), s("x")),
                    ("zzz_old".to_owned(), s("x")),
                ]),
                ..Default::default()
            },
        ))
        .await;
    // The first failure by key order is "seats".
    let status = assert_refused(result, Code::InvalidArgument, "attribute_value_invalid");
    let violations = status
        .get_details_bad_request()
        .expect("a BadRequest")
        .field_violations;
    let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        ["values.seats", "values.undeclared", "values.zzz_old"]
    );
    assert!(
        violations[0]
            .description
            .starts_with("attribute_value_invalid")
    );
    assert!(
        violations[1]
            .description
            .starts_with("attribute_not_defined")
    );
    assert!(violations[2].description.starts_with("attribute_archived"));

    // Nothing written, and the person was not created.
    assert_refused(
        get(&app, &keys.sk_live, "new-person").await,
        Code::NotFound,
        "person_not_found",
    );
    app.stop().await;
}

async fn clear_reports_whether_a_value_was_set_and_works_on_archived_attributes(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    define(&app, "name", &keys.sk_live, AttributeType::Text, None).await;
    define(&app, "other", &keys.sk_live, AttributeType::Text, None).await;
    set(&app, &keys.sk_live, "u", "name", s("Ada"))
        .await
        .unwrap();
    let clear = |attribute: &str| {
        let mut client = app.attributes();
        let request = authed(
            &keys.sk_live,
            pb::ClearAttributeRequest {
                distinct_id: "u".into(),
                attribute: attribute.into(),
                ..Default::default()
            },
        );
        async move { client.clear_attribute(request).await.unwrap().into_inner() }
    };
    assert!(!clear("other").await.cleared, "no value was set");

    archive(&app, &keys.sk_live, "name").await;
    let cleared = clear("name").await;
    assert!(cleared.cleared, "archived values can still be removed");
    assert_eq!(cleared.attribute, "name");
    assert!(!clear("name").await.cleared);
    app.stop().await;
}

async fn a_person_whose_values_were_cleared_still_exists(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    define(&app, "name", &keys.sk_live, AttributeType::Text, None).await;
    set(&app, &keys.sk_live, "u", "name", s("Ada"))
        .await
        .unwrap();
    app.attributes()
        .clear_attribute(authed(
            &keys.sk_live,
            pb::ClearAttributeRequest {
                distinct_id: "u".into(),
                attribute: "name".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let read = get(&app, &keys.sk_live, "u").await.expect("still a person");
    assert!(read.attributes.is_empty());
    app.stop().await;
}

async fn archived_values_are_hidden_unless_asked_for(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    define(&app, "name", &keys.sk_live, AttributeType::Text, None).await;
    set(&app, &keys.sk_live, "u", "name", s("Ada"))
        .await
        .unwrap();
    archive(&app, &keys.sk_live, "name").await;
    assert!(
        get(&app, &keys.sk_live, "u")
            .await
            .unwrap()
            .attributes
            .is_empty()
    );
    let with_archived = app
        .attributes()
        .get_attributes(authed(
            &keys.sk_live,
            pb::GetAttributesRequest {
                distinct_id: "u".into(),
                attributes: vec![],
                include_archived: true,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(with_archived.attributes[0].value, Some(s("Ada")));
    app.stop().await;
}

async fn fifty_concurrent_first_writes_get_one_person_id(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    define(&app, "seats", &keys.sk_live, AttributeType::Number, None).await;
    let calls = (0..50).map(|i| {
        let mut client = app.attributes();
        let request = authed(
            &keys.sk_live,
            pb::SetAttributeRequest {
                distinct_id: "brand-new".into(),
                attribute: "seats".into(),
                value: Some(n(f64::from(i))),
                ..Default::default()
            },
        );
        tokio::spawn(async move { client.set_attribute(request).await })
    });
    let mut ids = HashSet::new();
    for call in calls.collect::<Vec<_>>() {
        ids.insert(
            call.await
                .unwrap()
                .expect("every write succeeds")
                .into_inner()
                .person_id,
        );
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    app.stop().await;
}
