//! A person's data (CONTRACT.md section 9): DeletePerson erases every row
//! of the person (checked by scanning every column of every table, so a
//! table added later is covered), also against a replica that remembered
//! them; ListPersons pages through every person exactly once while writes
//! go on; both refuse public keys and bad arguments.

use std::collections::{HashMap, HashSet};
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use sqlx::Connection;
use tokio::task::JoinSet;
use tonic::Code;
use vevee_attributes::proto::v1::{self as pb, AttributeType, attribute_update::Operation as Op};

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{TestApp, archive, assert_refused, authed, define, get, n, s, set, spawn_app},
    updates::{upd, update},
};

backend_tests! {
    deleting_a_person_leaves_no_row_with_their_id_or_distinct_id_and_spares_the_other_mode,
    a_replica_that_remembered_an_erased_person_gives_the_next_write_a_new_person,
    list_persons_pages_through_every_person_with_the_values_asked_for,
    list_persons_under_concurrent_writes_sees_every_existing_person_exactly_once,
    person_rpcs_refuse_public_keys_bad_page_sizes_bad_tokens_and_bad_ids,
}

/// DeletePerson of `distinct_id`.
pub(crate) async fn delete(
    app: &TestApp,
    key: &str,
    distinct_id: &str,
) -> Result<bool, tonic::Status> {
    app.attributes()
        .delete_person(authed(
            key,
            pb::DeletePersonRequest {
                distinct_id: distinct_id.into(),
            },
        ))
        .await
        .map(|r| r.into_inner().deleted)
}

/// One ListPersons page.
async fn list(
    app: &TestApp,
    key: &str,
    page_size: i32,
    page_token: &str,
    attributes: &[&str],
) -> Result<pb::ListPersonsResponse, tonic::Status> {
    app.attributes()
        .list_persons(authed(
            key,
            pb::ListPersonsRequest {
                page_size,
                page_token: page_token.into(),
                attributes: attributes.iter().map(|a| (*a).to_owned()).collect(),
                include_archived: false,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Every page of ListPersons of `page_size`.
async fn list_all(app: &TestApp, key: &str, page_size: i32) -> Vec<pb::Person> {
    let (mut persons, mut token) = (Vec::new(), String::new());
    loop {
        let page = list(app, key, page_size, &token, &[])
            .await
            .expect("a page");
        assert!(page.persons.len() <= page_size as usize);
        persons.extend(page.persons);
        if page.next_page_token.is_empty() {
            return persons;
        }
        token = page.next_page_token;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every `(table, column)` of the schema, with how many rows hold any of
/// `needles` anywhere in the column, whatever its type: found by reading
/// the database's own catalog, so tables added later are scanned too. A
/// needle is looked for as text and as the hex of its bytes (blob and
/// bytea columns), and a UUID also as its 16 bytes.
async fn rows_holding(
    db: &TestDb,
    needles: &[String],
    uuid: Option<uuid::Uuid>,
) -> Vec<(String, String, i64)> {
    let mut hits = Vec::new();
    if db.url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url)
            .await
            .expect("connect");
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c \
             WHERE m.type = 'table'",
        )
        .fetch_all(&mut conn)
        .await
        .expect("the catalog");
        assert!(columns.len() > 10, "{columns:?}");
        // hex() of any value (text, blob, number) is the hex of its bytes.
        let mut hexes: Vec<String> = needles
            .iter()
            .map(|n| hex(n.as_bytes()).to_uppercase())
            .collect();
        hexes.extend(uuid.map(|u| hex(u.as_bytes()).to_uppercase()));
        for (table, column) in columns {
            for needle in &hexes {
                let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT count(*) FROM \"{table}\" WHERE instr(hex(\"{column}\"), ?1) > 0"
                )))
                .bind(needle)
                .fetch_one(&mut conn)
                .await
                .expect("scan a column");
                if count > 0 {
                    hits.push((table.clone(), column.clone(), count));
                }
            }
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c \
             JOIN information_schema.tables t \
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
             WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'",
        )
        .fetch_all(&mut conn)
        .await
        .expect("the catalog");
        assert!(columns.len() > 10, "{columns:?}");
        // Every type has a text form: uuid hyphenated, bytea as \x and hex,
        // jsonb as its JSON.
        let mut texts: Vec<String> = needles.to_vec();
        texts.extend(needles.iter().map(|n| hex(n.as_bytes())));
        texts.extend(uuid.map(|u| hex(u.as_bytes())));
        for (table, column) in columns {
            for needle in &texts {
                let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT count(*) FROM \"{table}\" WHERE strpos(\"{column}\"::text, $1) > 0"
                )))
                .bind(needle)
                .fetch_one(&mut conn)
                .await
                .expect("scan a column");
                if count > 0 {
                    hits.push((table.clone(), column.clone(), count));
                }
            }
        }
    }
    hits
}

