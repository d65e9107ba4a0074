//! The HTTP front door, on the gRPC listener: REST/JSON transcoded from the
//! `google.api.http` annotations into the same gRPC methods (as grpc-gateway
//! v2 or Envoy's transcoder in front would), the OpenAPI document generated
//! from them, HTTP health probes, and the CORS policy that lets browsers
//! call REST and gRPC-Web with public keys. (gRPC-Web itself is tonic-web.)
//!
//! CONTRACT.md section 7 is the spec.

mod cors;
mod json;
mod openapi;
mod routes;
mod status;
mod transcode;

use prost::Message;
use prost_reflect::{DescriptorPool, MessageDescriptor};
use prost_types::FileDescriptorSet;

pub use cors::{BrowserCors, BrowserCorsLayer};
pub use routes::TemplateError;
pub use transcode::{TranscodeLayer, Transcoder};

/// Why the HTTP face could not be built: a defect of the build's own
/// descriptor set, reported at start-up rather than on a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The descriptor set did not decode.
    #[error("descriptor set: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    /// A message the layer needs is missing from the descriptor set.
    #[error("descriptor set lacks {0}")]
    Missing(&'static str),
    /// An annotation's path template cannot be served.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The OpenAPI document could not be written.
    #[error("OpenAPI document: {0}")]
    OpenApi(#[from] serde_json::Error),
}

/// The descriptors the layer reads: the API's, with `google.rpc`'s detail
/// types so that error details are written with their fields.
pub(crate) struct Descriptors {
    pool: DescriptorPool,
    rpc_status: MessageDescriptor,
}

impl Descriptors {
    /// Decodes the build's descriptor sets.
    pub(crate) fn load() -> Result<Self, Error> {
        let mut pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)?;
        // The API vendors google/rpc/status.proto (an operation's error);
        // tonic-types names its copy status.proto, and one message may not
        // be defined by two files, so its files defining what the pool has
        // are left out.
        let mut details = FileDescriptorSet::decode(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .map_err(|_| Error::Missing("tonic-types' descriptor set"))?;
        details.file.retain(|file| {
            !file.message_type.iter().any(|m| {
                pool.get_message_by_name(&format!("{}.{}", file.package(), m.name()))
                    .is_some()
            })
        });
        pool.add_file_descriptor_set(details)?;
        let rpc_status = pool
            .get_message_by_name("google.rpc.Status")
            .ok_or(Error::Missing("google.rpc.Status"))?;
        Ok(Self { pool, rpc_status })
    }
}

/// The transcoding layer of the API's annotated routes; REST bodies over
/// `max_request_bytes` get 413; requests are counted in `metrics`.
pub fn transcode_layer(
    max_request_bytes: usize,
    metrics: &crate::metrics::Metrics,
) -> Result<TranscodeLayer, Error> {
    TranscodeLayer::new(&Descriptors::load()?, max_request_bytes, metrics)
}
