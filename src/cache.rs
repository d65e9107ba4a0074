//! In-memory caches of what every request needs: API keys, workspace
//! settings and attribute definitions, so the steady state authorizes and
//! validates a request without a database round trip.
//!
//! # Staleness
//! Every entry lives at most `ttl` (`--cache-ttl`, default 2 s), negative
//! entries ("no such key", "not declared") included. So a key revoked, a
//! setting flipped or an attribute archived on any replica takes effect on
//! every replica sharing the database within `ttl`; on the replica that made
//! the change it takes effect at once, because that replica updates its
//! own entries. Concurrent misses of one entry share one load.

use std::{sync::Arc, time::Duration};

use moka::future::Cache;

use crate::{
    api::ApiError,
    auth::Principal,
    domain::{self, AttributeConfig, AttributeDefinition, AttributeKey, AttributeType},
    storage::{DefinitionRecord, KeyKind, Settings, Store, WorkspaceId},
};

/// Most entries per cache: bounds memory however many keys or definitions
/// a fleet holds (unknown keys from a scan must not grow it without end).
const MAX_ENTRIES: u64 = 100_000;

/// The caches, cheap to clone and share.
#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn Store>,
    keys: Cache<[u8; 32], Option<Principal>>,
    settings: Cache<WorkspaceId, Settings>,
    definitions: Cache<(WorkspaceId, AttributeKey), Option<Arc<AttributeDefinition>>>,
}

impl Catalog {
    /// Empty caches over `store` whose entries live at most `ttl`.
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        fn cache<K, V>(ttl: Duration) -> Cache<K, V>
        where
            K: std::hash::Hash + Eq + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
        {
            Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(ttl)
                .build()
        }
        Self {
            store,
            keys: cache(ttl),
            settings: cache(ttl),
            definitions: cache(ttl),
        }
    }

    /// The store behind the caches.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Who holds the key whose SHA-256 is `hash`; `None` for an unknown or
    /// revoked key.
    pub async fn principal(&self, hash: [u8; 32]) -> Result<Option<Principal>, ApiError> {
        // A plain lookup first: on a hit (nearly every request) it skips
        // building the loader and its clones.
        if let Some(hit) = self.keys.get(&hash).await {
            return Ok(hit);
        }
        let store = self.store.clone();
        self.keys
            .try_get_with(hash, async move {
                let record = store.find_api_key(&hash).await?;
                Ok::<_, ApiError>(
                    record
                        .filter(|k| k.revoked_at.is_none())
                        .map(|k| Principal {
                            workspace: k.workspace,
                            mode: k.mode,
                            secret: k.kind == KeyKind::Secret,
                        }),
                )
            })
            .await
            .map_err(unshare)
    }

    /// A workspace's settings (the defaults if the workspace is gone).
    pub async fn settings(&self, ws: WorkspaceId) -> Result<Settings, ApiError> {
        let store = self.store.clone();
        self.settings
            .try_get_with(ws, async move {
                Ok::<_, ApiError>(store.get_settings(ws).await?.unwrap_or_default())
            })
            .await
            .map_err(unshare)
    }

    /// Records settings this replica just stored.
    pub async fn settings_changed(&self, ws: WorkspaceId, settings: Settings) {
        self.settings.insert(ws, settings).await;
    }

    /// The definition of `key`, archived or not; `None` if not declared.
    pub async fn definition(
        &self,
        ws: WorkspaceId,
        key: &AttributeKey,
    ) -> Result<Option<Arc<AttributeDefinition>>, ApiError> {
        let entry = (ws, key.clone());
        if let Some(hit) = self.definitions.get(&entry).await {
            return Ok(hit);
        }
        let store = self.store.clone();
        let name = key.clone();
        self.definitions
            .try_get_with(entry, async move {
                match store.get_definition(ws, name.as_str()).await? {
                    Some(record) => Ok(Some(Arc::new(definition_from_record(&record)?))),
                    None => Ok::<_, ApiError>(None),
                }
            })
            .await
            .map_err(unshare)
    }

    /// Records a definition this replica just created or changed, so it is
    /// used at once here.
    pub async fn definition_changed(&self, ws: WorkspaceId, definition: AttributeDefinition) {
        self.definitions
            .insert((ws, definition.key().clone()), Some(Arc::new(definition)))
            .await;
    }
}

/// moka shares one load's error among its waiters; each gets its own copy.
fn unshare(err: Arc<ApiError>) -> ApiError {
    match Arc::try_unwrap(err) {
        Ok(err) => err,
        Err(shared) => match shared.as_ref() {
            ApiError::Refused(e) => ApiError::Refused(e.clone()),
            other => ApiError::Internal(other.to_string().into()),
        },
    }
}

/// Rebuilds the domain definition of a stored record. A record that no
/// longer parses (written by a newer version, or by hand) is a defect.
pub fn definition_from_record(record: &DefinitionRecord) -> Result<AttributeDefinition, ApiError> {
    let corrupt = |e: domain::Error| {
        ApiError::Internal(format!("stored definition {:?} is invalid: {e}", record.key).into())
    };
    let key = AttributeKey::parse(&record.key).map_err(corrupt)?;
    let attr_type = AttributeType::parse(&record.attr_type).map_err(corrupt)?;
    let config = AttributeConfig::from_json(attr_type, &record.config).map_err(corrupt)?;
    let mut definition = AttributeDefinition::new(
        key,
        config,
        record.display_name.clone(),
        record.description.clone(),
    )
    .map_err(corrupt)?;
    definition.set_archived(record.archived);
    Ok(definition)
}
