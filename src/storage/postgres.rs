//! The PostgreSQL store, for a fleet of replicas sharing one database.
//!
//! Every write is a single statement: PostgreSQL runs it atomically without a
//! `BEGIN`, in one round trip, and there is no transaction a cancelled
//! request could leave open. Concurrency relies on READ COMMITTED semantics
//! of `INSERT .. ON CONFLICT`, explained where it matters.

use std::{future::Future, pin::Pin, str::FromStr, sync::Arc};

use async_trait::async_trait;
use quick_cache::sync::Cache;
use serde_json::Value;
use sqlx::error::DatabaseError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{
    PgConnectOptions, PgConnection, PgDatabaseError, PgPool, PgPoolOptions, Postgres,
};
use tracing::instrument;
use uuid::Uuid;

use crate::{
    domain::{Etag, Mode, PersonId, WorkspaceId},
    storage::{
        BatchPersonRow, Cleared, Error, PersonRead, PersonUpdate, PersonValues, PersonWrite,
        REQUEST_RETENTION, Receipt, RecordedRequest, Result, Stamped, StoreOptions, Updated,
        ValueStore, admin, answer_reads, detached, now, operations, stamp,
        update::{self, Owner, Plan, Snapshot},
    },
};

/// A [`Store`](super::Store) on PostgreSQL.
pub(crate) struct PgStore {
    /// Shared by all operations; cloning it is cheap (an `Arc`), which lets
    /// each operation own a handle inside its detached task.
    pool: PgPool,
    /// Connections of the hot paths (values read and written), kept between
    /// uses; see [`Held`].
    held: Arc<Held>,
    /// Persons seen by this process. Persons are never deleted and their
    /// person_id never changes, so an entry can't go stale; a batch writing
    /// only known persons skips the person upsert (a row update each).
    persons: Cache<(WorkspaceId, Mode, String), PersonId>,
}

/// Most persons remembered (about 100 bytes each).
const KNOWN_PERSONS: usize = 200_000;

impl PgStore {
    /// Opens the pool and one connection to prove the database is there.
    pub(crate) async fn connect(url: &str, opts: &StoreOptions) -> Result<Self> {
        let connect_options =
            PgConnectOptions::from_str(url).map_err(|e| Error::Config(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect_options)
            .await?;
        // Half the pool at most (none of a pool of one), so that
        // definitions, keys and the health probe always find a connection.
        let held = Held::new(pool.clone(), (opts.max_connections / 2) as usize);
        Ok(PgStore {
            pool,
            held: Arc::new(held),
            persons: Cache::new(KNOWN_PERSONS),
        })
    }
}

/// A query future borrowing its connection.
type OnConnection<'c, T> = Pin<Box<dyn Future<Output = sqlx::Result<T>> + Send + 'c>>;

/// Connections taken from the pool and kept between queries.
///
/// sqlx tests every connection that goes back to its pool with a round trip
/// (a `Sync` message answered by `ReadyForQuery`), which doubles the round
/// trips and database wake-ups of a one-query operation. The hot paths run
/// on connections kept here instead: a connection comes back after a query
/// that succeeded (so it is idle and in sync); after any failure it goes
/// back to the pool, which tests or closes it, and after an outage every
/// kept connection does too, since they likely share the fault.
struct Held {
    pool: PgPool,
    idle: std::sync::Mutex<Vec<PoolConnection<Postgres>>>,
    max_idle: usize,
}

impl Held {
    fn new(pool: PgPool, max_idle: usize) -> Self {
        Self {
            pool,
            idle: std::sync::Mutex::new(Vec::with_capacity(max_idle)),
            max_idle,
        }
    }

    /// A kept connection, or a new one from the pool.
    async fn take(&self) -> Result<PoolConnection<Postgres>> {
        let kept = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match kept {
            Some(conn) => Ok(conn),
            None => Ok(self.pool.acquire().await?),
        }
    }

    /// Keeps `conn` after `outcome`, or lets it go back to the pool.
    fn give_back<T>(&self, conn: PoolConnection<Postgres>, outcome: &Result<T>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(_) if idle.len() < self.max_idle => idle.push(conn),
            Err(Error::Unavailable(_)) => idle.clear(),
            _ => {}
        }
    }

    /// Runs `op` on a kept connection.
    async fn run<T, F>(&self, op: F) -> Result<T>
    where
        F: for<'c> FnOnce(&'c mut PgConnection) -> OnConnection<'c, T>,
    {
        let mut conn = self.take().await?;
        let outcome = op(&mut conn).await.map_err(Error::from);
        self.give_back(conn, &outcome);
        outcome
    }
}

