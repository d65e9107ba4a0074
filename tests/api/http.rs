//! The HTTP face (CONTRACT.md section 7) over the real server: REST routes
//! over HTTP/1.1 and h2c, JSON details, errors with their HTTP statuses and
//! grpc-gateway's body, CORS, gRPC-Web, health, and the OpenAPI document.

use reqwest::{Client, Method, StatusCode, header::HeaderMap};
use serde_json::{Value as Json, json};
use tonic::Code;

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{Keys, TestApp, spawn_app},
};

/// A REST client of one protocol.
pub(crate) struct Rest {
    base: String,
    client: Client,
    /// "HTTP/1.1" or "h2c", for failure messages.
    pub(crate) protocol: &'static str,
}

/// An answer: status, headers, the raw body and the body as JSON (Null
/// when it is not JSON).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) text: String,
    pub(crate) json: Json,
}

impl Answer {
    /// Asserts the error shape of section 7: the HTTP status, grpc-gateway's
    /// body with the gRPC code number, a message, and an ErrorInfo with
    /// `reason` in the service's domain.
    #[track_caller]
    pub(crate) fn refused(&self, status: u16, code: Code, reason: &str) -> &Self {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(self.json["code"], code as i32, "{}", self.text);
        assert!(
            !self.json["message"].as_str().unwrap_or_default().is_empty(),
            "{}",
            self.text
        );
        let info = self.detail("type.googleapis.com/google.rpc.ErrorInfo");
        assert_eq!(info["reason"], reason, "{}", self.text);
        assert_eq!(info["domain"], "attributes.vevee.dev", "{}", self.text);
        assert_eq!(
            self.headers["content-type"], "application/json",
            "{}",
            self.text
        );
        self
    }

    /// The detail of `@type` `type_url`.
    #[track_caller]
    pub(crate) fn detail(&self, type_url: &str) -> &Json {
        self.json["details"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["@type"] == type_url))
            .unwrap_or_else(|| panic!("no {type_url} in {}", self.text))
    }
}

impl Rest {
    /// Clients of both protocols for `app`.
    pub(crate) fn both(app: &TestApp) -> [Rest; 2] {
        let base = format!("http://{}", app.addr);
        [
            Rest {
                base: base.clone(),
                client: Client::builder().http1_only().build().unwrap(),
                protocol: "HTTP/1.1",
            },
            Rest {
                base,
                client: Client::builder().http2_prior_knowledge().build().unwrap(),
                protocol: "h2c",
            },
        ]
    }

    /// Sends `body` (raw text, None for no body) with the key, if any.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} {path}: {e}", self.protocol));
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let json = serde_json::from_str(&text).unwrap_or(Json::Null);
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    /// A JSON request with the key.
    pub(crate) async fn call(&self, method: Method, path: &str, key: &str, body: Json) -> Answer {
        let body = (method != Method::GET && method != Method::DELETE).then(|| body.to_string());
        self.send(method, path, Some(key), body.as_deref(), &[])
            .await
    }

    /// A call that must succeed; returns its JSON.
    pub(crate) async fn ok(&self, method: Method, path: &str, key: &str, body: Json) -> Json {
        let answer = self.call(method.clone(), path, key, body).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{} {method} {path}: {}",
            self.protocol,
            answer.text
        );
        answer.json
    }
}

/// Declares the seed's two attributes over REST.
async fn declare_seed(rest: &Rest, keys: &Keys) {
    for (key, kind, config) in [
        (
            "persona",
            "ATTRIBUTE_TYPE_SINGLE_CHOICE",
            json!({"singleChoice": {"options": ["teacher", "student"]}}),
        ),
        (
            "topics",
            "ATTRIBUTE_TYPE_MULTI_CHOICE",
            json!({"multiChoice": {"options": ["history", "math", "science", "art"]}}),
        ),
    ] {
        rest.ok(
            Method::POST,
            "/api/v1/attributes/definitions",
            &keys.sk_live,
            json!({"key": key, "type": kind, "config": config}),
        )
        .await;
    }
}

backend_tests! {
    the_seed_examples_return_what_the_seed_shows,
    adjustments_say_what_coercion_changed_over_rest,
    every_route_reaches_its_rpc,
    every_client_reason_has_its_status_and_body,
    public_keys_write_over_rest_only_while_the_flag_is_on,
    persons_are_listed_and_erased_over_rest,
}

/// The seed's result shape `{personId, attribute, value}` of a SetAttribute
/// answer, after checking that its only other fields are section 8's etag
/// and adjustments.
fn seed_shape(answer: &Json) -> Json {
    let mut shape = answer.as_object().expect("an object").clone();
    assert!(
        shape.remove("etag").is_some_and(|e| e.is_string()),
        "{answer}"
    );
    assert!(
        shape.remove("adjustments").is_some_and(|a| a.is_array()),
        "{answer}"
    );
    Json::Object(shape)
}

