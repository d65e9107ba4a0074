//! Conversions between generated proto types and the domain and storage
//! types, kept at the edge so the domain never sees generated code.

use chrono::{DateTime, Utc};
use prost_types::{ListValue, Struct, Timestamp, Value, value::Kind};

use crate::{
    app::{self, AttributeUpdate, NewConfig, StoredDefinition},
    domain::{
        Adjustment, AttributeConfig, AttributeType, ChoiceConfig, DateConfig, Error,
        MultiChoiceConfig, NumberConfig, Operation, Reason, TextConfig,
    },
    proto::{
        longrunning::{self, operation},
        v1 as pb,
    },
    storage::OperationRecord,
};

/// A JSON value (as stored) as a `google.protobuf.Value`.
pub(crate) fn json_to_value(json: &serde_json::Value) -> Value {
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(fields) => Kind::StructValue(Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        }),
    };
    Value { kind: Some(kind) }
}

/// The updates of an UpdateAttributes request; an update without an
/// operation is `attribute_operation_invalid`, named by its position.
pub(crate) fn updates(
    updates: Vec<pb::AttributeUpdate>,
) -> Result<Vec<AttributeUpdate>, app::Error> {
    use pb::attribute_update::Operation as Op;
    let mut out = Vec::with_capacity(updates.len());
    let mut missing = Vec::new();
    for (i, update) in updates.into_iter().enumerate() {
        let operation = match update.operation {
            Some(Op::Set(v)) => Operation::Set(Some(v)),
            Some(Op::SetOnce(v)) => Operation::SetOnce(Some(v)),
            Some(Op::Increment(by)) => Operation::Increment(by),
            Some(Op::Add(v)) => Operation::Add(Some(v)),
            Some(Op::Remove(v)) => Operation::Remove(Some(v)),
            Some(Op::Clear(())) => Operation::Clear,
            None => {
                missing.push((
                    format!("updates[{i}]"),
                    Error::new(
                        Reason::AttributeOperationInvalid,
                        format!(
                            "updates[{i}] names no operation; set one of set, set_once, \
                             increment, add, remove or clear."
                        ),
                    )
                    .with_attribute(update.attribute),
                ));
                continue;
            }
        };
        out.push(AttributeUpdate {
            attribute: update.attribute,
            operation,
            if_etag: update.if_etag,
        });
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(app::Error::Batch(missing))
    }
}

/// What coercion did, as the API reports it.
pub(crate) fn adjustments(adjustments: &[Adjustment]) -> Vec<pb::Adjustment> {
    use pb::adjustment::Kind;
    adjustments
        .iter()
        .map(|a| {
            let (kind, original_length, dropped) = match a {
                Adjustment::Trimmed => (Kind::Trimmed, 0, Vec::new()),
                Adjustment::CaseNormalized => (Kind::CaseNormalized, 0, Vec::new()),
                Adjustment::Truncated { original_length } => (
                    Kind::Truncated,
                    u32::try_from(*original_length).unwrap_or(u32::MAX),
                    Vec::new(),
                ),
                Adjustment::OptionsDropped { dropped } => {
                    (Kind::OptionsDropped, 0, dropped.clone())
                }
                Adjustment::DuplicatesDropped { dropped } => {
                    (Kind::DuplicatesDropped, 0, dropped.clone())
                }
                Adjustment::Converted => (Kind::Converted, 0, Vec::new()),
            };
            pb::Adjustment {
                kind: kind.into(),
                original_length,
                dropped,
            }
        })
        .collect()
}

/// A point in time as a `google.protobuf.Timestamp`.
pub(crate) fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The domain type of a proto type; UNSPECIFIED (or an unknown number) is
/// an invalid definition.
pub(crate) fn attribute_type(raw: i32) -> Result<AttributeType, Error> {
    match pb::AttributeType::try_from(raw) {
        Ok(pb::AttributeType::Text) => Ok(AttributeType::Text),
        Ok(pb::AttributeType::Number) => Ok(AttributeType::Number),
        Ok(pb::AttributeType::Boolean) => Ok(AttributeType::Boolean),
        Ok(pb::AttributeType::Date) => Ok(AttributeType::Date),
        Ok(pb::AttributeType::SingleChoice) => Ok(AttributeType::SingleChoice),
        Ok(pb::AttributeType::MultiChoice) => Ok(AttributeType::MultiChoice),
        Ok(pb::AttributeType::Unspecified) | Err(_) => Err(Error::invalid_definition_at(
            "type",
            "set the attribute's type: ATTRIBUTE_TYPE_TEXT, _NUMBER, _BOOLEAN, _DATE, \
             _SINGLE_CHOICE or _MULTI_CHOICE.",
        )),
    }
}

fn proto_type(t: AttributeType) -> pb::AttributeType {
    match t {
        AttributeType::Text => pb::AttributeType::Text,
        AttributeType::Number => pb::AttributeType::Number,
        AttributeType::Boolean => pb::AttributeType::Boolean,
        AttributeType::Date => pb::AttributeType::Date,
        AttributeType::SingleChoice => pb::AttributeType::SingleChoice,
        AttributeType::MultiChoice => pb::AttributeType::MultiChoice,
    }
}

