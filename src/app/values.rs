//! Setting, reading and clearing a person's attribute values: each value is
//! coerced against its definition (from the catalog, no database round trip)
//! before one write of all of them.
//!
//! Public keys (browser writes, CONTRACT.md section 11) may write only
//! attributes whose definition is `client_writable`: every write path checks
//! it through [`App::writable`]. UpdateAttributes (section 8, built on
//! another branch) must call it for each update too, so that its refusals
//! are per-update violations like SetAttributes' per-value ones.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prost_types::Value;

use super::{App, Error, Principal, access::rate_limited};
use crate::domain::{
    self, AttributeDefinition, AttributeKey, DistinctId, PersonId, Reason, StoredValue,
};

/// Most values one batch write may carry (CONTRACT.md section 2).
pub const MAX_VALUES_PER_BATCH: usize = 100;

/// What a write stored: the person and each value as stored, by key.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The person written to (created by this write if new).
    pub person_id: PersonId,
    /// Each attribute and the value stored, in key order.
    pub values: Vec<(AttributeKey, StoredValue)>,
}

/// What a single-value write stored.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenValue {
    /// The person written to (created by this write if new).
    pub person_id: PersonId,
    /// The attribute, as declared.
    pub attribute: AttributeKey,
    /// The value as stored.
    pub value: StoredValue,
}

/// A person's values as read, sorted by attribute key.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonAttributes {
    /// The person.
    pub person_id: PersonId,
    /// Each value as stored (JSON) and when it was written.
    pub values: Vec<(String, serde_json::Value, DateTime<Utc>)>,
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

    /// Coerces one value for a write.
    async fn coerce(
        &self,
        who: Principal,
        key: &str,
        value: Option<&Value>,
    ) -> Result<(AttributeKey, StoredValue), Error> {
        let definition = self.writable(who, key).await?;
        let stored = definition.coerce(value)?;
        Ok((definition.key().clone(), stored))
    }

    /// Writes `values`, each coerced to its stored form, to the person of
    /// `distinct_id` (created if new), all or nothing: any failing value
    /// fails the write, which names every failure by key in [`Error::Batch`].
    pub async fn set_values(
        &self,
        who: Principal,
        distinct_id: &str,
        mut values: Vec<(String, Value)>,
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
        // Key order makes "the first failure" well defined.
        values.sort_by(|a, b| a.0.cmp(&b.0));
        let mut stored = Vec::with_capacity(values.len());
        let mut failures = Vec::new();
        for (key, value) in &values {
            match self.coerce(who, key, Some(value)).await {
                Ok(ok) => stored.push(ok),
                Err(Error::Refused(error)) => {
                    failures.push((key.clone(), error.with_attribute(key.clone())));
                }
                Err(other) => return Err(other),
            }
        }
        if !failures.is_empty() {
            return Err(Error::Batch(failures));
        }
        let person_id = self.write(who, &distinct_id, &stored).await?;
        Ok(Written {
            person_id,
            values: stored,
        })
    }

    /// Writes one value (SetAttribute): as [`App::set_values`] with one
    /// value, whose failure is the error itself. A missing value is `null`.
    pub async fn set_value(
        &self,
        who: Principal,
        distinct_id: &str,
        key: &str,
        value: Option<&Value>,
    ) -> Result<WrittenValue, Error> {
        let distinct_id = DistinctId::parse(distinct_id)?;
        self.client_write(who, &distinct_id).await?;
        let stored = self.coerce(who, key, value).await?;
        let person_id = self
            .write(who, &distinct_id, std::slice::from_ref(&stored))
            .await?;
        let (attribute, value) = stored;
        Ok(WrittenValue {
            person_id,
            attribute,
            value,
        })
    }

    async fn write(
        &self,
        who: Principal,
        distinct_id: &DistinctId,
        values: &[(AttributeKey, StoredValue)],
    ) -> Result<PersonId, Error> {
        let rows: Vec<_> = values
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_json()))
            .collect();
        Ok(self
            .values()
            .write_values(who.workspace, who.mode, distinct_id.as_str(), &rows)
            .await?)
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
                .map(|v| (v.key, v.value, v.updated_at))
                .collect(),
        })
    }

    /// Clears one value of the person of `distinct_id`. Archived attributes
    /// can be cleared too: data can always be removed.
    pub async fn clear_value(
        &self,
        who: Principal,
        distinct_id: &str,
        key: &str,
    ) -> Result<Cleared, Error> {
        let distinct_id = DistinctId::parse(distinct_id)?;
        self.client_write(who, &distinct_id).await?;
        let attribute = self.writable(who, key).await?.key().clone();
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