async fn the_seed_examples_return_what_the_seed_shows(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let [h1, h2] = Rest::both(&app);
    declare_seed(&h1, &keys).await;
    for rest in [&h1, &h2] {
        let user = format!("user-{}", rest.protocol);
        let persona = rest
            .ok(
                Method::POST,
                "/api/v1/attributes/values",
                &keys.sk_live,
                json!({"distinctId": user, "attribute": "persona", "value": "teacher"}),
            )
            .await;
        let person_id = persona["personId"].as_str().unwrap().to_owned();
        assert_eq!(
            seed_shape(&persona),
            json!({"personId": person_id, "attribute": "persona", "value": "teacher"})
        );
        let topics = rest
            .ok(
                Method::POST,
                "/api/v1/attributes/values",
                &keys.sk_live,
                json!({"distinctId": user, "attribute": "topics", "value": ["history", "math"]}),
            )
            .await;
        assert_eq!(
            seed_shape(&topics),
            json!({"personId": person_id, "attribute": "topics", "value": ["history", "math"]})
        );
        // The subset that matches the declared options is kept.
        let subset = rest
            .ok(
                Method::POST,
                "/api/v1/attributes/values",
                &keys.sk_live,
                json!({"distinctId": user, "attribute": "topics", "value": ["Math", "cooking"]}),
            )
            .await;
        assert_eq!(subset["value"], json!(["math"]));
    }
    app.stop().await;
}

async fn adjustments_say_what_coercion_changed_over_rest(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    let [h1, h2] = Rest::both(&app);
    declare_seed(&h1, &keys).await;
    for (key, kind, config) in [
        (
            "nick",
            "TEXT",
            json!({"text": {"maxLength": 3, "truncate": true}}),
        ),
        ("logins", "NUMBER", json!({"number": {}})),
    ] {
        h1.ok(
            Method::POST,
            "/api/v1/attributes/definitions",
            sk,
            json!({"key": key, "type": format!("ATTRIBUTE_TYPE_{kind}"), "config": config}),
        )
        .await;
    }
    let kinds = |answer: &Json| -> Vec<String> {
        answer["adjustments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    for rest in [&h1, &h2] {
        let set = |attribute: &str, value: Json| {
            let body = json!({"distinctId": "adj", "attribute": attribute, "value": value});
            rest.ok(Method::POST, "/api/v1/attributes/values", sk, body)
        };
        let trimmed = set("persona", json!(" Teacher ")).await;
        assert_eq!(kinds(&trimmed), ["TRIMMED", "CASE_NORMALIZED"], "{trimmed}");
        let dropped = set("topics", json!(["Math", "cooking", "math"])).await;
        assert_eq!(
            kinds(&dropped),
            ["CASE_NORMALIZED", "OPTIONS_DROPPED", "DUPLICATES_DROPPED"],
            "{dropped}"
        );
        assert_eq!(dropped["adjustments"][1]["dropped"], json!(["cooking"]));
        let truncated = set("nick", json!("abcdef")).await;
        assert_eq!(kinds(&truncated), ["TRUNCATED"], "{truncated}");
        assert_eq!(truncated["value"], "abc");
        let converted = set("logins", json!("7")).await;
        assert_eq!(kinds(&converted), ["CONVERTED"], "{converted}");
        assert_eq!(converted["value"], 7);
        let exact = set("persona", json!("teacher")).await;
        assert_eq!(
            exact["adjustments"],
            json!([]),
            "nothing changed, nothing reported"
        );
        // In a batch, by attribute.
        let batch = rest
            .ok(
                Method::POST,
                "/api/v1/attributes/values:batchSet",
                sk,
                json!({"distinctId": "adj", "values": {"persona": "STUDENT", "logins": 3}}),
            )
            .await;
        assert_eq!(
            batch["adjustments"]["persona"]["adjustments"][0]["kind"], "CASE_NORMALIZED",
            "{batch}"
        );
    }
    app.stop().await;
}

async fn every_route_reaches_its_rpc(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    for rest in Rest::both(&app) {
        let key = format!("seats_{}", if rest.protocol == "h2c" { "b" } else { "a" });
        let defs = "/api/v1/attributes/definitions";
        let created = rest
            .ok(
                Method::POST,
                defs,
                sk,
                json!({"key": key, "type": "ATTRIBUTE_TYPE_NUMBER", "config": {"number": {"integer": true}}}),
            )
            .await;
        assert_eq!(created["key"], key.as_str());
        assert_eq!(created["type"], "ATTRIBUTE_TYPE_NUMBER");
        assert_eq!(created["archived"], false, "unpopulated fields are emitted");
        assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));
        let one = format!("{defs}/{key}");
        assert_eq!(
            rest.ok(Method::GET, &one, sk, json!({})).await["key"],
            key.as_str()
        );
        let patched = rest
            .ok(Method::PATCH, &one, sk, json!({"displayName": "Seats"}))
            .await;
        assert_eq!(patched["displayName"], "Seats");
        let page = rest
            .ok(Method::GET, &format!("{defs}?pageSize=1"), sk, json!({}))
            .await;
        assert_eq!(page["definitions"].as_array().unwrap().len(), 1);
        assert!(page["nextPageToken"].is_string());

        let user = format!("u-{key}");
        let set = rest
            .ok(
                Method::POST,
                "/api/v1/attributes/values:batchSet",
                sk,
                json!({"distinctId": user, "values": {key.as_str(): "42"}}),
            )
            .await;
        assert_eq!(set["values"][key.as_str()], 42);
        let read = rest
            .send(
                Method::GET,
                &format!("/api/v1/persons/{user}/attributes?attributes={key}"),
                Some(sk),
                None,
                &[],
            )
            .await;
        assert_eq!(read.status, StatusCode::OK);
        assert!(
            read.text.contains("\"value\":42,"),
            "whole numbers are integers: {}",
            read.text
        );
        assert!(read.json["attributes"][0]["updatedAt"].is_string());

        let archived = rest
            .ok(Method::POST, &format!("{one}:archive"), sk, json!({}))
            .await;
        assert_eq!(archived["archived"], true);
        let hidden = rest
            .ok(
                Method::GET,
                &format!("/api/v1/persons/{user}/attributes"),
                sk,
                json!({}),
            )
            .await;
        assert_eq!(hidden["attributes"], json!([]));
        let shown = rest
            .ok(
                Method::GET,
                &format!("/api/v1/persons/{user}/attributes?includeArchived=true"),
                sk,
                json!({}),
            )
            .await;
        assert_eq!(shown["attributes"].as_array().unwrap().len(), 1);
        rest.ok(Method::POST, &format!("{one}:unarchive"), sk, json!({}))
            .await;

        let path = format!("/api/v1/persons/{user}/attributes/{key}");
        let cleared = rest.ok(Method::DELETE, &path, sk, json!({})).await;
        assert_eq!(cleared["cleared"], true);
        let again = rest.ok(Method::DELETE, &path, sk, json!({})).await;
        assert_eq!(again["cleared"], false, "false is emitted, not left out");

        let settings = rest
            .ok(Method::GET, "/api/v1/settings", sk, json!({}))
            .await;
        assert_eq!(
            settings,
            json!({
                "clientAttributeWrites": false,
                "identityVerification": "IDENTITY_VERIFICATION_OFF",
                "allowedOrigins": [],
            })
        );
        let on = rest
            .ok(
                Method::PATCH,
                "/api/v1/settings?updateMask=clientAttributeWrites",
                sk,
                json!({"clientAttributeWrites": true}),
            )
            .await;
        assert_eq!(on["clientAttributeWrites"], true);
        assert_eq!(
            on["allowedOrigins"],
            json!([]),
            "left as it was by the mask"
        );
        let off = rest
            .ok(
                Method::PATCH,
                "/api/v1/settings?update_mask=client_attribute_writes",
                sk,
                json!({"client_attribute_writes": false}),
            )
            .await;
        assert_eq!(off["clientAttributeWrites"], false);
    }
    app.stop().await;
}

