//! Generates the prost messages and their proto3-JSON serde impls from `proto/`, and (with the
//! `testing` feature) the tonic stubs of the test echo service. protox compiles the .proto files
//! in-process, so no `protoc` is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/sinew/config/v1/config.proto"];
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(files, ["proto"])?;
    let descriptor_path = out.join("sinew_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;

    let mut config = prost_build::Config::new();
    config
        .file_descriptor_set_path(&descriptor_path)
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types");
    config.compile_fds(fds)?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .build(&[".sinew"])?;

    if std::env::var_os("CARGO_FEATURE_TESTING").is_some() {
        let fds = protox::compile(["proto/sinew/testing/v1/echo.proto"], ["proto"])?;
        tonic_prost_build::configure()
            .build_transport(false)
            .compile_fds(fds)?;
    }
    Ok(())
}
