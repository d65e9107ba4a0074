//! The gRPC front door: thin handlers that convert a request, call the
//! [`App`](crate::app::App) and convert the answer; the key layer in front of
//! them; the tower layer every RPC passes; and the one place where
//! [`app::Error`](crate::app::Error) becomes a status.

mod attributes;
mod auth;
mod convert;
mod definitions;
mod error;
mod middleware;
mod operations;
mod settings;

pub use attributes::Attributes;
pub use auth::Guarded;
pub use definitions::Definitions;
pub use error::{ERROR_DOMAIN, code, refusal};
pub use middleware::{FromRest, REQUEST_ID, RpcLayer, RpcMetrics, RpcService, request_id};
pub use operations::Operations;
pub use settings::WorkspaceSettings;
