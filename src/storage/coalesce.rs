//! Group commit: writes that arrive while a commit is in flight are written
//! together in the next one, so a busy server pays one round trip and one
//! durable flush for many writes instead of one each.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::storage::{
    ApiKeyId, ApiKeyRecord, Cleared, DefinitionChanges, DefinitionRecord, Error, Mode, NewApiKey,
    NewDefinition, PersonId, PersonValues, PersonWrite, Result, Settings, Store, Workspace,
    WorkspaceId,
};

/// A write waiting for its commit.
struct Job {
    write: PersonWrite,
    /// Answered only after the commit holding the write is durable.
    reply: oneshot::Sender<Result<PersonId>>,
}

/// A [`Store`] whose `write_values` calls are coalesced into
/// [`Store::write_batch`] calls; everything else goes straight through.
///
/// At most `commits_in_flight` batches are being committed at once. A write
/// that finds a free slot is committed at once (no added latency when idle);
/// writes that arrive while every slot is busy queue, and the next free slot
/// takes all of them (up to `max_batch`) as one batch. Each write keeps its
/// own result: the batch commit isolates a failing write.
pub struct Coalescing {
    inner: Arc<dyn Store>,
    queue: mpsc::Sender<Job>,
}

impl Coalescing {
    /// Coalesces the writes of `inner`. Must be called inside a tokio runtime.
    pub fn new(inner: Arc<dyn Store>, commits_in_flight: usize, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        // Bounded: under overload, callers wait here (and their deadlines
        // apply) rather than growing the queue without end.
        let (queue, jobs) = mpsc::channel(max_batch * commits_in_flight.max(1) * 4);
        tokio::spawn(collect(
            inner.clone(),
            jobs,
            commits_in_flight.max(1),
            max_batch,
        ));
        Self { inner, queue }
    }
}

/// Takes queued writes in batches and commits each batch in a task of its
/// own, so a cancelled request never cuts a commit short.
async fn collect(
    store: Arc<dyn Store>,
    mut jobs: mpsc::Receiver<Job>,
    commits_in_flight: usize,
    max_batch: usize,
) {
    let slots = Arc::new(Semaphore::new(commits_in_flight));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = jobs.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            commit(store.as_ref(), batch).await;
            drop(slot);
        });
    }
}

async fn commit(store: &dyn Store, batch: Vec<Job>) {
    let (writes, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|j| (j.write, j.reply)).unzip();
    match store.write_batch(writes).await {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                // The caller may have gone (cancelled); its write stands.
                let _ = reply.send(result);
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.share()));
            }
        }
    }
}

impl Error {
    /// A copy of a batch's error for each of its writes.
    fn share(&self) -> Error {
        match self {
            Error::Unavailable(e) => Error::Unavailable(e.clone()),
            Error::AlreadyExists => Error::AlreadyExists,
            Error::Config(m) => Error::Config(m.clone()),
            Error::Unexpected(e) => Error::Unexpected(e.to_string().into()),
        }
    }
}

#[async_trait]
impl Store for Coalescing {
    async fn write_values(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
        values: &[(String, Value)],
    ) -> Result<PersonId> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            write: PersonWrite {
                workspace: ws,
                mode,
                distinct_id: distinct_id.to_owned(),
                values: values.to_vec(),
            },
            reply,
        };
        let gone = || Error::Unexpected("the write coalescer stopped".into());
        self.queue.send(job).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    async fn write_batch(&self, writes: Vec<PersonWrite>) -> Result<Vec<Result<PersonId>>> {
        self.inner.write_batch(writes).await
    }

    async fn migrate(&self) -> Result<()> {
        self.inner.migrate().await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    async fn create_workspace(&self, name: &str) -> Result<Workspace> {
        self.inner.create_workspace(name).await
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        self.inner.list_workspaces().await
    }

    async fn get_settings(&self, ws: WorkspaceId) -> Result<Option<Settings>> {
        self.inner.get_settings(ws).await
    }

    async fn update_settings(
        &self,
        ws: WorkspaceId,
        settings: Settings,
    ) -> Result<Option<Settings>> {
        self.inner.update_settings(ws, settings).await
    }

    async fn insert_api_key(&self, key: NewApiKey) -> Result<ApiKeyRecord> {
        self.inner.insert_api_key(key).await
    }

    async fn find_api_key(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>> {
        self.inner.find_api_key(hash).await
    }

    async fn list_api_keys(&self, ws: WorkspaceId) -> Result<Vec<ApiKeyRecord>> {
        self.inner.list_api_keys(ws).await
    }

    async fn revoke_api_key(&self, ws: WorkspaceId, id: ApiKeyId) -> Result<bool> {
        self.inner.revoke_api_key(ws, id).await
    }

    async fn create_definition(
        &self,
        ws: WorkspaceId,
        def: NewDefinition,
    ) -> Result<DefinitionRecord> {
        self.inner.create_definition(ws, def).await
    }

    async fn get_definition(&self, ws: WorkspaceId, key: &str) -> Result<Option<DefinitionRecord>> {
        self.inner.get_definition(ws, key).await
    }

    async fn list_definitions(
        &self,
        ws: WorkspaceId,
        include_archived: bool,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DefinitionRecord>> {
        self.inner
            .list_definitions(ws, include_archived, after, limit)
            .await
    }

    async fn update_definition(
        &self,
        ws: WorkspaceId,
        key: &str,
        changes: DefinitionChanges,
    ) -> Result<Option<DefinitionRecord>> {
        self.inner.update_definition(ws, key, changes).await
    }

    async fn set_archived(
        &self,
        ws: WorkspaceId,
        key: &str,
        archived: bool,
    ) -> Result<Option<DefinitionRecord>> {
        self.inner.set_archived(ws, key, archived).await
    }

    async fn find_person(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
    ) -> Result<Option<PersonId>> {
        self.inner.find_person(ws, mode, distinct_id).await
    }

    async fn read_values(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
        keys: Option<&[String]>,
        include_archived: bool,
    ) -> Result<Option<PersonValues>> {
        self.inner
            .read_values(ws, mode, distinct_id, keys, include_archived)
            .await
    }

    async fn clear_value(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
        key: &str,
    ) -> Result<Option<Cleared>> {
        self.inner.clear_value(ws, mode, distinct_id, key).await
    }
}
