//! The operator commands of the binary, beside `serve`: migrations,
//! workspaces, API keys, attribute definitions (one at a time or from a
//! declarative schema file) and workspace settings.
//!
//! Every command talks to the database directly (the same `DATABASE_URL` as
//! `serve`, opened and migrated with [`open_store`]), never to a running
//! server. Servers notice a change within their `--cache-ttl`. Results go
//! to stdout, readable by a person or, with `--json`, as one JSON document
//! for scripts; a failure is one line `error: ...` on stderr and a non-zero
//! exit.
//!
//! Definitions are written with the same functions as the gRPC handlers
//! ([`api::create_definition`], [`api::save_definition`],
//! [`api::set_definition_archived`]), so both refuse the same things.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value as Json, json};
use uuid::Uuid;

use crate::{
    api::{self, ApiError},
    auth::{self, ApiKey},
    cache::definition_from_record,
    config::{DatabaseArgs, redact_url},
    domain::{self, AttributeConfig, AttributeDefinition, AttributeKey, AttributeType, Reason},
    server::{StartupError, open_store},
    storage::{self, ApiKeyId, ApiKeyRecord, DefinitionRecord, KeyKind, Mode, Store, Workspace},
};

/// Page size when listing every definition.
const LIST_PAGE: u32 = 1000;

/// The operator commands; the binary puts them beside `serve`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring the database schema up to date and exit (the deploy's migration Job runs this).
    Migrate(Common),
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
    /// `description` and `archived` (left as it is when absent), and the
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
        /// Its new value.
        #[arg(value_enum)]
        value: OnOff,
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
    Startup(#[from] StartupError),
    /// A database operation failed.
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// A defect, or a stored row this version cannot read.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ApiError> for Error {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::Refused(e) => Error::from(e),
            ApiError::Batch(_) => Error::Invalid(err.to_string()),
            ApiError::Internal(e) => Error::Internal(e.to_string()),
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

/// Runs an operator command to completion, printing its result to stdout.
pub async fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Migrate(common) => migrate(common).await,
        Command::Workspace(WorkspaceCommand::Create { name, common }) => {
            create_workspace(&name, common).await
        }
        Command::Workspace(WorkspaceCommand::List(common)) => list_workspaces(common).await,
        Command::Keys(KeysCommand::Create { kind, mode, scoped }) => {
            create_key(kind, mode, scoped).await
        }
        Command::Keys(KeysCommand::List(scoped)) => list_keys(scoped).await,
        Command::Keys(KeysCommand::Revoke { key_id, scoped }) => revoke_key(&key_id, scoped).await,
        Command::Attributes(AttributesCommand::Define(args)) => define(args).await,
        Command::Attributes(AttributesCommand::List {
            include_archived,
            scoped,
        }) => list_attributes(include_archived, scoped).await,
        Command::Attributes(AttributesCommand::Archive { key, scoped }) => {
            archive(&key, true, scoped).await
        }
        Command::Attributes(AttributesCommand::Unarchive { key, scoped }) => {
            archive(&key, false, scoped).await
        }
        Command::Attributes(AttributesCommand::Apply { file, scoped }) => {
            apply(&file, scoped).await
        }
        Command::Settings(SettingsCommand::Get(scoped)) => get_settings(scoped).await,
        Command::Settings(SettingsCommand::Set {
            setting: SettingArg::ClientAttributeWrites,
            value,
            scoped,
        }) => set_client_attribute_writes(value == OnOff::On, scoped).await,
    }
}

/// An open database and the output format of one command.
struct Session {
    store: Arc<dyn Store>,
    json: bool,
}

