//! Purging an attribute (CONTRACT.md section 9) as a long-running
//! operation: starting one, reading and listing them, and the worker that
//! runs them in every server.
//!
//! The worker claims unfinished operations of any workspace with a lease
//! (see `storage::operations`): at start-up, every `poll` after, and at once
//! when this replica starts a purge. So a purge whose server was killed is
//! resumed by the restarted server, or by another replica sharing the
//! database, once its lease expires; one that keeps being interrupted ends
//! failed rather than retried forever.

use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use super::{App, Error};
use crate::{
    domain::{self, AttributeKey, OperationId, Reason, WorkspaceId},
    storage::{self, Lease, OperationRecord, PurgeEnd, PurgeStart},
};

/// Operations per page when a list names none.
pub const DEFAULT_OPERATIONS_PAGE_SIZE: u32 = 50;

/// Times a worker may take an operation before it is failed: more means
/// servers died while running it again and again.
pub const MAX_OPERATION_ATTEMPTS: i64 = 10;

/// How purges run, from the server's flags.
#[derive(Debug, Clone, Copy)]
pub struct PurgeSettings {
    /// Most values deleted by one statement (one short transaction).
    pub batch_size: u32,
    /// The wait between batches, which leaves the database to other traffic.
    pub pause: Duration,
    /// How long a worker's claim on an operation lasts without progress;
    /// a killed server's operation is taken over after at most this.
    pub lease: Duration,
    /// How often the worker looks for operations to take over.
    pub poll: Duration,
}

/// One page of operations, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationPage {
    /// The operations of the page.
    pub operations: Vec<OperationRecord>,
    /// The token of the next page; empty on the last.
    pub next_page_token: String,
}

/// The resource name clients see: `operations/{id}`.
pub fn operation_name(id: OperationId) -> String {
    format!("operations/{id}")
}

fn operation_not_found(name: &str) -> Error {
    domain::Error::new(
        Reason::OperationNotFound,
        format!(
            "No operation \"{name}\" exists in this workspace; pass the name an operation \
             returned (operations/ followed by 32 hex digits)."
        ),
    )
    .into()
}

