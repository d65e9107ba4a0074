//! Key scope (CONTRACT.md section 4): public keys, workspace isolation, test
//! mode, and how soon revocations, archives and settings take effect, also
//! across two replicas sharing one database.

use std::time::Duration;

use tonic::Code;
use vevee_attributes::proto::v1::{self as pb, AttributeType};

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{archive, assert_refused, authed, define, eventually, get, s, set, spawn_app},
};

backend_tests! {
    a_public_key_writes_only_after_client_writes_are_turned_on,
    a_public_key_cannot_call_reads_or_admin_rpcs,
    another_workspaces_key_sees_nothing_of_this_one,
    test_mode_keys_do_not_see_live_values,
    a_revoked_key_is_refused_within_the_cache_bound_on_every_replica,
    an_archived_attribute_is_refused_within_the_cache_bound_on_every_replica,
    a_new_definition_is_usable_at_once_on_its_replica,
}

/// The staleness bound these tests run with (`--cache-ttl`), and how long
/// they wait for a change: the bound plus slack for a busy machine.
const TTL: &str = "300ms";
const WITHIN: Duration = Duration::from_millis(1500);

async fn a_public_key_writes_only_after_client_writes_are_turned_on(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    define(&app, "name", &keys.sk_live, AttributeType::Text, None).await;
    assert_refused(
        set(&app, &keys.pk_live, "u", "name", s("Ada")).await,
        Code::PermissionDenied,
        "client_attribute_writes_disabled",
    );
    let stored = app
        .settings()
        .update_workspace_settings(authed(
            &keys.sk_live,
            pb::UpdateWorkspaceSettingsRequest {
                settings: Some(pb::WorkspaceSettings {
                    client_attribute_writes: true,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["client_attribute_writes".into()],
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(stored.client_attribute_writes);
    set(&app, &keys.pk_live, "u", "name", s("Ada"))
        .await
        .expect("public writes are on");

    // And off again (an empty mask means every field).
    app.settings()
        .update_workspace_settings(authed(
            &keys.sk_live,
            pb::UpdateWorkspaceSettingsRequest {
                settings: Some(pb::WorkspaceSettings {
                    client_attribute_writes: false,
                    ..Default::default()
                }),
                update_mask: None,
            },
        ))
        .await
        .unwrap();
    let read = app
        .settings()
        .get_workspace_settings(authed(&keys.sk_live, pb::GetWorkspaceSettingsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(!read.client_attribute_writes);
    assert_refused(
        set(&app, &keys.pk_live, "u", "name", s("Ada")).await,
        Code::PermissionDenied,
        "client_attribute_writes_disabled",
    );
    app.stop().await;
}

async fn a_public_key_cannot_call_reads_or_admin_rpcs(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    assert_refused(
        get(&app, &keys.pk_live, "u").await,
        Code::PermissionDenied,
        "secret_key_required",
    );
    assert_refused(
        app.definitions()
            .list_attribute_definitions(authed(
                &keys.pk_test,
                pb::ListAttributeDefinitionsRequest::default(),
            ))
            .await,
        Code::PermissionDenied,
        "secret_key_required",
    );
    assert_refused(
        app.settings()
            .update_workspace_settings(authed(
                &keys.pk_live,
                pb::UpdateWorkspaceSettingsRequest {
                    settings: Some(pb::WorkspaceSettings {
                        client_attribute_writes: true,
                        ..Default::default()
                    }),
                    update_mask: None,
                },
            ))
            .await,
        Code::PermissionDenied,
        "secret_key_required",
    );
    app.stop().await;
}

async fn another_workspaces_key_sees_nothing_of_this_one(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let a = app.workspace().await;
    let b = app.workspace().await;
    define(&app, "name", &a.sk_live, AttributeType::Text, None).await;
    set(&app, &a.sk_live, "shared-id", "name", s("A's"))
        .await
        .unwrap();

    // B can't read A's person, write A's attribute, or see A's definition.
    assert_refused(
        get(&app, &b.sk_live, "shared-id").await,
        Code::NotFound,
        "person_not_found",
    );
    assert_refused(
        set(&app, &b.sk_live, "shared-id", "name", s("B's")).await,
        Code::InvalidArgument,
        "attribute_not_defined",
    );
    assert_refused(
        app.definitions()
            .get_attribute_definition(authed(
                &b.sk_live,
                pb::GetAttributeDefinitionRequest { key: "name".into() },
            ))
            .await,
        Code::NotFound,
        "attribute_definition_not_found",
    );
    let listed = app
        .definitions()
        .list_attribute_definitions(authed(
            &b.sk_live,
            pb::ListAttributeDefinitionsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.definitions.is_empty());

    // B declaring the same key and writing the same distinct_id leaves A alone.
    define(&app, "name", &b.sk_live, AttributeType::Text, None).await;
    let theirs = set(&app, &b.sk_live, "shared-id", "name", s("B's"))
        .await
        .unwrap();
    let ours = get(&app, &a.sk_live, "shared-id").await.unwrap();
    assert_ne!(theirs.person_id, ours.person_id);
    assert_eq!(ours.attributes[0].value, Some(s("A's")));
    app.stop().await;
}

async fn test_mode_keys_do_not_see_live_values(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    define(&app, "name", &keys.sk_live, AttributeType::Text, None).await;
    let live = set(&app, &keys.sk_live, "u", "name", s("live"))
        .await
        .unwrap();
    assert_refused(
        get(&app, &keys.sk_test, "u").await,
        Code::NotFound,
        "person_not_found",
    );
    // Definitions are shared; persons are not.
    let test = set(&app, &keys.sk_test, "u", "name", s("test"))
        .await
        .unwrap();
    assert_ne!(live.person_id, test.person_id);
    let read_live = get(&app, &keys.sk_live, "u").await.unwrap();
    assert_eq!(read_live.attributes[0].value, Some(s("live")));
    app.stop().await;
}

async fn a_revoked_key_is_refused_within_the_cache_bound_on_every_replica(db: &TestDb) {
    let one = spawn_app(&db.url, &["--cache-ttl", TTL]).await;
    let two = spawn_app(&db.url, &["--cache-ttl", TTL]).await;
    let keys = one.workspace().await;
    define(&one, "name", &keys.sk_live, AttributeType::Text, None).await;
    // Both replicas have the key cached as valid.
    set(&one, &keys.sk_live, "u", "name", s("x")).await.unwrap();
    set(&two, &keys.sk_live, "u", "name", s("x")).await.unwrap();

    let record = one
        .store
        .list_api_keys(keys.workspace)
        .await
        .unwrap()
        .into_iter()
        .find(|k| keys.sk_live.starts_with(&k.display_prefix))
        .expect("the key's record");
    assert!(
        one.store
            .revoke_api_key(keys.workspace, record.id)
            .await
            .unwrap()
    );

    for app in [&one, &two] {
        let refused = eventually(WITHIN, || async {
            set(app, &keys.sk_live, "u", "name", s("x"))
                .await
                .is_err_and(|e| e.code() == Code::Unauthenticated)
        })
        .await;
        assert!(refused, "a revoked key is refused within the bound");
    }
    assert_refused(
        set(&two, &keys.sk_live, "u", "name", s("x")).await,
        Code::Unauthenticated,
        "invalid_api_key",
    );
    one.stop().await;
    two.stop().await;
}

async fn an_archived_attribute_is_refused_within_the_cache_bound_on_every_replica(db: &TestDb) {
    let one = spawn_app(&db.url, &["--cache-ttl", TTL]).await;
    let two = spawn_app(&db.url, &["--cache-ttl", TTL]).await;
    let keys = one.workspace().await;
    define(&one, "name", &keys.sk_live, AttributeType::Text, None).await;
    set(&two, &keys.sk_live, "u", "name", s("x")).await.unwrap();

    archive(&one, &keys.sk_live, "name").await;
    // At once on the replica that archived it.
    assert_refused(
        set(&one, &keys.sk_live, "u", "name", s("x")).await,
        Code::FailedPrecondition,
        "attribute_archived",
    );
    // Within the bound on the other.
    let refused = eventually(WITHIN, || async {
        set(&two, &keys.sk_live, "u", "name", s("x"))
            .await
            .is_err_and(|e| e.code() == Code::FailedPrecondition)
    })
    .await;
    assert!(refused, "the other replica refuses within the bound");
    one.stop().await;
    two.stop().await;
}

async fn a_new_definition_is_usable_at_once_on_its_replica(db: &TestDb) {
    let app = spawn_app(&db.url, &["--cache-ttl", "1h"]).await;
    let keys = app.workspace().await;
    // Cache "not declared" first; creating must not be hidden by it.
    assert_refused(
        set(&app, &keys.sk_live, "u", "late", s("x")).await,
        Code::InvalidArgument,
        "attribute_not_defined",
    );
    define(&app, "late", &keys.sk_live, AttributeType::Text, None).await;
    set(&app, &keys.sk_live, "u", "late", s("x"))
        .await
        .expect("usable at once");
    app.stop().await;
}
