//! The operator commands, run as the real binary against a SQLite file of
//! their own, and checked through a real server where their effect is on
//! the API.

use std::{
    path::PathBuf,
    process::{Command, Output},
    time::{Duration, Instant},
};

use prost_types::{Value, value::Kind};
use serde_json::Value as Json;
use tempfile::TempDir;
use tonic::{Code, Request, transport::Channel};
use vevee_attributes::proto::v1::{
    GetAttributeDefinitionRequest, GetWorkspaceSettingsRequest, SetAttributeRequest,
    attribute_definitions_service_client::AttributeDefinitionsServiceClient,
    attributes_service_client::AttributesServiceClient,
    workspace_settings_service_client::WorkspaceSettingsServiceClient,
};

#[path = "common/process.rs"]
mod process;

use process::ServerProcess;

const BIN: &str = env!("CARGO_BIN_EXE_vevee-attributes");

/// A database file in a directory of its own, and files beside it.
struct Db {
    dir: TempDir,
    url: String,
}

impl Db {
    /// A new database, migrated: only `migrate` (and `serve`) create one.
    fn new() -> Db {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let db = Db { dir, url };
        db.ok(&["migrate"]);
        db
    }

    /// Writes `text` to `name` beside the database and returns its path.
    fn file(&self, name: &str, text: &str) -> String {
        let path: PathBuf = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write the file");
        path.display().to_string()
    }

    /// Runs the binary with `args`, this database as DATABASE_URL (the
    /// serve flag's env fallback, so both are checked to agree) and `env`.
    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("DATABASE_URL", &self.url)
            .env("RUST_LOG", "warn")
            .env_remove("VEVEE_WORKSPACE")
            .env_remove("LOG_FORMAT");
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("the binary runs")
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run_with(args, &[]);
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// Runs a command with `--json` that must succeed; its JSON.
    fn json(&self, args: &[&str]) -> Json {
        let mut args = args.to_vec();
        args.push("--json");
        let stdout = self.ok(&args);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
    }

    /// Runs a command that must fail with one line `error: ...`; that line.
    fn fails(&self, args: &[&str]) -> String {
        fails(self.run_with(args, &[]), args)
    }

    /// Every definition, archived ones too, as `attributes list --json` prints them.
    fn definitions(&self) -> Json {
        self.json(&["attributes", "list", "--include-archived"])
    }
}

fn fails(output: Output, args: &[&str]) -> String {
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 errors");
    assert!(!output.status.success(), "{args:?} succeeded");
    let line = stderr.trim_end();
    assert!(
        line.starts_with("error: ") && !line.contains('\n'),
        "{args:?}: expected one line `error: ...`, got {stderr:?}"
    );
    line.to_owned()
}

/// `workspace create NAME --json`, and its key of `kind` and `mode`.
fn create_workspace(db: &Db, name: &str) -> Json {
    db.json(&["workspace", "create", name])
}

fn key_of(created: &Json, kind: &str, mode: &str) -> String {
    created["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kind"] == kind && k["mode"] == mode)
        .and_then(|k| k["key"].as_str())
        .unwrap_or_else(|| panic!("no {kind} {mode} key in {created}"))
        .to_owned()
}

fn define_persona(db: &Db) {
    db.ok(&[
        "attributes",
        "define",
        "persona",
        "--type",
        "single_choice",
        "--option",
        "teacher",
        "--option",
        "student",
        "--display-name",
        "Persona",
    ]);
}

/// `vevee-attributes serve` on a free port of this database.
struct Server(ServerProcess);

impl Server {
    fn start(db: &Db, extra: &[&str]) -> Server {
        let mut flags = vec!["--no-bootstrap"];
        flags.extend_from_slice(extra);
        Server(ServerProcess::start(&db.url, &flags))
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.0.addr))
            .expect("a valid URI")
            .connect()
            .await
            .expect("connects")
    }
}

fn authed<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ASCII metadata"),
    );
    request
}

fn string(s: &str) -> Option<Value> {
    Some(Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    })
}

fn set_persona(value: &str) -> SetAttributeRequest {
    SetAttributeRequest {
        distinct_id: "user-1".into(),
        attribute: "persona".into(),
        value: string(value),
        ..Default::default()
    }
}

const SCHEMA: &str = r#"
[attributes.persona]
type = "single_choice"
options = ["teacher", "student"]
display_name = "Persona"

