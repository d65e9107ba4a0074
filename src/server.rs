//! Start-up and shutdown: binds the listener, assembles the gRPC services and
//! runs them until a shutdown future resolves.

use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::net::TcpListener;
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{config::ServeArgs, middleware::RpcLayer, proto};

/// Why the server could not start or stopped abnormally. Each message names
/// the flag to fix, since it is printed as the process's last line.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The listener could not be bound.
    #[error("--grpc-addr {addr}: cannot listen: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server's event loop failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not load the descriptor set (a build defect).
    #[error("server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A bound, configured server, ready to run.
pub struct Application {
    listener: TcpListener,
    args: ServeArgs,
}

impl Application {
    /// Binds the listener of `args.grpc_addr` (port 0 picks a free port).
    pub async fn build(args: ServeArgs) -> Result<Self, StartupError> {
        let listener =
            TcpListener::bind(args.grpc_addr)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: args.grpc_addr,
                    source,
                })?;
        Ok(Self { listener, args })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Serves until `shutdown` resolves, then drains: health turns
    /// NOT_SERVING, new connections are refused, and in-flight RPCs get
    /// `shutdown_grace` to finish before the server is dropped.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), StartupError> {
        let addr = self.local_addr();
        let args = self.args;
        let (health, health_service) = tonic_health::server::health_reporter();
        set_all(&health, ServingStatus::Serving).await;

        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = Server::builder()
            .http2_keepalive_interval(Some(args.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(args.http2_keepalive_timeout))
            .layer(RpcLayer::new(args.concurrency_limit, args.request_timeout))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            });
        tokio::pin!(server);

        tracing::info!(%addr, "serving gRPC");
        tokio::select! {
            result = &mut server => return result.map_err(Into::into),
            () = shutdown => {}
        }

        tracing::info!(grace = ?args.shutdown_grace, "shutting down");
        // Load balancers and watchers hear about the shutdown before connections close.
        set_all(&health, ServingStatus::NotServing).await;
        let _ = stop_tx.send(());
        drain(server, args.shutdown_grace).await
    }
}

/// Waits for the server to finish its in-flight RPCs, at most `grace`: an
/// open stream (a health Watch) must not hold the process forever.
async fn drain(
    server: impl Future<Output = Result<(), tonic::transport::Error>>,
    grace: Duration,
) -> Result<(), StartupError> {
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => {
            tracing::warn!("grace period over; closing the remaining connections");
            Ok(())
        }
    }
}

/// Sets the overall status ("") and every API service's status.
async fn set_all(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in proto::SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C), the signals that stop the server.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
