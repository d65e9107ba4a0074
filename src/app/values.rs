//! Setting, updating, reading and clearing a person's attribute values: each
//! value is coerced (each operation checked) against its definition from the
//! catalog, with no database round trip, before one write of all of them.
//!
//! Writes with a request_id (AIP-155) go through the storage update path,
//! which records their outcome in the same transaction; writes without one
//! keep the single-statement write path. Dry runs (`validate_only`, AIP-163)
//! go through the same checks and planner and write nothing.
//!
//! Public keys (browser writes, CONTRACT.md section 11) pass
//! [`App::client_write`] (identity verification, the per-person rate) once
//! per request, and may write only attributes whose definition is
//! `client_writable`, checked for every value and update by [`App::writable`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prost::Message;
use prost_types::Value;
use sha2::{Digest, Sha256};

use super::{App, Error, Principal, access::rate_limited};
use crate::domain::{
    self, Adjustment, Applied, AttributeDefinition, AttributeKey, DistinctId, Etag, Operation,
    PersonId, Reason,
};
use crate::storage::{self, Decide, Decision, IfEtag, PersonUpdate, RequestKey, ValueChange};

/// Most values one batch write may carry (CONTRACT.md section 2).
pub const MAX_VALUES_PER_BATCH: usize = 100;

/// How a write runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions<'a> {
    /// Run every check and answer as the write would, writing nothing
    /// (AIP-163). A dry run records no request_id.
    pub validate_only: bool,
    /// The client's idempotency key (AIP-155), a UUID; empty for none.
    pub request_id: &'a str,
}

/// One value a write stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAttribute {
    /// The attribute, as declared.
    pub attribute: AttributeKey,
    /// The value as stored (JSON).
    pub value: serde_json::Value,
    /// The value's new etag; `None` for a dry run, which writes nothing.
    pub etag: Option<Etag>,
    /// What coercion did to the input; empty when stored exactly as sent.
    pub adjustments: Vec<Adjustment>,
}

/// What a write stored: the person and each value as stored, by key.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The person written to (created by this write if new); `None` only
    /// for a dry run of a person that does not exist yet.
    pub person_id: Option<PersonId>,
    /// Each value stored, in key order.
    pub values: Vec<StoredAttribute>,
}

/// What a single-value write stored.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenValue {
    /// The person written to (created by this write if new); `None` only
    /// for a dry run of a person that does not exist yet.
    pub person_id: Option<PersonId>,
    /// The value stored.
    pub value: StoredAttribute,
}

/// A person's values as read, sorted by attribute key.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonAttributes {
    /// The person.
    pub person_id: PersonId,
    /// Each value as stored (JSON), when it was written and its etag.
    pub values: Vec<(String, serde_json::Value, DateTime<Utc>, Etag)>,
}

/// The outcome of clearing a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Cleared {
    /// The person.
    pub person_id: PersonId,
    /// The attribute, as declared.
    pub attribute: AttributeKey,
    /// Whether there was a value to clear.
    pub cleared: bool,
}

/// One update of an UpdateAttributes request, as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeUpdate {
    /// The attribute key named.
    pub attribute: String,
    /// The operation.
    pub operation: Operation,
    /// The precondition: only if the stored etag is this (`""`: only if no
    /// value is stored).
    pub if_etag: Option<String>,
}

/// What one update did.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateResult {
    /// The attribute, as declared.
    pub attribute: AttributeKey,
    /// The value stored now (JSON as stored); `None` when none is.
    pub value: Option<serde_json::Value>,
    /// Whether the update changed the value.
    pub applied: bool,
    /// The etag of the value stored now; `None` when none is.
    pub etag: Option<Etag>,
    /// What coercion did to the operand; empty when used exactly as sent.
    pub adjustments: Vec<Adjustment>,
}

/// What an UpdateAttributes did.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdatedAttributes {
    /// The person; `None` when they don't exist (nothing was written).
    pub person_id: Option<PersonId>,
    /// One result per update, in request order.
    pub results: Vec<UpdateResult>,
}

