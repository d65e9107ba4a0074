//! Running the service as an operator does (CONTRACT.md section 12, issue
//! 17): the real binary's flag checks, its database and schema checks, its
//! backups, and its log lines.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use prost_types::{Value, value::Kind};
use serde_json::Value as Json;
use tempfile::TempDir;
use tonic::{Code, Request, transport::Channel};
use vevee_attributes::proto::v1::{
    AttributeType, CreateAttributeDefinitionRequest, GetAttributesRequest, SetAttributeRequest,
    attribute_definitions_service_client::AttributeDefinitionsServiceClient,
    attributes_service_client::AttributesServiceClient,
};

const BIN: &str = env!("CARGO_BIN_EXE_vevee-attributes");

/// The schema version this binary migrates to: the highest numbered file of
/// migrations/sqlite (both backends have the same numbers).
fn latest_migration() -> u32 {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .expect("the migrations directory")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.get(..4)?.parse().ok())
        .max()
        .expect("at least one migration")
}

/// A directory for a SQLite database (not created until a command does).
struct Dir {
    dir: TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.path("test.db").display())
    }
}

/// Runs the binary with `args` and the database `url`.
fn run(url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .env_remove("LOG_FORMAT")
        .env_remove("VEVEE_WORKSPACE")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `output` failed with status `code` and one line `error: ...`; that line.
fn one_line_failure(output: &Output, code: i32, what: &str) -> String {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{what}: {text}");
    let line = text.trim_end();
    assert!(
        line.starts_with("error: ") && !line.contains('\n'),
        "{what}: expected one line `error: ...`, got {text:?}"
    );
    assert!(!text.contains("panicked"), "{what}: {text}");
    line.to_owned()
}

#[test]
fn zero_and_nonsense_flag_values_are_refused_with_one_line_naming_the_flag_and_its_range() {
    let dir = Dir::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--db-max-connections", "0"], "--db-max-connections"),
        (
            &["--health-probe-interval", "0s"],
            "--health-probe-interval",
        ),
        (&["--concurrency-limit", "0"], "--concurrency-limit"),
        (&["--request-timeout", "0s"], "--request-timeout"),
        (&["--max-request-bytes", "0"], "--max-request-bytes"),
        (&["--db-acquire-timeout", "0s"], "--db-acquire-timeout"),
        (&["--max-write-batch", "0"], "--max-write-batch"),
        (
            &["--write-commits-in-flight", "0"],
            "--write-commits-in-flight",
        ),
        (&["--max-read-batch", "0"], "--max-read-batch"),
        (&["--reads-in-flight", "0"], "--reads-in-flight"),
        (&["--cache-ttl", "2h"], "--cache-ttl"),
        (
            &["--request-sweep-interval", "0s"],
            "--request-sweep-interval",
        ),
        (
            &["--http2-keepalive-interval", "0s"],
            "--http2-keepalive-interval",
        ),
        (&["--grpc-addr", "not-an-address"], "--grpc-addr"),
        (&["--grpc-addr", "localhost:99999"], "--grpc-addr"),
    ];
    for (flags, flag) in cases {
        let mut args = vec!["serve", "--no-bootstrap"];
        args.extend_from_slice(flags);
        let line = one_line_failure(&run(&dir.url(), &args), 2, flag);
        assert!(line.contains(flag), "{flags:?}: {line}");
        if *flag != "--grpc-addr" {
            assert!(line.contains("must be between"), "{flags:?}: {line}");
        }
    }
    // The operator commands check their database flags too.
    let line = one_line_failure(
        &run(
            &dir.url(),
            &["workspace", "list", "--db-max-connections", "0"],
        ),
        2,
        "workspace list",
    );
    assert!(line.contains("--db-max-connections"), "{line}");
    assert!(!dir.path("test.db").exists(), "nothing was created");
}

