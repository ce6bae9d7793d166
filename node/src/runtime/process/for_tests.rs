//! What test suites do when something a test needs is missing, in one
//! place: the test prints one `SKIPPED: <test>: <what is missing>` line
//! and returns, except under `CI=true`, where nothing skips and the test
//! fails naming what is missing. The sandbox's own probe lives here too:
//! a missing bubblewrap skips only the tests that need it.

use std::io::Write as _;
use std::sync::OnceLock;

use super::working_bwrap;

/// Whether this is CI (`CI=true`), where no test may skip.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// For a test that cannot run because `missing` is missing: under
/// `CI=true` it panics with that; otherwise it prints
/// `SKIPPED: <test>: <missing>` on stderr, and the caller returns.
pub fn skip(missing: &str) {
    assert!(
        !in_ci(),
        "CI=true and {}: {missing}; no test may skip in CI",
        test_name()
    );
    say(&format!("SKIPPED: {}: {missing}", test_name()));
}

/// Whether a working bubblewrap is here, probed once per process; `Err`
/// says what is missing.
fn test_sandbox() -> Result<(), &'static str> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| working_bwrap(None).map(|_| ()))
        .as_ref()
        .map(|&()| ())
        .map_err(String::as_str)
}

/// For a test that needs the sandbox: `true` when it can run; otherwise
/// [`skip`]s and returns `false` (the test then returns).
pub fn sandbox_or_skip() -> bool {
    match test_sandbox() {
        Ok(()) => true,
        Err(why) => {
            skip(why);
            false
        }
    }
}

/// For a test whose providers run jobs but which tests something else:
/// whether they must run unsandboxed (no bubblewrap, not CI), saying so
/// on stderr. Under `CI=true` a missing sandbox panics.
pub fn providers_unsandboxed() -> bool {
    match test_sandbox() {
        Ok(()) => false,
        Err(why) => {
            assert!(
                !in_ci(),
                "CI=true and the sandbox does not work, so no test may run without it: {why}"
            );
            say(&format!(
                "NOTE: {}: its providers run jobs unsandboxed ({why})",
                test_name()
            ));
            true
        }
    }
}

/// One line on the real stderr: libtest captures `print!`/`eprint!` of
/// passing tests, and a skip must be seen.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The running test's name (libtest names each test's thread after it).
fn test_name() -> String {
    std::thread::current().name().unwrap_or("a test").to_owned()
}
