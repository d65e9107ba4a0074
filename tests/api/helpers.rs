//! Spawning servers for tests (in-process or as the real binary), workspaces
//! with keys, and assertions on error statuses.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use clap::Parser;

use crate::process::ServerProcess;
use tempfile::TempDir;
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{
    Code, Request, Status,
    transport::{Channel, ClientTlsConfig},
};
use tonic_types::StatusExt;
use vevee_attributes::{
    app,
    config::ServeArgs,
    domain::{KeyKind, Mode, WorkspaceId},
    proto::v1::{
        self as pb, attribute_definitions_service_client::AttributeDefinitionsServiceClient,
        attributes_service_client::AttributesServiceClient,
        workspace_settings_service_client::WorkspaceSettingsServiceClient,
    },
    startup::{Application, StartupError},
    storage::{self, Store, StoreOptions},
};

#[derive(Parser)]
struct TestArgs {
    #[command(flatten)]
    serve: ServeArgs,
}

/// A server running inside the test process.
pub(crate) struct TestApp {
    /// A connected channel.
    pub(crate) channel: Channel,
    /// The listener's address (gRPC, gRPC-Web and REST).
    pub(crate) addr: SocketAddr,
    /// The metrics listener's address.
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// The server's database, for setting up and checking rows.
    pub(crate) store: Arc<dyn Store>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), StartupError>>>,
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

    /// An AttributesService client.
    pub(crate) fn attributes(&self) -> AttributesServiceClient<Channel> {
        AttributesServiceClient::new(self.channel.clone())
    }

    /// An AttributeDefinitionsService client.
    pub(crate) fn definitions(&self) -> AttributeDefinitionsServiceClient<Channel> {
        AttributeDefinitionsServiceClient::new(self.channel.clone())
    }

    /// A WorkspaceSettingsService client.
    pub(crate) fn settings(&self) -> WorkspaceSettingsServiceClient<Channel> {
        WorkspaceSettingsServiceClient::new(self.channel.clone())
    }

    /// A new workspace with its four keys.
    pub(crate) async fn workspace(&self) -> Keys {
        let (workspace, keys) = app::create_workspace(self.store.as_ref(), "test")
            .await
            .expect("workspace created");
        let find = |kind, mode| {
            keys.iter()
                .find(|issued| issued.key.kind() == kind && issued.key.mode() == mode)
                .map(|issued| issued.key.expose().to_owned())
                .expect("every key kind and mode")
        };
        Keys {
            workspace: workspace.id,
            sk_live: find(KeyKind::Secret, Mode::Live),
            pk_live: find(KeyKind::Public, Mode::Live),
            sk_test: find(KeyKind::Secret, Mode::Test),
            pk_test: find(KeyKind::Public, Mode::Test),
        }
    }
}

/// A workspace and its keys.
pub(crate) struct Keys {
    pub(crate) workspace: WorkspaceId,
    pub(crate) sk_live: String,
    pub(crate) pk_live: String,
    pub(crate) sk_test: String,
    pub(crate) pk_test: String,
}

/// Starts a server on a free port over the database at `url` (no bootstrap
/// workspace, metrics on a free port of their own), with `extra` flags.
pub(crate) async fn spawn_app(url: &str, extra: &[&str]) -> TestApp {
    spawn_app_over(url, extra, None).await
}

/// [`spawn_app`] whose channel speaks TLS with `tls` (the server then needs
/// `--tls-cert`/`--tls-key` in `extra`), or plain HTTP/2 without.
pub(crate) async fn spawn_app_over(
    url: &str,
    extra: &[&str],
    tls: Option<ClientTlsConfig>,
) -> TestApp {
    let mut argv = vec![
        "test",
        "--grpc-addr",
        "127.0.0.1:0",
        "--database-url",
        url,
        "--no-bootstrap",
    ];
    // Tests run servers side by side: no fixed metrics port, unless asked.
    if !extra.contains(&"--metrics-addr") {
        argv.extend_from_slice(&["--metrics-addr", "127.0.0.1:0"]);
    }
    argv.extend_from_slice(extra);
    let app = Application::build(TestArgs::parse_from(argv).serve)
        .await
        .expect("server starts");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let store = storage::connect(url, &StoreOptions::default())
        .await
        .expect("the test's own connection");
    let channel = match tls {
        None => connect(addr).await,
        Some(tls) => connect_tls(addr, tls).await.expect("connects over TLS"),
    };
    TestApp {
        channel,
        addr,
        metrics_addr,
        store,
        stop: Some(stop),
        handle: Some(handle),
    }
}

