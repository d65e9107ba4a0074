//! `settings get|set`: the same use cases as WorkspaceSettingsService.

use serde_json::json;

use super::{Error, Scoped, output::on_off, scoped_session};
use crate::{app::SettingsField, storage::Settings};

pub(super) async fn get_settings(scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let settings = session.app.settings(workspace.id).await?;
    session.print(
        &json!({"client_attribute_writes": settings.client_attribute_writes}),
        || {
            format!(
                "client-attribute-writes: {}\n",
                on_off(settings.client_attribute_writes)
            )
        },
    );
    Ok(())
}

pub(super) async fn set_client_attribute_writes(on: bool, scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let before = session.app.settings(workspace.id).await?;
    let given = Settings {
        client_attribute_writes: on,
        ..Settings::default()
    };
    let stored = session
        .app
        .update_settings(workspace.id, given, &[SettingsField::ClientAttributeWrites])
        .await?;
    let before = before.client_attribute_writes;
    session.print(
        &json!({"client_attribute_writes": stored.client_attribute_writes}),
        || {
            format!(
                "client-attribute-writes: {} (was {}); servers apply it within their \
                 --cache-ttl.\n",
                on_off(stored.client_attribute_writes),
                on_off(before)
            )
        },
    );
    Ok(())
}
