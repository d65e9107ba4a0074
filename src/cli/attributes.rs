//! `attributes define|list|archive|unarchive`: one definition at a time,
//! its config given as flags.

use serde_json::{Map, Value as Json, json};

use super::{
    DefineArgs, Error, OnOff, Scoped,
    output::{definition_json, human_time, on_off, table},
    scoped_session,
};
use crate::{
    app::{App, MAX_PAGE_SIZE, StoredDefinition},
    domain::{self, AttributeConfig, AttributeDefinition, AttributeKey, AttributeType},
    storage::Workspace,
};

pub(super) async fn define(args: DefineArgs) -> Result<(), Error> {
    let t = args.attribute_type;
    let mut config = Map::new();
    if !args.options.is_empty() {
        config.insert("options".into(), json!(args.options));
    }
    for (field, given) in [
        ("allow_custom", args.allow_custom),
        ("truncate", args.truncate),
        ("integer", args.integer),
        ("include_time", args.include_time),
    ] {
        if given {
            config.insert(field.into(), Json::Bool(true));
        }
    }
    for (field, given) in [
        ("max_length", args.max_length),
        ("max_items", args.max_items),
    ] {
        if let Some(n) = given {
            config.insert(field.into(), json!(n));
        }
    }
    for (field, given) in [("min", args.min), ("max", args.max)] {
        if let Some(n) = given {
            config.insert(field.into(), json!(n));
        }
    }
    let key = AttributeKey::parse(&args.key)?;
    // Flags the type has no field for are refused by name, before the config is read.
    if let Some(field) = config
        .keys()
        .find(|f| !t.config_fields().contains(&f.as_str()))
    {
        return Err(Error::Invalid(not_applicable(t, field)));
    }
    let config = AttributeConfig::from_json(t, &Json::Object(config))
        .map_err(|e| Error::Invalid(in_flags(&e)))?;
    let mut definition = AttributeDefinition::new(key, config, args.display_name, args.description)
        .map_err(|e| Error::Invalid(in_flags(&e)))?;
    definition.set_client_writable(args.client_writable == OnOff::On);
    let (session, workspace) = scoped_session(&args.scoped).await?;
    let stored = session
        .app
        .create_definition(workspace.id, &definition)
        .await?;
    let record = &stored.definition;
    session.print(&definition_json(&stored), || {
        format!(
            "Declared {} ({}) in workspace {}: {}\n",
            record.key(),
            record.config().attribute_type(),
            workspace.id,
            record.config().to_json()
        )
    });
    Ok(())
}

pub(super) async fn list_attributes(include_archived: bool, scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let records = all_definitions(&session.app, &workspace, include_archived).await?;
    let value = Json::Array(records.iter().map(definition_json).collect());
    session.print(&value, || {
        table(
            &[
                "KEY",
                "TYPE",
                "STATE",
                "CLIENT-WRITABLE",
                "UPDATED",
                "NAME",
                "CONFIG",
            ],
            records
                .iter()
                .map(|r| {
                    let d = &r.definition;
                    vec![
                        d.key().to_string(),
                        d.config().attribute_type().to_string(),
                        if d.archived() { "archived" } else { "active" }.to_owned(),
                        on_off(d.client_writable()).to_owned(),
                        human_time(r.updated_at),
                        d.display_name().unwrap_or_default().to_owned(),
                        d.config().to_json().to_string(),
                    ]
                })
                .collect(),
        )
    });
    Ok(())
}

/// Every definition of a workspace, by key, a page at a time.
async fn all_definitions(
    app: &App,
    workspace: &Workspace,
    include_archived: bool,
) -> Result<Vec<StoredDefinition>, Error> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .list_definitions(workspace.id, include_archived, MAX_PAGE_SIZE, &token)
            .await?;
        all.extend(page.definitions);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        token = page.next_page_token;
    }
}

pub(super) async fn archive(key: &str, archived: bool, scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let stored = session
        .app
        .set_archived(workspace.id, key, archived)
        .await?;
    session.print(&definition_json(&stored), || {
        if archived {
            format!(
                "Archived {key}: its values are kept; servers refuse writes to it within their \
                 --cache-ttl.\n"
            )
        } else {
            format!("Unarchived {key}: servers take writes to it again within their --cache-ttl.\n")
        }
    });
    Ok(())
}

/// The config fields, as flags of `attributes define`; longer names first so
/// that `config.max` does not match inside `config.max_length`.
const FLAGS: [(&str, &str); 11] = [
    ("max_length", "--max-length"),
    ("max_items", "--max-items"),
    ("allow_custom", "--allow-custom"),
    ("include_time", "--include-time"),
    ("options", "--option"),
    ("truncate", "--truncate"),
    ("integer", "--integer"),
    ("min", "--min"),
    ("max", "--max"),
    ("display_name", "--display-name"),
    ("description", "--description"),
];

/// The flag that sets a config (or name) field.
fn flag(field: &str) -> String {
    FLAGS
        .iter()
        .find(|(f, _)| *f == field)
        .map_or(field.to_owned(), |(_, flag)| (*flag).to_owned())
}

/// The refusal of a flag given for a type that has no such config field.
fn not_applicable(t: AttributeType, field: &str) -> String {
    let fields = t.config_fields();
    if fields.is_empty() {
        return format!(
            "{} does not apply to {t} attributes, which have no config.",
            flag(field)
        );
    }
    let flags: Vec<String> = fields.iter().map(|f| flag(f)).collect();
    format!(
        "{} does not apply to {t} attributes; their flags are {}.",
        flag(field),
        flags.join(", ")
    )
}

/// A domain error about a config or name field, in terms of the flags that
/// set them: the field from the error, the other fields its sentence names
/// replaced by their flags.
fn in_flags(error: &domain::Error) -> String {
    let mut detail = error.detail().to_owned();
    for (field, flag) in FLAGS {
        detail = detail.replace(&format!("config.{field}"), flag);
    }
    match error.field() {
        Some(field) => {
            let field = field.strip_prefix("config.").unwrap_or(field);
            format!("{}: {detail}", flag(field))
        }
        None => detail,
    }
}

pub(super) fn parse_type(s: &str) -> Result<AttributeType, String> {
    AttributeType::parse(s).map_err(|e| e.detail().to_owned())
}

pub(super) fn parse_finite(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err("expected a finite number such as 0, -5 or 2.5".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_messages_name_the_flags() {
        assert_eq!(
            not_applicable(AttributeType::Text, "options"),
            "--option does not apply to text attributes; their flags are --max-length, --truncate."
        );
        assert_eq!(
            in_flags(&domain::Error::invalid_definition_at(
                "config.min",
                "2 is greater than config.max 1; min must not exceed max."
            )),
            "--min: 2 is greater than --max 1; min must not exceed max."
        );
        assert_eq!(
            in_flags(&domain::Error::invalid_definition_at(
                "display_name",
                "it is 300 characters long"
            )),
            "--display-name: it is 300 characters long"
        );
    }
}