[attributes.topics]
type = "multi_choice"
options = ["history", "math", "science", "art"]

[attributes.age]
type = "number"
min = 0
max = 150
integer = true
description = "Age in years."
"#;

#[tokio::test]
async fn a_created_workspace_prints_keys_that_work_over_grpc() {
    let db = Db::new();
    let created = create_workspace(&db, "acme");
    assert_eq!(created["workspace"]["name"], "acme");
    let keys = created["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 4);
    for (kind, mode, prefix) in [
        ("secret", "live", "sk_live_"),
        ("public", "live", "pk_live_"),
        ("secret", "test", "sk_test_"),
        ("public", "test", "pk_test_"),
    ] {
        assert!(key_of(&created, kind, mode).starts_with(prefix));
    }
    let secret = key_of(&created, "secret", "live");
    define_persona(&db);
    // Listing shows prefixes, never a key.
    let listed = db.ok(&["keys", "list"]);
    assert!(listed.contains(&secret[..12]), "{listed}");
    assert!(!listed.contains(&secret), "{listed}");

    // On the single-threaded runtime, which the default multi-threaded one
    // does not exercise.
    let server = Server::start(&db, &["--worker-threads", "1"]);
    let channel = server.channel().await;
    let stored = AttributesServiceClient::new(channel.clone())
        .set_attribute(authed(&secret, set_persona(" Teacher ")))
        .await
        .expect("the printed secret key writes")
        .into_inner();
    assert_eq!(stored.value, string("teacher"));
    let definition = AttributeDefinitionsServiceClient::new(channel)
        .get_attribute_definition(authed(
            &secret,
            GetAttributeDefinitionRequest {
                key: "persona".into(),
            },
        ))
        .await
        .expect("the definition is visible")
        .into_inner();
    assert_eq!(definition.display_name, "Persona");
}

#[test]
fn applying_a_schema_twice_changes_nothing_the_second_time() {
    let db = Db::new();
    create_workspace(&db, "acme");
    let schema = db.file("schema.toml", SCHEMA);

    let first = db.json(&["attributes", "apply", &schema]);
    assert_eq!(
        first["created"],
        serde_json::json!(["age", "persona", "topics"])
    );
    assert_eq!(first["updated"], serde_json::json!([]));
    let before = db.definitions();
    assert_eq!(before[0]["config"]["min"], 0.0);
    assert_eq!(before[1]["display_name"], "Persona");

    let second = db.json(&["attributes", "apply", &schema]);
    assert_eq!(second["created"], serde_json::json!([]));
    assert_eq!(second["updated"], serde_json::json!([]));
    assert_eq!(
        second["unchanged"],
        serde_json::json!(["age", "persona", "topics"])
    );
    assert_eq!(
        db.definitions(),
        before,
        "nothing, not even updated_at, moved"
    );
    let text = db.ok(&["attributes", "apply", &schema]);
    assert!(text.contains("created 0, updated 0, unchanged 3"), "{text}");

    // A changed file updates only what changed, and archives as told.
    let changed = SCHEMA
        .replace(
            r#"["teacher", "student"]"#,
            r#"["teacher", "student", "parent"]"#,
        )
        .replace(
            "[attributes.topics]\n",
            "[attributes.topics]\narchived = true\n",
        );
    let changed = db.file("schema.toml", &changed);
    let third = db.json(&["attributes", "apply", &changed]);
    assert_eq!(third["updated"], serde_json::json!(["persona", "topics"]));
    assert_eq!(third["unchanged"], serde_json::json!(["age"]));
    assert_eq!(third["changes"]["persona"], serde_json::json!(["config"]));
    assert_eq!(third["changes"]["topics"], serde_json::json!(["archived"]));
    let after = db.definitions();
    assert_eq!(after[0], before[0], "age is untouched");
    assert_eq!(after[1]["config"]["options"][2], "parent");
    assert_eq!(after[1]["display_name"], "Persona");
    assert_ne!(after[1]["updated_at"], before[1]["updated_at"]);
    assert_eq!(after[2]["archived"], true);
    let active = db.json(&["attributes", "list"]);
    assert_eq!(active.as_array().map(Vec::len), Some(2), "{active}");
}

#[test]
fn a_type_change_or_a_bad_config_fails_and_writes_nothing() {
    let db = Db::new();
    create_workspace(&db, "acme");
    db.json(&["attributes", "apply", &db.file("schema.toml", SCHEMA)]);
    let before = db.definitions();

    let retyped = db.file(
        "retyped.toml",
        &format!(
            "{}\n[attributes.plan]\ntype = \"text\"\n",
            SCHEMA.replace("type = \"single_choice\"", "type = \"multi_choice\"")
        ),
    );
    let error = db.fails(&["attributes", "apply", &retyped]);
    assert!(
        error.contains("attributes.persona: \"persona\" is a single_choice attribute and its type cannot change to multi_choice"),
        "{error}"
    );
    assert!(error.ends_with("nothing was applied."), "{error}");
    assert_eq!(db.definitions(), before, "plan was not created");

    let bad = db.file(
        "bad.toml",
        "[attributes.plan]\ntype = \"text\"\n\n[attributes.bio]\ntype = \"text\"\nmaxLength = 10\n",
    );
    let error = db.fails(&["attributes", "apply", &bad]);
    assert!(
        error.contains("attributes.bio.maxLength: unknown field; the fields of this type are max_length, truncate; nothing"),
        "{error}"
    );
    assert_eq!(db.definitions(), before, "plan was not created");

    let broken = db.file("broken.toml", "[attributes.plan\ntype = \"text\"\n");
    let error = db.fails(&["attributes", "apply", &broken]);
    assert!(error.contains("line 1, column"), "{error}");

    let error = db.fails(&[
        "attributes",
        "define",
        "bio",
        "--type",
        "text",
        "--option",
        "x",
    ]);
    assert_eq!(
        error,
        "error: --option does not apply to text attributes; their flags are --max-length, \
         --truncate."
    );
    let error = db.fails(&["attributes", "define", "persona", "--type", "boolean"]);
    assert!(error.contains("\"persona\" is already declared"), "{error}");
    assert_eq!(db.definitions(), before);
}

#[tokio::test]
async fn a_revoked_key_stops_working_within_the_cache_ttl() {
    let db = Db::new();
    let created = create_workspace(&db, "acme");
    let secret = key_of(&created, "secret", "live");
    define_persona(&db);
    let server = Server::start(&db, &["--cache-ttl", "200ms"]);
    let mut client = AttributesServiceClient::new(server.channel().await);
    client
        .set_attribute(authed(&secret, set_persona("student")))
        .await
        .expect("the key works before it is revoked");

    let id = created["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["key"] == secret.as_str()))
        .and_then(|k| k["id"].as_str())
        .expect("the key's id")
        .to_owned();
    let revoked = db.json(&["keys", "revoke", &id]);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let listed = db.json(&["keys", "list"]);
    let record = listed
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["id"] == id.as_str()))
        .expect("listed");
    assert!(record["revoked_at"].is_string(), "{record}");

    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match client
            .set_attribute(authed(&secret, set_persona("student")))
            .await
        {
            Err(status) if status.code() == Code::Unauthenticated => break,
            other => assert!(
                Instant::now() < deadline,
                "still accepted 2s after revocation: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A new key works at once: unknown keys are not cached for longer than the TTL.
    let new = db.json(&["keys", "create", "--kind", "secret", "--mode", "test"]);
    let new_key = new["key"].as_str().expect("the new key");
    assert!(new_key.starts_with("sk_test_"));
    client
        .set_attribute(authed(new_key, set_persona("teacher")))
        .await
        .expect("the new key writes");
}

#[tokio::test]
async fn turning_client_attribute_writes_on_is_visible_through_the_api() {
    let db = Db::new();
    let created = create_workspace(&db, "acme");
    define_persona(&db);
    assert_eq!(
        db.json(&["settings", "get"])["client_attribute_writes"],
        false
    );
    let text = db.ok(&["settings", "set", "client-attribute-writes", "on"]);
    assert!(
        text.starts_with("client-attribute-writes: on (was off)"),
        "{text}"
    );
    assert_eq!(
        db.json(&["settings", "get"])["client_attribute_writes"],
        true
    );

    // On the single-threaded runtime, which the default multi-threaded one
    // does not exercise.
    let server = Server::start(&db, &["--worker-threads", "1"]);
    let channel = server.channel().await;
    let settings = WorkspaceSettingsServiceClient::new(channel.clone())
        .get_workspace_settings(authed(
            &key_of(&created, "secret", "live"),
            GetWorkspaceSettingsRequest {},
        ))
        .await
        .expect("settings")
        .into_inner();
    assert!(settings.client_attribute_writes);
    AttributesServiceClient::new(channel)
        .set_attribute(authed(
            &key_of(&created, "public", "live"),
            set_persona("teacher"),
        ))
        .await
        .expect("a public key writes");
}

#[test]
fn migrate_succeeds_on_a_fresh_database() {
    let db = Db::new();
    let text = db.ok(&["migrate"]);
    assert!(text.contains("schema is up to date"), "{text}");
    assert_eq!(db.json(&["migrate"])["migrated"], true);
    assert_eq!(db.json(&["workspace", "list"]), serde_json::json!([]));
    let error = db.fails(&["keys", "list"]);
    assert!(error.contains("no workspace yet"), "{error}");
}

#[test]
fn several_workspaces_need_an_explicit_choice() {
    let db = Db::new();
    create_workspace(&db, "acme");
    let other = create_workspace(&db, "globex");
    let error = db.fails(&["settings", "get"]);
    assert_eq!(
        error,
        "error: the database has 2 workspaces; pick one with --workspace ID or VEVEE_WORKSPACE \
         (`workspace list` shows them)."
    );
    let id = other["workspace"]["id"].as_str().expect("an id");
    db.ok(&[
        "settings",
        "set",
        "client-attribute-writes",
        "on",
        "--workspace",
        id,
    ]);
    let by_env = db.run_with(&["settings", "get", "--json"], &[("VEVEE_WORKSPACE", id)]);
    assert!(by_env.status.success());
    let settings: Json = serde_json::from_slice(&by_env.stdout).expect("JSON");
    assert_eq!(settings["client_attribute_writes"], true);
    let missing = uuid::Uuid::new_v4().to_string();
    let error = db.fails(&["keys", "list", "--workspace", &missing]);
    assert!(error.contains("no such workspace"), "{error}");
}

#[test]
fn client_writable_is_set_by_define_and_by_the_schema_file() {
    let db = Db::new();
    create_workspace(&db, "acme");
    let defined = db.json(&[
        "attributes",
        "define",
        "plan",
        "--type",
        "text",
        "--client-writable",
        "off",
    ]);
    assert_eq!(defined["client_writable"], false);
    db.ok(&["attributes", "define", "name", "--type", "text"]);
    let listed = db.definitions();
    assert_eq!(listed[0]["key"], "name");
    assert_eq!(listed[0]["client_writable"], true, "the default");

    // The file states the whole definition: absent means writable.
    let schema = db.file(
        "schema.toml",
        "[attributes.name]\ntype = \"text\"\nclient_writable = false\n\
         [attributes.plan]\ntype = \"text\"\n",
    );
    let applied = db.json(&["attributes", "apply", &schema]);
    assert_eq!(
        applied["changes"]["name"],
        serde_json::json!(["client_writable"])
    );
    assert_eq!(
        applied["changes"]["plan"],
        serde_json::json!(["client_writable"])
    );
    let after = db.definitions();
    assert_eq!(after[0]["client_writable"], false);
    assert_eq!(after[1]["client_writable"], true);
    let unchanged = db.json(&["attributes", "apply", &schema]);
    assert_eq!(unchanged["unchanged"], serde_json::json!(["name", "plan"]));

    let bad = db.file(
        "bad.toml",
        "[attributes.name]\ntype = \"text\"\nclient_writable = \"no\"\n",
    );
    let error = fails(db.run_with(&["attributes", "apply", &bad], &[]), &["apply"]);
    assert!(
        error.contains("attributes.name.client_writable: expected true or false"),
        "{error}"
    );
}

#[test]
fn the_browser_write_controls_are_set_and_secrets_managed_from_the_cli() {
    let db = Db::new();
    create_workspace(&db, "acme");
    let settings = db.json(&["settings", "get"]);
    assert_eq!(settings["identity_verification"], "off");
    assert_eq!(settings["allowed_origins"], serde_json::json!([]));

    let text = db.ok(&["settings", "set", "identity-verification", "required"]);
    assert!(
        text.starts_with("identity-verification: required (was off)"),
        "{text}"
    );
    let set = db.json(&[
        "settings",
        "set",
        "allowed-origins",
        "https://app.example.com, https://*.example.com",
    ]);
    assert_eq!(
        set["allowed_origins"],
        serde_json::json!(["https://app.example.com", "https://*.example.com"])
    );
    assert_eq!(
        db.json(&["settings", "get"])["identity_verification"],
        "required"
    );
    let any = db.ok(&["settings", "set", "allowed-origins", ""]);
    assert!(any.starts_with("allowed-origins: (any) (was "), "{any}");
    // Values outside each setting's range, refused with what is allowed.
    let bad = db.fails(&["settings", "set", "identity-verification", "sometimes"]);
    assert!(bad.contains("`off` or `required`"), "{bad}");
    let bad = db.fails(&["settings", "set", "client-attribute-writes", "yes"]);
    assert!(bad.contains("`on` or `off`"), "{bad}");
    let bad = db.fails(&["settings", "set", "allowed-origins", "ftp://x"]);
    assert!(bad.starts_with("error: "), "{bad}");

    // Secrets: shown once at creation, listed by prefix, revoked by id.
    let first = db.json(&["identity-secrets", "create"]);
    let secret = first["secret"].as_str().expect("the secret, once");
    assert!(secret.starts_with("vis_"), "{secret}");
    let second = db.json(&["identity-secrets", "create"]);
    let refused = db.fails(&["identity-secrets", "create"]);
    assert!(refused.contains("revoke"), "two active at most: {refused}");
    let listed = db.json(&["identity-secrets", "list"]);
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|s| s.get("secret").is_none()),
        "never listed"
    );
    let text = db.ok(&["identity-secrets", "list"]);
    assert!(!text.contains(secret), "{text}");
    let id = first["id"].as_str().unwrap();
    let revoked = db.json(&["identity-secrets", "revoke", id]);
    assert!(revoked["revoked_at"].is_string());
    db.json(&["identity-secrets", "create"]);
    assert!(second["id"].is_string());
    let missing = db.fails(&["identity-secrets", "revoke", "not-an-id"]);
    assert!(missing.starts_with("error: "), "{missing}");
}