#[test]
fn clap_errors_keep_the_missing_arguments_the_suggestion_and_the_allowed_values() {
    let dir = Dir::new();
    let missing = run(&dir.url(), &["keys", "create"]);
    assert_eq!(missing.status.code(), Some(2));
    let text = stderr(&missing);
    assert!(text.contains("--kind") && text.contains("--mode"), "{text}");

    let typo = run(&dir.url(), &["serve", "--grpc-adr", "127.0.0.1:0"]);
    assert_eq!(typo.status.code(), Some(2));
    let text = stderr(&typo);
    assert!(
        text.contains("similar argument exists") && text.contains("--grpc-addr"),
        "{text}"
    );

    let value = run(
        &dir.url(),
        &["keys", "create", "--kind", "secrt", "--mode", "live"],
    );
    assert_eq!(value.status.code(), Some(2));
    let text = stderr(&value);
    assert!(
        text.contains("possible values") && text.contains("public"),
        "{text}"
    );
}

/// `vevee-attributes serve` whose every stderr line is kept; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `serve` with `args` (JSON logs, `info`), waits until it serves.
    fn start(url: &str, args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .env("DATABASE_URL", url)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = lines.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let json: Option<Json> = serde_json::from_str(&line).ok();
                if let Some(json) = &json
                    && json["message"] == "serving gRPC"
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(json["addr"].as_str().unwrap_or_default().to_owned());
                }
                kept.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the server serves: {:?}", lines.lock().unwrap()))
            .parse()
            .expect("a socket address");
        Server { child, addr, lines }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connects")
    }

    /// Stops the server and returns every line it wrote.
    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread sees the end of the pipe right after.
        std::thread::sleep(Duration::from_millis(200));
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_host_name_is_accepted_as_the_listen_address() {
    let dir = Dir::new();
    let server = Server::start(
        &dir.url(),
        &["--no-bootstrap", "--grpc-addr", "localhost:0"],
    );
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
}

#[test]
fn a_missing_sqlite_directory_fails_at_once_with_a_plain_message() {
    let dir = Dir::new();
    let url = format!("sqlite://{}/x.db", dir.path("no-such-dir").display());
    let started = Instant::now();
    let line = one_line_failure(
        &run(
            &url,
            &["serve", "--no-bootstrap", "--grpc-addr", "127.0.0.1:0"],
        ),
        1,
        "serve",
    );
    assert!(started.elapsed() < Duration::from_secs(10), "not retried");
    assert!(
        line.contains("does not exist") && line.contains("no-such-dir"),
        "{line}"
    );
}

/// The PostgreSQL of the tests, with its database or user replaced.
fn postgres_url(user: &str, database: &str) -> String {
    let base = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut url = url::Url::parse(&base).expect("TEST_DATABASE_URL is a URL");
    url.set_username(user).unwrap();
    url.set_path(database);
    url.to_string()
}

#[test]
fn a_missing_postgres_database_or_role_fails_at_once_with_a_plain_message() {
    for url in [
        postgres_url("postgres", "vevee_no_such_database"),
        postgres_url("vevee_no_such_role", "postgres"),
    ] {
        let started = Instant::now();
        let line = one_line_failure(&run(&url, &["workspace", "list"]), 1, &url);
        assert!(started.elapsed() < Duration::from_secs(10), "not retried");
        assert!(line.contains("does not exist"), "{line}");
        assert!(!line.contains("at line"), "{line}");
        assert!(!line.contains("unexpected"), "{line}");
    }
}

#[test]
fn the_cli_on_a_missing_database_file_creates_nothing_and_names_migrate() {
    let dir = Dir::new();
    for args in [
        &["workspace", "list"][..],
        &["workspace", "create", "acme"],
        &["attributes", "list"],
        &["backup", "/tmp/never-written.db"],
    ] {
        let line = one_line_failure(&run(&dir.url(), args), 1, &format!("{args:?}"));
        assert!(line.contains("vevee-attributes migrate"), "{line}");
        assert!(!dir.path("test.db").exists(), "{args:?} created the file");
    }
    assert!(run(&dir.url(), &["migrate"]).status.success());
    assert!(run(&dir.url(), &["workspace", "list"]).status.success());
}

/// Runs `sql` on the SQLite file of `dir` with the sqlite3 of sqlx.
async fn sqlite_exec(path: &Path, sql: &str) {
    use sqlx::{Connection, SqliteConnection};
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open the file");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .expect("the statement runs");
    conn.close().await.ok();
}

