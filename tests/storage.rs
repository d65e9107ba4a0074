//! The storage contract, run once against SQLite and once against PostgreSQL.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::TestDb;
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use vevee_attributes::{
    domain::{ApiKeyId, KeyKind, Mode, PersonId, WorkspaceId},
    storage::{
        self, Coalescing, DefinitionChanges, Error, Lanes, Lease, NewApiKey, NewDefinition,
        PersonRead, PersonUpdate, PersonWrite, PersonsQuery, PurgeEnd, PurgeStart, RequestKey,
        Settings, Store, StoreOptions, ValueChange, ValueStore,
    },
};

backend_tests! {
    the_schema_is_behind_before_migrating_and_current_after,
    fifty_concurrent_first_writes_create_exactly_one_person,
    a_failed_multi_value_write_writes_nothing,
    live_and_test_persons_of_one_distinct_id_are_different,
    a_workspace_never_sees_another_workspaces_rows,
    definition_pages_visit_each_key_once_in_byte_order,
    clear_reports_whether_a_value_existed,
    archived_definitions_keep_their_values,
    creating_a_taken_key_gives_already_exists,
    concurrent_writes_of_different_attributes_all_persist,
    concurrent_writes_of_one_attribute_leave_one_whole_write,
    api_keys_are_found_by_hash_and_revoked,
    cancelled_requests_leave_the_pool_usable,
    an_unreachable_database_is_unavailable,
    definition_updates_change_only_what_is_given,
    reads_filter_sort_and_return_values_as_written,
    settings_default_to_off_and_can_be_turned_on_and_off,
    migrate_runs_again_harmlessly_and_ping_answers,
    one_failing_write_in_a_batch_fails_alone_while_its_neighbours_commit,
    a_batch_writing_one_person_twice_keeps_the_last_value,
    coalesced_concurrent_writes_all_persist_with_their_own_results,
    a_batch_of_reads_answers_each_read_as_if_alone,
    a_batch_on_another_replica_finds_existing_persons_and_creates_new_ones_once,
    updates_of_one_value_in_one_batch_build_on_each_other,
    a_request_repeated_in_one_batch_is_in_progress_and_another_body_is_reused,
    request_records_are_found_within_their_retention_and_forgotten_after,
    a_request_repeated_while_the_first_is_in_flight_waits_or_is_in_progress,
    a_person_erased_on_another_replica_is_never_written_under_their_old_id,
    a_purge_is_held_by_one_lease_at_a_time_and_a_failed_one_frees_the_attribute,
}

/// A workspace with a `text` definition for each of `keys`.
/// The person of `distinct_id`, if any: what a read of all its values finds.
async fn person_of(
    store: &dyn ValueStore,
    ws: WorkspaceId,
    mode: Mode,
    distinct_id: &str,
) -> storage::Result<Option<PersonId>> {
    let person = store.read_values(ws, mode, distinct_id, None, true).await?;
    Ok(person.map(|p| p.person_id))
}

async fn workspace_with(store: &Arc<dyn Store>, keys: &[&str]) -> WorkspaceId {
    let ws = store.create_workspace("test").await.unwrap().id;
    for key in keys {
        store
            .create_definition(ws, text_definition(key))
            .await
            .unwrap();
    }
    ws
}

fn text_definition(key: &str) -> NewDefinition {
    NewDefinition {
        key: (*key).to_owned(),
        attr_type: "text".to_owned(),
        config: json!({"max_length": 255}),
        display_name: None,
        description: None,
        client_writable: true,
    }
}

fn values(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// The keys and values of a person's read, for comparing.
async fn read_pairs(
    store: &Arc<dyn Store>,
    ws: WorkspaceId,
    mode: Mode,
    distinct_id: &str,
    include_archived: bool,
) -> Vec<(String, Value)> {
    store
        .read_values(ws, mode, distinct_id, None, include_archived)
        .await
        .unwrap()
        .expect("the person exists")
        .values
        .into_iter()
        .map(|v| (v.key, v.value))
        .collect()
}

/// A random number below `n`, without a dependency for it.
fn random_below(n: u128) -> u128 {
    uuid::Uuid::new_v4().as_u128() % n
}

async fn fifty_concurrent_first_writes_create_exactly_one_person(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["plan"]).await;
    let start = Arc::new(Barrier::new(50));
    let mut writes = JoinSet::new();
    for i in 0..50 {
        let (store, start) = (store.clone(), start.clone());
        writes.spawn(async move {
            start.wait().await;
            store
                .write_values(ws, Mode::Live, "newcomer", &values(&[("plan", json!(i))]))
                .await
        });
    }
    let ids: HashSet<PersonId> = writes
        .join_all()
        .await
        .into_iter()
        .map(|written| written.expect("no write fails").person_id)
        .collect();
    assert_eq!(ids.len(), 1, "all 50 writes got the same person: {ids:?}");
    let found = person_of(store.as_ref(), ws, Mode::Live, "newcomer")
        .await
        .unwrap();
    assert_eq!(found, ids.into_iter().next());
}

async fn a_failed_multi_value_write_writes_nothing(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["email", "name"]).await;

    // The undeclared key violates the foreign key to definitions after the
    // declared one was written: the whole write must roll back, person too.
    let failed = store
        .write_values(
            ws,
            Mode::Live,
            "new",
            &values(&[("email", json!("a@example.com")), ("undeclared", json!(1))]),
        )
        .await;
    assert!(matches!(failed, Err(Error::Unexpected(_))), "{failed:?}");
    assert_eq!(
        person_of(store.as_ref(), ws, Mode::Live, "new")
            .await
            .unwrap(),
        None
    );

    store
        .write_values(
            ws,
            Mode::Live,
            "old",
            &values(&[("email", json!("old@example.com"))]),
        )
        .await
        .unwrap();
    let failed = store
        .write_values(
            ws,
            Mode::Live,
            "old",
            &values(&[
                ("email", json!("new@example.com")),
                ("name", json!("Ada")),
                ("undeclared", json!(1)),
            ]),
        )
        .await;
    assert!(failed.is_err());
    assert_eq!(
        read_pairs(&store, ws, Mode::Live, "old", true).await,
        values(&[("email", json!("old@example.com"))])
    );
}