/// The rows holding a person_id in any of its spellings.
async fn rows_holding_person(db: &TestDb, person_id: &str) -> Vec<(String, String, i64)> {
    let id = uuid::Uuid::parse_str(person_id).expect("a UUID person_id");
    rows_holding(
        db,
        &[id.hyphenated().to_string(), id.simple().to_string()],
        Some(id),
    )
    .await
}

async fn deleting_a_person_leaves_no_row_with_their_id_or_distinct_id_and_spares_the_other_mode(
    db: &TestDb,
) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "name", sk, AttributeType::Text, None).await;
    define(&app, "logins", sk, AttributeType::Number, None).await;
    let who = "erase-me-7f3a@example.com";
    let gone = set(&app, sk, who, "name", s("Ada"))
        .await
        .unwrap()
        .person_id;
    // A request record of the person's (idempotency), and an archived value.
    let recorded = app
        .attributes()
        .update_attributes(authed(
            sk,
            pb::UpdateAttributesRequest {
                distinct_id: who.into(),
                updates: vec![upd("logins", Op::Increment(1.0))],
                request_id: "0b6f0b0e-9d0c-4a55-8f6b-6a1d3c1e2f40".into(),
                validate_only: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recorded.person_id, gone);
    define(&app, "old", sk, AttributeType::Text, None).await;
    set(&app, sk, who, "old", s("kept while archived"))
        .await
        .unwrap();
    archive(&app, sk, "old").await;
    // The same distinct_id in test mode, and another live person.
    let other_mode = set(&app, &keys.sk_test, who, "name", s("Test Ada"))
        .await
        .unwrap();
    let bystander = set(&app, sk, "bystander", "name", s("Bob")).await.unwrap();
    assert!(
        !rows_holding_person(db, &gone).await.is_empty(),
        "the scan finds the person"
    );

    assert!(delete(&app, sk, who).await.unwrap());

    assert_eq!(rows_holding_person(db, &gone).await, vec![]);
    // The one row left with the distinct_id is the test-mode person's.
    assert_eq!(
        rows_holding(db, &[who.to_owned()], None).await,
        vec![("persons".to_owned(), "distinct_id".to_owned(), 1)]
    );
    assert_refused(get(&app, sk, who).await, Code::NotFound, "person_not_found");
    assert!(
        !delete(&app, sk, who).await.unwrap(),
        "a second delete finds nobody"
    );
    let test_person = get(&app, &keys.sk_test, who).await.unwrap();
    assert_eq!(test_person.person_id, other_mode.person_id);
    assert_eq!(test_person.attributes[0].value, Some(s("Test Ada")));
    let bob = get(&app, sk, "bystander").await.unwrap();
    assert_eq!(bob.person_id, bystander.person_id);
    assert_eq!(bob.attributes.len(), 1);

    // A new write is a new person, with nothing of the old one.
    let again = set(&app, sk, who, "logins", n(5.0)).await.unwrap();
    assert_ne!(again.person_id, gone);
    let fresh = get(&app, sk, who).await.unwrap();
    assert_eq!(fresh.person_id, again.person_id);
    assert_eq!(fresh.attributes.len(), 1);
    assert_eq!(fresh.attributes[0].value, Some(n(5.0)));
    app.stop().await;
}

async fn a_replica_that_remembered_an_erased_person_gives_the_next_write_a_new_person(db: &TestDb) {
    let one = spawn_app(&db.url, &[]).await;
    let two = spawn_app(&db.url, &[]).await;
    let keys = one.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&one, "name", sk, AttributeType::Text, None).await;
    define(&one, "plan", sk, AttributeType::Text, None).await;
    // Replica two writes the person twice, so it remembers them.
    let old = set(&two, sk, "u", "name", s("Ada"))
        .await
        .unwrap()
        .person_id;
    set(&two, sk, "u", "plan", s("pro")).await.unwrap();
    set(&two, sk, "other", "name", s("Bob")).await.unwrap();

    assert!(delete(&one, sk, "u").await.unwrap());

    for _ in 0..3 {
        let new = set(&two, sk, "u", "name", s("Ada again"))
            .await
            .unwrap()
            .person_id;
        assert_ne!(new, old, "the erased person_id came back");
        let seen = get(&one, sk, "u").await.unwrap();
        assert_eq!(seen.person_id, new);
        assert_eq!(seen.attributes.len(), 1, "{seen:?}");
    }
    // Updates on the remembering replica too.
    let updated = update(&two, sk, "u", vec![upd("plan", Op::Set(s("free")))])
        .await
        .unwrap();
    assert_ne!(updated.person_id, old);
    assert_eq!(rows_holding_person(db, &old).await, vec![]);
    assert_eq!(get(&two, sk, "other").await.unwrap().attributes.len(), 1);
    two.stop().await;
    one.stop().await;
}

