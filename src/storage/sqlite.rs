//! The SQLite store, for a single node.
//!
//! SQLite allows one writer at a time. Rather than let connections race for
//! the write lock (and hand "database is locked" to callers), all writes go
//! through a pool of exactly one connection, where they queue in order, and
//! every write transaction starts with `BEGIN IMMEDIATE` so that it holds the
//! lock from its first statement (a deferred transaction that upgrades to a
//! writer can fail at once, without waiting, when another process wrote in
//! between). Reads use a pool of their own; in WAL mode they never block the
//! writer nor wait for it.

use std::{collections::HashMap, str::FromStr};

use async_trait::async_trait;
use serde_json::Value;
use sqlx::error::DatabaseError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteError, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous as Synchronous,
};
use tracing::instrument;
use uuid::Uuid;

use crate::{
    domain::{Etag, Mode, PersonId, WorkspaceId},
    storage::{
        Cleared, Error, ListedPerson, ListedRow, PersonUpdate, PersonValues, PersonWrite,
        PersonsQuery, REQUEST_RETENTION, Receipt, RecordedRequest, Result, SqliteSynchronous,
        Stamped, StoreOptions, Updated, ValueRow, ValueStore, admin, collect_listed,
        collect_values, detached, now, operations, stamp,
        update::{self, Owner, Plan, Snapshot},
    },
};

/// A [`Store`](super::Store) on SQLite.
pub(crate) struct SqliteStore {
    /// Serves reads only, so that a queue of writes never delays them.
    reader: SqlitePool,
    /// One connection: the single writer SQLite allows, with writes queueing
    /// for it in the pool instead of failing on the file lock.
    writer: SqlitePool,
}

/// One value written over whatever is stored (`?1` workspace, `?2` person,
/// `?3` key, `?4` value, `?5` updated_at, `?6` etag): the plain write and the
/// update path's writes are the same statement.
const UPSERT_VALUE: &str = "INSERT INTO attribute_values \
         (workspace_id, person_id, attribute_key, value, updated_at, etag) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
     ON CONFLICT (workspace_id, person_id, attribute_key) \
     DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, \
                   etag = excluded.etag";

impl SqliteStore {
    /// Both pools' usage.
    fn pools(&self) -> Vec<crate::metrics::PoolUsage> {
        vec![
            super::pool_usage("reader", &self.reader),
            super::pool_usage("writer", &self.writer),
        ]
    }

    /// Opens (creating if needed) the database file and both pools.
    pub(crate) async fn connect(url: &str, opts: &StoreOptions) -> Result<Self> {
        let options =
            SqliteConnectOptions::from_str(url).map_err(|e| Error::Config(e.to_string()))?;
        // SQLite reports a missing file or directory as CANTOPEN, which is
        // also what a passing I/O fault looks like: told apart here, so a
        // typo fails at once instead of being retried as an outage.
        let file = options.get_filename();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory && !file.exists() {
            let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = dir.filter(|d| !d.is_dir()) {
                return Err(Error::Config(format!(
                    "the directory {} of the SQLite file does not exist",
                    dir.display()
                )));
            }
            if !opts.create_if_missing {
                return Err(Error::Missing(format!(
                    "there is no SQLite database at {}",
                    file.display()
                )));
            }
        }
        let options = options
            .create_if_missing(opts.create_if_missing)
            // sqlx leaves the journal mode alone; WAL is what lets readers
            // run alongside the writer.
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(opts.sqlite_busy_timeout)
            .synchronous(match opts.sqlite_synchronous {
                SqliteSynchronous::Full => Synchronous::Full,
                SqliteSynchronous::Normal => Synchronous::Normal,
            });
        // The writer first: it creates the file and switches it to WAL,
        // which the readers then find.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { reader, writer })
    }
}

impl SqliteStore {
    /// `VACUUM INTO` on a reader: the copy is one read transaction's
    /// snapshot (WAL included, unlike a copy of the file), taken while the
    /// writer keeps committing.
    async fn backup_into(&self, path: &std::path::Path) -> Result<()> {
        let reader = self.reader.clone();
        let path = path.to_string_lossy().into_owned();
        detached(async move {
            sqlx::query("VACUUM INTO ?1")
                .bind(path)
                .execute(&reader)
                .await?;
            Ok(())
        })
        .await
    }
}

