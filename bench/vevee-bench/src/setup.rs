//! `setup`: declares the text attributes `a0`..`a9` and the number
//! attribute `n0` (for update-increment), and seeds the population with
//! SetAttributes of 10 values per person.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Args;
use prost_types::Value;
use tonic::{
    Code, Request,
    metadata::{Ascii, MetadataValue},
};
use vevee_attributes::proto::v1::{
    AttributeType, CreateAttributeDefinitionRequest, SetAttributesRequest,
    attribute_definitions_service_client::AttributeDefinitionsServiceClient,
    attributes_service_client::AttributesServiceClient,
};

use crate::{
    ATTRIBUTES, AnyResult, COUNTER, TargetArgs,
    load::{endpoint, text},
    stats::{CLIENT_TIMEOUT, Stats, code_name},
};

/// Flags of `setup`.
#[derive(Args)]
pub(crate) struct SetupArgs {
    #[command(flatten)]
    target: TargetArgs,

    /// Number of persons to seed (`<prefix>0` ..); 0 only declares attributes.
    #[arg(long, default_value_t = 10_000)]
    population: usize,

    /// Prefix of distinct_ids.
    #[arg(long, default_value = "u")]
    prefix: String,

    /// SetAttributes requests in flight while seeding.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,

    /// HTTP/2 connections used for seeding.
    #[arg(long, default_value_t = 4)]
    connections: usize,

    /// Give up seeding after this long.
    #[arg(long, default_value = "20m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

pub(crate) fn setup(args: SetupArgs) -> AnyResult<()> {
    let key = args
        .target
        .key
        .clone()
        .ok_or("--key (or VEVEE_KEY) is required: a secret key")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let endpoint = endpoint(&args.target.addr)?;
        let auth: MetadataValue<Ascii> = format!("Bearer {key}").parse()?;
        let with_auth = |mut r: Request<_>| {
            r.metadata_mut().insert("authorization", auth.clone());
            r
        };
        let channel = endpoint.connect().await?;
        let mut definitions = AttributeDefinitionsServiceClient::new(channel);
        let mut created = 0;
        for i in 0..ATTRIBUTES {
            let request = with_auth(Request::new(CreateAttributeDefinitionRequest {
                key: format!("a{i}"),
                r#type: AttributeType::Text as i32,
                config: None,
                display_name: format!("Bench attribute {i}"),
                ..Default::default()
            }));
            match definitions.create_attribute_definition(request).await {
                Ok(_) => created += 1,
                Err(status) if status.code() == Code::AlreadyExists => {}
                Err(status) => return Err(format!("declaring a{i}: {status}").into()),
            }
        }
        eprintln!(
            "attributes a0..a{}: {created} declared, {} already there",
            ATTRIBUTES - 1,
            ATTRIBUTES - created
        );
        let request = with_auth(Request::new(CreateAttributeDefinitionRequest {
            key: COUNTER.into(),
            r#type: AttributeType::Number as i32,
            config: None,
            display_name: "Bench counter".into(),
            ..Default::default()
        }));
        match definitions.create_attribute_definition(request).await {
            Ok(_) => {}
            Err(status) if status.code() == Code::AlreadyExists => {}
            Err(status) => return Err(format!("declaring {COUNTER}: {status}").into()),
        }
        if args.population == 0 {
            return Ok(());
        }

        let mut clients = Vec::new();
        for _ in 0..args.connections.max(1) {
            clients.push(AttributesServiceClient::new(endpoint.connect().await?));
        }
        let values: HashMap<String, Value> = (0..ATTRIBUTES)
            .map(|i| (format!("a{i}"), text(format!("s{i}"))))
            .collect();
        let next = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Stats::new()));
        let started = Instant::now();
        let deadline = started + args.timeout;
        let mut tasks = Vec::new();
        for w in 0..args.concurrency.max(1) {
            let mut client = clients[w % clients.len()].clone();
            let (next, done, errors, values) =
                (next.clone(), done.clone(), errors.clone(), values.clone());
            let prefix = args.prefix.clone();
            let population = args.population;
            let auth = auth.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= population || Instant::now() >= deadline {
                        break;
                    }
                    let mut request = Request::new(SetAttributesRequest {
                        distinct_id: format!("{prefix}{i}"),
                        values: values.clone(),
                        ..Default::default()
                    });
                    request.metadata_mut().insert("authorization", auth.clone());
                    let result = tokio::time::timeout(
                        Duration::from_secs(30),
                        client.set_attributes(request),
                    )
                    .await;
                    match result {
                        Ok(Ok(_)) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Err(status)) => errors
                            .lock()
                            .expect("not poisoned")
                            .error(status.code() as i32, || status.message().to_owned()),
                        Err(_) => errors
                            .lock()
                            .expect("not poisoned")
                            .error(CLIENT_TIMEOUT, || "no response within 30s".into()),
                    }
                }
            }));
        }
        let progress = {
            let done = done.clone();
            let population = args.population;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    let n = done.load(Ordering::Relaxed);
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!(
                        "  seeded {n}/{population} persons in {secs:.0}s ({:.0}/s)",
                        n as f64 / secs
                    );
                }
            })
        };
        for task in tasks {
            task.await?;
        }
        progress.abort();
        let n = done.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "seeded {n} persons x {ATTRIBUTES} values in {secs:.1}s ({:.0} persons/s)",
            n as f64 / secs
        );
        let errors = errors.lock().map_err(|_| "poisoned")?;
        if !errors.errors.is_empty() || n < args.population as u64 {
            for (code, count) in &errors.errors {
                eprintln!(
                    "  {count} x {}: {}",
                    code_name(*code),
                    errors.first_error.get(code).map_or("", String::as_str)
                );
            }
            return Err(
                format!("seeding failed: {n} of {} persons seeded", args.population).into(),
            );
        }
        Ok(())
    })
}
