//! Start-up and shutdown: binds the listener, assembles the gRPC services and
//! runs them until a shutdown future resolves.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    app::{self, App},
    config::ServeArgs,
    database::{OpenError, Schema, open_store},
    grpc::{self, Guarded, RpcLayer, RpcMetrics},
    http,
    metrics::Metrics,
    proto::{
        self,
        longrunning::operations_server::OperationsServer,
        v1::{
            attribute_definitions_service_server::AttributeDefinitionsServiceServer,
            attributes_service_server::AttributesServiceServer,
            workspace_settings_service_server::WorkspaceSettingsServiceServer,
        },
    },
    storage::{self, Store, ValueStore},
    tls::{self, Tls, TlsError, TlsFiles},
};

/// Why the server could not start or stopped abnormally. Each message names
/// the flag to fix, since it is printed as the process's last line.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The listener could not be bound, or its host name not resolved.
    #[error("--grpc-addr {addr}: cannot listen: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The metrics listener could not be bound.
    #[error("--metrics-addr {addr}: cannot listen: {source}")]
    MetricsBind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The metrics address is the public listener's.
    #[error(
        "--metrics-addr {0}: must differ from --grpc-addr (metrics are never served on the \
         public listener); pick another port, or set it empty for no metrics"
    )]
    MetricsOnPublicAddr(SocketAddr),
    /// The gRPC metrics could not read the descriptor set (a build defect).
    #[error("gRPC metrics: {0}")]
    Metrics(#[from] prost_reflect::DescriptorError),
    /// The server's event loop failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not load the descriptor set (a build defect).
    #[error("server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The REST routes could not be read from the descriptor set (a build defect).
    #[error("REST transcoding: {0}")]
    Http(#[from] http::Error),
    /// The database could not be opened, reached or migrated.
    #[error(transparent)]
    Database(#[from] OpenError),
    /// `--tls-cert`/`--tls-key` can't be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl StartupError {
    /// A flag's value is wrong (exit code 2, like the command line's own
    /// errors), rather than something failing at run time.
    pub fn is_usage(&self) -> bool {
        matches!(self, StartupError::Tls(_))
    }
}

/// A bound, configured server, ready to run.
pub struct Application {
    listener: TcpListener,
    /// The listener's TLS, when `--tls-cert` is given.
    tls: Option<Tls>,
    /// `--metrics-addr`'s listener, unless it is empty.
    metrics_listener: Option<TcpListener>,
    metrics: Metrics,
    args: ServeArgs,
    /// The backend, for health probes.
    store: Arc<dyn Store>,
    app: App,
}

impl Application {
    /// Binds the listeners of `args.grpc_addr` and `args.metrics_addr`
    /// (port 0 picks a free port), opens and migrates the database, and on
    /// an empty database creates a first workspace and prints its keys
    /// (unless `--no-bootstrap`).
    pub async fn build(args: ServeArgs) -> Result<Self, StartupError> {
        // First, so that a bad file touches neither the port nor the database.
        let tls = TlsFiles::from_flags(args.tls_cert.clone(), args.tls_key.clone())?
            .map(Tls::load)
            .transpose()?;
        let bind_error = |source| StartupError::Bind {
            addr: args.grpc_addr.clone(),
            source,
        };
        // A host name binds the first address it resolves to.
        let addr = tokio::net::lookup_host(&args.grpc_addr)
            .await
            .map_err(bind_error)?
            .next()
            .ok_or_else(|| bind_error(std::io::ErrorKind::AddrNotAvailable.into()))?;
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let metrics_listener = match args.metrics_addr.0 {
            None => None,
            Some(metrics_addr)
                if metrics_addr.port() != 0 && metrics_addr.port() == addr.port() =>
            {
                return Err(StartupError::MetricsOnPublicAddr(metrics_addr));
            }
            Some(metrics_addr) => {
                Some(TcpListener::bind(metrics_addr).await.map_err(|source| {
                    StartupError::MetricsBind {
                        addr: metrics_addr,
                        source,
                    }
                })?)
            }
        };
        let schema = if args.no_migrate {
            Schema::AtLeastCurrent
        } else {
            Schema::Migrate
        };
        let store = open_store(&args.database, schema).await?;
        let metrics = Metrics::new();
        let pools = store.clone();
        metrics.observe_pools(move || pools.pool_usage());
        let sqlite = args.database.database_url.starts_with("sqlite:");
        let writes = storage::Lanes {
            // SQLite has one writer.
            in_flight: if sqlite {
                1
            } else {
                args.write_commits_in_flight
            },
            max_batch: args.max_write_batch,
        };
        // SQLite reads are in-process calls on a pool of readers: there is
        // no round trip to save, so they stay parallel and unbatched.
        let reads = (!sqlite && args.max_read_batch > 1).then_some(storage::Lanes {
            in_flight: args.reads_in_flight,
            max_batch: args.max_read_batch,
        });
        let values: Arc<dyn ValueStore> = if writes.max_batch > 1 || reads.is_some() {
            Arc::new(storage::Coalescing::new(
                store.clone(),
                writes,
                reads,
                &metrics,
            ))
        } else {
            store.clone()
        };
        let limits = app::PublicKeyLimits {
            per_key: args.public_key_rate.0,
            per_person: args.public_key_rate_per_person.0,
            clock: Arc::new(app::SystemClock::new()),
        };
        let app = App::new(store.clone(), values, args.cache_ttl, limits, &metrics);
        if !args.no_bootstrap {
            bootstrap(&app)
                .await
                .map_err(|e| OpenError::new(&args.database, e))?;
        }
        // Preflights are answered from the first request on as the database says.
        app.refresh_preflight_origins()
            .await
            .map_err(|e| OpenError::new(&args.database, e))?;
        Ok(Self {
            listener,
            tls,
            metrics_listener,
            metrics,
            args,
            store,
            app,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// The metrics listener's address; `None` with `--metrics-addr ""`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|l| {
            l.local_addr()
                .expect("a bound TCP listener has a local address")
        })
    }

    /// Serves until `shutdown` resolves, then drains: health turns
    /// NOT_SERVING, new connections are refused, and in-flight RPCs get
    /// `shutdown_grace` to finish before the server is dropped.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), StartupError> {
        let addr = self.local_addr();
        // Stopped whichever way this returns; scrapes still work while draining.
        let _metrics_server = self.metrics_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving metrics at /metrics");
            }
            AbortOnDrop(tokio::spawn(serve_metrics(listener, self.metrics.clone())))
        });
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

        let app = self.app;
        let limit = args.max_request_bytes;
        let attributes = AttributesServiceServer::new(grpc::Attributes::new(app.clone()))
            .max_decoding_message_size(limit);
        let definitions =
            AttributeDefinitionsServiceServer::new(grpc::Definitions::new(app.clone()))
                .max_decoding_message_size(limit);
        let settings =
            WorkspaceSettingsServiceServer::new(grpc::WorkspaceSettings::new(app.clone()))
                .max_decoding_message_size(limit);
        let operations = OperationsServer::new(grpc::Operations::new(app.clone()))
            .max_decoding_message_size(limit);
        let monitor = tokio::spawn(monitor_database(
            self.store.clone(),
            health.clone(),
            args.health_probe_interval,
        ));

        let sweeper = tokio::spawn(sweep_requests(app.clone(), args.request_sweep_interval));
        let origins = tokio::spawn(refresh_preflight_origins(app.clone(), args.cache_ttl));
        let cors = http::BrowserCorsLayer::new(app.preflight_origins());
        // Resumes purges left unfinished by a stopped or killed server, and
        // runs the ones started here.
        let purger = {
            let app = app.clone();
            let settings = app::PurgeSettings {
                batch_size: args.purge_batch_size,
                pause: args.purge_batch_pause,
                lease: args.operation_lease,
                poll: args.operation_lease / 2,
            };
            tokio::spawn(async move { app.run_operations(settings).await })
        };

        let tls_enabled = self.tls.is_some();
        let reloader = self.tls.clone().map(|tls| tokio::spawn(tls.watch()));
        let incoming = tls::incoming(self.listener, self.tls);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        // Outermost first: CORS answers preflights before anything else;
        // REST becomes gRPC calls of the layers below it; gRPC-Web becomes
        // gRPC; every call then passes the same limits and timeout.
        let server = Server::builder()
            .accept_http1(true)
            .http2_keepalive_interval(Some(args.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(args.http2_keepalive_timeout))
            .layer(cors)
            .layer(http::transcode_layer(limit, &self.metrics)?)
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(RpcLayer::new(
                args.concurrency_limit,
                args.request_timeout,
                RpcMetrics::new(&self.metrics)?,
            ))
            .add_service(Guarded::new(attributes, app.clone()))
            .add_service(Guarded::new(definitions, app.clone()))
            .add_service(Guarded::new(settings, app.clone()))
            .add_service(Guarded::new(operations, app))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            });
        tokio::pin!(server);

        // The message is what scripts and tests wait for; keep it.
        tracing::info!(%addr, also = "gRPC-Web, REST", tls = tls_enabled, "serving gRPC");
        tokio::select! {
            result = &mut server => return result.map_err(Into::into),
            () = shutdown => {}
        }

        tracing::info!(grace = ?args.shutdown_grace, "shutting down");
        monitor.abort();
        sweeper.abort();
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        origins.abort();
        // A purge stopped between batches loses nothing: each batch is
        // committed with its progress, and the lease lets the next server
        // resume it.
        purger.abort();
        // Load balancers and watchers hear about the shutdown before connections close.
        set_all(&health, ServingStatus::NotServing).await;
        let _ = stop_tx.send(());
        drain(server, args.shutdown_grace).await
    }
}

