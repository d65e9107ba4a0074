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

/// Opens the database, retrying an unreachable one for `--db-connect-retry`
/// (a database starting beside the service is normal in a deployment), and
/// brings its schema up to date.
pub async fn open_store(args: &DatabaseArgs) -> Result<Arc<dyn Store>, OpenError> {
    let options = StoreOptions {
        max_connections: args.db_max_connections,
        acquire_timeout: args.db_acquire_timeout,
        sqlite_synchronous: args.sqlite_synchronous.into(),
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
            Err(e) => return Err(OpenError::new(args, e)),
        }
    };
    store
        .migrate()
        .await
        .map_err(|e| OpenError::new(args, format_args!("migration failed: {e}")))?;
    Ok(store)
}
