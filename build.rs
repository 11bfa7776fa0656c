//! Compiles `proto/` into Rust stubs and a file descriptor set with no system
//! `protoc`: protox parses the files, tonic-prost-build generates the code.

use std::{env, fs, path::PathBuf};

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &[
    "eucora/v1/common.proto",
    "eucora/v1/deployment.proto",
    "eucora/v1/promotion.proto",
    "eucora/v1/connector.proto",
    "eucora/v1/risk.proto",
    "eucora/v1/control.proto",
    "eucora/v1/calendar.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={PROTO_ROOT}/{file}");
    }

    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTO_FILES)?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("eucora_descriptor.bin"), compiler.encode_file_descriptor_set())?;

    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
