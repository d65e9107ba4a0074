//! The operator commands of the binary, beside `serve`: migrations,
//! workspaces, API keys, attribute definitions (one at a time or from a
//! declarative schema file), workspace settings and exports of persons.
//!
//! Every command talks to the database directly (the same `DATABASE_URL` as
//! `serve`, opened with [`open_store`]), never to a running
//! server. Only `migrate` creates a database or changes its schema; the
//! others refuse a missing database or a schema that is not this binary's,
//! naming the command to run. Servers notice a change within their `--cache-ttl`. Results go
//! to stdout, readable by a person or, with `--json`, as one JSON document
//! for scripts; a failure is one line `error: ...` on stderr and a non-zero
//! exit.
//!
//! Every command calls the same [`App`] use cases as the gRPC handlers, so
//! both store things the same way and refuse the same things.
//!
//! - `workspaces`: `migrate`, `workspace ...`, `keys ...`.
//! - `attributes`: `attributes define|list|archive|unarchive`.
//! - `schema`: `attributes apply FILE`, the declarative schema file.
//! - `settings`: `settings get|set`.
//! - `identity`: `identity-secrets create|list|revoke`.
//! - `persons`: `persons export`, every person as NDJSON.
//! - `output`: text tables and JSON for scripts.

mod attributes;
mod identity;
mod output;
mod persons;
mod schema;
mod settings;
mod workspaces;

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value as Json;
use uuid::Uuid;

use self::attributes::{parse_finite, parse_type};
use crate::{
    app::{self, App},
    config::DatabaseArgs,
    database::{OpenError, Schema, open_store},
    domain::{self, AttributeType, KeyKind, Mode, Reason},
    storage::Workspace,
};

/// The operator commands; the binary puts them beside `serve`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring the database schema up to date and exit (the deploy's migration
    /// Job runs this); creates a missing SQLite file.
    Migrate(Common),
    /// Write a consistent copy of a SQLite database to PATH, while servers
    /// keep serving it (PostgreSQL: use pg_dump; README "Backups").
    Backup {
        /// The new file; it must not exist yet.
        path: PathBuf,
        /// The output and the database.
        #[command(flatten)]
        common: Common,
    },
    /// Create and list workspaces.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Create, list and revoke the API keys of a workspace.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Declare, list and archive attributes, or apply a schema file.
    #[command(subcommand)]
    Attributes(AttributesCommand),
    /// Read and change workspace settings.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Create, list and revoke the identity secrets that sign browser writes.
    #[command(subcommand)]
    IdentitySecrets(IdentitySecretsCommand),
    /// Export the persons of a workspace and mode.
    #[command(subcommand)]
    Persons(PersonsCommand),
}

/// Flags of every operator command.
#[derive(Debug, Args)]
pub struct Common {
    /// Print one JSON document for scripts instead of text for people.
    #[arg(long)]
    pub json: bool,

    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Flags of the commands that act on one workspace.
#[derive(Debug, Args)]
pub struct Scoped {
    /// The workspace's id (`workspace list` shows them). May be left out when
    /// the database holds exactly one workspace, which is then used.
    #[arg(long, env = "VEVEE_WORKSPACE", value_name = "ID")]
    pub workspace: Option<String>,

    /// The output and the database.
    #[command(flatten)]
    pub common: Common,
}

/// `workspace ...`
#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace with four API keys (sk_live_, pk_live_, sk_test_,
    /// pk_test_), printed this once.
    Create {
        /// A name for people; need not be unique.
        name: String,
        /// The output and the database.
        #[command(flatten)]
        common: Common,
    },
    /// List the workspaces, oldest first.
    List(Common),
}

/// `keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it, this once: only its hash is stored.
    Create {
        /// `secret` keys may call every RPC; `public` ones only client writes.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// `live` or `test` data.
        #[arg(long, value_enum)]
        mode: ModeArg,
        /// The workspace, the output and the database.
        #[command(flatten)]
        scoped: Scoped,
    },
    /// List the keys (never the keys themselves: only their prefixes are known).
    List(Scoped),
    /// Revoke a key; servers refuse it within their --cache-ttl.
    Revoke {
        /// The key's id from `keys list`, or the key itself.
        key_id: String,
        /// The workspace, the output and the database.
        #[command(flatten)]
        scoped: Scoped,
    },
}

/// Kinds of API keys.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    /// Server-side: every RPC.
    Secret,
    /// May ship in client code: only client writes, when enabled.
    Public,
}