async fn live_and_test_persons_of_one_distinct_id_are_different(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["plan"]).await;
    let live = store
        .write_values(ws, Mode::Live, "same", &values(&[("plan", json!("live"))]))
        .await
        .unwrap();
    let test = store
        .write_values(ws, Mode::Test, "same", &values(&[("plan", json!("test"))]))
        .await
        .unwrap();
    assert_ne!(live, test);
    assert_eq!(
        read_pairs(&store, ws, Mode::Live, "same", false).await,
        values(&[("plan", json!("live"))])
    );
    assert_eq!(
        read_pairs(&store, ws, Mode::Test, "same", false).await,
        values(&[("plan", json!("test"))])
    );

    store
        .write_values(
            ws,
            Mode::Test,
            "only-test",
            &values(&[("plan", json!("x"))]),
        )
        .await
        .unwrap();
    assert_eq!(
        person_of(store.as_ref(), ws, Mode::Live, "only-test")
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .read_values(ws, Mode::Live, "only-test", None, true)
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_workspace_never_sees_another_workspaces_rows(db: &TestDb) {
    let store = db.store().await;
    let a = workspace_with(&store, &["plan", "only_a"]).await;
    let b = workspace_with(&store, &["plan"]).await;

    let person_a = store
        .write_values(
            a,
            Mode::Live,
            "p",
            &values(&[("plan", json!("a")), ("only_a", json!(1))]),
        )
        .await
        .unwrap();
    store
        .update_settings(
            a,
            Settings {
                client_attribute_writes: true,
                ..Settings::default()
            },
        )
        .await
        .unwrap();
    let key_a = store
        .insert_api_key(NewApiKey {
            workspace: a,
            kind: KeyKind::Secret,
            mode: Mode::Live,
            hash: [7; 32],
            display_prefix: "sk_live_aaaa".to_owned(),
        })
        .await
        .unwrap();

    // Persons and values.
    assert_eq!(
        person_of(store.as_ref(), b, Mode::Live, "p").await.unwrap(),
        None
    );
    assert!(
        store
            .read_values(b, Mode::Live, "p", None, true)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .clear_value(b, Mode::Live, "p", "plan")
            .await
            .unwrap()
            .is_none()
    );
    let person_b = store
        .write_values(b, Mode::Live, "p", &values(&[("plan", json!("b"))]))
        .await
        .unwrap();
    assert_ne!(person_a, person_b);
    assert_eq!(
        read_pairs(&store, b, Mode::Live, "p", true).await,
        values(&[("plan", json!("b"))])
    );
    assert_eq!(
        read_pairs(&store, a, Mode::Live, "p", true).await,
        values(&[("only_a", json!(1)), ("plan", json!("a"))])
    );
    // B cannot write to A's attribute, even for a person of its own.
    assert!(
        store
            .write_values(b, Mode::Live, "p", &values(&[("only_a", json!(2))]))
            .await
            .is_err()
    );

    // Definitions.
    assert_eq!(store.get_definition(b, "only_a").await.unwrap(), None);
    let listed: Vec<String> = store
        .list_definitions(b, true, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.key)
        .collect();
    assert_eq!(listed, ["plan"]);
    let change = DefinitionChanges {
        description: Some("taken over".to_owned()),
        ..DefinitionChanges::default()
    };
    assert_eq!(
        store.update_definition(b, "only_a", change).await.unwrap(),
        None
    );
    assert_eq!(store.set_archived(b, "only_a", true).await.unwrap(), None);
    let only_a = store.get_definition(a, "only_a").await.unwrap().unwrap();
    assert!(!only_a.archived && only_a.description.is_none());

    // Settings and keys.
    assert_eq!(
        store.get_settings(b).await.unwrap(),
        Some(Settings {
            client_attribute_writes: false,
            ..Settings::default()
        })
    );
    assert!(store.list_api_keys(b).await.unwrap().is_empty());
    assert!(!store.revoke_api_key(b, key_a.id).await.unwrap());
    assert_eq!(
        store
            .find_api_key(&[7; 32])
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
}

async fn definition_pages_visit_each_key_once_in_byte_order(db: &TestDb) {
    let store = db.store().await;
    // Digits < upper case < underscore < lower case < non-ASCII in byte
    // order; a locale collation would interleave case and skip underscores.
    let keys = [
        "a",
        "a_b",
        "a0",
        "a9",
        "aa",
        "ab",
        "a_",
        "b",
        "B",
        "Zeta",
        "zeta",
        "z_1",
        "z1",
        "z10",
        "z2",
        "x_y_z",
        "xy",
        "x0",
        "_x",
        "0x",
        "\u{e9}clair",
        "eclair",
        "e_clair",
        "E",
        "e",
    ];
    assert_eq!(keys.len(), 25);
    let refs: Vec<&str> = keys.to_vec();
    let ws = workspace_with(&store, &refs).await;
    let archived = ["a_", "Zeta", "z10"];
    for key in archived {
        store.set_archived(ws, key, true).await.unwrap().unwrap();
    }

    for include_archived in [true, false] {
        let mut expected: Vec<String> = keys
            .iter()
            .filter(|k| include_archived || !archived.contains(k))
            .map(|k| (*k).to_owned())
            .collect();
        // String's order is byte order.
        expected.sort();

        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store
                .list_definitions(ws, include_archived, after.as_deref(), 7)
                .await
                .unwrap();
            assert!(page.len() <= 7);
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            let full = page.len() == 7;
            seen.extend(page.into_iter().map(|d| d.key));
            if !full {
                break;
            }
        }
        assert_eq!(seen, expected, "include_archived = {include_archived}");
    }
}

async fn clear_reports_whether_a_value_existed(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["plan", "seats"]).await;
    assert_eq!(
        store
            .clear_value(ws, Mode::Live, "nobody", "plan")
            .await
            .unwrap(),
        None
    );

    let person = store
        .write_values(
            ws,
            Mode::Live,
            "p",
            &values(&[("plan", json!("pro")), ("seats", json!(3))]),
        )
        .await
        .unwrap()
        .person_id;
    let first = store
        .clear_value(ws, Mode::Live, "p", "plan")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.person_id, first.cleared), (person, true));
    let again = store
        .clear_value(ws, Mode::Live, "p", "plan")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.person_id, again.cleared), (person, false));
    assert!(
        store
            .clear_value(ws, Mode::Live, "p", "seats")
            .await
            .unwrap()
            .unwrap()
            .cleared
    );

    // A person whose values were all cleared still exists.
    let read = store
        .read_values(ws, Mode::Live, "p", None, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.person_id, person);
    assert!(read.values.is_empty());
}

