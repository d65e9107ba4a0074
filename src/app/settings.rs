//! Workspace settings: read through to the database, changed field by field
//! (AIP-134 update masks), and made this replica's cached settings at once;
//! and the origins of every workspace, which CORS preflights are answered for.

use super::{App, Error};
use crate::{
    domain::{PreflightOrigins, Reason, SharedPreflightOrigins, WorkspaceId, parse_origin_pattern},
    storage::Settings,
};

/// A setting an update may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsField {
    /// `client_attribute_writes`: whether public keys may write values.
    ClientAttributeWrites,
    /// `identity_verification`: whether public-key writes need a signature.
    IdentityVerification,
    /// `allowed_origins`: where public keys may be used from.
    AllowedOrigins,
}

impl SettingsField {
    /// Every setting: what an empty update mask means.
    pub const ALL: [SettingsField; 3] = [
        SettingsField::ClientAttributeWrites,
        SettingsField::IdentityVerification,
        SettingsField::AllowedOrigins,
    ];

    /// The field an update-mask path names (its proto or JSON name).
    pub fn parse(path: &str) -> Result<Self, Error> {
        match path {
            "client_attribute_writes" | "clientAttributeWrites" => {
                Ok(SettingsField::ClientAttributeWrites)
            }
            "identity_verification" | "identityVerification" => {
                Ok(SettingsField::IdentityVerification)
            }
            "allowed_origins" | "allowedOrigins" => Ok(SettingsField::AllowedOrigins),
            other => Err(Error::refused(
                Reason::InvalidArgument,
                format!(
                    "update_mask: {other:?} is not a workspace setting; the settings are: \
                     client_attribute_writes, identity_verification, allowed_origins."
                ),
            )),
        }
    }
}

impl App {
    /// A workspace's settings as stored (the defaults if it is gone): an
    /// admin reading settings expects what is stored, not what is cached.
    pub async fn settings(&self, ws: WorkspaceId) -> Result<Settings, Error> {
        Ok(self.admin().get_settings(ws).await?.unwrap_or_default())
    }

    /// Copies `fields` of `given` into the stored settings and returns them
    /// as stored; this replica uses them at once, others within the TTL.
    pub async fn update_settings(
        &self,
        ws: WorkspaceId,
        given: Settings,
        fields: &[SettingsField],
    ) -> Result<Settings, Error> {
        let mut settings = self.settings(ws).await?;
        for field in fields {
            match field {
                SettingsField::ClientAttributeWrites => {
                    settings.client_attribute_writes = given.client_attribute_writes;
                }
                SettingsField::IdentityVerification => {
                    settings.identity_verification = given.identity_verification;
                }
                SettingsField::AllowedOrigins => {
                    settings.allowed_origins = given
                        .allowed_origins
                        .iter()
                        .enumerate()
                        .map(|(i, p)| parse_origin_pattern(i, p))
                        .collect::<Result<_, _>>()?;
                }
            }
        }
        let stored = match self.admin().update_settings(ws, settings.clone()).await? {
            Some(stored) => stored,
            None => settings,
        };
        self.catalog().settings_changed(ws, stored.clone());
        if fields.contains(&SettingsField::AllowedOrigins) {
            // The change is stored: if reading the origins back fails, the
            // periodic refresh catches up, within the TTL as elsewhere.
            if let Err(e) = self.refresh_preflight_origins().await {
                tracing::warn!(error = %e, "reloading the origins of preflights failed");
            }
        }
        Ok(stored)
    }

    /// The origins CORS preflights are answered for, as this replica last
    /// read them: the CORS layer reads them, [`Self::refresh_preflight_origins`]
    /// keeps them current.
    pub fn preflight_origins(&self) -> SharedPreflightOrigins {
        self.inner.preflight_origins.clone()
    }

    /// Reads every workspace's `allowed_origins` into
    /// [`Self::preflight_origins`]. The server calls it every `--cache-ttl`,
    /// and this replica's own settings changes at once, so a change on any
    /// replica reaches every replica's preflights within the TTL.
    pub async fn refresh_preflight_origins(&self) -> Result<(), Error> {
        let lists = self.admin().list_allowed_origins().await?;
        self.inner
            .preflight_origins
            .set(PreflightOrigins::of_workspaces(lists));
        Ok(())
    }
}
