//! `migrate`, `workspace create|list` and `keys create|list|revoke`.

use std::path::Path;

use serde_json::{Value as Json, json};
use uuid::Uuid;

use super::{
    Common, Error, KindArg, ModeArg, Schema, Scoped, Session,
    output::{human_time, key_json, new_key_json, table, workspace_json},
    scoped_session,
};
use crate::{
    app::ApiKey,
    config::redact_url,
    domain::{ApiKeyId, KeyKind, Mode},
    storage,
};

pub(super) async fn migrate(common: Common) -> Result<(), Error> {
    let session = Session::open(&common, Schema::Migrate).await?;
    let url = redact_url(&common.database.database_url);
    session.print(&json!({"migrated": true, "database_url": url}), || {
        format!("The database schema is up to date ({url}).\n")
    });
    Ok(())
}

pub(super) async fn backup(path: &Path, common: Common) -> Result<(), Error> {
    // SQLite would refuse too, with "output file already exists".
    if path.exists() {
        return Err(Error::Invalid(format!(
            "{}: the file exists; backup writes a new file and never overwrites one.",
            path.display()
        )));
    }
    let session = Session::open(&common, Schema::Current).await?;
    session.app.backup(path).await.map_err(|e| match e {
        storage::Error::Config(message) => Error::Invalid(message),
        other => Error::Internal(other.to_string()),
    })?;
    let shown = path.display().to_string();
    session.print(&json!({"backup": shown}), || {
        format!("Wrote a consistent copy of the database to {shown}.\n")
    });
    Ok(())
}

pub(super) async fn create_workspace(name: &str, common: Common) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(Error::Invalid(
            "NAME: give the workspace a name people will recognise.".to_owned(),
        ));
    }
    let session = Session::open(&common, Schema::Current).await?;
    let (workspace, keys) = session.app.create_workspace(name).await?;
    let value = json!({
        "workspace": workspace_json(&workspace),
        "keys": keys.iter().map(new_key_json).collect::<Vec<_>>(),
    });
    session.print(&value, || {
        let mut text = format!(
            "Created workspace \"{}\" ({}).\nIts API keys, shown only this once; store them \
             now:\n",
            workspace.name, workspace.id
        );
        for issued in &keys {
            text.push_str(&format!(
                "  {:<6}  {}  {}\n",
                issued.record.kind.as_str(),
                issued.record.mode.as_str(),
                issued.key.expose()
            ));
        }
        text
    });
    Ok(())
}

pub(super) async fn list_workspaces(common: Common) -> Result<(), Error> {
    let session = Session::open(&common, Schema::Current).await?;
    let workspaces = session.app.workspaces().await?;
    let value = Json::Array(workspaces.iter().map(workspace_json).collect());
    session.print(&value, || {
        table(
            &["ID", "NAME", "CREATED"],
            workspaces
                .iter()
                .map(|w| vec![w.id.to_string(), w.name.clone(), human_time(w.created_at)])
                .collect(),
        )
    });
    Ok(())
}

pub(super) async fn create_key(kind: KindArg, mode: ModeArg, scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let (kind, mode) = (KeyKind::from(kind), Mode::from(mode));
    let issued = session.app.issue_key(workspace.id, kind, mode).await?;
    let (key, record) = (&issued.key, &issued.record);
    session.print(&new_key_json(&issued), || {
        format!(
            "Created a {} {} key (id {}) in workspace {}. It is shown only this once; store it \
             now:\n  {}\n",
            kind.as_str(),
            mode.as_str(),
            record.id,
            workspace.id,
            key.expose()
        )
    });
    Ok(())
}

pub(super) async fn list_keys(scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let keys = session.app.keys(workspace.id).await?;
    let value = Json::Array(keys.iter().map(key_json).collect());
    session.print(&value, || {
        table(
            &["ID", "PREFIX", "KIND", "MODE", "CREATED", "REVOKED"],
            keys.iter()
                .map(|k| {
                    vec![
                        k.id.to_string(),
                        format!("{}…", k.display_prefix),
                        k.kind.as_str().to_owned(),
                        k.mode.as_str().to_owned(),
                        human_time(k.created_at),
                        k.revoked_at.map_or_else(|| "-".to_owned(), human_time),
                    ]
                })
                .collect(),
        )
    });
    Ok(())
}

pub(super) async fn revoke_key(given: &str, scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let app = &session.app;
    let given = given.trim();
    // An operator holding a leaked key can revoke it without looking up its id.
    let id = match ApiKey::parse(given) {
        Some(key) => app
            .find_key(workspace.id, &key)
            .await?
            .map(|k| k.id)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "that key is not a key of workspace {}.",
                    workspace.id
                ))
            })?,
        None => ApiKeyId(Uuid::parse_str(given).map_err(|_| {
            Error::Invalid(format!(
                "KEY_ID {given:?} is neither a key id (`keys list` shows them) nor a key."
            ))
        })?),
    };
    let before = app
        .keys(workspace.id)
        .await?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "workspace {} has no key {id}; `keys list` shows its keys.",
                workspace.id
            ))
        })?;
    if before.revoked_at.is_none() && !app.revoke_key(workspace.id, id).await? {
        return Err(Error::Invalid(format!(
            "workspace {} has no key {id}.",
            workspace.id
        )));
    }
    let after = app
        .keys(workspace.id)
        .await?
        .into_iter()
        .find(|k| k.id == id)
        .unwrap_or_else(|| before.clone());
    session.print(&key_json(&after), || match before.revoked_at {
        Some(at) => format!(
            "Key {id} ({}…) was already revoked on {}.\n",
            after.display_prefix,
            human_time(at)
        ),
        None => format!(
            "Revoked key {id} ({}…). Servers refuse it within their --cache-ttl.\n",
            after.display_prefix
        ),
    });
    Ok(())
}