#[tokio::test]
async fn an_older_schema_is_refused_by_the_cli_with_the_command_to_run() {
    let dir = Dir::new();
    assert!(run(&dir.url(), &["migrate"]).status.success());
    // As if the last migration had never run: its row gone.
    sqlite_exec(
        &dir.path("test.db"),
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .await;
    let line = one_line_failure(
        &run(&dir.url(), &["workspace", "list"]),
        1,
        "workspace list",
    );
    assert!(line.contains("`vevee-attributes migrate`"), "{line}");
    assert!(
        line.contains(&format!("version {}", latest_migration() - 1))
            && line.contains(&format!("version {}", latest_migration())),
        "{line}"
    );
    // `serve --no-migrate` refuses it too; `serve` would migrate it.
    let line = one_line_failure(
        &run(
            &dir.url(),
            &["serve", "--no-migrate", "--grpc-addr", "127.0.0.1:0"],
        ),
        1,
        "serve --no-migrate",
    );
    assert!(line.contains("`vevee-attributes migrate`"), "{line}");
}

#[tokio::test]
async fn a_newer_schema_gets_a_plain_message_with_both_versions() {
    let dir = Dir::new();
    assert!(run(&dir.url(), &["migrate"]).status.success());
    sqlite_exec(
        &dir.path("test.db"),
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, \
         execution_time) VALUES (999, 'from the future', CURRENT_TIMESTAMP, TRUE, x'00', 0)",
    )
    .await;
    for args in [
        &["migrate"][..],
        &["workspace", "list"],
        &["serve", "--grpc-addr", "127.0.0.1:0"],
    ] {
        let line = one_line_failure(&run(&dir.url(), args), 1, &format!("{args:?}"));
        assert!(line.contains("version 999"), "{args:?}: {line}");
        assert!(
            line.contains(&format!("version {}", latest_migration())),
            "{args:?}: {line}"
        );
        assert!(!line.contains("previously applied"), "{args:?}: {line}");
    }
    // The previous release during a rolling upgrade: runs on it, unmigrated.
    let server = Server::start(
        &dir.url(),
        &[
            "--no-migrate",
            "--no-bootstrap",
            "--grpc-addr",
            "127.0.0.1:0",
        ],
    );
    let lines = server.stop();
    assert!(
        lines.iter().any(|l| l.contains("newer than this binary")),
        "{lines:?}"
    );
}

/// A new, empty PostgreSQL database of its own; dropped by [`drop_postgres`].
async fn fresh_postgres() -> (String, String) {
    use sqlx::{Connection, PgConnection};
    let name = format!("vevee_ops_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&postgres_url("postgres", "postgres"))
        .await
        .expect("PostgreSQL of TEST_DATABASE_URL is reachable");
    // The name is made of hex digits above.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create the database");
    admin.close().await.ok();
    (postgres_url("postgres", &name), name)
}

async fn drop_postgres(name: &str) {
    use sqlx::{Connection, PgConnection};
    if let Ok(mut admin) = PgConnection::connect(&postgres_url("postgres", "postgres")).await {
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&mut admin)
            .await;
    }
}

#[tokio::test]
async fn on_postgres_a_newer_schema_gets_the_plain_message_and_backup_names_pg_dump() {
    let (url, name) = fresh_postgres().await;
    let migrate = run(&url, &["migrate"]);
    assert!(migrate.status.success(), "{}", stderr(&migrate));
    let line = one_line_failure(
        &run(&url, &["backup", "/tmp/never-written.db"]),
        1,
        "backup",
    );
    assert!(line.contains("pg_dump"), "{line}");

    use sqlx::{Connection, PgConnection};
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (999, 'from the future', TRUE, '\\x00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    for args in [&["migrate"][..], &["workspace", "list"]] {
        let line = one_line_failure(&run(&url, args), 1, &format!("{args:?}"));
        assert!(
            line.contains("version 999")
                && line.contains(&format!("version {}", latest_migration())),
            "{line}"
        );
        assert!(!line.contains("previously applied"), "{line}");
    }
    drop_postgres(&name).await;
}

fn authed<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

fn text(s: &str) -> Option<Value> {
    Some(Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    })
}

