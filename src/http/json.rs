//! The proto3 JSON mapping as grpc-gateway v2 applies it: a request message
//! from a JSON body, path variables and query parameters; a response message
//! to JSON with every unpopulated field emitted and whole numbers written as
//! integers.

use std::{borrow::Cow, collections::HashSet, io};

use percent_encoding::percent_decode_str;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    SerializeOptions, Value,
};

use super::routes::{BodyTarget, Route};

/// Why a request could not be read into its message: a 400 `invalid_argument`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadRequest(pub(crate) String);

/// The request message of `route` from the body, the raw path variables
/// and the query string. Path variables win over the body, as in
/// grpc-gateway; query parameters fill only fields that neither the path nor
/// the body bind, and unknown ones are ignored.
pub(crate) fn request_message(
    route: &Route,
    body: &[u8],
    variables: &[(&[String], &str)],
    query: Option<&str>,
) -> Result<DynamicMessage, BadRequest> {
    let input = route.input();
    let mut message = match &route.body {
        BodyTarget::None => DynamicMessage::new(input.clone()),
        BodyTarget::Whole => parse_body(input.clone(), body)?,
        BodyTarget::Field(name) => {
            let mut message = DynamicMessage::new(input.clone());
            if let Some(field) = input.get_field_by_name(name)
                && let Kind::Message(kind) = field.kind()
            {
                message.set_field(&field, Value::Message(parse_body(kind, body)?));
            }
            message
        }
    };
    for (path, raw) in variables {
        let text = percent_decode_str(raw).decode_utf8().map_err(|_| {
            BadRequest(format!(
                "the path segment {raw:?} for {} is not percent-encoded UTF-8",
                path.join(".")
            ))
        })?;
        set_from_text(&mut message, path, &[text.into_owned()], "path variable")?;
    }
    if let Some(query) = query
        && route.body != BodyTarget::Whole
    {
        let bound: Vec<&str> = variables
            .iter()
            .filter_map(|(path, _)| path.first().map(String::as_str))
            .chain(match &route.body {
                BodyTarget::Field(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        for (name, values) in grouped(query) {
            let path: Vec<String> = name.split('.').map(str::to_owned).collect();
            let Some(top) = field_named(&input, &path[0]) else {
                continue;
            };
            if bound.contains(&top.name()) {
                continue;
            }
            set_from_text(&mut message, &path, &values, "query parameter")?;
        }
    }
    Ok(message)
}

/// The query's parameters, each name with its values in order, so that a
/// repeated field is set from every occurrence.
fn grouped(query: &str) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value.into_owned()),
            None => groups.push((name.into_owned(), vec![value.into_owned()])),
        }
    }
    groups
}

/// A JSON body as the message `desc`; an empty body reads as `{}`.
fn parse_body(desc: MessageDescriptor, body: &[u8]) -> Result<DynamicMessage, BadRequest> {
    let name = desc.full_name().to_owned();
    let bad = |e: serde_json::Error| {
        BadRequest(format!("the request body is not a valid JSON {name}: {e}"))
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DynamicMessage::new(desc));
    }
    // grpc-gateway (Go's protojson) refuses a key given twice rather than
    // silently keeping one of them.
    let mut de = serde_json::Deserializer::from_slice(body);
    serde::de::Deserializer::deserialize_any(&mut de, NoDuplicateKeys).map_err(bad)?;
    let mut de = serde_json::Deserializer::from_slice(body);
    let message = DynamicMessage::deserialize_with_options(
        desc,
        &mut de,
        // Both gateways ignore unknown fields, so that older servers accept
        // newer clients.
        &DeserializeOptions::new().deny_unknown_fields(false),
    )
    .map_err(bad)?;
    de.end().map_err(bad)?;
    Ok(message)
}

