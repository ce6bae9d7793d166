//! Killing a job's whole process tree.
//!
//! The job's first process leads its own process group, so one `killpg`
//! reaches everything that stayed in the group. bwrap's `--new-session`
//! moves the sandboxed processes into a session (and group) of their own,
//! so the tree is also walked through `/proc` and every descendant is
//! killed by pid; and in the sandbox the job lives in its own pid
//! namespace, which the kernel empties when the namespace's first process
//! dies (`--die-with-parent` kills that one when bwrap dies).

use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How long, at most, to wait for killed processes to be gone.
const GONE_WAIT: Duration = Duration::from_secs(10);

/// `/proc/PID/stat`'s state and parent: `(state, ppid)`.
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …"; comm may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// `root` and every process descended from it, as `/proc` shows them now.
pub(super) fn descendants(root: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![root];
    };
    let parents: Vec<(u32, u32)> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?.1)))
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(pid, ppid)| *ppid == parent && !tree.contains(pid))
                .map(|(pid, _)| *pid)
                .collect::<Vec<_>>(),
        );
        i += 1;
    }
    tree
}

fn pid(raw: u32) -> Option<Pid> {
    i32::try_from(raw).ok().map(Pid::from_raw)
}

/// SIGKILL to the process group `group` and to each of `pids`; processes
/// already gone are fine.
pub(super) fn kill_all(group: u32, pids: &[u32]) {
    // 0 and 1 would mean our own group and init's: never.
    if let Some(group) = pid(group).filter(|_| group > 1) {
        let _ = killpg(group, Signal::SIGKILL);
    }
    for raw in pids.iter().filter(|p| **p > 1) {
        if let Some(p) = pid(*raw) {
            let _ = kill(p, Signal::SIGKILL);
        }
    }
}

/// Whether `pid` is still a live process (a zombie is dead; its parent
/// just has not reaped it).
fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Waits until none of `pids` is alive; `false` if some still were after
/// [`GONE_WAIT`].
pub(super) async fn wait_gone(pids: &[u32]) -> bool {
    let deadline = tokio::time::Instant::now() + GONE_WAIT;
    loop {
        if !pids.iter().any(|p| alive(*p)) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