fn not_defined(key: &AttributeKey) -> domain::Error {
    domain::Error::new(
        Reason::AttributeNotDefined,
        format!(
            "The attribute \"{key}\" is not declared in this workspace; declare it with \
             CreateAttributeDefinition first."
        ),
    )
    .with_attribute(key.as_str())
}

fn person_not_found(distinct_id: &DistinctId) -> Error {
    Error::refused(
        Reason::PersonNotFound,
        format!(
            "No person has the distinct_id {:?} in this workspace and mode.",
            distinct_id.as_str()
        ),
    )
}

/// A hash of an RPC's name and request body (everything but request_id and
/// validate_only), so that a request_id repeated with another body, or on
/// another RPC, can be told apart. Each field is length-prefixed, so no two
/// bodies hash the same input.
struct Fingerprint(Sha256);

impl Fingerprint {
    fn new(rpc: &str, distinct_id: &DistinctId) -> Self {
        let mut f = Fingerprint(Sha256::new());
        f.text(rpc);
        f.text(distinct_id.as_str());
        f
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn text(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }

    /// A value's protobuf encoding: deterministic, since `Struct` fields
    /// are kept in key order.
    fn value(&mut self, value: Option<&Value>) {
        match value {
            Some(v) => self.bytes(&v.encode_to_vec()),
            None => self.text("(none)"),
        }
    }

    fn finish(self) -> Vec<u8> {
        self.0.finalize().to_vec()
    }
}

/// The idempotency key of a write: `None` without a request_id or for a
/// dry run; a request_id that is not a UUID is `invalid_argument`.
fn request_key(
    options: WriteOptions<'_>,
    fingerprint: impl FnOnce() -> Fingerprint,
) -> Result<Option<RequestKey>, Error> {
    if options.request_id.is_empty() || options.validate_only {
        if !options.request_id.is_empty() {
            parse_request_id(options.request_id)?;
        }
        return Ok(None);
    }
    Ok(Some(RequestKey {
        id: parse_request_id(options.request_id)?,
        fingerprint: fingerprint().finish(),
        annex: serde_json::Value::Null,
    }))
}

fn parse_request_id(request_id: &str) -> Result<uuid::Uuid, Error> {
    uuid::Uuid::parse_str(request_id).map_err(|_| {
        Error::Refused(domain::Error::new_at(
            Reason::InvalidArgument,
            "request_id",
            format!(
                "{} is not a UUID; send a new UUID (such as \
                 \"3f2b8c1e-6a4d-4e8f-9b7a-1c2d3e4f5a6b\") per request and the same one when \
                 retrying it.",
                quoted(request_id)
            ),
        ))
    })
}

/// A client's text quoted for a message, shortened when long.
fn quoted(s: &str) -> String {
    let short: String = s.chars().take(64).collect();
    if short.len() < s.len() {
        format!("{short:?}…")
    } else {
        format!("{s:?}")
    }
}

/// A coerced value: the key as declared, the JSON to store and what
/// coercion did to the input.
type Coercion = (AttributeKey, serde_json::Value, Vec<Adjustment>);

/// A change that always stores `value` (a set).
fn set_to(value: serde_json::Value) -> Decide {
    let write = Decision::Write(value);
    Arc::new(move |_| Ok(write.clone()))
}

/// A change that removes whatever is stored (a clear).
fn clear() -> Decide {
    Arc::new(|stored| {
        Ok(match stored {
            Some(_) => Decision::Delete,
            None => Decision::Keep,
        })
    })
}

/// The adjustments of each value of a request, as its request record
/// keeps them.
fn annex(adjustments: &[Vec<Adjustment>]) -> serde_json::Value {
    use serde_json::json;
    let one = |a: &Adjustment| match a {
        Adjustment::Trimmed => json!({"kind": "trimmed"}),
        Adjustment::CaseNormalized => json!({"kind": "case_normalized"}),
        Adjustment::Truncated { original_length } => {
            json!({"kind": "truncated", "original_length": original_length})
        }
        Adjustment::OptionsDropped { dropped } => {
            json!({"kind": "options_dropped", "dropped": dropped})
        }
        Adjustment::DuplicatesDropped { dropped } => {
            json!({"kind": "duplicates_dropped", "dropped": dropped})
        }
        Adjustment::Converted => json!({"kind": "converted"}),
    };
    adjustments
        .iter()
        .map(|list| list.iter().map(one).collect::<serde_json::Value>())
        .collect()
}

/// The adjustments [`annex`] recorded; `None` if the JSON is not its.
fn from_annex(json: &serde_json::Value) -> Option<Vec<Vec<Adjustment>>> {
    let one = |a: &serde_json::Value| -> Option<Adjustment> {
        let dropped = || -> Option<Vec<String>> {
            a.get("dropped")?
                .as_array()?
                .iter()
                .map(|d| d.as_str().map(str::to_owned))
                .collect()
        };
        Some(match a.get("kind")?.as_str()? {
            "trimmed" => Adjustment::Trimmed,
            "case_normalized" => Adjustment::CaseNormalized,
            "truncated" => Adjustment::Truncated {
                original_length: usize::try_from(a.get("original_length")?.as_u64()?).ok()?,
            },
            "options_dropped" => Adjustment::OptionsDropped {
                dropped: dropped()?,
            },
            "duplicates_dropped" => Adjustment::DuplicatesDropped {
                dropped: dropped()?,
            },
            "converted" => Adjustment::Converted,
            _ => return None,
        })
    };
    json.as_array()?
        .iter()
        .map(|list| list.as_array()?.iter().map(one).collect())
        .collect()
}

/// Each value's adjustments for a response: the recorded ones for a
/// repeat (the first response's), else `computed`.
fn adjustments_for(
    outcome: &storage::Updated,
    computed: Vec<Vec<Adjustment>>,
) -> Result<Vec<Vec<Adjustment>>, Error> {
    match &outcome.replayed_annex {
        None => Ok(computed),
        Some(json) => from_annex(json)
            .ok_or_else(|| Error::Internal("a request record holds no adjustments".into())),
    }
}

/// The values a set-through-update stored, from its outcome.
fn written_from(
    keys: Vec<AttributeKey>,
    adjustments: Vec<Vec<Adjustment>>,
    outcome: storage::Updated,
) -> Result<Written, Error> {
    let adjustments = adjustments_for(&outcome, adjustments)?;
    Ok(Written {
        person_id: outcome.person_id,
        values: keys
            .into_iter()
            .zip(outcome.changes)
            .zip(
                adjustments
                    .into_iter()
                    .chain(std::iter::repeat_with(Vec::new)),
            )
            .map(|((attribute, change), adjustments)| StoredAttribute {
                attribute,
                value: change.value.unwrap_or_default(),
                etag: change.etag,
                adjustments,
            })
            .collect(),
    })
}

impl App {
    /// The definition of a key named in a request: `attribute_not_defined`
    /// when the key is malformed or not declared in the caller's workspace.
    pub(super) async fn declared(
        &self,
        who: Principal,
        key: &str,
    ) -> Result<Arc<AttributeDefinition>, Error> {
        let key = AttributeKey::parse_reference(key)?;
        self.catalog()
            .definition(who.workspace, &key)
            .await?
            .ok_or_else(|| not_defined(&key).into())
    }

