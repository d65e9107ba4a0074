//! Update operations (CONTRACT.md section 8): what `set`, `set_once`,
//! `increment`, `add`, `remove` and `clear` do to a stored value.
//!
//! An operation is first checked against the definition
//! ([`AttributeDefinition::change`]): the type it applies to, the archive,
//! and the coercion of its operand. The [`Change`] that comes out is then
//! applied to whatever the database holds at the moment of the write
//! ([`Change::apply`]), inside the write's transaction, so concurrent
//! updates never work from a stale read.

use std::collections::HashSet;

use serde_json::Value as Json;

use crate::domain::adjustment::Adjustment;
use crate::domain::coerce::{coerce_named, folded_elements};
use crate::domain::config::{AttributeConfig, AttributeType, NumberConfig};
use crate::domain::definition::AttributeDefinition;
use crate::domain::error::{Error, Reason};
use crate::domain::text::{fold, number_text, quote};
use crate::domain::value::{Repr, StoredValue};

/// One operation of an update, as a client asks for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Store the value, as SetAttribute does (`None`: no value, i.e. null).
    Set(Option<prost_types::Value>),
    /// Store the value only if none is stored.
    SetOnce(Option<prost_types::Value>),
    /// Add to the stored number (none counts as 0).
    Increment(f64),
    /// Append the matched elements the stored list lacks.
    Add(Option<prost_types::Value>),
    /// Take the matching elements out of the stored list.
    Remove(Option<prost_types::Value>),
    /// Remove the value, as ClearAttribute does.
    Clear,
}

impl Operation {
    /// The operation's name as the API spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Set(_) => "set",
            Operation::SetOnce(_) => "set_once",
            Operation::Increment(_) => "increment",
            Operation::Add(_) => "add",
            Operation::Remove(_) => "remove",
            Operation::Clear => "clear",
        }
    }
}

/// An operation checked against its definition, to be applied to the value
/// stored when the write happens.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    key: String,
    attribute_type: AttributeType,
    kind: ChangeKind,
    /// What coercion did to the operand (set, set_once, add).
    adjustments: Vec<Adjustment>,
}

#[derive(Debug, Clone, PartialEq)]
enum ChangeKind {
    Set(StoredValue),
    SetOnce(StoredValue),
    Increment { by: f64, config: NumberConfig },
    Add { items: Vec<String>, max_items: u32 },
    Remove { folded: HashSet<String> },
    Clear,
}

/// What a change does to the stored value.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Store this value.
    Write(StoredValue),
    /// Remove the stored value.
    Delete,
    /// Leave the stored value as it is (`applied: false`).
    Keep,
}

impl AttributeDefinition {
    /// Checks `operation` against this definition: `attribute_operation_invalid`
    /// when it does not apply to the type (increment: number only; add and
    /// remove: multi_choice only), `attribute_archived` for anything but
    /// `clear` on an archived attribute, and the coercion errors of its
    /// operand. Errors name the attribute.
    pub fn change(&self, operation: &Operation) -> Result<Change, Error> {
        let key = self.key().as_str();
        let attribute_type = self.config().attribute_type();
        let misfit = |applies_to: &str| {
            Error::new(
                Reason::AttributeOperationInvalid,
                format!(
                    "{} is a {attribute_type} attribute, but {} applies only to {applies_to} \
                     attributes; use set to replace the value.",
                    quote(key),
                    operation.name()
                ),
            )
            .with_attribute(key)
        };
        let mut adjustments = Vec::new();
        let mut coerce = |value: &Option<prost_types::Value>| {
            self.coerce(value.as_ref()).map(|c| {
                adjustments = c.adjustments;
                c.value
            })
        };
        let kind = match (operation, self.config()) {
            (Operation::Clear, _) => ChangeKind::Clear,
            (Operation::Set(value), _) => ChangeKind::Set(coerce(value)?),
            (Operation::SetOnce(value), _) => ChangeKind::SetOnce(coerce(value)?),
            (Operation::Increment(by), AttributeConfig::Number(config)) => {
                self.writable()?;
                if !by.is_finite() {
                    return Err(Error::invalid_value(format!(
                        "The increment of {} must be a finite number.",
                        quote(key)
                    ))
                    .with_attribute(key));
                }
                ChangeKind::Increment {
                    by: *by,
                    config: config.clone(),
                }
            }
            (Operation::Add(value), AttributeConfig::MultiChoice(config)) => {
                let coerced = coerce(value)?;
                ChangeKind::Add {
                    items: coerced
                        .as_list()
                        .map(<[String]>::to_vec)
                        .unwrap_or_default(),
                    max_items: config.max_items(),
                }
            }
            (Operation::Remove(value), AttributeConfig::MultiChoice(_)) => {
                self.writable()?;
                let folded =
                    folded_elements(value.as_ref(), key).map_err(|e| e.with_attribute(key))?;
                ChangeKind::Remove { folded }
            }
            (Operation::Increment(_), _) => return Err(misfit("number")),
            (Operation::Add(_) | Operation::Remove(_), _) => return Err(misfit("multi_choice")),
        };
        Ok(Change {
            key: key.to_owned(),
            attribute_type,
            kind,
            adjustments,
        })
    }
}

