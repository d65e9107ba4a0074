//! Group commit: writes that arrive while a commit is in flight are written
//! together in the next one, so a busy server pays one round trip and one
//! durable flush for many writes instead of one each.

use std::{future::Future, sync::Arc, time::Instant};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{
    domain::{Mode, WorkspaceId},
    metrics::{Batches, Metrics},
    storage::{
        Cleared, Error, ListedPerson, PersonRead, PersonUpdate, PersonValues, PersonWrite,
        PersonsQuery, Receipt, RecordedRequest, Result, Updated, ValueStore,
    },
};

/// A write waiting for its commit.
struct WriteJob {
    write: PersonWrite,
    /// Answered only after the commit holding the write is durable.
    reply: oneshot::Sender<Result<Receipt>>,
}

/// An update waiting for its commit.
struct UpdateJob {
    update: PersonUpdate,
    /// Answered only after the commit holding the update is durable.
    reply: oneshot::Sender<Result<Updated>>,
}

/// A read waiting for its batch.
struct ReadJob {
    read: PersonRead,
    reply: oneshot::Sender<Result<Option<PersonValues>>>,
}

/// How many batches may run at once and how large they get.
#[derive(Debug, Clone, Copy)]
pub struct Lanes {
    /// Most batches being run at once (at least 1).
    pub in_flight: usize,
    /// Most operations in one batch; 1 turns batching off.
    pub max_batch: usize,
}

/// A [`ValueStore`] whose `write_values` calls are coalesced into
/// [`ValueStore::write_batch`] calls, whose `update_values` calls are
/// coalesced into [`ValueStore::update_batch`] calls (with the same lanes as
/// writes, in a queue of their own) and, when asked, whose `read_values` calls
/// are coalesced into [`ValueStore::read_batch`] calls; everything else goes
/// straight through.
///
/// At most `in_flight` batches of each kind run at once. An operation that
/// finds a free slot runs at once (no added latency when idle); operations
/// that arrive while every slot is busy queue, and the next free slot takes
/// all of them (up to `max_batch`) as one batch. Each operation keeps its
/// own result: the batch commit isolates a failing write. A read joins only
/// a batch that starts after it arrived, so it sees every write
/// acknowledged before it was asked.
pub struct Coalescing {
    inner: Arc<dyn ValueStore>,
    writes: mpsc::Sender<WriteJob>,
    updates: mpsc::Sender<UpdateJob>,
    reads: Option<mpsc::Sender<ReadJob>>,
}

impl Coalescing {
    /// Coalesces the writes of `inner`, and its reads too when `reads` is
    /// given, recording each batch's size and time in `metrics`. Must be
    /// called inside a tokio runtime.
    pub fn new(
        inner: Arc<dyn ValueStore>,
        writes: Lanes,
        reads: Option<Lanes>,
        metrics: &Metrics,
    ) -> Self {
        let (store, seen) = (inner.clone(), metrics.batches("update"));
        let updates = lane(writes, move |batch| {
            update(store.clone(), batch, seen.clone())
        });
        let (store, seen) = (inner.clone(), metrics.batches("write"));
        let writes = lane(writes, move |batch| {
            commit(store.clone(), batch, seen.clone())
        });
        let reads = reads.map(|lanes| {
            let (store, seen) = (inner.clone(), metrics.batches("read"));
            lane(lanes, move |batch| read(store.clone(), batch, seen.clone()))
        });
        Self {
            inner,
            writes,
            updates,
            reads,
        }
    }
}

/// Starts a collector running batches of the jobs sent to the returned queue.
fn lane<J, F, Fut>(lanes: Lanes, run: F) -> mpsc::Sender<J>
where
    J: Send + 'static,
    F: Fn(Vec<J>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let in_flight = lanes.in_flight.max(1);
    let max_batch = lanes.max_batch.max(1);
    // Bounded: under overload, callers wait here (and their deadlines
    // apply) rather than growing the queue without end.
    let (queue, jobs) = mpsc::channel(max_batch * in_flight * 4);
    tokio::spawn(collect(jobs, in_flight, max_batch, run));
    queue
}

/// Takes queued jobs in batches and runs each batch in a task of its own,
/// so a cancelled request never cuts a commit short.
async fn collect<J, F, Fut>(mut jobs: mpsc::Receiver<J>, in_flight: usize, max_batch: usize, run: F)
where
    J: Send + 'static,
    F: Fn(Vec<J>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(in_flight));
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
        let batch = run(batch);
        tokio::spawn(async move {
            batch.await;
            drop(slot);
        });
    }
}