async fn archived_definitions_keep_their_values(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["plan", "seats"]).await;
    let both = values(&[("plan", json!("pro")), ("seats", json!(3))]);
    store
        .write_values(ws, Mode::Live, "p", &both)
        .await
        .unwrap();

    let before = store.get_definition(ws, "plan").await.unwrap().unwrap();
    let archived = store.set_archived(ws, "plan", true).await.unwrap().unwrap();
    assert!(archived.archived);
    assert!(archived.updated_at >= before.updated_at);
    assert_eq!(archived.created_at, before.created_at);

    assert_eq!(
        read_pairs(&store, ws, Mode::Live, "p", false).await,
        values(&[("seats", json!(3))])
    );
    assert_eq!(read_pairs(&store, ws, Mode::Live, "p", true).await, both);
    let filtered = store
        .read_values(ws, Mode::Live, "p", Some(&["plan".to_owned()]), false)
        .await
        .unwrap()
        .unwrap();
    assert!(filtered.values.is_empty());

    let unarchived = store
        .set_archived(ws, "plan", false)
        .await
        .unwrap()
        .unwrap();
    assert!(!unarchived.archived);
    assert_eq!(read_pairs(&store, ws, Mode::Live, "p", false).await, both);

    // Clearing still works on an archived attribute, so data can always go.
    store.set_archived(ws, "plan", true).await.unwrap().unwrap();
    assert!(
        store
            .clear_value(ws, Mode::Live, "p", "plan")
            .await
            .unwrap()
            .unwrap()
            .cleared
    );
    assert_eq!(
        read_pairs(&store, ws, Mode::Live, "p", true).await,
        values(&[("seats", json!(3))])
    );
}

async fn creating_a_taken_key_gives_already_exists(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["plan"]).await;
    let again = NewDefinition {
        attr_type: "number".to_owned(),
        ..text_definition("plan")
    };
    let taken = store.create_definition(ws, again.clone()).await;
    assert!(matches!(taken, Err(Error::AlreadyExists)), "{taken:?}");
    assert_eq!(
        store
            .get_definition(ws, "plan")
            .await
            .unwrap()
            .unwrap()
            .attr_type,
        "text"
    );
    // The same key in another workspace is a different definition.
    let other = store.create_workspace("other").await.unwrap().id;
    store.create_definition(other, again).await.unwrap();

    // Racing creators: one wins, the rest are told it exists.
    let start = Arc::new(Barrier::new(10));
    let mut creates = JoinSet::new();
    for _ in 0..10 {
        let (store, start) = (store.clone(), start.clone());
        creates.spawn(async move {
            start.wait().await;
            store.create_definition(ws, text_definition("raced")).await
        });
    }
    let results = creates.join_all().await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(Error::AlreadyExists))),
        "{results:?}"
    );
}

async fn concurrent_writes_of_different_attributes_all_persist(db: &TestDb) {
    let store = db.store().await;
    let keys: Vec<String> = (0..20).map(|i| format!("attr_{i:02}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let ws = workspace_with(&store, &refs).await;

    let start = Arc::new(Barrier::new(keys.len()));
    let mut writes = JoinSet::new();
    for (i, key) in keys.iter().enumerate() {
        let (store, start, key) = (store.clone(), start.clone(), key.clone());
        writes.spawn(async move {
            start.wait().await;
            store
                .write_values(ws, Mode::Live, "busy", &[(key, json!(i))])
                .await
        });
    }
    for written in writes.join_all().await {
        written.expect("no write fails");
    }
    let expected: Vec<(String, Value)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), json!(i)))
        .collect();
    assert_eq!(
        read_pairs(&store, ws, Mode::Live, "busy", false).await,
        expected
    );
}

async fn concurrent_writes_of_one_attribute_leave_one_whole_write(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["plan", "seats"]).await;
    let start = Arc::new(Barrier::new(20));
    let mut writes = JoinSet::new();
    for i in 0..20 {
        let (store, start) = (store.clone(), start.clone());
        writes.spawn(async move {
            start.wait().await;
            let both = values(&[("plan", json!(format!("plan-{i}"))), ("seats", json!(i))]);
            store.write_values(ws, Mode::Live, "contested", &both).await
        });
    }
    for written in writes.join_all().await {
        written.expect("no write fails");
    }
    // Whichever write committed last, both of its values are there together.
    let read = read_pairs(&store, ws, Mode::Live, "contested", false).await;
    let [(plan_key, plan), (seats_key, seats)] = read.as_slice() else {
        panic!("two values expected: {read:?}");
    };
    assert_eq!((plan_key.as_str(), seats_key.as_str()), ("plan", "seats"));
    let i = seats.as_u64().expect("seats is a number");
    assert!(i < 20);
    assert_eq!(plan, &json!(format!("plan-{i}")));
}

