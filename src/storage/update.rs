//! Updates decided against the stored values at the moment of the write:
//! the types of [`ValueStore::update_batch`](super::ValueStore::update_batch)
//! and the planning both backends share.
//!
//! A backend reads the persons and values a batch touches (locked, under
//! the write lock, or unlocked and then written only over the etags read),
//! [`plan`]s the batch here, writes the planned rows and commits. The planner applies the batch's updates one after another
//! against the values as read, so several updates of one value in one batch
//! build on each other exactly as if they had been committed one by one.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::domain::{self, Etag, Mode, PersonId, Reason, WorkspaceId};
use crate::storage::{Error, Result};

/// What one change does to the stored value: decided by the caller's rules
/// (the domain's) from the value as stored when the write happens. Storage
/// never interprets values itself.
pub type Decide =
    Arc<dyn Fn(Option<&Value>) -> Result<Decision, domain::Error> + Send + Sync + 'static>;

/// The decision about one stored value.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Store this value (with a new etag).
    Write(Value),
    /// Remove the stored value.
    Delete,
    /// Leave the value as it is: the change does not apply (`applied: false`).
    Keep,
}

/// A precondition on the stored value's etag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfEtag {
    /// Only if no value is stored (`if_etag: ""`).
    Absent,
    /// Only if the stored value's etag is exactly this text.
    Is(String),
}

/// One change of an update: the attribute, an optional precondition and
/// the decision to take against whatever is stored.
#[derive(Clone)]
pub struct ValueChange {
    /// The attribute key (declared; validated by the caller).
    pub key: String,
    /// The precondition, checked before `decide`.
    pub if_etag: Option<IfEtag>,
    /// The decision.
    pub decide: Decide,
}

impl fmt::Debug for ValueChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueChange")
            .field("key", &self.key)
            .field("if_etag", &self.if_etag)
            .finish_non_exhaustive()
    }
}

/// One person's changes, all or nothing.
#[derive(Debug, Clone)]
pub struct PersonUpdate {
    /// The workspace.
    pub workspace: WorkspaceId,
    /// The mode of the key that writes.
    pub mode: Mode,
    /// The person's distinct_id (validated by the caller).
    pub distinct_id: String,
    /// The changes, at most one per key (the caller refuses two).
    pub changes: Vec<ValueChange>,
    /// The request's idempotency key, if it has one: the update is applied
    /// at most once per key (in the workspace and mode) within
    /// [`REQUEST_RETENTION`], and a repeat gets the first outcome.
    pub request: Option<RequestKey>,
}

/// How long a request's outcome is kept for its repeats (AIP-155; CONTRACT.md
/// section 8 says 24 hours).
pub const REQUEST_RETENTION: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// An idempotency key and what identifies the request it was first sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    /// The client's request_id.
    pub id: Uuid,
    /// A hash of the RPC and its request body: a repeat must match it.
    pub fingerprint: Vec<u8>,
    /// What the caller knows of its response beyond the outcome (what
    /// coercion did to the input), recorded with it so that a repeat gets
    /// the first response even if coercion would now differ. Storage keeps
    /// it as given.
    pub annex: Value,
}

/// A request outcome as recorded for its repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// The fingerprint of the first request.
    pub fingerprint: Vec<u8>,
    /// Its outcome, with the annex in [`Updated::replayed_annex`].
    pub outcome: Updated,
}

/// What became of one change.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeOutcome {
    /// Whether the value changed (false: kept as it was).
    pub applied: bool,
    /// The value stored now; `None` when there is none.
    pub value: Option<Value>,
    /// The etag of the value stored now; `None` when there is none.
    pub etag: Option<Etag>,
}

/// What an update did.
#[derive(Debug, Clone, PartialEq)]
pub struct Updated {
    /// The person; `None` if they don't exist (nothing was written, so none
    /// was created).
    pub person_id: Option<PersonId>,
    /// One outcome per change, in order.
    pub changes: Vec<ChangeOutcome>,
    /// For a repeat answered from a request record: the annex the first
    /// request recorded (see [`RequestKey::annex`]); `None` otherwise.
    pub replayed_annex: Option<Value>,
}

/// Who a planned row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Owner {
    /// A person found by the read.
    Known(PersonId),
    /// A person this batch creates: the index into [`Plan::new_persons`].
    New(usize),
}

