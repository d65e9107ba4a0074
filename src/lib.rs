//! vevee-attributes: the gRPC service that stores typed person attributes for
//! vevee analytics.
//!
//! # Layout
//! Dependencies run one way, and `tests/layering.rs` keeps them so:
//! [`domain`] ← [`storage`] ← [`app`] ← {[`grpc`], [`cli`]} ← [`startup`] ← `main.rs`.
//!
//! - [`domain`]: ids, attribute keys, types, configs, definitions and
//!   coercion; pure, no I/O. Errors carry the field they concern.
//! - [`storage`]: [`storage::AdminStore`] (workspaces, keys, settings,
//!   definitions) and [`storage::ValueStore`] (persons and values, the hot
//!   half, which [`storage::Coalescing`] group-commits); SQLite and
//!   PostgreSQL implement both.
//! - [`app`]: the use cases every front door calls ([`app::App`]), the
//!   catalog of cached keys, settings and definitions, key authorization,
//!   and [`app::Error`], the one error front doors convert from.
//! - [`grpc`]: thin handlers (request → `App` → response), the key layer
//!   with the table of which methods public keys may call, the tower layer
//!   every RPC passes, and the one mapping of errors to statuses.
//! - [`cli`]: the operator commands, one file per command group, calling
//!   the same `App` methods as the handlers.
//! - [`startup`]: binds the listener, assembles the services, health and
//!   reflection, shuts down gracefully.
//! - [`database`]: opens and migrates the database for `serve` and the CLI.
//! - [`config`]: flags and environment variables. [`telemetry`]: logs.
//! - [`tls`]: the listener's TLS handshakes and certificate reloads.
//! - [`metrics`]: the Prometheus metrics every layer counts with; it
//!   imports no other module, so any may import it.
//! - [`proto`]: code generated from `proto/` (quarantined).
//!
//! # Where a change goes
//! - **Add an RPC**: declare it in `proto/vevee/attributes/v1/*.proto`
//!   (with its `google.api.http` annotation); write the use case as an `App`
//!   method in the `src/app/` file of its area (`values.rs`,
//!   `definitions.rs`, `settings.rs`, `workspaces.rs`), with a storage
//!   method on `AdminStore` or `ValueStore` if it needs one; write the thin
//!   handler in `src/grpc/<service>.rs` (convert in `src/grpc/convert.rs`);
//!   if public keys may call it, add it to `scope` in `src/grpc/auth.rs`. A
//!   new refusal is a [`domain::Reason`] plus its code in `src/grpc/error.rs`.
//! - **Add an update operation** (CONTRACT.md section 8): what the
//!   operation does to a value of each type goes in `src/domain/update.rs`
//!   (`Operation`, checked into a `Change` by the definition, applied to the
//!   stored JSON; pure, table-tested); the use case in `src/app/values.rs`
//!   turns it into a storage `Decide`; storage applies every decision inside
//!   one transaction per batch against the values as stored then
//!   (`src/storage/update.rs` plans, the backends lock, read and write); its
//!   proto oneof case in `attributes.proto`, converted in `src/grpc/convert.rs`.

pub mod app;
pub mod cli;
pub mod config;
pub mod database;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod proto;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod tls;
