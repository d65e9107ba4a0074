//! Setting, reading and clearing a person's attribute values: each value is
//! coerced against its definition (from the catalog, no database round trip)
//! before one write of all of them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prost_types::Value;

use super::{App, Error, Principal};
use crate::domain::{
    self, Applied, AttributeDefinition, AttributeKey, DistinctId, Etag, Operation, PersonId,
    Reason, StoredValue,
};
use crate::storage::{self, Decide, Decision, IfEtag, PersonUpdate, ValueChange};

/// Most values one batch write may carry (CONTRACT.md section 2).
pub const MAX_VALUES_PER_BATCH: usize = 100;

/// One value a write stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAttribute {
    /// The attribute, as declared.
    pub attribute: AttributeKey,
    /// The value as stored.
    pub value: StoredValue,
    /// The value's new etag; `None` for a dry run, which writes nothing.
    pub etag: Option<Etag>,
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
        format!("No person has the distinct_id {distinct_id:?} in this workspace and mode."),
    )
}

impl App {
    /// The definition of a key named in a request: `attribute_not_defined`
    /// when the key is malformed or not declared in the caller's workspace.
    async fn declared(&self, who: Principal, key: &str) -> Result<Arc<AttributeDefinition>, Error> {
        let key = AttributeKey::parse_reference(key)?;
        self.catalog()
            .definition(who.workspace, &key)
            .await?
            .ok_or_else(|| not_defined(&key).into())
    }

    /// Coerces one value for a write.
    async fn coerce(
        &self,
        who: Principal,
        key: &str,
        value: Option<&Value>,
    ) -> Result<(AttributeKey, StoredValue), Error> {
        let definition = self.declared(who, key).await?;
        let stored = definition.coerce(value)?;
        Ok((definition.key().clone(), stored))
    }