async fn api_keys_are_found_by_hash_and_revoked(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &[]).await;
    let secret = store
        .insert_api_key(NewApiKey {
            workspace: ws,
            kind: KeyKind::Secret,
            mode: Mode::Live,
            hash: [1; 32],
            display_prefix: "sk_live_abcd".to_owned(),
        })
        .await
        .unwrap();
    let public = store
        .insert_api_key(NewApiKey {
            workspace: ws,
            kind: KeyKind::Public,
            mode: Mode::Test,
            hash: [2; 32],
            display_prefix: "pk_test_efgh".to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(
        (
            secret.workspace,
            secret.kind,
            secret.mode,
            secret.revoked_at
        ),
        (ws, KeyKind::Secret, Mode::Live, None)
    );
    assert_eq!(secret.display_prefix, "sk_live_abcd");
    assert_eq!(
        store.find_api_key(&[1; 32]).await.unwrap(),
        Some(secret.clone())
    );
    assert_eq!(
        store.find_api_key(&[2; 32]).await.unwrap(),
        Some(public.clone())
    );
    assert_eq!(store.find_api_key(&[3; 32]).await.unwrap(), None);
    assert_eq!(
        store.list_api_keys(ws).await.unwrap(),
        vec![secret.clone(), public.clone()]
    );

    assert!(store.revoke_api_key(ws, secret.id).await.unwrap());
    let revoked = store.find_api_key(&[1; 32]).await.unwrap().unwrap();
    let revoked_at = revoked.revoked_at.expect("revoked");
    // Revoking again succeeds and keeps the first time.
    assert!(store.revoke_api_key(ws, secret.id).await.unwrap());
    assert_eq!(
        store
            .find_api_key(&[1; 32])
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(revoked_at)
    );
    assert_eq!(
        store
            .find_api_key(&[2; 32])
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
    let unknown = ApiKeyId(uuid::Uuid::new_v4());
    assert!(!store.revoke_api_key(ws, unknown).await.unwrap());

    // Hashes are unique across all workspaces.
    let duplicate = store
        .insert_api_key(NewApiKey {
            workspace: ws,
            kind: KeyKind::Public,
            mode: Mode::Live,
            hash: [2; 32],
            display_prefix: "pk_live_ijkl".to_owned(),
        })
        .await;
    assert!(duplicate.is_err());
}

async fn cancelled_requests_leave_the_pool_usable(db: &TestDb) {
    // One connection, so a connection left in a bad state would be handed to
    // every later request. The long acquire timeout lets the queue of
    // requests that carry on after their caller gave up drain without timing
    // out.
    let opts = StoreOptions {
        max_connections: 1,
        acquire_timeout: Duration::from_secs(30),
        ..StoreOptions::default()
    };
    let store = db.store_with(&opts).await;
    let ws = workspace_with(&store, &["a", "b", "c"]).await;
    let people: Vec<String> = (0..5).map(|p| format!("p{p}")).collect();

    // Concurrent requests of every kind, each given up after a random time:
    // while waiting for the connection, or anywhere in its round trips.
    let mut cancelled = 0;
    for round in 0..10 {
        let mut requests = JoinSet::new();
        for i in 0..30 {
            let store = store.clone();
            let n = round * 30 + i;
            let person = people[n % people.len()].clone();
            let patience = Duration::from_micros(random_below(3000) as u64);
            requests.spawn(async move {
                let request = async {
                    match random_below(4) {
                        0 | 1 => {
                            // a and b are always written together, so any
                            // read must find them equal.
                            let both = values(&[("a", json!(n)), ("b", json!(n))]);
                            store
                                .write_values(ws, Mode::Live, &person, &both)
                                .await
                                .map(drop)
                        }
                        2 => store
                            .read_values(ws, Mode::Live, &person, None, false)
                            .await
                            .map(drop),
                        _ => store
                            .clear_value(ws, Mode::Live, &person, "c")
                            .await
                            .map(drop),
                    }
                };
                tokio::time::timeout(patience, request).await.is_err()
            });
        }
        cancelled += requests.join_all().await.into_iter().filter(|c| *c).count();
    }
    // One request at a time, given up within about one local round trip, so
    // that cancellations land inside the database conversation itself (where
    // a cancelled BEGIN leaks a transaction) rather than in the pool queue.
    for n in 0..300 {
        let both = values(&[("a", json!(n)), ("b", json!(n))]);
        let person = &people[n % people.len()];
        let patience = Duration::from_micros(random_below(400) as u64);
        let request = store.write_values(ws, Mode::Live, person, &both);
        if tokio::time::timeout(patience, request).await.is_err() {
            cancelled += 1;
            // Check before the next write: its commit would end a leaked
            // transaction unnoticed. Requests queue for the one connection
            // in order, so once the ping gets through, the cancelled request
            // has finished (or been dropped).
            store.ping().await.unwrap();
            assert_eq!(
                db.idle_in_transaction().await,
                0,
                "request {n} left a transaction open"
            );
        }
    }
    assert!(cancelled > 0, "the test cancelled nothing");

    for person in &people {
        if let Some(read) = store
            .read_values(ws, Mode::Live, person, None, false)
            .await
            .unwrap()
        {
            let a = read.values.iter().find(|v| v.key == "a").map(|v| &v.value);
            let b = read.values.iter().find(|v| v.key == "b").map(|v| &v.value);
            assert_eq!(a, b, "{person}: a write was torn");
        }
    }

    for person in &people {
        let both = values(&[("a", json!("final")), ("b", json!("final"))]);
        store
            .write_values(ws, Mode::Live, person, &both)
            .await
            .unwrap();
        assert_eq!(
            read_pairs(&store, ws, Mode::Live, person, false).await,
            both
        );
    }
    assert_eq!(
        db.idle_in_transaction().await,
        0,
        "a transaction was left open"
    );
}

async fn an_unreachable_database_is_unavailable(db: &TestDb) {
    let opts = StoreOptions {
        acquire_timeout: Duration::from_millis(500),
        ..StoreOptions::default()
    };
    match storage::connect(&db.unreachable_url(), &opts).await {
        Ok(_) => panic!("connected to an unreachable database"),
        Err(e) => assert!(matches!(e, Error::Unavailable(_)), "{e:?}"),
    }
}

async fn the_schema_is_behind_before_migrating_and_current_after(db: &TestDb) {
    let store = storage::connect(&db.url, &StoreOptions::default())
        .await
        .unwrap();
    assert!(
        matches!(
            store.schema().await.unwrap(),
            storage::Schema::Behind { database: None, .. }
        ),
        "a database never migrated"
    );
    store.migrate().await.unwrap();
    assert_eq!(store.schema().await.unwrap(), storage::Schema::Current);
    // Migrating again changes nothing and is still current.
    store.migrate().await.unwrap();
    assert_eq!(store.schema().await.unwrap(), storage::Schema::Current);
}

#[tokio::test]
async fn a_missing_sqlite_directory_is_a_configuration_error_not_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/missing/dir/test.db", dir.path().display());
    match storage::connect(&url, &StoreOptions::default()).await {
        Ok(_) => panic!("opened a file in a missing directory"),
        Err(e) => assert!(
            matches!(&e, Error::Config(m) if m.contains("does not exist")),
            "{e:?}"
        ),
    }
    assert!(!dir.path().join("missing").exists());
}

#[tokio::test]
async fn a_missing_sqlite_file_is_not_created_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    let url = format!("sqlite://{}", path.display());
    let opts = StoreOptions {
        create_if_missing: false,
        ..StoreOptions::default()
    };
    match storage::connect(&url, &opts).await {
        Ok(_) => panic!("opened a missing file"),
        Err(e) => assert!(matches!(e, Error::Missing(_)), "{e:?}"),
    }
    assert!(!path.exists(), "nothing was created");
}