/// A refused request: method, path, key, body; HTTP status, code, reason.
type Case<'a> = (Method, &'a str, Option<&'a str>, Json, u16, Code, &'a str);

async fn every_client_reason_has_its_status_and_body(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    let [h1, h2] = Rest::both(&app);
    declare_seed(&h1, &keys).await;
    h1.ok(
        Method::POST,
        "/api/v1/attributes/definitions",
        sk,
        json!({"key": "nick", "type": "ATTRIBUTE_TYPE_TEXT", "config": {"text": {"maxLength": 3}}}),
    )
    .await;
    h1.ok(
        Method::POST,
        "/api/v1/attributes/definitions",
        sk,
        json!({"key": "old", "type": "ATTRIBUTE_TYPE_TEXT"}),
    )
    .await;
    h1.ok(
        Method::POST,
        "/api/v1/attributes/definitions/old:archive",
        sk,
        json!({}),
    )
    .await;
    let set = |attribute: &str, value: Json| json!({"distinctId": "u", "attribute": attribute, "value": value});
    let values = "/api/v1/attributes/values";
    for rest in [&h1, &h2] {
        let cases: Vec<Case<'_>> = vec![
            (
                Method::POST,
                values,
                Some(sk),
                set("nope", json!("x")),
                400,
                Code::InvalidArgument,
                "attribute_not_defined",
            ),
            (
                Method::POST,
                values,
                Some(sk),
                set("persona", json!("nurse")),
                400,
                Code::InvalidArgument,
                "attribute_value_invalid",
            ),
            (
                Method::POST,
                values,
                Some(sk),
                set("nick", json!("abcd")),
                400,
                Code::InvalidArgument,
                "attribute_value_too_long",
            ),
            (
                Method::POST,
                values,
                Some(sk),
                set("old", json!("x")),
                400,
                Code::FailedPrecondition,
                "attribute_archived",
            ),
            (
                Method::POST,
                values,
                Some(&keys.pk_live),
                set("persona", json!("teacher")),
                403,
                Code::PermissionDenied,
                "client_attribute_writes_disabled",
            ),
            (
                Method::GET,
                "/api/v1/persons/u/attributes",
                Some(&keys.pk_live),
                json!({}),
                403,
                Code::PermissionDenied,
                "secret_key_required",
            ),
            (
                Method::GET,
                "/api/v1/persons/u/attributes",
                None,
                json!({}),
                401,
                Code::Unauthenticated,
                "missing_api_key",
            ),
            (
                Method::GET,
                "/api/v1/persons/u/attributes",
                Some("sk_live_wrong"),
                json!({}),
                401,
                Code::Unauthenticated,
                "invalid_api_key",
            ),
            (
                Method::POST,
                values,
                Some(sk),
                json!({"distinctId": "", "attribute": "persona", "value": "teacher"}),
                400,
                Code::InvalidArgument,
                "invalid_distinct_id",
            ),
            (
                Method::GET,
                "/api/v1/persons/nobody/attributes",
                Some(sk),
                json!({}),
                404,
                Code::NotFound,
                "person_not_found",
            ),
            (
                Method::POST,
                "/api/v1/attributes/definitions",
                Some(sk),
                json!({"key": "persona", "type": "ATTRIBUTE_TYPE_TEXT"}),
                409,
                Code::AlreadyExists,
                "attribute_already_exists",
            ),
            (
                Method::GET,
                "/api/v1/attributes/definitions/missing",
                Some(sk),
                json!({}),
                404,
                Code::NotFound,
                "attribute_definition_not_found",
            ),
            (
                Method::POST,
                "/api/v1/attributes/definitions",
                Some(sk),
                json!({"key": "Bad Key", "type": "ATTRIBUTE_TYPE_TEXT"}),
                400,
                Code::InvalidArgument,
                "invalid_attribute_definition",
            ),
            (
                Method::POST,
                "/api/v1/attributes/values:batchSet",
                Some(sk),
                json!({"distinctId": "u", "values": {}}),
                400,
                Code::InvalidArgument,
                "too_many_values",
            ),
            (
                Method::GET,
                "/api/v1/attributes/definitions?pageToken=garbage",
                Some(sk),
                json!({}),
                400,
                Code::InvalidArgument,
                "invalid_argument",
            ),
        ];
        for (method, path, key, body, status, code, reason) in cases {
            let body = (method == Method::POST).then(|| body.to_string());
            let answer = rest.send(method, path, key, body.as_deref(), &[]).await;
            answer.refused(status, code, reason);
            if status == 401 {
                assert_eq!(answer.headers["www-authenticate"], "Bearer");
            }
        }
        // A failed batch names every failing value.
        let batch = rest
            .call(
                Method::POST,
                "/api/v1/attributes/values:batchSet",
                sk,
                json!({"distinctId": "u", "values": {"persona": "nurse", "topics": 7, "nick": "ok"}}),
            )
            .await;
        batch.refused(400, Code::InvalidArgument, "attribute_value_invalid");
        let violations =
            &batch.detail("type.googleapis.com/google.rpc.BadRequest")["fieldViolations"];
        let fields: Vec<&str> = violations
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["values.persona", "values.topics"]);
        assert_eq!(
            batch.detail("type.googleapis.com/google.rpc.ErrorInfo")["metadata"]["attribute"],
            "persona"
        );
    }
    app.stop().await;
}

