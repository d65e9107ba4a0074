//! Code generated from `proto/` by build.rs, quarantined here so that lints
//! and formatting rules of hand-written code don't apply to it.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

/// The packages nested as their names are: generated code refers to
/// another package by a relative path (`super::super::...::google::longrunning`).
pub mod vevee {
    /// `vevee.attributes`.
    pub mod attributes {
        /// `vevee.attributes.v1`: the messages and services of the API contract.
        #[rustfmt::skip]
        pub mod v1 {
            tonic::include_proto!("vevee.attributes.v1");
        }
    }
}

/// Google's packages the API uses beyond the well-known types.
pub mod google {
    /// `google.longrunning`: the Operations service and its messages (AIP-151).
    #[rustfmt::skip]
    pub mod longrunning {
        tonic::include_proto!("google.longrunning");
    }
}

pub use google::longrunning;
pub use vevee::attributes::v1;

/// The encoded `FileDescriptorSet` of every proto file of the API, imports
/// included, as served by server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("vevee_descriptor");

/// Fully qualified names of the services the API defines, as health and
/// reflection report them.
pub const SERVICE_NAMES: [&str; 4] = [
    v1::attributes_service_server::SERVICE_NAME,
    v1::attribute_definitions_service_server::SERVICE_NAME,
    v1::workspace_settings_service_server::SERVICE_NAME,
    longrunning::operations_server::SERVICE_NAME,
];

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn descriptor_set_decodes_and_describes_every_service() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set build.rs wrote decodes");
        let services: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| {
                f.service
                    .iter()
                    .map(move |s| format!("{}.{}", f.package(), s.name()))
            })
            .collect();
        for name in super::SERVICE_NAMES {
            assert!(services.iter().any(|s| s == name), "{name} missing");
        }
        // Imports travel with it so that reflection clients can resolve Value, Timestamp...
        assert!(
            set.file
                .iter()
                .any(|f| f.name() == "google/protobuf/struct.proto")
        );
        assert!(set.file.iter().any(|f| f.name() == "google/api/http.proto"));
    }
}