/// Modes of API keys.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Production data.
    Live,
    /// Test data, kept apart from live data.
    Test,
}

impl From<KindArg> for KeyKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Secret => KeyKind::Secret,
            KindArg::Public => KeyKind::Public,
        }
    }
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Live => Mode::Live,
            ModeArg::Test => Mode::Test,
        }
    }
}

/// `attributes ...`
#[derive(Debug, Subcommand)]
pub enum AttributesCommand {
    /// Declare an attribute.
    Define(DefineArgs),
    /// List the attributes, by key.
    List {
        /// Include archived attributes.
        #[arg(long)]
        include_archived: bool,
        /// The workspace, the output and the database.
        #[command(flatten)]
        scoped: Scoped,
    },
    /// Archive an attribute: its values are kept, writes are refused.
    Archive {
        /// The attribute key.
        key: String,
        /// The workspace, the output and the database.
        #[command(flatten)]
        scoped: Scoped,
    },
    /// Unarchive an attribute: it takes writes again.
    Unarchive {
        /// The attribute key.
        key: String,
        /// The workspace, the output and the database.
        #[command(flatten)]
        scoped: Scoped,
    },
    /// Apply a schema file (TOML): create the attributes it declares that are
    /// missing, update those that differ, leave the rest; never delete. The
    /// whole file is checked before anything is written.
    ///
    /// Each `[attributes.KEY]` table has `type`, optional `display_name`,
    /// `description`, `client_writable` (whether public keys may write it;
    /// true when absent) and `archived` (left as it is when absent), and the
    /// type's config fields (`max_length`, `truncate`, `min`, `max`,
    /// `integer`, `include_time`, `options`, `allow_custom`, `max_items`).
    /// The file states the whole definition: a config field or name left out
    /// takes its default (no name).
    Apply {
        /// The schema file, e.g. `schema.toml`.
        file: PathBuf,
        /// The workspace, the output and the database.
        #[command(flatten)]
        scoped: Scoped,
    },
}

/// `attributes define`: the key, the type and the type's config as flags.
#[derive(Debug, Args)]
pub struct DefineArgs {
    /// The attribute key: a-z first, then a-z, 0-9 or _, at most 64 characters.
    pub key: String,
    /// text, number, boolean, date, single_choice or multi_choice.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
    pub attribute_type: AttributeType,
    /// An option of a single_choice or multi_choice attribute; repeat for each.
    #[arg(long = "option", value_name = "OPTION")]
    pub options: Vec<String>,
    /// Choice types: keep values that match no option.
    #[arg(long)]
    pub allow_custom: bool,
    /// text: the most characters a value may have (default 255).
    #[arg(long)]
    pub max_length: Option<u32>,
    /// text: cut longer values instead of refusing them.
    #[arg(long)]
    pub truncate: bool,
    /// number: the smallest value allowed.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_finite)]
    pub min: Option<f64>,
    /// number: the largest value allowed.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_finite)]
    pub max: Option<f64>,
    /// number: only whole numbers.
    #[arg(long)]
    pub integer: bool,
    /// date: store instants (date and time, UTC) instead of dates.
    #[arg(long)]
    pub include_time: bool,
    /// multi_choice: the most items a value may have (default 100).
    #[arg(long)]
    pub max_items: Option<u32>,
    /// A name for people.
    #[arg(long)]
    pub display_name: Option<String>,
    /// A description for people.
    #[arg(long)]
    pub description: Option<String>,
    /// Whether public keys (browser writes) may set and clear it; `off`
    /// leaves it to secret keys, from your backend.
    #[arg(long, value_enum, default_value = "on")]
    pub client_writable: OnOff,
    /// The workspace, the output and the database.
    #[command(flatten)]
    pub scoped: Scoped,
}

/// `settings ...`
#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Print the workspace's settings.
    Get(Scoped),
    /// Change a setting; servers apply it within their --cache-ttl.
    Set {
        /// The setting.
        #[arg(value_enum)]
        setting: SettingArg,
        /// Its new value: `on`/`off` (client-attribute-writes),
        /// `off`/`required` (identity-verification), or comma-separated
        /// origins such as `https://app.example.com,https://*.example.com`,
        /// `""` for any (allowed-origins).
        value: String,
        /// The workspace, the output and the database.
        #[command(flatten)]
        scoped: Scoped,
    },
}