impl Session {
    async fn open(common: &Common) -> Result<Self, Error> {
        Ok(Session {
            store: open_store(&common.database).await?,
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
    let session = Session::open(&scoped.common).await?;
    let workspace = select_workspace(session.store.as_ref(), scoped.workspace.as_deref()).await?;
    Ok((session, workspace))
}

/// The workspace `given` names, or the only one when none is given.
async fn select_workspace(store: &dyn Store, given: Option<&str>) -> Result<Workspace, Error> {
    let mut workspaces = store.list_workspaces().await?;
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

async fn migrate(common: Common) -> Result<(), Error> {
    let session = Session::open(&common).await?;
    let url = redact_url(&common.database.database_url);
    session.print(&json!({"migrated": true, "database_url": url}), || {
        format!("The database schema is up to date ({url}).\n")
    });
    Ok(())
}

async fn create_workspace(name: &str, common: Common) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(Error::Invalid(
            "NAME: give the workspace a name people will recognise.".to_owned(),
        ));
    }
    let session = Session::open(&common).await?;
    let (workspace, keys) = auth::create_workspace(session.store.as_ref(), name).await?;
    let value = json!({
        "workspace": workspace_json(&workspace),
        "keys": keys.iter().map(|(key, record)| new_key_json(key, record)).collect::<Vec<_>>(),
    });
    session.print(&value, || {
        let mut text = format!(
            "Created workspace \"{}\" ({}).\nIts API keys, shown only this once; store them \
             now:\n",
            workspace.name, workspace.id
        );
        for (key, record) in &keys {
            text.push_str(&format!(
                "  {:<6}  {}  {}\n",
                record.kind.as_str(),
                record.mode.as_str(),
                key.expose()
            ));
        }
        text
    });
    Ok(())
}

async fn list_workspaces(common: Common) -> Result<(), Error> {
    let session = Session::open(&common).await?;
    let workspaces = session.store.list_workspaces().await?;
    let value = Json::Array(workspaces.iter().map(workspace_json).collect());
    session.print(&value, || {
        table(
            &["ID", "NAME", "CREATED"],
            workspaces
                .iter()
                .map(|w| vec![w.id.to_string(), w.name.clone(), human_time(w.created_at)])
                .collect(),
        )
    });
    Ok(())
}

async fn create_key(kind: KindArg, mode: ModeArg, scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let kind = match kind {
        KindArg::Secret => KeyKind::Secret,
        KindArg::Public => KeyKind::Public,
    };
    let mode = match mode {
        ModeArg::Live => Mode::Live,
        ModeArg::Test => Mode::Test,
    };
    let (key, record) = auth::issue_key(session.store.as_ref(), workspace.id, kind, mode).await?;
    session.print(&new_key_json(&key, &record), || {
        format!(
            "Created a {} {} key (id {}) in workspace {}. It is shown only this once; store it \
             now:\n  {}\n",
            kind.as_str(),
            mode.as_str(),
            record.id,
            workspace.id,
            key.expose()
        )
    });
    Ok(())
}

async fn list_keys(scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let keys = session.store.list_api_keys(workspace.id).await?;
    let value = Json::Array(keys.iter().map(key_json).collect());
    session.print(&value, || {
        table(
            &["ID", "PREFIX", "KIND", "MODE", "CREATED", "REVOKED"],
            keys.iter()
                .map(|k| {
                    vec![
                        k.id.to_string(),
                        format!("{}…", k.display_prefix),
                        k.kind.as_str().to_owned(),
                        k.mode.as_str().to_owned(),
                        human_time(k.created_at),
                        k.revoked_at.map_or_else(|| "-".to_owned(), human_time),
                    ]
                })
                .collect(),
        )
    });
    Ok(())
}

async fn revoke_key(given: &str, scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let store = session.store.as_ref();
    let given = given.trim();
    // An operator holding a leaked key can revoke it without looking up its id.
    let id = match ApiKey::parse(given) {
        Some(key) => store
            .find_api_key(&key.hash())
            .await?
            .filter(|k| k.workspace == workspace.id)
            .map(|k| k.id)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "that key is not a key of workspace {}.",
                    workspace.id
                ))
            })?,
        None => ApiKeyId(Uuid::parse_str(given).map_err(|_| {
            Error::Invalid(format!(
                "KEY_ID {given:?} is neither a key id (`keys list` shows them) nor a key."
            ))
        })?),
    };
    let before = store
        .list_api_keys(workspace.id)
        .await?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "workspace {} has no key {id}; `keys list` shows its keys.",
                workspace.id
            ))
        })?;
    if before.revoked_at.is_none() && !store.revoke_api_key(workspace.id, id).await? {
        return Err(Error::Invalid(format!(
            "workspace {} has no key {id}.",
            workspace.id
        )));
    }
    let after = store
        .list_api_keys(workspace.id)
        .await?
        .into_iter()
        .find(|k| k.id == id)
        .unwrap_or_else(|| before.clone());
    session.print(&key_json(&after), || match before.revoked_at {
        Some(at) => format!(
            "Key {id} ({}…) was already revoked on {}.\n",
            after.display_prefix,
            human_time(at)
        ),
        None => format!(
            "Revoked key {id} ({}…). Servers refuse it within their --cache-ttl.\n",
            after.display_prefix
        ),
    });
    Ok(())
}