/// A person and their values in one query: the LEFT JOIN yields one row of
/// NULLs for a person without (visible) values, and no row at all for an
/// unknown person. The archived filter is a NOT EXISTS probe per value:
/// joining the definitions inside the LEFT JOIN made SQLite scan every value
/// of every person (the test below checks the plan).
const READ_VALUES: &str = "SELECT p.person_id, v.attribute_key, v.value, v.updated_at, v.etag \
                 FROM persons p \
                 LEFT JOIN attribute_values v \
                   ON v.workspace_id = p.workspace_id AND v.person_id = p.person_id \
                  AND (?4 IS NULL OR v.attribute_key IN (SELECT value FROM json_each(?4))) \
                  AND (?5 OR NOT EXISTS ( \
                      SELECT 1 FROM attribute_definitions d \
                      WHERE d.workspace_id = v.workspace_id AND d.key = v.attribute_key \
                        AND d.archived)) \
                 WHERE p.workspace_id = ?1 AND p.mode = ?2 AND p.distinct_id = ?3 \
                 ORDER BY v.attribute_key";

/// Writes one person's values inside the batch's transaction. The write
/// lock is held from BEGIN IMMEDIATE on, so looking the person up and then
/// inserting cannot race another writer.
async fn write_person(
    tx: &mut sqlx::SqliteConnection,
    write: &PersonWrite,
    stamped: &[Stamped],
    updated_at: chrono::DateTime<chrono::Utc>,
) -> Result<PersonId> {
    let existing = sqlx::query_scalar(
        "SELECT person_id FROM persons \
         WHERE workspace_id = ?1 AND mode = ?2 AND distinct_id = ?3",
    )
    .bind(write.workspace)
    .bind(write.mode.as_str())
    .bind(&write.distinct_id)
    .fetch_optional(&mut *tx)
    .await?;
    let person = match existing {
        Some(person) => person,
        None => {
            let person = PersonId(Uuid::now_v7());
            sqlx::query(
                "INSERT INTO persons (workspace_id, mode, distinct_id, person_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(write.workspace)
            .bind(write.mode.as_str())
            .bind(&write.distinct_id)
            .bind(person)
            .bind(updated_at)
            .execute(&mut *tx)
            .await?;
            person
        }
    };
    for (key, value, etag) in stamped {
        sqlx::query(UPSERT_VALUE)
            .bind(write.workspace)
            .bind(person)
            .bind(key)
            .bind(value)
            .bind(updated_at)
            .bind(etag)
            .execute(&mut *tx)
            .await?;
    }
    Ok(person)
}

/// Writes every person and value of a batch with three statements inside
/// the caller's transaction (the writes as one JSON array, read by
/// `json_each`): creates the persons not there yet, upserts the values (a
/// key written twice for one person keeps its last write) and returns each
/// write's person, in order. Any failure fails the whole batch.
async fn write_all_at_once(
    tx: &mut sqlx::SqliteConnection,
    writes: &[PersonWrite],
    stamped: &[Vec<Stamped>],
    updated_at: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<PersonId>> {
    let hex = |id: Uuid| id.simple().to_string();
    let persons: Vec<Value> = writes
        .iter()
        .map(|w| {
            serde_json::json!([
                hex(w.workspace.0),
                w.mode.as_str(),
                w.distinct_id,
                hex(Uuid::now_v7())
            ])
        })
        .collect();
    // The last value per person and key across the batch: later writes win.
    let mut last: HashMap<(WorkspaceId, Mode, &str, &str), (&Value, Etag)> = HashMap::new();
    let mut order = Vec::new();
    for (w, stamped) in writes.iter().zip(stamped) {
        for (key, value, etag) in stamped {
            let id = (w.workspace, w.mode, w.distinct_id.as_str(), key.as_str());
            if last.insert(id, (value, *etag)).is_none() {
                order.push(id);
            }
        }
    }
    let values: Vec<Value> = order
        .into_iter()
        .map(|id| {
            let (value, etag) = last[&id];
            serde_json::json!([
                hex(id.0.0),
                id.1.as_str(),
                id.2,
                id.3,
                value.to_string(),
                hex(etag.0)
            ])
        })
        .collect();
    let persons = Value::from(persons).to_string();
    sqlx::query(
        "INSERT INTO persons (workspace_id, mode, distinct_id, person_id, created_at) \
         SELECT unhex(j.value ->> 0), j.value ->> 1, j.value ->> 2, unhex(j.value ->> 3), ?2 \
         FROM json_each(?1) AS j WHERE true \
         ON CONFLICT (workspace_id, mode, distinct_id) DO NOTHING",
    )
    .bind(&persons)
    .bind(updated_at)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO attribute_values \
             (workspace_id, person_id, attribute_key, value, updated_at, etag) \
         SELECT p.workspace_id, p.person_id, j.value ->> 3, j.value ->> 4, ?2, \
                unhex(j.value ->> 5) \
         FROM json_each(?1) AS j \
         JOIN persons p ON p.workspace_id = unhex(j.value ->> 0) AND p.mode = j.value ->> 1 \
                       AND p.distinct_id = j.value ->> 2 \
         WHERE true \
         ON CONFLICT (workspace_id, person_id, attribute_key) \
         DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, \
                       etag = excluded.etag",
    )
    .bind(Value::from(values).to_string())
    .bind(updated_at)
    .execute(&mut *tx)
    .await?;
    let found: Vec<(i64, PersonId)> = sqlx::query_as(
        "SELECT j.key, p.person_id FROM json_each(?1) AS j \
         JOIN persons p ON p.workspace_id = unhex(j.value ->> 0) AND p.mode = j.value ->> 1 \
                       AND p.distinct_id = j.value ->> 2",
    )
    .bind(&persons)
    .fetch_all(&mut *tx)
    .await?;
    let mut ids = vec![None; writes.len()];
    for (i, person) in found {
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| ids.get_mut(i)) {
            *slot = Some(person);
        }
    }
    ids.into_iter()
        .map(|p| p.ok_or_else(|| Error::Unexpected("a batch write found no person".into())))
        .collect()
}

