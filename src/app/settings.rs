//! Workspace settings: read through to the database, changed field by field
//! (AIP-134 update masks), and made this replica's cached settings at once.

use super::{App, Error};
use crate::{
    domain::{Reason, WorkspaceId},
    storage::Settings,
};

/// A setting an update may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsField {
    /// `client_attribute_writes`: whether public keys may write values.
    ClientAttributeWrites,
}

impl SettingsField {
    /// Every setting: what an empty update mask means.
    pub const ALL: [SettingsField; 1] = [SettingsField::ClientAttributeWrites];

    /// The field an update-mask path names (its proto or JSON name).
    pub fn parse(path: &str) -> Result<Self, Error> {
        match path {
            "client_attribute_writes" | "clientAttributeWrites" => {
                Ok(SettingsField::ClientAttributeWrites)
            }
            other => Err(Error::refused(
                Reason::InvalidArgument,
                format!(
                    "update_mask: {other:?} is not a workspace setting; the settings are: \
                     client_attribute_writes."
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
            }
        }
        let stored = self
            .admin()
            .update_settings(ws, settings)
            .await?
            .unwrap_or(settings);
        self.catalog().settings_changed(ws, stored);
        Ok(stored)
    }
}