/// The id in `operations/{id}` (or a bare id, as REST paths give it).
fn parse_name(name: &str) -> Option<OperationId> {
    let id = name.strip_prefix("operations/").unwrap_or(name);
    (id.len() == 32)
        .then(|| Uuid::try_parse(id).ok())
        .flatten()
        .map(OperationId)
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl App {
    /// Starts purging the archived attribute `key`, or returns the purge
    /// already running; `attribute_not_archived` if it isn't archived,
    /// `attribute_definition_not_found` if it isn't declared.
    pub async fn purge_attribute(
        &self,
        ws: WorkspaceId,
        key: &str,
    ) -> Result<OperationRecord, Error> {
        let Ok(key) = AttributeKey::parse(key) else {
            return Err(super::definitions::not_found(key));
        };
        match self.admin().start_purge(ws, key.as_str()).await? {
            PurgeStart::Started(op) => {
                tracing::info!(%ws, key = %key, operation = %op.id, "purge started");
                self.inner.operations_wake.notify_one();
                Ok(op)
            }
            PurgeStart::Running(op) => Ok(op),
            PurgeStart::NotArchived => Err(domain::Error::new(
                Reason::AttributeNotArchived,
                format!(
                    "The attribute \"{key}\" is not archived; archive it with \
                     ArchiveAttributeDefinition first, then delete it."
                ),
            )
            .with_attribute(key.as_str())
            .into()),
            PurgeStart::NotFound => Err(super::definitions::not_found(key.as_str())),
        }
    }

    /// The operation named `name` (`operations/{id}`) in `ws`.
    pub async fn operation(&self, ws: WorkspaceId, name: &str) -> Result<OperationRecord, Error> {
        let id = parse_name(name).ok_or_else(|| operation_not_found(name))?;
        self.admin()
            .get_operation(ws, id)
            .await?
            .ok_or_else(|| operation_not_found(name))
    }

    /// One page of the operations of `ws`, newest first, after
    /// `page_token` (empty: the first page); `page_size` 0 takes
    /// [`DEFAULT_OPERATIONS_PAGE_SIZE`], more than
    /// [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE) takes that many.
    pub async fn list_operations(
        &self,
        ws: WorkspaceId,
        page_size: u32,
        page_token: &str,
    ) -> Result<OperationPage, Error> {
        let page_size = match page_size {
            0 => DEFAULT_OPERATIONS_PAGE_SIZE,
            n => n.min(super::MAX_PAGE_SIZE),
        };
        let before = match page_token {
            "" => None,
            token => Some(parse_name(token).ok_or_else(|| {
                Error::refused(
                    Reason::InvalidArgument,
                    "page_token: not a token this service returned; pass the \
                     next_page_token of the previous page, or an empty token for the first page.",
                )
            })?),
        };
        let mut operations = self
            .admin()
            .list_operations(ws, before, page_size + 1)
            .await?;
        let more = operations.len() > page_size as usize;
        operations.truncate(page_size as usize);
        let next_page_token = match operations.last() {
            Some(last) if more => last.id.to_string(),
            _ => String::new(),
        };
        Ok(OperationPage {
            operations,
            next_page_token,
        })
    }

    /// Runs operations until the task is dropped: takes each unfinished
    /// operation whose lease is free and runs it to its end.
    pub async fn run_operations(&self, settings: PurgeSettings) {
        // One owner per process: a restarted server is another owner, and
        // waits for the dead one's lease to expire.
        let owner = Uuid::new_v4();
        loop {
            let lease = Lease {
                owner,
                expires_ms: now_ms() + settings.lease.as_millis() as i64,
            };
            match self.admin().claim_operation(lease, now_ms()).await {
                // Another one may be waiting: look again at once.
                Ok(Some(op)) => {
                    self.run_purge(op, owner, settings).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "looking for operations to run failed"),
            }
            tokio::select! {
                () = self.inner.operations_wake.notified() => {}
                () = tokio::time::sleep(settings.poll) => {}
            }
        }
    }

    /// Runs the purge `op`, claimed by `owner`, until it ends or the lease
    /// is lost.
    async fn run_purge(&self, op: OperationRecord, owner: Uuid, settings: PurgeSettings) {
        let lease = || Lease {
            owner,
            expires_ms: now_ms() + settings.lease.as_millis() as i64,
        };
        let span = tracing::info_span!("purge", operation = %op.id, key = %op.attribute_key);
        if op.attempts > MAX_OPERATION_ATTEMPTS {
            let message = format!(
                "The purge of \"{}\" was interrupted {} times and was given up; the attribute \
                 stays archived, with the values not yet deleted. Delete it again to retry.",
                op.attribute_key, MAX_OPERATION_ATTEMPTS
            );
            self.fail(&op, lease(), CODE_ABORTED, &message).await;
            return;
        }
        tracing::info!(parent: &span, resumed_at = op.values_deleted, "purge running");
        loop {
            match self
                .admin()
                .purge_batch(&op, lease(), settings.batch_size)
                .await
            {
                Ok(Some(0)) => match self.admin().finish_purge(&op, lease()).await {
                    Ok(PurgeEnd::Done(done)) => {
                        if let Ok(key) = AttributeKey::parse(&done.attribute_key) {
                            self.catalog().definition_removed(done.workspace, &key);
                        }
                        tracing::info!(parent: &span, values = done.values_deleted, "purge done");
                        return;
                    }
                    Ok(PurgeEnd::ValuesLeft) => {
                        tracing::info!(parent: &span, "values written during the purge; sweeping again");
                    }
                    Ok(PurgeEnd::LeaseLost) => return,
                    Err(e) => {
                        if !self.retry_after(&e, settings).await {
                            self.fail(&op, lease(), CODE_INTERNAL, &failure(&e)).await;
                            return;
                        }
                    }
                },
                Ok(Some(_)) => tokio::time::sleep(settings.pause).await,
                Ok(None) => {
                    tracing::info!(parent: &span, "another worker took the purge over");
                    return;
                }
                Err(e) => {
                    if !self.retry_after(&e, settings).await {
                        self.fail(&op, lease(), CODE_INTERNAL, &failure(&e)).await;
                        return;
                    }
                }
            }
        }
    }

    /// After an outage, waits a poll interval and says to go on (the lease
    /// may have expired meanwhile; the next step finds out). Anything else
    /// is not retried.
    async fn retry_after(&self, e: &storage::Error, settings: PurgeSettings) -> bool {
        if matches!(e, storage::Error::Unavailable(_)) {
            tracing::warn!(error = %e, "purge paused: database unavailable");
            tokio::time::sleep(settings.poll).await;
            true
        } else {
            false
        }
    }

    async fn fail(&self, op: &OperationRecord, lease: Lease, code: i32, message: &str) {
        tracing::error!(operation = %op.id, key = %op.attribute_key, %message, "purge failed");
        if let Err(e) = self.admin().fail_operation(op, lease, code, message).await {
            // Its lease expires and another attempt (or this worker) ends it.
            tracing::warn!(error = %e, "recording the failed purge failed");
        }
    }
}

/// The message of an operation failed by `e`: what happened, without the
/// database's details (they are logged).
fn failure(e: &storage::Error) -> String {
    tracing::error!(error = %e, "purge step failed");
    "The purge failed on an unexpected database error (logged by the server); the attribute \
     stays archived, with the values not yet deleted. Delete it again to retry."
        .to_owned()
}

/// `google.rpc.Code.INTERNAL`: the app layer knows no gRPC types.
const CODE_INTERNAL: i32 = 13;

/// `google.rpc.Code.ABORTED`.
const CODE_ABORTED: i32 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_or_without_the_collection() {
        let id = OperationId(Uuid::now_v7());
        assert_eq!(parse_name(&operation_name(id)), Some(id));
        assert_eq!(parse_name(&id.to_string()), Some(id));
        for bad in [
            "",
            "operations/",
            "operations/xyz",
            "other/0123",
            &id.0.to_string(),
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