/// Reads what a batch of updates needs: each update's person, and their
/// stored values under the keys the batch changes. Inside the writer's
/// transaction nobody else writes, so what is read stays true until commit.
async fn read_snapshot(
    conn: &mut sqlx::SqliteConnection,
    updates: &[PersonUpdate],
) -> Result<Snapshot> {
    let mut found: HashMap<(WorkspaceId, Mode, &str), Option<PersonId>> = HashMap::new();
    let mut persons = Vec::with_capacity(updates.len());
    for u in updates {
        let who = (u.workspace, u.mode, u.distinct_id.as_str());
        let person = match found.get(&who) {
            Some(person) => *person,
            None => {
                let person = sqlx::query_scalar(
                    "SELECT person_id FROM persons \
                     WHERE workspace_id = ?1 AND mode = ?2 AND distinct_id = ?3",
                )
                .bind(u.workspace)
                .bind(u.mode.as_str())
                .bind(&u.distinct_id)
                .fetch_optional(&mut *conn)
                .await?;
                found.insert(who, person);
                person
            }
        };
        persons.push(person);
    }
    let mut values = HashMap::new();
    for (ws, person, key) in update::keys_of(updates, &persons) {
        let row: Option<(Value, Etag)> = sqlx::query_as(
            "SELECT value, etag FROM attribute_values \
             WHERE workspace_id = ?1 AND person_id = ?2 AND attribute_key = ?3",
        )
        .bind(ws)
        .bind(person)
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(stored) = row {
            values.insert((person, key), stored);
        }
    }
    Ok(Snapshot { persons, values })
}

