//! Persistence of workspaces, API keys, attribute definitions, persons and
//! their attribute values.
//!
//! Two traits: [`AdminStore`] (workspaces, settings, keys, definitions) and
//! [`ValueStore`] (persons and values, the hot half that [`Coalescing`]
//! group-commits); [`Store`] is both. Two implementations: `sqlite` for a
//! single node and `postgres` for a fleet, sharing one [`AdminStore`]
//! implementation (`admin`). [`connect`] picks the backend from the URL's scheme. Storage
//! deals in plain records: attribute keys arrive already validated, and
//! configs and values are JSON that storage never interprets.
//!
//! Updates ([`ValueStore::update_batch`]) carry, per value, a [`Decide`]
//! closure from the caller that storage applies to the value as stored
//! inside the write's transaction (`update` plans a batch for both
//! backends), and optionally an idempotency key, whose outcome is recorded
//! in the same transaction (table `requests`).
//!
//! Every method body runs in a task of its own (see `detached`), so a caller
//! that gives up on a request (a client timeout, a dropped connection) never
//! drops a database future half-way and never leaves a pooled connection in an
//! unknown state.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use tracing::Instrument;

use crate::domain::{ApiKeyId, Etag, IdentityVerification, KeyKind, Mode, PersonId, WorkspaceId};

mod admin;
mod coalesce;
mod operations;
mod postgres;
mod sqlite;
mod update;

pub use coalesce::{Coalescing, Lanes};
pub use operations::{Lease, OperationRecord, OperationStore, PurgeEnd, PurgeStart};
pub use update::{
    ChangeOutcome, Decide, Decision, IfEtag, PersonUpdate, REQUEST_RETENTION, RecordedRequest,
    RequestKey, Updated, ValueChange,
};

/// The result of every storage operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A database column held a spelling this build does not know; only a schema
/// written by another program (or a newer version of this one) can cause it.
#[derive(Debug, thiserror::Error)]
#[error("unknown stored value {0:?}")]
pub struct UnknownStoredValue(String);

impl TryFrom<String> for Mode {
    type Error = UnknownStoredValue;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Mode::parse(&s).ok_or(UnknownStoredValue(s))
    }
}

impl TryFrom<String> for IdentityVerification {
    type Error = UnknownStoredValue;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        IdentityVerification::parse(&s).ok_or(UnknownStoredValue(s))
    }
}

impl TryFrom<String> for KeyKind {
    type Error = UnknownStoredValue;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        KeyKind::parse(&s).ok_or(UnknownStoredValue(s))
    }
}

/// A workspace as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Workspace {
    /// Its id.
    pub id: WorkspaceId,
    /// A name for people; not unique.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// Per-workspace settings, shared by both modes.
#[derive(Debug, Clone, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct Settings {
    /// Whether public keys may write attribute values (default off).
    pub client_attribute_writes: bool,
    /// Whether public-key writes need an identity signature (default off).
    #[sqlx(try_from = "String")]
    pub identity_verification: IdentityVerification,
    /// The origins public keys may be used from (checked patterns); empty
    /// means any.
    #[sqlx(json)]
    pub allowed_origins: Vec<String>,
}

