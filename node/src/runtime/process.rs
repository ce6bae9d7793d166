//! The process runtime: runs a job's command inside bubblewrap.
//!
//! Each job gets a fresh work dir, mounted at `/work` in the sandbox
//! (its inputs at their relative paths, its outputs in `/work/out`), a
//! read-only system, no network unless granted, a cleared environment,
//! and none of the provider's hidden paths; `sandbox.rs` has the
//! layout. The job's process tree is killed when it runs out of time, is
//! cancelled, or exits (background processes do not outlive it).
//!
//! Exit statuses: bwrap reports a job killed by signal `s` as status
//! `128 + s` (the shell's convention); the runtime maps statuses
//! 129..=192 back to [`Exit::Signal`], so a sandboxed job that exits with
//! such a status by itself reads as killed by that signal.
//!
//! A program that cannot be found in the sandbox is
//! [`RuntimeError::Start`]; one that is found but cannot execute (no
//! exec bit, missing interpreter) ends as `Exit::Code(1)` with bwrap's
//! message on stderr.
//!
//! Limits (`limits.rs`): a cgroup per job bounds its processes, memory
//! (its `/tmp` tmpfs included) and CPU weight where the node can make
//! one; its work dir is bounded on disk while it runs; it inherits no
//! descriptor but 0–2. Once it ends, everything in its work dir but its
//! outputs is removed (the outputs go after `runtime.work_retention_secs`,
//! see the executor).
//!
//! Without a working bubblewrap, and only when the provider set
//! `runtime.allow_unsandboxed`, jobs run as plain processes: own process
//! group, cleared environment, work dir as current directory, time limit
//! and tree kill, but they see everything the node's user can, and a
//! process that leaves the job's process group and its tree (a daemon)
//! is not reached.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use agora_protocol::SandboxLimits;
use agora_protocol::run::SandboxLimit;

use crate::config::RuntimeSection;
use crate::runtime::{Exit, Outcome, RunEvent, RunSpec, Runtime, RuntimeError, Stream};

pub(crate) mod collect;
pub mod limits;
pub(crate) mod output;
pub(crate) mod sandbox;
mod tree;

pub mod for_tests;

#[cfg(test)]
mod tests;

/// How long the output readers may take to drain after the job is gone.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// Runs jobs as sandboxed processes.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    settings: RuntimeSection,
    /// Canonical forms of the paths jobs must never see.
    hidden: Vec<PathBuf>,
    /// The bubblewrap binary; `None` when jobs run unsandboxed.
    bwrap: Option<PathBuf>,
    /// Where jobs' cgroups are made; `None`: processes, memory and CPU
    /// weight are not limited here.
    cgroups: Option<limits::Cgroups>,
}

/// How the wait for a job ended.
enum Ended {
    Exited(ExitStatus),
    TimeLimit,
    Cancelled,
    /// Its work dir held this many bytes, over the disk limit.
    Disk(u64),
}

impl ProcessRuntime {
    /// A runtime with `settings`, hiding `hidden` (the node's data dir
    /// and key file) from every job. Finds bubblewrap (`settings.bwrap`
    /// or `PATH`) and checks once that it can create a sandbox here.
    /// Without a working bubblewrap this fails with
    /// [`RuntimeError::Unavailable`], unless `settings.allow_unsandboxed`,
    /// in which case jobs run unsandboxed (see [`Self::sandboxed`]).
    pub fn new(settings: RuntimeSection, hidden: Vec<PathBuf>) -> Result<Self, RuntimeError> {
        let hidden = hidden
            .into_iter()
            .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
            .collect();
        let bwrap = match working_bwrap(settings.bwrap.as_deref()) {
            Ok(bwrap) => Some(bwrap),
            Err(reason) if settings.allow_unsandboxed => {
                tracing::warn!(
                    %reason,
                    "jobs run WITHOUT a sandbox (runtime.allow_unsandboxed = true): \
                     they can read and write everything this node's user can"
                );
                None
            }
            Err(reason) => {
                return Err(RuntimeError::Unavailable(format!(
                    "{reason}, or set runtime.allow_unsandboxed = true to run jobs without \
                     a sandbox"
                )));
            }
        };
        let cgroups = match limits::Cgroups::detect(settings.cgroup.as_deref()) {
            Ok(found) => {
                tracing::info!(
                    kind = found.kind(),
                    max_pids = settings.max_pids,
                    max_memory_mib = settings.max_memory_mib,
                    cpu_weight = settings.cpu_weight,
                    "each job gets a cgroup of its own"
                );
                Some(found)
            }
            Err(reason) => {
                tracing::warn!(
                    %reason,
                    "jobs' processes, memory and CPU weight are NOT limited: no cgroup this \
                     node can use (its disk and file descriptors still are; offers say \
                     cgroup = false)"
                );
                None
            }
        };
        Ok(Self {
            settings,
            hidden,
            bwrap,
            cgroups,
        })
    }

