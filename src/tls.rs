//! TLS for the listener (`--tls-cert`/`--tls-key`): every connection is
//! handshaken here, ahead of tonic, with ALPN offering `h2` and `http/1.1`,
//! so that gRPC, gRPC-Web and REST are served over TLS alike. The
//! certificate is re-read on SIGHUP and when either file changes; a reload
//! only affects the next handshakes, so established connections go on.

use std::{
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, ServerConfig,
        crypto::CryptoProvider,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::{ClientHello, ResolvesServerCert},
        sign::CertifiedKey,
    },
    server::TlsStream,
};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

/// How often the certificate files' modification times are checked.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long a client may take to complete its handshake; a connection that
/// stalls longer is dropped, so that idle sockets can't pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const ACCEPT_BACKLOG: usize = 128;

/// A TLS flag that can't be used; the message names the flag, since it is
/// printed as the process's last line.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// One of the pair was given without the other.
    #[error(
        "{given} needs {missing} too: the listener's certificate and its private key go together"
    )]
    Unpaired {
        /// The flag that was given.
        given: &'static str,
        /// The flag that was not.
        missing: &'static str,
    },
    /// A file could not be read or holds no usable PEM.
    #[error("{flag} {}: {message}", .path.display())]
    File {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// The certificate chain and private key files of the listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
}

impl TlsFiles {
    /// The pair of `--tls-cert` and `--tls-key`: `None` when neither is
    /// given (plain TCP), an error when only one is.
    pub fn from_flags(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<TlsFiles>, TlsError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
            (Some(_), None) => Err(TlsError::Unpaired {
                given: "--tls-cert",
                missing: "--tls-key",
            }),
            (None, Some(_)) => Err(TlsError::Unpaired {
                given: "--tls-key",
                missing: "--tls-cert",
            }),
        }
    }

    /// Reads and checks both files: PEM, a certificate chain, a private key
    /// that belongs to the chain's first certificate.
    fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let cert_error = |message: String| TlsError::File {
            flag: "--tls-cert",
            path: self.cert.clone(),
            message,
        };
        let key_error = |message: String| TlsError::File {
            flag: "--tls-key",
            path: self.key.clone(),
            message,
        };
        let pem = std::fs::read(&self.cert).map_err(|e| cert_error(format!("cannot read: {e}")))?;
        let chain = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert_error(format!("not a PEM certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(cert_error(
                "no PEM certificate (BEGIN CERTIFICATE) in it".into(),
            ));
        }
        let pem = std::fs::read(&self.key).map_err(|e| key_error(format!("cannot read: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| key_error(format!("not a PEM private key: {e}")))?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| key_error(format!("unusable private key: {e}")))?;
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            Ok(()) => Ok(certified),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(key_error(format!(
                    "not the private key of the certificate in --tls-cert {}",
                    self.cert.display()
                )))
            }
            Err(e) => Err(cert_error(format!("unusable certificate: {e}"))),
        }
    }

    /// What a change of either file changes: modification time and length.
    fn stamp(&self) -> [Option<(SystemTime, u64)>; 2] {
        let of = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        };
        [of(&self.cert), of(&self.key)]
    }
}

/// The certificate handed to each new handshake, swapped on reload.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The listener's TLS: the acceptor and the files it reloads from.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    acceptor: TlsAcceptor,
}

impl Tls {
    /// Loads the certificate and key; a bad file is an error naming its flag.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(files.load(&provider)?))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring's default provider supports the default TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // gRPC needs h2; gRPC-Web and REST clients may speak either.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            files,
            provider,
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Re-reads the files; on failure the certificate in use stays.
    fn reload(&self, why: &str) {
        match self.files.load(&self.provider) {
            Ok(certified) => {
                *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
                tracing::info!(reason = why, "TLS certificate reloaded");
            }
            Err(e) => tracing::warn!(
                reason = why,
                error = %e,
                "TLS certificate not reloaded; the previous one stays in use"
            ),
        }
    }

    /// Reloads on SIGHUP and whenever either file's modification time or
    /// length changes, until dropped (abort the task).
    pub async fn watch(self) {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut seen = self.files.stamp();
        let mut ticks = tokio::time::interval(POLL_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = hup => {
                    seen = self.files.stamp();
                    self.reload("SIGHUP");
                }
                _ = ticks.tick() => {
                    // A half-written pair fails to load and is tried again
                    // when the other file changes too.
                    let now = self.files.stamp();
                    if now != seen {
                        seen = now;
                        self.reload("file changed");
                    }
                }
            }
        }
    }
}

/// One accepted connection of the listener, plain or TLS.
pub enum Conn {
    /// Plain TCP (no `--tls-cert`).
    Plain(TcpStream),
    /// A completed TLS handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connected for Conn {
    // The same info as plain TCP, so the peer address reaches the handlers
    // the same way with and without TLS.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Conn::Plain(tcp) => tcp.connect_info(),
            Conn::Tls(tls) => tls.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connections of `listener` as the stream tonic serves: plain TCP, or
/// with `tls` the connections whose handshake completed. Handshakes run
/// concurrently, so a slow client never holds up the others. Dropping the
/// stream (the server stopped) closes the listener.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Tls>,
) -> Pin<Box<dyn Stream<Item = io::Result<Conn>> + Send>> {
    use tokio_stream::StreamExt;
    let Some(tls) = tls else {
        let plain = TcpIncoming::from(listener).with_nodelay(Some(true));
        return Box::pin(plain.map(|accepted| accepted.map(Conn::Plain)));
    };
    let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
    tokio::spawn(accept_tls(listener, tls.acceptor, tx));
    Box::pin(ReceiverStream::new(rx))
}

/// Accepts connections and hands each to its own handshake, until the
/// server stops taking them.
async fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<io::Result<Conn>>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send(Ok(Conn::Tls(Box::new(tls)))).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