/// An identity secret as stored: the secret itself, since verifying an
/// HMAC needs it.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IdentitySecretRecord {
    /// Its id.
    pub id: ApiKeyId,
    /// The secret, the HMAC key of identity signatures.
    pub secret: String,
    /// The start of the secret as shown to people.
    pub display_prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked secret verifies nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for IdentitySecretRecord {
    /// Without the secret: records reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySecretRecord")
            .field("id", &self.id)
            .field("display_prefix", &self.display_prefix)
            .field("created_at", &self.created_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

/// An API key to store. The plaintext key never reaches storage.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The workspace the key belongs to.
    pub workspace: WorkspaceId,
    /// Secret or public.
    pub kind: KeyKind,
    /// The mode the key works in.
    pub mode: Mode,
    /// SHA-256 of the plaintext key, computed by the caller.
    pub hash: [u8; 32],
    /// The start of the key, so people can tell keys apart in a list.
    pub display_prefix: String,
}

/// An API key as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiKeyRecord {
    /// Its id.
    pub id: ApiKeyId,
    /// The workspace the key belongs to.
    #[sqlx(rename = "workspace_id")]
    pub workspace: WorkspaceId,
    /// Secret or public.
    #[sqlx(try_from = "String")]
    pub kind: KeyKind,
    /// The mode the key works in.
    #[sqlx(try_from = "String")]
    pub mode: Mode,
    /// The start of the key as shown to people.
    pub display_prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An attribute definition to create.
#[derive(Debug, Clone)]
pub struct NewDefinition {
    /// The attribute key, already validated by the caller.
    pub key: String,
    /// The type's name (`text`, `number`, ...); it never changes afterwards.
    pub attr_type: String,
    /// The type's config, stored as given.
    pub config: Value,
    /// A name for people.
    pub display_name: Option<String>,
    /// A description for people.
    pub description: Option<String>,
    /// Whether public keys may write it.
    pub client_writable: bool,
}

/// Changes to an attribute definition: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct DefinitionChanges {
    /// A new config, replacing the whole old one.
    pub config: Option<Value>,
    /// A new display name.
    pub display_name: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// Whether public keys may write it, from now on.
    pub client_writable: Option<bool>,
}

/// An attribute definition as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DefinitionRecord {
    /// The attribute key.
    pub key: String,
    /// The type's name.
    pub attr_type: String,
    /// The type's config.
    pub config: Value,
    /// A name for people.
    pub display_name: Option<String>,
    /// A description for people.
    pub description: Option<String>,
    /// Archived attributes keep their values but take no writes.
    pub archived: bool,
    /// Whether public keys may write it.
    pub client_writable: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed (including archiving).
    pub updated_at: DateTime<Utc>,
}

/// One person's values to write, as one all-or-nothing unit of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonWrite {
    /// The workspace.
    pub workspace: WorkspaceId,
    /// The mode of the key that wrote.
    pub mode: Mode,
    /// The person's distinct_id (validated by the caller).
    pub distinct_id: String,
    /// The values by attribute key (keys must have definitions).
    pub values: Vec<(String, Value)>,
}

/// One person's values to read, as one unit of a batch of reads.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonRead {
    /// The workspace.
    pub workspace: WorkspaceId,
    /// The mode of the key that reads.
    pub mode: Mode,
    /// The person's distinct_id (validated by the caller).
    pub distinct_id: String,
    /// Only these attribute keys, when given.
    pub keys: Option<Vec<String>>,
    /// Whether values of archived definitions are included.
    pub include_archived: bool,
}

impl PersonRead {
    /// The read [`ValueStore::read_values`] describes with these arguments.
    pub fn new(
        workspace: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
        keys: Option<&[String]>,
        include_archived: bool,
    ) -> Self {
        Self {
            workspace,
            mode,
            distinct_id: distinct_id.to_owned(),
            keys: keys.map(<[String]>::to_vec),
            include_archived,
        }
    }
}

/// One stored attribute value of a person.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueRecord {
    /// The attribute key.
    pub key: String,
    /// The value as stored.
    pub value: Value,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
    /// Its version, new on every change.
    pub etag: Etag,
}

/// A person and the values a read asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonValues {
    /// The person.
    pub person_id: PersonId,
    /// Their values, sorted by key in byte order.
    pub values: Vec<ValueRecord>,
}

/// What a write of values did: the person and each value's new etag.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// The person written to.
    pub person_id: PersonId,
    /// Each key written with the etag of the value it now holds, in the
    /// order the keys were first given.
    pub etags: Vec<(String, Etag)>,
}

/// The outcome of clearing one value of an existing person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleared {
    /// The person.
    pub person_id: PersonId,
    /// Whether there was a value to clear.
    pub cleared: bool,
}

