//! Generates the FunctionRpc messages and the tonic service.
//!
//! `protoc` comes from `protoc-bin-vendored`, so a fresh machine needs no system package;
//! `$PROTOC` overrides it. Two passes: the messages (used by the I/O-free core) and the service,
//! which refers back to the messages, so the core can use the messages without tonic.
//! Every map is a `BTreeMap` so encoding is deterministic (the simulation hashes what the core
//! sends), and every `bytes` field is `bytes::Bytes` so bodies move without copies.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let files = ["proto/FunctionRpc.proto"];
    let include = ["proto"];

    let messages = out.join("messages");
    std::fs::create_dir_all(&messages)?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(false)
        .out_dir(&messages)
        .compile_with_config(prost_config(&protoc), &files, &include)?;

    let service = out.join("service");
    std::fs::create_dir_all(&service)?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .extern_path(".AzureFunctionsRpcMessages", "crate::rpc")
        .out_dir(&service)
        .compile_with_config(prost_config(&protoc), &files, &include)?;
    Ok(())
}

fn prost_config(protoc: &Path) -> tonic_prost_build::Config {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    config.btree_map(["."]);
    config.bytes(["."]);
    config
}
