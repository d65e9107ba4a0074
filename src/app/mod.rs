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
//! - `settings`: workspace settings with update masks.
//! - `catalog`: the caches, with their staleness bound.
//! - `error`: [`Error`], the one error type of the layer.

mod access;
mod api_key;
mod catalog;
mod definitions;
mod error;
mod settings;
mod values;
mod workspaces;

use std::{sync::Arc, time::Duration};

pub use access::{Principal, Scope};
pub use api_key::ApiKey;
pub use definitions::{
    DEFAULT_PAGE_SIZE, DefinitionPage, MAX_PAGE_SIZE, NewConfig, StoredDefinition,
};
pub use error::Error;
pub use settings::SettingsField;
pub use values::{
    AttributeUpdate, Cleared, MAX_VALUES_PER_BATCH, PersonAttributes, StoredAttribute,
    UpdateResult, UpdatedAttributes, WriteOptions, Written, WrittenValue,
};
pub use workspaces::{IssuedKey, create_workspace};

use self::catalog::Catalog;
use crate::storage::{AdminStore, ValueStore};

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
}

impl App {
    /// The use cases over `admin` and `values` (usually one backend, the
    /// values half wrapped for group commit), caching keys, settings and
    /// definitions for at most `cache_ttl`.
    pub fn new(
        admin: Arc<dyn AdminStore>,
        values: Arc<dyn ValueStore>,
        cache_ttl: Duration,
    ) -> Self {
        let catalog = Catalog::new(admin.clone(), cache_ttl);
        Self {
            inner: Arc::new(Inner {
                admin,
                values,
                catalog,
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