/// One person of a listing ([`ValueStore::list_persons`]) with the values
/// the listing asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPerson {
    /// The person.
    pub person_id: PersonId,
    /// Their distinct_id.
    pub distinct_id: String,
    /// Their values, sorted by key in byte order.
    pub values: Vec<ValueRecord>,
}

/// Which persons of a workspace and mode a listing returns, and with which
/// values.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonsQuery {
    /// The workspace.
    pub workspace: WorkspaceId,
    /// The mode of the key that lists.
    pub mode: Mode,
    /// Only persons whose person_id is greater (the last of the previous
    /// page); `None` from the first.
    pub after: Option<PersonId>,
    /// Most persons returned.
    pub limit: u32,
    /// Only these attribute keys, when given.
    pub keys: Option<Vec<String>>,
    /// Whether values of archived definitions are included.
    pub include_archived: bool,
}

/// Errors of storage operations. Each variant says what it becomes at the
/// gRPC boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The record already exists (a taken attribute key). Becomes
    /// `ALREADY_EXISTS`.
    #[error("a record with this key already exists")]
    AlreadyExists,
    /// The database cannot be reached, or no pooled connection became free in
    /// time. Becomes `UNAVAILABLE`: safe to retry.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Arc<sqlx::Error>),
    /// The database URL or options cannot be used, or the database refused
    /// them for good (a missing directory, database or role, a wrong
    /// password): retrying cannot help. Only [`connect`] and the schema
    /// checks return it; the message is for people and never contains a
    /// password.
    #[error("{0}")]
    Config(String),
    /// The database named does not exist and [`StoreOptions::create_if_missing`]
    /// is off. Only [`connect`] returns it.
    #[error("{0}")]
    Missing(String),
    /// A request_id seen before (within the retention) with another request
    /// body or on another RPC. Becomes `INVALID_ARGUMENT` `request_id_reused`.
    #[error("the request_id was used for another request")]
    RequestReused,
    /// A request_id whose first request is still being applied. Becomes
    /// `ABORTED` `request_in_progress`: safe to retry.
    #[error("the first request with this request_id is still in progress")]
    RequestInProgress,
    /// An update refused against the stored values: each failing change's
    /// index with its error (a failed `if_etag`, an increment out of range),
    /// in order. Nothing of the update was written. Becomes the first
    /// error's code, with one `BadRequest` violation per change.
    #[error("{} of the changes were refused", .0.len())]
    Refused(Vec<(usize, crate::domain::Error)>),
    /// Anything else: a bug or a broken database. Becomes `INTERNAL`; the
    /// details are for logs, never for clients.
    #[error("unexpected storage error: {0}")]
    Unexpected(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        crate::metrics::database_error(error_kind(&err));
        let outage = match &err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                postgres::is_outage(db.as_ref()) || sqlite::is_outage(db.as_ref())
            }
            _ => false,
        };
        if outage {
            Error::Unavailable(Arc::new(err))
        } else {
            Error::Unexpected(err.into())
        }
    }
}

/// The usage of one pool, labelled `name`.
fn pool_usage<DB: sqlx::Database>(
    name: &'static str,
    pool: &sqlx::Pool<DB>,
) -> crate::metrics::PoolUsage {
    crate::metrics::PoolUsage {
        pool: name,
        size: pool.size(),
        idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
        max: pool.options().get_max_connections(),
    }
}

