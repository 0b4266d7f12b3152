//! Generates the prost messages, the tonic client/server stubs, and proto3-JSON serde impls
//! (pbjson) from `proto/`. protox compiles the .proto files in-process, so no `protoc` is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut files = vec![
        "proto/sinew/config/v1/config.proto",
        "proto/sinew/ca/v1/ca.proto",
        "proto/sinew/discovery/v1/discovery.proto",
    ];
    if std::env::var_os("CARGO_FEATURE_TESTING").is_some() {
        files.push("proto/sinew/testing/v1/echo.proto");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(&files, ["proto"])?;
    let descriptor_path = out.join("sinew_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;

    // Maps as BTreeMap: encoding must be deterministic, because resource versions are digests of
    // the encoded bytes (a HashMap's random order gave unchanged services new versions).
    // Small gRPC buffers (src/codec.rs): one idle stream per proxy must stay cheap.
    tonic_prost_build::configure()
        .btree_map(".")
        .codec_path("crate::codec::SmallBufferCodec")
        .build_transport(false)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .btree_map(["."])
        .build(&[".sinew"])?;
    Ok(())
}