async fn define(args: DefineArgs) -> Result<(), Error> {
    let t = args.attribute_type;
    let mut config = Map::new();
    if !args.options.is_empty() {
        config.insert("options".into(), json!(args.options));
    }
    for (field, given) in [
        ("allow_custom", args.allow_custom),
        ("truncate", args.truncate),
        ("integer", args.integer),
        ("include_time", args.include_time),
    ] {
        if given {
            config.insert(field.into(), Json::Bool(true));
        }
    }
    for (field, given) in [
        ("max_length", args.max_length),
        ("max_items", args.max_items),
    ] {
        if let Some(n) = given {
            config.insert(field.into(), json!(n));
        }
    }
    for (field, given) in [("min", args.min), ("max", args.max)] {
        if let Some(n) = given {
            config.insert(field.into(), json!(n));
        }
    }
    let key = AttributeKey::parse(&args.key)?;
    let config = AttributeConfig::from_json(t, &Json::Object(config))
        .map_err(|e| Error::Invalid(in_flags(t, e.message())))?;
    let definition = AttributeDefinition::new(key, config, args.display_name, args.description)
        .map_err(|e| Error::Invalid(in_flags(t, e.message())))?;
    let (session, workspace) = scoped_session(&args.scoped).await?;
    let record = api::create_definition(session.store.as_ref(), workspace.id, &definition).await?;
    session.print(&definition_json(&record), || {
        format!(
            "Declared {} ({}) in workspace {}: {}\n",
            record.key, record.attr_type, workspace.id, record.config
        )
    });
    Ok(())
}

async fn list_attributes(include_archived: bool, scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let records = all_definitions(session.store.as_ref(), &workspace, include_archived).await?;
    let value = Json::Array(records.iter().map(definition_json).collect());
    session.print(&value, || {
        table(
            &["KEY", "TYPE", "STATE", "UPDATED", "NAME", "CONFIG"],
            records
                .iter()
                .map(|r| {
                    vec![
                        r.key.clone(),
                        r.attr_type.clone(),
                        if r.archived { "archived" } else { "active" }.to_owned(),
                        human_time(r.updated_at),
                        r.display_name.clone().unwrap_or_default(),
                        r.config.to_string(),
                    ]
                })
                .collect(),
        )
    });
    Ok(())
}

