//! The Ray runtime: runs leased jobs on an existing Ray cluster through
//! the head's Job Submission REST API.
//!
//! A job becomes one Ray job whose submission id is `agora-<lease id>`:
//! its entrypoint is the job's command, run by a shell in the job's work
//! dir; `runtime_env.env_vars` carries the job's environment plus
//! `AGORA_OUTPUT` and `AGORA_LEASE_ID`; `entrypoint_num_gpus` is the
//! lease's GPU count (Ray picks the devices and sets
//! `CUDA_VISIBLE_DEVICES`), `entrypoint_num_cpus` comes from `[ray]`, and
//! the metadata names the lease. The runtime then reads the job's status
//! and log every `ray.poll_ms`:
//!
//! | Ray status  | Agora                                                  |
//! |-------------|--------------------------------------------------------|
//! | `PENDING`   | nothing yet (not started, not metered)                 |
//! | `RUNNING`   | [`RunEvent::Started`]                                  |
//! | `SUCCEEDED` | [`Exit::Code`] 0                                       |
//! | `FAILED`    | [`Exit::Code`] of the entrypoint (1 when Ray gives none), Ray's message as the reason |
//! | `STOPPED`   | [`Exit::Cancelled`] / [`Exit::TimeLimit`] when Agora stopped it, else killed by signal 15 |
//!
//! On cancel and at the time limit the runtime stops the Ray job and waits
//! until Ray says it stopped. A head that answers nothing for
//! `ray.head_timeout_secs` while a job runs ends the run with
//! [`RuntimeError::Unavailable`], which names the head.
//!
//! Outputs are read from `work_dir/out` on this machine and hashed by the
//! process runtime's collector: the jobs dir must be on a filesystem every
//! Ray node that may run the entrypoint mounts at the same path (with a
//! single-node cluster it is this machine's disk).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{RaySection, RuntimeSection};
use crate::runtime::process::{collect, sandbox};
use crate::runtime::{Exit, Outcome, RunEvent, RunSpec, Runtime, RuntimeError, Stream};

pub(crate) mod api;
mod logs;

use api::{JobInfo, RayApi, RayError, Submission};
use logs::LogFollower;

/// Longest reason taken from Ray's message.
const MAX_REASON: usize = 400;

/// Runs jobs as Ray jobs on the cluster behind `[ray].dashboard`.
#[derive(Debug, Clone)]
pub struct RayRuntime {
    settings: RuntimeSection,
    ray: RaySection,
    api: RayApi,
}

/// What a status read means for the job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Queued on the cluster.
    Waiting,
    /// The entrypoint runs.
    Running,
    /// Over, with Ray's reason when there is one.
    Ended(Exit, Option<String>),
}

impl RayRuntime {
    /// A runtime for the cluster `ray` names. Does not contact the head:
    /// see [`Runtime::health`] and [`Self::cluster_gpus`].
    pub fn new(settings: RuntimeSection, ray: RaySection) -> Result<Self, RuntimeError> {
        ray.validate()
            .map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        let api = RayApi::new(ray.base_url(), Duration::from_secs(ray.head_timeout_secs))
            .map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        Ok(Self { settings, ray, api })
    }

    /// The GPUs the cluster's alive nodes report, in whole GPUs.
    pub async fn cluster_gpus(&self) -> Result<u32, RuntimeError> {
        let gpus = self.api.cluster_gpus().await.map_err(unavailable)?;
        // Fractions of a GPU are not offered.
        Ok(gpus.floor().clamp(0.0, f64::from(u32::MAX)) as u32)
    }

    /// The `[ray]` settings.
    pub fn ray(&self) -> &RaySection {
        &self.ray
    }

