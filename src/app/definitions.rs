//! Declaring, reading, listing, changing and archiving attribute
//! definitions. Every change also updates this replica's catalog, so it is
//! used here at once.

use chrono::{DateTime, Utc};

use super::{App, Error};
use crate::{
    domain::{
        self, AttributeConfig, AttributeDefinition, AttributeKey, AttributeType, Reason,
        WorkspaceId,
    },
    storage::{self, DefinitionChanges, DefinitionRecord, NewDefinition},
};

/// Page size when a list names none.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest page size; larger requests get this many.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A definition as stored, with its times.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDefinition {
    /// The definition.
    pub definition: AttributeDefinition,
    /// When it was declared.
    pub created_at: DateTime<Utc>,
    /// When it last changed (archiving included).
    pub updated_at: DateTime<Utc>,
}

/// One page of definitions, by key in byte order.
#[derive(Debug, Clone, PartialEq)]
pub struct DefinitionPage {
    /// The definitions of the page.
    pub definitions: Vec<StoredDefinition>,
    /// The token of the next page; empty on the last.
    pub next_page_token: String,
}

/// A config as a request gives it: the type's defaults (none given), or one
/// config that must be of the attribute's type.
#[derive(Debug, Clone, PartialEq)]
pub enum NewConfig {
    /// The defaults of the attribute's type.
    Defaults,
    /// This config.
    Given(AttributeConfig),
}

impl NewConfig {
    /// The config for an attribute of type `t`; a config of another type is
    /// `invalid_attribute_definition` at `config`.
    fn resolve(self, t: AttributeType) -> Result<AttributeConfig, domain::Error> {
        match self {
            NewConfig::Defaults => AttributeConfig::default_for(t),
            NewConfig::Given(config) if config.attribute_type() == t => Ok(config),
            NewConfig::Given(config) => Err(domain::Error::invalid_definition_at(
                "config",
                format!(
                    "a {} config was sent for a {t} attribute; send config.{t} instead.",
                    config.attribute_type()
                ),
            )),
        }
    }
}

/// Rebuilds the domain definition of a stored record. A record that no
/// longer parses (written by a newer version, or by hand) is a defect.
pub(super) fn from_record(record: &DefinitionRecord) -> Result<AttributeDefinition, Error> {
    let corrupt = |e: domain::Error| {
        Error::Internal(format!("stored definition {:?} is invalid: {e}", record.key).into())
    };
    let key = AttributeKey::parse(&record.key).map_err(corrupt)?;
    let attr_type = AttributeType::parse(&record.attr_type).map_err(corrupt)?;
    let config = AttributeConfig::from_json(attr_type, &record.config).map_err(corrupt)?;
    let mut definition = AttributeDefinition::new(
        key,
        config,
        record.display_name.clone(),
        record.description.clone(),
    )
    .map_err(corrupt)?;
    definition.set_archived(record.archived);
    definition.set_client_writable(record.client_writable);
    Ok(definition)
}

fn stored(record: &DefinitionRecord) -> Result<StoredDefinition, Error> {
    Ok(StoredDefinition {
        definition: from_record(record)?,
        created_at: record.created_at,
        updated_at: record.updated_at,
    })
}

/// A key naming an existing definition. A malformed key can't name one, so
/// it gets the same answer as an undeclared key.
fn existing_key(key: &str) -> Result<AttributeKey, Error> {
    AttributeKey::parse(key).map_err(|_| not_found(key))
}

pub(super) fn not_found(key: &str) -> Error {
    domain::Error::new(
        Reason::AttributeDefinitionNotFound,
        format!("No attribute \"{key}\" is declared in this workspace."),
    )
    .with_attribute(key)
    .into()
}

/// An opaque page token: the hex of the last key of the page.
fn token_after(last_key: &str) -> String {
    last_key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn parse_page_token(token: &str) -> Result<Option<String>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        Error::refused(
            Reason::InvalidArgument,
            "page_token: not a token this service returned; pass the next_page_token of the \
             previous page, or an empty token for the first page.",
        )
    };
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    let key = String::from_utf8(bytes).map_err(|_| invalid())?;
    AttributeKey::parse(&key).map_err(|_| invalid())?;
    Ok(Some(key))
}

