//! `WorkspaceSettingsService`: read and change the caller's workspace
//! settings and identity secrets. Secret keys only (enforced by the key
//! layer).

use tonic::{Request, Response, Status};

use super::{auth::principal, convert};
use crate::{
    app::{App, SettingsField},
    domain::IdentityVerification,
    proto::v1::{self as pb, workspace_settings_service_server::WorkspaceSettingsService},
    storage::{IdentitySecretRecord, Settings},
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
    let identity_verification = match settings.identity_verification {
        IdentityVerification::Off => pb::IdentityVerification::Off,
        IdentityVerification::Required => pb::IdentityVerification::Required,
    };
    pb::WorkspaceSettings {
        client_attribute_writes: settings.client_attribute_writes,
        identity_verification: identity_verification.into(),
        allowed_origins: settings.allowed_origins,
    }
}

/// A secret as the API shows it: the secret itself only when `reveal`.
fn secret_to_proto(record: IdentitySecretRecord, reveal: bool) -> pb::IdentitySecret {
    pb::IdentitySecret {
        id: record.id.0.to_string(),
        secret: if reveal { record.secret } else { String::new() },
        display_prefix: record.display_prefix,
        created_at: Some(convert::timestamp(record.created_at)),
        revoked_at: record.revoked_at.map(convert::timestamp),
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
        // An unknown number reads as the default, as proto3 enums do.
        let identity_verification = match given.identity_verification() {
            pb::IdentityVerification::Off => IdentityVerification::Off,
            pb::IdentityVerification::Required => IdentityVerification::Required,
        };
        let settings = Settings {
            client_attribute_writes: given.client_attribute_writes,
            identity_verification,
            allowed_origins: given.allowed_origins,
        };
        Ok(Response::new(to_proto(
            self.app.update_settings(ws, settings, &fields).await?,
        )))
    }

    async fn create_identity_secret(
        &self,
        request: Request<pb::CreateIdentitySecretRequest>,
    ) -> Result<Response<pb::IdentitySecret>, Status> {
        let ws = principal(&request)?.workspace;
        let issued = self.app.create_identity_secret(ws).await?;
        Ok(Response::new(secret_to_proto(issued.record, true)))
    }

    async fn list_identity_secrets(
        &self,
        request: Request<pb::ListIdentitySecretsRequest>,
    ) -> Result<Response<pb::ListIdentitySecretsResponse>, Status> {
        let ws = principal(&request)?.workspace;
        let secrets = self.app.identity_secrets(ws).await?;
        Ok(Response::new(pb::ListIdentitySecretsResponse {
            identity_secrets: secrets
                .into_iter()
                .map(|s| secret_to_proto(s, false))
                .collect(),
        }))
    }

    async fn revoke_identity_secret(
        &self,
        request: Request<pb::RevokeIdentitySecretRequest>,
    ) -> Result<Response<pb::IdentitySecret>, Status> {
        let ws = principal(&request)?.workspace;
        let revoked = self
            .app
            .revoke_identity_secret(ws, &request.get_ref().id)
            .await?;
        Ok(Response::new(secret_to_proto(revoked, false)))
    }
}