    async fn run_job(
        &self,
        spec: RunSpec,
        events: mpsc::Sender<RunEvent>,
        cancel: CancellationToken,
    ) -> Result<Outcome, RuntimeError> {
        let deadline = Instant::now() + spec.time_limit;
        let work_dir = super::prepare_work_dir(&spec).await?;
        let submission = submission(&spec, &work_dir, self.ray.num_cpus)?;
        let id = submission.submission_id.clone();
        self.api.submit(&submission).await.map_err(|e| match e {
            RayError::Unreachable { .. } => unavailable(e),
            RayError::Bad { .. } => RuntimeError::Start(format!("Ray refused the job: {e}")),
        })?;
        tracing::info!(ray_job = %id, dashboard = %self.api.base(), "submitted to Ray");

        let poll = Duration::from_millis(self.ray.poll_ms);
        let head_timeout = Duration::from_secs(self.ray.head_timeout_secs);
        let mut follower = LogFollower::default();
        let mut logs_open = true;
        let mut started = false;
        let mut failing_since: Option<Instant> = None;
        let (exit, reason) = loop {
            let stop = tokio::select! {
                biased;
                () = cancel.cancelled() => Some(Exit::Cancelled),
                () = tokio::time::sleep_until(deadline) => Some(Exit::TimeLimit),
                () = tokio::time::sleep(poll) => None,
            };
            if let Some(exit) = stop {
                let reason = self.stop(&id, &exit).await;
                if !started && reason.is_none() {
                    // Stopped before it ran: nothing to meter.
                    tracing::info!(ray_job = %id, "stopped while pending");
                }
                break (exit, reason);
            }
            let info = match self.api.job(&id).await {
                Ok(info) => {
                    if failing_since.take().is_some() {
                        tracing::info!(ray_job = %id, "the Ray head answers again");
                    }
                    info
                }
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(|| {
                        tracing::warn!(ray_job = %id, error = %e, "cannot read the Ray job's state");
                        Instant::now()
                    });
                    if since.elapsed() >= head_timeout {
                        return Err(RuntimeError::Unavailable(format!(
                            "{e}; the job's state on the Ray cluster is unknown after {} s \
                             (ray.head_timeout_secs) and the run ends here",
                            head_timeout.as_secs()
                        )));
                    }
                    continue;
                }
            };
            let state = state_of(&info, None);
            if state != State::Waiting && !started {
                started = true;
                let _ = events.send(RunEvent::Started).await;
            }
            let ended = matches!(state, State::Ended(..));
            self.forward_logs(&id, &mut follower, &mut logs_open, ended, &events)
                .await;
            if let State::Ended(exit, reason) = state {
                break (exit, reason);
            }
        };
        if matches!(exit, Exit::Cancelled | Exit::TimeLimit) {
            self.forward_logs(&id, &mut follower, &mut logs_open, true, &events)
                .await;
        }
        tracing::info!(ray_job = %id, ?exit, "Ray job ended");

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
        Ok(Outcome {
            exit,
            outputs,
            output_dir,
            outputs_note,
            reason,
        })
    }

    /// Reads the log and forwards what is new; a log over the provider's
    /// limit is no longer followed.
    async fn forward_logs(
        &self,
        id: &str,
        follower: &mut LogFollower,
        open: &mut bool,
        last: bool,
        events: &mpsc::Sender<RunEvent>,
    ) {
        if !*open {
            return;
        }
        let max = usize::try_from(self.settings.max_log_bytes).unwrap_or(usize::MAX);
        let log = match self.api.logs(id, max).await {
            Ok(Some(log)) => log,
            Ok(None) => {
                *open = false;
                let note = format!(
                    "\n[agora: the Ray job's log passed runtime.max_log_bytes = {}; the rest \
                     is not forwarded]\n",
                    self.settings.max_log_bytes
                );
                let _ = events
                    .send(RunEvent::Output {
                        stream: Stream::Stderr,
                        data: note.into_bytes(),
                    })
                    .await;
                return;
            }
            Err(e) => {
                tracing::debug!(ray_job = %id, error = %e, "cannot read the Ray job's log");
                return;
            }
        };
        for data in follower.advance(log.as_bytes(), last) {
            let _ = events
                .send(RunEvent::Output {
                    stream: Stream::Stdout,
                    data,
                })
                .await;
        }
    }

    /// Stops the Ray job and waits until Ray says it is over. Returns a
    /// note when that could not be confirmed.
    async fn stop(&self, id: &str, why: &Exit) -> Option<String> {
        tracing::info!(ray_job = %id, ?why, "stopping the Ray job");
        let wait = Duration::from_secs(self.ray.head_timeout_secs);
        let poll = Duration::from_millis(self.ray.poll_ms);
        let started = Instant::now();
        let mut last_error = match self.api.stop(id).await {
            Ok(()) => None,
            Err(e) => Some(e.to_string()),
        };
        while started.elapsed() < wait {
            match self.api.job(id).await {
                Ok(info) if matches!(state_of(&info, Some(why)), State::Ended(..)) => return None,
                Ok(_) => {}
                Err(e) => last_error = Some(e.to_string()),
            }
            tokio::time::sleep(poll).await;
        }
        let note = format!(
            "Ray did not confirm within {} s that job {id} stopped{}",
            wait.as_secs(),
            last_error.map(|e| format!(" ({e})")).unwrap_or_default()
        );
        tracing::warn!(ray_job = %id, %note);
        Some(note)
    }
}

