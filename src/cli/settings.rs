//! `settings get|set`: the same use cases as WorkspaceSettingsService.

use serde_json::{Value as Json, json};

use super::{Error, Scoped, SettingArg, output::on_off, scoped_session};
use crate::{app::SettingsField, domain::IdentityVerification, storage::Settings};

/// The settings for scripts.
fn settings_json(s: &Settings) -> Json {
    json!({
        "client_attribute_writes": s.client_attribute_writes,
        "identity_verification": s.identity_verification.as_str(),
        "allowed_origins": s.allowed_origins,
    })
}

/// One setting's value for people.
fn shown(setting: SettingArg, s: &Settings) -> String {
    match setting {
        SettingArg::ClientAttributeWrites => on_off(s.client_attribute_writes).to_owned(),
        SettingArg::IdentityVerification => s.identity_verification.as_str().to_owned(),
        SettingArg::AllowedOrigins if s.allowed_origins.is_empty() => "(any)".to_owned(),
        SettingArg::AllowedOrigins => s.allowed_origins.join(","),
    }
}

pub(super) async fn get_settings(scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let settings = session.app.settings(workspace.id).await?;
    session.print(&settings_json(&settings), || {
        format!(
            "client-attribute-writes: {}\nidentity-verification: {}\nallowed-origins: {}\n",
            shown(SettingArg::ClientAttributeWrites, &settings),
            shown(SettingArg::IdentityVerification, &settings),
            shown(SettingArg::AllowedOrigins, &settings),
        )
    });
    Ok(())
}

/// `settings set SETTING VALUE`: the value parsed as that setting's, checked
/// by the same use case as UpdateWorkspaceSettings.
pub(super) async fn set_setting(
    setting: SettingArg,
    value: &str,
    scoped: Scoped,
) -> Result<(), Error> {
    let mut given = Settings::default();
    let field = match setting {
        SettingArg::ClientAttributeWrites => {
            given.client_attribute_writes = match value {
                "on" => true,
                "off" => false,
                other => {
                    return Err(Error::Invalid(format!(
                        "client-attribute-writes is `on` or `off`, not {other:?}"
                    )));
                }
            };
            SettingsField::ClientAttributeWrites
        }
        SettingArg::IdentityVerification => {
            given.identity_verification = IdentityVerification::parse(value).ok_or_else(|| {
                Error::Invalid(format!(
                    "identity-verification is `off` or `required`, not {value:?}"
                ))
            })?;
            SettingsField::IdentityVerification
        }
        SettingArg::AllowedOrigins => {
            given.allowed_origins = value
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect();
            SettingsField::AllowedOrigins
        }
    };
    let (session, workspace) = scoped_session(&scoped).await?;
    let before = session.app.settings(workspace.id).await?;
    let stored = session
        .app
        .update_settings(workspace.id, given, &[field])
        .await?;
    let name = match setting {
        SettingArg::ClientAttributeWrites => "client-attribute-writes",
        SettingArg::IdentityVerification => "identity-verification",
        SettingArg::AllowedOrigins => "allowed-origins",
    };
    session.print(&settings_json(&stored), || {
        format!(
            "{name}: {} (was {}); servers apply it within their --cache-ttl.\n",
            shown(setting, &stored),
            shown(setting, &before)
        )
    });
    Ok(())
}