    /// The limits of one job here, as the runtime enforces them.
    fn job_limits(&self) -> limits::Limits {
        let s = &self.settings;
        limits::Limits {
            pids: s.max_pids,
            memory_bytes: s.max_memory_mib << 20,
            tmp_bytes: if self.sandboxed() { s.tmp_mib << 20 } else { 0 },
            disk_bytes: s.max_disk_mib << 20,
            cpu_weight: s.cpu_weight,
        }
    }

    /// Why the job's command could not be spawned.
    fn spawn_error(&self, spec: &RunSpec, e: &std::io::Error) -> RuntimeError {
        match (&self.bwrap, e.kind()) {
            (Some(bwrap), _) => RuntimeError::Unavailable(format!(
                "cannot start bubblewrap at {}: {e}",
                bwrap.display()
            )),
            (None, std::io::ErrorKind::NotFound) => {
                RuntimeError::Start(format!("program {:?} not found", spec.command[0]))
            }
            (None, _) => RuntimeError::Start(format!("{:?}: {e}", spec.command[0])),
        }
    }

    /// Where jobs' cgroups are made, if anywhere.
    pub fn cgroups(&self) -> Option<&limits::Cgroups> {
        self.cgroups.as_ref()
    }

    /// Whether jobs run inside bubblewrap (`false` only when the provider
    /// allowed unsandboxed jobs and bubblewrap is unusable).
    pub fn sandboxed(&self) -> bool {
        self.bwrap.is_some()
    }

