//! The identities every layer speaks of: workspaces, persons, API keys, and
//! the mode and kind a key carries.
//!
//! The id newtypes derive `sqlx::Type` (transparent over a UUID) so that
//! storage binds and reads them as they are; that derive is the domain's only
//! tie to the database crate, and it brings no I/O.

use std::fmt;

use uuid::Uuid;

/// Identifies a workspace (one customer account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct WorkspaceId(pub Uuid);

/// Identifies a person: opaque and stable, given on the first write of a
/// `distinct_id` and never derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct PersonId(pub Uuid);

/// Identifies an API key record (never the key itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct ApiKeyId(pub Uuid);

/// Identifies a long-running operation (a purge); clients see it in the
/// operation's name, `operations/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct OperationId(pub Uuid);

impl fmt::Display for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.simple().fmt(f)
    }
}

/// The version of one stored value: a new random one on every change of the
/// value, so `if_etag` preconditions can tell whether a value changed since
/// it was read (a counter would repeat after a clear and a new write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct Etag(pub Uuid);

/// Clients see etags as 32 hex digits and only ever compare them.
impl fmt::Display for Etag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.simple().fmt(f)
    }
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Live or test: persons and their values are kept apart per mode, so test
/// data never shows in live reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Production data.
    Live,
    /// Data written with test keys.
    Test,
}

impl Mode {
    /// The spelling stored in the database and used in key prefixes.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Test => "test",
        }
    }

    /// The mode of a stored or typed spelling (`live`, `test`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(Mode::Live),
            "test" => Some(Mode::Test),
            _ => None,
        }
    }
}

/// What an API key may do: secret keys everything, public keys only writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// A server-side key.
    Secret,
    /// A key that may ship in client code.
    Public,
}

impl KeyKind {
    /// The spelling stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Secret => "secret",
            KeyKind::Public => "public",
        }
    }

    /// The kind of a stored or typed spelling (`secret`, `public`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "secret" => Some(KeyKind::Secret),
            "public" => Some(KeyKind::Public),
            _ => None,
        }
    }
}