/// A stored value as read: its JSON and etag.
pub(super) type Stored = (Value, Etag);

/// What the backend read for a batch: each update's person (if any), and
/// every stored value of those persons under the keys the batch names.
pub(super) struct Snapshot {
    /// Per update, in order.
    pub(super) persons: Vec<Option<PersonId>>,
    /// By person and key.
    pub(super) values: HashMap<(PersonId, String), Stored>,
}

/// A row to write, with the etag it must still have (`None`: it must not
/// exist), so that a backend without row locks can detect a concurrent write.
#[derive(Debug, Clone)]
pub(super) struct RowWrite {
    pub(super) workspace: WorkspaceId,
    pub(super) owner: Owner,
    pub(super) key: String,
    /// `None` deletes the row.
    pub(super) new: Option<Stored>,
    pub(super) expected: Option<Etag>,
}

/// A person the batch creates.
#[derive(Debug, Clone)]
pub(super) struct NewPerson {
    pub(super) workspace: WorkspaceId,
    pub(super) mode: Mode,
    pub(super) distinct_id: String,
    pub(super) person_id: PersonId,
}

/// The writes of a batch and each update's result.
pub(super) struct Plan {
    pub(super) new_persons: Vec<NewPerson>,
    pub(super) rows: Vec<RowWrite>,
    pub(super) results: Vec<Result<Updated>>,
}

/// The keys a batch reads: each update's person with the keys it changes.
pub(super) fn keys_of(
    updates: &[PersonUpdate],
    persons: &[Option<PersonId>],
) -> Vec<(WorkspaceId, PersonId, String)> {
    let mut keys = Vec::new();
    for (update, person) in updates.iter().zip(persons) {
        if let Some(person) = person {
            for change in &update.changes {
                keys.push((update.workspace, *person, change.key.clone()));
            }
        }
    }
    keys.sort_by(|a, b| (a.0.0, a.1.0, &a.2).cmp(&(b.0.0, b.1.0, &b.2)));
    keys.dedup();
    keys
}

