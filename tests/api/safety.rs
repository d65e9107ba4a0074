//! Browser writes, made safe (CONTRACT.md section 11), over gRPC and REST
//! on both backends: per-attribute client writes, allowed origins, identity
//! verification and rate limits for public keys, and secret keys untouched
//! by all four; CORS preflights answered only for allowed origins; settings
//! changed on one replica enforced on another within the cache bound.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt;
use vevee_attributes::proto::v1::{self as pb, AttributeType};

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{
        Keys, TestApp, assert_refused, authed, error_attribute, eventually, get, s, set, spawn_app,
    },
    http::{Answer, Rest},
};

backend_tests! {
    a_public_key_cannot_write_an_attribute_that_is_not_client_writable,
    a_public_key_over_its_rate_is_rate_limited_with_retry_info,
    one_person_written_too_often_is_rate_limited_but_others_are_not,
    identity_verification_takes_signatures_of_active_secrets_only,
    public_keys_are_refused_from_origins_outside_allowed_origins,
    preflights_are_answered_only_for_origins_some_workspace_allows,
    settings_changed_on_one_replica_are_enforced_on_another_within_the_cache_bound,
}

/// The staleness bound (`--cache-ttl`) of the tests of how soon changes take
/// effect, and how long they wait: the bound plus slack for a busy machine.
const TTL: &str = "300ms";
const WITHIN: Duration = Duration::from_millis(1500);

/// A browser's CORS preflight of a SetAttribute from `origin`, on `path`
/// (REST's route or gRPC-Web's method).
async fn preflight(rest: &Rest, path: &str, origin: &str) -> Answer {
    rest.send(
        Method::OPTIONS,
        path,
        None,
        None,
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type, x-vevee-identity",
            ),
        ],
    )
    .await
}

