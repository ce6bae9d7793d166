//! Compiles `proto/agora/v1/*.proto` with protox (pure Rust, no system `protoc`)
//! and generates prost code into `OUT_DIR`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/agora/v1/agora.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