#[tokio::test]
async fn persons_export_writes_every_person_of_a_mode_as_ndjson() {
    let db = Db::new();
    let created = create_workspace(&db, "acme");
    define_persona(&db);
    let server = Server::start(&db, &[]);
    let mut client = AttributesServiceClient::new(server.channel().await);
    let mut ids = std::collections::HashMap::new();
    for (key, user, persona) in [
        ("live", "user-1", "teacher"),
        ("live", "user-2", "student"),
        ("live", "user-3", "teacher"),
        ("test", "user-1", "student"),
    ] {
        let written = client
            .set_attribute(authed(
                &key_of(&created, "secret", key),
                SetAttributeRequest {
                    distinct_id: user.into(),
                    ..set_persona(persona)
                },
            ))
            .await
            .expect("a write")
            .into_inner();
        ids.insert((key, user), written.person_id);
    }
    let lines = |text: &str| -> Vec<Json> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };

    let output = db.run_with(&["persons", "export"], &[]);
    assert!(output.status.success(), "{output:?}");
    let live = lines(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(live.len(), 3, "{live:?}");
    for person in &live {
        let user = person["distinct_id"].as_str().unwrap();
        assert_eq!(person["person_id"], ids[&("live", user)].as_str());
        let persona = if user == "user-2" {
            "student"
        } else {
            "teacher"
        };
        assert_eq!(
            person["attributes"],
            serde_json::json!({"persona": persona})
        );
    }
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("exported 3 persons"), "{stderr}");

    let file = db.dir.path().join("test.ndjson");
    let workspace = created["workspace"]["id"].as_str().unwrap();
    let file_arg = file.display().to_string();
    let printed = db.ok(&[
        "persons",
        "export",
        "--mode",
        "test",
        "--workspace",
        workspace,
        "--output",
        &file_arg,
    ]);
    assert_eq!(printed, "", "the export went to the file");
    let test = lines(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(test.len(), 1);
    assert_eq!(test[0]["person_id"], ids[&("test", "user-1")].as_str());
    assert_eq!(test[0]["attributes"]["persona"], "student");

    let line = db.fails(&["persons", "export", "--attribute", "undeclared"]);
    assert!(line.contains("undeclared"), "{line}");
}