/// The record of a request_id created within the retention before `at`.
async fn find_recorded(
    conn: &mut sqlx::SqliteConnection,
    ws: WorkspaceId,
    mode: Mode,
    id: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<RecordedRequest>> {
    let row: Option<(Vec<u8>, Value)> = sqlx::query_as(
        "SELECT fingerprint, response FROM requests \
         WHERE workspace_id = ?1 AND mode = ?2 AND request_id = ?3 AND created_at > ?4",
    )
    .bind(ws)
    .bind(mode.as_str())
    .bind(id)
    .bind(at - REQUEST_RETENTION)
    .fetch_optional(&mut *conn)
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
}

/// Writes a planned batch inside the writer's transaction.
async fn write_plan(conn: &mut sqlx::SqliteConnection, plan: &Plan) -> Result<()> {
    let updated_at = now();
    for person in &plan.new_persons {
        sqlx::query(
            "INSERT INTO persons (workspace_id, mode, distinct_id, person_id, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(person.workspace)
        .bind(person.mode.as_str())
        .bind(&person.distinct_id)
        .bind(person.person_id)
        .bind(updated_at)
        .execute(&mut *conn)
        .await?;
    }
    for row in &plan.rows {
        let person = match row.owner {
            Owner::Known(id) => id,
            Owner::New(i) => plan.new_persons[i].person_id,
        };
        match &row.new {
            Some((value, etag)) => {
                sqlx::query(UPSERT_VALUE)
                    .bind(row.workspace)
                    .bind(person)
                    .bind(&row.key)
                    .bind(value)
                    .bind(updated_at)
                    .bind(etag)
                    .execute(&mut *conn)
                    .await?;
            }
            None => {
                sqlx::query(
                    "DELETE FROM attribute_values \
                     WHERE workspace_id = ?1 AND person_id = ?2 AND attribute_key = ?3",
                )
                .bind(row.workspace)
                .bind(person)
                .bind(&row.key)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

/// SQLite's primary result codes that mean the file is out of reach or the
/// lock could not be had within the busy timeout.
mod codes {
    /// Another process held the lock past the busy timeout.
    pub(super) const BUSY: i32 = 5;
    /// The disk or file system failed.
    pub(super) const IOERR: i32 = 10;
    /// The disk is full.
    pub(super) const FULL: i32 = 13;
    /// The file cannot be opened (missing directory, permissions).
    pub(super) const CANTOPEN: i32 = 14;
}

/// Whether an SQLite error means the database is (for now) out of reach.
pub(crate) fn is_outage(err: &dyn DatabaseError) -> bool {
    let Some(sqlite) = err.try_downcast_ref::<SqliteError>() else {
        return false;
    };
    let Some(extended) = sqlite.code().and_then(|c| c.parse::<i32>().ok()) else {
        return false;
    };
    // sqlx reports the extended code; its low byte is the primary code.
    matches!(
        extended & 0xff,
        codes::BUSY | codes::IOERR | codes::FULL | codes::CANTOPEN
    )
}

operations::sql_operation_store!(SqliteStore {
    reads: reader,
    writes: writer,
});

admin::sql_admin_store!(SqliteStore {
    reads: reader,
    writes: writer,
    migrator: sqlx::migrate!("./migrations/sqlite"),
});

#[async_trait]
impl ValueStore for SqliteStore {
    #[instrument(level = "debug", skip_all, fields(values = values.len()))]
    async fn write_values(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
        values: &[(String, Value)],
    ) -> Result<Receipt> {
        let write = PersonWrite {
            workspace: ws,
            mode,
            distinct_id: distinct_id.to_owned(),
            values: values.to_vec(),
        };
        self.write_batch(vec![write])
            .await?
            .pop()
            .expect("one result per write")
    }

    #[instrument(level = "debug", skip_all, fields(writes = writes.len()))]
    async fn write_batch(&self, writes: Vec<PersonWrite>) -> Result<Vec<Result<Receipt>>> {
        let writer = self.writer.clone();
        detached(async move {
            let stamped: Vec<Vec<Stamped>> = writes.iter().map(|w| stamp(&w.values)).collect();
            // One transaction, so one fsync for the whole batch; a savepoint
            // per write, so a failing write is undone alone. Dropping the
            // transaction on an outage rolls everything back.
            let updated_at = now();
            // First the whole batch in three statements: each statement is a
            // round trip to sqlx's SQLite thread, and statements per write
            // were what bounded the batch. If any write fails, that
            // transaction is rolled back and the batch is written again one
            // savepoint per write, so the failure stays its write's own.
            let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
            match write_all_at_once(&mut tx, &writes, &stamped, updated_at).await {
                Ok(persons) => {
                    tx.commit().await?;
                    return Ok(persons
                        .into_iter()
                        .zip(&stamped)
                        .map(|(person, stamped)| Ok(Receipt::new(person, stamped)))
                        .collect());
                }
                Err(e @ Error::Unavailable(_)) => return Err(e),
                Err(_) => tx.rollback().await?,
            }
            let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
            let mut results = Vec::with_capacity(writes.len());
            for (write, stamped) in writes.iter().zip(&stamped) {
                sqlx::query("SAVEPOINT person_write")
                    .execute(&mut *tx)
                    .await?;
                let result = match write_person(&mut tx, write, stamped, updated_at).await {
                    Err(e @ Error::Unavailable(_)) => return Err(e),
                    other => other.map(|person| Receipt::new(person, stamped)),
                };
                let end = if result.is_ok() {
                    "RELEASE person_write"
                } else {
                    "ROLLBACK TO person_write; RELEASE person_write"
                };
                sqlx::raw_sql(end).execute(&mut *tx).await?;
                results.push(result);
            }
            tx.commit().await?;
            Ok(results)
        })
        .await
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
        let reader = self.reader.clone();
        let distinct_id = distinct_id.to_owned();
        // SQLite has no array parameters; a JSON array read by json_each is
        // still a single bound parameter.
        let keys = keys.map(Value::from);
        detached(async move {
            let rows: Vec<ValueRow> = sqlx::query_as(READ_VALUES)
                .bind(ws)
                .bind(mode.as_str())
                .bind(distinct_id)
                .bind(keys)
                .bind(include_archived)
                .fetch_all(&reader)
                .await?;
            Ok(collect_values(rows))
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(updates = updates.len()))]
    async fn update_batch(&self, updates: Vec<PersonUpdate>) -> Result<Vec<Result<Updated>>> {
        let writer = self.writer.clone();
        detached(async move {
            // The write lock from BEGIN IMMEDIATE on: the values read are the
            // values written over, in every process sharing the file.
            let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
            let at = now();
            let mut recorded = HashMap::new();
            for u in &updates {
                if let Some(key) = &u.request
                    && let Some(record) =
                        find_recorded(&mut tx, u.workspace, u.mode, key.id, at).await?
                {
                    recorded.insert((u.workspace, u.mode, key.id), record);
                }
            }
            // Nobody else holds a request while this transaction has the
            // write lock.
            let triaged = update::triage(&updates, &vec![true; updates.len()], &recorded);
            let open: Vec<PersonUpdate> = updates
                .iter()
                .zip(&triaged)
                .filter(|(_, early)| early.is_none())
                .map(|(u, _)| u.clone())
                .collect();
            let snapshot = read_snapshot(&mut tx, &open).await?;
            let plan = update::plan(&open, snapshot);
            write_plan(&mut tx, &plan).await?;
            for ((ws, mode, id), fingerprint, response) in update::records_of(&open, &plan.results)
            {
                // A record past its retention may still be there (the sweep
                // runs periodically); the new request takes its place.
                sqlx::query(
                    "INSERT INTO requests \
                         (workspace_id, mode, request_id, fingerprint, response, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (workspace_id, mode, request_id) DO UPDATE SET \
                         fingerprint = excluded.fingerprint, response = excluded.response, \
                         created_at = excluded.created_at",
                )
                .bind(ws)
                .bind(mode.as_str())
                .bind(id)
                .bind(fingerprint)
                .bind(response)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(update::merge(triaged, plan.results))
        })
        .await
    }

    #[instrument(level = "debug", skip_all)]
    async fn preview_update(&self, update: PersonUpdate) -> Result<Updated> {
        let reader = self.reader.clone();
        detached(async move {
            let mut conn = reader.acquire().await?;
            let updates = [update];
            let snapshot = read_snapshot(&mut conn, &updates).await?;
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
        let reader = self.reader.clone();
        detached(async move {
            let mut conn = reader.acquire().await?;
            find_recorded(&mut conn, ws, mode, request_id, now()).await
        })
        .await
    }

    #[instrument(level = "debug", skip_all)]
    async fn forget_requests(&self, before: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        let writer = self.writer.clone();
        detached(async move {
            let done = sqlx::query("DELETE FROM requests WHERE created_at < ?1")
                .bind(before)
                .execute(&writer)
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
        let writer = self.writer.clone();
        let distinct_id = distinct_id.to_owned();
        let key = key.to_owned();
        detached(async move {
            // The look-up and the delete under one write lock, so that a
            // person erased in between is not reported as cleared.
            let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
            let Some(person_id) = find_person(&mut tx, ws, mode, &distinct_id).await? else {
                return Ok(None);
            };
            let done = sqlx::query(
                "DELETE FROM attribute_values \
                 WHERE workspace_id = ?1 AND person_id = ?2 AND attribute_key = ?3",
            )
            .bind(ws)
            .bind(person_id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(Cleared {
                person_id,
                cleared: done.rows_affected() > 0,
            }))
        })
        .await
    }

    #[instrument(level = "debug", skip_all)]
    async fn delete_person(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
    ) -> Result<Option<PersonId>> {
        let writer = self.writer.clone();
        let distinct_id = distinct_id.to_owned();
        detached(async move {
            let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
            let Some(person_id) = find_person(&mut tx, ws, mode, &distinct_id).await? else {
                return Ok(None);
            };
            sqlx::query("DELETE FROM attribute_values WHERE workspace_id = ?1 AND person_id = ?2")
                .bind(ws)
                .bind(person_id)
                .execute(&mut *tx)
                .await?;
            // Request records name their person only inside the recorded
            // response; they are few (kept 24 hours), and erasure is rare.
            sqlx::query(
                "DELETE FROM requests \
                 WHERE workspace_id = ?1 AND mode = ?2 AND response ->> 'person_id' = ?3",
            )
            .bind(ws)
            .bind(mode.as_str())
            .bind(person_id.to_string())
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM persons WHERE workspace_id = ?1 AND person_id = ?2")
                .bind(ws)
                .bind(person_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(person_id))
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(limit = query.limit))]
    async fn list_persons(&self, query: PersonsQuery) -> Result<Vec<ListedPerson>> {
        let reader = self.reader.clone();
        detached(async move {
            // One statement, so one snapshot: a page's persons and values
            // agree with each other.
            let rows: Vec<ListedRow> = sqlx::query_as(LIST_PERSONS)
                .bind(query.workspace)
                .bind(query.mode.as_str())
                .bind(query.after)
                .bind(i64::from(query.limit))
                .bind(query.keys.map(Value::from))
                .bind(query.include_archived)
                .fetch_all(&reader)
                .await?;
            Ok(collect_listed(rows))
        })
        .await
    }
}

/// A page of persons by person_id and their values, as [`READ_VALUES`]
/// reads one person's: the LEFT JOIN yields one row of NULLs for a person
/// without (visible) values.
const LIST_PERSONS: &str = "SELECT p.person_id, p.distinct_id, v.attribute_key, v.value, \
                        v.updated_at, v.etag \
                 FROM (SELECT person_id, distinct_id FROM persons \
                       WHERE workspace_id = ?1 AND mode = ?2 \
                         AND (?3 IS NULL OR person_id > ?3) \
                       ORDER BY person_id LIMIT ?4) p \
                 LEFT JOIN attribute_values v \
                   ON v.workspace_id = ?1 AND v.person_id = p.person_id \
                  AND (?5 IS NULL OR v.attribute_key IN (SELECT value FROM json_each(?5))) \
                  AND (?6 OR NOT EXISTS ( \
                      SELECT 1 FROM attribute_definitions d \
                      WHERE d.workspace_id = v.workspace_id AND d.key = v.attribute_key \
                        AND d.archived)) \
                 ORDER BY p.person_id, v.attribute_key";

/// Looks a person up inside a write transaction.
async fn find_person(
    conn: &mut sqlx::SqliteConnection,
    ws: WorkspaceId,
    mode: Mode,
    distinct_id: &str,
) -> Result<Option<PersonId>> {
    let person = sqlx::query_scalar(
        "SELECT person_id FROM persons WHERE workspace_id = ?1 AND mode = ?2 AND distinct_id = ?3",
    )
    .bind(ws)
    .bind(mode.as_str())
    .bind(distinct_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(person)
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, SqliteConnection};

    #[tokio::test]
    async fn reading_a_person_searches_the_primary_keys_and_scans_no_table() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut conn)
            .await
            .unwrap();
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            super::READ_VALUES
        )))
        .bind(vec![0u8; 16])
        .bind("live")
        .bind("someone")
        .bind(Option::<String>::None)
        .bind(false)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let steps: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        assert!(
            steps.iter().any(|s| s.starts_with("SEARCH v USING")),
            "{steps:?}"
        );
        assert!(
            !steps
                .iter()
                .any(|s| s.starts_with("SCAN v") || s.starts_with("SCAN p")),
            "{steps:?}"
        );
    }
}