/// Applies `updates` in order against `snapshot`: each update all or
/// nothing, later ones seeing earlier ones' results. An update that changes
/// nothing does not create its person.
pub(super) fn plan(updates: &[PersonUpdate], snapshot: Snapshot) -> Plan {
    // By workspace, person and key: the value as the batch has left it so
    // far, and the etag it had when read.
    type Slot = (WorkspaceId, Owner, String);
    let mut state: HashMap<Slot, Option<Stored>> = HashMap::new();
    let mut original: HashMap<Slot, Option<Etag>> = HashMap::new();
    let mut owners: HashMap<(WorkspaceId, Mode, String), Owner> = HashMap::new();
    let mut new_persons: Vec<NewPerson> = Vec::new();
    let mut results = Vec::with_capacity(updates.len());
    for (update, person) in updates.iter().zip(&snapshot.persons) {
        let who = (update.workspace, update.mode, update.distinct_id.clone());
        let owner = match (owners.get(&who), person) {
            (Some(owner), _) => Some(*owner),
            (None, Some(id)) => Some(Owner::Known(*id)),
            (None, None) => None,
        };
        let ws = update.workspace;
        let current = |key: &str, state: &HashMap<Slot, Option<Stored>>| -> Option<Stored> {
            let owner = owner?;
            if let Some(entry) = state.get(&(ws, owner, key.to_owned())) {
                return entry.clone();
            }
            match owner {
                Owner::Known(id) => snapshot.values.get(&(id, key.to_owned())).cloned(),
                Owner::New(_) => None,
            }
        };
        let mut decided = Vec::with_capacity(update.changes.len());
        let mut failures = Vec::new();
        for (i, change) in update.changes.iter().enumerate() {
            let stored = current(&change.key, &state);
            if let Some(precondition) = &change.if_etag {
                let etag = stored.as_ref().map(|(_, etag)| etag.to_string());
                let holds = match precondition {
                    IfEtag::Absent => etag.is_none(),
                    IfEtag::Is(wanted) => etag.as_deref() == Some(wanted.as_str()),
                };
                if !holds {
                    failures.push((i, changed(&change.key, etag)));
                    continue;
                }
            }
            match (change.decide)(stored.as_ref().map(|(value, _)| value)) {
                Ok(decision) => decided.push((stored, decision)),
                Err(e) => failures.push((i, e)),
            }
        }
        if !failures.is_empty() {
            results.push(Err(Error::Refused(failures)));
            continue;
        }
        let writes = decided.iter().any(|(_, d)| matches!(d, Decision::Write(_)));
        let owner = match owner {
            Some(owner) => Some(owner),
            None if writes => {
                let owner = Owner::New(new_persons.len());
                new_persons.push(NewPerson {
                    workspace: update.workspace,
                    mode: update.mode,
                    distinct_id: update.distinct_id.clone(),
                    person_id: PersonId(Uuid::now_v7()),
                });
                owners.insert(who, owner);
                Some(owner)
            }
            None => None,
        };
        let mut outcomes = Vec::with_capacity(decided.len());
        for (change, (stored, decision)) in update.changes.iter().zip(decided) {
            let slot = owner.map(|o| (ws, o, change.key.clone()));
            let now = match decision {
                Decision::Write(value) => Some((value, Etag(Uuid::new_v4()))),
                Decision::Delete => None,
                Decision::Keep => {
                    outcomes.push(ChangeOutcome {
                        applied: false,
                        etag: stored.as_ref().map(|(_, etag)| *etag),
                        value: stored.map(|(value, _)| value),
                    });
                    continue;
                }
            };
            if let Some(slot) = slot {
                original
                    .entry(slot.clone())
                    .or_insert_with(|| stored.as_ref().map(|(_, etag)| *etag));
                state.insert(slot, now.clone());
            }
            outcomes.push(ChangeOutcome {
                applied: true,
                etag: now.as_ref().map(|(_, etag)| *etag),
                value: now.map(|(value, _)| value),
            });
        }
        let person_id = owner.map(|o| match o {
            Owner::Known(id) => id,
            Owner::New(i) => new_persons[i].person_id,
        });
        results.push(Ok(Updated {
            person_id,
            changes: outcomes,
            replayed_annex: None,
        }));
    }
    let mut rows: Vec<RowWrite> = state
        .into_iter()
        .filter_map(|(slot, new)| {
            let expected = original.get(&slot).copied().flatten();
            // Deleting what was never there (written then cleared in one
            // batch) writes nothing.
            if new.is_none() && expected.is_none() {
                return None;
            }
            let (workspace, owner, key) = slot;
            Some(RowWrite {
                workspace,
                owner,
                key,
                new,
                expected,
            })
        })
        .collect();
    // One global order of rows, so that concurrent batches lock rows in the
    // same order and cannot deadlock each other.
    rows.sort_by(|a, b| {
        let id = |r: &RowWrite| match r.owner {
            Owner::Known(id) => (0, id.0),
            Owner::New(i) => (1, new_persons[i].person_id.0),
        };
        (a.workspace.0, id(a), &a.key).cmp(&(b.workspace.0, id(b), &b.key))
    });
    Plan {
        new_persons,
        rows,
        results,
    }
}

/// `attribute_value_changed` for `key`, whose etag is now `etag`.
fn changed(key: &str, etag: Option<String>) -> domain::Error {
    let message = match &etag {
        Some(etag) => format!(
            "The value of \"{key}\" changed since it was read: its etag is now {etag}; read it \
             again (or use this etag) and retry."
        ),
        None => format!(
            "The value of \"{key}\" changed since it was read: no value is stored now; retry \
             with if_etag \"\" to write only while none is."
        ),
    };
    domain::Error::new(Reason::AttributeValueChanged, message)
        .with_attribute(key)
        .with_current_etag(etag.unwrap_or_default())
}

/// The outcome of the one update of `updates` as [`plan`] would have it,
/// for a dry run: etags of values it would write are `None` (they exist only
/// once written), and so is the person it would create.
pub(super) fn preview(updates: &[PersonUpdate], snapshot: Snapshot) -> Result<Updated> {
    let existing = snapshot.persons.first().copied().flatten();
    let mut updated = plan(updates, snapshot)
        .results
        .pop()
        .unwrap_or_else(|| Err(Error::Unexpected("a preview lost its update".into())))?;
    updated.person_id = existing;
    for change in &mut updated.changes {
        if change.applied {
            change.etag = None;
        }
    }
    Ok(updated)
}