impl Change {
    /// What coercion did to the operand: empty when it is used exactly as
    /// sent (and for operations whose operand is not stored).
    pub fn adjustments(&self) -> &[Adjustment] {
        &self.adjustments
    }

    /// What the change does to `stored` (the value's JSON as stored; `None`
    /// when there is none). Fails when the result breaks the definition: an
    /// increment past min or max or to a fraction where integers are
    /// required, or an add past max_items. Errors name the attribute.
    pub fn apply(&self, stored: Option<&Json>) -> Result<Applied, Error> {
        let key = self.key.as_str();
        let stored = match stored {
            Some(json) => Some(
                StoredValue::from_json(self.attribute_type, json).ok_or_else(|| {
                    Error::invalid_value(format!(
                        "The stored value of {} is not a {} value, so it cannot be updated; set \
                         a new value instead.",
                        quote(key),
                        self.attribute_type
                    ))
                    .with_attribute(key)
                })?,
            ),
            None => None,
        };
        Ok(match (&self.kind, stored) {
            (ChangeKind::Set(value), _) => Applied::Write(value.clone()),
            (ChangeKind::SetOnce(_), Some(_)) => Applied::Keep,
            (ChangeKind::SetOnce(value), None) => Applied::Write(value.clone()),
            (ChangeKind::Clear, Some(_)) => Applied::Delete,
            (ChangeKind::Clear, None) => Applied::Keep,
            (ChangeKind::Increment { by, config }, stored) => {
                let current = stored.and_then(|v| v.as_f64()).unwrap_or(0.0);
                let result = current + by;
                let config = AttributeConfig::Number(config.clone());
                let number = prost_types::Value {
                    kind: Some(prost_types::value::Kind::NumberValue(result)),
                };
                let value = coerce_named(&config, Some(&number), Some(key))
                    .map(|c| c.value)
                    .map_err(|e| {
                        Error::new(
                            e.reason(),
                            format!(
                                "Incrementing {} by {} would store {}: {}",
                                number_text(current),
                                number_text(*by),
                                number_text(result),
                                e.message()
                            ),
                        )
                        .with_attribute(key)
                    })?;
                Applied::Write(value)
            }
            (ChangeKind::Add { items, max_items }, stored) => {
                let mut list: Vec<String> = stored
                    .and_then(|v| v.as_list().map(<[String]>::to_vec))
                    .unwrap_or_default();
                let had = list.len();
                let mut seen: HashSet<String> = list.iter().map(|i| fold(i)).collect();
                for item in items {
                    if seen.insert(fold(item)) {
                        list.push(item.clone());
                    }
                }
                if list.len() == had {
                    return Ok(Applied::Keep);
                }
                if list.len() > *max_items as usize {
                    return Err(Error::invalid_value(format!(
                        "Adding to {} would leave {} items, but it takes at most {max_items}; \
                         remove some first.",
                        quote(key),
                        list.len()
                    ))
                    .with_attribute(key));
                }
                Applied::Write(StoredValue::new(Repr::Choices(list)))
            }
            (ChangeKind::Remove { .. }, None) => Applied::Keep,
            (ChangeKind::Remove { folded }, Some(stored)) => {
                let list = stored.as_list().unwrap_or_default();
                let kept: Vec<String> = list
                    .iter()
                    .filter(|item| !folded.contains(&fold(item)))
                    .cloned()
                    .collect();
                if kept.len() == list.len() {
                    Applied::Keep
                } else {
                    Applied::Write(StoredValue::new(Repr::Choices(kept)))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