async fn definition_updates_change_only_what_is_given(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &[]).await;
    let created = store
        .create_definition(
            ws,
            NewDefinition {
                key: "topics".to_owned(),
                attr_type: "multi_choice".to_owned(),
                config: json!({"options": ["history", "math"], "allow_custom": false}),
                display_name: Some("Topics".to_owned()),
                description: Some("What they study".to_owned()),
                client_writable: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(created.created_at, created.updated_at);
    assert!(!created.archived);
    // What a write returns is exactly what a read returns, timestamps too.
    assert_eq!(
        store.get_definition(ws, "topics").await.unwrap(),
        Some(created.clone())
    );

    let new_config = json!({"options": ["history", "math", "art"], "allow_custom": true});
    let updated = store
        .update_definition(
            ws,
            "topics",
            DefinitionChanges {
                config: Some(new_config.clone()),
                ..DefinitionChanges::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.config, new_config);
    assert_eq!(updated.display_name.as_deref(), Some("Topics"));
    assert_eq!(updated.description.as_deref(), Some("What they study"));
    assert_eq!(updated.attr_type, "multi_choice");
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);

    let renamed = store
        .update_definition(
            ws,
            "topics",
            DefinitionChanges {
                display_name: Some("Subjects".to_owned()),
                description: Some(String::new()),
                ..DefinitionChanges::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.display_name.as_deref(), Some("Subjects"));
    assert_eq!(renamed.description.as_deref(), Some(""));
    assert_eq!(renamed.config, new_config);
    assert_eq!(
        store.get_definition(ws, "topics").await.unwrap(),
        Some(renamed.clone())
    );

    assert!(renamed.client_writable);
    let server_only = store
        .update_definition(
            ws,
            "topics",
            DefinitionChanges {
                client_writable: Some(false),
                ..DefinitionChanges::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!server_only.client_writable);
    assert_eq!(server_only.display_name.as_deref(), Some("Subjects"));
    assert_eq!(
        store.get_definition(ws, "topics").await.unwrap(),
        Some(server_only)
    );

    let missing = store
        .update_definition(ws, "nothing", DefinitionChanges::default())
        .await
        .unwrap();
    assert_eq!(missing, None);
    assert_eq!(store.set_archived(ws, "nothing", true).await.unwrap(), None);
    assert_eq!(store.get_definition(ws, "nothing").await.unwrap(), None);
}

async fn reads_filter_sort_and_return_values_as_written(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["c", "a", "b", "d", "e", "f"]).await;
    let written = values(&[
        ("f", json!(["history", "math"])),
        ("c", json!("ünïcödé \u{1F600} \"quoted\"")),
        ("a", json!(2.5)),
        ("e", json!(true)),
        ("b", json!(42)),
        ("d", json!("")),
    ]);
    let person = store
        .write_values(ws, Mode::Live, "reader", &written)
        .await
        .unwrap()
        .person_id;

    let mut sorted = written.clone();
    sorted.sort_by(|x, y| x.0.cmp(&y.0));
    let read = store
        .read_values(ws, Mode::Live, "reader", None, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.person_id, person);
    let pairs: Vec<(String, Value)> = read
        .values
        .iter()
        .map(|v| (v.key.clone(), v.value.clone()))
        .collect();
    assert_eq!(pairs, sorted);
    assert!(
        read.values
            .windows(2)
            .all(|w| w[0].updated_at == w[1].updated_at)
    );

    // A filter keeps the requested keys that have values, in key order.
    let filter = [
        "f".to_owned(),
        "a".to_owned(),
        "declared_nowhere".to_owned(),
    ];
    let filtered = store
        .read_values(ws, Mode::Live, "reader", Some(&filter), false)
        .await
        .unwrap()
        .unwrap();
    let keys: Vec<&str> = filtered.values.iter().map(|v| v.key.as_str()).collect();
    assert_eq!(keys, ["a", "f"]);
    let empty = store
        .read_values(ws, Mode::Live, "reader", Some(&[]), false)
        .await
        .unwrap()
        .unwrap();
    assert!(empty.values.is_empty());

    // A later write replaces one value and its time; a key given twice in
    // one write keeps the last.
    let later = store
        .write_values(
            ws,
            Mode::Live,
            "reader",
            &values(&[("a", json!(1)), ("a", json!(3))]),
        )
        .await
        .unwrap();
    assert_eq!(later.person_id, person);
    assert_eq!(later.etags.len(), 1, "one value, so one etag: {later:?}");
    let reread = store
        .read_values(
            ws,
            Mode::Live,
            "reader",
            Some(&["a".to_owned(), "b".to_owned()]),
            false,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reread.values[0].value, json!(3));
    assert_eq!(
        reread.values[0].etag, later.etags[0].1,
        "the etag as written"
    );
    assert_ne!(reread.values[0].etag, reread.values[1].etag);
    assert!(reread.values[0].updated_at >= reread.values[1].updated_at);
    assert_eq!(reread.values[1].value, json!(42));
}

async fn settings_default_to_off_and_can_be_turned_on_and_off(db: &TestDb) {
    let store = db.store().await;
    let ws = store.create_workspace("Acme").await.unwrap();
    assert_eq!(ws.name, "Acme");
    assert!(store.list_workspaces().await.unwrap().contains(&ws));
    assert_eq!(
        store.get_settings(ws.id).await.unwrap(),
        Some(Settings::default())
    );
    let on = Settings {
        client_attribute_writes: true,
        identity_verification: vevee_attributes::domain::IdentityVerification::Required,
        allowed_origins: vec![
            "https://*.example.com".into(),
            "http://localhost:3000".into(),
        ],
    };
    assert_eq!(
        store.update_settings(ws.id, on.clone()).await.unwrap(),
        Some(on.clone())
    );
    assert_eq!(store.get_settings(ws.id).await.unwrap(), Some(on.clone()));
    // Every workspace's origins, for preflights: this one's and another's default.
    store.create_workspace("Other").await.unwrap();
    let mut lists = store.list_allowed_origins().await.unwrap();
    lists.sort();
    assert_eq!(lists, vec![vec![], on.allowed_origins.clone()]);
    let off = Settings::default();
    assert_eq!(
        store.update_settings(ws.id, off.clone()).await.unwrap(),
        Some(off.clone())
    );
    assert_eq!(store.get_settings(ws.id).await.unwrap(), Some(off));

    let nowhere = WorkspaceId(uuid::Uuid::new_v4());
    assert_eq!(store.get_settings(nowhere).await.unwrap(), None);
    assert_eq!(store.update_settings(nowhere, on).await.unwrap(), None);
}

async fn migrate_runs_again_harmlessly_and_ping_answers(db: &TestDb) {
    let store = db.store().await;
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    // A second store on the same database (a second replica) migrates too.
    let second = db.store().await;
    second.ping().await.unwrap();
}

#[tokio::test]
async fn an_unknown_scheme_is_a_configuration_error() {
    for url in ["mysql://localhost/db", "no-scheme-at-all"] {
        match storage::connect(url, &StoreOptions::default()).await {
            Ok(_) => panic!("{url} connected"),
            Err(e) => assert!(matches!(e, Error::Config(_)), "{url}: {e:?}"),
        }
    }
}

#[tokio::test]
async fn sqlite_urls_with_and_without_slashes_create_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (url, file) in [
        (
            format!("sqlite://{}/one.db", dir.path().display()),
            "one.db",
        ),
        (format!("sqlite:{}/two.db", dir.path().display()), "two.db"),
    ] {
        let store = storage::connect(&url, &StoreOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        store.migrate().await.unwrap();
        store.ping().await.unwrap();
        assert!(dir.path().join(file).is_file());
    }
}

fn write(ws: WorkspaceId, distinct_id: &str, pairs: &[(&str, Value)]) -> PersonWrite {
    PersonWrite {
        workspace: ws,
        mode: Mode::Live,
        distinct_id: distinct_id.to_owned(),
        values: values(pairs),
    }
}

async fn one_failing_write_in_a_batch_fails_alone_while_its_neighbours_commit(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["email"]).await;
    let results = store
        .write_batch(vec![
            write(ws, "first", &[("email", json!("1@example.com"))]),
            // An undeclared key: this write must fail, and only this one.
            write(
                ws,
                "bad",
                &[("email", json!("x")), ("undeclared", json!(1))],
            ),
            write(ws, "third", &[("email", json!("3@example.com"))]),
        ])
        .await
        .expect("the batch as a whole is not an outage");
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(
        matches!(results[1], Err(Error::Unexpected(_))),
        "{results:?}"
    );
    for (who, expected) in [("first", "1@example.com"), ("third", "3@example.com")] {
        let read = store
            .read_values(ws, Mode::Live, who, None, false)
            .await
            .unwrap()
            .expect("committed");
        assert_eq!(read.values[0].value, json!(expected));
    }
    assert_eq!(
        person_of(store.as_ref(), ws, Mode::Live, "bad")
            .await
            .unwrap(),
        None
    );
}

async fn a_batch_writing_one_person_twice_keeps_the_last_value(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["email", "name"]).await;
    let results = store
        .write_batch(vec![
            write(ws, "ada", &[("email", json!("old@example.com"))]),
            write(ws, "other", &[("name", json!("Bob"))]),
            write(
                ws,
                "ada",
                &[("email", json!("new@example.com")), ("name", json!("Ada"))],
            ),
        ])
        .await
        .unwrap();
    let ids: Vec<PersonId> = results.into_iter().map(|r| r.unwrap().person_id).collect();
    assert_eq!(ids[0], ids[2], "one person");
    assert_ne!(ids[0], ids[1]);
    let read = store
        .read_values(ws, Mode::Live, "ada", None, false)
        .await
        .unwrap()
        .unwrap();
    let pairs: Vec<_> = read
        .values
        .iter()
        .map(|v| (v.key.as_str(), v.value.clone()))
        .collect();
    assert_eq!(
        pairs,
        [("email", json!("new@example.com")), ("name", json!("Ada"))]
    );

    // Again, now that the store has seen "ada": the same person, updated.
    let again = store
        .write_batch(vec![
            write(ws, "ada", &[("name", json!("Ada L."))]),
            write(ws, "newcomer", &[("name", json!("Cy"))]),
        ])
        .await
        .unwrap();
    assert_eq!(again[0].as_ref().unwrap().person_id, ids[0]);
    let read = store
        .read_values(ws, Mode::Live, "ada", Some(&["name".to_owned()]), false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.values[0].value, json!("Ada L."));
    assert!(
        person_of(store.as_ref(), ws, Mode::Live, "newcomer")
            .await
            .unwrap()
            .is_some()
    );
}

