//! `AttributeDefinitionsService`: declare, read, list, change and archive
//! attributes. Secret keys only (enforced by the auth layer).

use tonic::{Request, Response, Status};

use super::{ApiError, convert};
use crate::{
    auth::principal,
    cache::{Catalog, definition_from_record},
    domain::{AttributeDefinition, AttributeKey, Error, Reason},
    proto::v1::{self as pb, attribute_definitions_service_server::AttributeDefinitionsService},
    storage::{self, DefinitionChanges, DefinitionRecord, NewDefinition, Store, WorkspaceId},
};

/// Page size when the request sets none.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest page size; larger requests get this many.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The AttributeDefinitionsService handlers.
#[derive(Clone)]
pub struct Definitions {
    catalog: Catalog,
}

impl Definitions {
    /// Handlers that keep `catalog` up to date with their changes.
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }

    /// Answers with a stored record, and makes this replica use it at once.
    async fn changed(
        &self,
        ws: WorkspaceId,
        record: &DefinitionRecord,
    ) -> Result<Response<pb::AttributeDefinition>, Status> {
        let definition = definition_from_record(record)?;
        let response = convert::definition(&definition, record.created_at, record.updated_at);
        self.catalog.definition_changed(ws, definition).await;
        Ok(Response::new(response))
    }

    async fn set_archived(
        &self,
        ws: WorkspaceId,
        key: &str,
        archived: bool,
    ) -> Result<Response<pb::AttributeDefinition>, Status> {
        let record =
            set_definition_archived(self.catalog.store().as_ref(), ws, key, archived).await?;
        self.changed(ws, &record).await
    }
}

// The writes below are shared by these handlers and the operator CLI
// (`crate::cli`), so that both store definitions the same way and refuse
// the same things with the same reasons.

/// Stores a new definition; a taken key is `attribute_already_exists`.
pub async fn create_definition(
    store: &dyn Store,
    ws: WorkspaceId,
    definition: &AttributeDefinition,
) -> Result<DefinitionRecord, ApiError> {
    let created = store
        .create_definition(
            ws,
            NewDefinition {
                key: definition.key().to_string(),
                attr_type: definition.config().attribute_type().as_str().to_owned(),
                config: definition.config().to_json(),
                display_name: definition.display_name().map(str::to_owned),
                description: definition.description().map(str::to_owned),
            },
        )
        .await;
    match created {
        Ok(record) => Ok(record),
        Err(storage::Error::AlreadyExists) => Err(Error::new(
            Reason::AttributeAlreadyExists,
            format!(
                "The attribute \"{}\" is already declared; change it with \
                 UpdateAttributeDefinition.",
                definition.key()
            ),
        )
        .with_attribute(definition.key().as_str())
        .into()),
        Err(other) => Err(other.into()),
    }
}

/// Stores `updated`, a stored definition changed with
/// [`AttributeDefinition::update`]: its names always, its config only when
/// `config_changed`. A definition gone meanwhile is
/// `attribute_definition_not_found`.
pub async fn save_definition(
    store: &dyn Store,
    ws: WorkspaceId,
    updated: &AttributeDefinition,
    config_changed: bool,
) -> Result<DefinitionRecord, ApiError> {
    let key = updated.key().as_str();
    store
        .update_definition(
            ws,
            key,
            DefinitionChanges {
                config: config_changed.then(|| updated.config().to_json()),
                // An empty name is stored as given and reads back as "no name".
                display_name: Some(updated.display_name().unwrap_or_default().to_owned()),
                description: Some(updated.description().unwrap_or_default().to_owned()),
            },
        )
        .await?
        .ok_or_else(|| not_found(key).into())
}

/// Archives (`true`) or unarchives (`false`) the definition of `key`; a key
/// with no definition (or that cannot be a key) is
/// `attribute_definition_not_found`.
pub async fn set_definition_archived(
    store: &dyn Store,
    ws: WorkspaceId,
    key: &str,
    archived: bool,
) -> Result<DefinitionRecord, ApiError> {
    let key = existing_key(key)?;
    store
        .set_archived(ws, key.as_str(), archived)
        .await?
        .ok_or_else(|| not_found(key.as_str()).into())
}

/// A key naming an existing definition. A malformed key can't name one, so
/// it gets the same answer as an undeclared key.
fn existing_key(key: &str) -> Result<AttributeKey, ApiError> {
    AttributeKey::parse(key).map_err(|_| not_found(key).into())
}

fn not_found(key: &str) -> Error {
    Error::new(
        Reason::AttributeDefinitionNotFound,
        format!("No attribute \"{key}\" is declared in this workspace."),
    )
    .with_attribute(key)
}

