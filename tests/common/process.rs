//! The real binary as a child process: `vevee-attributes serve` on a free
//! port, found through its JSON "serving gRPC" log line. Shared by the test
//! binaries that need a server process (tests/api, tests/cli).

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// `vevee-attributes serve` on a free port; killed when dropped.
pub(crate) struct ServerProcess {
    /// The child process.
    pub(crate) child: Child,
    /// The address it logged it serves on.
    pub(crate) addr: SocketAddr,
}

impl ServerProcess {
    /// Starts the server over the database at `url` with `extra` flags and
    /// waits until it serves.
    pub(crate) fn start(url: &str, extra: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vevee-attributes"))
            .args(["serve", "--grpc-addr", "127.0.0.1:0", "--database-url", url])
            // Tests run servers side by side: no fixed metrics port.
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(extra)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads to the end, so the server never blocks on a full pipe.
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
        ServerProcess { child, addr }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Already gone (a test stopped or killed it) is fine.
        let _ = self.child.kill();
        let _ = self.child.wait();
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