/// The workspace settings.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SettingArg {
    /// Whether public keys may set and clear attribute values.
    ClientAttributeWrites,
    /// Whether public-key writes need an identity signature.
    IdentityVerification,
    /// The origins public keys may be used from (empty: any).
    AllowedOrigins,
}

/// `identity-secrets ...`
#[derive(Debug, Subcommand)]
pub enum IdentitySecretsCommand {
    /// Create an identity secret and print it, this once (two may be active).
    Create(Scoped),
    /// List the workspace's identity secrets (their prefixes, never the secrets).
    List(Scoped),
    /// Revoke an identity secret: its signatures stop verifying.
    Revoke {
        /// The secret's id, from `identity-secrets list`.
        id: String,
        /// The workspace, the output and the database.
        #[command(flatten)]
        scoped: Scoped,
    },
}

/// `persons ...`
#[derive(Debug, Subcommand)]
pub enum PersonsCommand {
    /// Write every person of a workspace and mode with their values as
    /// NDJSON, one person per line: `{"distinct_id", "person_id",
    /// "attributes": {KEY: VALUE}}`. Progress goes to stderr. Safe while
    /// servers write: each person that exists for the whole export appears
    /// exactly once.
    Export(ExportArgs),
}

/// `persons export`: what to export and where.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// `live` or `test` persons.
    #[arg(long, value_enum, default_value = "live")]
    pub mode: ModeArg,
    /// Only these attributes; repeat for each (default: every attribute).
    #[arg(long = "attribute", value_name = "KEY")]
    pub attributes: Vec<String>,
    /// Include values of archived attributes.
    #[arg(long)]
    pub include_archived: bool,
    /// Write to this file (replaced if it exists) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The workspace's id (`workspace list` shows them). May be left out when
    /// the database holds exactly one workspace, which is then used.
    #[arg(long, env = "VEVEE_WORKSPACE", value_name = "ID")]
    pub workspace: Option<String>,
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// A switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Why a command failed; `Display` is the one line printed after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command cannot be carried out as given; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    /// The database could not be opened, reached or migrated.
    #[error(transparent)]
    Database(#[from] OpenError),
    /// A defect, or a stored row this version cannot read.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<app::Error> for Error {
    fn from(err: app::Error) -> Self {
        match err {
            app::Error::Refused(e) => Error::from(e),
            app::Error::Batch(_) => Error::Invalid(err.to_string()),
            app::Error::Limited(e, _) => Error::from(e),
            app::Error::Internal(e) => Error::Internal(e.to_string()),
        }
    }
}

impl From<domain::Error> for Error {
    fn from(err: domain::Error) -> Self {
        match (err.reason(), err.attribute()) {
            // The API's message names an RPC; an operator wants a command.
            (Reason::AttributeAlreadyExists, Some(key)) => Error::Invalid(format!(
                "the attribute \"{key}\" is already declared; change it with `attributes apply \
                 FILE`."
            )),
            _ => Error::Invalid(err.message().to_owned()),
        }
    }
}

impl Command {
    /// The database flags of the command, to validate them before it runs.
    pub fn database(&self) -> &DatabaseArgs {
        let common = match self {
            Command::Persons(PersonsCommand::Export(args)) => return &args.database,
            Command::Migrate(common)
            | Command::Backup { common, .. }
            | Command::Workspace(WorkspaceCommand::Create { common, .. })
            | Command::Workspace(WorkspaceCommand::List(common)) => common,
            Command::Keys(KeysCommand::Create { scoped, .. })
            | Command::Keys(KeysCommand::List(scoped))
            | Command::Keys(KeysCommand::Revoke { scoped, .. })
            | Command::Attributes(AttributesCommand::Define(DefineArgs { scoped, .. }))
            | Command::Attributes(AttributesCommand::List { scoped, .. })
            | Command::Attributes(AttributesCommand::Archive { scoped, .. })
            | Command::Attributes(AttributesCommand::Unarchive { scoped, .. })
            | Command::Attributes(AttributesCommand::Apply { scoped, .. })
            | Command::Settings(SettingsCommand::Get(scoped))
            | Command::Settings(SettingsCommand::Set { scoped, .. })
            | Command::IdentitySecrets(IdentitySecretsCommand::Create(scoped))
            | Command::IdentitySecrets(IdentitySecretsCommand::List(scoped))
            | Command::IdentitySecrets(IdentitySecretsCommand::Revoke { scoped, .. }) => {
                &scoped.common
            }
        };
        &common.database
    }
}

