//! Compiles proto/ with the pure-Rust `protox` compiler, so building needs no
//! `protoc`, and writes the encoded descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "vevee/attributes/v1/attributes.proto",
    "vevee/attributes/v1/attribute_definitions.proto",
    "vevee/attributes/v1/workspace_settings.proto",
    "google/longrunning/operations.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["proto"])?;
    // Source info carries the doc comments, which grpcurl shows via reflection.
    compiler.include_source_info(true);
    compiler.open_files(PROTOS)?;

    // Reflection must resolve every import (google/api, google/protobuf), and
    // prost-build needs them to see the whole message graph.
    compiler.include_imports(true);
    fs::write(
        out_dir.join("vevee_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        // google.rpc.Status (an operation's error) is tonic-types' type, so
        // that it converts to and from a tonic::Status like every detail.
        .extern_path(".google.rpc", "::tonic_types::pb")
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