    /// Writes `values`, each coerced to its stored form, to the person of
    /// `distinct_id` (created if new), all or nothing: any failing value
    /// fails the write, which names every failure by key in [`Error::Batch`].
    /// With `validate_only`, checks everything and writes nothing.
    pub async fn set_values(
        &self,
        who: Principal,
        distinct_id: &str,
        mut values: Vec<(String, Value)>,
        validate_only: bool,
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
        // Key order makes "the first failure" well defined.
        values.sort_by(|a, b| a.0.cmp(&b.0));
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
            return Err(Error::Batch(failures));
        }
        self.write(who, &distinct_id, stored, validate_only).await
    }

    /// Writes one value (SetAttribute): as [`App::set_values`] with one
    /// value, whose failure is the error itself. A missing value is `null`.
    pub async fn set_value(
        &self,
        who: Principal,
        distinct_id: &str,
        key: &str,
        value: Option<&Value>,
        validate_only: bool,
    ) -> Result<WrittenValue, Error> {
        let distinct_id = DistinctId::parse(distinct_id)?;
        let stored = self.coerce(who, key, value).await?;
        let mut written = self
            .write(who, &distinct_id, vec![stored], validate_only)
            .await?;
        let value = written
            .values
            .pop()
            .ok_or_else(|| Error::Internal("a write of one value stored none".into()))?;
        Ok(WrittenValue {
            person_id: written.person_id,
            value,
        })
    }

    /// Writes coerced values; a dry run only finds the person, if any.
    async fn write(
        &self,
        who: Principal,
        distinct_id: &DistinctId,
        values: Vec<(AttributeKey, StoredValue)>,
        validate_only: bool,
    ) -> Result<Written, Error> {
        let rows: Vec<_> = values
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_json()))
            .collect();
        if validate_only {
            let changes = rows
                .into_iter()
                .map(|(key, value)| {
                    let write = Decision::Write(value);
                    let decide: Decide = Arc::new(move |_| Ok(write.clone()));
                    (key, decide)
                })
                .collect();
            let person_id = self.preview(who, distinct_id, changes).await?.person_id;
            return Ok(Written {
                person_id,
                values: values
                    .into_iter()
                    .map(|(attribute, value)| StoredAttribute {
                        attribute,
                        value,
                        etag: None,
                    })
                    .collect(),
            });
        }
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
        Ok(Written {
            person_id: Some(receipt.person_id),
            values: values
                .into_iter()
                .map(|(attribute, value)| StoredAttribute {
                    etag: etag_of(&attribute),
                    attribute,
                    value,
                })
                .collect(),
        })
    }

    /// What `changes` would do to the person of `distinct_id` now, writing
    /// nothing.
    async fn preview(
        &self,
        who: Principal,
        distinct_id: &DistinctId,
        changes: Vec<(String, Decide)>,
    ) -> Result<storage::Updated, Error> {
        let update = PersonUpdate {
            workspace: who.workspace,
            mode: who.mode,
            distinct_id: distinct_id.as_str().to_owned(),
            changes: changes
                .into_iter()
                .map(|(key, decide)| ValueChange {
                    key,
                    if_etag: None,
                    decide,
                })
                .collect(),
        };
        self.values()
            .preview_update(update)
            .await
            .map_err(Error::from_update)
    }

    /// Applies `updates` to the person of `distinct_id`, all or nothing, each
    /// decided against the value stored at the moment of the write (or, with
    /// `validate_only`, checked and answered without writing anything).
    /// Failures name their update's position (`updates[<i>]`) in
    /// [`Error::Batch`], in request order.
    pub async fn update_values(
        &self,
        who: Principal,
        distinct_id: &str,
        updates: Vec<AttributeUpdate>,
        validate_only: bool,
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
        let mut changes = Vec::with_capacity(count);
        let mut keys: Vec<AttributeKey> = Vec::with_capacity(count);
        let mut failures = Vec::new();
        for (i, update) in updates.into_iter().enumerate() {
            let field = format!("updates[{i}]");
            let definition = match self.declared(who, &update.attribute).await {
                Ok(definition) => definition,
                Err(Error::Refused(e)) => {
                    failures.push((field, e.with_attribute(update.attribute)));
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
                Ok(change) => changes.push(ValueChange {
                    key: key.to_string(),
                    if_etag: update.if_etag.map(|etag| match etag.as_str() {
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
                }),
                Err(e) => failures.push((field, e)),
            }
        }
        if !failures.is_empty() {
            return Err(Error::Batch(failures));
        }
        let update = PersonUpdate {
            workspace: who.workspace,
            mode: who.mode,
            distinct_id: distinct_id.as_str().to_owned(),
            changes,
        };
        let store = self.values();
        let updated = if validate_only {
            store.preview_update(update).await
        } else {
            store.update_values(update).await
        }
        .map_err(Error::from_update)?;
        Ok(UpdatedAttributes {
            person_id: updated.person_id,
            results: keys
                .into_iter()
                .zip(updated.changes)
                .map(|(attribute, outcome)| UpdateResult {
                    attribute,
                    value: outcome.value,
                    applied: outcome.applied,
                    etag: outcome.etag,
                })
                .collect(),
        })
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
    /// can be cleared too: data can always be removed. With `validate_only`,
    /// says whether there is a value to clear and removes nothing.
    pub async fn clear_value(
        &self,
        who: Principal,
        distinct_id: &str,
        key: &str,
        validate_only: bool,
    ) -> Result<Cleared, Error> {
        let distinct_id = DistinctId::parse(distinct_id)?;
        let attribute = self.declared(who, key).await?.key().clone();
        if validate_only {
            let decide: Decide = Arc::new(|stored| {
                Ok(match stored {
                    Some(_) => Decision::Delete,
                    None => Decision::Keep,
                })
            });
            let preview = self
                .preview(who, &distinct_id, vec![(attribute.to_string(), decide)])
                .await?;
            let person_id = preview
                .person_id
                .ok_or_else(|| person_not_found(&distinct_id))?;
            return Ok(Cleared {
                person_id,
                attribute,
                cleared: preview.changes.iter().any(|c| c.applied),
            });
        }
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
        Ok(Cleared {
            person_id: cleared.person_id,
            attribute,
            cleared: cleared.cleared,
        })
    }
}