    /// What a public-key write must pass before its values are looked at:
    /// identity verification, then the per-person rate limit (so that only
    /// a verified caller can drain a person's bucket). Secret keys pass.
    /// UpdateAttributes (section 8) must call it too.
    async fn client_write(&self, who: Principal, distinct_id: &DistinctId) -> Result<(), Error> {
        if who.secret {
            return Ok(());
        }
        self.verify_identity(who, distinct_id).await?;
        if let Some(limiter) = &self.inner.per_person {
            limiter
                .take((who.workspace, who.mode, distinct_id.as_str()))
                .map_err(|wait| rate_limited(wait, "This person is written too often"))?;
        }
        Ok(())
    }

    /// The definition of a key that `who` writes (sets, clears, updates):
    /// as [`App::declared`], and for a public key
    /// `attribute_not_client_writable` unless the definition lets browsers
    /// write it.
    async fn writable(&self, who: Principal, key: &str) -> Result<Arc<AttributeDefinition>, Error> {
        let definition = self.declared(who, key).await?;
        if !who.secret {
            definition.check_client_write()?;
        }
        Ok(definition)
    }

    /// Coerces one value for a write: the key as declared and the JSON to
    /// store.
    async fn coerce(
        &self,
        who: Principal,
        key: &str,
        value: Option<&Value>,
    ) -> Result<Coercion, Error> {
        let definition = self.writable(who, key).await?;
        let coerced = definition.coerce(value)?;
        Ok((
            definition.key().clone(),
            coerced.value.to_json(),
            coerced.adjustments,
        ))
    }

