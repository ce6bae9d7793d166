//! Child processes: start with output to a log, signal, watch, stop.
//!
//! Signals go through the `kill` program, so the crate needs no `unsafe`
//! and no libc binding; liveness comes from `/proc` where there is one
//! (a zombie counts as gone) and from `kill -0` elsewhere.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::TestnetError;

/// How often waits poll.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// How many log lines an error shows.
pub(crate) const TAIL_LINES: usize = 40;

/// A process to start.
pub(crate) struct Launch<'a> {
    pub(crate) name: &'a str,
    pub(crate) program: &'a Path,
    pub(crate) args: Vec<OsString>,
    pub(crate) log: &'a Path,
    pub(crate) rust_log: &'a str,
    pub(crate) detach: bool,
}

/// A process this testnet started (with its `Child`) or found in a
/// `testnet.json` (without one).
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) log: PathBuf,
    child: Option<Child>,
    /// It leads a process group of its own: signal the whole group.
    group: bool,
}

impl Launch<'_> {
    /// Starts it with stdin from /dev/null and stdout and stderr appended to
    /// the log, after a header line naming the command.
    pub(crate) fn spawn(self) -> Result<Proc, TestnetError> {
        if let Some(parent) = self.log.parent() {
            std::fs::create_dir_all(parent).map_err(|e| TestnetError::io(parent, e))?;
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log)
            .map_err(|e| TestnetError::io(self.log, e))?;
        let shown: Vec<String> = self
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        writeln!(
            log,
            "=== agora-testnet: starting {}: {} {}",
            self.name,
            self.program.display(),
            shown.join(" ")
        )
        .map_err(|e| TestnetError::io(self.log, e))?;
        let stderr = log.try_clone().map_err(|e| TestnetError::io(self.log, e))?;
        let mut command = Command::new(self.program);
        command
            .args(&self.args)
            .env("RUST_LOG", self.rust_log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        if self.detach {
            command.process_group(0);
        }
        let child = command.spawn().map_err(|source| TestnetError::Spawn {
            name: self.name.to_string(),
            program: self.program.to_owned(),
            source,
        })?;
        Ok(Proc {
            name: self.name.to_string(),
            pid: child.id(),
            log: self.log.to_owned(),
            child: Some(child),
            group: self.detach,
        })
    }
}

impl Proc {
    /// A process listed in a `testnet.json`, if `pid` is still that process:
    /// alive, and its command line mentions `marker` (its data directory),
    /// so a reused pid is never signalled.
    pub(crate) fn adopt(name: &str, pid: u32, log: &Path, marker: &Path) -> Option<Proc> {
        if !pid_alive(pid) {
            return None;
        }
        if cmdline(pid).is_some_and(|c| !c.contains(&*marker.to_string_lossy())) {
            return None;
        }
        Some(Proc {
            name: name.to_string(),
            pid,
            log: log.to_owned(),
            child: None,
            group: pgrp(pid) == Some(pid),
        })
    }

