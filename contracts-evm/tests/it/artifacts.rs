//! The committed artifacts are what solcjs builds from the committed
//! Solidity: `node build.mjs --check` rebuilds and compares them.

use std::path::Path;
use std::process::Command;

#[test]
fn committed_artifacts_match_a_fresh_solcjs_build() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !dir.join("node_modules/solc").is_dir() {
        crate::support::skip("solc is not installed: run `npm ci --prefix contracts-evm`");
        return;
    }
    let out = Command::new("node")
        .arg("build.mjs")
        .arg("--check")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build.mjs --check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