/// Who a request record belongs to.
pub(super) type RequestSlot = (WorkspaceId, Mode, Uuid);

/// The answer each update gets before any planning: `None` for updates to
/// plan and apply; a repeat of a recorded request gets the recorded outcome
/// (or [`Error::RequestReused`] when its body differs); a repeat of a request
/// another transaction holds (`held[i]` false), or of one earlier in this
/// batch, gets [`Error::RequestInProgress`].
pub(super) fn triage(
    updates: &[PersonUpdate],
    held: &[bool],
    recorded: &HashMap<RequestSlot, RecordedRequest>,
) -> Vec<Option<Result<Updated>>> {
    let mut first: HashMap<RequestSlot, &[u8]> = HashMap::new();
    updates
        .iter()
        .zip(held)
        .map(|(u, held)| {
            let key = u.request.as_ref()?;
            let slot = (u.workspace, u.mode, key.id);
            if !held {
                return Some(Err(Error::RequestInProgress));
            }
            if let Some(record) = recorded.get(&slot) {
                return Some(if record.fingerprint == key.fingerprint {
                    Ok(record.outcome.clone())
                } else {
                    Err(Error::RequestReused)
                });
            }
            match first.get(&slot) {
                Some(f) if *f == key.fingerprint.as_slice() => Some(Err(Error::RequestInProgress)),
                Some(_) => Some(Err(Error::RequestReused)),
                None => {
                    first.insert(slot, &key.fingerprint);
                    None
                }
            }
        })
        .collect()
}

/// The outcome as a request record stores it.
pub(super) fn outcome_to_json(outcome: &Updated, annex: &Value) -> Value {
    serde_json::json!({
        "annex": annex,
        "person_id": outcome.person_id.map(|p| p.0.to_string()),
        "changes": outcome.changes.iter().map(|c| serde_json::json!({
            "applied": c.applied,
            "value": c.value,
            "etag": c.etag.map(|e| e.to_string()),
        })).collect::<Vec<_>>(),
    })
}

/// An outcome read back from a request record; `None` if the JSON is not
/// one [`outcome_to_json`] wrote.
pub(super) fn outcome_from_json(json: &Value) -> Option<Updated> {
    let uuid = |v: &Value| -> Option<Option<Uuid>> {
        match v {
            Value::Null => Some(None),
            Value::String(s) => Uuid::parse_str(s).ok().map(Some),
            _ => None,
        }
    };
    let person_id = uuid(json.get("person_id")?)?.map(PersonId);
    let changes = json
        .get("changes")?
        .as_array()?
        .iter()
        .map(|c| {
            Some(ChangeOutcome {
                applied: c.get("applied")?.as_bool()?,
                value: c.get("value").filter(|v| !v.is_null()).cloned(),
                etag: uuid(c.get("etag")?)?.map(Etag),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Updated {
        person_id,
        changes,
        replayed_annex: Some(json.get("annex").cloned().unwrap_or_default()),
    })
}

/// The requests of `updates` that `plan` applied: each slot with the record
/// to store for its repeats.
pub(super) fn records_of(
    updates: &[PersonUpdate],
    results: &[Result<Updated>],
) -> Vec<(RequestSlot, Vec<u8>, Value)> {
    updates
        .iter()
        .zip(results)
        .filter_map(|(u, r)| {
            let key = u.request.as_ref()?;
            let outcome = r.as_ref().ok()?;
            Some((
                (u.workspace, u.mode, key.id),
                key.fingerprint.clone(),
                outcome_to_json(outcome, &key.annex),
            ))
        })
        .collect()
}

/// Answers a batch from its triage and the results of planning the updates
/// the triage left open, in the batch's order.
pub(super) fn merge(
    triaged: Vec<Option<Result<Updated>>>,
    planned: Vec<Result<Updated>>,
) -> Vec<Result<Updated>> {
    let mut planned = planned.into_iter();
    triaged
        .into_iter()
        .map(|early| match early {
            Some(answer) => answer,
            None => planned
                .next()
                .unwrap_or_else(|| Err(Error::Unexpected("a planned update went missing".into()))),
        })
        .collect()
}