/// Whether a PostgreSQL error means the database is (for now) out of reach:
/// connection exceptions (class 08), an administrator or crash shutdown or a
/// server still starting (57P01-57P03), or no connection slot left (53300).
pub(crate) fn is_outage(err: &dyn DatabaseError) -> bool {
    let Some(pg) = err.try_downcast_ref::<PgDatabaseError>() else {
        return false;
    };
    let code = pg.code();
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

// The migrator takes an advisory lock, so replicas starting together apply
// each migration once.
operations::sql_operation_store!(PgStore {
    reads: pool,
    writes: pool,
});

admin::sql_admin_store!(PgStore {
    reads: pool,
    writes: pool,
    migrator: sqlx::migrate!("./migrations/postgres"),
});

#[async_trait]
impl ValueStore for PgStore {
    #[instrument(level = "debug", skip_all, fields(values = values.len()))]
    async fn write_values(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
        values: &[(String, Value)],
    ) -> Result<Receipt> {
        let held = self.held.clone();
        let distinct_id = distinct_id.to_owned();
        let stamped = stamp(values);
        let keys: Vec<String> = stamped.iter().map(|(k, _, _)| k.clone()).collect();
        let values: Vec<Value> = stamped.iter().map(|(_, v, _)| v.clone()).collect();
        let etags: Vec<Etag> = stamped.iter().map(|(_, _, e)| *e).collect();
        let person: PersonId = detached(async move {
            held.run(move |conn| {
                Box::pin(async move {
                    // One statement, so all or nothing without a BEGIN.
                    //
                    // The person upsert uses DO UPDATE, not DO NOTHING: under READ
                    // COMMITTED, DO NOTHING returns no row when another transaction
                    // inserted the person concurrently, and a follow-up SELECT in
                    // the same statement cannot see that row (same snapshot). DO
                    // UPDATE waits for the other insert, locks its row and returns
                    // its person_id, so concurrent first writes agree on one person.
                    // Setting distinct_id to itself changes no indexed value, so the
                    // update is a cheap HOT update. The row lock it takes also
                    // serialises concurrent writes to one person, so the last
                    // committed write of an attribute wins cleanly.
                    sqlx::query_scalar(
                        "WITH person AS ( \
                     INSERT INTO persons (workspace_id, mode, distinct_id, person_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (workspace_id, mode, distinct_id) \
                     DO UPDATE SET distinct_id = EXCLUDED.distinct_id \
                     RETURNING person_id \
                 ), written AS ( \
                     INSERT INTO attribute_values \
                         (workspace_id, person_id, attribute_key, value, updated_at, etag) \
                     SELECT $1, person.person_id, v.key, v.value, $5, v.etag \
                     FROM person \
                     CROSS JOIN unnest($6::text[], $7::jsonb[], $8::uuid[]) AS v (key, value, etag) \
                     ON CONFLICT (workspace_id, person_id, attribute_key) \
                     DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at, \
                                   etag = EXCLUDED.etag \
                 ) \
                 SELECT person_id FROM person",
                    )
                    .bind(ws)
                    .bind(mode.as_str())
                    .bind(distinct_id)
                    .bind(PersonId(Uuid::now_v7()))
                    .bind(now())
                    .bind(keys)
                    .bind(values)
                    .bind(etags)
                    .fetch_one(conn)
                    .await
                })
            })
            .await
        })
        .await?;
        Ok(Receipt::new(person, &stamped))
    }

    #[instrument(level = "debug", skip_all, fields(writes = writes.len()))]
    async fn write_batch(&self, writes: Vec<PersonWrite>) -> Result<Vec<Result<Receipt>>> {
        let held = self.held.clone();
        let mut known = Vec::with_capacity(writes.len());
        for w in &writes {
            let key = (w.workspace, w.mode, w.distinct_id.clone());
            known.push(self.persons.get(&key));
        }
        let stamped: Vec<Vec<Stamped>> = writes.iter().map(|w| stamp(&w.values)).collect();
        let batch = BatchArrays::new(&writes, &stamped, &known);
        let all = detached(async move { held.run(|conn| Box::pin(batch.write(conn))).await }).await;
        match all {
            Ok(ids) => {
                for (w, (id, known)) in writes.iter().zip(ids.iter().zip(&known)) {
                    if known.is_none() {
                        let key = (w.workspace, w.mode, w.distinct_id.clone());
                        self.persons.insert(key, *id);
                    }
                }
                Ok(ids
                    .into_iter()
                    .zip(&stamped)
                    .map(|(id, stamped)| Ok(Receipt::new(id, stamped)))
                    .collect())
            }
            Err(e @ Error::Unavailable(_)) => Err(e),
            // One statement is all or nothing; so that one bad write fails
            // alone, the batch is retried one write at a time.
            Err(e) => {
                tracing::debug!(error = %e, "batch failed; writing one at a time");
                let mut results = Vec::with_capacity(writes.len());
                for w in writes {
                    let result = self
                        .write_values(w.workspace, w.mode, &w.distinct_id, &w.values)
                        .await;
                    match result {
                        Err(e @ Error::Unavailable(_)) => return Err(e),
                        other => results.push(other),
                    }
                }
                Ok(results)
            }
        }
    }

    #[instrument(level = "debug", skip_all)]
    async fn read_values(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
        keys: Option<&[String]>,
        include_archived: bool,
    ) -> Result<Option<PersonValues>> {
        let read = PersonRead::new(ws, mode, distinct_id, keys, include_archived);
        Ok(self.read_batch(vec![read]).await?.pop().flatten())
    }

    #[instrument(level = "debug", skip_all, fields(reads = reads.len()))]
    async fn read_batch(&self, reads: Vec<PersonRead>) -> Result<Vec<Option<PersonValues>>> {
        let held = self.held.clone();
        detached(async move {
            let mut idx = Vec::with_capacity(reads.len());
            let mut workspaces = Vec::with_capacity(reads.len());
            let mut modes = Vec::with_capacity(reads.len());
            let mut distinct_ids = Vec::with_capacity(reads.len());
            for (i, read) in reads.iter().enumerate() {
                idx.push(i32::try_from(i).expect("batches are far smaller than 2^31"));
                workspaces.push(read.workspace);
                modes.push(read.mode.as_str());
                distinct_ids.push(read.distinct_id.clone());
            }
            // One query for every read: a person matches its input row by
            // primary key, and its values come by primary-key prefix with
            // their definition's archived flag, so the key and archive
            // filters of each read are applied here rather than in SQL. An
            // unknown person has no row; a person's values come as arrays
            // in one row (NULL without values): one row per read instead of
            // one per value cut the server's decoding work. The archived
            // definitions of the batch's workspaces (usually none) are
            // looked up once, not once per value: that halved the query's
            // time for 32 persons.
            let rows: Vec<BatchPersonRow> = held
                .run(move |conn| {
                    Box::pin(async move {
                        sqlx::query_as(
                            "WITH archived AS MATERIALIZED ( \
                                 SELECT workspace_id, key FROM attribute_definitions \
                                 WHERE archived AND workspace_id = ANY ($2) \
                             ) \
                             SELECT i.idx, p.person_id, v.keys, v.vals, v.times, v.etags, \
                                    v.archived \
                             FROM unnest($1::int4[], $2::uuid[], $3::text[], $4::text[]) \
                                 AS i (idx, workspace_id, mode, distinct_id) \
                             JOIN persons p \
                               ON p.workspace_id = i.workspace_id AND p.mode = i.mode \
                              AND p.distinct_id = i.distinct_id COLLATE \"C\" \
                             CROSS JOIN LATERAL ( \
                                 SELECT array_agg(x.attribute_key) AS keys, \
                                        array_agg(x.value) AS vals, \
                                        array_agg(x.updated_at) AS times, \
                                        array_agg(x.etag) AS etags, \
                                        array_agg(a.key IS NOT NULL) AS archived \
                                 FROM attribute_values x \
                                 LEFT JOIN archived a \
                                   ON a.workspace_id = x.workspace_id \
                                  AND a.key = x.attribute_key \
                                 WHERE x.workspace_id = p.workspace_id \
                                   AND x.person_id = p.person_id \
                             ) v",
                        )
                        .bind(idx)
                        .bind(workspaces)
                        .bind(modes)
                        .bind(distinct_ids)
                        .fetch_all(conn)
                        .await
                    })
                })
                .await?;
            Ok(answer_reads(&reads, rows))
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(updates = updates.len()))]
    async fn update_batch(&self, updates: Vec<PersonUpdate>) -> Result<Vec<Result<Updated>>> {
        let held = self.held.clone();
        let updates = Arc::new(updates);
        detached(async move {
            // Each try either commits or finds that a value or person was
            // created concurrently after the read (and writes nothing); a
            // retry then finds and locks it, so tries are few. The bound is
            // only a guard against a defect looping forever.
            for _ in 0..UPDATE_TRIES {
                let batch = updates.clone();
                let outcome = held
                    .run(move |conn| Box::pin(async move { update_once(conn, &batch).await }))
                    .await?;
                if let Some(results) = outcome {
                    return Ok(results);
                }
            }
            Err(Error::Unexpected(
                format!("an update batch conflicted {UPDATE_TRIES} times in a row").into(),
            ))
        })
        .await
    }

    #[instrument(level = "debug", skip_all)]
    async fn preview_update(&self, update: PersonUpdate) -> Result<Updated> {
        let held = self.held.clone();
        detached(async move {
            let updates = Arc::new(vec![update]);
            let batch = updates.clone();
            let snapshot = held
                .run(move |conn| {
                    Box::pin(async move { read_snapshot(conn, &batch, READ_VALUES).await })
                })
                .await?;
            update::preview(&updates, snapshot)
        })
        .await
    }

    #[instrument(level = "debug", skip_all)]
    async fn find_request(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        request_id: Uuid,
    ) -> Result<Option<RecordedRequest>> {
        let pool = self.pool.clone();
        detached(async move {
            let row: Option<(Vec<u8>, Value)> = sqlx::query_as(
                "SELECT fingerprint, response FROM requests \
                 WHERE workspace_id = $1 AND mode = $2 AND request_id = $3 AND created_at > $4",
            )
            .bind(ws)
            .bind(mode.as_str())
            .bind(request_id)
            .bind(now() - REQUEST_RETENTION)
            .fetch_optional(&pool)
            .await?;
            row.map(|(fingerprint, response)| {
                let outcome = update::outcome_from_json(&response)
                    .ok_or_else(|| Error::Unexpected("a request record holds no outcome".into()))?;
                Ok(RecordedRequest {
                    fingerprint,
                    outcome,
                })
            })
            .transpose()
        })
        .await
    }

    #[instrument(level = "debug", skip_all)]
    async fn forget_requests(&self, before: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        let pool = self.pool.clone();
        detached(async move {
            let done = sqlx::query("DELETE FROM requests WHERE created_at < $1")
                .bind(before)
                .execute(&pool)
                .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    #[instrument(level = "debug", skip_all)]
    async fn clear_value(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
        key: &str,
    ) -> Result<Option<Cleared>> {
        let held = self.held.clone();
        let distinct_id = distinct_id.to_owned();
        let key = key.to_owned();
        detached(async move {
            held.run(move |conn| {
                Box::pin(async move {
                    let row: Option<(PersonId, bool)> = sqlx::query_as(
                        "WITH person AS ( \
                     SELECT person_id FROM persons \
                     WHERE workspace_id = $1 AND mode = $2 AND distinct_id = $3 \
                 ), cleared AS ( \
                     DELETE FROM attribute_values v USING person \
                     WHERE v.workspace_id = $1 AND v.person_id = person.person_id \
                       AND v.attribute_key = $4 \
                     RETURNING 1 \
                 ) \
                 SELECT person_id, EXISTS (SELECT 1 FROM cleared) FROM person",
                    )
                    .bind(ws)
                    .bind(mode.as_str())
                    .bind(distinct_id)
                    .bind(key)
                    .fetch_optional(conn)
                    .await?;
                    Ok(row.map(|(person_id, cleared)| Cleared { person_id, cleared }))
                })
            })
            .await
        })
        .await
    }
}

/// How often an update batch is tried before it is reported as a defect.
const UPDATE_TRIES: usize = 32;

/// The stored values an update batch reads, by primary key.
const READ_VALUES: &str = "SELECT v.person_id, v.attribute_key, v.value, v.etag \
     FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS k (workspace_id, person_id, key) \
     JOIN attribute_values v \
       ON v.workspace_id = k.workspace_id AND v.person_id = k.person_id \
      AND v.attribute_key = k.key COLLATE \"C\"";

/// [`READ_VALUES`], locking each row until commit, in primary-key order
/// (the order every batch writes in, so lockers never deadlock).
const LOCK_VALUES: &str = "SELECT v.person_id, v.attribute_key, v.value, v.etag \
     FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS k (workspace_id, person_id, key) \
     JOIN attribute_values v \
       ON v.workspace_id = k.workspace_id AND v.person_id = k.person_id \
      AND v.attribute_key = k.key COLLATE \"C\" \
     ORDER BY v.workspace_id, v.person_id, v.attribute_key \
     FOR UPDATE OF v";

/// Each update's person and their stored values under the keys the batch
/// changes, read with `values_query` ([`READ_VALUES`] or [`LOCK_VALUES`]).
async fn read_snapshot(
    conn: &mut PgConnection,
    updates: &[PersonUpdate],
    values_query: &'static str,
) -> sqlx::Result<Snapshot> {
    let mut idx = Vec::with_capacity(updates.len());
    let mut workspaces = Vec::with_capacity(updates.len());
    let mut modes = Vec::with_capacity(updates.len());
    let mut distinct_ids = Vec::with_capacity(updates.len());
    for (i, u) in updates.iter().enumerate() {
        idx.push(i32::try_from(i).expect("batches are far smaller than 2^31"));
        workspaces.push(u.workspace);
        modes.push(u.mode.as_str());
        distinct_ids.push(u.distinct_id.clone());
    }
    let found: Vec<(i32, PersonId)> = sqlx::query_as(
        "SELECT i.idx, p.person_id \
         FROM unnest($1::int4[], $2::uuid[], $3::text[], $4::text[]) \
             AS i (idx, workspace_id, mode, distinct_id) \
         JOIN persons p ON p.workspace_id = i.workspace_id AND p.mode = i.mode \
                       AND p.distinct_id = i.distinct_id COLLATE \"C\"",
    )
    .bind(idx)
    .bind(workspaces)
    .bind(modes)
    .bind(distinct_ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut persons = vec![None; updates.len()];
    for (i, person) in found {
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| persons.get_mut(i)) {
            *slot = Some(person);
        }
    }
    let keys = update::keys_of(updates, &persons);
    let mut values = std::collections::HashMap::with_capacity(keys.len());
    if !keys.is_empty() {
        let (mut ws, mut ids, mut names) = (Vec::new(), Vec::new(), Vec::new());
        for (w, p, k) in keys {
            ws.push(w);
            ids.push(p);
            names.push(k);
        }
        let rows: Vec<(PersonId, String, Value, Etag)> = sqlx::query_as(values_query)
            .bind(ws)
            .bind(ids)
            .bind(names)
            .fetch_all(&mut *conn)
            .await?;
        for (person, key, value, etag) in rows {
            values.insert((person, key), (value, etag));
        }
    }
    Ok(Snapshot { persons, values })
}

/// One try of an update batch in one transaction: lock and read the values,
/// plan, write every planned row only over the version read, commit. `None`
/// (after rolling back) when a row or person the read did not see appeared
/// in the meantime; a deadlock counts as that too.
async fn update_once(
    conn: &mut PgConnection,
    updates: &[PersonUpdate],
) -> sqlx::Result<Option<Vec<Result<Updated>>>> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    let outcome = async {
        let at = now();
        let (held, recorded) = hold_requests(&mut tx, updates, at).await?;
        let triaged = update::triage(updates, &held, &recorded);
        let open: Vec<PersonUpdate> = updates
            .iter()
            .zip(&triaged)
            .filter(|(_, early)| early.is_none())
            .map(|(u, _)| u.clone())
            .collect();
        let snapshot = read_snapshot(&mut tx, &open, LOCK_VALUES).await?;
        let plan = update::plan(&open, snapshot);
        if !write_plan(&mut tx, &plan).await? {
            return Ok(None);
        }
        record_requests(&mut tx, update::records_of(&open, &plan.results), at).await?;
        Ok::<_, sqlx::Error>(Some(update::merge(triaged, plan.results)))
    }
    .await;
    match outcome {
        Ok(Some(results)) => {
            tx.commit().await?;
            Ok(Some(results))
        }
        Ok(None) => {
            tx.rollback().await?;
            Ok(None)
        }
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("40P01") => {
            tx.rollback().await?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The advisory lock key of a request slot: requests are held by
/// transaction-scoped advisory locks, which (unlike a row not yet committed)
/// another transaction can test without waiting.
fn request_lock(slot: &update::RequestSlot) -> i64 {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(slot.0.0.as_bytes());
    hash.update(slot.1.as_str().as_bytes());
    hash.update(slot.2.as_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Takes the lock of each update's request (if it has one) without
/// waiting, and reads the records of the ones it got. `held[i]` is false
/// when another transaction is applying the same request right now.
async fn hold_requests(
    tx: &mut PgConnection,
    updates: &[PersonUpdate],
    at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<(
    Vec<bool>,
    std::collections::HashMap<update::RequestSlot, RecordedRequest>,
)> {
    let slots: Vec<Option<update::RequestSlot>> = updates
        .iter()
        .map(|u| u.request.as_ref().map(|k| (u.workspace, u.mode, k.id)))
        .collect();
    let mut held = vec![true; updates.len()];
    let mut recorded = std::collections::HashMap::new();
    let wanted: Vec<(usize, update::RequestSlot)> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .collect();
    if wanted.is_empty() {
        return Ok((held, recorded));
    }
    let locks: Vec<i64> = wanted.iter().map(|(_, s)| request_lock(s)).collect();
    let got: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(l.key) \
         FROM unnest($1::int8[]) WITH ORDINALITY AS l (key, ord) ORDER BY l.ord",
    )
    .bind(locks)
    .fetch_all(&mut *tx)
    .await?;
    let (mut ws, mut modes, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for ((i, slot), got) in wanted.iter().zip(got) {
        held[*i] = got;
        if got {
            ws.push(slot.0);
            modes.push(slot.1.as_str());
            ids.push(slot.2);
        }
    }
    if ids.is_empty() {
        return Ok((held, recorded));
    }
    let rows: Vec<(WorkspaceId, String, Uuid, Vec<u8>, Value)> = sqlx::query_as(
        "SELECT r.workspace_id, r.mode, r.request_id, r.fingerprint, r.response \
         FROM unnest($1::uuid[], $2::text[], $3::uuid[]) AS k (workspace_id, mode, request_id) \
         JOIN requests r ON r.workspace_id = k.workspace_id AND r.mode = k.mode \
                        AND r.request_id = k.request_id \
         WHERE r.created_at > $4",
    )
    .bind(ws)
    .bind(modes)
    .bind(ids)
    .bind(at - REQUEST_RETENTION)
    .fetch_all(&mut *tx)
    .await?;
    for (w, mode, id, fingerprint, response) in rows {
        let (Some(mode), Some(outcome)) =
            (Mode::parse(&mode), update::outcome_from_json(&response))
        else {
            return Err(sqlx::Error::Protocol(
                "a request record holds no outcome".into(),
            ));
        };
        recorded.insert(
            (w, mode, id),
            RecordedRequest {
                fingerprint,
                outcome,
            },
        );
    }
    Ok((held, recorded))
}

/// Stores the records of the requests a batch applied. A record past its
/// retention may still be there (the sweep runs periodically); the new
/// request takes its place.
async fn record_requests(
    tx: &mut PgConnection,
    records: Vec<(update::RequestSlot, Vec<u8>, Value)>,
    at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let (mut ws, mut modes, mut ids, mut prints, mut responses) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((w, mode, id), fingerprint, response) in records {
        ws.push(w);
        modes.push(mode.as_str());
        ids.push(id);
        prints.push(fingerprint);
        responses.push(response);
    }
    sqlx::query(
        "INSERT INTO requests \
             (workspace_id, mode, request_id, fingerprint, response, created_at) \
         SELECT r.workspace_id, r.mode, r.request_id, r.fingerprint, r.response, $6 \
         FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::bytea[], $5::jsonb[]) \
             AS r (workspace_id, mode, request_id, fingerprint, response) \
         ON CONFLICT (workspace_id, mode, request_id) DO UPDATE SET \
             fingerprint = EXCLUDED.fingerprint, response = EXCLUDED.response, \
             created_at = EXCLUDED.created_at",
    )
    .bind(ws)
    .bind(modes)
    .bind(ids)
    .bind(prints)
    .bind(responses)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Creates the plan's persons and writes its rows, each only over the etag
/// it was read with (or only where none existed): `false` when any of them
/// found something else, so the caller rolls back and tries again.
async fn write_plan(tx: &mut PgConnection, plan: &Plan) -> sqlx::Result<bool> {
    let at = now();
    if !plan.new_persons.is_empty() {
        let mut people: Vec<_> = plan.new_persons.iter().collect();
        // Key order, as the batch write locks persons in.
        people.sort_by(|a, b| {
            (a.workspace.0, a.mode.as_str(), &a.distinct_id).cmp(&(
                b.workspace.0,
                b.mode.as_str(),
                &b.distinct_id,
            ))
        });
        let ws: Vec<WorkspaceId> = people.iter().map(|p| p.workspace).collect();
        let modes: Vec<&str> = people.iter().map(|p| p.mode.as_str()).collect();
        let dids: Vec<String> = people.iter().map(|p| p.distinct_id.clone()).collect();
        let ids: Vec<PersonId> = people.iter().map(|p| p.person_id).collect();
        // DO UPDATE returns the row of a person created concurrently, whose
        // id then differs from ours: the batch was planned without their
        // values, so it starts again.
        let got: Vec<PersonId> = sqlx::query_scalar(
            "INSERT INTO persons (workspace_id, mode, distinct_id, person_id, created_at) \
             SELECT n.workspace_id, n.mode, n.distinct_id, n.person_id, $5 \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[]) \
                 WITH ORDINALITY AS n (workspace_id, mode, distinct_id, person_id, ord) \
             ORDER BY n.ord \
             ON CONFLICT (workspace_id, mode, distinct_id) \
             DO UPDATE SET distinct_id = EXCLUDED.distinct_id \
             RETURNING person_id",
        )
        .bind(ws)
        .bind(modes)
        .bind(dids)
        .bind(&ids)
        .bind(at)
        .fetch_all(&mut *tx)
        .await?;
        if got.len() != ids.len() || got.iter().any(|id| !ids.contains(id)) {
            return Ok(false);
        }
    }
    let person_of = |owner: Owner| match owner {
        Owner::Known(id) => id,
        Owner::New(i) => plan.new_persons[i].person_id,
    };
    let mut upd = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut ins = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut del = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for row in &plan.rows {
        let person = person_of(row.owner);
        match (&row.new, row.expected) {
            (Some((value, etag)), Some(expected)) => {
                upd.0.push(row.workspace);
                upd.1.push(person);
                upd.2.push(row.key.clone());
                upd.3.push(value.clone());
                upd.4.push(*etag);
                upd.5.push(expected);
            }
            (Some((value, etag)), None) => {
                ins.0.push(row.workspace);
                ins.1.push(person);
                ins.2.push(row.key.clone());
                ins.3.push(value.clone());
                ins.4.push(*etag);
            }
            (None, Some(expected)) => {
                del.0.push(row.workspace);
                del.1.push(person);
                del.2.push(row.key.clone());
                del.3.push(expected);
            }
            (None, None) => {}
        }
    }
    let wanted = (upd.0.len() as i64, ins.0.len() as i64, del.0.len() as i64);
    if wanted == (0, 0, 0) {
        return Ok(true);
    }
    let counts: (i64, i64, i64) = sqlx::query_as(
        "WITH upd AS ( \
             UPDATE attribute_values v \
             SET value = u.value, etag = u.etag, updated_at = $16 \
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::uuid[], \
                         $6::uuid[]) AS u (workspace_id, person_id, key, value, etag, expected) \
             WHERE v.workspace_id = u.workspace_id AND v.person_id = u.person_id \
               AND v.attribute_key = u.key COLLATE \"C\" AND v.etag = u.expected \
             RETURNING 1 \
         ), ins AS ( \
             INSERT INTO attribute_values \
                 (workspace_id, person_id, attribute_key, value, updated_at, etag) \
             SELECT i.workspace_id, i.person_id, i.key, i.value, $16, i.etag \
             FROM unnest($7::uuid[], $8::uuid[], $9::text[], $10::jsonb[], $11::uuid[]) \
                 AS i (workspace_id, person_id, key, value, etag) \
             ON CONFLICT (workspace_id, person_id, attribute_key) DO NOTHING \
             RETURNING 1 \
         ), del AS ( \
             DELETE FROM attribute_values v \
             USING unnest($12::uuid[], $13::uuid[], $14::text[], $15::uuid[]) \
                 AS d (workspace_id, person_id, key, expected) \
             WHERE v.workspace_id = d.workspace_id AND v.person_id = d.person_id \
               AND v.attribute_key = d.key COLLATE \"C\" AND v.etag = d.expected \
             RETURNING 1 \
         ) \
         SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM ins), \
                (SELECT count(*) FROM del)",
    )
    .bind(upd.0)
    .bind(upd.1)
    .bind(upd.2)
    .bind(upd.3)
    .bind(upd.4)
    .bind(upd.5)
    .bind(ins.0)
    .bind(ins.1)
    .bind(ins.2)
    .bind(ins.3)
    .bind(ins.4)
    .bind(del.0)
    .bind(del.1)
    .bind(del.2)
    .bind(del.3)
    .bind(at)
    .fetch_one(&mut *tx)
    .await?;
    Ok(counts == wanted)
}

/// A batch of writes as the parallel arrays one statement unnests.
struct BatchArrays {
    /// Per write: its index, workspace, mode, distinct_id, whether its
    /// person is known, and its person_id: the known one, or the one it
    /// gets if the person is new.
    idx: Vec<i32>,
    workspaces: Vec<WorkspaceId>,
    modes: Vec<&'static str>,
    distinct_ids: Vec<String>,
    known: Vec<bool>,
    person_ids: Vec<PersonId>,
    /// Per value: the index of its write, its key and value.
    value_idx: Vec<i32>,
    keys: Vec<String>,
    values: Vec<Value>,
    etags: Vec<Etag>,
}

impl BatchArrays {
    fn new(writes: &[PersonWrite], stamped: &[Vec<Stamped>], known: &[Option<PersonId>]) -> Self {
        let mut arrays = BatchArrays {
            idx: Vec::with_capacity(writes.len()),
            workspaces: Vec::with_capacity(writes.len()),
            modes: Vec::with_capacity(writes.len()),
            distinct_ids: Vec::with_capacity(writes.len()),
            known: Vec::with_capacity(writes.len()),
            person_ids: Vec::with_capacity(writes.len()),
            value_idx: Vec::new(),
            keys: Vec::new(),
            values: Vec::new(),
            etags: Vec::new(),
        };
        for (i, ((write, stamped), known)) in writes.iter().zip(stamped).zip(known).enumerate() {
            let i = i32::try_from(i).expect("batches are far smaller than 2^31");
            arrays.idx.push(i);
            arrays.workspaces.push(write.workspace);
            arrays.modes.push(write.mode.as_str());
            arrays.distinct_ids.push(write.distinct_id.clone());
            arrays.known.push(known.is_some());
            arrays
                .person_ids
                .push(known.unwrap_or_else(|| PersonId(Uuid::now_v7())));
            for (key, value, etag) in stamped {
                arrays.value_idx.push(i);
                arrays.keys.push(key.clone());
                arrays.values.push(value.clone());
                arrays.etags.push(*etag);
            }
        }
        arrays
    }

    /// Writes every person and value in ONE statement (one round trip, no
    /// BEGIN) and returns each write's person, in order.
    ///
    /// Persons this process already knows are not touched (their values are
    /// upserted directly), nor are persons the statement finds by a plain
    /// read: rewriting an existing person row costs a row version, WAL and,
    /// after a checkpoint, a full page image, which dominated writes over a
    /// million persons. Persons not found are upserted as in `write_values`
    /// (DO UPDATE, so concurrent first writes agree, including with a person
    /// inserted after this statement's snapshot), in key order so that
    /// concurrent batches lock rows in one global order and cannot deadlock
    /// each other. A person or
    /// value written twice in the batch keeps its last write (DISTINCT ON
    /// with the highest index): one statement may not update a row twice.
    async fn write(self, conn: &mut PgConnection) -> sqlx::Result<Vec<PersonId>> {
        let rows: Vec<(i32, Option<PersonId>)> = sqlx::query_as(
            "WITH input AS ( \
                 SELECT idx, workspace_id, mode, distinct_id COLLATE \"C\" AS distinct_id, \
                        known, person_id \
                 FROM unnest($1::int4[], $2::uuid[], $3::text[], $4::text[], $5::bool[], \
                             $6::uuid[]) \
                     AS i (idx, workspace_id, mode, distinct_id, known, person_id) \
             ), existing AS ( \
                 SELECT i.idx, p.person_id \
                 FROM input i \
                 JOIN persons p ON p.workspace_id = i.workspace_id AND p.mode = i.mode \
                               AND p.distinct_id = i.distinct_id \
                 WHERE NOT i.known \
             ), person AS ( \
                 INSERT INTO persons (workspace_id, mode, distinct_id, person_id, created_at) \
                 SELECT DISTINCT ON (workspace_id, mode, distinct_id) \
                        workspace_id, mode, distinct_id, person_id, $7 \
                 FROM input i \
                 WHERE NOT known AND NOT EXISTS (SELECT 1 FROM existing e WHERE e.idx = i.idx) \
                 ORDER BY workspace_id, mode, distinct_id, idx \
                 ON CONFLICT (workspace_id, mode, distinct_id) \
                 DO UPDATE SET distinct_id = EXCLUDED.distinct_id \
                 RETURNING workspace_id, mode, distinct_id, person_id \
             ), resolved AS ( \
                 SELECT i.idx, i.workspace_id, \
                        CASE WHEN i.known THEN i.person_id \
                             ELSE COALESCE(e.person_id, p.person_id) END AS person_id \
                 FROM input i \
                 LEFT JOIN existing e ON e.idx = i.idx \
                 LEFT JOIN person p ON p.workspace_id = i.workspace_id AND p.mode = i.mode \
                                   AND p.distinct_id = i.distinct_id \
             ), written AS ( \
                 INSERT INTO attribute_values \
                     (workspace_id, person_id, attribute_key, value, updated_at, etag) \
                 SELECT DISTINCT ON (r.workspace_id, r.person_id, v.key) \
                        r.workspace_id, r.person_id, v.key, v.value, $7, v.etag \
                 FROM unnest($8::int4[], $9::text[], $10::jsonb[], $11::uuid[]) \
                     AS v (idx, key, value, etag) \
                 JOIN resolved r ON r.idx = v.idx \
                 ORDER BY r.workspace_id, r.person_id, v.key, v.idx DESC \
                 ON CONFLICT (workspace_id, person_id, attribute_key) \
                 DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at, \
                               etag = EXCLUDED.etag \
             ) \
             SELECT idx, person_id FROM resolved",
        )
        .bind(&self.idx)
        .bind(&self.workspaces)
        .bind(&self.modes)
        .bind(&self.distinct_ids)
        .bind(&self.known)
        .bind(&self.person_ids)
        .bind(now())
        .bind(&self.value_idx)
        .bind(&self.keys)
        .bind(&self.values)
        .bind(&self.etags)
        .fetch_all(conn)
        .await?;
        let mut persons = vec![None; self.idx.len()];
        for (i, person) in rows {
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| persons.get_mut(i)) {
                *slot = person;
            }
        }
        persons
            .into_iter()
            .map(|p| {
                p.ok_or_else(|| sqlx::Error::Protocol("a batch write returned no person".into()))
            })
            .collect()
    }
}
