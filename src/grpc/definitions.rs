//! `AttributeDefinitionsService`: declare, read, list, change, archive and
//! purge attributes. Secret keys only (enforced by the key layer).

use tonic::{Request, Response, Status};

use super::{auth::principal, convert};
use crate::{
    app::{self, App},
    domain::{AttributeKey, Error},
    proto::{
        longrunning::Operation,
        v1::{self as pb, attribute_definitions_service_server::AttributeDefinitionsService},
    },
};

/// The AttributeDefinitionsService handlers.
#[derive(Clone)]
pub struct Definitions {
    app: App,
}

impl Definitions {
    /// Handlers over `app`.
    pub fn new(app: App) -> Self {
        Self { app }
    }
}

/// The response of a call that returns one definition.
fn answer(
    stored: Result<app::StoredDefinition, app::Error>,
) -> Result<Response<pb::AttributeDefinition>, Status> {
    Ok(Response::new(convert::definition(&stored?)))
}

#[tonic::async_trait]
impl AttributeDefinitionsService for Definitions {
    async fn create_attribute_definition(
        &self,
        request: Request<pb::CreateAttributeDefinitionRequest>,
    ) -> Result<Response<pb::AttributeDefinition>, Status> {
        let ws = principal(&request)?.workspace;
        let request = request.into_inner();
        let named = |e: Error| app::Error::from(e.with_attribute(request.key.clone()));
        let key = AttributeKey::parse(&request.key).map_err(named)?;
        let attribute_type = convert::attribute_type(request.r#type).map_err(named)?;
        let config = convert::config(request.config).map_err(named)?;
        answer(
            self.app
                .declare(
                    ws,
                    key,
                    attribute_type,
                    config,
                    Some(request.display_name),
                    Some(request.description),
                    request.client_writable.unwrap_or(true),
                )
                .await,
        )
    }

    async fn get_attribute_definition(
        &self,
        request: Request<pb::GetAttributeDefinitionRequest>,
    ) -> Result<Response<pb::AttributeDefinition>, Status> {
        let ws = principal(&request)?.workspace;
        answer(self.app.definition(ws, &request.get_ref().key).await)
    }

    async fn list_attribute_definitions(
        &self,
        request: Request<pb::ListAttributeDefinitionsRequest>,
    ) -> Result<Response<pb::ListAttributeDefinitionsResponse>, Status> {
        let ws = principal(&request)?.workspace;
        let request = request.into_inner();
        // A negative page size is treated like none.
        let page_size = u32::try_from(request.page_size).unwrap_or(0);
        let page = self
            .app
            .list_definitions(ws, request.include_archived, page_size, &request.page_token)
            .await?;
        Ok(Response::new(pb::ListAttributeDefinitionsResponse {
            definitions: page.definitions.iter().map(convert::definition).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_attribute_definition(
        &self,
        request: Request<pb::UpdateAttributeDefinitionRequest>,
    ) -> Result<Response<pb::AttributeDefinition>, Status> {
        let ws = principal(&request)?.workspace;
        let request = request.into_inner();
        let config = match request.config {
            Some(config) => Some(
                convert::config(Some(config))
                    .map_err(|e| app::Error::from(e.with_attribute(request.key.clone())))?,
            ),
            None => None,
        };
        answer(
            self.app
                .update_definition(
                    ws,
                    &request.key,
                    config,
                    request.display_name,
                    request.description,
                    request.client_writable,
                )
                .await,
        )
    }

    async fn archive_attribute_definition(
        &self,
        request: Request<pb::ArchiveAttributeDefinitionRequest>,
    ) -> Result<Response<pb::AttributeDefinition>, Status> {
        let ws = principal(&request)?.workspace;
        answer(
            self.app
                .set_archived(ws, &request.get_ref().key, true)
                .await,
        )
    }

    async fn unarchive_attribute_definition(
        &self,
        request: Request<pb::UnarchiveAttributeDefinitionRequest>,
    ) -> Result<Response<pb::AttributeDefinition>, Status> {
        let ws = principal(&request)?.workspace;
        answer(
            self.app
                .set_archived(ws, &request.get_ref().key, false)
                .await,
        )
    }

    async fn delete_attribute_definition(
        &self,
        request: Request<pb::DeleteAttributeDefinitionRequest>,
    ) -> Result<Response<Operation>, Status> {
        let ws = principal(&request)?.workspace;
        let op = self.app.purge_attribute(ws, &request.get_ref().key).await?;
        Ok(Response::new(convert::operation(&op)))
    }
}