/// The `kind` label of a database error: a fixed name, never its message.
fn error_kind(err: &sqlx::Error) -> &'static str {
    match err {
        sqlx::Error::PoolTimedOut => "pool_timeout",
        sqlx::Error::PoolClosed => "pool_closed",
        sqlx::Error::Io(_) => "io",
        sqlx::Error::Tls(_) => "tls",
        sqlx::Error::WorkerCrashed => "worker_crashed",
        sqlx::Error::Protocol(_) => "protocol",
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => "decode",
        sqlx::Error::Database(db)
            if postgres::is_outage(db.as_ref()) || sqlite::is_outage(db.as_ref()) =>
        {
            "database_unavailable"
        }
        sqlx::Error::Database(_) => "database",
        _ => "other",
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        use sqlx::migrate::MigrateError;
        match err {
            // A migration that could not run because the database went away
            // is an outage like any other; the rest are broken deployments.
            MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => e.into(),
            other => Error::Unexpected(other.into()),
        }
    }
}

/// Turns a unique violation into [`Error::AlreadyExists`]. Catching the
/// constraint (rather than looking first) is what makes creation race-safe.
fn unique_violation_is_already_exists(err: sqlx::Error) -> Error {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::AlreadyExists,
        _ => err.into(),
    }
}

/// How a database's schema compares with the migrations this binary carries
/// (versions are the numbers of the files in `migrations/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Every migration of this binary is applied, and no other.
    Current,
    /// Migrations of this binary are missing: `migrate` (or `serve`) applies
    /// them. `database` is the highest version applied, `None` on a database
    /// never migrated.
    Behind {
        /// The database's highest applied version.
        database: Option<i64>,
        /// This binary's highest version.
        binary: i64,
    },
    /// The database holds a migration this binary does not know: a newer
    /// release migrated it.
    Newer {
        /// The database's highest applied version.
        database: i64,
        /// This binary's highest version.
        binary: i64,
    },
}

impl Schema {
    /// Compares the versions applied to a database with those a binary knows.
    pub(crate) fn compare(applied: &[i64], known: &[i64]) -> Schema {
        let binary = known.iter().copied().max().unwrap_or(0);
        let database = applied.iter().copied().max();
        match database {
            Some(database) if database > binary => Schema::Newer { database, binary },
            _ if known.iter().all(|v| applied.contains(v)) => Schema::Current,
            _ => Schema::Behind { database, binary },
        }
    }

    /// The message for a schema newer than this binary's.
    pub(crate) fn newer_message(database: i64, binary: i64) -> String {
        format!(
            "the database schema is at version {database}, newer than this binary's \
             (version {binary}): a newer release migrated it; run that release, or see \
             README \"Upgrading\" to roll back"
        )
    }
}

/// The SQLite `synchronous` setting: how hard each commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSynchronous {
    /// Every commit is on disk before it returns (the default).
    #[default]
    Full,
    /// Faster commits; with WAL the database never corrupts, but the last
    /// commits before a power loss or OS crash may be lost.
    Normal,
}

/// Pool and timeout settings; see [`StoreOptions::default`] for the defaults.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most database connections to hold. SQLite uses this many readers plus
    /// one writer.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection (including opening a
    /// new one) before it fails with [`Error::Unavailable`]. [`connect`] gives
    /// up after this long too; retrying at startup is the caller's business.
    pub acquire_timeout: Duration,
    /// How long SQLite waits for a lock held by another process before it
    /// reports the database busy.
    pub sqlite_busy_timeout: Duration,
    /// SQLite's durability/speed trade.
    pub sqlite_synchronous: SqliteSynchronous,
    /// Whether a missing SQLite file is created (by `serve` and `migrate`)
    /// or is an [`Error::Missing`] (every other command: a typo in the URL
    /// must not make a new, empty database).
    pub create_if_missing: bool,
}

impl Default for StoreOptions {
    /// 10 connections, a 3 s acquire timeout, a 5 s SQLite busy timeout,
    /// `synchronous = FULL`, and a missing SQLite file created.
    fn default() -> Self {
        StoreOptions {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
            sqlite_busy_timeout: Duration::from_secs(5),
            sqlite_synchronous: SqliteSynchronous::Full,
            create_if_missing: true,
        }
    }
}

