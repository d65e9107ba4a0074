//! vevee-attributes: the gRPC service that stores typed person attributes for
//! vevee analytics.
//!
//! # Layout
//! - [`domain`]: attribute keys, types, definitions and coercion; no I/O.
//! - [`storage`]: the [`storage::Store`] trait, SQLite and PostgreSQL behind it.
//! - [`cache`]: keys, settings and definitions in memory, with bounded staleness.
//! - [`auth`]: API keys and the layer that checks them in front of the API.
//! - [`api`]: the gRPC handlers and the mapping of errors to statuses.
//! - [`config`]: flags and environment variables.
//! - [`server`]: binds the listener, assembles services, shuts down gracefully.
//! - [`cli`]: the operator commands (migrate, workspaces, keys, attributes, settings).
//! - [`middleware`]: the tower layer every RPC passes (span, limits, timeout).
//! - [`telemetry`]: text or JSON logs.
//! - [`proto`]: code generated from `proto/` (quarantined).

pub mod app;
pub mod cli;
pub mod config;
pub mod database;
pub mod domain;
pub mod grpc;
pub mod proto;
pub mod startup;
pub mod storage;
pub mod telemetry;
