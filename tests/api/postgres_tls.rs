//! TLS to PostgreSQL (CONTRACT.md section 12): `sslmode` and `sslrootcert`
//! as libpq reads them, against a throwaway cluster that this test starts
//! with its own CA and accepts TLS connections only (`hostssl`), so the
//! machine's own PostgreSQL stays as it is.

use std::{
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use tempfile::TempDir;
use vevee_attributes::{
    proto::v1::AttributeType,
    storage::{self, StoreOptions},
};

use crate::{
    helpers::{define, get, s, set, spawn_app},
    tls::TestCa,
};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL cluster of this test's own, stopped when dropped (a failed
/// assertion too).
struct TlsCluster {
    dir: TempDir,
    port: u16,
    /// The CA that signed the server's certificate, PEM, in a file.
    ca_file: PathBuf,
}

impl TlsCluster {
    /// initdb, a server certificate for "localhost" signed by a new CA,
    /// `ssl = on`, `hostssl` lines only, started on a free port. `None`
    /// (the test is skipped) only outside CI, when PostgreSQL's binaries
    /// or the `postgres` user are missing.
    fn start(test: &str) -> Option<TlsCluster> {
        // runuser (to become postgres, as initdb refuses root) needs root.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let usable = root
            && Path::new(PG_BIN).join("initdb").exists()
            && Command::new("id")
                .arg("postgres")
                .output()
                .is_ok_and(|o| o.status.success());
        if !usable {
            let why = format!("not root, no {PG_BIN}/initdb or no postgres user");
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: {why}, and CI=true"
            );
            // Straight to stderr: the harness captures a passing test's output.
            use std::io::Write;
            let line = format!("SKIPPED ({why}): {test}\n");
            std::io::stderr().write_all(line.as_bytes()).ok();
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let ca = TestCa::new("vevee test PostgreSQL CA");
        let (cert, key) = ca.issue(&["localhost"]);
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, &ca.pem).expect("write the CA");
        std::fs::write(dir.path().join("server.crt"), cert).expect("write the cert");
        let key_file = dir.path().join("server.key");
        std::fs::write(&key_file, key).expect("write the key");
        // PostgreSQL refuses a key that others can read.
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        chown_to_postgres(dir.path());

        as_postgres(&[
            &format!("{PG_BIN}/initdb"),
            "--no-sync",
            "--auth=trust",
            "--username=postgres",
            "-D",
            data.to_str().unwrap(),
        ]);
        let port = free_port();
        let socket_dir = dir.path().display().to_string();
        let d = &socket_dir;
        append(
            &data.join("postgresql.conf"),
            &format!(
                "port = {port}\nlisten_addresses = '127.0.0.1'\n\
                 unix_socket_directories = '{d}'\n\
                 ssl = on\nssl_cert_file = '{d}/server.crt'\nssl_key_file = '{d}/server.key'\n\
                 fsync = off\nmax_connections = 30\nshared_buffers = 16MB\n"
            ),
        );
        // TLS connections only: a plain one finds no line and is refused.
        // The role `vevee_pw` must give its password (the wrong-password test).
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all postgres trust\n\
             hostssl all vevee_pw 127.0.0.1/32 scram-sha-256\n\
             hostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .expect("write pg_hba.conf");
        let cluster = TlsCluster { dir, port, ca_file };
        as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            data.to_str().unwrap(),
            "-l",
            cluster.dir.path().join("log").to_str().unwrap(),
            "-w",
            "-t",
            "60",
            "start",
        ]);
        as_postgres(&[
            &format!("{PG_BIN}/psql"),
            "-h",
            &socket_dir,
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-qc",
            "CREATE ROLE vevee_pw LOGIN SUPERUSER PASSWORD 'right'",
        ]);
        Some(cluster)
    }

    /// A URL to the cluster's `postgres` database on `host`, with `query`.
    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }

    /// The CA file's path, for `sslrootcert`.
    fn ca(&self) -> String {
        self.ca_file.display().to_string()
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_ctl"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}

/// Runs `argv` as the postgres user (initdb refuses root), asserting success.
fn as_postgres(argv: &[&str]) {
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(argv)
        // A directory the postgres user may enter.
        .current_dir(std::env::temp_dir())
        .output()
        .expect("runuser runs");
    assert!(
        output.status.success(),
        "{argv:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn chown_to_postgres(dir: &Path) {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()
        .expect("chown runs");
    assert!(status.success());
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    file.write_all(text.as_bytes()).expect("append");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Connects the storage layer to `url`; the error's message when refused.
async fn store_connects(url: &str) -> Result<(), String> {
    let store = storage::connect(url, &StoreOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    store.ping().await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_and_sslrootcert_work_as_in_libpq() {
    let Some(pg) = TlsCluster::start("sslmode_and_sslrootcert_work_as_in_libpq") else {
        return;
    };
    let ca = pg.ca();
    let other_ca_file = pg.dir.path().join("other-ca.crt");
    std::fs::write(&other_ca_file, TestCa::new("another CA").pem).unwrap();
    let other_ca = other_ca_file.display().to_string();

    // The cluster takes TLS only: disable is refused, prefer really uses
    // TLS, require encrypts without checking the certificate.
    assert!(
        store_connects(&pg.url("127.0.0.1", "sslmode=disable"))
            .await
            .is_err()
    );
    for query in ["sslmode=prefer", "sslmode=require"] {
        store_connects(&pg.url("127.0.0.1", query))
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
    }
    // verify-ca checks the CA, not the name; verify-full checks both.
    for (host, query) in [
        ("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={ca}")),
        ("localhost", format!("sslmode=verify-full&sslrootcert={ca}")),
        ("localhost", format!("sslmode=require&sslrootcert={ca}")),
    ] {
        store_connects(&pg.url(host, &query))
            .await
            .unwrap_or_else(|e| panic!("{host} {query}: {e}"));
    }

    let refused = [
        (
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            "not valid for the URL's host",
        ),
        (
            "localhost",
            format!("sslmode=verify-ca&sslrootcert={other_ca}"),
            "not signed by a trusted CA",
        ),
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={other_ca}"),
            "not signed by a trusted CA",
        ),
        // As in libpq, a root certificate makes require verify the CA.
        (
            "localhost",
            format!("sslmode=require&sslrootcert={other_ca}"),
            "not signed by a trusted CA",
        ),
        // Without sslrootcert only the public roots are trusted.
        (
            "localhost",
            "sslmode=verify-full".to_owned(),
            "not signed by a trusted CA",
        ),
        (
            "localhost",
            "sslmode=verify-ca&sslrootcert=/nonexistent/ca.crt".to_owned(),
            "sslrootcert /nonexistent/ca.crt: cannot read",
        ),
    ];
    for (host, query, why) in refused {
        let started = Instant::now();
        let error = store_connects(&pg.url(host, &query))
            .await
            .expect_err(&format!("{host} {query} must be refused"));
        assert!(error.contains(why), "{host} {query}: {error}");
        assert!(
            matches!(
                storage::connect(&pg.url(host, &query), &StoreOptions::default()).await,
                Err(storage::Error::Config(_))
            ),
            "{host} {query}: a configuration error, not an outage to retry"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{host} {query}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_on_verify_full_and_refuses_a_wrong_ca_at_once() {
    let Some(pg) =
        TlsCluster::start("the_server_runs_on_verify_full_and_refuses_a_wrong_ca_at_once")
    else {
        return;
    };
    let url = pg.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", pg.ca()),
    );
    let app = spawn_app(&url, &[]).await;
    let keys = app.workspace().await;
    define(&app, "plan", &keys.sk_live, AttributeType::Text, None).await;
    set(&app, &keys.sk_live, "p1", "plan", s("pro"))
        .await
        .expect("a write over TLS");
    let values = get(&app, &keys.sk_live, "p1").await.expect("a read");
    assert!(format!("{values:?}").contains("pro"), "{values:?}");
    app.stop().await;

    let other_ca = pg.dir.path().join("other-ca.crt");
    std::fs::write(&other_ca, TestCa::new("another CA").pem).unwrap();
    let wrong = pg.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", other_ca.display()),
    );
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_vevee-attributes"))
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--database-url",
            &wrong,
        ])
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: --database-url "), "{stderr}");
    assert!(last.contains("not signed by a trusted CA"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Not retried as an outage for --db-connect-retry.
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_at_once_with_a_plain_message() {
    let Some(pg) = TlsCluster::start("a_wrong_password_fails_at_once_with_a_plain_message") else {
        return;
    };
    let url = |password: &str| {
        format!(
            "postgres://vevee_pw:{password}@localhost:{}/postgres?sslmode=require",
            pg.port
        )
    };
    // The right password connects: the refusal below is the password's.
    store_connects(&url("right"))
        .await
        .expect("the right password connects");
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_vevee-attributes"))
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "",
            "--database-url",
            &url("wrong"),
        ])
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: --database-url "), "{stderr}");
    assert!(last.contains("password authentication failed"), "{stderr}");
    assert!(
        !last.contains("wrong"),
        "the password is not echoed: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Refused at once, not retried as an outage for --db-connect-retry.
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
}