/// `message` with `authorization: Bearer <key>`.
pub(crate) fn authed<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ASCII key"),
    );
    request
}

/// Asserts the contract's shape of an error: the code, and an ErrorInfo with
/// the reason and the service's domain. Returns the status for more checks.
pub(crate) fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
) -> Status {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "{status:?}");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, "attributes.vevee.dev");
    assert!(!status.message().is_empty());
    status
}

/// The ErrorInfo metadata `attribute` of a status.
pub(crate) fn error_attribute(status: &Status) -> Option<String> {
    status
        .get_details_error_info()
        .and_then(|i| i.metadata.get("attribute").cloned())
}

/// A string `google.protobuf.Value`.
pub(crate) fn s(text: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(text.into())),
    }
}

/// A number `google.protobuf.Value`.
pub(crate) fn n(number: f64) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::NumberValue(number)),
    }
}

/// A list `google.protobuf.Value` of strings.
pub(crate) fn list(items: &[&str]) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::ListValue(
            prost_types::ListValue {
                values: items.iter().map(|i| s(i)).collect(),
            },
        )),
    }
}

/// A single_choice config.
pub(crate) fn single_choice(options: &[&str]) -> pb::AttributeConfig {
    pb::AttributeConfig {
        config: Some(pb::attribute_config::Config::SingleChoice(
            pb::SingleChoiceConfig {
                options: options.iter().map(|o| (*o).to_owned()).collect(),
                allow_custom: false,
            },
        )),
    }
}

/// A multi_choice config.
pub(crate) fn multi_choice(options: &[&str]) -> pb::AttributeConfig {
    pb::AttributeConfig {
        config: Some(pb::attribute_config::Config::MultiChoice(
            pb::MultiChoiceConfig {
                options: options.iter().map(|o| (*o).to_owned()).collect(),
                allow_custom: false,
                max_items: None,
            },
        )),
    }
}

/// Declares `key` of type `t` with `config` (None: the type's defaults).
pub(crate) async fn define(
    app: &TestApp,
    key: &str,
    secret: &str,
    t: pb::AttributeType,
    config: Option<pb::AttributeConfig>,
) -> pb::AttributeDefinition {
    app.definitions()
        .create_attribute_definition(authed(
            secret,
            pb::CreateAttributeDefinitionRequest {
                key: key.into(),
                r#type: t.into(),
                config,
                display_name: String::new(),
                description: String::new(),
                client_writable: None,
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("define {key}: {e:?}"))
        .into_inner()
}

/// Archives `key` (it must exist).
pub(crate) async fn archive(app: &TestApp, secret: &str, key: &str) {
    app.definitions()
        .archive_attribute_definition(authed(
            secret,
            pb::ArchiveAttributeDefinitionRequest { key: key.into() },
        ))
        .await
        .unwrap_or_else(|e| panic!("archive {key}: {e:?}"));
}

/// SetAttribute of one value.
pub(crate) async fn set(
    app: &TestApp,
    key: &str,
    distinct_id: &str,
    attribute: &str,
    value: prost_types::Value,
) -> Result<pb::SetAttributeResponse, Status> {
    app.attributes()
        .set_attribute(authed(
            key,
            pb::SetAttributeRequest {
                distinct_id: distinct_id.into(),
                attribute: attribute.into(),
                value: Some(value),
                ..Default::default()
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// GetAttributes of every value.
pub(crate) async fn get(
    app: &TestApp,
    key: &str,
    distinct_id: &str,
) -> Result<pb::GetAttributesResponse, Status> {
    app.attributes()
        .get_attributes(authed(
            key,
            pb::GetAttributesRequest {
                distinct_id: distinct_id.into(),
                attributes: vec![],
                include_archived: false,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Retries `attempt` every 50 ms until it returns true or `bound` passes;
/// returns whether it did.
pub(crate) async fn eventually<F, Fut>(bound: Duration, mut attempt: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    while tokio::time::Instant::now() < deadline {
        if attempt().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Starts `vevee-attributes serve` on a free port over a fresh SQLite file
/// (kept as long as the returned directory) and waits until it serves.
pub(crate) fn spawn_process(extra: &[&str]) -> (ServerProcess, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    (ServerProcess::start(&url, extra), dir)
}

/// A channel to `addr`.
pub(crate) async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("connects")
}

/// A channel to `addr` over TLS with `tls` (its CA and the name to verify).
pub(crate) async fn connect_tls(
    addr: SocketAddr,
    tls: ClientTlsConfig,
) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("https://{addr}"))
        .expect("valid uri")
        .tls_config(tls)?
        .connect()
        .await
}
