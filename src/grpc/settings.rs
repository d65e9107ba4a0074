//! `WorkspaceSettingsService`: read and change the caller's workspace
//! settings. Secret keys only (enforced by the key layer).

use tonic::{Request, Response, Status};

use super::auth::principal;
use crate::{
    app::{App, SettingsField},
    proto::v1::{self as pb, workspace_settings_service_server::WorkspaceSettingsService},
    storage::Settings,
};

/// The WorkspaceSettingsService handlers.
#[derive(Clone)]
pub struct WorkspaceSettings {
    app: App,
}

impl WorkspaceSettings {
    /// Handlers over `app`.
    pub fn new(app: App) -> Self {
        Self { app }
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
        Ok(Response::new(to_proto(self.app.settings(ws).await?)))
    }

    async fn update_workspace_settings(
        &self,
        request: Request<pb::UpdateWorkspaceSettingsRequest>,
    ) -> Result<Response<pb::WorkspaceSettings>, Status> {
        let ws = principal(&request)?.workspace;
        let request = request.into_inner();
        let given = request.settings.unwrap_or_default();
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        // AIP-134: an empty mask replaces every field.
        let fields = if paths.is_empty() {
            SettingsField::ALL.to_vec()
        } else {
            paths
                .iter()
                .map(|p| SettingsField::parse(p))
                .collect::<Result<_, _>>()?
        };
        let settings = Settings {
            client_attribute_writes: given.client_attribute_writes,
        };
        Ok(Response::new(to_proto(
            self.app.update_settings(ws, settings, &fields).await?,
        )))
    }
}
