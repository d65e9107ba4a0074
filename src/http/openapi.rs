//! The OpenAPI 3.1 document of the REST face, generated from the same
//! descriptor and annotations as the routes, with the proto comments as
//! descriptions: never written by hand, so it cannot drift.

use std::collections::{BTreeMap, BTreeSet};

use prost_reflect::{DescriptorPool, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value as Json, json};

use super::routes::{BodyTarget, Route, RouteTable};

/// Where the document is served.
pub(crate) const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The name of the error body's schema.
const ERROR_SCHEMA: &str = "google.rpc.Status";

/// The document of every route of `routes`.
pub(crate) fn document(pool: &DescriptorPool, routes: &RouteTable) -> Json {
    let mut schemas = Schemas::default();
    let mut paths: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    let mut tags = BTreeMap::new();
    for route in routes.routes() {
        let service = route.rpc.parent_service();
        tags.entry(service.name().to_owned()).or_insert_with(|| {
            json!({
                "name": service.name(),
                "description": comment(&service.parent_file(), service.path()).unwrap_or_default(),
            })
        });
        paths
            .entry(route.template.openapi_path())
            .or_default()
            .insert(
                route.method.as_str().to_ascii_lowercase(),
                operation(route, &mut schemas),
            );
    }
    let mut paths: Map<String, Json> = paths
        .into_iter()
        .map(|(path, ops)| (path, Json::Object(ops)))
        .collect();
    for (path, summary, description) in [
        (
            "/healthz",
            "Liveness",
            "200 while the process serves. No key needed.",
        ),
        (
            "/readyz",
            "Readiness",
            "200 while the database answers, 503 otherwise: the gRPC health of \
             vevee.attributes.v1.AttributesService. No key needed.",
        ),
    ] {
        paths.insert(
            path.to_owned(),
            json!({"get": {
                "operationId": summary,
                "summary": summary,
                "description": description,
                "security": [],
                "responses": {
                    "200": health_response("Serving."),
                    "503": health_response("Not serving."),
                },
            }}),
        );
    }
    paths.insert(
        OPENAPI_PATH.to_owned(),
        json!({"get": {
            "operationId": "OpenApi",
            "summary": "This document",
            "security": [],
            "responses": {"200": {
                "description": "The OpenAPI document of the REST face.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }},
        }}),
    );
    schemas.error_schema(pool);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "vevee-attributes",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Typed person attributes for vevee analytics: the REST face of the gRPC \
                API, transcoded from its google.api.http annotations. Every error is a \
                google.rpc.Status body whose details carry a google.rpc.ErrorInfo with domain \
                attributes.vevee.dev and a lower-case reason such as attribute_value_invalid.",
        },
        "tags": tags.into_values().collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "schemas": schemas.done,
            "securitySchemes": {"bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key: secret (sk_live_, sk_test_) from a backend, public \
                    (pk_live_, pk_test_) from a browser where the workspace allows it.",
            }},
        },
        "security": [{"bearer": []}],
    })
}

/// A probe's response.
fn health_response(description: &str) -> Json {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {
            "type": "object",
            "properties": {"status": {"type": "string", "enum": ["SERVING", "NOT_SERVING"]}},
            "required": ["status"],
        }}},
    })
}

