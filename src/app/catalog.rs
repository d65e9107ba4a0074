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

use std::{
    hash::Hash,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{Error, Principal, definitions::from_record};
use crate::{
    domain::{AttributeDefinition, AttributeKey, KeyKind, WorkspaceId},
    metrics::{CacheCounters, Metrics},
    storage::{AdminStore, Settings},
};

/// Most entries per cache: bounds memory however many keys or definitions
/// a fleet holds (unknown keys from a scan must not grow it without end).
const MAX_ENTRIES: usize = 100_000;

/// A bounded cache whose entries live at most `ttl`; concurrent misses of
/// one key share one load.
///
/// quick_cache rather than moka: moka's bookkeeping (access-order queues,
/// housekeeping on reads) was 14% of the server's CPU on the write path
/// (BENCHMARKS.md), and these caches need neither its eviction policy nor
/// per-entry expiry timers: an entry's age is checked when it is read.
struct TtlCache<K, V> {
    entries: quick_cache::sync::Cache<K, (V, Instant)>,
    ttl: Duration,
    counted: CacheCounters,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    fn new(ttl: Duration, counted: CacheCounters) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(MAX_ENTRIES),
            ttl,
            counted,
        }
    }

    /// The fresh value of `key`, or the one `load` gives (then kept). A
    /// failed load keeps nothing; a caller waiting on it loads in turn.
    async fn get_or_load<E, F>(&self, key: &K, load: impl FnOnce() -> F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        if let Some((value, at)) = self.entries.get(key) {
            if at.elapsed() < self.ttl {
                self.counted.hit();
                return Ok(value);
            }
            self.entries.remove(key);
        }
        match self.entries.get_value_or_guard_async(key).await {
            // Another caller's load, shared: no database call of its own.
            Ok((value, _)) => {
                self.counted.hit();
                Ok(value)
            }
            Err(guard) => {
                self.counted.miss();
                let value = load().await?;
                let _ = guard.insert((value.clone(), Instant::now()));
                Ok(value)
            }
        }
    }

    /// Forgets `key` (a change this replica just made, reloaded on next use).
    fn remove(&self, key: &K) {
        self.entries.remove(key);
    }

    /// Replaces the value of `key` (a change this replica just made).
    fn insert(&self, key: K, value: V) {
        self.entries.insert(key, (value, Instant::now()));
    }
}

/// The caches, cheap to clone and share (one reference count: every request
/// clones it).
#[derive(Clone)]
pub(crate) struct Catalog {
    inner: Arc<Caches>,
}

struct Caches {
    store: Arc<dyn AdminStore>,
    keys: TtlCache<[u8; 32], Option<Principal>>,
    settings: TtlCache<WorkspaceId, Arc<Settings>>,
    /// The active identity secrets of workspaces that require verification.
    identity_secrets: TtlCache<WorkspaceId, Arc<[String]>>,
    definitions: TtlCache<(WorkspaceId, AttributeKey), Option<Arc<AttributeDefinition>>>,
}

impl Catalog {
    /// Empty caches over `store` whose entries live at most `ttl`, counting
    /// hits and misses in `metrics`.
    pub(crate) fn new(store: Arc<dyn AdminStore>, ttl: Duration, metrics: &Metrics) -> Self {
        Self {
            inner: Arc::new(Caches {
                store,
                keys: TtlCache::new(ttl, metrics.cache("keys")),
                settings: TtlCache::new(ttl, metrics.cache("settings")),
                identity_secrets: TtlCache::new(ttl, metrics.cache("identity_secrets")),
                definitions: TtlCache::new(ttl, metrics.cache("definitions")),
            }),
        }
    }

    /// Who holds the key whose SHA-256 is `hash`; `None` for an unknown or
    /// revoked key.
    pub(crate) async fn principal(&self, hash: [u8; 32]) -> Result<Option<Principal>, Error> {
        self.inner
            .keys
            .get_or_load(&hash, || async {
                let record = self.inner.store.find_api_key(&hash).await?;
                Ok(record
                    .filter(|k| k.revoked_at.is_none())
                    .map(|k| Principal {
                        key_id: k.id,
                        workspace: k.workspace,
                        mode: k.mode,
                        secret: k.kind == KeyKind::Secret,
                        identity: None,
                    }))
            })
            .await
    }

