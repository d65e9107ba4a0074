//! Long-running operations (CONTRACT.md section 9): the purge of an
//! attribute, stored as a row of `operations` so that it outlives the
//! process that started it. [`OperationStore`] is written once for both
//! backends, as `admin` is (the same statements run on both; see there
//! for why a macro).
//!
//! A purge deletes the attribute's values in batches in person_id order,
//! each batch one short transaction that also records its progress, so a
//! purge taken over after a crash resumes where the last commit left it
//! and never counts a value twice. Whoever runs an operation holds its
//! lease (`owner`, expiry in milliseconds since the epoch); every step
//! checks and renews it, so two workers never run one purge at once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Result;
use crate::domain::{OperationId, PersonId, WorkspaceId};

/// A long-running operation as stored (so far, always a purge).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OperationRecord {
    /// The workspace it belongs to.
    #[sqlx(rename = "workspace_id")]
    pub workspace: WorkspaceId,
    /// Its id.
    pub id: OperationId,
    /// The attribute being purged.
    pub attribute_key: String,
    /// Values deleted so far, every mode together.
    pub values_deleted: i64,
    /// The next batch deletes values of persons after this one; cleared
    /// when the operation ends, so that no ended operation holds a
    /// person's id (erasure, section 9).
    pub resume_after: Option<PersonId>,
    /// How many times a worker took the operation.
    pub attempts: i64,
    /// Whether it has ended (with `error_code` set if it failed).
    pub done: bool,
    /// A failed operation's `google.rpc.Code`.
    pub error_code: Option<i32>,
    /// A failed operation's message.
    pub error_message: Option<String>,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When it last made progress.
    pub updated_at: DateTime<Utc>,
    /// When it ended.
    pub done_at: Option<DateTime<Utc>>,
}

/// What asking to purge an attribute did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeStart {
    /// A new purge, unclaimed.
    Started(OperationRecord),
    /// The attribute was already being purged by this operation.
    Running(OperationRecord),
    /// The definition exists but is not archived.
    NotArchived,
    /// No definition has this key.
    NotFound,
}

/// A worker's hold on an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The worker (one id per process).
    pub owner: Uuid,
    /// Until when, in milliseconds since the epoch; renewed by every step.
    pub expires_ms: i64,
}

/// What the last step of a purge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeEnd {
    /// The definition is deleted and the operation done.
    Done(OperationRecord),
    /// Values were written behind the batches (a replica whose cache had
    /// not yet seen the archive); the purge starts over from the first
    /// person.
    ValuesLeft,
    /// Another worker holds the operation now.
    LeaseLost,
}

/// The storage of long-running operations. Every [`AdminStore`] is one.
///
/// [`AdminStore`]: super::AdminStore
#[async_trait]
pub trait OperationStore: Send + Sync + 'static {
    /// Starts purging the archived attribute `key`: marks the definition
    /// (it can no longer be unarchived) and stores a new operation, in one
    /// transaction.
    async fn start_purge(&self, ws: WorkspaceId, key: &str) -> Result<PurgeStart>;

    /// The operation `id` of `ws`.
    async fn get_operation(
        &self,
        ws: WorkspaceId,
        id: OperationId,
    ) -> Result<Option<OperationRecord>>;

    /// Up to `limit` operations of `ws` with an id below `before` (all when
    /// `None`), newest first.
    async fn list_operations(
        &self,
        ws: WorkspaceId,
        before: Option<OperationId>,
        limit: u32,
    ) -> Result<Vec<OperationRecord>>;

    /// Takes the oldest unfinished operation of any workspace whose lease
    /// is free or expired at `now_ms`, counting an attempt.
    async fn claim_operation(&self, lease: Lease, now_ms: i64) -> Result<Option<OperationRecord>>;

    /// Deletes up to `limit` values of the purge's attribute after its
    /// cursor, records them and renews the lease, in one transaction: how
    /// many were deleted (0: none left), `None` if the lease was lost.
    async fn purge_batch(
        &self,
        op: &OperationRecord,
        lease: Lease,
        limit: u32,
    ) -> Result<Option<u64>>;

    /// Deletes the definition and marks the purge done, in one transaction.
    async fn finish_purge(&self, op: &OperationRecord, lease: Lease) -> Result<PurgeEnd>;

    /// Ends the operation as failed with `code` and `message`; the
    /// attribute stays archived and may be unarchived or purged again.
    /// False if the lease was lost.
    async fn fail_operation(
        &self,
        op: &OperationRecord,
        lease: Lease,
        code: i32,
        message: &str,
    ) -> Result<bool>;
}