/// Opens the store that `url` names: `sqlite://path` or `sqlite:path` (the
/// file is created if missing, when the options say so), `postgres://...` or
/// `postgresql://...`.
///
/// At least one connection is opened before this returns, so an unreachable
/// database is an [`Error::Unavailable`] here. It does not migrate: call
/// [`AdminStore::migrate`].
pub async fn connect(url: &str, opts: &StoreOptions) -> Result<Arc<dyn Store>> {
    let Some((scheme, _)) = url.split_once(':') else {
        return Err(Error::Config(
            "the database URL has no scheme: expected sqlite:, postgres: or postgresql:".into(),
        ));
    };
    match scheme {
        "sqlite" => Ok(Arc::new(sqlite::SqliteStore::connect(url, opts).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(postgres::PgStore::connect(url, opts).await?)),
        other => Err(Error::Config(format!(
            "unsupported database URL scheme {other:?}: expected sqlite:, postgres: or postgresql:"
        ))),
    }
}

/// The administrative half of what the service persists: schema,
/// workspaces, settings, API keys and attribute definitions. Implementations
/// are cheap to share and safe to call concurrently.
///
/// Methods that take a workspace only ever see that workspace's rows: a key or
/// definition of another workspace looks exactly like one never stored.
///
/// Long-running operations (purges) are its [`OperationStore`] half.
#[async_trait]
pub trait AdminStore: OperationStore {
    /// Brings the schema up to date; safe to run again and from several
    /// processes at once. A schema newer than this binary's is an
    /// [`Error::Config`] naming both versions, and nothing is changed.
    async fn migrate(&self) -> Result<()>;

    /// How the database's schema compares with this binary's migrations,
    /// without changing anything.
    async fn schema(&self) -> Result<Schema>;

    /// Writes a consistent copy of the database to the new file `path`
    /// while it keeps serving (SQLite's `VACUUM INTO`: one read transaction,
    /// so the copy holds every commit made before it began). PostgreSQL
    /// refuses with an [`Error::Config`] naming pg_dump.
    async fn backup(&self, path: &std::path::Path) -> Result<()>;

    /// A cheap round trip (`SELECT 1`) for health checks.
    async fn ping(&self) -> Result<()>;

    /// The connection pools' usage now (no database call), for metrics.
    fn pool_usage(&self) -> Vec<crate::metrics::PoolUsage>;

    /// Creates a workspace with default settings.
    async fn create_workspace(&self, name: &str) -> Result<Workspace>;

    /// All workspaces, oldest first.
    async fn list_workspaces(&self) -> Result<Vec<Workspace>>;

    /// Every workspace's `allowed_origins`, in no order: what CORS
    /// preflights, which carry no key, are answered for.
    async fn list_allowed_origins(&self) -> Result<Vec<Vec<String>>>;

    /// A workspace's settings; `None` if there is no such workspace.
    async fn get_settings(&self, ws: WorkspaceId) -> Result<Option<Settings>>;

    /// Replaces a workspace's settings and returns them as stored; `None` if
    /// there is no such workspace.
    async fn update_settings(
        &self,
        ws: WorkspaceId,
        settings: Settings,
    ) -> Result<Option<Settings>>;

    /// Stores an API key's hash.
    async fn insert_api_key(&self, key: NewApiKey) -> Result<ApiKeyRecord>;

    /// The key with this hash, revoked or not: the caller decides.
    async fn find_api_key(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>>;

    /// A workspace's keys, oldest first.
    async fn list_api_keys(&self, ws: WorkspaceId) -> Result<Vec<ApiKeyRecord>>;

    /// Revokes a key; `true` if the workspace has such a key (revoking twice
    /// keeps the first time).
    async fn revoke_api_key(&self, ws: WorkspaceId, id: ApiKeyId) -> Result<bool>;

    /// Stores a new identity secret unless the workspace already has
    /// `max_active` unrevoked ones (then `None`).
    async fn insert_identity_secret(
        &self,
        ws: WorkspaceId,
        secret: &str,
        display_prefix: &str,
        max_active: u32,
    ) -> Result<Option<IdentitySecretRecord>>;

    /// A workspace's identity secrets, revoked ones too, oldest first.
    async fn list_identity_secrets(&self, ws: WorkspaceId) -> Result<Vec<IdentitySecretRecord>>;

    /// Revokes an identity secret; `true` if the workspace has it (revoking
    /// twice keeps the first time).
    async fn revoke_identity_secret(&self, ws: WorkspaceId, id: ApiKeyId) -> Result<bool>;

    /// Creates a definition; [`Error::AlreadyExists`] if the key is taken in
    /// this workspace.
    async fn create_definition(
        &self,
        ws: WorkspaceId,
        def: NewDefinition,
    ) -> Result<DefinitionRecord>;

    /// One definition, archived or not.
    async fn get_definition(&self, ws: WorkspaceId, key: &str) -> Result<Option<DefinitionRecord>>;

    /// Up to `limit` definitions with keys after `after` (the last key of the
    /// previous page), ordered by key in byte order.
    async fn list_definitions(
        &self,
        ws: WorkspaceId,
        include_archived: bool,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DefinitionRecord>>;

    /// Applies `changes` and bumps `updated_at`; `None` if there is no such
    /// definition. The type never changes.
    async fn update_definition(
        &self,
        ws: WorkspaceId,
        key: &str,
        changes: DefinitionChanges,
    ) -> Result<Option<DefinitionRecord>>;

    /// Archives or unarchives a definition and bumps `updated_at`; `None` if
    /// there is no such definition, or (unarchiving) it is being purged.
    /// Values are kept either way.
    async fn set_archived(
        &self,
        ws: WorkspaceId,
        key: &str,
        archived: bool,
    ) -> Result<Option<DefinitionRecord>>;
}

/// The hot half: persons and their attribute values. This is the half that
/// group commit ([`Coalescing`]) wraps.
///
/// A person or value of another workspace or mode looks exactly like one that
/// was never stored.
#[async_trait]
pub trait ValueStore: Send + Sync + 'static {
    /// Creates the person if needed and upserts all `values` (keys must have
    /// definitions), all or nothing: a failure writes no value and creates no
    /// person. Concurrent first writes of one `distinct_id` agree on one
    /// person. A key given twice keeps its last value. Every value written
    /// gets a new etag.
    async fn write_values(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
        values: &[(String, Value)],
    ) -> Result<Receipt>;

    /// Writes several persons' values in one commit (group commit): each
    /// write is all or nothing on its own and gets its own result, in order;
    /// a write that fails does not stop the others. Nothing is acknowledged
    /// before the commit that holds it is durable. The outer error means the
    /// whole batch failed (an outage) and nothing of it was written.
    async fn write_batch(&self, writes: Vec<PersonWrite>) -> Result<Vec<Result<Receipt>>>;

    /// Several reads as one (coalesced reads): each read's answer as
    /// [`ValueStore::read_values`] gives it, in order. Every read sees every write
    /// committed before the batch started. The error means the whole batch
    /// failed (an outage). By default, the reads run one after another.
    async fn read_batch(&self, reads: Vec<PersonRead>) -> Result<Vec<Option<PersonValues>>> {
        let mut answers = Vec::with_capacity(reads.len());
        for r in reads {
            let keys = r.keys.as_deref();
            answers.push(
                self.read_values(
                    r.workspace,
                    r.mode,
                    &r.distinct_id,
                    keys,
                    r.include_archived,
                )
                .await?,
            );
        }
        Ok(answers)
    }

    /// A person's values (only `keys` when given), sorted by key in byte
    /// order; values of archived definitions only with `include_archived`.
    /// `None` if the person does not exist.
    async fn read_values(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
        keys: Option<&[String]>,
        include_archived: bool,
    ) -> Result<Option<PersonValues>>;

    /// Applies one person's changes, each decided against the value stored
    /// at the moment of the write, all or nothing: a refused change (see
    /// [`Error::Refused`]) writes nothing and creates no person. A person is
    /// created only when a change writes a value. Concurrent updates of one
    /// value never lose each other.
    async fn update_values(&self, update: PersonUpdate) -> Result<Updated> {
        self.update_batch(vec![update])
            .await?
            .pop()
            .unwrap_or_else(|| Err(Error::Unexpected("an update batch lost its update".into())))
    }

    /// Several persons' updates in one commit (group commit), each all or
    /// nothing on its own, in order: a later update of the same value sees
    /// the earlier one's result. The outer error means the whole batch
    /// failed (an outage) and nothing of it was written.
    async fn update_batch(&self, updates: Vec<PersonUpdate>) -> Result<Vec<Result<Updated>>>;

    /// What [`ValueStore::update_values`] would do now, writing nothing
    /// (validate_only): the outcomes as if applied, and the person only if
    /// they exist.
    async fn preview_update(&self, update: PersonUpdate) -> Result<Updated>;

    /// The recorded outcome of a request_id, if one was recorded within
    /// [`REQUEST_RETENTION`]: for a repeat that its own checks would now
    /// refuse (an attribute archived since the first request).
    async fn find_request(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        request_id: uuid::Uuid,
    ) -> Result<Option<RecordedRequest>>;

    /// Deletes the request records created before `before`; returns how
    /// many. The server calls it periodically, so records outlive their
    /// retention by at most the period.
    async fn forget_requests(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Removes one value (archived or not); `None` if the person does not
    /// exist. The person stays even when their last value goes.
    async fn clear_value(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
        key: &str,
    ) -> Result<Option<Cleared>>;
    /// Erases the person of `distinct_id` and every row holding their data
    /// (values, request records of their writes), in one transaction;
    /// returns their person_id, `None` if there was no such person. A later
    /// write of the distinct_id creates a new person with a new person_id,
    /// even on a replica that remembered the old one.
    async fn delete_person(
        &self,
        ws: WorkspaceId,
        mode: Mode,
        distinct_id: &str,
    ) -> Result<Option<PersonId>>;

    /// Up to `query.limit` persons by person_id (byte order, a stable order:
    /// person_ids never change), each with the values the query asks for.
    /// Paging with `after` sees every person that existed for the whole
    /// listing exactly once, whatever is written in between.
    async fn list_persons(&self, query: PersonsQuery) -> Result<Vec<ListedPerson>>;
}

/// Both halves, as one backend implements them; [`connect`] returns one.
pub trait Store: AdminStore + ValueStore {}

impl<T: AdminStore + ValueStore> Store for T {}

/// Runs a database operation to completion in a task of its own and waits
/// for it. Dropping the returned future (a cancelled request) does not drop
/// the operation: sqlx 0.9.0 can leave a pooled PostgreSQL connection inside
/// an open transaction when a future is dropped during `begin()`
/// (transact-rs/sqlx#4385), and any query dropped mid-flight leaves its
/// connection to be cleaned up by the next user.
async fn detached<T, F>(op: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(op.in_current_span())
        .await
        .map_err(|join| Error::Unexpected(join.into()))?
}

/// The current time at the precision both databases keep (microseconds), so
/// that what a write returns equals what a later read returns.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A value to write with the new etag it gets.
type Stamped = (String, Value, Etag);

/// Keeps the last value given for each key, in first-seen order (a single
/// upsert statement may not touch one row twice), each with a new etag.
fn stamp(values: &[(String, Value)]) -> Vec<Stamped> {
    let mut position: HashMap<&str, usize> = HashMap::with_capacity(values.len());
    let mut out: Vec<Stamped> = Vec::with_capacity(values.len());
    for (key, value) in values {
        match position.get(key.as_str()) {
            Some(&i) => out[i].1 = value.clone(),
            None => {
                position.insert(key, out.len());
                out.push((key.clone(), value.clone(), Etag(uuid::Uuid::new_v4())));
            }
        }
    }
    out
}

impl Receipt {
    /// The receipt of `person_id`'s write of `stamped`.
    fn new(person_id: PersonId, stamped: &[Stamped]) -> Self {
        Receipt {
            person_id,
            etags: stamped.iter().map(|(k, _, e)| (k.clone(), *e)).collect(),
        }
    }
}

/// One row of a batch of reads: the read's index, its person, then the
/// person's values as parallel arrays (keys, values, when each was written,
/// etags, whether its definition is archived), NULL when the person has none.
type BatchPersonRow = (
    i32,
    PersonId,
    Option<Vec<String>>,
    Option<Vec<Value>>,
    Option<Vec<DateTime<Utc>>>,
    Option<Vec<Etag>>,
    Option<Vec<bool>>,
);

/// The answers to `reads` from the rows of a batch read: a person without a
/// row does not exist; each read keeps the values its filters allow, sorted
/// by key in byte order.
fn answer_reads(reads: &[PersonRead], rows: Vec<BatchPersonRow>) -> Vec<Option<PersonValues>> {
    let mut answers: Vec<Option<PersonValues>> = vec![None; reads.len()];
    for (i, person_id, keys, values, times, etags, archived) in rows {
        let Some(i) = usize::try_from(i).ok().filter(|i| *i < reads.len()) else {
            continue;
        };
        let read = &reads[i];
        let stored = keys
            .unwrap_or_default()
            .into_iter()
            .zip(values.unwrap_or_default())
            .zip(times.unwrap_or_default())
            .zip(etags.unwrap_or_default())
            .zip(archived.unwrap_or_default());
        let mut kept: Vec<ValueRecord> = stored
            .filter(|((((key, _), _), _), archived)| {
                read.keys.as_ref().is_none_or(|keys| keys.contains(key))
                    && (read.include_archived || !archived)
            })
            .map(|((((key, value), updated_at), etag), _)| ValueRecord {
                key,
                value,
                updated_at,
                etag,
            })
            .collect();
        kept.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        answers[i] = Some(PersonValues {
            person_id,
            values: kept,
        });
    }
    answers
}

/// One row of `read_values`: the person, then a value or NULLs.
type ValueRow = (
    PersonId,
    Option<String>,
    Option<Value>,
    Option<DateTime<Utc>>,
    Option<Etag>,
);

/// Folds the rows of a person-to-values LEFT JOIN into the person's values;
/// `None` when there was no row, i.e. no person.
fn collect_values(rows: Vec<ValueRow>) -> Option<PersonValues> {
    let person_id = rows.first()?.0;
    let values = rows
        .into_iter()
        .filter_map(|(_, key, value, updated_at, etag)| {
            Some(ValueRecord {
                key: key?,
                value: value?,
                updated_at: updated_at?,
                etag: etag?,
            })
        })
        .collect();
    Some(PersonValues { person_id, values })
}

/// One row of a listing of persons: the person, then a value or NULLs.
type ListedRow = (
    PersonId,
    String,
    Option<String>,
    Option<Value>,
    Option<DateTime<Utc>>,
    Option<Etag>,
);

/// Folds the rows of a persons-to-values LEFT JOIN, ordered by person, into
/// the persons and their values.
fn collect_listed(rows: Vec<ListedRow>) -> Vec<ListedPerson> {
    let mut persons: Vec<ListedPerson> = Vec::new();
    for (person_id, distinct_id, key, value, updated_at, etag) in rows {
        if persons.last().is_none_or(|p| p.person_id != person_id) {
            persons.push(ListedPerson {
                person_id,
                distinct_id,
                values: Vec::new(),
            });
        }
        if let (Some(key), Some(value), Some(updated_at), Some(etag), Some(person)) =
            (key, value, updated_at, etag, persons.last_mut())
        {
            person.values.push(ValueRecord {
                key,
                value,
                updated_at,
                etag,
            });
        }
    }
    persons
}
