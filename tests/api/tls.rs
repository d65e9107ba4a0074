//! The listener over TLS (CONTRACT.md section 12): gRPC and REST with a
//! generated certificate, over h2 (ALPN) and HTTP/1.1; the certificate
//! swapped on SIGHUP and on file change while a client stays connected;
//! unusable `--tls-cert`/`--tls-key` refused at start.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use reqwest::{Certificate, Client, StatusCode, Version};
use tempfile::TempDir;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use vevee_attributes::proto::v1::AttributeType;

use crate::{
    common::TestDb,
    helpers::{connect_tls, define, eventually, s, set, spawn_app_over, spawn_process},
};

/// A certificate authority made for one test.
pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Its certificate, PEM.
    pub(crate) pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    pub(crate) fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key"))
            .expect("a CA certificate");
        let pem = issuer.pem();
        TestCa { issuer, pem }
    }

    /// A server certificate for `names` (DNS names; IP addresses become IP
    /// names): its PEM and its private key's PEM.
    pub(crate) fn issue(&self, names: &[&str]) -> (String, String) {
        let params = CertificateParams::new(
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )
        .expect("server certificate parameters");
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }
}

/// The listener's certificate and key files, in a directory of their own.
struct ServerFiles {
    dir: TempDir,
}

/// Blank lines after the PEM that a swap shortens, so that a new pair can be
/// written with exactly the old files' lengths (see `swap_unseen`).
const PADDING: usize = 128;

impl ServerFiles {
    /// A certificate of `ca` for localhost and 127.0.0.1.
    fn new(ca: &TestCa) -> ServerFiles {
        let files = ServerFiles {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
        let pad = "\n".repeat(PADDING);
        std::fs::write(files.cert(), cert + &pad).expect("write cert");
        std::fs::write(files.key(), key + &pad).expect("write key");
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// The serve flags for these files.
    fn flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert().display().to_string(),
            "--tls-key".into(),
            self.key().display().to_string(),
        ]
    }

    /// Replaces the pair with a certificate of `ca`.
    fn swap(&self, ca: &TestCa) {
        let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
        std::fs::write(self.key(), key).expect("write key");
        std::fs::write(self.cert(), cert).expect("write cert");
    }

    /// Replaces the pair with a certificate of `ca` that the file watch
    /// can't see: same lengths, same modification times. Only SIGHUP can
    /// make the server read it.
    fn swap_unseen(&self, ca: &TestCa) {
        let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
        rewrite_unseen(&self.cert(), &cert);
        rewrite_unseen(&self.key(), &key);
    }
}

/// Replaces `path` with `pem`, padded to the file's length and with the
/// file's modification time, in one rename so that no poll sees a change.
fn rewrite_unseen(path: &Path, pem: &str) {
    let old = std::fs::metadata(path).expect("the file exists");
    let len = usize::try_from(old.len()).expect("small file");
    assert!(pem.len() <= len, "padding too short for the new PEM");
    let padded = format!("{pem}{}", "\n".repeat(len - pem.len()));
    let staged = path.with_extension("new");
    std::fs::write(&staged, padded).expect("write");
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .expect("open")
        .set_modified(old.modified().expect("mtime"))
        .expect("set the old modification time");
    std::fs::rename(&staged, path).expect("rename over the old file");
}

/// A TLS client configuration trusting only `ca`, verifying "localhost".
fn trusting(ca: &TestCa) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca.pem))
        .domain_name("localhost")
}

/// Whether a health check answers SERVING on `channel`.
async fn serving(channel: Channel) -> bool {
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .is_ok_and(|r| r.into_inner().status() == ServingStatus::Serving)
}

