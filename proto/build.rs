//! Compiles the proxy API with protox (a pure-Rust protobuf compiler), so a fresh machine builds
//! with cargo alone and needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = "proto/shifter/proxy/v1/destination.proto";
    println!("cargo:rerun-if-changed={file}");
    let descriptors = protox::compile([file], ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