impl App {
    /// Declares `key` of type `t`, writable by public keys unless
    /// `client_writable` is false; a config of another type names the
    /// attribute, a taken key is `attribute_already_exists`.
    #[allow(clippy::too_many_arguments)]
    pub async fn declare(
        &self,
        ws: WorkspaceId,
        key: AttributeKey,
        t: AttributeType,
        config: NewConfig,
        display_name: Option<String>,
        description: Option<String>,
        client_writable: bool,
    ) -> Result<StoredDefinition, Error> {
        let config = config
            .resolve(t)
            .map_err(|e| e.with_attribute(key.as_str()))?;
        let mut definition = AttributeDefinition::new(key, config, display_name, description)?;
        definition.set_client_writable(client_writable);
        self.create_definition(ws, &definition).await
    }

    /// Stores a new definition; a taken key is `attribute_already_exists`.
    pub async fn create_definition(
        &self,
        ws: WorkspaceId,
        definition: &AttributeDefinition,
    ) -> Result<StoredDefinition, Error> {
        let created = self
            .admin()
            .create_definition(
                ws,
                NewDefinition {
                    key: definition.key().to_string(),
                    attr_type: definition.config().attribute_type().as_str().to_owned(),
                    config: definition.config().to_json(),
                    display_name: definition.display_name().map(str::to_owned),
                    description: definition.description().map(str::to_owned),
                    client_writable: definition.client_writable(),
                },
            )
            .await;
        match created {
            Ok(record) => self.changed(ws, &record),
            Err(storage::Error::AlreadyExists) => Err(domain::Error::new(
                Reason::AttributeAlreadyExists,
                format!(
                    "The attribute \"{}\" is already declared; change it with \
                     UpdateAttributeDefinition. (An archived attribute keeps its key until \
                     DeleteAttributeDefinition's operation has purged it.)",
                    definition.key()
                ),
            )
            .with_attribute(definition.key().as_str())
            .into()),
            Err(other) => Err(other.into()),
        }
    }

    /// The stored definition of `key`, archived or not, read through to the
    /// database (an admin reading a definition expects what is stored).
    pub async fn find_definition(
        &self,
        ws: WorkspaceId,
        key: &AttributeKey,
    ) -> Result<Option<StoredDefinition>, Error> {
        match self.admin().get_definition(ws, key.as_str()).await? {
            Some(record) => Ok(Some(stored(&record)?)),
            None => Ok(None),
        }
    }

    /// The stored definition of `key`; `attribute_definition_not_found`
    /// when there is none (or `key` cannot be a key).
    pub async fn definition(&self, ws: WorkspaceId, key: &str) -> Result<StoredDefinition, Error> {
        let key = existing_key(key)?;
        self.find_definition(ws, &key)
            .await?
            .ok_or_else(|| not_found(key.as_str()))
    }

    /// One page of definitions after `page_token` (empty: the first page);
    /// `page_size` 0 takes [`DEFAULT_PAGE_SIZE`], more than
    /// [`MAX_PAGE_SIZE`] takes that many.
    pub async fn list_definitions(
        &self,
        ws: WorkspaceId,
        include_archived: bool,
        page_size: u32,
        page_token: &str,
    ) -> Result<DefinitionPage, Error> {
        let page_size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = parse_page_token(page_token)?;
        // One more than a page tells whether another page follows.
        let mut records = self
            .admin()
            .list_definitions(ws, include_archived, after.as_deref(), page_size + 1)
            .await?;
        let more = records.len() > page_size as usize;
        records.truncate(page_size as usize);
        let next_page_token = match records.last() {
            Some(last) if more => token_after(&last.key),
            _ => String::new(),
        };
        Ok(DefinitionPage {
            definitions: records.iter().map(stored).collect::<Result<_, _>>()?,
            next_page_token,
        })
    }

