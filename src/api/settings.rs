//! `WorkspaceSettingsService`: read and change the caller's workspace
//! settings. Secret keys only (enforced by the auth layer).

use tonic::{Request, Response, Status};

use super::ApiError;
use crate::{
    auth::principal,
    cache::Catalog,
    domain::{Error, Reason},
    proto::v1::{self as pb, workspace_settings_service_server::WorkspaceSettingsService},
    storage::Settings,
};

/// The WorkspaceSettingsService handlers.
#[derive(Clone)]
pub struct WorkspaceSettings {
    catalog: Catalog,
}

impl WorkspaceSettings {
    /// Handlers that keep `catalog` up to date with their changes.
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }
}

fn to_proto(settings: Settings) -> pb::WorkspaceSettings {
    pb::WorkspaceSettings {
        client_attribute_writes: settings.client_attribute_writes,
    }
}

#[tonic::async_trait]
impl WorkspaceSettingsService for WorkspaceSettings {
    async fn get_workspace_settings(
        &self,
        request: Request<pb::GetWorkspaceSettingsRequest>,
    ) -> Result<Response<pb::WorkspaceSettings>, Status> {
        let ws = principal(&request)?.workspace;
        // Read through to the database: an admin reading settings expects
        // what is stored, not what this replica cached.
        let settings = self
            .catalog
            .store()
            .get_settings(ws)
            .await
            .map_err(ApiError::from)?
            .unwrap_or_default();
        Ok(Response::new(to_proto(settings)))
    }

    async fn update_workspace_settings(
        &self,
        request: Request<pb::UpdateWorkspaceSettingsRequest>,
    ) -> Result<Response<pb::WorkspaceSettings>, Status> {
        let ws = principal(&request)?.workspace;
        let request = request.into_inner();
        let given = request.settings.unwrap_or_default();
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let store = self.catalog.store();
        let mut settings = store
            .get_settings(ws)
            .await
            .map_err(ApiError::from)?
            .unwrap_or_default();
        // AIP-134: an empty mask replaces every field.
        if paths.is_empty() {
            settings.client_attribute_writes = given.client_attribute_writes;
        }
        for path in &paths {
            match path.as_str() {
                "client_attribute_writes" | "clientAttributeWrites" => {
                    settings.client_attribute_writes = given.client_attribute_writes;
                }
                other => {
                    return Err(ApiError::from(Error::new(
                        Reason::InvalidArgument,
                        format!(
                            "update_mask: {other:?} is not a workspace setting; the settings \
                             are: client_attribute_writes."
                        ),
                    ))
                    .into());
                }
            }
        }
        let stored = store
            .update_settings(ws, settings)
            .await
            .map_err(ApiError::from)?
            .unwrap_or(settings);
        self.catalog.settings_changed(ws, stored).await;
        Ok(Response::new(to_proto(stored)))
    }
}
