//! vevee-attributes: the gRPC service that stores typed person attributes for
//! vevee analytics.
//!
//! # Layout
//! - [`config`]: flags and environment variables.
//! - [`server`]: binds the listener, assembles services, shuts down gracefully.
//! - [`middleware`]: the tower layer every RPC passes (span, limits, timeout).
//! - [`telemetry`]: text or JSON logs.
//! - [`proto`]: code generated from `proto/` (quarantined).

pub mod config;
pub mod domain;
pub mod middleware;
pub mod proto;
pub mod server;
pub mod telemetry;