async fn list_persons_pages_through_every_person_with_the_values_asked_for(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    define(&app, "name", sk, AttributeType::Text, None).await;
    define(&app, "plan", sk, AttributeType::Text, None).await;
    define(&app, "old", sk, AttributeType::Text, None).await;
    let mut ids = HashMap::new();
    for who in ["a", "b", "c"] {
        let written = set(&app, sk, who, "name", s(&format!("name of {who}")))
            .await
            .unwrap();
        set(&app, sk, who, "plan", s("pro")).await.unwrap();
        set(&app, sk, who, "old", s("archived")).await.unwrap();
        ids.insert(written.person_id, who);
    }
    archive(&app, sk, "old").await;
    set(&app, &keys.sk_test, "test-only", "name", s("t"))
        .await
        .unwrap();

    let first = list(&app, sk, 2, "", &["name"]).await.unwrap();
    assert_eq!(first.persons.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = list(&app, sk, 2, &first.next_page_token, &["name"])
        .await
        .unwrap();
    assert_eq!(second.persons.len(), 1);
    assert_eq!(second.next_page_token, "", "the last page says so");
    let persons: Vec<_> = first.persons.iter().chain(&second.persons).collect();
    let order: Vec<&str> = persons.iter().map(|p| p.person_id.as_str()).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(order, sorted, "by person_id");
    for p in &persons {
        assert_eq!(ids[&p.person_id], p.distinct_id);
        let names: Vec<&str> = p.attributes.iter().map(|a| a.attribute.as_str()).collect();
        assert_eq!(names, ["name"], "only the filter's");
        assert_eq!(
            p.attributes[0].value,
            Some(s(&format!("name of {}", p.distinct_id)))
        );
        assert!(p.attributes[0].updated_at.is_some() && !p.attributes[0].etag.is_empty());
    }
    // No filter: every unarchived value, by key; include_archived adds the rest.
    let all = list(&app, sk, 0, "", &[]).await.unwrap();
    assert_eq!(all.persons.len(), 3);
    assert_eq!(all.next_page_token, "");
    for p in &all.persons {
        let names: Vec<&str> = p.attributes.iter().map(|a| a.attribute.as_str()).collect();
        assert_eq!(names, ["name", "plan"]);
    }
    let archived = app
        .attributes()
        .list_persons(authed(
            sk,
            pb::ListPersonsRequest {
                include_archived: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = archived.persons[0]
        .attributes
        .iter()
        .map(|a| a.attribute.as_str())
        .collect();
    assert_eq!(names, ["name", "old", "plan"]);
    // The test mode sees its own person only.
    let test = list_all(&app, &keys.sk_test, 7).await;
    assert_eq!(test.len(), 1);
    assert_eq!(test[0].distinct_id, "test-only");
    app.stop().await;
}

async fn list_persons_under_concurrent_writes_sees_every_existing_person_exactly_once(db: &TestDb) {
    let app = Arc::new(spawn_app(&db.url, &[]).await);
    let keys = app.workspace().await;
    let sk = keys.sk_live.clone();
    define(&app, "n", &sk, AttributeType::Number, None).await;
    let mut existing = HashMap::new();
    for i in 0..60 {
        let who = format!("pre-{i}");
        let written = set(&app, &sk, &who, "n", n(0.0)).await.unwrap();
        existing.insert(who, written.person_id);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = JoinSet::new();
    for w in 0..4 {
        let (app, sk, stop) = (app.clone(), sk.clone(), stop.clone());
        writers.spawn(async move {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // A new person, then an update of a pre-existing one.
                set(&app, &sk, &format!("new-{w}-{i}"), "n", n(1.0))
                    .await
                    .unwrap();
                set(
                    &app,
                    &sk,
                    &format!("pre-{}", (i * 7 + w) % 60),
                    "n",
                    n(f64::from(i)),
                )
                .await
                .unwrap();
                i += 1;
            }
            i
        });
    }
    // Let the writers get going before the listing starts.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let listed = list_all(&app, &sk, 7).await;
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    while let Some(count) = writers.join_next().await {
        written += count.expect("a writer");
    }
    assert!(written > 0, "the writers wrote while the listing ran");
    let mut seen_ids = HashSet::new();
    let mut seen = HashMap::new();
    for p in &listed {
        assert!(
            seen_ids.insert(p.person_id.clone()),
            "{} listed twice",
            p.person_id
        );
        assert!(
            seen.insert(p.distinct_id.clone(), p.person_id.clone())
                .is_none()
        );
    }
    for (who, id) in &existing {
        assert_eq!(seen.get(who), Some(id), "{who} missing or changed");
    }
    Arc::try_unwrap(app)
        .ok()
        .expect("the writers are done")
        .stop()
        .await;
}

async fn person_rpcs_refuse_public_keys_bad_page_sizes_bad_tokens_and_bad_ids(db: &TestDb) {
    let app = spawn_app(&db.url, &[]).await;
    let keys = app.workspace().await;
    let sk = keys.sk_live.as_str();
    set_client_writes(&app, sk).await;
    for pk in [&keys.pk_live, &keys.pk_test] {
        assert_refused(
            delete(&app, pk, "u").await,
            Code::PermissionDenied,
            "secret_key_required",
        );
        assert_refused(
            list(&app, pk, 0, "", &[]).await,
            Code::PermissionDenied,
            "secret_key_required",
        );
    }
    assert_refused(
        delete(&app, "", "u").await,
        Code::Unauthenticated,
        "invalid_api_key",
    );
    for bad in [1001, -1, i32::MIN] {
        let status = assert_refused(
            list(&app, sk, bad, "", &[]).await,
            Code::InvalidArgument,
            "invalid_argument",
        );
        assert!(status.message().contains("page_size"), "{status:?}");
    }
    assert!(list(&app, sk, 1000, "", &[]).await.is_ok());
    for token in [
        "nope",
        "00000000-0000-0000-0000-000000000000",
        "0123456789ABCDEF0123456789abcdef",
    ] {
        let status = assert_refused(
            list(&app, sk, 0, token, &[]).await,
            Code::InvalidArgument,
            "invalid_argument",
        );
        assert!(status.message().contains("page_token"), "{status:?}");
    }
    assert_refused(
        list(&app, sk, 0, "", &["undeclared"]).await,
        Code::InvalidArgument,
        "attribute_not_defined",
    );
    assert_refused(
        delete(&app, sk, "").await,
        Code::InvalidArgument,
        "invalid_distinct_id",
    );
    assert_refused(
        delete(&app, sk, "tab\there").await,
        Code::InvalidArgument,
        "invalid_distinct_id",
    );
    assert!(!delete(&app, sk, "never-written").await.unwrap());
    app.stop().await;
}

/// Turns client_attribute_writes on, so public keys are refused for being
/// public keys, not for the flag.
async fn set_client_writes(app: &TestApp, sk: &str) {
    app.settings()
        .update_workspace_settings(authed(
            sk,
            pb::UpdateWorkspaceSettingsRequest {
                settings: Some(pb::WorkspaceSettings {
                    client_attribute_writes: true,
                    ..Default::default()
                }),
                update_mask: None,
            },
        ))
        .await
        .expect("settings");
}
