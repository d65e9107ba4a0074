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
    PgConnectOptions, PgConnection, PgDatabaseError, PgPool, PgPoolOptions, PgSslMode, Postgres,
};
use tracing::instrument;
use uuid::Uuid;

use crate::{
    domain::{Etag, Mode, PersonId, WorkspaceId},
    storage::{
        BatchPersonRow, Cleared, Error, ListedPerson, ListedRow, PersonRead, PersonUpdate,
        PersonValues, PersonWrite, PersonsQuery, REQUEST_RETENTION, Receipt, RecordedRequest,
        Result, Stamped, StoreOptions, Updated, ValueStore, admin, answer_reads, collect_listed,
        detached, now, operations, stamp,
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
    /// Persons seen by this process; a batch writing only known persons
    /// skips looking them up. A person erased (on any replica) leaves a stale
    /// entry behind, which can never bring its person_id back: a batch only
    /// writes values under a remembered id, which the foreign key to
    /// `persons` refuses once the person is gone; the batch then forgets
    /// its remembered persons and writes again one by one, looking each up.
    persons: Cache<(WorkspaceId, Mode, String), PersonId>,
}

/// Most persons remembered (about 100 bytes each).
const KNOWN_PERSONS: usize = 200_000;

impl PgStore {
    /// The pool's usage; connections held between uses count as in use.
    fn pools(&self) -> Vec<crate::metrics::PoolUsage> {
        vec![super::pool_usage("main", &self.pool)]
    }

    /// Opens the pool and one connection to prove the database is there.
    pub(crate) async fn connect(url: &str, opts: &StoreOptions) -> Result<Self> {
        let connect_options = tls_options(
            url,
            PgConnectOptions::from_str(url).map_err(|e| Error::Config(e.to_string()))?,
        )?;
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect_options)
            .await
            .map_err(|e| tls_refusal(&e).map_or_else(|| permanent_as_config(e), Error::Config))?;
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

/// The `sslmode` and `sslrootcert` of `url` (or of `PGSSLMODE` and
/// `PGSSLROOTCERT`) as libpq reads them, where sqlx differs: with a root
/// certificate, `require` verifies the server's certificate against it
/// (`verify-ca`), and a root certificate file that can't be read is a
/// configuration error rather than an outage to retry.
fn tls_options(url: &str, options: PgConnectOptions) -> Result<PgConnectOptions> {
    let root_cert = url::Url::parse(url)
        .ok()
        .and_then(|url| {
            url.query_pairs()
                .find(|(name, _)| matches!(&**name, "sslrootcert" | "ssl-root-cert" | "ssl-ca"))
                .map(|(_, value)| value.into_owned())
        })
        .or_else(|| std::env::var("PGSSLROOTCERT").ok());
    let Some(root_cert) = root_cert else {
        return Ok(options);
    };
    let mode = options.get_ssl_mode();
    if matches!(
        mode,
        PgSslMode::Disable | PgSslMode::Allow | PgSslMode::Prefer
    ) {
        // No verification in these modes, as in libpq: the file is not read.
        return Ok(options);
    }
    let inline = root_cert.trim_start().starts_with("-----BEGIN");
    if !inline && let Err(e) = std::fs::metadata(&root_cert) {
        return Err(Error::Config(format!(
            "sslrootcert {root_cert}: cannot read the root certificate file: {e}"
        )));
    }
    Ok(if matches!(mode, PgSslMode::Require) {
        options.ssl_mode(PgSslMode::VerifyCa)
    } else {
        options
    })
}

/// The plain reason of a connection refused by TLS, which no retry can
/// fix: the server's certificate is not trusted or not the host's, or the
/// server does not offer TLS that the `sslmode` requires. `None` for
/// anything else (a network error is an outage).
fn tls_refusal(err: &sqlx::Error) -> Option<String> {
    use tokio_rustls::rustls::{self, CertificateError};
    match err {
        sqlx::Error::Tls(e) if e.to_string().contains("does not support TLS") => Some(
            "the PostgreSQL server does not offer TLS, which the URL's sslmode requires \
             (sslmode=prefer connects without it)"
                .to_owned(),
        ),
        sqlx::Error::Io(e) => {
            let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
            Some(match tls {
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                    "TLS refused: the PostgreSQL server's certificate is not signed by a trusted \
                     CA (the URL's sslrootcert, or the built-in public roots without one)"
                        .to_owned()
                }
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ) => "TLS refused: the PostgreSQL server's certificate is not valid for the \
                      URL's host (sslmode=verify-full checks the name)"
                    .to_owned(),
                rustls::Error::InvalidCertificate(e) => {
                    format!("TLS refused: the PostgreSQL server's certificate is invalid: {e}")
                }
                e => format!("TLS handshake with the PostgreSQL server failed: {e}"),
            })
        }
        _ => None,
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

impl PgStore {
    /// PostgreSQL has its own tools, which also give point-in-time recovery.
    async fn backup_into(&self, _path: &std::path::Path) -> Result<()> {
        Err(Error::Config(
            "backup copies SQLite databases; for PostgreSQL use pg_dump (or base backups with \
             WAL archiving for point-in-time recovery; README \"Backups\")"
                .to_owned(),
        ))
    }
}

/// A connection refused for good (no such database or role, a wrong
/// password, no permission) becomes [`Error::Config`] with PostgreSQL's own
/// message, without the server source line sqlx appends ("at line 948"):
/// retrying cannot help, and the operator needs the plain reason.
fn permanent_as_config(err: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &err
        && let Some(pg) = db.try_downcast_ref::<PgDatabaseError>()
        && !is_outage(db.as_ref())
    {
        return Error::Config(format!(
            "the database refused the connection: {} (SQLSTATE {})",
            pg.message(),
            pg.code()
        ));
    }
    err.into()
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
                for (w, known) in writes.iter().zip(&known) {
                    if known.is_some() {
                        self.persons
                            .remove(&(w.workspace, w.mode, w.distinct_id.clone()));
                    }
                }
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
            let batch = updates.clone();
            let unlocked = held
                .run(move |conn| Box::pin(async move { update_unlocked(conn, &batch).await }))
                .await?;
            if let Some(results) = unlocked {
                return Ok(results);
            }
            // Most batches commit in the two round trips of the unlocked
            // try. One that met a concurrent write to its rows is tried in a
            // transaction holding them locked: each such try either commits
            // or finds that a value or person was created concurrently after
            // the read (and writes nothing); a retry then finds and locks it,
            // so tries are few. The bound is only a guard against a defect
            // looping forever.
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
            let (snapshot, _) = held
                .run(move |conn| Box::pin(async move { read_unlocked(conn, &batch, now()).await }))
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

    #[instrument(level = "debug", skip_all)]
    async fn delete_person(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
    ) -> Result<Option<PersonId>> {
        let pool = self.pool.clone();
        let who = distinct_id.to_owned();
        let deleted = detached(async move {
            let mut tx = pool.begin().await?;
            // The person row locked first: a concurrent write's values wait
            // on it (their foreign key check) and then find no person, and a
            // write already in flight commits before, so its values go too.
            let person: Option<PersonId> = sqlx::query_scalar(
                "SELECT person_id FROM persons \
                 WHERE workspace_id = $1 AND mode = $2 AND distinct_id = $3 FOR UPDATE",
            )
            .bind(ws)
            .bind(mode.as_str())
            .bind(who)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(person) = person else {
                tx.rollback().await?;
                return Ok(None);
            };
            sqlx::query("DELETE FROM attribute_values WHERE workspace_id = $1 AND person_id = $2")
                .bind(ws)
                .bind(person)
                .execute(&mut *tx)
                .await?;
            // Request records name their person only inside the recorded
            // response; they are few (kept 24 hours), and erasure is rare.
            sqlx::query(
                "DELETE FROM requests \
                 WHERE workspace_id = $1 AND mode = $2 AND response ->> 'person_id' = $3",
            )
            .bind(ws)
            .bind(mode.as_str())
            .bind(person.to_string())
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM persons WHERE workspace_id = $1 AND person_id = $2")
                .bind(ws)
                .bind(person)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(person))
        })
        .await?;
        // Found or not: another replica may have erased them first.
        self.persons.remove(&(ws, mode, distinct_id.to_owned()));
        Ok(deleted)
    }

    #[instrument(level = "debug", skip_all, fields(limit = query.limit))]
    async fn list_persons(&self, query: PersonsQuery) -> Result<Vec<ListedPerson>> {
        let pool = self.pool.clone();
        detached(async move {
            // One statement, so one snapshot: a page's persons and values
            // agree with each other. The nil UUID is below every person_id,
            // so the first page needs no OR that would keep the index range
            // out of a generic plan.
            let rows: Vec<ListedRow> = sqlx::query_as(
                "SELECT p.person_id, p.distinct_id, v.attribute_key, v.value, v.updated_at, \
                        v.etag \
                 FROM (SELECT person_id, distinct_id FROM persons \
                       WHERE workspace_id = $1 AND mode = $2 \
                         AND person_id > COALESCE($3, '00000000-0000-0000-0000-000000000000') \
                       ORDER BY person_id LIMIT $4) p \
                 LEFT JOIN attribute_values v \
                   ON v.workspace_id = $1 AND v.person_id = p.person_id \
                  AND ($5::text[] IS NULL OR v.attribute_key = ANY ($5)) \
                  AND ($6 OR NOT EXISTS ( \
                      SELECT 1 FROM attribute_definitions d \
                      WHERE d.workspace_id = v.workspace_id AND d.key = v.attribute_key \
                        AND d.archived)) \
                 ORDER BY p.person_id, v.attribute_key",
            )
            .bind(query.workspace)
            .bind(query.mode.as_str())
            .bind(query.after)
            .bind(i64::from(query.limit))
            .bind(query.keys)
            .bind(query.include_archived)
            .fetch_all(&pool)
            .await?;
            Ok(collect_listed(rows))
        })
        .await
    }
}

/// How often an update batch is tried before it is reported as a defect.
const UPDATE_TRIES: usize = 32;

/// The stored values an update batch reads, by primary key, locking each
/// row until commit, in primary-key order (the order every batch writes in,
/// so lockers never deadlock).
const LOCK_VALUES: &str = "SELECT v.person_id, v.attribute_key, v.value, v.etag \
     FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS k (workspace_id, person_id, key) \
     JOIN attribute_values v \
       ON v.workspace_id = k.workspace_id AND v.person_id = k.person_id \
      AND v.attribute_key = k.key COLLATE \"C\" \
     ORDER BY v.workspace_id, v.person_id, v.attribute_key \
     FOR UPDATE OF v";

/// Each update's person and their stored values under the keys the batch
/// changes, locked ([`LOCK_VALUES`]).
async fn read_locked(conn: &mut PgConnection, updates: &[PersonUpdate]) -> sqlx::Result<Snapshot> {
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
        let rows: Vec<(PersonId, String, Value, Etag)> = sqlx::query_as(LOCK_VALUES)
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
        let snapshot = read_locked(&mut tx, &open).await?;
        let plan = update::plan(&open, snapshot);
        // The requests' locks are held already (hold_requests).
        let records = update::records_of(&open, &plan.results);
        if !write_plan(&mut tx, &plan, &[], records, at).await? {
            return Ok(None);
        }
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
        // A deadlock, or a person erased since it was read (the foreign key
        // of its values): the next try reads afresh.
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("40P01" | "23503")) =>
        {
            tx.rollback().await?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The first try of an update batch, without a transaction: one statement
/// reads the persons, values and request records ([`read_unlocked`]), the
/// batch is planned against them, and one statement writes the plan
/// ([`write_plan`]), failing whole if anything it depends on changed since
/// the read. Two round trips, and no row stays locked between them; `None`
/// when the write found a conflict (or a deadlock, or a person deleted since
/// the read): the locking path ([`update_once`]) then decides.
async fn update_unlocked(
    conn: &mut PgConnection,
    updates: &[PersonUpdate],
) -> sqlx::Result<Option<Vec<Result<Updated>>>> {
    let at = now();
    let (snapshot, recorded) = read_unlocked(conn, updates, at).await?;
    // Held or not is decided by the write, which takes the locks.
    let held = vec![true; updates.len()];
    let triaged = update::triage(updates, &held, &recorded);
    let mut open = Vec::with_capacity(updates.len());
    let mut persons = Vec::with_capacity(updates.len());
    for ((u, early), person) in updates.iter().zip(&triaged).zip(&snapshot.persons) {
        if early.is_none() {
            open.push(u.clone());
            persons.push(*person);
        }
    }
    let plan = update::plan(
        &open,
        Snapshot {
            persons,
            values: snapshot.values,
        },
    );
    let locks: Vec<i64> = open
        .iter()
        .filter_map(|u| {
            let key = u.request.as_ref()?;
            Some(request_lock(&(u.workspace, u.mode, key.id)))
        })
        .collect();
    let records = update::records_of(&open, &plan.results);
    match write_plan(conn, &plan, &locks, records, at).await {
        Ok(true) => Ok(Some(update::merge(triaged, plan.results))),
        Ok(false) => Ok(None),
        // 40P01: a deadlock; 23503: a row of a person deleted since the read.
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("40P01" | "23503")) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// In one statement, without locks: each update's person, their stored
/// values under the keys it changes, and the records (within their
/// retention at `at`) of the requests the batch carries.
async fn read_unlocked(
    conn: &mut PgConnection,
    updates: &[PersonUpdate],
    at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<(
    Snapshot,
    std::collections::HashMap<update::RequestSlot, RecordedRequest>,
)> {
    let index = |i: usize| i32::try_from(i).expect("batches are far smaller than 2^31");
    let (mut idx, mut workspaces, mut modes, mut distinct_ids) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut key_idx, mut keys) = (Vec::new(), Vec::new());
    let (mut req_idx, mut req_ws, mut req_modes, mut req_ids) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, u) in updates.iter().enumerate() {
        idx.push(index(i));
        workspaces.push(u.workspace);
        modes.push(u.mode.as_str());
        distinct_ids.push(u.distinct_id.clone());
        for change in &u.changes {
            key_idx.push(index(i));
            keys.push(change.key.clone());
        }
        if let Some(key) = &u.request {
            req_idx.push(index(i));
            req_ws.push(u.workspace);
            req_modes.push(u.mode.as_str());
            req_ids.push(key.id);
        }
    }
    // Rows of two kinds: a person with one of their values (or none), and
    // a request record (with a fingerprint).
    type Row = (
        i32,
        Option<PersonId>,
        Option<String>,
        Option<Value>,
        Option<Etag>,
        Option<Vec<u8>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "WITH person AS ( \
             SELECT i.idx, p.workspace_id, p.person_id \
             FROM unnest($1::int4[], $2::uuid[], $3::text[], $4::text[]) \
                 AS i (idx, workspace_id, mode, distinct_id) \
             JOIN persons p ON p.workspace_id = i.workspace_id AND p.mode = i.mode \
                           AND p.distinct_id = i.distinct_id COLLATE \"C\" \
         ) \
         SELECT p.idx, p.person_id, v.attribute_key, v.value, v.etag, NULL::bytea \
         FROM person p \
         LEFT JOIN unnest($5::int4[], $6::text[]) AS k (idx, key) ON k.idx = p.idx \
         LEFT JOIN attribute_values v \
           ON v.workspace_id = p.workspace_id AND v.person_id = p.person_id \
          AND v.attribute_key = k.key COLLATE \"C\" \
         UNION ALL \
         SELECT r.idx, NULL, NULL, q.response, NULL, q.fingerprint \
         FROM unnest($7::int4[], $8::uuid[], $9::text[], $10::uuid[]) \
             AS r (idx, workspace_id, mode, request_id) \
         JOIN requests q ON q.workspace_id = r.workspace_id AND q.mode = r.mode \
                        AND q.request_id = r.request_id \
         WHERE q.created_at > $11",
    )
    .bind(idx)
    .bind(workspaces)
    .bind(modes)
    .bind(distinct_ids)
    .bind(key_idx)
    .bind(keys)
    .bind(req_idx)
    .bind(req_ws)
    .bind(req_modes)
    .bind(req_ids)
    .bind(at - REQUEST_RETENTION)
    .fetch_all(&mut *conn)
    .await?;
    let mut persons = vec![None; updates.len()];
    let mut values = std::collections::HashMap::new();
    let mut recorded = std::collections::HashMap::new();
    for (i, person, key, value, etag, fingerprint) in rows {
        let Some(i) = usize::try_from(i).ok().filter(|i| *i < updates.len()) else {
            continue;
        };
        let update = &updates[i];
        match (fingerprint, update.request.as_ref()) {
            (Some(fingerprint), Some(request)) => {
                let outcome = value
                    .as_ref()
                    .and_then(update::outcome_from_json)
                    .ok_or_else(|| {
                        sqlx::Error::Protocol("a request record holds no outcome".into())
                    })?;
                recorded.insert(
                    (update.workspace, update.mode, request.id),
                    RecordedRequest {
                        fingerprint,
                        outcome,
                    },
                );
            }
            (Some(_), None) => {}
            (None, _) => {
                persons[i] = person;
                if let (Some(person), Some(key), Some(value), Some(etag)) =
                    (person, key, value, etag)
                {
                    values.insert((person, key), (value, etag));
                }
            }
        }
    }
    Ok((Snapshot { persons, values }, recorded))
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

/// A request record to store: its slot, fingerprint and response.
type Record = (update::RequestSlot, Vec<u8>, Value);

/// The text of the error [`write_plan`] raises to undo its statement when
/// a row, person or request was not as the plan read it.
const CONFLICT: &str = "vevee update conflict";

/// Whether `err` is the conflict [`write_plan`] raises.
fn is_conflict(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("22P02") && db.message().contains(CONFLICT)
        }
        _ => false,
    }
}

/// Writes a plan in ONE statement: creates its persons, writes its rows,
/// each only over the etag it was read with (or only where none existed),
/// takes the advisory lock of each of `locks` (request slots; taking one
/// this transaction already holds succeeds) and stores the `records` of the
/// requests it applied, replacing only records past their retention (the
/// sweep runs periodically). `false` when any of that found something else
/// (a person, row or record created or changed since the read, a request
/// held by another transaction): then the statement has failed, so nothing
/// of it is written, and the caller reads again.
///
/// PostgreSQL has no statement to abort a statement, so the final SELECT
/// makes one fail: it casts a text that is not a number to int when any
/// count differs from what the plan expects. Data-modifying CTEs run to
/// completion before it, and a failing statement undoes all of them.
async fn write_plan(
    conn: &mut PgConnection,
    plan: &Plan,
    locks: &[i64],
    records: Vec<Record>,
    at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<bool> {
    let mut people: Vec<_> = plan.new_persons.iter().collect();
    // Key order, as the batch write locks persons in.
    people.sort_by(|a, b| {
        (a.workspace.0, a.mode.as_str(), &a.distinct_id).cmp(&(
            b.workspace.0,
            b.mode.as_str(),
            &b.distinct_id,
        ))
    });
    let person_ws: Vec<WorkspaceId> = people.iter().map(|p| p.workspace).collect();
    let person_modes: Vec<&str> = people.iter().map(|p| p.mode.as_str()).collect();
    let person_dids: Vec<String> = people.iter().map(|p| p.distinct_id.clone()).collect();
    let person_ids: Vec<PersonId> = people.iter().map(|p| p.person_id).collect();
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
    let (mut req_ws, mut req_modes, mut req_ids, mut prints, mut responses) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((w, mode, id), fingerprint, response) in records {
        req_ws.push(w);
        req_modes.push(mode.as_str());
        req_ids.push(id);
        prints.push(fingerprint);
        responses.push(response);
    }
    if person_ids.is_empty()
        && upd.0.is_empty()
        && ins.0.is_empty()
        && del.0.is_empty()
        && locks.is_empty()
        && req_ids.is_empty()
    {
        return Ok(true);
    }
    // DO UPDATE on persons returns the row of a person created
    // concurrently, whose id then differs from ours: the batch was planned
    // without their values. Rows are written in the plan's order and
    // records in key order, so that concurrent batches lock in one order.
    let written = sqlx::query(
        "WITH person AS ( \
             INSERT INTO persons (workspace_id, mode, distinct_id, person_id, created_at) \
             SELECT n.workspace_id, n.mode, n.distinct_id, n.person_id, $5 \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[]) \
                 WITH ORDINALITY AS n (workspace_id, mode, distinct_id, person_id, ord) \
             ORDER BY n.ord \
             ON CONFLICT (workspace_id, mode, distinct_id) \
             DO UPDATE SET distinct_id = EXCLUDED.distinct_id \
             RETURNING person_id \
         ), upd AS ( \
             UPDATE attribute_values v \
             SET value = u.value, etag = u.etag, updated_at = $5 \
             FROM unnest($6::uuid[], $7::uuid[], $8::text[], $9::jsonb[], $10::uuid[], \
                         $11::uuid[]) AS u (workspace_id, person_id, key, value, etag, expected) \
             WHERE v.workspace_id = u.workspace_id AND v.person_id = u.person_id \
               AND v.attribute_key = u.key COLLATE \"C\" AND v.etag = u.expected \
             RETURNING 1 \
         ), ins AS ( \
             INSERT INTO attribute_values \
                 (workspace_id, person_id, attribute_key, value, updated_at, etag) \
             SELECT i.workspace_id, i.person_id, i.key, i.value, $5, i.etag \
             FROM unnest($12::uuid[], $13::uuid[], $14::text[], $15::jsonb[], $16::uuid[]) \
                 WITH ORDINALITY AS i (workspace_id, person_id, key, value, etag, ord) \
             ORDER BY i.ord \
             ON CONFLICT (workspace_id, person_id, attribute_key) DO NOTHING \
             RETURNING 1 \
         ), del AS ( \
             DELETE FROM attribute_values v \
             USING unnest($17::uuid[], $18::uuid[], $19::text[], $20::uuid[]) \
                 AS d (workspace_id, person_id, key, expected) \
             WHERE v.workspace_id = d.workspace_id AND v.person_id = d.person_id \
               AND v.attribute_key = d.key COLLATE \"C\" AND v.etag = d.expected \
             RETURNING 1 \
         ), locks AS ( \
             SELECT pg_try_advisory_xact_lock(l.key) AS got FROM unnest($21::int8[]) AS l (key) \
         ), recorded AS ( \
             INSERT INTO requests \
                 (workspace_id, mode, request_id, fingerprint, response, created_at) \
             SELECT r.workspace_id, r.mode, r.request_id, r.fingerprint, r.response, $5 \
             FROM unnest($22::uuid[], $23::text[], $24::uuid[], $25::bytea[], $26::jsonb[]) \
                 AS r (workspace_id, mode, request_id, fingerprint, response) \
             ORDER BY r.workspace_id, r.mode, r.request_id \
             ON CONFLICT (workspace_id, mode, request_id) DO UPDATE SET \
                 fingerprint = EXCLUDED.fingerprint, response = EXCLUDED.response, \
                 created_at = EXCLUDED.created_at \
             WHERE requests.created_at <= $27 \
             RETURNING 1 \
         ), verdict AS ( \
             SELECT (SELECT count(*) FROM person WHERE person_id = ANY ($4)) = cardinality($4) \
                AND (SELECT count(*) FROM upd) = cardinality($6) \
                AND (SELECT count(*) FROM ins) = cardinality($12) \
                AND (SELECT count(*) FROM del) = cardinality($17) \
                AND (SELECT coalesce(bool_and(got), true) FROM locks) \
                AND (SELECT count(*) FROM recorded) = cardinality($22) AS ok \
         ) \
         SELECT CASE WHEN ok THEN 0 ELSE CAST($28 || ': ' || ok AS int4) END FROM verdict",
    )
    .bind(person_ws)
    .bind(person_modes)
    .bind(person_dids)
    .bind(&person_ids)
    .bind(at)
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
    .bind(locks)
    .bind(req_ws)
    .bind(req_modes)
    .bind(req_ids)
    .bind(prints)
    .bind(responses)
    .bind(at - REQUEST_RETENTION)
    .bind(CONFLICT)
    .execute(&mut *conn)
    .await;
    match written {
        Ok(_) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e),
    }
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
