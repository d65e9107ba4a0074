//! Values as stored: only coercion builds them from client input.

use prost_types::value::Kind;
use serde_json::Value as Json;

use crate::domain::config::AttributeType;

/// A value that a definition allowed when it was written.
///
/// The representation is private: a `StoredValue` comes either from
/// [`coerce`](crate::domain::coerce()) (so it satisfies the definition) or from
/// [`StoredValue::from_json`] (so it is what was once stored). Values read back
/// are not checked against the current config, because changing a config does
/// not rewrite stored values.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredValue(Repr);

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Repr {
    Text(String),
    Number(f64),
    Boolean(bool),
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
    Date(String),
    /// The declared spelling of an option, or a trimmed custom value.
    Choice(String),
    /// Distinct, in input order.
    Choices(Vec<String>),
}

impl StoredValue {
    pub(crate) fn new(repr: Repr) -> Self {
        StoredValue(repr)
    }

    /// The type of attribute this value was stored for.
    pub fn attribute_type(&self) -> AttributeType {
        match self.0 {
            Repr::Text(_) => AttributeType::Text,
            Repr::Number(_) => AttributeType::Number,
            Repr::Boolean(_) => AttributeType::Boolean,
            Repr::Date(_) => AttributeType::Date,
            Repr::Choice(_) => AttributeType::SingleChoice,
            Repr::Choices(_) => AttributeType::MultiChoice,
        }
    }

    /// The text of a text, date or single_choice value.
    pub fn as_str(&self) -> Option<&str> {
        match &self.0 {
            Repr::Text(s) | Repr::Date(s) | Repr::Choice(s) => Some(s),
            _ => None,
        }
    }

    /// The number of a number value.
    pub fn as_f64(&self) -> Option<f64> {
        match self.0 {
            Repr::Number(n) => Some(n),
            _ => None,
        }
    }

    /// The bool of a boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match self.0 {
            Repr::Boolean(b) => Some(b),
            _ => None,
        }
    }

    /// The items of a multi_choice value.
    pub fn as_list(&self) -> Option<&[String]> {
        match &self.0 {
            Repr::Choices(items) => Some(items),
            _ => None,
        }
    }

    /// The value as stored in the database: a JSON string, number, bool or
    /// list of strings. The type is not part of it; it comes from the
    /// definition, whose type never changes.
    pub fn to_json(&self) -> Json {
        match &self.0 {
            Repr::Text(s) | Repr::Date(s) | Repr::Choice(s) => Json::String(s.clone()),
            // Coercion only stores finite numbers, which JSON can hold.
            Repr::Number(n) => serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number),
            Repr::Boolean(b) => Json::Bool(*b),
            Repr::Choices(items) => items.iter().cloned().map(Json::String).collect(),
        }
    }

    /// Reads back what [`StoredValue::to_json`] wrote for an attribute of
    /// the given type. `None` means the JSON has the wrong shape for the type,
    /// which only corrupt storage can produce; the caller decides how to
    /// report it. The value is not re-validated against the current config.
    pub fn from_json(attribute_type: AttributeType, json: &Json) -> Option<Self> {
        let repr = match (attribute_type, json) {
            (AttributeType::Text, Json::String(s)) => Repr::Text(s.clone()),
            (AttributeType::Number, Json::Number(n)) => Repr::Number(n.as_f64()?),
            (AttributeType::Boolean, Json::Bool(b)) => Repr::Boolean(*b),
            (AttributeType::Date, Json::String(s)) => Repr::Date(s.clone()),
            (AttributeType::SingleChoice, Json::String(s)) => Repr::Choice(s.clone()),
            (AttributeType::MultiChoice, Json::Array(items)) => Repr::Choices(
                items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<_>>()?,
            ),
            _ => return None,
        };
        Some(StoredValue(repr))
    }

    /// The value as the API returns it: strings as `StringValue`, numbers as
    /// `NumberValue`, bools as `BoolValue`, lists as a `ListValue` of
    /// `StringValue`s.
    pub fn to_proto_value(&self) -> prost_types::Value {
        let kind = match &self.0 {
            Repr::Text(s) | Repr::Date(s) | Repr::Choice(s) => Kind::StringValue(s.clone()),
            Repr::Number(n) => Kind::NumberValue(*n),
            Repr::Boolean(b) => Kind::BoolValue(*b),
            Repr::Choices(items) => Kind::ListValue(prost_types::ListValue {
                values: items
                    .iter()
                    .map(|s| prost_types::Value {
                        kind: Some(Kind::StringValue(s.clone())),
                    })
                    .collect(),
            }),
        };
        prost_types::Value { kind: Some(kind) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn string(s: &str) -> prost_types::Value {
        prost_types::Value {
            kind: Some(Kind::StringValue(s.to_owned())),
        }
    }

    #[test]
    fn stored_values_convert_to_json_and_proto_and_back() {
        let cases = [
            (
                Repr::Text("hi".into()),
                json!("hi"),
                Kind::StringValue("hi".into()),
            ),
            (Repr::Number(2.5), json!(2.5), Kind::NumberValue(2.5)),
            (Repr::Boolean(true), json!(true), Kind::BoolValue(true)),
            (
                Repr::Date("2024-05-01".into()),
                json!("2024-05-01"),
                Kind::StringValue("2024-05-01".into()),
            ),
            (
                Repr::Choice("teacher".into()),
                json!("teacher"),
                Kind::StringValue("teacher".into()),
            ),
            (
                Repr::Choices(vec!["history".into(), "math".into()]),
                json!(["history", "math"]),
                Kind::ListValue(prost_types::ListValue {
                    values: vec![string("history"), string("math")],
                }),
            ),
            (
                Repr::Choices(vec![]),
                json!([]),
                Kind::ListValue(prost_types::ListValue::default()),
            ),
        ];
        for (repr, want_json, want_kind) in cases {
            let value = StoredValue::new(repr);
            assert_eq!(value.to_json(), want_json);
            assert_eq!(value.to_proto_value().kind, Some(want_kind));
            assert_eq!(
                StoredValue::from_json(value.attribute_type(), &want_json),
                Some(value)
            );
        }
    }

    #[test]
    fn accessors_answer_only_for_their_type() {
        let text = StoredValue::new(Repr::Text("a".into()));
        assert_eq!(text.as_str(), Some("a"));
        assert_eq!(text.as_f64(), None);
        assert_eq!(StoredValue::new(Repr::Number(1.0)).as_f64(), Some(1.0));
        assert_eq!(
            StoredValue::new(Repr::Boolean(false)).as_bool(),
            Some(false)
        );
        let list = StoredValue::new(Repr::Choices(vec!["a".into()]));
        assert_eq!(list.as_list(), Some(&["a".to_owned()][..]));
        assert_eq!(list.as_str(), None);
    }

    #[test]
    fn json_of_the_wrong_shape_is_not_a_stored_value() {
        assert_eq!(StoredValue::from_json(AttributeType::Text, &json!(1)), None);
        assert_eq!(
            StoredValue::from_json(AttributeType::Number, &json!("1")),
            None
        );
        assert_eq!(
            StoredValue::from_json(AttributeType::Boolean, &json!(null)),
            None
        );
        assert_eq!(
            StoredValue::from_json(AttributeType::MultiChoice, &json!(["a", 1])),
            None
        );
        assert_eq!(
            StoredValue::from_json(AttributeType::SingleChoice, &json!(["a"])),
            None
        );
    }
}
