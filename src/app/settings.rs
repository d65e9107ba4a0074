//! Workspace settings: read through to the database, changed field by field
//! (AIP-134 update masks), and made this replica's cached settings at once.

use super::{App, Error};
use crate::{
    domain::{Reason, WorkspaceId, parse_origin_pattern},
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
        Ok(stored)
    }
}