    /// For a request whose own checks failed with `error`: the first
    /// outcome of its request_id, when one was recorded for this very
    /// request (its checks passed then; AIP-155 returns the first response),
    /// else `error` (or `request_id_reused` for another body).
    async fn recorded_or(
        &self,
        who: Principal,
        key: Option<&RequestKey>,
        error: Error,
    ) -> Result<storage::Updated, Error> {
        let Some(key) = key else {
            return Err(error);
        };
        match self
            .values()
            .find_request(who.workspace, who.mode, key.id)
            .await?
        {
            Some(record) if record.fingerprint == key.fingerprint => Ok(record.outcome),
            Some(_) => Err(Error::from_update(storage::Error::RequestReused)),
            None => Err(error),
        }
    }

    /// Applies `changes` through the update path: previewed for a dry run,
    /// else applied once per request key.
    async fn apply(
        &self,
        who: Principal,
        distinct_id: &DistinctId,
        changes: Vec<ValueChange>,
        request: Option<RequestKey>,
        validate_only: bool,
    ) -> Result<storage::Updated, Error> {
        let update = PersonUpdate {
            workspace: who.workspace,
            mode: who.mode,
            distinct_id: distinct_id.as_str().to_owned(),
            changes,
            request,
        };
        let store = self.values();
        if validate_only {
            store.preview_update(update).await
        } else {
            store.update_values(update).await
        }
        .map_err(Error::from_update)
    }

    /// Writes coerced values. Without a request key and for real, in one
    /// plain write; otherwise through the update path.
    async fn write(
        &self,
        who: Principal,
        distinct_id: &DistinctId,
        values: Vec<Coercion>,
        mut request: Option<RequestKey>,
        validate_only: bool,
    ) -> Result<Written, Error> {
        if request.is_none() && !validate_only {
            let rows: Vec<_> = values
                .iter()
                .map(|(key, value, _)| (key.to_string(), value.clone()))
                .collect();
            let receipt = self
                .values()
                .write_values(who.workspace, who.mode, distinct_id.as_str(), &rows)
                .await?;
            let etag_of = |key: &AttributeKey| {
                receipt
                    .etags
                    .iter()
                    .find(|(k, _)| k == key.as_str())
                    .map(|(_, etag)| *etag)
            };
            return Ok(Written {
                person_id: Some(receipt.person_id),
                values: values
                    .into_iter()
                    .map(|(attribute, value, adjustments)| StoredAttribute {
                        etag: etag_of(&attribute),
                        attribute,
                        value,
                        adjustments,
                    })
                    .collect(),
            });
        }
        let mut keys = Vec::with_capacity(values.len());
        let mut adjustments = Vec::with_capacity(values.len());
        let mut changes = Vec::with_capacity(values.len());
        for (key, value, adjusted) in values {
            changes.push(ValueChange {
                key: key.to_string(),
                if_etag: None,
                decide: set_to(value),
            });
            keys.push(key);
            adjustments.push(adjusted);
        }
        if let Some(request) = &mut request {
            request.annex = annex(&adjustments);
        }
        let outcome = self
            .apply(who, distinct_id, changes, request, validate_only)
            .await?;
        written_from(keys, adjustments, outcome)
    }