/// Whether a new TLS connection trusting only `ca` succeeds.
async fn new_connection_trusts(addr: std::net::SocketAddr, ca: &TestCa) -> bool {
    match connect_tls(addr, trusting(ca)).await {
        Ok(channel) => serving(channel).await,
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_rest_are_served_over_tls_with_alpn() {
    let db = TestDb::sqlite();
    let ca = TestCa::new("vevee test CA");
    let files = ServerFiles::new(&ca);
    let flags = files.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = spawn_app_over(&db.url, &flags, Some(trusting(&ca))).await;
    let keys = app.workspace().await;

    // gRPC over TLS (h2 by ALPN).
    define(&app, "plan", &keys.sk_live, AttributeType::Text, None).await;
    set(&app, &keys.sk_live, "p1", "plan", s("pro"))
        .await
        .expect("SetAttribute over TLS");

    // REST over TLS, HTTP/1.1 and h2 by ALPN.
    let root = Certificate::from_pem(ca.pem.as_bytes()).expect("CA PEM");
    let url = format!(
        "https://localhost:{}/api/v1/persons/p1/attributes",
        app.addr.port()
    );
    for (client, version) in [
        (
            Client::builder()
                .http1_only()
                .add_root_certificate(root.clone()),
            Version::HTTP_11,
        ),
        (
            Client::builder().add_root_certificate(root.clone()),
            Version::HTTP_2,
        ),
    ] {
        let client = client
            .resolve("localhost", app.addr)
            .build()
            .expect("client");
        let answer = client
            .get(&url)
            .bearer_auth(&keys.sk_live)
            .send()
            .await
            .unwrap_or_else(|e| panic!("REST over TLS ({version:?}): {e:?}"));
        assert_eq!(answer.status(), StatusCode::OK, "{version:?}");
        assert_eq!(answer.version(), version);
        let body = answer.text().await.expect("a body");
        assert!(body.contains("pro"), "{version:?}: {body}");
    }

    // Plain HTTP on the TLS port gets no answer.
    let plain = Client::builder().http1_only().build().expect("client");
    assert!(
        plain
            .get(format!("http://{}/healthz", app.addr))
            .send()
            .await
            .is_err()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_changed_on_disk_serves_new_connections_and_keeps_open_ones() {
    let db = TestDb::sqlite();
    let old_ca = TestCa::new("old CA");
    let new_ca = TestCa::new("new CA");
    let files = ServerFiles::new(&old_ca);
    let flags = files.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = spawn_app_over(&db.url, &flags, Some(trusting(&old_ca))).await;
    assert!(serving(app.channel.clone()).await);
    assert!(!new_connection_trusts(app.addr, &new_ca).await);

    files.swap(&new_ca);
    assert!(
        eventually(Duration::from_secs(10), || new_connection_trusts(
            app.addr, &new_ca
        ))
        .await,
        "a new connection never saw the new certificate"
    );
    assert!(!new_connection_trusts(app.addr, &old_ca).await);
    // The connection made before the swap trusts only the old CA: it can't
    // have reconnected, so it is the same connection, still working.
    assert!(serving(app.channel.clone()).await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_certificate_and_keeps_open_connections() {
    let old_ca = TestCa::new("old CA");
    let new_ca = TestCa::new("new CA");
    let files = ServerFiles::new(&old_ca);
    let flags = files.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (server, _dir) = spawn_process(&flags);
    let before = connect_tls(server.addr, trusting(&old_ca))
        .await
        .expect("connects with the first certificate");
    assert!(serving(before.clone()).await);

    files.swap_unseen(&new_ca);
    // The watch polls every second: past that, only SIGHUP can have reloaded.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !new_connection_trusts(server.addr, &new_ca).await,
        "the unseen swap was read without SIGHUP, so this test proves nothing"
    );
    let status = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    assert!(
        eventually(Duration::from_secs(10), || new_connection_trusts(
            server.addr,
            &new_ca
        ))
        .await,
        "SIGHUP did not reload the certificate"
    );
    assert!(serving(before).await, "the open connection was dropped");
}

/// Runs `serve` with `flags` over a fresh SQLite file; its exit code and stderr.
fn serve_fails(flags: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let output = Command::new(env!("CARGO_BIN_EXE_vevee-attributes"))
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--database-url",
            &url,
        ])
        .args(flags)
        .output()
        .expect("the binary runs");
    assert!(
        !dir.path().join("test.db").exists(),
        "a bad TLS flag must be refused before the database is touched"
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn unusable_tls_flags_are_refused_with_one_line_naming_the_flag() {
    let ca = TestCa::new("CA");
    let good = ServerFiles::new(&ca);
    let other = ServerFiles::new(&ca);
    let dir = tempfile::tempdir().expect("temp dir");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").expect("write");
    let missing = dir.path().join("missing.pem");
    let (cert, key) = (good.cert(), good.key());
    let (cert, key, other_key) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        other.key().display().to_string(),
    );
    let (garbage, missing) = (garbage.to_str().unwrap(), missing.to_str().unwrap());
    let cases: [(&[&str], &str, &str); 7] = [
        (&["--tls-cert", cert], "--tls-cert needs --tls-key", ""),
        (&["--tls-key", key], "--tls-key needs --tls-cert", ""),
        (
            &["--tls-cert", missing, "--tls-key", key],
            "--tls-cert",
            "cannot read",
        ),
        (
            &["--tls-cert", garbage, "--tls-key", key],
            "--tls-cert",
            "no PEM certificate",
        ),
        (
            &["--tls-cert", cert, "--tls-key", garbage],
            "--tls-key",
            "not a PEM private key",
        ),
        (
            &["--tls-cert", key, "--tls-key", key],
            "--tls-cert",
            "no PEM certificate",
        ),
        (
            &["--tls-cert", cert, "--tls-key", &other_key],
            "--tls-key",
            "not the private key of the certificate",
        ),
    ];
    for (flags, flag, why) in cases {
        let (code, stderr) = serve_fails(flags);
        assert_eq!(code, Some(2), "{flags:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{flags:?}: one line: {stderr}");
        assert!(lines[0].starts_with("error: "), "{flags:?}: {stderr}");
        assert!(lines[0].contains(flag), "{flags:?} names {flag}: {stderr}");
        assert!(lines[0].contains(why), "{flags:?} says {why}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flags:?}: {stderr}");
    }
}
