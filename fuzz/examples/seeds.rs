//! Writes the seed corpora (`corpus/<target>/`) from real encodings of
//! valid messages, or, with `--check`, replays every file under `corpus/`
//! through its target's checks without the fuzzer:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds [-- --check]
//! ```

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    if std::env::args().any(|a| a == "--check") {
        let mut n = 0;
        for target in agora_fuzz::TARGETS {
            let dir = root.join(target);
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                agora_fuzz::run(target, &std::fs::read(&path)?);
                n += 1;
            }
        }
        println!("{n} corpus files replayed");
        return Ok(());
    }
    for seed in agora_fuzz::seeds::all() {
        let dir = root.join(seed.target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{}", seed.name)), &seed.data)?;
    }
    println!("seeds written under {}", root.display());
    Ok(())
}
