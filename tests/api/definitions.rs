//! AttributeDefinitionsService beyond its errors: defaults, updates that
//! leave unset fields alone, and pagination.

use std::collections::HashSet;

use vevee_attributes::proto::v1::{self as pb, AttributeType};

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{archive, authed, define, s, set, single_choice, spawn_app},
};

backend_tests! {
    a_definition_comes_back_with_every_default_filled_in,
    an_update_changes_only_the_fields_it_sets_and_keeps_stored_values,
    pages_visit_every_definition_once_in_key_order,
}

async fn a_definition_comes_back_with_every_default_filled_in(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let created = define(&app, "bio", &keys.sk_live, AttributeType::Text, None).await;
    assert_eq!(created.r#type(), AttributeType::Text);
    let Some(pb::attribute_config::Config::Text(text)) = created.config.and_then(|c| c.config)
    else {
        panic!("a text config");
    };
    assert_eq!(text.max_length, Some(255));
    assert!(!text.truncate);
    assert!(!created.archived);
    assert!(created.created_at.is_some() && created.updated_at.is_some());
    app.stop().await;
}

async fn an_update_changes_only_the_fields_it_sets_and_keeps_stored_values(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let mut client = app.definitions();
    client
        .create_attribute_definition(authed(
            &keys.sk_live,
            pb::CreateAttributeDefinitionRequest {
                key: "persona".into(),
                r#type: AttributeType::SingleChoice.into(),
                config: Some(single_choice(&["teacher", "student"])),
                display_name: "Persona".into(),
                description: "Who they are".into(),
                client_writable: None,
            },
        ))
        .await
        .unwrap();
    set(&app, &keys.sk_live, "u", "persona", s("student"))
        .await
        .unwrap();

    let renamed = client
        .update_attribute_definition(authed(
            &keys.sk_live,
            pb::UpdateAttributeDefinitionRequest {
                key: "persona".into(),
                config: None,
                display_name: Some("Role".into()),
                description: None,
                client_writable: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.display_name, "Role");
    assert_eq!(renamed.description, "Who they are", "unset fields stay");
    assert_eq!(renamed.config, Some(single_choice(&["teacher", "student"])));

    let narrowed = client
        .update_attribute_definition(authed(
            &keys.sk_live,
            pb::UpdateAttributeDefinitionRequest {
                key: "persona".into(),
                config: Some(single_choice(&["teacher"])),
                display_name: None,
                description: Some(String::new()),
                client_writable: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(narrowed.config, Some(single_choice(&["teacher"])));
    assert_eq!(narrowed.description, "", "an empty string clears");
    assert_eq!(narrowed.display_name, "Role");

    // Config changes do not rewrite stored values.
    let read = crate::helpers::get(&app, &keys.sk_live, "u").await.unwrap();
    assert_eq!(read.attributes[0].value, Some(s("student")));
    app.stop().await;
}

async fn pages_visit_every_definition_once_in_key_order(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let names: Vec<String> = (0..23)
        .map(|i| format!("k{}_{}", i % 7, i))
        .chain(["a".into(), "z9".into(), "k_".into()])
        .collect();
    for name in &names {
        define(&app, name, &keys.sk_live, AttributeType::Boolean, None).await;
    }
    archive(&app, &keys.sk_live, "a").await;

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .definitions()
            .list_attribute_definitions(authed(
                &keys.sk_live,
                pb::ListAttributeDefinitionsRequest {
                    include_archived: false,
                    page_size: 4,
                    page_token: token,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.definitions.len() <= 4);
        seen.extend(page.definitions.into_iter().map(|d| d.key));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected: Vec<String> = names.iter().filter(|n| *n != "a").cloned().collect();
    expected.sort();
    assert_eq!(seen, expected, "each unarchived key once, in byte order");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());
    app.stop().await;
}
