//! A database outage while serving: requests get UNAVAILABLE (`unavailable`),
//! health reports the API services NOT_SERVING, and both recover by
//! themselves once the database is back. PostgreSQL only: the outage is a
//! TCP proxy between the server and the database that the test cuts.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use vevee_attributes::proto::v1::{self as pb, AttributeType, attribute_update::Operation as Op};

use crate::{
    common::TestDb,
    helpers::{TestApp, assert_refused, authed, define, eventually, s, set, spawn_app},
    updates::{upd, update},
};

/// Forwards connections from its own port to the database, until cut.
struct Proxy {
    addr: SocketAddr,
    upstream: String,
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut proxy = Proxy {
            addr,
            upstream,
            tasks: JoinSet::new(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        self.tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
    }

    /// Closes the port and every forwarded connection.
    async fn cut(&mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Opens the same port again.
    async fn restore(&mut self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("the port is free again");
        self.serve(listener);
    }
}

/// `url` with its `host:port` replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, rest) = rest.rsplit_once('@').map_or(("", rest), |(u, r)| (u, r));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let at = if userinfo.is_empty() { "" } else { "@" };
    (
        format!("{scheme}://{userinfo}{at}{addr}/{path}"),
        authority.to_owned(),
    )
}

async fn api_status(app: &TestApp) -> ServingStatus {
    HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: "vevee.attributes.v1.AttributesService".into(),
        })
        .await
        .map(|r| r.into_inner().status())
        .unwrap_or(ServingStatus::Unknown)
}

/// The HTTP status of a GET of `path`.
async fn probe(app: &TestApp, path: &str) -> u16 {
    reqwest::get(format!("http://{}{path}", app.addr))
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_unavailable_and_not_serving_until_it_recovers() {
    let Some(db) = TestDb::postgres("a_database_outage_is_unavailable_and_not_serving").await
    else {
        return;
    };
    let (_, upstream) = through(&db.url, "127.0.0.1:1".parse().unwrap());
    let mut proxy = Proxy::start(upstream).await;
    let (url, _) = through(&db.url, proxy.addr);
    let app = spawn_app(
        &url,
        &[
            "--health-probe-interval",
            "100ms",
            "--db-acquire-timeout",
            "500ms",
            "--cache-ttl",
            "1h",
        ],
    )
    .await;
    let keys = app.workspace().await;
    define(&app, "name", &keys.sk_live, AttributeType::Text, None).await;
    set(&app, &keys.sk_live, "u", "name", s("before"))
        .await
        .unwrap();
    assert_eq!(api_status(&app).await, ServingStatus::Serving);

    proxy.cut().await;
    assert_refused(
        set(&app, &keys.sk_live, "u", "name", s("during")).await,
        Code::Unavailable,
        "unavailable",
    );
    // The update path (one transaction per batch) too, with or without a
    // request_id.
    assert_refused(
        update(
            &app,
            &keys.sk_live,
            "u",
            vec![upd("name", Op::Set(s("during")))],
        )
        .await,
        Code::Unavailable,
        "unavailable",
    );
    assert_refused(
        app.attributes()
            .set_attribute(authed(
                &keys.sk_live,
                pb::SetAttributeRequest {
                    distinct_id: "u".into(),
                    attribute: "name".into(),
                    value: Some(s("during")),
                    request_id: "4b3a2c1d-0e9f-4a8b-9c7d-6e5f4a3b2c1d".into(),
                    validate_only: false,
                },
            ))
            .await,
        Code::Unavailable,
        "unavailable",
    );
    let not_serving = eventually(Duration::from_secs(5), || async {
        api_status(&app).await == ServingStatus::NotServing
    })
    .await;
    assert!(not_serving, "health reports the outage");
    assert_eq!(
        probe(&app, "/readyz").await,
        503,
        "readiness is the database's"
    );
    assert_eq!(probe(&app, "/healthz").await, 200, "liveness is not");
    let overall = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(
        overall,
        ServingStatus::Serving,
        "liveness is not the database's"
    );

    proxy.restore().await;
    let recovered = eventually(Duration::from_secs(10), || async {
        set(&app, &keys.sk_live, "u", "name", s("after"))
            .await
            .is_ok()
    })
    .await;
    assert!(recovered, "writes work again without a restart");
    update(
        &app,
        &keys.sk_live,
        "u",
        vec![upd("name", Op::Set(s("updated")))],
    )
    .await
    .expect("updates work again too");
    let serving = eventually(Duration::from_secs(5), || async {
        api_status(&app).await == ServingStatus::Serving
    })
    .await;
    assert!(serving, "health recovers");
    assert_eq!(probe(&app, "/readyz").await, 200);
    app.stop().await;
    proxy.cut().await;
    db.finish().await;
}