/// The operation of one route.
fn operation(route: &Route, schemas: &mut Schemas) -> Json {
    let rpc = &route.rpc;
    let file = rpc.parent_file();
    let description = comment(&file, rpc.path()).unwrap_or_default();
    let summary = description
        .split(['\n', '.'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let input = route.input();
    let mut parameters = Vec::new();
    let mut bound = BTreeSet::new();
    for path in route.template.variables() {
        let field = leaf(&input, path);
        bound.insert(path[0].clone());
        parameters.push(json!({
            "name": path.join("."),
            "in": "path",
            "required": true,
            "description": field.as_ref().and_then(|f| comment(&file, f.path())).unwrap_or_default(),
            "schema": field.map_or(json!({"type": "string"}), |f| schemas.field(&f)),
        }));
    }
    let request_body = match &route.body {
        BodyTarget::None => None,
        BodyTarget::Whole => Some(schemas.reference(&input)),
        BodyTarget::Field(name) => {
            bound.insert(name.clone());
            input.get_field_by_name(name).and_then(|f| match f.kind() {
                Kind::Message(m) => Some(schemas.reference(&m)),
                _ => None,
            })
        }
    };
    if route.body != BodyTarget::Whole {
        for field in input.fields().filter(|f| !bound.contains(f.name())) {
            if let Some(schema) = schemas.query(&field) {
                parameters.push(json!({
                    "name": field.json_name(),
                    "in": "query",
                    "required": false,
                    "description": comment(&file, field.path()).unwrap_or_default(),
                    "schema": schema,
                }));
            }
        }
    }
    let mut op = json!({
        "operationId": format!("{}_{}", rpc.parent_service().name(), rpc.name()),
        "summary": summary,
        "description": description,
        "tags": [rpc.parent_service().name()],
        "parameters": parameters,
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": schemas.reference(&rpc.output())}},
            },
            "default": {
                "description": "An error: the gRPC status as grpc-gateway writes it, with the \
                    HTTP status of its code.",
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{ERROR_SCHEMA}")}}},
            },
        },
    });
    if let Some(schema) = request_body {
        op["requestBody"] = json!({
            "required": false,
            "description": "JSON, proto3 mapping; unknown fields are ignored and an empty body \
                reads as {}.",
            "content": {"application/json": {"schema": schema}},
        });
    }
    op
}

/// The field at a dotted path of `message`.
fn leaf(message: &MessageDescriptor, path: &[String]) -> Option<FieldDescriptor> {
    let (last, parents) = path.split_last()?;
    let mut desc = message.clone();
    for name in parents {
        match desc.get_field_by_name(name)?.kind() {
            Kind::Message(m) => desc = m,
            _ => return None,
        }
    }
    desc.get_field_by_name(last)
}

/// The leading comment of the element at `path` of `file`, one space of
/// indentation removed from each line.
fn comment(file: &FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?;
    let lines: Vec<&str> = text
        .trim_end()
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    Some(lines.join("\n").trim().to_owned())
}

/// The message schemas written so far, by full name.
#[derive(Default)]
struct Schemas {
    done: BTreeMap<String, Json>,
}

impl Schemas {
    /// The schema of a message: a well-known type inline, any other a
    /// `$ref` to its component (written on first use).
    fn reference(&mut self, message: &MessageDescriptor) -> Json {
        if let Some(schema) = well_known(message) {
            return schema;
        }
        let name = message.full_name().to_owned();
        if !self.done.contains_key(&name) {
            // Reserved first so that recursive messages terminate.
            self.done.insert(name.clone(), Json::Null);
            let file = message.parent_file();
            let mut properties = Map::new();
            for field in message.fields() {
                let mut schema = self.field(&field);
                if let Some(text) = comment(&file, field.path()) {
                    schema = describe(schema, text);
                }
                properties.insert(field.json_name().to_owned(), schema);
            }
            let mut schema = json!({
                "type": "object",
                "description": comment(&file, message.path()).unwrap_or_default(),
                "properties": properties,
            });
            // A message that is one oneof (AttributeConfig) takes one member.
            let mut oneofs = message.oneofs().filter(|o| !o.is_synthetic());
            if let (Some(only), None) = (oneofs.next(), oneofs.next())
                && only.fields().len() == message.fields().len()
            {
                schema["maxProperties"] = json!(1);
            }
            self.done.insert(name.clone(), schema);
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    /// The schema of a field's JSON value.
    fn field(&mut self, field: &FieldDescriptor) -> Json {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                return json!({"type": "object"});
            };
            let value = entry.map_entry_value_field();
            return json!({"type": "object", "additionalProperties": self.kind(&value.kind())});
        }
        let item = self.kind(&field.kind());
        if field.is_list() {
            json!({"type": "array", "items": item})
        } else {
            item
        }
    }

