//! Spawning servers for tests, in-process or as the real binary.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use clap::Parser;
use tempfile::TempDir;
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;
use vevee_attributes::{
    config::ServeArgs,
    server::{Application, StartupError},
};

#[derive(Parser)]
struct TestArgs {
    #[command(flatten)]
    serve: ServeArgs,
}

/// Serve flags for a test: a free port and a fresh SQLite file, plus `extra`.
pub(crate) fn serve_args(dir: &TempDir, extra: &[&str]) -> ServeArgs {
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let mut argv = vec!["test", "--grpc-addr", "127.0.0.1:0", "--database-url", &url];
    argv.extend_from_slice(extra);
    TestArgs::parse_from(argv).serve
}

/// A server running inside the test process.
pub(crate) struct TestApp {
    /// A connected channel.
    pub(crate) channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), StartupError>>>,
    _dir: TempDir,
}

impl TestApp {
    /// Stops the server and waits for it.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        let result = self
            .handle
            .take()
            .expect("running")
            .await
            .expect("no panic");
        result.expect("server stopped cleanly");
    }
}

/// Starts a server on a free port with a fresh SQLite database.
pub(crate) async fn spawn_app(extra: &[&str]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = Application::build(serve_args(&dir, extra))
        .await
        .expect("server starts");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("connects");
    TestApp {
        channel,
        stop: Some(stop),
        handle: Some(handle),
        _dir: dir,
    }
}

/// The real binary, started with `args`, with JSON logs on stderr.
pub(crate) struct Process {
    /// The child process.
    pub(crate) child: Child,
    /// The address it logged it serves on.
    pub(crate) addr: SocketAddr,
    _dir: TempDir,
}

/// Starts `vevee-attributes serve` on a free port and waits until it serves.
pub(crate) fn spawn_process(extra: &[&str]) -> Process {
    use std::io::{BufRead, BufReader};

    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_vevee-attributes"))
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--database-url",
            &url,
        ])
        .args(extra)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = serving_addr(&line)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server logs the address it serves on");
    Process {
        child,
        addr,
        _dir: dir,
    }
}

/// The `addr` of the "serving gRPC" JSON log line.
fn serving_addr(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("message")?.as_str()? != "serving gRPC" {
        return None;
    }
    value.get("addr")?.as_str()?.parse().ok()
}

/// A channel to `addr`.
pub(crate) async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("connects")
}