/// Runs an operator command to completion, printing its result to stdout.
pub async fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Migrate(common) => workspaces::migrate(common).await,
        Command::Backup { path, common } => workspaces::backup(&path, common).await,
        Command::Workspace(WorkspaceCommand::Create { name, common }) => {
            workspaces::create_workspace(&name, common).await
        }
        Command::Workspace(WorkspaceCommand::List(common)) => {
            workspaces::list_workspaces(common).await
        }
        Command::Keys(KeysCommand::Create { kind, mode, scoped }) => {
            workspaces::create_key(kind, mode, scoped).await
        }
        Command::Keys(KeysCommand::List(scoped)) => workspaces::list_keys(scoped).await,
        Command::Keys(KeysCommand::Revoke { key_id, scoped }) => {
            workspaces::revoke_key(&key_id, scoped).await
        }
        Command::Attributes(AttributesCommand::Define(args)) => attributes::define(args).await,
        Command::Attributes(AttributesCommand::List {
            include_archived,
            scoped,
        }) => attributes::list_attributes(include_archived, scoped).await,
        Command::Attributes(AttributesCommand::Archive { key, scoped }) => {
            attributes::archive(&key, true, scoped).await
        }
        Command::Attributes(AttributesCommand::Unarchive { key, scoped }) => {
            attributes::archive(&key, false, scoped).await
        }
        Command::Attributes(AttributesCommand::Apply { file, scoped }) => {
            schema::apply(&file, scoped).await
        }
        Command::Settings(SettingsCommand::Get(scoped)) => settings::get_settings(scoped).await,
        Command::Settings(SettingsCommand::Set {
            setting,
            value,
            scoped,
        }) => settings::set_setting(setting, &value, scoped).await,
        Command::IdentitySecrets(IdentitySecretsCommand::Create(scoped)) => {
            identity::create(scoped).await
        }
        Command::IdentitySecrets(IdentitySecretsCommand::List(scoped)) => {
            identity::list(scoped).await
        }
        Command::IdentitySecrets(IdentitySecretsCommand::Revoke { id, scoped }) => {
            identity::revoke(&id, scoped).await
        }
        Command::Persons(PersonsCommand::Export(args)) => persons::export(args).await,
    }
}

/// An open database and the output format of one command.
struct Session {
    app: App,
    json: bool,
}

impl Session {
    /// Opens the database; only `migrate` passes [`Schema::Migrate`].
    async fn open(common: &Common, schema: Schema) -> Result<Self, Error> {
        let store = open_store(&common.database, schema).await?;
        Ok(Session {
            // One process, one command: no other replica to wait for, and no
            // writes to coalesce.
            app: App::new(
                store.clone(),
                store,
                std::time::Duration::ZERO,
                app::PublicKeyLimits::off(),
                &crate::metrics::Metrics::new(),
            ),
            json: common.json,
        })
    }

    /// Prints `value` as JSON with `--json`, else the text `text` makes.
    fn print(&self, value: &Json, text: impl FnOnce() -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
            );
        } else {
            print!("{}", text());
        }
    }
}

/// The session and the workspace of a scoped command.
async fn scoped_session(scoped: &Scoped) -> Result<(Session, Workspace), Error> {
    let session = Session::open(&scoped.common, Schema::Current).await?;
    let workspace = select_workspace(&session.app, scoped.workspace.as_deref()).await?;
    Ok((session, workspace))
}

/// The workspace `given` names, or the only one when none is given.
async fn select_workspace(app: &App, given: Option<&str>) -> Result<Workspace, Error> {
    let mut workspaces = app.workspaces().await?;
    match given {
        Some(given) => {
            let id = Uuid::parse_str(given.trim()).map_err(|_| {
                Error::Invalid(format!(
                    "--workspace {given:?} is not a workspace id; `workspace list` shows them."
                ))
            })?;
            workspaces
                .into_iter()
                .find(|w| w.id.0 == id)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "--workspace {id}: no such workspace in this database; `workspace \
                         list` shows them."
                    ))
                })
        }
        None if workspaces.len() == 1 => Ok(workspaces.remove(0)),
        None if workspaces.is_empty() => Err(Error::Invalid(
            "the database has no workspace yet; create one with `workspace create NAME`."
                .to_owned(),
        )),
        None => Err(Error::Invalid(format!(
            "the database has {} workspaces; pick one with --workspace ID or VEVEE_WORKSPACE \
             (`workspace list` shows them).",
            workspaces.len()
        ))),
    }
}