    /// Writes `values`, each coerced to its stored form, to the person of
    /// `distinct_id` (created if new), all or nothing: any failing value
    /// fails the write, which names every failure by key in [`Error::Batch`].
    pub async fn set_values(
        &self,
        who: Principal,
        distinct_id: &str,
        mut values: Vec<(String, Value)>,
        options: WriteOptions<'_>,
    ) -> Result<Written, Error> {
        let count = values.len();
        if count == 0 || count > MAX_VALUES_PER_BATCH {
            return Err(Error::refused(
                Reason::TooManyValues,
                format!(
                    "SetAttributes takes 1 to {MAX_VALUES_PER_BATCH} values and got {count}; \
                     split larger writes into several calls."
                ),
            ));
        }
        let distinct_id = DistinctId::parse(distinct_id)?;
        self.client_write(who, &distinct_id).await?;
        // Key order makes "the first failure" well defined, and the
        // fingerprint independent of the map's order.
        values.sort_by(|a, b| a.0.cmp(&b.0));
        let request = request_key(options, || {
            let mut f = Fingerprint::new("SetAttributes", &distinct_id);
            for (key, value) in &values {
                f.text(key);
                f.value(Some(value));
            }
            f
        })?;
        let mut stored = Vec::with_capacity(values.len());
        let mut failures = Vec::new();
        for (key, value) in &values {
            match self.coerce(who, key, Some(value)).await {
                Ok(ok) => stored.push(ok),
                Err(Error::Refused(error)) => {
                    failures.push((format!("values.{key}"), error.with_attribute(key.clone())));
                }
                Err(other) => return Err(other),
            }
        }
        if !failures.is_empty() {
            let outcome = self
                .recorded_or(who, request.as_ref(), Error::Batch(failures))
                .await?;
            let keys = values
                .iter()
                .map(|(k, _)| AttributeKey::parse_reference(k))
                .collect::<Result<_, _>>()?;
            return written_from(keys, Vec::new(), outcome);
        }
        self.write(who, &distinct_id, stored, request, options.validate_only)
            .await
    }

    /// Writes one value (SetAttribute): as [`App::set_values`] with one
    /// value, whose failure is the error itself. A missing value is `null`.
    pub async fn set_value(
        &self,
        who: Principal,
        distinct_id: &str,
        key: &str,
        value: Option<&Value>,
        options: WriteOptions<'_>,
    ) -> Result<WrittenValue, Error> {
        let distinct_id = DistinctId::parse(distinct_id)?;
        self.client_write(who, &distinct_id).await?;
        let request = request_key(options, || {
            let mut f = Fingerprint::new("SetAttribute", &distinct_id);
            f.text(key);
            f.value(value);
            f
        })?;
        let mut written = match self.coerce(who, key, value).await {
            Ok(stored) => {
                self.write(
                    who,
                    &distinct_id,
                    vec![stored],
                    request,
                    options.validate_only,
                )
                .await?
            }
            Err(error) => {
                let outcome = self.recorded_or(who, request.as_ref(), error).await?;
                written_from(
                    vec![AttributeKey::parse_reference(key)?],
                    Vec::new(),
                    outcome,
                )?
            }
        };
        let value = written
            .values
            .pop()
            .ok_or_else(|| Error::Internal("a write of one value stored none".into()))?;
        Ok(WrittenValue {
            person_id: written.person_id,
            value,
        })
    }