/// Walks a JSON document and fails on the first object that has a key twice.
struct NoDuplicateKeys;

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicateKeys)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // A list for the usual few keys; a set once there are many, so that
        // a huge object costs linear time.
        let mut few: Vec<Cow<'de, str>> = Vec::new();
        let mut many: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let repeated = if many.is_empty() && few.len() < 16 {
                let repeated = few.contains(&key);
                few.push(key.clone());
                repeated
            } else {
                if many.is_empty() {
                    many.extend(few.drain(..));
                }
                !many.insert(key.clone())
            };
            if repeated {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value_seed(NoDuplicateKeys)?;
        }
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for NoDuplicateKeys {
    type Value = ();

    fn deserialize<D: serde::de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// The field of `desc` called `name`, by proto name or JSON name.
fn field_named(desc: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    desc.get_field_by_name(name)
        .or_else(|| desc.get_field_by_json_name(name))
}

/// Sets the field at `path` from text values (a path variable or query
/// parameter), parsed as the field's kind. Unknown fields are ignored.
fn set_from_text(
    message: &mut DynamicMessage,
    path: &[String],
    values: &[String],
    source: &str,
) -> Result<(), BadRequest> {
    let Some((leaf, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut target = message;
    for name in parents {
        let Some(field) = field_named(&target.descriptor(), name) else {
            return Ok(());
        };
        if field.is_list() || field.is_map() || !matches!(field.kind(), Kind::Message(_)) {
            return Ok(());
        }
        let Value::Message(inner) = target.get_field_mut(&field) else {
            return Ok(());
        };
        target = inner;
    }
    let Some(field) = field_named(&target.descriptor(), leaf) else {
        return Ok(());
    };
    if field.is_map() {
        return Ok(());
    }
    let bad = |why: String| BadRequest(format!("{source} {}: {why}", path.join(".")));
    let value = if field.is_list() {
        let items = values
            .iter()
            .map(|v| parse_text(&field, v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        Value::List(items)
    } else {
        // A repeated parameter for a singular field: the last one wins.
        let text = values.last().map(String::as_str).unwrap_or_default();
        parse_text(&field, text).map_err(bad)?
    };
    target.set_field(&field, value);
    Ok(())
}

/// One text value as the kind of `field`: strings as they are, booleans as
/// Go's `strconv.ParseBool` reads them (grpc-gateway's parser), a field mask
/// as comma-separated paths in either case, everything else (numbers, enum
/// names, timestamps) through the JSON mapping of a JSON string.
fn parse_text(field: &FieldDescriptor, text: &str) -> Result<Value, String> {
    match field.kind() {
        Kind::String => Ok(Value::String(text.to_owned())),
        Kind::Bool => match text {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Value::Bool(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Value::Bool(false)),
            _ => Err(format!("{text:?} is not a boolean")),
        },
        Kind::Message(desc) if desc.full_name() == "google.protobuf.FieldMask" => {
            let mut mask = DynamicMessage::new(desc);
            let paths = text
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(snake_case(p)))
                .collect();
            mask.set_field_by_name("paths", Value::List(paths));
            Ok(Value::Message(mask))
        }
        _ => {
            // A one-field object through the JSON mapping, so that every
            // other kind parses exactly as it would in a body.
            let parent = field.parent_message().clone();
            let json = if field.is_list() {
                serde_json::json!({ field.json_name(): [text] })
            } else {
                serde_json::json!({ field.json_name(): text })
            };
            let parsed = DynamicMessage::deserialize(parent, json).map_err(|e| e.to_string())?;
            match parsed.get_field(field).into_owned() {
                Value::List(items) if field.is_list() => items
                    .into_iter()
                    .next()
                    .ok_or_else(|| format!("{text:?} is not a value of this field")),
                value => Ok(value),
            }
        }
    }
}

/// A field-mask path in JSON's lowerCamelCase, or already in proto's
/// snake_case, as snake_case.
fn snake_case(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for ch in path.chars() {
        if ch.is_ascii_uppercase() {
            out.push('_');
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// `message` as grpc-gateway v2 writes it: camelCase names, enums by name,
/// unpopulated fields emitted, and whole numbers as integers.
pub(crate) fn to_json(message: &DynamicMessage) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, WholeNumbers);
    message.serialize_with_options(
        &mut serializer,
        &SerializeOptions::new().skip_default_fields(false),
    )?;
    Ok(out)
}

/// Writes whole doubles below 1e21 as integers (`42`, not `42.0`), as Go's
/// encoder and JavaScript's `String(n)` do; the rest as serde_json would.
struct WholeNumbers;

impl serde_json::ser::Formatter for WholeNumbers {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        if value.fract() == 0.0 && value.abs() < 1e21 {
            // Display never uses an exponent and prints `-0` for -0.0.
            write!(writer, "{value}")
        } else {
            serde_json::ser::CompactFormatter.write_f64(writer, value)
        }
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }
}

#[cfg(test)]
mod tests {
    use prost_reflect::DescriptorPool;

    use super::*;
    use crate::http::routes::{Match, RouteTable};

    fn table() -> RouteTable {
        let pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
        RouteTable::from_pool(&pool, &crate::proto::SERVICE_NAMES).unwrap()
    }

    fn read(method: http::Method, uri: &str, body: &str) -> Result<serde_json::Value, BadRequest> {
        let table = table();
        let (path, query) = uri
            .split_once('?')
            .map_or((uri, None), |(p, q)| (p, Some(q)));
        let Match::Found(route, vars) = table.find(&method, path) else {
            panic!("no route for {uri}");
        };
        let message = request_message(route, body.as_bytes(), &vars, query)?;
        Ok(serde_json::from_slice(&to_json(&message).unwrap()).unwrap())
    }

    #[test]
    fn bodies_take_camel_and_proto_names_ignore_unknown_fields_and_may_be_empty() {
        let got = read(
            http::Method::POST,
            "/api/v1/attributes/values",
            r#"{"distinctId":"u1","attribute":"persona","value":42,"extra":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(got["distinctId"], "u1");
        assert_eq!(got["attribute"], "persona");
        assert_eq!(got["value"], 42);
        assert!(got.get("extra").is_none(), "unknown fields are dropped");
        assert_eq!(got["validateOnly"], false, "unpopulated fields are emitted");
        let got = read(
            http::Method::POST,
            "/api/v1/attributes/values",
            r#"{"distinct_id":"u1","value":["a",true,null]}"#,
        )
        .unwrap();
        assert_eq!(got["distinctId"], "u1");
        assert_eq!(got["value"], serde_json::json!(["a", true, null]));
        let keys: Vec<String> = (0..40).map(|i| format!(r#""k{i}": {i}"#)).collect();
        let many = format!(r#"{{"distinctId": "x", "values": {{{}}}}}"#, keys.join(","));
        let got = read(
            http::Method::POST,
            "/api/v1/attributes/values:batchSet",
            &many,
        )
        .unwrap();
        assert_eq!(got["values"].as_object().unwrap().len(), 40);
        let empty = read(http::Method::POST, "/api/v1/attributes/values", " \n").unwrap();
        assert_eq!(empty["distinctId"], "");
    }

    #[test]
    fn malformed_or_mistyped_bodies_are_bad_requests() {
        for body in [
            "{",
            "[1]",
            r#"{"distinctId": 5}"#,
            r#"{"distinctId":"a"} trailing"#,
            r#"{"values": {"a": 1}, "distinctId": "x", "distinctId": "y"}"#,
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([{
            // A repeat after the first 16 keys, where a set does the checking.
            let keys: Vec<String> = (0..40).map(|i| format!(r#""k{}": 1"#, i % 30)).collect();
            format!(r#"{{"distinctId": "x", "values": {{{}}}}}"#, keys.join(","))
        }]) {
            let body = body.as_str();
            let got = read(
                http::Method::POST,
                "/api/v1/attributes/values:batchSet",
                body,
            );
            assert!(got.is_err(), "{body} was accepted: {got:?}");
        }
    }

    #[test]
    fn path_variables_are_percent_decoded_and_win_over_the_body() {
        let got = read(
            http::Method::GET,
            "/api/v1/persons/a%2Fb%3Ac%20%C3%A9/attributes?attributes=x&attributes=y&include_archived=true&junk=1",
            "",
        )
        .unwrap();
        assert_eq!(got["distinctId"], "a/b:c é");
        assert_eq!(got["attributes"], serde_json::json!(["x", "y"]));
        assert_eq!(got["includeArchived"], true);
        let got = read(
            http::Method::PATCH,
            "/api/v1/attributes/definitions/persona",
            r#"{"key":"other","displayName":"P"}"#,
        )
        .unwrap();
        assert_eq!(got["key"], "persona");
        assert_eq!(got["displayName"], "P");
        assert!(read(http::Method::GET, "/api/v1/persons/%FF/attributes", "").is_err());
    }

    #[test]
    fn query_parameters_parse_as_their_field_kinds() {
        let got = read(
            http::Method::GET,
            "/api/v1/attributes/definitions?pageSize=7&includeArchived=1&page_token=t",
            "",
        )
        .unwrap();
        assert_eq!(got["pageSize"], 7);
        assert_eq!(got["includeArchived"], true);
        assert_eq!(got["pageToken"], "t");
        assert!(
            read(
                http::Method::GET,
                "/api/v1/attributes/definitions?pageSize=x",
                ""
            )
            .is_err()
        );
        assert!(
            read(
                http::Method::GET,
                "/api/v1/attributes/definitions?includeArchived=yes",
                ""
            )
            .is_err()
        );
        let got = read(
            http::Method::PATCH,
            "/api/v1/settings?updateMask=clientAttributeWrites,client_attribute_writes",
            r#"{"clientAttributeWrites":true}"#,
        )
        .unwrap();
        assert_eq!(
            got["updateMask"],
            "clientAttributeWrites,clientAttributeWrites"
        );
        assert_eq!(got["settings"]["clientAttributeWrites"], true);
    }

    #[test]
    fn whole_numbers_are_written_as_integers() {
        for (value, text) in [
            (42.0, "42"),
            (-3.0, "-3"),
            (2.5, "2.5"),
            (1e20, "100000000000000000000"),
            (0.0, "0"),
        ] {
            let mut out = Vec::new();
            let mut ser = serde_json::Serializer::with_formatter(&mut out, WholeNumbers);
            serde::Serialize::serialize(&value, &mut ser).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }
}