async fn commit(store: Arc<dyn ValueStore>, batch: Vec<WriteJob>, seen: Batches) {
    let (writes, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|j| (j.write, j.reply)).unzip();
    let (size, started) = (writes.len(), Instant::now());
    let outcome = store.write_batch(writes).await;
    seen.observe(size, started.elapsed());
    answer(replies, outcome, |r| r);
}

async fn update(store: Arc<dyn ValueStore>, batch: Vec<UpdateJob>, seen: Batches) {
    let (updates, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|j| (j.update, j.reply)).unzip();
    let (size, started) = (updates.len(), Instant::now());
    let outcome = store.update_batch(updates).await;
    seen.observe(size, started.elapsed());
    answer(replies, outcome, |r| r);
}

async fn read(store: Arc<dyn ValueStore>, batch: Vec<ReadJob>, seen: Batches) {
    let (reads, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|j| (j.read, j.reply)).unzip();
    let (size, started) = (reads.len(), Instant::now());
    let outcome = store.read_batch(reads).await;
    seen.observe(size, started.elapsed());
    answer(replies, outcome, Ok);
}

/// Sends each job its own answer, or each a copy of the batch's error.
fn answer<A, T>(
    replies: Vec<oneshot::Sender<Result<T>>>,
    outcome: Result<Vec<A>>,
    each: impl Fn(A) -> Result<T>,
) {
    match outcome {
        Ok(answers) => {
            for (reply, a) in replies.into_iter().zip(answers) {
                // The caller may have gone (cancelled); a write stands.
                let _ = reply.send(each(a));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.share()));
            }
        }
    }
}

/// Queues the job `make` builds and waits for its answer.
async fn ask<J, T>(
    queue: &mpsc::Sender<J>,
    make: impl FnOnce(oneshot::Sender<Result<T>>) -> J,
) -> Result<T> {
    let (reply, answer) = oneshot::channel();
    let gone = || Error::Unexpected("the coalescer stopped".into());
    queue.send(make(reply)).await.map_err(|_| gone())?;
    answer.await.map_err(|_| gone())?
}

impl Error {
    /// A copy of a batch's error for each of its writes.
    fn share(&self) -> Error {
        match self {
            Error::Unavailable(e) => Error::Unavailable(e.clone()),
            Error::AlreadyExists => Error::AlreadyExists,
            Error::Config(m) => Error::Config(m.clone()),
            Error::Missing(m) => Error::Missing(m.clone()),
            Error::Refused(failures) => Error::Refused(failures.clone()),
            Error::RequestReused => Error::RequestReused,
            Error::RequestInProgress => Error::RequestInProgress,
            Error::Unexpected(e) => Error::Unexpected(e.to_string().into()),
        }
    }
}

#[async_trait]
impl ValueStore for Coalescing {
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
        ask(&self.writes, |reply| WriteJob { write, reply }).await
    }

    async fn write_batch(&self, writes: Vec<PersonWrite>) -> Result<Vec<Result<Receipt>>> {
        self.inner.write_batch(writes).await
    }

    async fn update_values(&self, update: PersonUpdate) -> Result<Updated> {
        ask(&self.updates, |reply| UpdateJob { update, reply }).await
    }

    async fn update_batch(&self, updates: Vec<PersonUpdate>) -> Result<Vec<Result<Updated>>> {
        self.inner.update_batch(updates).await
    }

    async fn preview_update(&self, update: PersonUpdate) -> Result<Updated> {
        self.inner.preview_update(update).await
    }

    async fn find_request(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        request_id: uuid::Uuid,
    ) -> Result<Option<RecordedRequest>> {
        self.inner.find_request(ws, mode, request_id).await
    }

    async fn forget_requests(&self, before: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        self.inner.forget_requests(before).await
    }

    async fn read_values(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
        keys: Option<&[String]>,
        include_archived: bool,
    ) -> Result<Option<PersonValues>> {
        let Some(reads) = &self.reads else {
            return self
                .inner
                .read_values(ws, mode, distinct_id, keys, include_archived)
                .await;
        };
        let read = PersonRead::new(ws, mode, distinct_id, keys, include_archived);
        ask(reads, |reply| ReadJob { read, reply }).await
    }

    async fn read_batch(&self, reads: Vec<PersonRead>) -> Result<Vec<Option<PersonValues>>> {
        self.inner.read_batch(reads).await
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

    async fn delete_person(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
    ) -> Result<Option<crate::domain::PersonId>> {
        self.inner.delete_person(ws, mode, distinct_id).await
    }

    async fn list_persons(&self, query: PersonsQuery) -> Result<Vec<ListedPerson>> {
        self.inner.list_persons(query).await
    }
}
