//! What test suites ask of the sandbox, in one place: a missing
//! bubblewrap skips only the tests that need it, each saying so in one
//! `SKIPPED:` line, and under `CI=true` nothing skips: a CI machine
//! without a working bubblewrap fails at the first test that needs one.

use std::io::Write as _;
use std::sync::OnceLock;

use super::working_bwrap;

/// Whether a working bubblewrap is here, probed once per process.
/// `Err` says what is missing; under `CI=true` it panics instead.
pub fn test_sandbox() -> Result<(), &'static str> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| working_bwrap(None).map(|_| ()));
    match probe {
        Ok(()) => Ok(()),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and the sandbox does not work, so no test may skip: {why}")
        }
        Err(why) => Err(why.as_str()),
    }
}

/// For a test that needs the sandbox: `true` when it can run; otherwise
/// prints `SKIPPED: <test>: <why>` on stderr and returns `false` (the test
/// then returns). Under `CI=true` a missing sandbox panics.
pub fn sandbox_or_skip() -> bool {
    match test_sandbox() {
        Ok(()) => true,
        Err(why) => {
            say(&format!("SKIPPED: {}: {why}", test_name()));
            false
        }
    }
}

/// For a test whose providers run jobs but which tests something else:
/// whether they must run unsandboxed (no bubblewrap, not CI), saying so
/// once on stderr.
pub fn providers_unsandboxed() -> bool {
    match test_sandbox() {
        Ok(()) => false,
        Err(why) => {
            say(&format!(
                "NOTE: {}: its providers run jobs unsandboxed ({why})",
                test_name()
            ));
            true
        }
    }
}

/// The running test's name (libtest names each test's thread after it).
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("a test that needs the sandbox")
        .to_owned()
}

/// One line on the real stderr: libtest captures `eprintln!` of passing
/// tests, and a skip must be seen.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
