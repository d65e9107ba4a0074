//! Opening the database named by the flags, for `serve` and the operator
//! commands alike: retried while unreachable, then migrated.

use std::{sync::Arc, time::Duration};

use crate::{
    config::{DatabaseArgs, redact_url},
    storage::{self, Store, StoreOptions},
};

/// The database could not be opened, reached or migrated; the message names
/// the flag to fix, since it is printed as the process's last line.
#[derive(Debug, thiserror::Error)]
#[error("--database-url {url}: {message}")]
pub struct OpenError {
    /// The URL, password redacted.
    url: String,
    /// What went wrong.
    message: String,
}

impl OpenError {
    /// The failure of the database `args` name.
    pub fn new(args: &DatabaseArgs, message: impl std::fmt::Display) -> Self {
        OpenError {
            url: redact_url(&args.database_url),
            message: message.to_string(),
        }
    }
}

/// What opening the database may do to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Create a missing SQLite file and apply the migrations this binary
    /// carries: `serve` and `migrate`.
    Migrate,
    /// Change nothing; the schema must have every migration of this binary,
    /// and may be newer (the previous release on the next release's
    /// schema, which expand-then-contract keeps working): `serve --no-migrate`.
    AtLeastCurrent,
    /// Change nothing; the schema must be exactly this binary's: the
    /// operator commands other than `migrate`.
    Current,
}

/// Opens the database, retrying an unreachable one for `--db-connect-retry`
/// (a database starting beside the service is normal in a deployment), and
/// checks or migrates its schema as `schema` says. Permanent failures (a
/// missing directory, database or role, a wrong password) are not retried.
pub async fn open_store(args: &DatabaseArgs, schema: Schema) -> Result<Arc<dyn Store>, OpenError> {
    let options = StoreOptions {
        max_connections: args.db_max_connections,
        acquire_timeout: args.db_acquire_timeout,
        sqlite_synchronous: args.sqlite_synchronous.into(),
        create_if_missing: schema == Schema::Migrate,
        ..StoreOptions::default()
    };
    let deadline = tokio::time::Instant::now() + args.db_connect_retry;
    let mut pause = Duration::from_millis(100);
    let store = loop {
        match storage::connect(&args.database_url, &options).await {
            Ok(store) => break store,
            Err(storage::Error::Unavailable(e)) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "database unreachable; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(storage::Error::Unavailable(e)) => {
                return Err(OpenError::new(
                    args,
                    format_args!(
                        "cannot reach the database after {:?} (--db-connect-retry): {e}",
                        args.db_connect_retry
                    ),
                ));
            }
            Err(storage::Error::Missing(e)) => {
                return Err(OpenError::new(
                    args,
                    format_args!(
                        "{e}; nothing was created (`vevee-attributes migrate` creates and \
                         migrates a new database)"
                    ),
                ));
            }
            Err(e) => return Err(OpenError::new(args, e)),
        }
    };
    if schema == Schema::Migrate {
        store
            .migrate()
            .await
            .map_err(|e| OpenError::new(args, format_args!("migration failed: {e}")))?;
        return Ok(store);
    }
    let found = store
        .schema()
        .await
        .map_err(|e| OpenError::new(args, format_args!("cannot read the schema version: {e}")))?;
    match found {
        storage::Schema::Current => {}
        storage::Schema::Behind { database, binary } => {
            let database = database.map_or_else(|| "none".to_owned(), |v| v.to_string());
            return Err(OpenError::new(
                args,
                format_args!(
                    "the database schema is at version {database}, this binary needs version \
                     {binary}: run `vevee-attributes migrate` first (or start `serve` without \
                     --no-migrate)"
                ),
            ));
        }
        storage::Schema::Newer { database, binary } if schema == Schema::AtLeastCurrent => {
            tracing::warn!(
                database_version = database,
                binary_version = binary,
                "the database schema is newer than this binary's; running on it without \
                 migrating (--no-migrate)"
            );
        }
        storage::Schema::Newer { database, binary } => {
            return Err(OpenError::new(
                args,
                storage::Schema::newer_message(database, binary),
            ));
        }
    }
    Ok(store)
}