/// The config a request gives: a missing config (or an empty oneof) takes
/// the type's defaults; the app checks that a given one is of the right type.
pub(crate) fn config(config: Option<pb::AttributeConfig>) -> Result<NewConfig, Error> {
    use pb::attribute_config::Config;
    let Some(config) = config.and_then(|c| c.config) else {
        return Ok(NewConfig::Defaults);
    };
    Ok(NewConfig::Given(match config {
        Config::Text(c) => AttributeConfig::Text(TextConfig::new(
            c.max_length.unwrap_or(TextConfig::DEFAULT_MAX_LENGTH),
            c.truncate,
        )?),
        Config::Number(c) => AttributeConfig::Number(NumberConfig::new(c.min, c.max, c.integer)?),
        Config::Boolean(_) => AttributeConfig::Boolean,
        Config::Date(c) => AttributeConfig::Date(DateConfig::new(c.include_time)),
        Config::SingleChoice(c) => {
            AttributeConfig::SingleChoice(ChoiceConfig::new(c.options, c.allow_custom)?)
        }
        Config::MultiChoice(c) => AttributeConfig::MultiChoice(MultiChoiceConfig::new(
            c.options,
            c.allow_custom,
            c.max_items.unwrap_or(MultiChoiceConfig::DEFAULT_MAX_ITEMS),
        )?),
    }))
}

fn proto_config(config: &AttributeConfig) -> pb::AttributeConfig {
    use pb::attribute_config::Config;
    let config = match config {
        AttributeConfig::Text(c) => Config::Text(pb::TextConfig {
            max_length: Some(c.max_length()),
            truncate: c.truncate(),
        }),
        AttributeConfig::Number(c) => Config::Number(pb::NumberConfig {
            min: c.min(),
            max: c.max(),
            integer: c.integer(),
        }),
        AttributeConfig::Boolean => Config::Boolean(pb::BooleanConfig {}),
        AttributeConfig::Date(c) => Config::Date(pb::DateConfig {
            include_time: c.include_time(),
        }),
        AttributeConfig::SingleChoice(c) => Config::SingleChoice(pb::SingleChoiceConfig {
            options: c.options().to_vec(),
            allow_custom: c.allow_custom(),
        }),
        AttributeConfig::MultiChoice(c) => Config::MultiChoice(pb::MultiChoiceConfig {
            options: c.options().to_vec(),
            allow_custom: c.allow_custom(),
            max_items: Some(c.max_items()),
        }),
    };
    pb::AttributeConfig {
        config: Some(config),
    }
}

/// A definition as the API returns it.
pub(crate) fn definition(stored: &StoredDefinition) -> pb::AttributeDefinition {
    let def = &stored.definition;
    pb::AttributeDefinition {
        key: def.key().to_string(),
        r#type: proto_type(def.config().attribute_type()).into(),
        config: Some(proto_config(def.config())),
        display_name: def.display_name().unwrap_or_default().to_owned(),
        description: def.description().unwrap_or_default().to_owned(),
        archived: def.archived(),
        client_writable: def.client_writable(),
        created_at: Some(timestamp(stored.created_at)),
        updated_at: Some(timestamp(stored.updated_at)),
    }
}

/// A message packed in an `Any` under its `type.googleapis.com/` URL.
fn any<M: prost::Message>(full_name: &str, message: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{full_name}"),
        value: message.encode_to_vec(),
    }
}

/// A stored purge as a `google.longrunning.Operation`: its progress in
/// `metadata`, and once done its `response`, or its `error` if it failed.
pub(crate) fn operation(op: &OperationRecord) -> longrunning::Operation {
    let metadata = pb::PurgeAttributeMetadata {
        key: op.attribute_key.clone(),
        values_deleted: op.values_deleted,
        start_time: Some(timestamp(op.created_at)),
        update_time: Some(timestamp(op.updated_at)),
        end_time: op.done_at.map(timestamp),
    };
    let result = match (op.done, op.error_code) {
        (false, _) => None,
        (true, Some(code)) => Some(operation::Result::Error(tonic_types::pb::Status {
            code,
            message: op.error_message.clone().unwrap_or_default(),
            details: Vec::new(),
        })),
        (true, None) => Some(operation::Result::Response(any(
            "vevee.attributes.v1.PurgeAttributeResponse",
            &pb::PurgeAttributeResponse {
                key: op.attribute_key.clone(),
                values_deleted: op.values_deleted,
            },
        ))),
    };
    longrunning::Operation {
        name: app::operation_name(op.id),
        metadata: Some(any("vevee.attributes.v1.PurgeAttributeMetadata", &metadata)),
        done: op.done,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_proto_config() {
        let configs = [
            AttributeConfig::Text(TextConfig::new(10, true).unwrap()),
            AttributeConfig::Number(NumberConfig::new(Some(0.0), Some(5.0), true).unwrap()),
            AttributeConfig::Boolean,
            AttributeConfig::Date(DateConfig::new(true)),
            AttributeConfig::SingleChoice(ChoiceConfig::new(vec!["a".into()], true).unwrap()),
            AttributeConfig::MultiChoice(
                MultiChoiceConfig::new(vec!["a".into(), "b".into()], false, 3).unwrap(),
            ),
        ];
        for c in configs {
            let back = config(Some(proto_config(&c))).unwrap();
            assert_eq!(back, NewConfig::Given(c));
        }
    }

    #[test]
    fn unspecified_type_is_an_invalid_definition_naming_the_field() {
        let err = attribute_type(0).unwrap_err();
        assert!(err.message().starts_with("type:"));
        assert!(attribute_type(99).is_err());
    }
}