#[async_trait]
impl Runtime for RayRuntime {
    fn name(&self) -> &str {
        "ray"
    }

    async fn health(&self) -> Result<(), RuntimeError> {
        self.api.version().await.map(|_| ()).map_err(unavailable)
    }

    async fn run(
        &self,
        spec: RunSpec,
        events: mpsc::Sender<RunEvent>,
        cancel: CancellationToken,
    ) -> Result<Outcome, RuntimeError> {
        let span = tracing::info_span!("job", lease = %spec.lease_id, runtime = "ray");
        self.run_job(spec, events, cancel).instrument(span).await
    }
}

fn unavailable(e: RayError) -> RuntimeError {
    RuntimeError::Unavailable(e.to_string())
}

/// What a status read means; `stopped_by` is how Agora stopped the job,
/// when it did.
fn state_of(info: &JobInfo, stopped_by: Option<&Exit>) -> State {
    match info.status.as_str() {
        "PENDING" => State::Waiting,
        "RUNNING" => State::Running,
        "SUCCEEDED" => State::Ended(Exit::Code(0), None),
        "FAILED" => {
            let exit = match info.driver_exit_code {
                Some(code) if code < 0 => Exit::Signal(-code),
                Some(code) if code > 0 => Exit::Code(code),
                _ => Exit::Code(1),
            };
            State::Ended(exit, Some(ray_reason(info)))
        }
        "STOPPED" => match stopped_by {
            Some(exit) => State::Ended(exit.clone(), None),
            None => State::Ended(
                Exit::Signal(15),
                Some("the Ray job was stopped outside Agora (ray job stop)".into()),
            ),
        },
        other => {
            tracing::debug!(status = other, "unknown Ray job status; waiting");
            State::Waiting
        }
    }
}

/// Ray's reason for a failed job: the first line of its message, without
/// the log excerpt Ray appends.
fn ray_reason(info: &JobInfo) -> String {
    let first = info
        .message
        .as_deref()
        .and_then(|m| m.lines().map(str::trim).find(|l| !l.is_empty()));
    match first {
        Some(line) => {
            // "… failed with exit code 3, last available logs (…):" — the
            // logs are in the job's log already.
            let line = line.split(", last available logs").next().unwrap_or(line);
            let line: String = line.chars().take(MAX_REASON).collect();
            format!("Ray: {}", line.trim_end_matches([',', ':']))
        }
        None => "Ray reports the job FAILED without a reason".into(),
    }
}

/// The Ray job for `spec`.
fn submission(spec: &RunSpec, work_dir: &Path, num_cpus: f64) -> Result<Submission, RuntimeError> {
    if spec.command.is_empty() {
        return Err(RuntimeError::Start("the command is empty".into()));
    }
    let work = work_dir.to_str().ok_or_else(|| {
        RuntimeError::Start(format!(
            "the work dir {} is not UTF-8; Ray takes text",
            work_dir.display()
        ))
    })?;
    let argv: Vec<String> = spec.command.iter().map(|a| shell_quote(a)).collect();
    let entrypoint = format!("cd {} && exec {}", shell_quote(work), argv.join(" "));
    let mut env = BTreeMap::new();
    for (name, value) in &spec.env {
        if name.starts_with("AGORA_") || sandbox::RESERVED_ENV.contains(&name.as_str()) {
            continue;
        }
        env.insert(name.clone(), value.clone());
    }
    env.insert("HOME".to_owned(), work.to_owned());
    env.insert("AGORA_OUTPUT".to_owned(), format!("{work}/out"));
    env.insert("AGORA_LEASE_ID".to_owned(), spec.lease_id.clone());
    let mut metadata = BTreeMap::new();
    metadata.insert("agora_lease".to_owned(), spec.lease_id.clone());
    Ok(Submission {
        entrypoint,
        submission_id: format!("agora-{}", spec.lease_id),
        runtime_env: serde_json::json!({ "env_vars": env }),
        metadata,
        entrypoint_num_cpus: num_cpus,
        entrypoint_num_gpus: f64::from(u32::try_from(spec.gpu_indices.len()).unwrap_or(u32::MAX)),
    })
}