    /// Changes the definition of `key`: fields given replace the stored ones
    /// (a config replaces the whole config and may not change the type).
    pub async fn update_definition(
        &self,
        ws: WorkspaceId,
        key: &str,
        config: Option<NewConfig>,
        display_name: Option<String>,
        description: Option<String>,
        client_writable: Option<bool>,
    ) -> Result<StoredDefinition, Error> {
        let current = self.definition(ws, key).await?.definition;
        let config = match config {
            Some(config) => Some(
                config
                    .resolve(current.config().attribute_type())
                    .map_err(|e| e.with_attribute(current.key().as_str()))?,
            ),
            None => None,
        };
        let config_changed = config.is_some();
        let mut updated = current.update(config, display_name, description)?;
        if let Some(client_writable) = client_writable {
            updated.set_client_writable(client_writable);
        }
        self.save_definition(ws, &updated, config_changed).await
    }

    /// Stores `updated`, a stored definition changed with
    /// [`AttributeDefinition::update`]: its names and `client_writable`
    /// always, its config only when `config_changed`. A definition gone meanwhile is
    /// `attribute_definition_not_found`.
    pub async fn save_definition(
        &self,
        ws: WorkspaceId,
        updated: &AttributeDefinition,
        config_changed: bool,
    ) -> Result<StoredDefinition, Error> {
        let key = updated.key().as_str();
        let record = self
            .admin()
            .update_definition(
                ws,
                key,
                DefinitionChanges {
                    config: config_changed.then(|| updated.config().to_json()),
                    // An empty name is stored as given and reads back as "no name".
                    display_name: Some(updated.display_name().unwrap_or_default().to_owned()),
                    description: Some(updated.description().unwrap_or_default().to_owned()),
                    client_writable: Some(updated.client_writable()),
                },
            )
            .await?
            .ok_or_else(|| not_found(key))?;
        self.changed(ws, &record)
    }

    /// Archives (`true`) or unarchives (`false`) the definition of `key`.
    pub async fn set_archived(
        &self,
        ws: WorkspaceId,
        key: &str,
        archived: bool,
    ) -> Result<StoredDefinition, Error> {
        let key = existing_key(key)?;
        match self
            .admin()
            .set_archived(ws, key.as_str(), archived)
            .await?
        {
            Some(record) => self.changed(ws, &record),
            // Unarchiving is refused while a purge runs, which is the only
            // way an existing definition gets no answer.
            None if !archived && self.find_definition(ws, &key).await?.is_some() => {
                Err(domain::Error::new(
                    Reason::AttributeArchived,
                    format!(
                        "The attribute \"{key}\" is being purged (DeleteAttributeDefinition); \
                         it stays archived until the purge ends."
                    ),
                )
                .with_attribute(key.as_str())
                .into())
            }
            None => Err(not_found(key.as_str())),
        }
    }

    /// A stored record as returned, made this replica's cached definition.
    fn changed(
        &self,
        ws: WorkspaceId,
        record: &DefinitionRecord,
    ) -> Result<StoredDefinition, Error> {
        let stored = stored(record)?;
        self.catalog()
            .definition_changed(ws, stored.definition.clone());
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let token = token_after("plan_seats");
        assert_eq!(
            parse_page_token(&token).unwrap().as_deref(),
            Some("plan_seats")
        );
        assert_eq!(parse_page_token("").unwrap(), None);
        for bad in ["zz", "abc", "00", "%%%%"] {
            assert!(parse_page_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_config_of_another_type_is_an_invalid_definition() {
        let err = NewConfig::Given(AttributeConfig::Boolean)
            .resolve(AttributeType::Text)
            .unwrap_err();
        assert_eq!(err.reason(), Reason::InvalidAttributeDefinition);
        assert!(err.message().starts_with("config:"), "{}", err.message());
        assert_eq!(err.field(), Some("config"));
    }
}