    /// Applies `updates` to the person of `distinct_id`, all or nothing, each
    /// decided against the value stored at the moment of the write.
    /// Failures name their update's position (`updates[<i>]`) in
    /// [`Error::Batch`], in request order.
    pub async fn update_values(
        &self,
        who: Principal,
        distinct_id: &str,
        updates: Vec<AttributeUpdate>,
        options: WriteOptions<'_>,
    ) -> Result<UpdatedAttributes, Error> {
        let count = updates.len();
        if count == 0 || count > MAX_VALUES_PER_BATCH {
            return Err(Error::refused(
                Reason::TooManyValues,
                format!(
                    "UpdateAttributes takes 1 to {MAX_VALUES_PER_BATCH} updates and got {count}; \
                     split larger updates into several calls."
                ),
            ));
        }
        let distinct_id = DistinctId::parse(distinct_id)?;
        self.client_write(who, &distinct_id).await?;
        let request = request_key(options, || {
            let mut f = Fingerprint::new("UpdateAttributes", &distinct_id);
            for u in &updates {
                f.text(&u.attribute);
                f.text(u.operation.name());
                match &u.operation {
                    Operation::Set(v)
                    | Operation::SetOnce(v)
                    | Operation::Add(v)
                    | Operation::Remove(v) => f.value(v.as_ref()),
                    Operation::Increment(by) => f.bytes(&by.to_bits().to_be_bytes()),
                    Operation::Clear => {}
                }
                match &u.if_etag {
                    Some(etag) => f.text(etag),
                    None => f.text("(no precondition)"),
                }
            }
            f
        })?;
        let mut changes = Vec::with_capacity(count);
        let mut adjustments = Vec::with_capacity(count);
        let mut keys: Vec<AttributeKey> = Vec::with_capacity(count);
        let mut failures = Vec::new();
        for (i, update) in updates.iter().enumerate() {
            let field = format!("updates[{i}]");
            let definition = match self.writable(who, &update.attribute).await {
                Ok(definition) => definition,
                Err(Error::Refused(e)) => {
                    failures.push((field, e.with_attribute(update.attribute.clone())));
                    continue;
                }
                Err(other) => return Err(other),
            };
            let key = definition.key().clone();
            if let Some(first) = keys.iter().position(|k| *k == key) {
                failures.push((
                    field,
                    domain::Error::new(
                        Reason::AttributeOperationInvalid,
                        format!(
                            "updates[{first}] and updates[{i}] both update \"{key}\"; send one \
                             update per attribute."
                        ),
                    )
                    .with_attribute(key.as_str()),
                ));
                continue;
            }
            keys.push(key.clone());
            match definition.change(&update.operation) {
                Ok(change) => changes.push({
                    adjustments.push(change.adjustments().to_vec());
                    ValueChange {
                        key: key.to_string(),
                        if_etag: update.if_etag.clone().map(|etag| match etag.as_str() {
                            "" => IfEtag::Absent,
                            _ => IfEtag::Is(etag),
                        }),
                        decide: Arc::new(move |stored| {
                            Ok(match change.apply(stored)? {
                                Applied::Write(value) => Decision::Write(value.to_json()),
                                Applied::Delete => Decision::Delete,
                                Applied::Keep => Decision::Keep,
                            })
                        }),
                    }
                }),
                Err(e) => failures.push((field, e)),
            }
        }
        let updated = if failures.is_empty() {
            let mut request = request;
            if let Some(request) = &mut request {
                request.annex = annex(&adjustments);
            }
            self.apply(who, &distinct_id, changes, request, options.validate_only)
                .await?
        } else {
            let outcome = self
                .recorded_or(who, request.as_ref(), Error::Batch(failures))
                .await?;
            keys = updates
                .iter()
                .map(|u| AttributeKey::parse_reference(&u.attribute))
                .collect::<Result<_, _>>()?;
            outcome
        };
        let adjustments = adjustments_for(&updated, adjustments)?;
        Ok(UpdatedAttributes {
            person_id: updated.person_id,
            results: keys
                .into_iter()
                .zip(updated.changes)
                .zip(
                    adjustments
                        .into_iter()
                        .chain(std::iter::repeat_with(Vec::new)),
                )
                .map(|((attribute, outcome), adjustments)| UpdateResult {
                    attribute,
                    value: outcome.value,
                    applied: outcome.applied,
                    etag: outcome.etag,
                    adjustments,
                })
                .collect(),
        })
    }

