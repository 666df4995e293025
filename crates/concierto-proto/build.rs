//! Compiles `proto/concierto/v1/*.proto` with protox (pure Rust, no system protoc)
//! and generates prost messages plus the tonic AdminService client and server.

use std::path::PathBuf;

const FILES: &[&str] = &[
    "concierto/v1/common.proto",
    "concierto/v1/bus.proto",
    "concierto/v1/run.proto",
    "concierto/v1/gate.proto",
    "concierto/v1/feedback.proto",
    "concierto/v1/content.proto",
    "concierto/v1/metric.proto",
    "concierto/v1/agent.proto",
    "concierto/v1/deliverable.proto",
    "concierto/v1/studio.proto",
    "concierto/v1/admin.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(FILES)?;

    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("concierto_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    let mut config = prost_build::Config::new();
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds_with_config(compiler.file_descriptor_set(), config)?;
    Ok(())
}