    /// The bubblewrap binary in use, if any.
    pub fn bwrap(&self) -> Option<&Path> {
        self.bwrap.as_deref()
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &RuntimeSection {
        &self.settings
    }

    /// The command that runs the job: bwrap around it, or (unsandboxed)
    /// the job's program itself.
    fn command(&self, spec: &RunSpec, work_dir: &Path) -> Result<Command, RuntimeError> {
        let program = spec
            .command
            .first()
            .ok_or_else(|| RuntimeError::Start("the command is empty".to_owned()))?;
        let mut cmd = match &self.bwrap {
            Some(bwrap) => {
                let (args, binds) =
                    sandbox::job_args(spec, work_dir, &self.hidden, self.job_limits().tmp_bytes);
                let env = sandbox::job_env(spec, sandbox::WORK, sandbox::OUTPUT);
                let path = env
                    .get("PATH")
                    .map_or(sandbox::DEFAULT_PATH, String::as_str);
                if !sandbox::program_exists(&binds, &self.hidden, program, path) {
                    return Err(RuntimeError::Start(format!(
                        "program {program:?} not found in the sandbox (PATH={path}, work dir \
                         /work)"
                    )));
                }
                let mut cmd = Command::new(bwrap);
                cmd.args(args).env_clear();
                cmd
            }
            None => {
                let home = work_dir.to_string_lossy();
                let out = work_dir.join("out");
                let env = sandbox::job_env(spec, &home, &out.to_string_lossy());
                let mut cmd = Command::new(program);
                cmd.args(&spec.command[1..])
                    .env_clear()
                    .envs(env)
                    .current_dir(work_dir);
                cmd
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        Ok(cmd)
    }

    async fn run_job(
        &self,
        spec: RunSpec,
        events: mpsc::Sender<RunEvent>,
        cancel: CancellationToken,
    ) -> Result<Outcome, RuntimeError> {
        let work_dir = super::prepare_work_dir(&spec).await?;
        let limits = self.job_limits();
        let mut command = self.command(&spec, &work_dir)?;
        let cgroup = match &self.cgroups {
            Some(found) => {
                let name = format!("agora-job-{}", spec.lease_id);
                let found = found.clone();
                Some(
                    tokio::task::spawn_blocking(move || found.create(&name, &limits))
                        .await
                        .map_err(|e| RuntimeError::Io(std::io::Error::other(e)))?
                        .map_err(RuntimeError::Unavailable)?,
                )
            }
            None => None,
        };
        let entries = match cgroup.as_ref().map(limits::JobCgroup::entries) {
            None => Ok(Vec::new()),
            Some(Ok(entries)) => Ok(entries),
            Some(Err(e)) => Err(RuntimeError::Unavailable(e)),
        };
        let spawned = entries.and_then(|entries| {
            limits::confine(&mut command, entries, limits.disk_bytes);
            command.spawn().map_err(|e| self.spawn_error(&spec, &e))
        });
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                if let Some(group) = cgroup {
                    let _ = tokio::task::spawn_blocking(move || group.remove()).await;
                }
                return Err(e);
            }
        };
        let group = child.id().unwrap_or(0);
        tracing::info!(pid = group, sandboxed = self.sandboxed(), "job started");
        let _ = events.send(RunEvent::Started).await;

        let budget = Arc::new(output::LogBudget::new(self.settings.max_log_bytes));
        let mut readers = Vec::with_capacity(2);
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(output::pump(
                stdout,
                Stream::Stdout,
                events.clone(),
                budget.clone(),
            )));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(output::pump(
                stderr,
                Stream::Stderr,
                events.clone(),
                budget.clone(),
            )));
        }

        let deadline = tokio::time::sleep(spec.time_limit);
        tokio::pin!(deadline);
        let mut disk_poll = tokio::time::interval(limits::DISK_POLL);
        let ended = loop {
            tokio::select! {
                biased;
                status = child.wait() => break Ended::Exited(status?),
                () = cancel.cancelled() => break Ended::Cancelled,
                () = &mut deadline => break Ended::TimeLimit,
                _ = disk_poll.tick(), if limits.disk_bytes > 0 => {
                    let dir = work_dir.clone();
                    let used = tokio::task::spawn_blocking(move || limits::disk_usage(&dir))
                        .await
                        .unwrap_or(0);
                    if used > limits.disk_bytes {
                        break Ended::Disk(used);
                    }
                }
            }
        };
        let mut reason = None;
        let mut exit = match ended {
            Ended::Exited(status) => {
                // Background processes left in the job's group go too.
                tree::kill_all(group, &[]);
                exit_of(status, self.sandboxed())
            }
            Ended::TimeLimit => {
                kill_tree(&mut child, group).await?;
                Exit::TimeLimit
            }
            Ended::Cancelled => {
                kill_tree(&mut child, group).await?;
                Exit::Cancelled
            }
            Ended::Disk(used) => {
                kill_tree(&mut child, group).await?;
                reason = Some(format!(
                    "its work dir held {} MiB, over the sandbox's disk limit of {} MiB \
                     (runtime.max_disk_mib); stopped",
                    used >> 20,
                    limits.disk_bytes >> 20
                ));
                Exit::Limit(SandboxLimit::Disk)
            }
        };
        if let Some(group) = cgroup {
            // Whatever left the job's session and process group is still in
            // its cgroup: it goes now, and then the cgroup.
            let hit = tokio::task::spawn_blocking(move || {
                let hit = group.hit();
                group.remove();
                hit
            })
            .await
            .ok()
            .flatten();
            if let Some((limit, text)) = limit_reached(hit, &exit, &limits) {
                exit = Exit::Limit(limit);
                reason = Some(text);
            }
        }
        if exit == Exit::Signal(nix::sys::signal::Signal::SIGXFSZ as i32) {
            exit = Exit::Limit(SandboxLimit::Disk);
            reason = Some(format!(
                "it wrote a file larger than the sandbox's disk limit of {} MiB \
                 (runtime.max_disk_mib) and was killed",
                limits.disk_bytes >> 20
            ));
        }
        tracing::info!(?exit, "job ended");

        let drained = tokio::time::timeout(DRAIN_WAIT, async {
            for reader in &mut readers {
                let _ = reader.await;
            }
        })
        .await;
        if drained.is_err() {
            // A process outside the tree still holds a pipe (unsandboxed).
            tracing::warn!("job output still open after the job ended; closing it");
            for reader in &readers {
                reader.abort();
            }
        }
        let dropped = budget.dropped();
        if dropped > 0 {
            let note = format!(
                "\n[agora: {dropped} bytes of output dropped: the job's log exceeded \
                 runtime.max_log_bytes = {}]\n",
                self.settings.max_log_bytes
            );
            let _ = events
                .send(RunEvent::Output {
                    stream: Stream::Stderr,
                    data: note.into_bytes(),
                })
                .await;
        }

        let output_dir = work_dir.join("out");
        let (max_files, max_bytes) = (
            self.settings.max_output_files,
            self.settings.max_output_bytes,
        );
        let dir = output_dir.clone();
        let (outputs, outputs_note) =
            tokio::task::spawn_blocking(move || collect::collect(&dir, max_files, max_bytes))
                .await
                .map_err(|e| RuntimeError::Io(std::io::Error::other(e)))??;
        remove_scratch(&work_dir, &self.hidden).await;
        Ok(Outcome {
            exit,
            outputs,
            output_dir,
            outputs_note,
            reason,
        })
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &str {
        "process"
    }

    fn limits(&self) -> SandboxLimits {
        // Without a cgroup nothing bounds processes, memory or CPU: the
        // offer says so with zeros (no limit), not with figures that no
        // kernel enforces.
        let l = self.job_limits();
        let cgroup = self.cgroups.is_some();
        SandboxLimits {
            pids: if cgroup { l.pids } else { 0 },
            memory_mib: if cgroup { l.memory_bytes >> 20 } else { 0 },
            disk_mib: l.disk_bytes >> 20,
            tmp_mib: l.tmp_bytes >> 20,
            cpu_weight: if cgroup { l.cpu_weight } else { 0 },
            cgroup,
        }
    }

    async fn health(&self) -> Result<(), RuntimeError> {
        match &self.bwrap {
            Some(bwrap) if !is_executable(bwrap) => Err(RuntimeError::Unavailable(format!(
                "bubblewrap at {} is gone: reinstall it (apt-get install bubblewrap) and \
                 restart the node",
                bwrap.display()
            ))),
            _ => Ok(()),
        }
    }

    async fn run(
        &self,
        spec: RunSpec,
        events: mpsc::Sender<RunEvent>,
        cancel: CancellationToken,
    ) -> Result<Outcome, RuntimeError> {
        let span = tracing::info_span!("job", lease = %spec.lease_id);
        self.run_job(spec, events, cancel).instrument(span).await
    }
}