/// A task that ends when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves `GET /metrics` on its own listener until aborted; anything else
/// is 404 (405 for another method on `/metrics`). HTTP/1.1 only: it is what
/// Prometheus speaks to a target.
async fn serve_metrics(listener: TcpListener, metrics: Metrics) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: pause, don't spin.
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = metrics_response(&metrics, &request);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            // A scraper that hangs up mid-answer is no error of the server's.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The answer of the metrics listener to `request`.
fn metrics_response<B>(
    metrics: &Metrics,
    request: &::http::Request<B>,
) -> ::http::Response<http_body_util::Full<bytes::Bytes>> {
    use ::http::{Method, StatusCode, header};
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            bytes::Bytes::from(metrics.encode()),
        ),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            bytes::Bytes::from_static(b"GET /metrics only\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            bytes::Bytes::from_static(b"metrics are at /metrics\n"),
        ),
    };
    let mut response = ::http::Response::new(http_body_util::Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        ::http::HeaderValue::from_static(content_type),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, ::http::HeaderValue::from_static("GET"));
    }
    response
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
    set_services(health, status).await;
}

/// Sets every API service's status; the overall status ("") is left alone.
async fn set_services(health: &HealthReporter, status: ServingStatus) {
    for name in proto::SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// Probes the database every `interval`: while it is unreachable the API
/// services report NOT_SERVING (readiness), and SERVING again once it is
/// back; sqlx's pool reconnects by itself. The overall status stays SERVING
/// so that a liveness probe doesn't restart every replica during a database
/// outage, which restarting cannot fix.
async fn monitor_database(store: Arc<dyn Store>, health: HealthReporter, interval: Duration) {
    let mut reachable = true;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = match tokio::time::timeout(interval.max(Duration::from_secs(1)), store.ping())
            .await
        {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                if reachable {
                    tracing::warn!(error = %e, "database unreachable; API services NOT_SERVING");
                }
                false
            }
            Err(_) => false,
        };
        if now != reachable {
            if now {
                tracing::info!("database reachable again; API services SERVING");
            }
            let status = if now {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_services(&health, status).await;
            reachable = now;
        }
    }
}