    /// How it exited, if it has.
    pub(crate) fn exit_status(&mut self) -> Option<String> {
        match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(e) => Some(format!("unknown: {e}")),
            },
            None => (!pid_alive(self.pid)).then(|| "exited".to_string()),
        }
    }

    /// Still running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Sends `signal` ("TERM", "KILL") to it (to its group, when it leads
    /// one). A process that is already gone is not an error.
    pub(crate) fn signal(&mut self, signal: &'static str) -> Result<(), TestnetError> {
        if self.is_gone() {
            return Ok(());
        }
        let target = if self.group {
            format!("-{}", self.pid)
        } else {
            self.pid.to_string()
        };
        let out = Command::new("kill")
            .args(["-s", signal, "--", &target])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TestnetError::Signal {
                name: self.name.clone(),
                pid: self.pid,
                signal,
                message: format!("cannot run `kill`: {e}"),
            })?;
        if out.status.success() || !self.is_running() {
            return Ok(());
        }
        Err(TestnetError::Signal {
            name: self.name.clone(),
            pid: self.pid,
            signal,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }

    /// Waits until it (and its group) is gone, up to `timeout`; true if so.
    pub(crate) async fn wait_gone(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_gone() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// It is not running, and nothing of its group is.
    pub(crate) fn is_gone(&mut self) -> bool {
        !self.is_running() && !self.group_lives_on()
    }

    /// It leads a group, and something of that group still runs.
    fn group_lives_on(&self) -> bool {
        self.group && !group_members(self.pid).is_empty()
    }

    /// SIGTERM, up to `timeout` for it to exit, then SIGKILL. Errs only if
    /// something of it is still running after SIGKILL.
    pub(crate) async fn stop(&mut self, timeout: Duration) -> Result<(), TestnetError> {
        self.signal("TERM")?;
        if self.wait_gone(timeout).await {
            return Ok(());
        }
        self.kill().await
    }

    /// SIGKILL, then wait (a little) until it is gone.
    pub(crate) async fn kill(&mut self) -> Result<(), TestnetError> {
        self.signal("KILL")?;
        if self.wait_gone(Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err(TestnetError::Survivors(format!(
                "{} (pid {})",
                self.name, self.pid
            )))
        }
    }

    /// SIGKILL and reap, without waiting for anything else: for `Drop`.
    pub(crate) fn kill_blocking(&mut self) {
        let _ = self.signal("KILL");
        if let Some(child) = &mut self.child {
            let _ = child.wait();
        }
    }
}

/// Whether `pid` is a live process (a zombie is not).
pub fn pid_alive(pid: u32) -> bool {
    if Path::new("/proc/self/stat").exists() {
        return match proc_stat(pid) {
            Some((state, _)) => state != 'Z' && state != 'X',
            None => false,
        };
    }
    Command::new("kill")
        .args(["-s", "0", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Live members of process group `pgid` (empty without `/proc`).
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            proc_stat(pid).is_some_and(|(state, pgrp)| pgrp == pgid && state != 'Z' && state != 'X')
        })
        .collect()
}

/// The process group of `pid`.
fn pgrp(pid: u32) -> Option<u32> {
    proc_stat(pid).map(|(_, pgrp)| pgrp)
}

/// State letter and process group from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp …"; comm may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// The command line of `pid`, arguments joined by spaces (`None` without
/// `/proc`).
fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// The last `lines` lines of a log (at most its last 64 KiB), or a note
/// saying why there are none.
pub fn log_tail(path: &Path, lines: usize) -> String {
    const MAX: u64 = 64 * 1024;
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => return format!("(no log: {e})"),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(MAX)));
    let mut raw = Vec::new();
    let _ = file.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    if tail.is_empty() {
        "(log is empty)".into()
    } else {
        tail
    }
}

/// The first line of the log at or after byte `from` that starts with
/// `prefix`, without the prefix.
pub(crate) fn find_line(path: &Path, from: u64, prefix: &str) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut raw = Vec::new();
    file.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .map(|rest| rest.trim().to_string())
}

/// The length of a file, 0 if it does not exist.
pub(crate) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path, detach: bool) -> Proc {
        Launch {
            name: "sleeper",
            program: Path::new("sh"),
            args: vec!["-c".into(), "echo up; sleep 600 & wait".into()],
            log: &dir.join("log"),
            rust_log: "info",
            detach,
        }
        .spawn()
        .unwrap()
    }

    #[tokio::test]
    async fn a_detached_process_and_its_children_stop_together() {
        let dir = tempfile::tempdir().unwrap();
        let mut proc = sleeper(dir.path(), true);
        let pid = proc.pid;
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_members(pid).len() < 2 {
            assert!(Instant::now() < deadline, "the sleep never started");
            tokio::time::sleep(POLL).await;
        }
        assert_eq!(pgrp(pid), Some(pid));
        proc.stop(Duration::from_secs(10)).await.unwrap();
        assert!(!pid_alive(pid));
        assert!(group_members(pid).is_empty());
        assert!(log_tail(&dir.path().join("log"), 5).contains("starting sleeper"));
    }

    #[tokio::test]
    async fn adopting_checks_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut proc = sleeper(dir.path(), true);
        // Until the child has exec'd, its command line is still this test
        // binary's (and the log's first line, written before the spawn,
        // proves nothing): wait for the shell's own command line.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cmdline(proc.pid).is_some_and(|c| c.contains("sleep 600")) {
            assert!(Instant::now() < deadline, "the shell never started");
            tokio::time::sleep(POLL).await;
        }
        assert!(Proc::adopt("x", proc.pid, &proc.log, Path::new("/no/such/marker")).is_none());
        let mut adopted = Proc::adopt("x", proc.pid, &proc.log, Path::new("sleep 600")).unwrap();
        adopted.kill().await.unwrap();
        assert!(proc.exit_status().is_some());
    }

    #[test]
    fn tails_and_lines_of_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, "a\nlistening on 127.0.0.1:9\nb\nc\n").unwrap();
        assert_eq!(log_tail(&log, 2), "b\nc");
        assert_eq!(
            find_line(&log, 0, "listening on ").as_deref(),
            Some("127.0.0.1:9")
        );
        assert_eq!(find_line(&log, 5, "listening on "), None);
        assert!(log_tail(&dir.path().join("none"), 2).starts_with("(no log"));
    }
}