    /// A workspace's settings (the defaults if the workspace is gone).
    pub(crate) async fn settings(&self, ws: WorkspaceId) -> Result<Arc<Settings>, Error> {
        self.inner
            .settings
            .get_or_load(&ws, || async {
                Ok(Arc::new(
                    self.inner.store.get_settings(ws).await?.unwrap_or_default(),
                ))
            })
            .await
    }

    /// Records settings this replica just stored.
    pub(crate) fn settings_changed(&self, ws: WorkspaceId, settings: Settings) {
        self.inner.settings.insert(ws, Arc::new(settings));
    }

    /// The unrevoked identity secrets of a workspace.
    pub(crate) async fn identity_secrets(&self, ws: WorkspaceId) -> Result<Arc<[String]>, Error> {
        self.inner
            .identity_secrets
            .get_or_load(&ws, || async {
                let all = self.inner.store.list_identity_secrets(ws).await?;
                Ok(all
                    .into_iter()
                    .filter(|s| s.revoked_at.is_none())
                    .map(|s| s.secret)
                    .collect())
            })
            .await
    }

    /// Forgets a workspace's secrets after this replica changed them, so the
    /// next check loads them.
    pub(crate) fn identity_secrets_changed(&self, ws: WorkspaceId) {
        self.inner.identity_secrets.remove(&ws);
    }

    /// The definition of `key`, archived or not; `None` if not declared.
    pub(crate) async fn definition(
        &self,
        ws: WorkspaceId,
        key: &AttributeKey,
    ) -> Result<Option<Arc<AttributeDefinition>>, Error> {
        self.inner
            .definitions
            .get_or_load(&(ws, key.clone()), || async {
                match self.inner.store.get_definition(ws, key.as_str()).await? {
                    Some(record) => Ok(Some(Arc::new(from_record(&record)?))),
                    None => Ok(None),
                }
            })
            .await
    }

    /// Records a definition this replica just created or changed, so it is
    /// used at once here.
    pub(crate) fn definition_changed(&self, ws: WorkspaceId, definition: AttributeDefinition) {
        self.inner
            .definitions
            .insert((ws, definition.key().clone()), Some(Arc::new(definition)));
    }
}

impl Catalog {
    /// Forgets a definition this replica just deleted (a finished purge),
    /// so that the key reads as undeclared here at once; other replicas
    /// forget it within the TTL.
    pub(crate) fn definition_removed(&self, ws: WorkspaceId, key: &AttributeKey) {
        self.inner.definitions.remove(&(ws, key.clone()));
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    use super::TtlCache;
    use crate::metrics::{CacheCounters, Metrics};

    fn counters() -> CacheCounters {
        Metrics::new().cache("test")
    }

    /// A loader that counts its calls and answers `value` after a short wait.
    async fn load(calls: &AtomicUsize, value: u32) -> Result<u32, String> {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(value)
    }

    #[tokio::test]
    async fn an_entry_is_served_until_its_ttl_then_loaded_again() {
        let cache = TtlCache::new(Duration::from_millis(100), counters());
        let calls = AtomicUsize::new(0);
        assert_eq!(cache.get_or_load(&1, || load(&calls, 10)).await, Ok(10));
        assert_eq!(cache.get_or_load(&1, || load(&calls, 11)).await, Ok(10));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(cache.get_or_load(&1, || load(&calls, 12)).await, Ok(12));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        cache.insert(1, 13);
        assert_eq!(cache.get_or_load(&1, || load(&calls, 14)).await, Ok(13));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_of_one_key_share_one_load() {
        let cache = Arc::new(TtlCache::new(Duration::from_secs(60), counters()));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.spawn(async move { cache.get_or_load(&7, || load(&calls, 70)).await });
        }
        for answer in tasks.join_all().await {
            assert_eq!(answer, Ok(70));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_load_keeps_nothing() {
        let cache: TtlCache<u32, u32> = TtlCache::new(Duration::from_secs(60), counters());
        let failed = cache
            .get_or_load(&1, || async { Err::<u32, _>("down".to_owned()) })
            .await;
        assert_eq!(failed, Err("down".to_owned()));
        let calls = AtomicUsize::new(0);
        assert_eq!(cache.get_or_load(&1, || load(&calls, 5)).await, Ok(5));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