/// Deletes expired request_id records every `interval`, starting at once,
/// so that no cron job is needed. Every replica sweeps; deleting what
/// another replica already deleted is harmless.
async fn sweep_requests(app: App, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match app.forget_expired_requests().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(records = n, "expired request_id records deleted"),
            Err(e) => tracing::warn!(error = %e, "deleting expired request_id records failed"),
        }
    }
}

/// Shortest period of [`refresh_preflight_origins`]: `--cache-ttl 0s`
/// (no caching) must not turn it into a busy loop on the database.
const MIN_ORIGINS_REFRESH: Duration = Duration::from_millis(100);

/// Rereads every workspace's `allowed_origins` for CORS preflights every
/// `ttl` (the staleness bound of every cached setting), so that a change
/// made on another replica reaches this one's preflights within it.
async fn refresh_preflight_origins(app: App, ttl: Duration) {
    let mut ticks = tokio::time::interval(ttl.max(MIN_ORIGINS_REFRESH));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and build() has just read them.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if let Err(e) = app.refresh_preflight_origins().await {
            tracing::warn!(error = %e, "reading the origins of preflights failed; keeping the last");
        }
    }
}

/// On a database with no workspace, creates one and prints its four keys
/// to stderr, once, so the first `serve` in a terminal gives a working
/// service. When stderr is not a terminal (a container, a log file, a
/// pipeline) the keys would land in a log stream, so nothing is created:
/// one log line says how to create a workspace with the CLI instead.
async fn bootstrap(app: &App) -> Result<(), app::Error> {
    use std::io::IsTerminal;

    if !std::io::stderr().is_terminal() {
        if app.workspaces().await?.is_empty() {
            tracing::warn!(
                "the database has no workspace, and its keys are not printed to a log: create \
                 one with `vevee-attributes workspace create NAME` (it prints the keys to its \
                 stdout), or start once in a terminal"
            );
        }
        return Ok(());
    }
    let Some((workspace, keys)) = app.bootstrap().await? else {
        return Ok(());
    };
    let mut text = format!(
        "\nCreated workspace \"default\" ({}) with these API keys. They are shown only once:\n",
        workspace.id
    );
    for issued in &keys {
        text.push_str(&format!("  {}\n", issued.key.expose()));
    }
    text.push_str("Start again with --no-bootstrap to skip this on an empty database.\n");
    eprintln!("{text}");
    Ok(())
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
