//! The application layer: the use cases every front door calls (the gRPC
//! handlers, the CLI, start-up), and the catalog of cached keys, settings
//! and definitions they share. Front doors convert their requests into the
//! arguments here and [`Error`] into their own answers; nothing here knows
//! of gRPC, HTTP or the terminal.
//!
//! - `access`: [`App::authorize`], [`Principal`] and [`Scope`].
//! - `api_key`: the key format ([`ApiKey`]).
//! - `workspaces`: workspaces and their keys, the first-start bootstrap.
//! - `definitions`: declaring, changing, archiving and listing attributes.
//! - `values`: setting, reading and clearing a person's values.
//! - `persons`: erasing a person, listing persons for exports.
//! - `settings`: workspace settings with update masks.
//! - `identity`: identity secrets and the check of identity signatures.
//! - `operations`: purging attributes as long-running operations, and the
//!   worker that runs them.
//! - `catalog`: the caches, with their staleness bound.
//! - `rate_limit`: token buckets of public keys ([`Rate`], [`Clock`]).
//! - `error`: [`Error`], the one error type of the layer.

mod access;
mod api_key;
mod catalog;
mod definitions;
mod error;
mod identity;
mod operations;
mod persons;
mod rate_limit;
mod settings;
mod values;
mod workspaces;

use std::{sync::Arc, time::Duration};

pub use access::{Credentials, Denied, Principal, Scope};
pub use api_key::ApiKey;
pub use definitions::{
    DEFAULT_PAGE_SIZE, DefinitionPage, MAX_PAGE_SIZE, NewConfig, StoredDefinition,
};
pub use error::Error;
pub use identity::{IssuedSecret, MAX_ACTIVE_IDENTITY_SECRETS};
pub use operations::{
    DEFAULT_OPERATIONS_PAGE_SIZE, MAX_OPERATION_ATTEMPTS, OperationPage, PurgeSettings,
    operation_name,
};
pub use persons::{DEFAULT_PERSONS_PAGE_SIZE, ListedPerson, MAX_PERSONS_PAGE_SIZE, PersonPage};
pub use rate_limit::{Clock, Rate, SystemClock};
pub use settings::SettingsField;
pub use values::{
    AttributeUpdate, Cleared, MAX_VALUES_PER_BATCH, PersonAttributes, StoredAttribute,
    UpdateResult, UpdatedAttributes, WriteOptions, Written, WrittenValue,
};
pub use workspaces::{IssuedKey, create_workspace};

use self::{catalog::Catalog, rate_limit::Limiter};
use crate::{
    domain::SharedPreflightOrigins,
    metrics::Metrics,
    storage::{AdminStore, ValueStore},
};

/// The use cases over one database, cheap to clone (one reference count):
/// every request clones it.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    /// Workspaces, keys, settings and definitions.
    admin: Arc<dyn AdminStore>,
    /// Persons and values; in a server, the group-committing wrapper.
    values: Arc<dyn ValueStore>,
    /// What every request needs, cached for at most the TTL.
    catalog: Catalog,
    /// Buckets per public key; `None`: not limited.
    per_key: Option<Limiter>,
    /// Buckets per person written by public keys; `None`: not limited.
    per_person: Option<Limiter>,
    /// What CORS preflights are answered for (`settings`).
    preflight_origins: SharedPreflightOrigins,
    /// Wakes this replica's operation worker when a purge starts here.
    operations_wake: tokio::sync::Notify,
}

/// Most buckets each limiter keeps: one per person recently written by a
/// public key is a few dozen bytes, so this bounds a replica's limiter at a
/// few megabytes whatever number of distinct_ids it sees.
const MAX_BUCKETS: usize = 100_000;

/// The rate limits of public keys (CONTRACT.md section 11), per replica.
#[derive(Clone)]
pub struct PublicKeyLimits {
    /// Requests of one public key; `None`: not limited.
    pub per_key: Option<Rate>,
    /// Writes of one person (workspace, mode and distinct_id) with public
    /// keys; `None`: not limited.
    pub per_person: Option<Rate>,
    /// The time the buckets fill with.
    pub clock: Arc<dyn Clock>,
}

impl PublicKeyLimits {
    /// No limits (the operator commands, which serve no public key).
    pub fn off() -> Self {
        Self {
            per_key: None,
            per_person: None,
            clock: Arc::new(SystemClock::new()),
        }
    }
}

impl App {
    /// The use cases over `admin` and `values` (usually one backend, the
    /// values half wrapped for group commit), caching keys, settings and
    /// definitions for at most `cache_ttl`, limiting public keys by `limits`,
    /// counting cache hits and refusals in `metrics`.
    pub fn new(
        admin: Arc<dyn AdminStore>,
        values: Arc<dyn ValueStore>,
        cache_ttl: Duration,
        limits: PublicKeyLimits,
        metrics: &Metrics,
    ) -> Self {
        let catalog = Catalog::new(admin.clone(), cache_ttl, metrics);
        let limiter = |rate: Option<Rate>, name| {
            rate.map(|rate| {
                Limiter::new(
                    rate,
                    MAX_BUCKETS,
                    limits.clock.clone(),
                    metrics.rate_limit(name),
                )
            })
        };
        Self {
            inner: Arc::new(Inner {
                admin,
                values,
                catalog,
                per_key: limiter(limits.per_key, "per_key"),
                per_person: limiter(limits.per_person, "per_person"),
                preflight_origins: SharedPreflightOrigins::default(),
                operations_wake: tokio::sync::Notify::new(),
            }),
        }
    }

    fn admin(&self) -> &dyn AdminStore {
        self.inner.admin.as_ref()
    }

    fn values(&self) -> &dyn ValueStore {
        self.inner.values.as_ref()
    }

    fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }
}