/// Two batches in flight, up to 64 operations each.
const LANES: Lanes = Lanes {
    in_flight: 2,
    max_batch: 64,
};

async fn coalesced_concurrent_writes_all_persist_with_their_own_results(db: &TestDb) {
    let raw = db.store().await;
    let ws = workspace_with(&raw, &["n"]).await;
    let store: Arc<dyn ValueStore> = Arc::new(Coalescing::new(
        raw.clone(),
        LANES,
        Some(LANES),
        &vevee_attributes::metrics::Metrics::new(),
    ));
    let mut tasks = JoinSet::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.spawn(async move {
            // Every 10th write names an undeclared key and must fail alone.
            let key = if i % 10 == 3 { "undeclared" } else { "n" };
            let result = store
                .write_values(
                    ws,
                    Mode::Live,
                    &format!("p{i}"),
                    &values(&[(key, json!(i))]),
                )
                .await;
            (i, key, result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, key, result) = joined.unwrap();
        let stored = raw
            .read_values(ws, Mode::Live, &format!("p{i}"), None, false)
            .await
            .unwrap();
        if key == "n" {
            let person = result.expect("a good write succeeds").person_id;
            let stored = stored.expect("its person exists");
            assert_eq!(stored.person_id, person);
            assert_eq!(stored.values[0].value, json!(i));
        } else {
            assert!(result.is_err(), "write {i} must fail");
            assert!(stored.is_none(), "a failed write creates no person");
        }
    }
}

async fn a_batch_of_reads_answers_each_read_as_if_alone(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["a", "b", "old"]).await;
    let other = workspace_with(&store, &["a"]).await;
    for (person, pairs) in [
        (
            "ada",
            vec![("b", json!("2")), ("a", json!("1")), ("old", json!("x"))],
        ),
        ("bob", vec![("a", json!("3"))]),
    ] {
        store
            .write_values(ws, Mode::Live, person, &values(&pairs))
            .await
            .unwrap();
    }
    store
        .write_values(other, Mode::Live, "ada", &values(&[("a", json!("other"))]))
        .await
        .unwrap();
    store
        .write_values(ws, Mode::Test, "ada", &values(&[("a", json!("test"))]))
        .await
        .unwrap();
    // A person whose only value is cleared exists without values.
    store
        .write_values(ws, Mode::Live, "emptied", &values(&[("a", json!("4"))]))
        .await
        .unwrap();
    store
        .clear_value(ws, Mode::Live, "emptied", "a")
        .await
        .unwrap();
    store.set_archived(ws, "old", true).await.unwrap();

    let read = |ws, mode, who: &str, keys: Option<&[&str]>, include_archived| PersonRead {
        workspace: ws,
        mode,
        distinct_id: who.to_owned(),
        keys: keys.map(|k| k.iter().map(|k| (*k).to_owned()).collect()),
        include_archived,
    };
    let reads = vec![
        read(ws, Mode::Live, "ada", None, false),
        read(ws, Mode::Live, "nobody", None, false),
        read(ws, Mode::Live, "ada", None, true),
        read(ws, Mode::Live, "ada", Some(&["b", "old"]), false),
        read(ws, Mode::Live, "ada", Some(&["old"]), true),
        read(ws, Mode::Test, "ada", None, false),
        read(other, Mode::Live, "ada", None, false),
        read(ws, Mode::Live, "bob", Some(&["b"]), false),
        read(ws, Mode::Live, "emptied", None, true),
        read(ws, Mode::Live, "ada", None, false),
    ];
    let batch = store.read_batch(reads.clone()).await.unwrap();
    assert_eq!(batch.len(), reads.len());
    for (read, answer) in reads.iter().zip(&batch) {
        let alone = store
            .read_values(
                read.workspace,
                read.mode,
                &read.distinct_id,
                read.keys.as_deref(),
                read.include_archived,
            )
            .await
            .unwrap();
        assert_eq!(answer, &alone, "{read:?}");
    }
    let keys = |i: usize| -> Option<Vec<String>> {
        batch[i]
            .as_ref()
            .map(|p| p.values.iter().map(|v| v.key.clone()).collect())
    };
    assert_eq!(keys(0), Some(vec!["a".into(), "b".into()]));
    assert_eq!(keys(1), None);
    assert_eq!(keys(2), Some(vec!["a".into(), "b".into(), "old".into()]));
    assert_eq!(keys(3), Some(vec!["b".into()]));
    assert_eq!(keys(4), Some(vec!["old".into()]));
    assert_eq!(keys(5), Some(vec!["a".into()]));
    assert_eq!(batch[6].as_ref().unwrap().values[0].value, json!("other"));
    assert_eq!(keys(7), Some(vec![]));
    assert_eq!(keys(8), Some(vec![]));
    assert_eq!(batch[0], batch[9]);
    assert_ne!(
        batch[0].as_ref().unwrap().person_id,
        batch[5].as_ref().unwrap().person_id
    );
}