/// Kills the job's group and every descendant of its first process,
/// reaps the first process, and waits until the rest is gone too.
async fn kill_tree(child: &mut Child, group: u32) -> Result<(), RuntimeError> {
    let pids = tree::descendants(group);
    tree::kill_all(group, &pids);
    child.wait().await?;
    if !tree::wait_gone(&pids).await {
        tracing::warn!(?pids, "some of the job's processes outlived SIGKILL");
    }
    Ok(())
}

/// The limit the kernel enforced on a job whose run ended with `exit`,
/// with the figure for a person: an OOM kill is the memory limit; a
/// refused fork is the pids limit when the job then failed (a job that
/// copes with a refused fork and exits 0 succeeded).
fn limit_reached(
    hit: Option<SandboxLimit>,
    exit: &Exit,
    limits: &limits::Limits,
) -> Option<(SandboxLimit, String)> {
    match (hit?, exit) {
        (SandboxLimit::Memory, Exit::Signal(_) | Exit::Code(1..)) => Some((
            SandboxLimit::Memory,
            format!(
                "it reached the sandbox's memory limit of {} MiB, its /tmp included \
                 (runtime.max_memory_mib), and the kernel killed it",
                limits.memory_bytes >> 20
            ),
        )),
        (SandboxLimit::Pids, Exit::Signal(_)) | (SandboxLimit::Pids, Exit::Code(1..)) => Some((
            SandboxLimit::Pids,
            format!(
                "it reached the sandbox's limit of {} processes and threads \
                 (runtime.max_pids): a fork was refused",
                limits.pids
            ),
        )),
        _ => None,
    }
}