/// An opaque page token: the hex of the last key of the page.
fn page_token(last_key: &str) -> String {
    last_key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn parse_page_token(token: &str) -> Result<Option<String>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        ApiError::from(Error::new(
            Reason::InvalidArgument,
            "page_token: not a token this service returned; pass the next_page_token of the \
             previous page, or an empty token for the first page.",
        ))
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

#[tonic::async_trait]
impl AttributeDefinitionsService for Definitions {
    async fn create_attribute_definition(
        &self,
        request: Request<pb::CreateAttributeDefinitionRequest>,
    ) -> Result<Response<pb::AttributeDefinition>, Status> {
        let ws = principal(&request)?.workspace;
        let request = request.into_inner();
        let named = |e: Error| ApiError::from(e.with_attribute(request.key.clone()));
        let key = AttributeKey::parse(&request.key).map_err(named)?;
        let attribute_type = convert::attribute_type(request.r#type).map_err(named)?;
        let config = convert::config(attribute_type, request.config).map_err(named)?;
        let definition = AttributeDefinition::new(
            key,
            config,
            Some(request.display_name),
            Some(request.description),
        )
        .map_err(ApiError::from)?;
        let record = create_definition(self.catalog.store().as_ref(), ws, &definition).await?;
        self.changed(ws, &record).await
    }

    async fn get_attribute_definition(
        &self,
        request: Request<pb::GetAttributeDefinitionRequest>,
    ) -> Result<Response<pb::AttributeDefinition>, Status> {
        let ws = principal(&request)?.workspace;
        let key = existing_key(&request.get_ref().key)?;
        let record = self
            .catalog
            .store()
            .get_definition(ws, key.as_str())
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::from(not_found(key.as_str())))?;
        let definition = definition_from_record(&record)?;
        Ok(Response::new(convert::definition(
            &definition,
            record.created_at,
            record.updated_at,
        )))
    }

    async fn list_attribute_definitions(
        &self,
        request: Request<pb::ListAttributeDefinitionsRequest>,
    ) -> Result<Response<pb::ListAttributeDefinitionsResponse>, Status> {
        let ws = principal(&request)?.workspace;
        let request = request.into_inner();
        let page_size = match u32::try_from(request.page_size) {
            Ok(0) | Err(_) => DEFAULT_PAGE_SIZE,
            Ok(n) => n.min(MAX_PAGE_SIZE),
        };
        let after = parse_page_token(&request.page_token)?;
        // One more than a page tells whether another page follows.
        let mut records = self
            .catalog
            .store()
            .list_definitions(
                ws,
                request.include_archived,
                after.as_deref(),
                page_size + 1,
            )
            .await
            .map_err(ApiError::from)?;
        let more = records.len() > page_size as usize;
        records.truncate(page_size as usize);
        let next_page_token = match records.last() {
            Some(last) if more => page_token(&last.key),
            _ => String::new(),
        };
        let definitions = records
            .iter()
            .map(|r| {
                definition_from_record(r)
                    .map(|d| convert::definition(&d, r.created_at, r.updated_at))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(pb::ListAttributeDefinitionsResponse {
            definitions,
            next_page_token,
        }))
    }

    async fn update_attribute_definition(
        &self,
        request: Request<pb::UpdateAttributeDefinitionRequest>,
    ) -> Result<Response<pb::AttributeDefinition>, Status> {
        let ws = principal(&request)?.workspace;
        let request = request.into_inner();
        let key = existing_key(&request.key)?;
        let store = self.catalog.store();
        let record = store
            .get_definition(ws, key.as_str())
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::from(not_found(key.as_str())))?;
        let current = definition_from_record(&record)?;
        let attribute_type = current.config().attribute_type();
        let config = match request.config {
            Some(config) => Some(
                convert::config(attribute_type, Some(config))
                    .map_err(|e| ApiError::from(e.with_attribute(key.as_str())))?,
            ),
            None => None,
        };
        let config_changed = config.is_some();
        let updated = current
            .update(config, request.display_name, request.description)
            .map_err(ApiError::from)?;
        let record = save_definition(store.as_ref(), ws, &updated, config_changed).await?;
        self.changed(ws, &record).await
    }

    async fn archive_attribute_definition(
        &self,
        request: Request<pb::ArchiveAttributeDefinitionRequest>,
    ) -> Result<Response<pb::AttributeDefinition>, Status> {
        let ws = principal(&request)?.workspace;
        self.set_archived(ws, &request.get_ref().key, true).await
    }

    async fn unarchive_attribute_definition(
        &self,
        request: Request<pb::UnarchiveAttributeDefinitionRequest>,
    ) -> Result<Response<pb::AttributeDefinition>, Status> {
        let ws = principal(&request)?.workspace;
        self.set_archived(ws, &request.get_ref().key, false).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let token = page_token("plan_seats");
        assert_eq!(
            parse_page_token(&token).unwrap().as_deref(),
            Some("plan_seats")
        );
        assert_eq!(parse_page_token("").unwrap(), None);
        for bad in ["zz", "abc", "00", "%%%%"] {
            assert!(parse_page_token(bad).is_err(), "{bad}");
        }
    }
}