/// `workspace create` on the database: its secret live key and workspace id.
fn workspace(url: &str) -> (String, String) {
    let (created, key) = workspace_key(url, "secret");
    (key, created["workspace"]["id"].as_str().unwrap().to_owned())
}

/// `workspace create` on the database: what it printed, and its live key of `kind`.
fn workspace_key(url: &str, kind: &str) -> (Json, String) {
    let output = run(url, &["workspace", "create", "acme", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let created: Json = serde_json::from_slice(&output.stdout).unwrap();
    let key = created["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == kind && k["mode"] == "live")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    (created, key)
}

async fn define_text(channel: &Channel, key: &str, attribute: &str) {
    AttributeDefinitionsServiceClient::new(channel.clone())
        .create_attribute_definition(authed(
            key,
            CreateAttributeDefinitionRequest {
                key: attribute.into(),
                r#type: AttributeType::Text.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("defined");
}

async fn set_text(
    channel: &Channel,
    key: &str,
    who: &str,
    value: &str,
) -> Result<(), tonic::Status> {
    AttributesServiceClient::new(channel.clone())
        .set_attribute(authed(
            key,
            SetAttributeRequest {
                distinct_id: who.into(),
                attribute: "bio".into(),
                value: text(value),
                ..Default::default()
            },
        ))
        .await
        .map(drop)
}

#[tokio::test]
async fn backup_under_concurrent_writes_is_consistent_and_holds_every_acknowledged_write() {
    let dir = Dir::new();
    assert!(run(&dir.url(), &["migrate"]).status.success());
    let (key, _) = workspace(&dir.url());
    let server = Server::start(
        &dir.url(),
        &["--no-bootstrap", "--grpc-addr", "127.0.0.1:0"],
    );
    let channel = server.channel().await;
    define_text(&channel, &key, "bio").await;
    for i in 0..50 {
        set_text(&channel, &key, &format!("before-{i}"), "acknowledged")
            .await
            .unwrap();
    }
    // Writers keep going while the backup runs.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (channel, key, stop) = (channel.clone(), key.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                set_text(&channel, &key, &format!("during-{w}-{n}"), "x")
                    .await
                    .unwrap();
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let copy = dir.path("copy.db");
    let url = dir.url();
    let copy_arg = copy.display().to_string();
    let output = tokio::task::spawn_blocking(move || run(&url, &["backup", &copy_arg]))
        .await
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut during = 0;
    for writer in writers {
        during += writer.await.unwrap();
    }
    assert!(during > 0, "writes ran during the backup");
    drop(server);

    use sqlx::{Connection, SqliteConnection};
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", copy.display()))
        .await
        .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    let before: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM persons p JOIN attribute_values v \
         ON v.workspace_id = p.workspace_id AND v.person_id = p.person_id \
         WHERE p.distinct_id LIKE 'before-%'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        before, 50,
        "every write acknowledged before the backup is in the copy"
    );
    conn.close().await.ok();

    // The copy serves: the CLI reads it as a database of its own.
    let restored = run(
        &format!("sqlite://{}", copy.display()),
        &["workspace", "list"],
    );
    assert!(restored.status.success(), "{}", stderr(&restored));
    // It never overwrites.
    let again = run(&dir.url(), &["backup", &copy.display().to_string()]);
    assert!(one_line_failure(&again, 1, "backup again").contains("exists"));
}

#[tokio::test]
async fn a_refused_rpc_logs_one_json_line_with_reason_ids_peer_and_request_id_and_no_secrets() {
    let dir = Dir::new();
    assert!(run(&dir.url(), &["migrate"]).status.success());
    let (key, workspace_id) = workspace(&dir.url());
    let server = Server::start(
        &dir.url(),
        &["--no-bootstrap", "--grpc-addr", "127.0.0.1:0"],
    );
    let channel = server.channel().await;
    define_text(&channel, &key, "bio").await;
    let secret_value = "value-7f3c9e-secret";
    let secret_person = "person-52ab1d-private";
    set_text(&channel, &key, secret_person, secret_value)
        .await
        .unwrap();

    // Refused: an undeclared attribute, with a request id and a traceparent.
    let mut request = authed(
        &key,
        SetAttributeRequest {
            distinct_id: secret_person.into(),
            attribute: "nope".into(),
            value: text(secret_value),
            ..Default::default()
        },
    );
    request
        .metadata_mut()
        .insert("x-request-id", "req-4711".parse().unwrap());
    request.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let status = AttributesServiceClient::new(channel.clone())
        .set_attribute(request)
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("req-4711"),
        "the request id comes back"
    );
    // A request without one gets one made.
    let ok = AttributesServiceClient::new(channel.clone())
        .get_attributes(authed(
            &key,
            GetAttributesRequest {
                distinct_id: secret_person.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("read");
    assert!(ok.metadata().get("x-request-id").is_some());
    // An unknown key: refused before any workspace is known.
    let _ = set_text(
        &channel,
        "sk_live_notakey0000000000000000",
        "p",
        secret_value,
    )
    .await;
    // A valid public key refused by the key checks: its workspace is named.
    let (other, public_key) = workspace_key(&dir.url(), "public");
    let mut request = authed(
        &public_key,
        GetAttributesRequest {
            distinct_id: secret_person.into(),
            ..Default::default()
        },
    );
    request
        .metadata_mut()
        .insert("x-request-id", "req-public".parse().unwrap());
    let status = AttributesServiceClient::new(channel.clone())
        .get_attributes(request)
        .await
        .expect_err("a public key may not read");
    assert_eq!(status.code(), Code::PermissionDenied);

    let lines = server.stop();
    let refused: Vec<Json> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter(|j| j["span"]["request_id"] == "req-4711")
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "one line for the refused call: {lines:#?}"
    );
    let line = &refused[0];
    assert_eq!(line["message"], "rpc refused", "{line}");
    let span = &line["span"];
    assert_eq!(span["reason"], "attribute_not_defined", "{line}");
    assert_eq!(span["workspace"], workspace_id.as_str(), "{line}");
    assert!(
        span["key_id"]
            .as_str()
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()),
        "{line}"
    );
    assert!(
        span["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{line}"
    );
    assert_eq!(span["code"], "InvalidArgument", "{line}");
    assert_eq!(
        span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{line}"
    );
    assert_eq!(
        span["method"], "/vevee.attributes.v1.AttributesService/SetAttribute",
        "{line}"
    );
    let latency = span["latency_ms"].as_f64().expect("a number");
    assert_eq!(
        (latency * 1000.0).round() / 1000.0,
        latency,
        "rounded: {line}"
    );

    let public: Vec<Json> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter(|j| j["span"]["request_id"] == "req-public")
        .collect();
    assert_eq!(public.len(), 1, "{lines:#?}");
    assert_eq!(public[0]["span"]["reason"], "secret_key_required");
    assert_eq!(public[0]["span"]["workspace"], other["workspace"]["id"]);

    // No key, distinct_id or value in any line of the whole run.
    let all = lines.join("\n");
    for secret in [
        key.as_str(),
        public_key.as_str(),
        secret_value,
        secret_person,
        "sk_live_notakey",
    ] {
        assert!(!all.contains(secret), "{secret} is in the log:\n{all}");
    }
    assert!(!all.contains("\u{1b}["), "no colour codes in a pipe");
}

#[test]
fn an_empty_database_served_without_a_terminal_prints_no_keys_and_says_how_to_make_them() {
    let dir = Dir::new();
    let server = Server::start(&dir.url(), &["--grpc-addr", "127.0.0.1:0"]);
    let lines = server.stop();
    let all = lines.join("\n");
    assert!(
        !all.contains("sk_live_") && !all.contains("pk_live_"),
        "{all}"
    );
    assert!(all.contains("workspace create"), "{all}");
    for line in &lines {
        serde_json::from_str::<Json>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    let listed = run(&dir.url(), &["workspace", "list", "--json"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
}

#[test]
fn text_logs_into_a_pipe_have_no_colour_codes() {
    let dir = Dir::new();
    let mut child = Command::new(BIN)
        .args(["serve", "--no-bootstrap", "--grpc-addr", "127.0.0.1:0"])
        .env("DATABASE_URL", dir.url())
        .env("LOG_FORMAT", "text")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let line = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("serving gRPC"));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("the serving line");
    assert!(!line.contains('\u{1b}'), "{line:?}");
}