/// Every definition of a workspace, by key, a page at a time.
async fn all_definitions(
    store: &dyn Store,
    workspace: &Workspace,
    include_archived: bool,
) -> Result<Vec<DefinitionRecord>, Error> {
    let mut all: Vec<DefinitionRecord> = Vec::new();
    loop {
        let after = all.last().map(|r| r.key.clone());
        let page = store
            .list_definitions(workspace.id, include_archived, after.as_deref(), LIST_PAGE)
            .await?;
        let done = page.len() < LIST_PAGE as usize;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

async fn archive(key: &str, archived: bool, scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let record =
        api::set_definition_archived(session.store.as_ref(), workspace.id, key, archived).await?;
    session.print(&definition_json(&record), || {
        if archived {
            format!(
                "Archived {key}: its values are kept; servers refuse writes to it within their \
                 --cache-ttl.\n"
            )
        } else {
            format!("Unarchived {key}: servers take writes to it again within their --cache-ttl.\n")
        }
    });
    Ok(())
}

async fn get_settings(scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let settings = session
        .store
        .get_settings(workspace.id)
        .await?
        .unwrap_or_default();
    session.print(
        &json!({"client_attribute_writes": settings.client_attribute_writes}),
        || {
            format!(
                "client-attribute-writes: {}\n",
                on_off(settings.client_attribute_writes)
            )
        },
    );
    Ok(())
}

async fn set_client_attribute_writes(on: bool, scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let store = session.store.as_ref();
    let before = store.get_settings(workspace.id).await?.unwrap_or_default();
    let mut settings = before;
    settings.client_attribute_writes = on;
    let stored = store
        .update_settings(workspace.id, settings)
        .await?
        .ok_or_else(|| Error::Invalid(format!("workspace {} no longer exists.", workspace.id)))?;
    session.print(
        &json!({"client_attribute_writes": stored.client_attribute_writes}),
        || {
            format!(
                "client-attribute-writes: {} (was {}); servers apply it within their \
                 --cache-ttl.\n",
                on_off(stored.client_attribute_writes),
                on_off(before.client_attribute_writes)
            )
        },
    );
    Ok(())
}

// ---- attributes apply ----

/// One attribute of a schema file, checked on its own.
struct Declared {
    definition: AttributeDefinition,
    /// `None`: leave the archived state as it is.
    archived: Option<bool>,
}

/// What apply does to one attribute.
enum Step {
    Create(Declared),
    /// The definition as it should be, whether its config changed, and
    /// whether its archived state changes.
    Update {
        desired: AttributeDefinition,
        config_changed: bool,
        names_changed: bool,
        archive: Option<bool>,
    },
    Unchanged(String),
}

async fn apply(file: &std::path::Path, scoped: Scoped) -> Result<(), Error> {
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::Invalid(format!("{shown}: cannot read it: {e}")))?;
    if file.extension().and_then(|e| e.to_str()) != Some("toml") {
        return Err(Error::Invalid(format!(
            "{shown}: schema files are TOML and end in .toml."
        )));
    }
    // The whole file is checked before the database is even opened...
    let declared = parse_schema(&text).map_err(|problems| refused(&shown, &problems))?;
    let (session, workspace) = scoped_session(&scoped).await?;
    let store = session.store.as_ref();
    // ...and against the stored definitions before anything is written.
    let mut steps = Vec::with_capacity(declared.len());
    let mut problems = Vec::new();
    for declared in declared {
        match plan(store, &workspace, declared).await? {
            Ok(step) => steps.push(step),
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(refused(&shown, &problems));
    }

    let mut created = Vec::new();
    let mut updated = Vec::new();
    let mut unchanged = Vec::new();
    let mut changes = Map::new();
    for step in steps {
        match step {
            Step::Create(Declared {
                definition,
                archived,
            }) => {
                api::create_definition(store, workspace.id, &definition).await?;
                let key = definition.key().as_str();
                if archived == Some(true) {
                    api::set_definition_archived(store, workspace.id, key, true).await?;
                }
                created.push(key.to_owned());
            }
            Step::Update {
                desired,
                config_changed,
                names_changed,
                archive,
            } => {
                let key = desired.key().as_str();
                let mut fields = Vec::new();
                if config_changed || names_changed {
                    api::save_definition(store, workspace.id, &desired, config_changed).await?;
                    if config_changed {
                        fields.push("config");
                    }
                    if names_changed {
                        fields.push("names");
                    }
                }
                if let Some(archived) = archive {
                    api::set_definition_archived(store, workspace.id, key, archived).await?;
                    fields.push(if archived { "archived" } else { "unarchived" });
                }
                changes.insert(key.to_owned(), json!(fields));
                updated.push(key.to_owned());
            }
            Step::Unchanged(key) => unchanged.push(key),
        }
    }
    let value = json!({
        "workspace": workspace.id.to_string(),
        "created": created,
        "updated": updated,
        "unchanged": unchanged,
        "changes": changes,
    });
    session.print(&value, || {
        let mut text = format!(
            "Applied {shown} to workspace {}: created {}, updated {}, unchanged {}.\n",
            workspace.id,
            created.len(),
            updated.len(),
            unchanged.len()
        );
        if !created.is_empty() {
            text.push_str(&format!("  created:   {}\n", created.join(", ")));
        }
        if !updated.is_empty() {
            let described: Vec<String> = updated
                .iter()
                .map(|key| {
                    let fields = changes[key.as_str()]
                        .as_array()
                        .map(|f| {
                            f.iter()
                                .filter_map(Json::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default();
                    format!("{key} ({fields})")
                })
                .collect();
            text.push_str(&format!("  updated:   {}\n", described.join(", ")));
        }
        if !unchanged.is_empty() {
            text.push_str(&format!("  unchanged: {}\n", unchanged.join(", ")));
        }
        text
    });
    Ok(())
}

/// The error of a file with `problems` (at least one): the first, and how
/// many more, on one line.
fn refused(shown: &str, problems: &[String]) -> Error {
    let first = problems
        .first()
        .map_or("invalid", |p| p.trim_end_matches('.'));
    let more = match problems.len() {
        0 | 1 => String::new(),
        2 => " (and 1 more problem)".to_owned(),
        n => format!(" (and {} more problems)", n - 1),
    };
    Error::Invalid(format!("{shown}: {first}{more}; nothing was applied."))
}

/// What to do with one declared attribute, given what is stored. The outer
/// error is the database's; the inner one a problem of the file.
async fn plan(
    store: &dyn Store,
    workspace: &Workspace,
    declared: Declared,
) -> Result<Result<Step, String>, Error> {
    let key = declared.definition.key().as_str().to_owned();
    let Some(record) = store.get_definition(workspace.id, &key).await? else {
        return Ok(Ok(Step::Create(declared)));
    };
    let current = definition_from_record(&record)?;
    let wanted = &declared.definition;
    // The same rules as UpdateAttributeDefinition: the config replaces the
    // whole config (and may not change the type), an empty name clears it.
    let desired = match current.clone().update(
        Some(wanted.config().clone()),
        Some(wanted.display_name().unwrap_or_default().to_owned()),
        Some(wanted.description().unwrap_or_default().to_owned()),
    ) {
        Ok(desired) => desired,
        Err(e) => return Ok(Err(locate(&key, e.message()))),
    };
    let config_changed = desired.config() != current.config();
    let names_changed = desired.display_name() != current.display_name()
        || desired.description() != current.description();
    let archive = declared.archived.filter(|&a| a != current.archived());
    if !config_changed && !names_changed && archive.is_none() {
        return Ok(Ok(Step::Unchanged(key)));
    }
    Ok(Ok(Step::Update {
        desired,
        config_changed,
        names_changed,
        archive,
    }))
}

/// Checks a whole schema file without the database: every problem, in key order.
fn parse_schema(text: &str) -> Result<Vec<Declared>, Vec<String>> {
    let document: toml::Table = toml::from_str(text).map_err(|e| vec![toml_problem(text, &e)])?;
    let mut problems = Vec::new();
    let mut declared = Vec::new();
    for name in document.keys() {
        if name != "attributes" {
            problems.push(format!(
                "{name}: unknown top-level key; a schema file has one table, [attributes]."
            ));
        }
    }
    let attributes = match document.get("attributes") {
        None => BTreeMap::new(),
        Some(toml::Value::Table(table)) => table.iter().collect(),
        Some(other) => {
            problems.push(format!(
                "attributes: expected a table of attributes ([attributes.KEY]), got a {}.",
                other.type_str()
            ));
            BTreeMap::new()
        }
    };
    for (key, value) in attributes {
        match declare(key, value) {
            Ok(d) => declared.push(d),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(declared)
    } else {
        Err(problems)
    }
}

/// One `[attributes.KEY]` table as a definition, or the first problem with it.
fn declare(key: &str, value: &toml::Value) -> Result<Declared, String> {
    let at = |field: &str, problem: &str| format!("attributes.{key}.{field}: {problem}");
    let toml::Value::Table(table) = value else {
        return Err(format!(
            "attributes.{key}: expected a table ([attributes.{key}]), got a {}.",
            value.type_str()
        ));
    };
    let string = |field: &str| match table.get(field) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(at(
            field,
            &format!("expected a string, got a {}.", other.type_str()),
        )),
    };
    let attribute_type = match string("type")? {
        Some(t) => AttributeType::parse(&t).map_err(|e| locate(key, e.message()))?,
        None => {
            return Err(at(
                "type",
                "missing; set it to text, number, boolean, date, single_choice or multi_choice.",
            ));
        }
    };
    let archived = match table.get("archived") {
        None => None,
        Some(toml::Value::Boolean(b)) => Some(*b),
        Some(other) => {
            return Err(at(
                "archived",
                &format!("expected true or false, got a {}.", other.type_str()),
            ));
        }
    };
    let mut config = Map::new();
    for (field, value) in table {
        if !matches!(
            field.as_str(),
            "type" | "display_name" | "description" | "archived"
        ) {
            config.insert(
                field.clone(),
                toml_to_json(value).map_err(|p| at(field, &p))?,
            );
        }
    }
    let config = AttributeConfig::from_json(attribute_type, &Json::Object(config))
        .map_err(|e| locate(key, e.message()))?;
    let attribute = AttributeKey::parse(key).map_err(|e| locate(key, e.message()))?;
    let definition = AttributeDefinition::new(
        attribute,
        config,
        string("display_name")?,
        string("description")?,
    )
    .map_err(|e| locate(key, e.message()))?;
    Ok(Declared {
        definition,
        archived,
    })
}

/// A domain message (which starts with the field it is about, such as
/// `config.options[0]: ...`) placed in the file: `attributes.KEY.options[0]: ...`.
fn locate(key: &str, message: &str) -> String {
    match message.split_once(": ") {
        Some(("key" | "config", rest)) => format!("attributes.{key}: {rest}"),
        Some((field, rest)) if !field.contains(' ') => {
            let field = field.strip_prefix("config.").unwrap_or(field);
            format!("attributes.{key}.{field}: {rest}")
        }
        _ => format!("attributes.{key}: {message}"),
    }
}

/// A TOML value as the JSON a config is read from.
fn toml_to_json(value: &toml::Value) -> Result<Json, String> {
    Ok(match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| format!("{f} is not a finite number."))?,
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => {
            Json::Array(items.iter().map(toml_to_json).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => Json::Object(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), toml_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// A TOML syntax error on one line, with its line and column.
fn toml_problem(text: &str, error: &toml::de::Error) -> String {
    let message = error
        .message()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: invalid TOML: {message}")
        }
        None => format!("invalid TOML: {message}"),
    }
}

// ---- flags and output ----

/// The config fields, as flags of `attributes define`; longer names first so
/// that `config.max` does not match inside `config.max_length`.
const FLAGS: [(&str, &str); 11] = [
    ("max_length", "--max-length"),
    ("max_items", "--max-items"),
    ("allow_custom", "--allow-custom"),
    ("include_time", "--include-time"),
    ("options", "--option"),
    ("truncate", "--truncate"),
    ("integer", "--integer"),
    ("min", "--min"),
    ("max", "--max"),
    ("display_name", "--display-name"),
    ("description", "--description"),
];

/// A domain message about config fields, in terms of the flags that set them.
fn in_flags(t: AttributeType, message: &str) -> String {
    let flag = |field: &str| {
        FLAGS
            .iter()
            .find(|(f, _)| *f == field)
            .map_or(field.to_owned(), |(_, flag)| (*flag).to_owned())
    };
    if let Some((field, rest)) = message.split_once(": ") {
        let field = field.strip_prefix("config.").unwrap_or(field);
        if let Some(list) = rest.strip_prefix("unknown field; the fields of this type are ") {
            let flags: Vec<String> = list.trim_end_matches('.').split(", ").map(flag).collect();
            return format!(
                "{} does not apply to {t} attributes; their flags are {}.",
                flag(field),
                flags.join(", ")
            );
        }
        if rest.starts_with("this type has no config fields") {
            return format!(
                "{} does not apply to {t} attributes, which have no config.",
                flag(field)
            );
        }
    }
    let mut out = message.to_owned();
    for (field, flag) in FLAGS {
        out = out.replace(&format!("config.{field}"), flag);
        if let Some(rest) = out.strip_prefix(&format!("{field}:")) {
            out = format!("{flag}:{rest}");
        }
    }
    out
}

fn parse_type(s: &str) -> Result<AttributeType, String> {
    AttributeType::parse(s).map_err(|e| {
        let message = e.message();
        message.strip_prefix("type: ").unwrap_or(message).to_owned()
    })
}

fn parse_finite(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err("expected a finite number such as 0, -5 or 2.5".to_owned()),
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// A time for scripts: RFC 3339, UTC, microseconds (what the databases keep).
fn json_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A time for people.
fn human_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn workspace_json(w: &Workspace) -> Json {
    json!({"id": w.id.to_string(), "name": w.name, "created_at": json_time(w.created_at)})
}

fn key_json(k: &ApiKeyRecord) -> Json {
    json!({
        "id": k.id.to_string(),
        "display_prefix": k.display_prefix,
        "kind": k.kind.as_str(),
        "mode": k.mode.as_str(),
        "created_at": json_time(k.created_at),
        "revoked_at": k.revoked_at.map(json_time),
    })
}

/// A new key: its record and, this once, the key itself.
fn new_key_json(key: &ApiKey, record: &ApiKeyRecord) -> Json {
    let mut value = key_json(record);
    value["key"] = Json::String(key.expose().to_owned());
    value
}

fn definition_json(r: &DefinitionRecord) -> Json {
    json!({
        "key": r.key,
        "type": r.attr_type,
        "config": r.config,
        "display_name": r.display_name,
        "description": r.description,
        "archived": r.archived,
        "created_at": json_time(r.created_at),
        "updated_at": json_time(r.updated_at),
    })
}

/// Rows under a header, in columns as wide as their widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_messages_name_the_flags() {
        assert_eq!(
            in_flags(
                AttributeType::Text,
                "config.options: unknown field; the fields of this type are max_length, truncate."
            ),
            "--option does not apply to text attributes; their flags are --max-length, --truncate."
        );
        assert_eq!(
            in_flags(
                AttributeType::Number,
                "config.min: 2 is greater than config.max 1; min must not exceed max."
            ),
            "--min: 2 is greater than --max 1; min must not exceed max."
        );
        assert_eq!(
            in_flags(
                AttributeType::Text,
                "display_name: it is 300 characters long"
            ),
            "--display-name: it is 300 characters long"
        );
    }

    #[test]
    fn schema_problems_are_placed_in_the_file() {
        assert_eq!(
            locate("bio", "config.maxLength: unknown field; the fields ..."),
            "attributes.bio.maxLength: unknown field; the fields ..."
        );
        assert_eq!(
            locate("Bio", "key: \"Bio\" is not a valid attribute key"),
            "attributes.Bio: \"Bio\" is not a valid attribute key"
        );
        assert_eq!(
            locate("bio", "display_name: too long"),
            "attributes.bio.display_name: too long"
        );
    }

    #[test]
    fn a_schema_file_is_checked_whole() {
        let problems = parse_schema(
            "[attributes.persona]\ntype = \"single_choice\"\noptions = []\n\
             [attributes.bio]\ntype = \"text\"\nmaxLength = 3\n\
             [attributes.ok]\ntype = \"boolean\"\n\
             [attribute.typo]\ntype = \"text\"\n",
        )
        .err()
        .expect("problems");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("attribute: unknown top-level key"));
        assert!(problems[1].starts_with("attributes.bio.maxLength: unknown field"));
        assert!(problems[2].starts_with("attributes.persona.options: no options"));

        let e = parse_schema("[attributes.x]\ntype = \n")
            .err()
            .expect("bad TOML");
        assert!(e[0].starts_with("line 2, column "), "{e:?}");
    }
}