    /// Deletes the request_id records past their retention (24 hours);
    /// returns how many.
    pub async fn forget_expired_requests(&self) -> Result<u64, Error> {
        let before = Utc::now() - storage::REQUEST_RETENTION;
        Ok(self.values().forget_requests(before).await?)
    }

    /// The values of the person of `distinct_id` (only `filter`'s, when it
    /// names any; each must be declared), sorted by key; archived
    /// attributes' only with `include_archived`.
    pub async fn get_values(
        &self,
        who: Principal,
        distinct_id: &str,
        filter: &[String],
        include_archived: bool,
    ) -> Result<PersonAttributes, Error> {
        let distinct_id = DistinctId::parse(distinct_id)?;
        let mut keys = Vec::with_capacity(filter.len());
        for key in filter {
            keys.push(self.declared(who, key).await?.key().to_string());
        }
        let keys = (!keys.is_empty()).then_some(keys.as_slice());
        let person = self
            .values()
            .read_values(
                who.workspace,
                who.mode,
                distinct_id.as_str(),
                keys,
                include_archived,
            )
            .await?
            .ok_or_else(|| person_not_found(&distinct_id))?;
        Ok(PersonAttributes {
            person_id: person.person_id,
            values: person
                .values
                .into_iter()
                .map(|v| (v.key, v.value, v.updated_at, v.etag))
                .collect(),
        })
    }

    /// Clears one value of the person of `distinct_id`. Archived attributes
    /// can be cleared too: data can always be removed. A dry run says
    /// whether there is a value to clear and removes nothing.
    pub async fn clear_value(
        &self,
        who: Principal,
        distinct_id: &str,
        key: &str,
        options: WriteOptions<'_>,
    ) -> Result<Cleared, Error> {
        let distinct_id = DistinctId::parse(distinct_id)?;
        self.client_write(who, &distinct_id).await?;
        let request = request_key(options, || {
            let mut f = Fingerprint::new("ClearAttribute", &distinct_id);
            f.text(key);
            f
        })?;
        let attribute = match self.writable(who, key).await {
            Ok(definition) => definition.key().clone(),
            Err(error) => {
                let outcome = self.recorded_or(who, request.as_ref(), error).await?;
                return cleared_from(AttributeKey::parse_reference(key)?, outcome, &distinct_id);
            }
        };
        if request.is_none() && !options.validate_only {
            let cleared = self
                .values()
                .clear_value(
                    who.workspace,
                    who.mode,
                    distinct_id.as_str(),
                    attribute.as_str(),
                )
                .await?
                .ok_or_else(|| person_not_found(&distinct_id))?;
            return Ok(Cleared {
                person_id: cleared.person_id,
                attribute,
                cleared: cleared.cleared,
            });
        }
        let change = ValueChange {
            key: attribute.to_string(),
            if_etag: None,
            decide: clear(),
        };
        let outcome = self
            .apply(
                who,
                &distinct_id,
                vec![change],
                request,
                options.validate_only,
            )
            .await?;
        cleared_from(attribute, outcome, &distinct_id)
    }
}

/// A clear's answer from its update outcome: no person is `person_not_found`.
fn cleared_from(
    attribute: AttributeKey,
    outcome: storage::Updated,
    distinct_id: &DistinctId,
) -> Result<Cleared, Error> {
    let person_id = outcome
        .person_id
        .ok_or_else(|| person_not_found(distinct_id))?;
    Ok(Cleared {
        person_id,
        attribute,
        cleared: outcome.changes.iter().any(|c| c.applied),
    })
}
