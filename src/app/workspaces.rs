//! Workspaces and their API keys.

use super::{App, Error, api_key::ApiKey};
use crate::{
    domain::{ApiKeyId, KeyKind, Mode, WorkspaceId},
    storage::{self, AdminStore, ApiKeyRecord, NewApiKey, Workspace},
};

/// A key just created: the plaintext (shown once, never stored) and its record.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The key itself; only its hash is stored.
    pub key: ApiKey,
    /// What was stored of it.
    pub record: ApiKeyRecord,
}

/// Creates a key of `kind` and `mode` for `workspace`.
async fn issue_key(
    store: &dyn AdminStore,
    workspace: WorkspaceId,
    kind: KeyKind,
    mode: Mode,
) -> Result<IssuedKey, Error> {
    let key = ApiKey::generate(kind, mode)
        .map_err(|e| Error::Internal(format!("no randomness: {e}").into()))?;
    let record = store
        .insert_api_key(NewApiKey {
            workspace,
            kind,
            mode,
            hash: key.hash(),
            display_prefix: key.display_prefix(),
        })
        .await?;
    Ok(IssuedKey { key, record })
}

/// Creates a workspace with one key of each kind and mode: `sk_live_`,
/// `pk_live_`, `sk_test_`, `pk_test_`. A free function over the store, so that
/// tests and tools can set up a database without building an [`App`].
pub async fn create_workspace(
    store: &dyn AdminStore,
    name: &str,
) -> Result<(Workspace, Vec<IssuedKey>), Error> {
    let workspace = store.create_workspace(name).await?;
    let mut keys = Vec::with_capacity(4);
    for mode in [Mode::Live, Mode::Test] {
        for kind in [KeyKind::Secret, KeyKind::Public] {
            keys.push(issue_key(store, workspace.id, kind, mode).await?);
        }
    }
    Ok((workspace, keys))
}

impl App {
    /// Creates a workspace with its four keys.
    pub async fn create_workspace(&self, name: &str) -> Result<(Workspace, Vec<IssuedKey>), Error> {
        create_workspace(self.admin(), name).await
    }

    /// On a database with no workspace, creates one named `default` and
    /// returns it with its keys, so that a first start gives a working
    /// service; `None` when a workspace exists.
    pub async fn bootstrap(&self) -> Result<Option<(Workspace, Vec<IssuedKey>)>, Error> {
        if !self.admin().list_workspaces().await?.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.create_workspace("default").await?))
    }

    /// Writes a consistent copy of the live database to the new file
    /// `path` (SQLite only; see [`AdminStore::backup`]).
    pub async fn backup(&self, path: &std::path::Path) -> Result<(), storage::Error> {
        self.admin().backup(path).await
    }

    /// All workspaces, oldest first.
    pub async fn workspaces(&self) -> Result<Vec<Workspace>, Error> {
        Ok(self.admin().list_workspaces().await?)
    }

    /// Creates one more key for `workspace`.
    pub async fn issue_key(
        &self,
        workspace: WorkspaceId,
        kind: KeyKind,
        mode: Mode,
    ) -> Result<IssuedKey, Error> {
        issue_key(self.admin(), workspace, kind, mode).await
    }

    /// A workspace's keys, oldest first.
    pub async fn keys(&self, workspace: WorkspaceId) -> Result<Vec<ApiKeyRecord>, Error> {
        Ok(self.admin().list_api_keys(workspace).await?)
    }

    /// The record of `key` if it is a key of `workspace`, revoked or not.
    pub async fn find_key(
        &self,
        workspace: WorkspaceId,
        key: &ApiKey,
    ) -> Result<Option<ApiKeyRecord>, Error> {
        Ok(self
            .admin()
            .find_api_key(&key.hash())
            .await?
            .filter(|k| k.workspace == workspace))
    }

    /// Revokes a key of `workspace`; `false` if it has no such key. Other
    /// replicas stop accepting it within the cache TTL.
    pub async fn revoke_key(&self, workspace: WorkspaceId, id: ApiKeyId) -> Result<bool, Error> {
        Ok(self.admin().revoke_api_key(workspace, id).await?)
    }
}
