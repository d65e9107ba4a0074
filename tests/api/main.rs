//! Integration tests: the real server on a random port, a real tonic client,
//! on SQLite and (through `backend_tests!`) on PostgreSQL too.

#[path = "../common/mod.rs"]
#[allow(dead_code)]
mod common;

mod definitions;
mod durability;
mod errors;
#[path = "../common/process.rs"]
mod process;

mod foundation;
mod helpers;
mod http;
mod outage;
mod safety;
mod scope;
mod values;