async fn a_batch_on_another_replica_finds_existing_persons_and_creates_new_ones_once(db: &TestDb) {
    let first = db.store().await;
    let ws = workspace_with(&first, &["n"]).await;
    let mut ids = Vec::new();
    for who in ["old1", "old2"] {
        let id = first
            .write_values(ws, Mode::Live, who, &values(&[("n", json!("a"))]))
            .await
            .unwrap()
            .person_id;
        ids.push(id);
    }
    // A second store knows no person yet, like a replica just started.
    let second = db.store().await;
    let results = second
        .write_batch(vec![
            write(ws, "old1", &[("n", json!("b"))]),
            write(ws, "new", &[("n", json!("c"))]),
            write(ws, "old2", &[("n", json!("d"))]),
            write(ws, "new", &[("n", json!("e"))]),
        ])
        .await
        .unwrap();
    let results: Vec<PersonId> = results.into_iter().map(|r| r.unwrap().person_id).collect();
    assert_eq!(results[0], ids[0]);
    assert_eq!(results[2], ids[1]);
    assert_eq!(
        results[1], results[3],
        "one new person for both of its writes"
    );
    assert!(!ids.contains(&results[1]));
    for (who, value) in [("old1", "b"), ("old2", "d"), ("new", "e")] {
        assert_eq!(
            read_pairs(&first, ws, Mode::Live, who, false).await,
            values(&[("n", json!(value))])
        );
    }
    assert_eq!(
        person_of(first.as_ref(), ws, Mode::Live, "new")
            .await
            .unwrap(),
        Some(results[1])
    );
}

/// An update of `key` that appends `suffix` to the stored text (or stores
/// it when there is none), with the idempotency key `request`.
fn append(ws: WorkspaceId, key: &str, suffix: &str, request: Option<RequestKey>) -> PersonUpdate {
    let suffix = suffix.to_owned();
    PersonUpdate {
        workspace: ws,
        mode: Mode::Live,
        distinct_id: "p".into(),
        changes: vec![ValueChange {
            key: key.into(),
            if_etag: None,
            decide: Arc::new(move |stored| {
                let before = stored.and_then(Value::as_str).unwrap_or_default();
                Ok(storage::Decision::Write(json!(format!("{before}{suffix}"))))
            }),
        }],
        request,
    }
}

fn request(id: u128, fingerprint: u8) -> Option<RequestKey> {
    Some(RequestKey {
        id: uuid::Uuid::from_u128(id),
        fingerprint: vec![fingerprint],
        annex: json!({"kept": id.to_string()}),
    })
}

async fn updates_of_one_value_in_one_batch_build_on_each_other(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["log"]).await;
    let results = store
        .update_batch(vec![
            append(ws, "log", "a", None),
            append(ws, "log", "b", None),
            append(ws, "log", "c", None),
        ])
        .await
        .unwrap();
    let last = results.last().unwrap().as_ref().unwrap();
    assert_eq!(last.changes[0].value, Some(json!("abc")));
    let persons: HashSet<_> = results
        .iter()
        .map(|r| r.as_ref().unwrap().person_id)
        .collect();
    assert_eq!(persons.len(), 1, "one person created once");
    let read = store
        .read_values(ws, Mode::Live, "p", None, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.values[0].value, json!("abc"));
    assert_eq!(Some(read.values[0].etag), last.changes[0].etag);
}

async fn a_request_repeated_in_one_batch_is_in_progress_and_another_body_is_reused(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["log"]).await;
    let results = store
        .update_batch(vec![
            append(ws, "log", "a", request(1, 1)),
            append(ws, "log", "a", request(1, 1)),
            append(ws, "log", "b", request(1, 2)),
        ])
        .await
        .unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert!(
        matches!(results[1], Err(Error::RequestInProgress)),
        "{results:?}"
    );
    assert!(
        matches!(results[2], Err(Error::RequestReused)),
        "{results:?}"
    );
    // Once committed, a repeat is answered from the record.
    let again = store
        .update_values(append(ws, "log", "a", request(1, 1)))
        .await
        .unwrap();
    let first = results[0].as_ref().unwrap();
    assert_eq!(
        (&again.person_id, &again.changes),
        (&first.person_id, &first.changes)
    );
    assert_eq!(again.replayed_annex, Some(json!({"kept": "1"})));
    assert_eq!(first.replayed_annex, None);
    let read = store
        .read_values(ws, Mode::Live, "p", None, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.values[0].value, json!("a"), "applied once");
}

async fn request_records_are_found_within_their_retention_and_forgotten_after(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["log"]).await;
    let first = store
        .update_values(append(ws, "log", "a", request(7, 9)))
        .await
        .unwrap();
    let found = store
        .find_request(ws, Mode::Live, uuid::Uuid::from_u128(7))
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(found.fingerprint, vec![9]);
    assert_eq!(
        (found.outcome.person_id, found.outcome.changes),
        (first.person_id, first.changes)
    );
    assert_eq!(
        store
            .find_request(ws, Mode::Test, uuid::Uuid::from_u128(7))
            .await
            .unwrap(),
        None,
        "another mode has its own ids"
    );
    let past = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    assert_eq!(store.forget_requests(past).await.unwrap(), 0, "not expired");
    let future = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
    assert_eq!(store.forget_requests(future).await.unwrap(), 1);
    assert_eq!(
        store
            .find_request(ws, Mode::Live, uuid::Uuid::from_u128(7))
            .await
            .unwrap(),
        None
    );
}