/// The `Access-Control-Allow-Origin` a preflight from `origin` gets.
async fn preflight_allows(rest: &Rest, origin: &str) -> Option<String> {
    let answer = preflight(rest, "/api/v1/attributes/values", origin).await;
    assert_eq!(answer.status, 204, "{}: {}", rest.protocol, answer.text);
    answer
        .headers
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// hex(HMAC-SHA256(secret, distinct_id)), as a customer's backend computes it.
fn sign(secret: &str, distinct_id: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(distinct_id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SetAttribute of `name` with `key` and extra metadata.
async fn set_with(
    app: &TestApp,
    key: &str,
    distinct_id: &str,
    metadata: &[(&'static str, &str)],
) -> Result<pb::SetAttributeResponse, tonic::Status> {
    let mut request = authed(
        key,
        pb::SetAttributeRequest {
            distinct_id: distinct_id.into(),
            attribute: "name".into(),
            value: Some(s("Ada")),
            ..Default::default()
        },
    );
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    app.attributes()
        .set_attribute(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Changes the settings named by `paths` to `settings`, over gRPC.
async fn update_settings(
    app: &TestApp,
    keys: &Keys,
    settings: pb::WorkspaceSettings,
    paths: &[&str],
) {
    app.settings()
        .update_workspace_settings(authed(
            &keys.sk_live,
            pb::UpdateWorkspaceSettingsRequest {
                settings: Some(settings),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
            },
        ))
        .await
        .expect("settings updated");
}

/// Turns `client_attribute_writes` on, with the secret key.
pub(crate) async fn allow_client_writes(app: &TestApp, keys: &Keys) {
    app.settings()
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
        .expect("client writes on");
}

/// Declares a text attribute `key` with `client_writable` as given.
async fn define_text(app: &TestApp, keys: &Keys, key: &str, client_writable: Option<bool>) {
    app.definitions()
        .create_attribute_definition(authed(
            &keys.sk_live,
            pb::CreateAttributeDefinitionRequest {
                key: key.into(),
                r#type: AttributeType::Text.into(),
                config: None,
                display_name: String::new(),
                description: String::new(),
                client_writable,
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("define {key}: {e:?}"));
}

/// SetAttributes of `values` with `key`, and `headers` as metadata.
async fn set_many(
    app: &TestApp,
    key: &str,
    distinct_id: &str,
    values: &[(&str, &str)],
) -> Result<pb::SetAttributesResponse, tonic::Status> {
    let request = pb::SetAttributesRequest {
        distinct_id: distinct_id.into(),
        values: values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), s(v)))
            .collect(),
        ..Default::default()
    };
    app.attributes()
        .set_attributes(authed(key, request))
        .await
        .map(tonic::Response::into_inner)
}

/// ClearAttribute with `key`.
async fn clear(
    app: &TestApp,
    key: &str,
    distinct_id: &str,
    attribute: &str,
) -> Result<pb::ClearAttributeResponse, tonic::Status> {
    app.attributes()
        .clear_attribute(authed(
            key,
            pb::ClearAttributeRequest {
                distinct_id: distinct_id.into(),
                attribute: attribute.into(),
                ..Default::default()
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn a_public_key_cannot_write_an_attribute_that_is_not_client_writable(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    allow_client_writes(&app, &keys).await;
    define_text(&app, &keys, "name", None).await;
    define_text(&app, &keys, "plan", Some(false)).await;

    // gRPC: SetAttribute, SetAttributes (a violation per value), ClearAttribute.
    let refused = assert_refused(
        set(&app, &keys.pk_live, "u", "plan", s("gold")).await,
        Code::PermissionDenied,
        "attribute_not_client_writable",
    );
    assert_eq!(error_attribute(&refused).as_deref(), Some("plan"));
    let batch = assert_refused(
        set_many(
            &app,
            &keys.pk_live,
            "u",
            &[("name", "Ada"), ("plan", "gold")],
        )
        .await,
        Code::PermissionDenied,
        "attribute_not_client_writable",
    );
    let violations = batch
        .get_details_bad_request()
        .expect("BadRequest")
        .field_violations;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].field, "values.plan");
    assert!(
        violations[0]
            .description
            .starts_with("attribute_not_client_writable")
    );
    // All or nothing: not even the writable value, not even the person.
    assert_refused(
        get(&app, &keys.sk_live, "u").await,
        Code::NotFound,
        "person_not_found",
    );
    assert_refused(
        clear(&app, &keys.pk_live, "u", "plan").await,
        Code::PermissionDenied,
        "attribute_not_client_writable",
    );
    // UpdateAttributes: a violation per update, nothing applied.
    let update = |key: &str, attribute: &str| {
        authed(
            key,
            pb::UpdateAttributesRequest {
                distinct_id: "u".into(),
                updates: vec![
                    pb::AttributeUpdate {
                        attribute: "name".into(),
                        operation: Some(pb::attribute_update::Operation::Set(s("Ada"))),
                        if_etag: None,
                    },
                    pb::AttributeUpdate {
                        attribute: attribute.into(),
                        operation: Some(pb::attribute_update::Operation::Set(s("gold"))),
                        if_etag: None,
                    },
                ],
                ..Default::default()
            },
        )
    };
    let updated = assert_refused(
        app.attributes()
            .update_attributes(update(&keys.pk_live, "plan"))
            .await,
        Code::PermissionDenied,
        "attribute_not_client_writable",
    );
    let violations = updated
        .get_details_bad_request()
        .expect("BadRequest")
        .field_violations;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].field, "updates[1]");
    assert_refused(
        get(&app, &keys.sk_live, "u").await,
        Code::NotFound,
        "person_not_found",
    );

    // Secret keys write it as ever; public keys still write the others.
    set(&app, &keys.sk_live, "u", "plan", s("gold"))
        .await
        .unwrap();
    set(&app, &keys.pk_live, "u", "name", s("Ada"))
        .await
        .unwrap();
    assert!(
        clear(&app, &keys.sk_live, "u", "plan")
            .await
            .unwrap()
            .cleared
    );

    // REST: the same refusals with 403, and the definition shows the flag.
    let [h1, h2] = Rest::both(&app);
    let definition = h1
        .ok(
            Method::GET,
            "/api/v1/attributes/definitions/plan",
            &keys.sk_live,
            json!({}),
        )
        .await;
    assert_eq!(definition["clientWritable"], false);
    for rest in [&h1, &h2] {
        let answer = rest
            .call(
                Method::POST,
                "/api/v1/attributes/values",
                &keys.pk_live,
                json!({"distinctId": "u", "attribute": "plan", "value": "gold"}),
            )
            .await;
        answer.refused(403, Code::PermissionDenied, "attribute_not_client_writable");
        let info = answer.detail("type.googleapis.com/google.rpc.ErrorInfo");
        assert_eq!(info["metadata"]["attribute"], "plan");
        let answer = rest
            .call(
                Method::POST,
                "/api/v1/attributes/values:batchSet",
                &keys.pk_live,
                json!({"distinctId": "u", "values": {"name": "Bo", "plan": "gold"}}),
            )
            .await;
        answer.refused(403, Code::PermissionDenied, "attribute_not_client_writable");
        let bad = answer.detail("type.googleapis.com/google.rpc.BadRequest");
        assert_eq!(bad["fieldViolations"][0]["field"], "values.plan");
        rest.call(
            Method::DELETE,
            "/api/v1/persons/u/attributes/plan",
            &keys.pk_live,
            json!({}),
        )
        .await
        .refused(403, Code::PermissionDenied, "attribute_not_client_writable");
    }

    // Made client-writable again (PATCH), it takes public writes at once here.
    let patched = h1
        .ok(
            Method::PATCH,
            "/api/v1/attributes/definitions/plan",
            &keys.sk_live,
            json!({"clientWritable": true}),
        )
        .await;
    assert_eq!(patched["clientWritable"], true);
    set(&app, &keys.pk_live, "u", "plan", s("free"))
        .await
        .unwrap();
    app.stop().await;
}

/// Asserts a `rate_limited` status with a RetryInfo of at least `min`.
fn assert_rate_limited<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    min: std::time::Duration,
) {
    let status = assert_refused(result, Code::ResourceExhausted, "rate_limited");
    let retry = status.get_details_retry_info().expect("RetryInfo");
    let delay = retry.retry_delay.expect("a retry delay");
    assert!(delay >= min, "{delay:?}");
}

async fn a_public_key_over_its_rate_is_rate_limited_with_retry_info(db: &TestDb) {
    // One token a minute: the refill never matters within the test.
    let app = spawn_app(
        &db.url,
        &[
            "--public-key-rate",
            "1/min,burst=3",
            "--public-key-rate-per-person",
            "off",
        ],
    )
    .await;
    let keys = app.workspace().await;
    allow_client_writes(&app, &keys).await;
    define_text(&app, &keys, "name", None).await;
    for i in 0..3 {
        set(&app, &keys.pk_live, &format!("u{i}"), "name", s("Ada"))
            .await
            .unwrap_or_else(|e| panic!("request {i} of the burst: {e:?}"));
    }
    assert_rate_limited(
        set(&app, &keys.pk_live, "u9", "name", s("Ada")).await,
        std::time::Duration::from_secs(50),
    );
    // REST: 429 with Retry-After (whole seconds, rounded up) and the RetryInfo.
    let [h1, h2] = Rest::both(&app);
    for rest in [&h1, &h2] {
        let answer = rest
            .call(
                Method::POST,
                "/api/v1/attributes/values",
                &keys.pk_live,
                json!({"distinctId": "u", "attribute": "name", "value": "Ada"}),
            )
            .await;
        answer.refused(429, Code::ResourceExhausted, "rate_limited");
        let after: u64 = answer.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((50..=60).contains(&after), "Retry-After {after}");
        answer.detail("type.googleapis.com/google.rpc.RetryInfo");
    }
    set(&app, &keys.pk_test, "u", "name", s("Ada"))
        .await
        .expect("pk_test has its own bucket");
    // Secret keys are not limited.
    for i in 0..20 {
        set(&app, &keys.sk_live, &format!("s{i}"), "name", s("Ada"))
            .await
            .unwrap();
    }
    app.stop().await;
}

async fn one_person_written_too_often_is_rate_limited_but_others_are_not(db: &TestDb) {
    let app = spawn_app(
        &db.url,
        &[
            "--public-key-rate",
            "off",
            "--public-key-rate-per-person",
            "1/min,burst=2",
        ],
    )
    .await;
    let keys = app.workspace().await;
    allow_client_writes(&app, &keys).await;
    define_text(&app, &keys, "name", None).await;
    set(&app, &keys.pk_live, "ada", "name", s("Ada"))
        .await
        .unwrap();
    set_many(&app, &keys.pk_live, "ada", &[("name", "Ada")])
        .await
        .unwrap();
    assert_rate_limited(
        clear(&app, &keys.pk_live, "ada", "name").await,
        std::time::Duration::from_secs(50),
    );
    let [h1, _] = Rest::both(&app);
    h1.call(
        Method::POST,
        "/api/v1/attributes/values:batchSet",
        &keys.pk_live,
        json!({"distinctId": "ada", "values": {"name": "Ada"}}),
    )
    .await
    .refused(429, Code::ResourceExhausted, "rate_limited");
    // Another person, the same person in test mode, and secret keys pass.
    set(&app, &keys.pk_live, "bo", "name", s("Bo"))
        .await
        .unwrap();
    set(&app, &keys.pk_test, "ada", "name", s("Ada"))
        .await
        .unwrap();
    for _ in 0..10 {
        set(&app, &keys.sk_live, "ada", "name", s("Ada"))
            .await
            .unwrap();
    }
    app.stop().await;
}

async fn identity_verification_takes_signatures_of_active_secrets_only(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    allow_client_writes(&app, &keys).await;
    define_text(&app, &keys, "name", None).await;
    let mut settings = app.settings();
    let first = settings
        .create_identity_secret(authed(&keys.sk_live, pb::CreateIdentitySecretRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(first.secret.starts_with("vis_"), "{first:?}");
    // Off by default: no signature needed.
    set_with(&app, &keys.pk_live, "ada", &[])
        .await
        .expect("verification is off");
    update_settings(
        &app,
        &keys,
        pb::WorkspaceSettings {
            identity_verification: pb::IdentityVerification::Required.into(),
            ..Default::default()
        },
        &["identity_verification"],
    )
    .await;

    let good = sign(&first.secret, "ada");
    set_with(&app, &keys.pk_live, "ada", &[("x-vevee-identity", &good)])
        .await
        .expect("signed");
    for (distinct_id, metadata) in [
        ("ada", vec![]),
        ("bo", vec![("x-vevee-identity", good.as_str())]),
        ("ada", vec![("x-vevee-identity", "not-hex")]),
    ] {
        assert_refused(
            set_with(&app, &keys.pk_live, distinct_id, &metadata).await,
            Code::PermissionDenied,
            "identity_verification_failed",
        );
    }
    assert_refused(
        set_many(&app, &keys.pk_live, "ada", &[("name", "Ada")]).await,
        Code::PermissionDenied,
        "identity_verification_failed",
    );
    assert_refused(
        clear(&app, &keys.pk_live, "ada", "name").await,
        Code::PermissionDenied,
        "identity_verification_failed",
    );
    // Secret keys never need one.
    set(&app, &keys.sk_live, "bo", "name", s("Bo"))
        .await
        .unwrap();

    // Rotation: two active secrets both verify; a third is refused.
    let second = settings
        .create_identity_secret(authed(&keys.sk_live, pb::CreateIdentitySecretRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_refused(
        settings
            .create_identity_secret(authed(&keys.sk_live, pb::CreateIdentitySecretRequest {}))
            .await,
        Code::FailedPrecondition,
        "too_many_identity_secrets",
    );
    let newer = sign(&second.secret, "ada");
    set_with(&app, &keys.pk_live, "ada", &[("x-vevee-identity", &good)])
        .await
        .expect("old secret");
    set_with(&app, &keys.pk_live, "ada", &[("x-vevee-identity", &newer)])
        .await
        .expect("new secret");
    let revoked = settings
        .revoke_identity_secret(authed(
            &keys.sk_live,
            pb::RevokeIdentitySecretRequest {
                id: first.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked_at.is_some() && revoked.secret.is_empty());
    assert_refused(
        set_with(&app, &keys.pk_live, "ada", &[("x-vevee-identity", &good)]).await,
        Code::PermissionDenied,
        "identity_verification_failed",
    );
    set_with(&app, &keys.pk_live, "ada", &[("x-vevee-identity", &newer)])
        .await
        .expect("only the new");
    assert_refused(
        settings
            .revoke_identity_secret(authed(
                &keys.sk_live,
                pb::RevokeIdentitySecretRequest { id: "nope".into() },
            ))
            .await,
        Code::NotFound,
        "identity_secret_not_found",
    );

    // REST: the header of that name, 403 otherwise; the list hides secrets.
    let [h1, h2] = Rest::both(&app);
    let listed = h1
        .ok(
            Method::GET,
            "/api/v1/settings/identitySecrets",
            &keys.sk_live,
            json!({}),
        )
        .await;
    assert_eq!(listed["identitySecrets"].as_array().unwrap().len(), 2);
    assert_eq!(listed["identitySecrets"][1]["secret"], "");
    // The secrets' own refusals, with their HTTP statuses: a third active
    // secret (one was revoked: a second may be created), and revoking one
    // that doesn't exist.
    let created = h1
        .ok(
            Method::POST,
            "/api/v1/settings/identitySecrets",
            &keys.sk_live,
            json!({}),
        )
        .await;
    assert!(created["secret"].as_str().unwrap().starts_with("vis_"));
    h1.call(
        Method::POST,
        "/api/v1/settings/identitySecrets",
        &keys.sk_live,
        json!({}),
    )
    .await
    .refused(400, Code::FailedPrecondition, "too_many_identity_secrets");
    h2.call(
        Method::POST,
        "/api/v1/settings/identitySecrets/nope:revoke",
        &keys.sk_live,
        json!({}),
    )
    .await
    .refused(404, Code::NotFound, "identity_secret_not_found");
    for rest in [&h1, &h2] {
        let body = json!({"distinctId": "ada", "attribute": "name", "value": "Ada"}).to_string();
        let ok = rest
            .send(
                Method::POST,
                "/api/v1/attributes/values",
                Some(&keys.pk_live),
                Some(&body),
                &[("x-vevee-identity", &newer)],
            )
            .await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        rest.send(
            Method::POST,
            "/api/v1/attributes/values",
            Some(&keys.pk_live),
            Some(&body),
            &[("x-vevee-identity", &good)],
        )
        .await
        .refused(403, Code::PermissionDenied, "identity_verification_failed");
    }
    app.stop().await;
}

async fn public_keys_are_refused_from_origins_outside_allowed_origins(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    allow_client_writes(&app, &keys).await;
    define_text(&app, &keys, "name", None).await;
    // Empty (the default): any origin, and none.
    set_with(
        &app,
        &keys.pk_live,
        "u",
        &[("origin", "https://anywhere.test")],
    )
    .await
    .unwrap();
    set_with(&app, &keys.pk_live, "u", &[]).await.unwrap();

    let [h1, h2] = Rest::both(&app);
    let stored = h1
        .ok(
            Method::PATCH,
            "/api/v1/settings?updateMask=allowedOrigins",
            &keys.sk_live,
            json!({"allowedOrigins": ["https://App.example.com", "https://*.shop.test"]}),
        )
        .await;
    assert_eq!(
        stored["allowedOrigins"],
        json!(["https://app.example.com", "https://*.shop.test"])
    );
    h1.call(
        Method::PATCH,
        "/api/v1/settings?updateMask=allowedOrigins",
        &keys.sk_live,
        json!({"allowedOrigins": ["example.com/path"]}),
    )
    .await
    .refused(400, Code::InvalidArgument, "invalid_argument");

    for origin in [
        "https://app.example.com",
        "https://a.shop.test",
        "https://a.b.shop.test",
    ] {
        set_with(&app, &keys.pk_live, "u", &[("origin", origin)])
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e:?}"));
    }
    for origin in [
        "https://evil.test",
        "https://shop.test",
        "http://app.example.com",
    ] {
        assert_refused(
            set_with(&app, &keys.pk_live, "u", &[("origin", origin)]).await,
            Code::PermissionDenied,
            "origin_not_allowed",
        );
    }
    assert_refused(
        set_with(&app, &keys.pk_live, "u", &[]).await,
        Code::PermissionDenied,
        "origin_not_allowed",
    );
    // Secret keys are not restricted.
    set_with(&app, &keys.sk_live, "u", &[("origin", "https://evil.test")])
        .await
        .unwrap();
    for rest in [&h1, &h2] {
        let body = json!({"distinctId": "u", "attribute": "name", "value": "Ada"}).to_string();
        let ok = rest
            .send(
                Method::POST,
                "/api/v1/attributes/values",
                Some(&keys.pk_live),
                Some(&body),
                &[("origin", "https://x.shop.test")],
            )
            .await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        rest.send(
            Method::POST,
            "/api/v1/attributes/values",
            Some(&keys.pk_live),
            Some(&body),
            &[("origin", "https://evil.test")],
        )
        .await
        .refused(403, Code::PermissionDenied, "origin_not_allowed");
    }
    app.stop().await;
}

async fn preflights_are_answered_only_for_origins_some_workspace_allows(db: &TestDb) {
    let app = spawn_app(&db.url, &["--cache-ttl", TTL]).await;
    let keys = app.workspace().await;
    allow_client_writes(&app, &keys).await;
    define_text(&app, &keys, "name", None).await;
    let [h1, h2] = Rest::both(&app);
    let evil = "https://evil.test";
    // An empty list (the default): any origin.
    for rest in [&h1, &h2] {
        assert_eq!(preflight_allows(rest, evil).await.as_deref(), Some(evil));
    }

    // Changed on this replica: its preflights follow at once.
    update_settings(
        &app,
        &keys,
        pb::WorkspaceSettings {
            allowed_origins: vec![
                "https://app.example.com".into(),
                "https://*.shop.test".into(),
            ],
            ..Default::default()
        },
        &["allowed_origins"],
    )
    .await;
    for rest in [&h1, &h2] {
        for origin in [
            "https://app.example.com",
            "https://a.shop.test",
            "https://a.b.shop.test",
        ] {
            assert_eq!(
                preflight_allows(rest, origin).await.as_deref(),
                Some(origin),
                "{}",
                rest.protocol
            );
        }
        for origin in [evil, "https://shop.test", "http://app.example.com", "null"] {
            assert_eq!(
                preflight_allows(rest, origin).await,
                None,
                "{origin} on {}",
                rest.protocol
            );
        }
        // gRPC-Web's preflights are the same.
        let web = preflight(
            rest,
            "/vevee.attributes.v1.AttributesService/SetAttribute",
            evil,
        )
        .await;
        assert_eq!(web.status, 204);
        assert!(web.headers.get("access-control-allow-origin").is_none());
        // A request sent anyway (a preflight cached by the browser, a
        // script) meets its workspace's own check, and the page can read it.
        let body = json!({"distinctId": "u", "attribute": "name", "value": "Ada"}).to_string();
        let refused = rest
            .send(
                Method::POST,
                "/api/v1/attributes/values",
                Some(&keys.pk_live),
                Some(&body),
                &[("origin", evil)],
            )
            .await;
        refused.refused(403, Code::PermissionDenied, "origin_not_allowed");
        assert_eq!(refused.headers["access-control-allow-origin"], evil);
    }

    // Another workspace, created on the database (as the CLI does), allows
    // any origin: preflights of every origin are answered within the bound
    // (a preflight's workspace is unknown), while the first workspace's
    // requests still get its own check.
    app.workspace().await;
    let opened = eventually(WITHIN, || async {
        preflight_allows(&h1, evil).await.is_some()
    })
    .await;
    assert!(opened, "preflights follow the database within the bound");
    assert_eq!(preflight_allows(&h2, evil).await.as_deref(), Some(evil));
    assert_refused(
        set_with(&app, &keys.pk_live, "u", &[("origin", evil)]).await,
        Code::PermissionDenied,
        "origin_not_allowed",
    );
    app.stop().await;
}

async fn settings_changed_on_one_replica_are_enforced_on_another_within_the_cache_bound(
    db: &TestDb,
) {
    let one = spawn_app(&db.url, &["--cache-ttl", TTL]).await;
    let two = spawn_app(&db.url, &["--cache-ttl", TTL]).await;
    let keys = one.workspace().await;
    allow_client_writes(&one, &keys).await;
    define_text(&one, &keys, "name", None).await;
    let secret = one
        .settings()
        .create_identity_secret(authed(&keys.sk_live, pb::CreateIdentitySecretRequest {}))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let signed = sign(&secret, "u");
    let identity = ("x-vevee-identity", signed.as_str());
    let [rest_two, _] = Rest::both(&two);
    let evil = "https://evil.test";
    let allowed = "https://app.example.com";
    // Whether two refuses a public-key write, signed or not, from `origin`.
    let refused_on_two = |signature: Option<String>, origin: Option<&'static str>| {
        let two = &two;
        let key = keys.pk_live.clone();
        async move {
            let mut metadata = Vec::new();
            if let Some(signature) = &signature {
                metadata.push(("x-vevee-identity", signature.as_str()));
            }
            if let Some(origin) = origin {
                metadata.push(("origin", origin));
            }
            set_with(two, &key, "u", &metadata)
                .await
                .is_err_and(|e| e.code() == Code::PermissionDenied)
        }
    };

    // identity_verification, changed on one: not yet required on two, then required.
    set_with(&two, &keys.pk_live, "u", &[])
        .await
        .expect("verification is off");
    update_settings(
        &one,
        &keys,
        pb::WorkspaceSettings {
            identity_verification: pb::IdentityVerification::Required.into(),
            ..Default::default()
        },
        &["identity_verification"],
    )
    .await;
    assert!(
        eventually(WITHIN, || refused_on_two(None, None)).await,
        "two requires signatures within the bound"
    );
    assert_refused(
        set_with(&two, &keys.pk_live, "u", &[]).await,
        Code::PermissionDenied,
        "identity_verification_failed",
    );

    // allowed_origins: any origin on two, requests and preflights, then only the list.
    set_with(&two, &keys.pk_live, "u", &[identity, ("origin", evil)])
        .await
        .expect("any origin yet");
    assert_eq!(
        preflight_allows(&rest_two, evil).await.as_deref(),
        Some(evil)
    );
    update_settings(
        &one,
        &keys,
        pb::WorkspaceSettings {
            allowed_origins: vec!["https://*.example.com".into()],
            ..Default::default()
        },
        &["allowed_origins"],
    )
    .await;
    assert!(
        eventually(WITHIN, || refused_on_two(Some(signed.clone()), Some(evil))).await,
        "two refuses the origin within the bound"
    );
    assert_refused(
        set_with(&two, &keys.pk_live, "u", &[identity, ("origin", evil)]).await,
        Code::PermissionDenied,
        "origin_not_allowed",
    );
    assert!(
        eventually(WITHIN, || async {
            preflight_allows(&rest_two, evil).await.is_none()
        })
        .await,
        "two's preflights leave the origin out within the bound"
    );
    assert_eq!(
        preflight_allows(&rest_two, allowed).await.as_deref(),
        Some(allowed)
    );

    // client_writable, changed on one: writable on two, then not.
    set_with(&two, &keys.pk_live, "u", &[identity, ("origin", allowed)])
        .await
        .expect("signed, from an allowed origin, client-writable");
    one.definitions()
        .update_attribute_definition(authed(
            &keys.sk_live,
            pb::UpdateAttributeDefinitionRequest {
                key: "name".into(),
                config: None,
                display_name: None,
                description: None,
                client_writable: Some(false),
            },
        ))
        .await
        .expect("no longer client-writable");
    assert!(
        eventually(WITHIN, || refused_on_two(
            Some(signed.clone()),
            Some(allowed)
        ))
        .await,
        "two refuses public writes of it within the bound"
    );
    let refused = assert_refused(
        set_with(&two, &keys.pk_live, "u", &[identity, ("origin", allowed)]).await,
        Code::PermissionDenied,
        "attribute_not_client_writable",
    );
    assert_eq!(error_attribute(&refused).as_deref(), Some("name"));

    // The secret key on two: none of the three applies.
    set_with(&two, &keys.sk_live, "u", &[("origin", evil)])
        .await
        .expect("secret keys are unaffected");
    one.stop().await;
    two.stop().await;
}
