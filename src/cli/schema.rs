//! `attributes apply FILE`: a declarative schema file, checked whole
//! (first without, then against the database) before anything is written.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use serde_path_to_error::Segment;

use super::{Error, Scoped, scoped_session};
use crate::{
    app::App,
    domain::{self, AttributeConfig, AttributeDefinition, AttributeKey, AttributeType},
    storage::Workspace,
};

/// One attribute of a schema file, checked on its own.
struct Declared {
    definition: AttributeDefinition,
    /// `None`: leave the archived state as it is.
    archived: Option<bool>,
}

/// What apply does to one attribute.
enum Step {
    Create(Declared),
    /// The definition as it should be, whether its config changed, and
    /// whether its archived state changes.
    Update {
        desired: AttributeDefinition,
        config_changed: bool,
        names_changed: bool,
        writable_changed: bool,
        archive: Option<bool>,
    },
    Unchanged(String),
}

pub(super) async fn apply(file: &std::path::Path, scoped: Scoped) -> Result<(), Error> {
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::Invalid(format!("{shown}: cannot read it: {e}")))?;
    if file.extension().and_then(|e| e.to_str()) != Some("toml") {
        return Err(Error::Invalid(format!(
            "{shown}: schema files are TOML and end in .toml."
        )));
    }
    // The whole file is checked before the database is even opened...
    let declared = parse_schema(&text).map_err(|problems| refused(&shown, &problems))?;
    let (session, workspace) = scoped_session(&scoped).await?;
    let app = &session.app;
    // ...and against the stored definitions before anything is written.
    let mut steps = Vec::with_capacity(declared.len());
    let mut problems = Vec::new();
    for declared in declared {
        match plan(app, &workspace, declared).await? {
            Ok(step) => steps.push(step),
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(refused(&shown, &problems));
    }

    let mut created = Vec::new();
    let mut updated = Vec::new();
    let mut unchanged = Vec::new();
    let mut changes = Map::new();
    for step in steps {
        match step {
            Step::Create(Declared {
                definition,
                archived,
            }) => {
                app.create_definition(workspace.id, &definition).await?;
                let key = definition.key().as_str();
                if archived == Some(true) {
                    app.set_archived(workspace.id, key, true).await?;
                }
                created.push(key.to_owned());
            }
            Step::Update {
                desired,
                config_changed,
                names_changed,
                writable_changed,
                archive,
            } => {
                let key = desired.key().as_str();
                let mut fields = Vec::new();
                if config_changed || names_changed || writable_changed {
                    app.save_definition(workspace.id, &desired, config_changed)
                        .await?;
                    if config_changed {
                        fields.push("config");
                    }
                    if names_changed {
                        fields.push("names");
                    }
                    if writable_changed {
                        fields.push("client_writable");
                    }
                }
                if let Some(archived) = archive {
                    app.set_archived(workspace.id, key, archived).await?;
                    fields.push(if archived { "archived" } else { "unarchived" });
                }
                changes.insert(key.to_owned(), json!(fields));
                updated.push(key.to_owned());
            }
            Step::Unchanged(key) => unchanged.push(key),
        }
    }
    let value = json!({
        "workspace": workspace.id.to_string(),
        "created": created,
        "updated": updated,
        "unchanged": unchanged,
        "changes": changes,
    });
    session.print(&value, || {
        let mut text = format!(
            "Applied {shown} to workspace {}: created {}, updated {}, unchanged {}.\n",
            workspace.id,
            created.len(),
            updated.len(),
            unchanged.len()
        );
        if !created.is_empty() {
            text.push_str(&format!("  created:   {}\n", created.join(", ")));
        }
        if !updated.is_empty() {
            let described: Vec<String> = updated
                .iter()
                .map(|key| {
                    let fields = changes[key.as_str()]
                        .as_array()
                        .map(|f| {
                            f.iter()
                                .filter_map(Json::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default();
                    format!("{key} ({fields})")
                })
                .collect();
            text.push_str(&format!("  updated:   {}\n", described.join(", ")));
        }
        if !unchanged.is_empty() {
            text.push_str(&format!("  unchanged: {}\n", unchanged.join(", ")));
        }
        text
    });
    Ok(())
}

/// The error of a file with `problems` (at least one): the first, and how
/// many more, on one line.
fn refused(shown: &str, problems: &[String]) -> Error {
    let first = problems
        .first()
        .map_or("invalid", |p| p.trim_end_matches('.'));
    let more = match problems.len() {
        0 | 1 => String::new(),
        2 => " (and 1 more problem)".to_owned(),
        n => format!(" (and {} more problems)", n - 1),
    };
    Error::Invalid(format!("{shown}: {first}{more}; nothing was applied."))
}

/// What to do with one declared attribute, given what is stored. The outer
/// error is the database's; the inner one a problem of the file.
async fn plan(
    app: &App,
    workspace: &Workspace,
    declared: Declared,
) -> Result<Result<Step, String>, Error> {
    let key = declared.definition.key().as_str().to_owned();
    let Some(stored) = app
        .find_definition(workspace.id, declared.definition.key())
        .await?
    else {
        return Ok(Ok(Step::Create(declared)));
    };
    let current = stored.definition;
    let wanted = &declared.definition;
    // The same rules as UpdateAttributeDefinition: the config replaces the
    // whole config (and may not change the type), an empty name clears it.
    let mut desired = match current.clone().update(
        Some(wanted.config().clone()),
        Some(wanted.display_name().unwrap_or_default().to_owned()),
        Some(wanted.description().unwrap_or_default().to_owned()),
    ) {
        Ok(desired) => desired,
        Err(e) => return Ok(Err(locate(&key, &e))),
    };
    desired.set_client_writable(wanted.client_writable());
    let config_changed = desired.config() != current.config();
    let names_changed = desired.display_name() != current.display_name()
        || desired.description() != current.description();
    let writable_changed = desired.client_writable() != current.client_writable();
    let archive = declared.archived.filter(|&a| a != current.archived());
    if !config_changed && !names_changed && !writable_changed && archive.is_none() {
        return Ok(Ok(Step::Unchanged(key)));
    }
    Ok(Ok(Step::Update {
        desired,
        config_changed,
        names_changed,
        writable_changed,
        archive,
    }))
}

/// One `[attributes.KEY]` table as the file spells it; every other key in
/// it is a config field of the type.
#[derive(Deserialize)]
struct AttributeTable {
    #[serde(rename = "type")]
    attribute_type: Option<String>,
    display_name: Option<String>,
    description: Option<String>,
    /// `None`: leave the archived state as it is.
    archived: Option<bool>,
    /// `None`: writable by public keys, the default.
    client_writable: Option<bool>,
    #[serde(flatten)]
    config: toml::Table,
}

/// Checks a whole schema file without the database: every problem, in key order.
fn parse_schema(text: &str) -> Result<Vec<Declared>, Vec<String>> {
    let document: toml::Table = toml::from_str(text).map_err(|e| vec![toml_problem(text, &e)])?;
    let mut problems = Vec::new();
    let mut declared = Vec::new();
    for name in document.keys() {
        if name != "attributes" {
            problems.push(format!(
                "{name}: unknown top-level key; a schema file has one table, [attributes]."
            ));
        }
    }
    let attributes = match document.get("attributes") {
        None => BTreeMap::new(),
        Some(toml::Value::Table(table)) => table.iter().collect(),
        Some(other) => {
            problems.push(format!(
                "attributes: expected a table of attributes ([attributes.KEY]), got a {}.",
                other.type_str()
            ));
            BTreeMap::new()
        }
    };
    for (key, value) in attributes {
        match declare(key, value) {
            Ok(d) => declared.push(d),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(declared)
    } else {
        Err(problems)
    }
}

/// One `[attributes.KEY]` table as a definition, or the first problem with it.
fn declare(key: &str, value: &toml::Value) -> Result<Declared, String> {
    // Placed by where serde stopped but worded here, not by serde: a field
    // of the wrong type, or an attribute that is not a table.
    let table: AttributeTable = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let Some(Segment::Map { key: field }) = e.path().iter().next() else {
            let found = value.type_str();
            return format!(
                "attributes.{key}: expected a table ([attributes.{key}]), got a {found}."
            );
        };
        let expected = if field == "archived" || field == "client_writable" {
            "true or false"
        } else {
            "a string"
        };
        let found = value.get(field).map_or("value", toml::Value::type_str);
        format!("attributes.{key}.{field}: expected {expected}, got a {found}.")
    })?;
    let Some(attribute_type) = table.attribute_type else {
        return Err(format!(
            "attributes.{key}.type: missing; set it to text, number, boolean, date, \
             single_choice or multi_choice."
        ));
    };
    let attribute_type = AttributeType::parse(&attribute_type).map_err(|e| locate(key, &e))?;
    let mut config = Map::new();
    for (field, value) in &table.config {
        let json = toml_to_json(value).map_err(|p| format!("attributes.{key}.{field}: {p}"))?;
        config.insert(field.clone(), json);
    }
    let config = AttributeConfig::from_json(attribute_type, &Json::Object(config))
        .map_err(|e| locate(key, &e))?;
    let attribute = AttributeKey::parse(key).map_err(|e| locate(key, &e))?;
    let mut definition =
        AttributeDefinition::new(attribute, config, table.display_name, table.description)
            .map_err(|e| locate(key, &e))?;
    definition.set_client_writable(table.client_writable.unwrap_or(true));
    Ok(Declared {
        definition,
        archived: table.archived,
    })
}

/// A domain error placed in the file by its field:
/// `attributes.KEY.options[0]: ...`, or `attributes.KEY: ...` for the key
/// itself, the whole config, or no field.
fn locate(key: &str, error: &domain::Error) -> String {
    match error.field() {
        None | Some("key" | "config") => format!("attributes.{key}: {}", error.detail()),
        Some(field) => {
            let field = field.strip_prefix("config.").unwrap_or(field);
            format!("attributes.{key}.{field}: {}", error.detail())
        }
    }
}

/// A TOML value as the JSON a config is read from; by hand, as serde_json
/// would read `nan` as `null` (no limit) and a datetime as toml's private map.
fn toml_to_json(value: &toml::Value) -> Result<Json, String> {
    Ok(match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| format!("{f} is not a finite number."))?,
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => {
            Json::Array(items.iter().map(toml_to_json).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => Json::Object(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), toml_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// A TOML syntax error on one line, with its line and column.
fn toml_problem(text: &str, error: &toml::de::Error) -> String {
    let message = error
        .message()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: invalid TOML: {message}")
        }
        None => format!("invalid TOML: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_problems_are_placed_in_the_file() {
        assert_eq!(
            locate(
                "bio",
                &domain::Error::invalid_definition_at(
                    "config.maxLength",
                    "unknown field; the fields ..."
                )
            ),
            "attributes.bio.maxLength: unknown field; the fields ..."
        );
        assert_eq!(
            locate(
                "Bio",
                &domain::Error::invalid_definition_at(
                    "key",
                    "\"Bio\" is not a valid attribute key"
                )
            ),
            "attributes.Bio: \"Bio\" is not a valid attribute key"
        );
        assert_eq!(
            locate(
                "bio",
                &domain::Error::invalid_definition_at("display_name", "too long")
            ),
            "attributes.bio.display_name: too long"
        );
    }

    #[test]
    fn a_schema_file_is_checked_whole() {
        let problems = parse_schema(
            "[attributes.persona]\ntype = \"single_choice\"\noptions = []\n\
             [attributes.bio]\ntype = \"text\"\nmaxLength = 3\n\
             [attributes.ok]\ntype = \"boolean\"\n\
             [attribute.typo]\ntype = \"text\"\n",
        )
        .err()
        .expect("problems");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("attribute: unknown top-level key"));
        assert!(problems[1].starts_with("attributes.bio.maxLength: unknown field"));
        assert!(problems[2].starts_with("attributes.persona.options: no options"));

        let e = parse_schema("[attributes.x]\ntype = \n")
            .err()
            .expect("bad TOML");
        assert!(e[0].starts_with("line 2, column "), "{e:?}");
    }
}
