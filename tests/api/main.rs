//! Integration tests: the real server on a random port, a real tonic client,
//! on SQLite and (through `backend_tests!`) on PostgreSQL too.

#[path = "../common/mod.rs"]
#[allow(dead_code)]
mod common;

mod adjustments;
mod definitions;
mod dry_runs;
mod durability;
mod errors;
mod etags;
#[path = "../common/process.rs"]
mod process;

mod foundation;
mod helpers;
mod http;
mod idempotency;
mod metrics;
mod outage;
mod persons;
mod postgres_tls;
mod purge;
mod safety;
mod scope;
mod tls;
mod updates;
mod values;