/// `s` as one POSIX shell word.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn info(status: &str, message: Option<&str>, code: Option<i32>) -> JobInfo {
        JobInfo {
            status: status.into(),
            message: message.map(str::to_owned),
            driver_exit_code: code,
        }
    }

    #[test]
    fn ray_states_map_to_the_lifecycle() {
        assert_eq!(state_of(&info("PENDING", None, None), None), State::Waiting);
        assert_eq!(state_of(&info("RUNNING", None, None), None), State::Running);
        assert_eq!(
            state_of(&info("SUCCEEDED", None, Some(0)), None),
            State::Ended(Exit::Code(0), None)
        );
        let failed = info(
            "FAILED",
            Some("Job entrypoint command failed with exit code 3, last available logs:\nboom\n"),
            Some(3),
        );
        assert_eq!(
            state_of(&failed, None),
            State::Ended(
                Exit::Code(3),
                Some("Ray: Job entrypoint command failed with exit code 3".into())
            )
        );
        // No exit status (the runtime env failed): 1, and Ray's words.
        let env_failed = info(
            "FAILED",
            Some("Failed to set up runtime environment."),
            None,
        );
        assert_eq!(
            state_of(&env_failed, None),
            State::Ended(
                Exit::Code(1),
                Some("Ray: Failed to set up runtime environment.".into())
            )
        );
        assert_eq!(
            state_of(&info("FAILED", None, Some(-9)), None),
            State::Ended(
                Exit::Signal(9),
                Some("Ray reports the job FAILED without a reason".into())
            )
        );
        // Stopped by Agora: as Agora stopped it; by someone else: signal.
        assert_eq!(
            state_of(&info("STOPPED", None, None), Some(&Exit::TimeLimit)),
            State::Ended(Exit::TimeLimit, None)
        );
        assert!(matches!(
            state_of(&info("STOPPED", None, None), None),
            State::Ended(Exit::Signal(15), Some(_))
        ));
        assert_eq!(
            state_of(&info("NEW_STATE", None, None), None),
            State::Waiting
        );
    }

    #[test]
    fn the_submission_runs_the_command_in_the_work_dir_with_the_lease() {
        let spec = RunSpec {
            lease_id: "ab12".into(),
            command: vec!["python3".into(), "-c".into(), "print('it''s')".into()],
            env: vec![
                ("MODEL".into(), "x y".into()),
                ("AGORA_OUTPUT".into(), "/elsewhere".into()),
                ("CUDA_VISIBLE_DEVICES".into(), "7".into()),
            ],
            inputs: vec![],
            gpu_indices: vec![0, 1],
            gpu_uuids: vec![],
            network: false,
            time_limit: Duration::from_secs(60),
            work_dir: PathBuf::from("/jobs/ab12"),
        };
        let s = submission(&spec, Path::new("/jobs/my dir"), 0.5).unwrap();
        assert_eq!(s.submission_id, "agora-ab12");
        assert_eq!(
            s.entrypoint,
            r#"cd '/jobs/my dir' && exec python3 -c 'print('\''it'\'''\''s'\'')'"#
        );
        assert_eq!((s.entrypoint_num_gpus, s.entrypoint_num_cpus), (2.0, 0.5));
        assert_eq!(s.metadata["agora_lease"], "ab12");
        let env = &s.runtime_env["env_vars"];
        assert_eq!(env["AGORA_OUTPUT"], "/jobs/my dir/out");
        assert_eq!(env["MODEL"], "x y");
        // Ray picks the devices; the requester cannot.
        assert!(env.get("CUDA_VISIBLE_DEVICES").is_none());
        let empty = RunSpec {
            command: vec![],
            ..spec
        };
        assert!(matches!(
            submission(&empty, Path::new("/j"), 1.0),
            Err(RuntimeError::Start(_))
        ));
    }

    #[test]
    fn shell_words_survive_quoting() {
        assert_eq!(shell_quote("plain-word_1.py"), "plain-word_1.py");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[tokio::test]
    async fn an_unreachable_head_is_unhealthy_and_says_where() {
        // A port nothing listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ray = RaySection {
            dashboard: format!("http://127.0.0.1:{port}"),
            gpu_model: "A100".into(),
            gpu_vram_gib: 40,
            gpu_tflops: 19.5,
            logical_gpus: true,
            num_cpus: 1.0,
            poll_ms: 100,
            head_timeout_secs: 2,
            health_secs: 1,
        };
        let runtime = RayRuntime::new(RuntimeSection::default(), ray).unwrap();
        let err = runtime.health().await.unwrap_err().to_string();
        assert!(err.contains("runtime unavailable"), "{err}");
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(runtime.cluster_gpus().await.is_err());
    }
}