/// Implements [`OperationStore`] for `$store`, as `sql_admin_store!` does
/// [`AdminStore`](super::AdminStore): reads on `reads:`, writes on `writes:`.
macro_rules! sql_operation_store {
    ($store:ty { reads: $reader:ident, writes: $writer:ident $(,)? }) => {
        const _: () = {
            use async_trait::async_trait;
            use tracing::instrument;
            use uuid::Uuid;

            use $crate::{
                domain::{OperationId, PersonId, WorkspaceId},
                storage::{
                    Error, Result, detached, now,
                    operations::{Lease, OperationRecord, OperationStore, PurgeEnd, PurgeStart},
                },
            };

            /// Renews the lease of `op` and returns its cursor; `None` if
            /// another worker holds it or it has ended.
            const RENEW: &str = "UPDATE operations SET lease_expires_ms = $4, updated_at = $5 \
                                 WHERE workspace_id = $1 AND id = $2 AND lease_owner = $3 \
                                   AND NOT done \
                                 RETURNING resume_after";

            #[async_trait]
            impl OperationStore for $store {
                #[instrument(level = "debug", skip_all)]
                async fn start_purge(&self, ws: WorkspaceId, key: &str) -> Result<PurgeStart> {
                    let writer = self.$writer.clone();
                    let key = key.to_owned();
                    detached(async move {
                        let mut tx = writer.begin().await?;
                        let marked = sqlx::query(
                            "UPDATE attribute_definitions SET purging = $3 \
                             WHERE workspace_id = $1 AND key = $2 AND archived AND NOT purging",
                        )
                        .bind(ws)
                        .bind(&key)
                        .bind(true)
                        .execute(&mut *tx)
                        .await?;
                        if marked.rows_affected() == 1 {
                            let at = now();
                            let op = sqlx::query_as(
                                "INSERT INTO operations \
                                     (workspace_id, id, attribute_key, created_at, updated_at) \
                                 VALUES ($1, $2, $3, $4, $4) \
                                 RETURNING workspace_id, id, attribute_key, values_deleted, \
                                           resume_after, attempts, done, error_code, \
                                           error_message, created_at, updated_at, done_at",
                            )
                            .bind(ws)
                            .bind(OperationId(Uuid::now_v7()))
                            .bind(&key)
                            .bind(at)
                            .fetch_one(&mut *tx)
                            .await?;
                            tx.commit().await?;
                            return Ok(PurgeStart::Started(op));
                        }
                        let state: Option<(bool, bool)> = sqlx::query_as(
                            "SELECT archived, purging FROM attribute_definitions \
                             WHERE workspace_id = $1 AND key = $2",
                        )
                        .bind(ws)
                        .bind(&key)
                        .fetch_optional(&mut *tx)
                        .await?;
                        let answer = match state {
                            None => PurgeStart::NotFound,
                            Some((false, _)) => PurgeStart::NotArchived,
                            Some((true, _)) => {
                                let running: Option<OperationRecord> = sqlx::query_as(
                                    "SELECT workspace_id, id, attribute_key, values_deleted, \
                                            resume_after, attempts, done, error_code, \
                                            error_message, created_at, updated_at, done_at \
                                     FROM operations \
                                     WHERE workspace_id = $1 AND attribute_key = $2 AND NOT done",
                                )
                                .bind(ws)
                                .bind(&key)
                                .fetch_optional(&mut *tx)
                                .await?;
                                // `purging` and the unfinished operation are
                                // set and cleared in one transaction.
                                PurgeStart::Running(running.ok_or_else(|| {
                                    Error::Unexpected(
                                        format!("{key:?} is marked purging without an operation")
                                            .into(),
                                    )
                                })?)
                            }
                        };
                        tx.commit().await?;
                        Ok(answer)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn get_operation(
                    &self,
                    ws: WorkspaceId,
                    id: OperationId,
                ) -> Result<Option<OperationRecord>> {
                    let reader = self.$reader.clone();
                    detached(async move {
                        Ok(sqlx::query_as(
                            "SELECT workspace_id, id, attribute_key, values_deleted, \
                                    resume_after, attempts, done, error_code, error_message, \
                                    created_at, updated_at, done_at \
                             FROM operations WHERE workspace_id = $1 AND id = $2",
                        )
                        .bind(ws)
                        .bind(id)
                        .fetch_optional(&reader)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn list_operations(
                    &self,
                    ws: WorkspaceId,
                    before: Option<OperationId>,
                    limit: u32,
                ) -> Result<Vec<OperationRecord>> {
                    let reader = self.$reader.clone();
                    // Every id is below the largest UUID: one range scan.
                    let before = before.unwrap_or(OperationId(Uuid::max()));
                    detached(async move {
                        Ok(sqlx::query_as(
                            "SELECT workspace_id, id, attribute_key, values_deleted, \
                                    resume_after, attempts, done, error_code, error_message, \
                                    created_at, updated_at, done_at \
                             FROM operations WHERE workspace_id = $1 AND id < $2 \
                             ORDER BY id DESC LIMIT $3",
                        )
                        .bind(ws)
                        .bind(before)
                        .bind(i64::from(limit))
                        .fetch_all(&reader)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn claim_operation(
                    &self,
                    lease: Lease,
                    now_ms: i64,
                ) -> Result<Option<OperationRecord>> {
                    let writer = self.$writer.clone();
                    detached(async move {
                        // The outer condition repeats the inner one: on
                        // PostgreSQL, of two replicas picking the same row,
                        // the second re-checks it after the first's commit
                        // and takes nothing.
                        Ok(sqlx::query_as(
                            "UPDATE operations \
                             SET lease_owner = $1, lease_expires_ms = $2, \
                                 attempts = attempts + 1 \
                             WHERE (workspace_id, id) = ( \
                                     SELECT workspace_id, id FROM operations \
                                     WHERE NOT done AND (lease_expires_ms IS NULL \
                                                         OR lease_expires_ms < $3) \
                                     ORDER BY id LIMIT 1) \
                               AND NOT done \
                               AND (lease_expires_ms IS NULL OR lease_expires_ms < $3) \
                             RETURNING workspace_id, id, attribute_key, values_deleted, \
                                       resume_after, attempts, done, error_code, \
                                       error_message, created_at, updated_at, done_at",
                        )
                        .bind(lease.owner)
                        .bind(lease.expires_ms)
                        .bind(now_ms)
                        .fetch_optional(&writer)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all, fields(key = %op.attribute_key))]
                async fn purge_batch(
                    &self,
                    op: &OperationRecord,
                    lease: Lease,
                    limit: u32,
                ) -> Result<Option<u64>> {
                    let writer = self.$writer.clone();
                    let (ws, id, key) = (op.workspace, op.id, op.attribute_key.clone());
                    detached(async move {
                        let mut tx = writer.begin().await?;
                        let Some((after,)): Option<(Option<PersonId>,)> = sqlx::query_as(RENEW)
                            .bind(ws)
                            .bind(id)
                            .bind(lease.owner)
                            .bind(lease.expires_ms)
                            .bind(now())
                            .fetch_optional(&mut *tx)
                            .await?
                        else {
                            return Ok(None);
                        };
                        // The inner scan walks the primary key (workspace,
                        // person, key) from the cursor: no index on the key
                        // is needed, so the hot path's writes pay for none.
                        let deleted: Vec<(PersonId,)> = sqlx::query_as(
                            "DELETE FROM attribute_values \
                             WHERE workspace_id = $1 AND attribute_key = $2 AND person_id IN ( \
                                 SELECT person_id FROM attribute_values \
                                 WHERE workspace_id = $1 AND person_id > $3 \
                                   AND attribute_key = $2 \
                                 ORDER BY person_id LIMIT $4) \
                             RETURNING person_id",
                        )
                        .bind(ws)
                        .bind(&key)
                        .bind(after.unwrap_or(PersonId(Uuid::nil())))
                        .bind(i64::from(limit))
                        .fetch_all(&mut *tx)
                        .await?;
                        let Some(last) = deleted.iter().map(|(p,)| p.0).max() else {
                            tx.commit().await?;
                            return Ok(Some(0));
                        };
                        let count = deleted.len() as u64;
                        sqlx::query(
                            "UPDATE operations SET values_deleted = values_deleted + $3, \
                                 resume_after = $4 \
                             WHERE workspace_id = $1 AND id = $2",
                        )
                        .bind(ws)
                        .bind(id)
                        .bind(count as i64)
                        .bind(PersonId(last))
                        .execute(&mut *tx)
                        .await?;
                        tx.commit().await?;
                        Ok(Some(count))
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all, fields(key = %op.attribute_key))]
                async fn finish_purge(&self, op: &OperationRecord, lease: Lease) -> Result<PurgeEnd> {
                    let writer = self.$writer.clone();
                    let (ws, id, key) = (op.workspace, op.id, op.attribute_key.clone());
                    detached(async move {
                        let mut tx = writer.begin().await?;
                        let renewed: Option<(Option<PersonId>,)> = sqlx::query_as(RENEW)
                            .bind(ws)
                            .bind(id)
                            .bind(lease.owner)
                            .bind(lease.expires_ms)
                            .bind(now())
                            .fetch_optional(&mut *tx)
                            .await?;
                        if renewed.is_none() {
                            return Ok(PurgeEnd::LeaseLost);
                        }
                        let deleted = sqlx::query(
                            "DELETE FROM attribute_definitions \
                             WHERE workspace_id = $1 AND key = $2 AND purging",
                        )
                        .bind(ws)
                        .bind(&key)
                        .execute(&mut *tx)
                        .await;
                        match deleted {
                            Ok(_) => {}
                            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                                tx.rollback().await?;
                                sqlx::query(
                                    "UPDATE operations SET resume_after = NULL \
                                     WHERE workspace_id = $1 AND id = $2 AND lease_owner = $3",
                                )
                                .bind(ws)
                                .bind(id)
                                .bind(lease.owner)
                                .execute(&writer)
                                .await?;
                                return Ok(PurgeEnd::ValuesLeft);
                            }
                            Err(other) => return Err(other.into()),
                        }
                        let at = now();
                        let done = sqlx::query_as(
                            "UPDATE operations SET done = $3, done_at = $4, updated_at = $4, \
                                 resume_after = NULL, lease_owner = NULL, \
                                 lease_expires_ms = NULL \
                             WHERE workspace_id = $1 AND id = $2 \
                             RETURNING workspace_id, id, attribute_key, values_deleted, \
                                       resume_after, attempts, done, error_code, \
                                       error_message, created_at, updated_at, done_at",
                        )
                        .bind(ws)
                        .bind(id)
                        .bind(true)
                        .bind(at)
                        .fetch_one(&mut *tx)
                        .await?;
                        tx.commit().await?;
                        Ok(PurgeEnd::Done(done))
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all, fields(key = %op.attribute_key))]
                async fn fail_operation(
                    &self,
                    op: &OperationRecord,
                    lease: Lease,
                    code: i32,
                    message: &str,
                ) -> Result<bool> {
                    let writer = self.$writer.clone();
                    let (ws, id, key) = (op.workspace, op.id, op.attribute_key.clone());
                    let message = message.to_owned();
                    detached(async move {
                        let mut tx = writer.begin().await?;
                        let at = now();
                        let failed = sqlx::query(
                            "UPDATE operations SET done = $4, error_code = $5, \
                                 error_message = $6, done_at = $7, updated_at = $7, \
                                 resume_after = NULL, lease_owner = NULL, \
                                 lease_expires_ms = NULL \
                             WHERE workspace_id = $1 AND id = $2 AND lease_owner = $3 \
                               AND NOT done",
                        )
                        .bind(ws)
                        .bind(id)
                        .bind(lease.owner)
                        .bind(true)
                        .bind(code)
                        .bind(message)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                        if failed.rows_affected() == 0 {
                            return Ok(false);
                        }
                        sqlx::query(
                            "UPDATE attribute_definitions SET purging = $3 \
                             WHERE workspace_id = $1 AND key = $2",
                        )
                        .bind(ws)
                        .bind(key)
                        .bind(false)
                        .execute(&mut *tx)
                        .await?;
                        tx.commit().await?;
                        Ok(true)
                    })
                    .await
                }
            }
        };
    };
}

pub(super) use sql_operation_store;