async fn a_request_repeated_while_the_first_is_in_flight_waits_or_is_in_progress(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["log"]).await;
    // The first request decides slowly, inside its transaction.
    let mut slow = append(ws, "log", "a", request(3, 3));
    let quick = slow.changes[0].decide.clone();
    slow.changes[0].decide = Arc::new(move |stored| {
        std::thread::sleep(Duration::from_millis(2000));
        quick(stored)
    });
    let first = tokio::spawn({
        let store = store.clone();
        async move { store.update_values(slow).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let repeat = store
        .update_values(append(ws, "log", "a", request(3, 3)))
        .await;
    let first = first.await.unwrap().unwrap();
    if db.url.starts_with("sqlite:") {
        // One writer: the repeat waited for the first and got its outcome.
        assert_eq!(repeat.unwrap().changes, first.changes);
    } else {
        // Replicas don't wait on each other: retry later. (On a loaded
        // machine the repeat can reach the database only once the first
        // has committed, or queue behind its uncommitted record; then it
        // gets the first outcome, which is as right.)
        match repeat {
            Err(Error::RequestInProgress) => {
                let later = store
                    .update_values(append(ws, "log", "a", request(3, 3)))
                    .await
                    .unwrap();
                assert_eq!(later.changes, first.changes);
            }
            Ok(replayed) => assert_eq!(replayed.changes, first.changes),
            Err(other) => panic!("{other:?}"),
        }
    }
    let read = store
        .read_values(ws, Mode::Live, "p", None, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.values[0].value, json!("a"), "applied once");
}

async fn a_person_erased_on_another_replica_is_never_written_under_their_old_id(db: &TestDb) {
    let (a, b) = (db.store().await, db.store().await);
    let ws = workspace_with(&a, &["name", "plan"]).await;
    let w = |who: &str, key: &str, value: &str| PersonWrite {
        workspace: ws,
        mode: Mode::Live,
        distinct_id: who.to_owned(),
        values: vec![(key.to_owned(), json!(value))],
    };
    let first = a
        .write_batch(vec![w("u", "name", "Ada"), w("v", "name", "Bob")])
        .await
        .unwrap();
    let old = first[0].as_ref().unwrap().person_id;
    let bob = first[1].as_ref().unwrap().person_id;
    // Written again, so the replica writes them as persons it remembers.
    a.write_batch(vec![w("u", "plan", "pro")]).await.unwrap();

    assert_eq!(
        b.delete_person(ws, Mode::Live, "u").await.unwrap(),
        Some(old)
    );

    let next = a
        .write_batch(vec![w("u", "name", "Ada again"), w("v", "plan", "free")])
        .await
        .unwrap();
    let new = next[0].as_ref().unwrap().person_id;
    assert_ne!(new, old);
    assert_eq!(
        next[1].as_ref().unwrap().person_id,
        bob,
        "the neighbour stays"
    );
    let later = a.write_batch(vec![w("u", "plan", "team")]).await.unwrap();
    assert_eq!(later[0].as_ref().unwrap().person_id, new);
    let read = b
        .read_values(ws, Mode::Live, "u", None, true)
        .await
        .unwrap()
        .expect("the new person");
    assert_eq!(read.person_id, new);
    let values: Vec<(&str, &Value)> = read
        .values
        .iter()
        .map(|v| (v.key.as_str(), &v.value))
        .collect();
    assert_eq!(
        values,
        [("name", &json!("Ada again")), ("plan", &json!("team"))]
    );

    assert_eq!(
        a.delete_person(ws, Mode::Live, "u").await.unwrap(),
        Some(new)
    );
    assert_eq!(b.delete_person(ws, Mode::Live, "u").await.unwrap(), None);
    let listed = b
        .list_persons(PersonsQuery {
            workspace: ws,
            mode: Mode::Live,
            after: None,
            limit: 10,
            keys: None,
            include_archived: true,
        })
        .await
        .unwrap();
    let ids: Vec<PersonId> = listed.iter().map(|p| p.person_id).collect();
    assert_eq!(ids, [bob]);
}

async fn a_purge_is_held_by_one_lease_at_a_time_and_a_failed_one_frees_the_attribute(db: &TestDb) {
    let store = db.store().await;
    let ws = workspace_with(&store, &["plan"]).await;
    for i in 0..5 {
        store
            .write_values(
                ws,
                Mode::Live,
                &format!("p{i}"),
                &values(&[("plan", json!("x"))]),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        store.start_purge(ws, "plan").await.unwrap(),
        PurgeStart::NotArchived
    );
    assert_eq!(
        store.start_purge(ws, "nope").await.unwrap(),
        PurgeStart::NotFound
    );
    store.set_archived(ws, "plan", true).await.unwrap().unwrap();
    let PurgeStart::Started(op) = store.start_purge(ws, "plan").await.unwrap() else {
        panic!("a purge starts");
    };
    assert_eq!(
        store.start_purge(ws, "plan").await.unwrap(),
        PurgeStart::Running(op.clone())
    );
    // Unarchiving is refused while the purge runs.
    assert!(
        store
            .set_archived(ws, "plan", false)
            .await
            .unwrap()
            .is_none()
    );

    let now = 1_000_000;
    let a = Lease {
        owner: uuid::Uuid::new_v4(),
        expires_ms: now + 1000,
    };
    let b = Lease {
        owner: uuid::Uuid::new_v4(),
        expires_ms: now + 5000,
    };
    let claimed = store
        .claim_operation(a, now)
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!((claimed.id, claimed.attempts), (op.id, 1));
    assert_eq!(store.claim_operation(b, now + 500).await.unwrap(), None);
    assert_eq!(store.purge_batch(&claimed, a, 2).await.unwrap(), Some(2));
    // By `far`, A's lease (renewed to `now` + 1 s) has expired: B takes the
    // purge over, and A's next step finds out.
    let far = chrono::Utc::now().timestamp_millis() + 10_000;
    let b = Lease {
        expires_ms: far + 5000,
        ..b
    };
    let taken = store
        .claim_operation(b, far)
        .await
        .unwrap()
        .expect("taken over");
    assert_eq!((taken.attempts, taken.values_deleted), (2, 2));
    assert!(taken.resume_after.is_some());
    assert_eq!(store.purge_batch(&claimed, a, 2).await.unwrap(), None);
    assert_eq!(
        store.finish_purge(&claimed, a).await.unwrap(),
        PurgeEnd::LeaseLost
    );
    assert!(!store.fail_operation(&claimed, a, 13, "x").await.unwrap());

    // B fails it: the operation ends with the error, the attribute keeps
    // its remaining values and may be unarchived again.
    assert!(store.fail_operation(&taken, b, 13, "broken").await.unwrap());
    let failed = store.get_operation(ws, op.id).await.unwrap().unwrap();
    assert!(failed.done);
    assert_eq!(failed.error_code, Some(13));
    assert_eq!(failed.error_message.as_deref(), Some("broken"));
    assert_eq!(failed.resume_after, None);
    assert_eq!(store.claim_operation(b, far).await.unwrap(), None);
    let listed = store.list_operations(ws, None, 10).await.unwrap();
    assert_eq!(listed, [failed]);
    let record = store
        .set_archived(ws, "plan", false)
        .await
        .unwrap()
        .unwrap();
    assert!(!record.archived);
    let mut kept = 0;
    for i in 0..5 {
        let person = store
            .read_values(ws, Mode::Live, &format!("p{i}"), None, true)
            .await
            .unwrap()
            .unwrap();
        kept += person.values.len();
    }
    assert_eq!(kept, 3, "the values not yet deleted are kept");
}