/// Removes everything in a finished job's work dir but its outputs
/// (`out/`): inputs and scratch files take no disk after the run. A path
/// the node hides from jobs, or one holding such a path, is left alone.
async fn remove_scratch(work_dir: &Path, hidden: &[PathBuf]) {
    let Ok(mut entries) = tokio::fs::read_dir(work_dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if entry.file_name() == "out" {
            continue;
        }
        let path = entry.path();
        if hidden.iter().any(|h| h.starts_with(&path)) {
            continue;
        }
        let removed = match entry.file_type().await {
            Ok(t) if t.is_dir() => tokio::fs::remove_dir_all(&path).await,
            _ => tokio::fs::remove_file(&path).await,
        };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a finished job's file");
        }
    }
}

/// The job's exit as the runtime reports it (see the module docs for
/// bwrap's 128 + signal statuses).
fn exit_of(status: ExitStatus, sandboxed: bool) -> Exit {
    match (status.code(), status.signal()) {
        (Some(code), _) if sandboxed && (129..=192).contains(&code) => Exit::Signal(code - 128),
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Code(-1),
    }
}

/// Whether `path` is a file with an exec bit.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The bubblewrap binary (`configured`, else the first on `PATH`), once
/// it has created a sandbox laid out as a job's here; `Err` says what is
/// missing or failing and how to fix it. The runtime's start,
/// `agorad doctor` and the testnet's demo all ask this.
pub fn working_bwrap(configured: Option<&Path>) -> Result<PathBuf, String> {
    find_bwrap(configured).and_then(|b| probe(&b).map(|()| b))
}

fn find_bwrap(configured: Option<&Path>) -> Result<PathBuf, String> {
    const INSTALL: &str = "install it (apt-get install bubblewrap)";
    if let Some(path) = configured {
        return if is_executable(path) {
            Ok(path.to_path_buf())
        } else {
            Err(format!(
                "bubblewrap (bwrap) not found at {} (runtime.bwrap): {INSTALL} or fix the path",
                path.display()
            ))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("bwrap"))
        .find(|p| is_executable(p))
        .ok_or_else(|| format!("bubblewrap (bwrap) not found on PATH: {INSTALL}"))
}

/// Runs `true` in a sandbox laid out as a job's; `Err` says why it fails.
fn probe(bwrap: &Path) -> Result<(), String> {
    let args: Vec<OsString> = sandbox::probe_args();
    let out = std::process::Command::new(bwrap)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run bubblewrap at {}: {e}", bwrap.display()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "bubblewrap at {} cannot create a sandbox here ({}; {}): allow unprivileged user \
         namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 and later \
         kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile for bwrap)",
        bwrap.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}
