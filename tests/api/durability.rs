//! No write is acknowledged before it is committed: the server is killed
//! (SIGKILL) in the middle of a coalesced write load, and every write it
//! acknowledged is in the database afterwards.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;
use tokio::task::JoinSet;
use vevee_attributes::{
    app,
    domain::{KeyKind, Mode},
    proto::v1::{self as pb, attributes_service_client::AttributesServiceClient},
    storage::{self, NewDefinition, StoreOptions},
};

use crate::{
    backend_tests,
    common::TestDb,
    helpers::{authed, connect, s},
    process::ServerProcess,
};

backend_tests! {
    every_acknowledged_write_survives_a_sigkill_under_load,
}

async fn every_acknowledged_write_survives_a_sigkill_under_load(db: &TestDb) {
    let store = storage::connect(&db.url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let (workspace, keys) = app::create_workspace(store.as_ref(), "durable")
        .await
        .unwrap();
    let secret = keys
        .iter()
        .find(|issued| issued.key.kind() == KeyKind::Secret && issued.key.mode() == Mode::Live)
        .map(|issued| issued.key.expose().to_owned())
        .unwrap();
    store
        .create_definition(
            workspace.id,
            NewDefinition {
                key: "n".into(),
                attr_type: "text".into(),
                config: json!({}),
                display_name: None,
                description: None,
                client_writable: true,
            },
        )
        .await
        .unwrap();

    let mut process = ServerProcess::start(&db.url, &["--no-bootstrap"]);
    let channels: Vec<_> = futures_channels(process.addr, 4).await;
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut writers = JoinSet::new();
    for worker in 0..64 {
        let mut client = AttributesServiceClient::new(channels[worker % channels.len()].clone());
        let secret = secret.clone();
        let acknowledged = acknowledged.clone();
        writers.spawn(async move {
            // Bounded: the server is killed long before this ends.
            for seq in 0..100_000 {
                let distinct_id = format!("w{worker}-{seq}");
                let request = authed(
                    &secret,
                    pb::SetAttributeRequest {
                        distinct_id: distinct_id.clone(),
                        attribute: "n".into(),
                        value: Some(s(&seq.to_string())),
                        ..Default::default()
                    },
                );
                match client.set_attribute(request).await {
                    Ok(_) => acknowledged.lock().unwrap().push((distinct_id, seq)),
                    Err(_) => return,
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    process.child.kill().expect("SIGKILL");
    process.child.wait().unwrap();
    while writers.join_next().await.is_some() {}

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 64,
        "the load ran: {} writes",
        acknowledged.len()
    );
    for (distinct_id, seq) in &acknowledged {
        let stored = store
            .read_values(workspace.id, Mode::Live, distinct_id, None, false)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged write of {distinct_id} is lost"));
        assert_eq!(
            stored.values[0].value,
            json!(seq.to_string()),
            "{distinct_id}"
        );
    }
}

/// `n` separate HTTP/2 connections to `addr`.
async fn futures_channels(addr: std::net::SocketAddr, n: usize) -> Vec<tonic::transport::Channel> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        channels.push(connect(addr).await);
    }
    channels
}