async fn public_keys_write_over_rest_only_while_the_flag_is_on(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let [h1, h2] = Rest::both(&app);
    declare_seed(&h1, &keys).await;
    let write = json!({"distinctId": "browser-user", "attribute": "persona", "value": "student"});
    for rest in [&h1, &h2] {
        rest.call(
            Method::POST,
            "/api/v1/attributes/values",
            &keys.pk_live,
            write.clone(),
        )
        .await
        .refused(
            403,
            Code::PermissionDenied,
            "client_attribute_writes_disabled",
        );
    }
    h1.ok(
        Method::PATCH,
        "/api/v1/settings",
        &keys.sk_live,
        json!({"clientAttributeWrites": true}),
    )
    .await;
    for rest in [&h1, &h2] {
        let stored = rest
            .ok(
                Method::POST,
                "/api/v1/attributes/values",
                &keys.pk_live,
                write.clone(),
            )
            .await;
        assert_eq!(stored["value"], "student");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_follow_the_proto3_mapping_as_the_gateways_read_it() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    let [h1, h2] = Rest::both(&app);
    declare_seed(&h1, &keys).await;
    for rest in [&h1, &h2] {
        // Proto names, unknown fields, and no Content-Type at all.
        let stored = rest
            .send(
                Method::POST,
                "/api/v1/attributes/values",
                Some(sk),
                None,
                &[],
            )
            .await;
        stored.refused(400, Code::InvalidArgument, "invalid_distinct_id");
        let answer = rest
            .send(
                Method::POST,
                "/api/v1/attributes/values",
                Some(sk),
                Some(r#"{"distinct_id":"p","attribute":"persona","value":"Teacher","future_field":{"a":[1]}}"#),
                &[("content-type", "text/plain")],
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.json["value"], "teacher");
        assert_eq!(answer.headers["content-type"], "application/json");

        // Malformed JSON and wrong types are invalid_argument, never a 5xx.
        for body in [
            "{",
            "[]",
            "null x",
            r#"{"distinctId": 12}"#,
            r#"{"distinctId": "p", "attribute": ["persona"]}"#,
            &format!("{}1{}", "[".repeat(200), "]".repeat(200)),
            &format!(
                r#"{{"distinctId":"p","attribute":"topics","value":{}"a"{}}}"#,
                "[".repeat(90),
                "]".repeat(90)
            ),
        ] {
            let answer = rest
                .send(
                    Method::POST,
                    "/api/v1/attributes/values",
                    Some(sk),
                    Some(body),
                    &[],
                )
                .await;
            assert!(
                answer.status == StatusCode::BAD_REQUEST,
                "{} {body:.40}: {} {}",
                rest.protocol,
                answer.status,
                answer.text
            );
            assert_eq!(answer.json["code"], 3, "{}", answer.text);
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_distinct_ids_reach_their_person() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    let [h1, h2] = Rest::both(&app);
    declare_seed(&h1, &keys).await;
    for (i, rest) in [&h1, &h2].into_iter().enumerate() {
        let id = format!("team/42:user {i} é+");
        let encoded = format!("team%2F42%3Auser%20{i}%20%C3%A9+");
        rest.ok(
            Method::POST,
            "/api/v1/attributes/values",
            sk,
            json!({"distinctId": id, "attribute": "persona", "value": "teacher"}),
        )
        .await;
        let read = rest
            .ok(
                Method::GET,
                &format!("/api/v1/persons/{encoded}/attributes"),
                sk,
                json!({}),
            )
            .await;
        assert_eq!(read["attributes"][0]["value"], "teacher", "{read}");
        let cleared = rest
            .ok(
                Method::DELETE,
                &format!("/api/v1/persons/{encoded}/attributes/persona"),
                sk,
                json!({}),
            )
            .await;
        assert_eq!(cleared["cleared"], true);
        // Not percent-encoded UTF-8.
        rest.send(
            Method::GET,
            "/api/v1/persons/%FF/attributes",
            Some(sk),
            None,
            &[],
        )
        .await
        .refused(400, Code::InvalidArgument, "invalid_argument");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_wrong_methods_and_oversized_bodies_get_clean_answers() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db.url, &["--max-request-bytes", "2048"]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    for rest in Rest::both(&app) {
        let missing = rest
            .send(Method::GET, "/api/v1/nothing", Some(sk), None, &[])
            .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(
            missing.json,
            json!({"code": 5, "message": "Not Found", "details": []})
        );
        let wrong = rest
            .send(
                Method::PUT,
                "/api/v1/attributes/definitions/k",
                Some(sk),
                Some("{}"),
                &[],
            )
            .await;
        assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(wrong.headers["allow"], "GET, PATCH, DELETE");
        assert_eq!(wrong.json["code"], 12);
        let wrong = rest.send(Method::POST, "/healthz", None, None, &[]).await;
        assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(wrong.headers["allow"], "GET");

        let big =
            json!({"distinctId": "u", "attribute": "a", "value": "x".repeat(4096)}).to_string();
        let answer = rest
            .send(
                Method::POST,
                "/api/v1/attributes/values",
                Some(sk),
                Some(&big),
                &[],
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{}",
            answer.text
        );
        answer.refused(413, Code::ResourceExhausted, "request_too_large");
        // Every REST answer carries its request id, made when none was sent.
        assert!(
            answer.headers.contains_key("x-request-id"),
            "{:?}",
            answer.headers
        );
        // The connection survives: the next call on it is answered.
        let after = rest
            .send(Method::GET, "/api/v1/settings", Some(sk), None, &[])
            .await;
        assert_eq!(after.status, StatusCode::OK);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_and_responses_carry_the_contract_headers() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let origin = "https://app.example.com";
    for rest in Rest::both(&app) {
        let preflight = rest
            .send(
                Method::OPTIONS,
                "/api/v1/attributes/values",
                None,
                None,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    (
                        "access-control-request-headers",
                        "authorization, content-type",
                    ),
                ],
            )
            .await;
        assert_eq!(
            preflight.status,
            StatusCode::NO_CONTENT,
            "{}",
            rest.protocol
        );
        let h = &preflight.headers;
        assert_eq!(h["access-control-allow-origin"], origin);
        assert!(h.get("access-control-allow-credentials").is_none());
        assert_eq!(h["access-control-max-age"], "7200");
        let methods = h["access-control-allow-methods"].to_str().unwrap();
        for m in ["GET", "POST", "PATCH", "DELETE"] {
            assert!(methods.contains(m), "{methods}");
        }
        let allowed = h["access-control-allow-headers"].to_str().unwrap();
        for name in [
            "authorization",
            "content-type",
            "x-grpc-web",
            "x-user-agent",
            "grpc-timeout",
            "x-vevee-identity",
            "x-request-id",
        ] {
            assert!(allowed.contains(name), "{allowed}");
        }

        let answer = rest
            .send(
                Method::GET,
                "/api/v1/settings",
                Some(&keys.sk_live),
                None,
                &[("origin", origin)],
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers["access-control-allow-origin"], origin);
        let exposed = answer.headers["access-control-expose-headers"]
            .to_str()
            .unwrap();
        for name in [
            "grpc-status",
            "grpc-message",
            "grpc-status-details-bin",
            "retry-after",
            "x-request-id",
        ] {
            assert!(exposed.contains(name), "{exposed}");
        }
        assert!(answer.headers.contains_key("x-request-id"));
        // Errors carry them too, so a page can read them.
        let refused = rest
            .send(
                Method::GET,
                "/api/v1/settings",
                None,
                None,
                &[("origin", origin)],
            )
            .await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(refused.headers["access-control-allow-origin"], origin);

        // Calls without an Origin are not browsers': no CORS headers.
        let plain = rest
            .send(
                Method::GET,
                "/api/v1/settings",
                Some(&keys.sk_live),
                None,
                &[],
            )
            .await;
        assert!(plain.headers.get("access-control-allow-origin").is_none());
        // An OPTIONS that is not a preflight is an ordinary unknown method.
        let options = rest
            .send(Method::OPTIONS, "/api/v1/settings", None, None, &[])
            .await;
        assert_eq!(options.status, StatusCode::METHOD_NOT_ALLOWED);
    }
    app.stop().await;
}

/// A gRPC-Web frame of `message`.
fn grpc_web_frame(message: &impl prost::Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut frame = vec![0];
    frame.extend((bytes.len() as u32).to_be_bytes());
    frame.extend(bytes);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_unary_calls_and_errors_are_readable_by_a_browser() {
    use prost::Message as _;
    use vevee_attributes::proto::v1 as pb;

    let db = TestDb::sqlite();
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let [h1, h2] = Rest::both(&app);
    declare_seed(&h1, &keys).await;
    let origin = "https://app.example.com";
    for rest in [&h1, &h2] {
        let request = pb::SetAttributeRequest {
            distinct_id: "web".into(),
            attribute: "persona".into(),
            value: Some(crate::helpers::s("Student")),
            ..Default::default()
        };
        let call = |key: String| {
            rest.client
                .post(format!(
                    "{}/vevee.attributes.v1.AttributesService/SetAttribute",
                    rest.base
                ))
                .header("content-type", "application/grpc-web+proto")
                .header("x-grpc-web", "1")
                .header("origin", origin)
                .header("authorization", format!("Bearer {key}"))
                .body(grpc_web_frame(&request))
                .send()
        };
        let response = call(keys.sk_live.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["access-control-allow-origin"], origin);
        let body = response.bytes().await.unwrap();
        assert_eq!(body[0], 0, "a message frame first");
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let reply = pb::SetAttributeResponse::decode(&body[5..5 + len]).unwrap();
        assert_eq!(reply.value, Some(crate::helpers::s("student")));
        let trailers = String::from_utf8_lossy(&body[5 + len + 5..]).to_lowercase();
        assert_eq!(body[5 + len], 0x80, "then the trailer frame");
        assert!(trailers.contains("grpc-status:0"), "{trailers}");

        // An error is in the headers, which the page may read.
        let refused = call("sk_live_nope".into()).await.unwrap();
        let headers = refused.headers();
        assert_eq!(headers["grpc-status"], "16");
        assert!(
            headers["access-control-expose-headers"]
                .to_str()
                .unwrap()
                .contains("grpc-status-details-bin")
        );
        assert!(headers.get("grpc-status-details-bin").is_some());
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_and_the_openapi_document_are_served() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db.url, &[]).await;
    for rest in Rest::both(&app) {
        for path in ["/healthz", "/readyz"] {
            let answer = rest.send(Method::GET, path, None, None, &[]).await;
            assert_eq!(answer.status, StatusCode::OK, "{path}");
            assert_eq!(answer.json, json!({"status": "SERVING"}));
        }
        let doc = rest
            .send(Method::GET, "/api/v1/openapi.json", None, None, &[])
            .await;
        assert_eq!(doc.status, StatusCode::OK);
        assert_eq!(doc.json["openapi"], "3.1.0");
        let paths = doc.json["paths"].as_object().unwrap();
        for path in [
            "/api/v1/attributes/values",
            "/api/v1/attributes/values:batchSet",
            "/api/v1/persons/{distinct_id}/attributes",
            "/api/v1/persons/{distinct_id}/attributes/{attribute}",
            "/api/v1/attributes/definitions",
            "/api/v1/attributes/definitions/{key}",
            "/api/v1/attributes/definitions/{key}:archive",
            "/api/v1/attributes/definitions/{key}:unarchive",
            "/api/v1/settings",
        ] {
            assert!(paths.contains_key(path), "{path} missing");
        }
    }
    app.stop().await;
}

/// A `google.protobuf.Value` of a JSON value.
fn to_value(json: &Json) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().expect("finite")),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(prost_types::Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A JSON value of a `google.protobuf.Value`, numbers as doubles.
fn to_json(value: &prost_types::Value) -> Json {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(to_json).collect()),
        Some(Kind::StructValue(s)) => Json::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

/// `json` with every number as a double, so that `42` and `42.0` compare equal.
fn doubles(json: &Json) -> Json {
    match json {
        Json::Number(n) => json!(n.as_f64()),
        Json::Array(items) => Json::Array(items.iter().map(doubles).collect()),
        Json::Object(map) => {
            Json::Object(map.iter().map(|(k, v)| (k.clone(), doubles(v))).collect())
        }
        other => other.clone(),
    }
}

/// Values of every shape: the interesting strings of each type, numbers,
/// booleans, null, and lists and objects of them.
fn any_json() -> impl proptest::strategy::Strategy<Value = Json> {
    use proptest::prelude::*;
    let words = prop::sample::select(vec![
        " teacher ",
        "TEACHER",
        "student",
        "nurse",
        "",
        "  ",
        "math",
        " Science",
        "art",
        "2024-02-29",
        "2024-02-30",
        "2024-01-01T23:30:00+02:00",
        "2024-01-01T10:00:00.5Z",
        "12",
        " 7 ",
        "1e3",
        "-0",
        "NaN",
        "Infinity",
        "0x10",
        "true",
        "FALSE",
        "1",
        "0",
        "abcdef",
        "é",
        "É",
        "a\u{0}b",
    ]);
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        (-200i64..200).prop_map(Json::from),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        prop::num::f64::NORMAL.prop_map(|f| json!(f)),
        words.prop_map(Json::from),
        "[a-zA-Z0-9 ]{0,8}".prop_map(Json::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::btree_map("[a-z]{1,2}", inner, 0..2)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn rest_and_grpc_store_the_same_value_or_refuse_with_the_same_reason() {
    use proptest::{prelude::*, test_runner::TestRunner};
    use tonic_types::StatusExt;
    use vevee_attributes::proto::v1 as pb;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = TestDb::sqlite();
    let (app, keys) = runtime.block_on(async {
        let app = spawn_app(&db.url, &[]).await;
        let keys = app.workspace().await;
        (app, keys)
    });
    let [rest, _] = Rest::both(&app);
    let attributes = [
        ("text", "TEXT", json!({"text": {"maxLength": 5}})),
        (
            "text_cut",
            "TEXT",
            json!({"text": {"maxLength": 5, "truncate": true}}),
        ),
        ("number", "NUMBER", json!({"number": {}})),
        (
            "seats",
            "NUMBER",
            json!({"number": {"min": 0, "max": 100, "integer": true}}),
        ),
        ("flag", "BOOLEAN", json!({"boolean": {}})),
        ("day", "DATE", json!({"date": {}})),
        ("moment", "DATE", json!({"date": {"includeTime": true}})),
        (
            "persona",
            "SINGLE_CHOICE",
            json!({"singleChoice": {"options": ["teacher", "student"]}}),
        ),
        (
            "persona_any",
            "SINGLE_CHOICE",
            json!({"singleChoice": {"options": ["teacher"], "allowCustom": true}}),
        ),
        (
            "topics",
            "MULTI_CHOICE",
            json!({"multiChoice": {"options": ["math", "science", "art"], "maxItems": 2}}),
        ),
        (
            "tags",
            "MULTI_CHOICE",
            json!({"multiChoice": {"options": ["math"], "allowCustom": true}}),
        ),
    ];
    runtime.block_on(async {
        for (key, kind, config) in &attributes {
            rest.ok(
                Method::POST,
                "/api/v1/attributes/definitions",
                &keys.sk_live,
                json!({"key": key, "type": format!("ATTRIBUTE_TYPE_{kind}"), "config": config}),
            )
            .await;
        }
    });
    let keys_of: Vec<&str> = attributes.iter().map(|(k, _, _)| *k).collect();
    let grpc = app.attributes();
    let n = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(proptest::test_runner::Config {
        cases: 400,
        ..Default::default()
    });
    runner
        .run(
            &(prop::sample::select(keys_of), any_json()),
            |(attribute, value)| {
                let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (via_grpc, via_rest) = runtime.block_on(async {
                    let via_grpc = grpc
                        .clone()
                        .set_attribute(crate::helpers::authed(
                            &keys.sk_live,
                            pb::SetAttributeRequest {
                                distinct_id: format!("g{n}"),
                                attribute: attribute.to_owned(),
                                value: Some(to_value(&value)),
                                ..Default::default()
                            },
                        ))
                        .await;
                    let via_rest = rest
                        .call(
                            Method::POST,
                            "/api/v1/attributes/values",
                            &keys.sk_live,
                            json!({"distinctId": format!("r{n}"), "attribute": attribute, "value": value}),
                        )
                        .await;
                    (via_grpc, via_rest)
                });
                match via_grpc {
                    Ok(stored) => {
                        prop_assert_eq!(via_rest.status, StatusCode::OK, "{}", via_rest.text);
                        let stored = to_json(stored.get_ref().value.as_ref().unwrap());
                        prop_assert_eq!(doubles(&stored), doubles(&via_rest.json["value"]));
                    }
                    Err(status) => {
                        let reason = status.get_details_error_info().unwrap().reason;
                        let code = status.code() as i32;
                        prop_assert_eq!(
                            &via_rest.detail("type.googleapis.com/google.rpc.ErrorInfo")["reason"],
                            &json!(reason)
                        );
                        prop_assert_eq!(&via_rest.json["code"], &json!(code));
                        prop_assert!(via_rest.status.is_client_error(), "{}", via_rest.status);
                    }
                }
                Ok(())
            },
        )
        .unwrap();
    runtime.block_on(app.stop());
}

async fn persons_are_listed_and_erased_over_rest(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    let [h1, _] = Rest::both(&app);
    declare_seed(&h1, &keys).await;
    for rest in Rest::both(&app) {
        let tag = if rest.protocol == "h2c" { "b" } else { "a" };
        let users = [format!("ada {tag}"), format!("bob {tag}")];
        for user in &users {
            rest.ok(
                Method::POST,
                "/api/v1/attributes/values:batchSet",
                sk,
                json!({"distinctId": user, "values": {"persona": "teacher", "topics": ["art"]}}),
            )
            .await;
        }
        let first = rest
            .ok(
                Method::GET,
                "/api/v1/persons?pageSize=1&attributes=persona",
                sk,
                json!({}),
            )
            .await;
        let persons = first["persons"].as_array().unwrap();
        assert_eq!(persons.len(), 1, "{first}");
        assert!(persons[0]["personId"].is_string() && persons[0]["distinctId"].is_string());
        assert_eq!(persons[0]["attributes"][0]["attribute"], "persona");
        assert_eq!(persons[0]["attributes"][0]["value"], "teacher");
        assert_eq!(persons[0]["attributes"].as_array().unwrap().len(), 1);
        let token = first["nextPageToken"].as_str().unwrap();
        let next = rest
            .ok(
                Method::GET,
                &format!("/api/v1/persons?page_size=1000&pageToken={token}"),
                sk,
                json!({}),
            )
            .await;
        assert!(!next["persons"].as_array().unwrap().is_empty());
        assert_ne!(next["persons"][0]["personId"], persons[0]["personId"]);

        let path = format!("/api/v1/persons/{}", users[0].replace(' ', "%20"));
        let deleted = rest.ok(Method::DELETE, &path, sk, json!({})).await;
        assert_eq!(deleted, json!({"deleted": true}));
        let again = rest.ok(Method::DELETE, &path, sk, json!({})).await;
        assert_eq!(again, json!({"deleted": false}), "false is emitted");
        rest.call(Method::GET, &format!("{path}/attributes"), sk, json!({}))
            .await
            .refused(404, Code::NotFound, "person_not_found");

        rest.call(Method::GET, "/api/v1/persons?pageSize=1001", sk, json!({}))
            .await
            .refused(400, Code::InvalidArgument, "invalid_argument");
        rest.call(Method::GET, "/api/v1/persons?pageToken=nope", sk, json!({}))
            .await
            .refused(400, Code::InvalidArgument, "invalid_argument");
        rest.call(Method::GET, "/api/v1/persons", &keys.pk_live, json!({}))
            .await
            .refused(403, Code::PermissionDenied, "secret_key_required");
        rest.call(Method::DELETE, &path, &keys.pk_live, json!({}))
            .await
            .refused(403, Code::PermissionDenied, "secret_key_required");
    }
    app.stop().await;
}