    /// The schema of one value of `kind`, as the proto3 JSON mapping writes it.
    fn kind(&mut self, kind: &Kind) -> Json {
        match kind {
            Kind::Double | Kind::Float => json!({"type": "number"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({"type": "integer", "format": "int32"})
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})
            }
            // 64-bit integers are strings in the JSON mapping.
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
                json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
            }
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
            Kind::Enum(e) => {
                json!({"type": "string", "enum": e.values().map(|v| v.name().to_owned()).collect::<Vec<_>>()})
            }
            Kind::Message(m) => self.reference(m),
        }
    }

    /// The schema of a query parameter for `field`, if it can be one: a
    /// scalar, an enum, a list of them, or a field mask.
    fn query(&mut self, field: &FieldDescriptor) -> Option<Json> {
        if field.is_map() {
            return None;
        }
        match field.kind() {
            Kind::Message(m) if m.full_name() == "google.protobuf.FieldMask" => {
                Some(self.field(field))
            }
            Kind::Message(_) => None,
            _ => Some(self.field(field)),
        }
    }

    /// `google.rpc.Status`, the error body, with `@type` on each detail.
    fn error_schema(&mut self, pool: &DescriptorPool) {
        let description = pool
            .get_message_by_name(ERROR_SCHEMA)
            .and_then(|m| comment(&m.parent_file(), m.path()))
            .unwrap_or_default();
        self.done.insert(
            ERROR_SCHEMA.to_owned(),
            json!({
                "type": "object",
                "description": description,
                "properties": {
                    "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
                    "message": {"type": "string", "description": "What went wrong, for a person."},
                    "details": {
                        "type": "array",
                        "description": "google.rpc.ErrorInfo (reason, domain, metadata.attribute), \
                            google.rpc.BadRequest (fieldViolations) and others.",
                        "items": {
                            "type": "object",
                            "properties": {"@type": {"type": "string"}},
                            "required": ["@type"],
                            "additionalProperties": true,
                        },
                    },
                },
                "required": ["code", "message", "details"],
            }),
        );
    }
}

/// `schema` with a description; a `$ref` is wrapped, since siblings of
/// `$ref` are ignored by some tools.
fn describe(schema: Json, text: String) -> Json {
    if schema.get("$ref").is_some() {
        json!({"allOf": [schema], "description": text})
    } else {
        let mut schema = schema;
        schema["description"] = Json::String(text);
        schema
    }
}

/// The JSON shape of the well-known types the API uses.
fn well_known(message: &MessageDescriptor) -> Option<Json> {
    Some(match message.full_name() {
        "google.protobuf.Value" => json!({
            "description": "Any JSON value."
        }),
        "google.protobuf.Struct" => json!({"type": "object"}),
        "google.protobuf.ListValue" => json!({"type": "array"}),
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => {
            json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"})
        }
        "google.protobuf.FieldMask" => json!({
            "type": "string",
            "description": "Comma-separated field paths, such as clientAttributeWrites."
        }),
        "google.protobuf.Empty" => json!({"type": "object"}),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_comments_and_schemas() {
        let descriptors = super::super::Descriptors::load().unwrap();
        let routes =
            RouteTable::from_pool(&descriptors.pool, &crate::proto::SERVICE_NAMES).unwrap();
        let doc = document(&descriptors.pool, &routes);
        assert_eq!(doc["openapi"], "3.1.0");
        let set = &doc["paths"]["/api/v1/attributes/values"]["post"];
        assert_eq!(set["operationId"], "AttributesService_SetAttribute");
        assert!(
            set["description"]
                .as_str()
                .unwrap()
                .starts_with("Sets one attribute of a person")
        );
        let get = &doc["paths"]["/api/v1/persons/{distinct_id}/attributes"]["get"];
        let names: Vec<&str> = get["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["distinct_id", "attributes", "includeArchived"]);
        let schemas = &doc["components"]["schemas"];
        let request = &schemas["vevee.attributes.v1.SetAttributeRequest"];
        assert_eq!(request["properties"]["distinctId"]["type"], "string");
        assert!(schemas[ERROR_SCHEMA]["required"].is_array());
        assert!(doc["paths"]["/api/v1/settings"]["patch"]["parameters"][0]["name"] == "updateMask");
        // Every $ref resolves.
        let text = doc.to_string();
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(schemas.get(name).is_some_and(|s| !s.is_null()), "{name}");
        }
    }
}
