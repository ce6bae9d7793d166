//! The run loop: one task per run drives the runtime, turns its output
//! into log entries, ticks the meter and the countersignature watchdog,
//! and at the end records how the job ended and hands over to the final
//! receipt and settlement.

use std::time::Duration;

use agora_client::api::LogKind;
use agora_protocol::{LeaseId, LeaseTerms, Manifest, ManifestFile, RunEvent, RunFailure};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::Executor;
use super::actor::{Command, Ending, Update};
use super::record::Outputs;
use crate::clock::now;
use crate::runtime::{self, Exit, Outcome, RunSpec, Stream};

/// How many times the final receipt is offered for countersigning.
const FINAL_RECEIPT_TRIES: u32 = 5;

/// Why the provider itself stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The requester's cancel.
    Cancelled,
    /// The requester countersigned nothing for `secs` (interval plus grace).
    RequesterSilent { secs: u64 },
}

impl Executor {
    /// Runs the job, meters it, and hands over to settlement.
    pub(super) async fn run(
        self,
        id: LeaseId,
        spec: RunSpec,
        stop: CancellationToken,
        terms: LeaseTerms,
    ) {
        let o = &self.inner.options;
        let (tx, mut rx) = mpsc::channel::<runtime::RunEvent>(256);
        let runtime = o.runtime.clone();
        let work_dir = spec.work_dir.clone();
        let job_stop = stop.clone();
        let mut job = tokio::spawn(async move { runtime.run(spec, tx, job_stop).await });
        let interval = Duration::from_secs(u64::from(terms.receipt_interval_secs.max(1)));
        let mut meter = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut metering: Option<tokio::task::JoinHandle<()>> = None;
        let mut log_bytes: u64 = 0;
        let mut dropped: u64 = 0;
        let result = loop {
            tokio::select! {
                result = &mut job => break result,
                Some(event) = rx.recv() => {
                    self.on_run_event(id, event, &mut log_bytes, &mut dropped).await;
                }
                _ = meter.tick() => {
                    if metering.as_ref().is_none_or(|m| m.is_finished()) {
                        let e = self.clone();
                        metering = Some(tokio::spawn(async move { e.meter(id, false, 1).await; }));
                    }
                    let watchdog = Command::Watchdog { id, interval, now: now() };
                    let _ = self.inner.commands.send(watchdog).await;
                }
                () = o.cancel.cancelled() => {
                    // The node is stopping: the job dies with it and is
                    // reported on restart.
                    stop.cancel();
                    return;
                }
            }
        };
        while let Ok(event) = rx.try_recv() {
            self.on_run_event(id, event, &mut log_bytes, &mut dropped)
                .await;
        }
        if dropped > 0 {
            self.append(
                id,
                LogKind::Stderr,
                None,
                format!("[agora: {dropped} bytes of output over the provider's log limit were dropped]\n"),
            )
            .await;
        }
        if let Some(m) = metering {
            let _ = m.await;
        }
        let ended = now();
        let stop_reason = self
            .ask(|reply| Command::StopReason { id, reply })
            .await
            .flatten();
        let result = match result {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("the runtime task failed: {e}")),
        };
        let (event, reason, outcome) = judge(result, stop_reason);
        let exit_code = event.exit_code();
        let outputs = Outputs::new(manifest_of(id, outcome.as_ref()));
        let detail = exit_detail(exit_code, reason.as_deref());
        let output_dir = outcome
            .as_ref()
            .map_or_else(|| work_dir.join("out"), |o: &Outcome| o.output_dir.clone());
        let ending = Ending {
            at: ended,
            exit_code,
            reason,
            outputs,
            output_dir,
            event,
            detail: detail.clone(),
        };
        if !self.update(id, Update::Ended(Box::new(ending))).await {
            return;
        }
        info!(lease = %id, %detail, "job ended");
        super::tell_ended(&o.ended, terms.order_id);
        // A requester that stopped countersigning gets one try at the final
        // receipt; others get a few.
        let silent = matches!(stop_reason, Some(Stop::RequesterSilent { .. }));
        self.meter(id, true, if silent { 1 } else { FINAL_RECEIPT_TRIES })
            .await;
        self.settle(id).await;
    }

    async fn on_run_event(
        &self,
        id: LeaseId,
        event: runtime::RunEvent,
        bytes: &mut u64,
        dropped: &mut u64,
    ) {
        match event {
            runtime::RunEvent::Started => {
                self.update(id, Update::Started { at: now() }).await;
            }
            runtime::RunEvent::Output { stream, data } => {
                let max = self.inner.options.settings.max_log_bytes;
                if *bytes + data.len() as u64 > max {
                    *dropped += data.len() as u64;
                    return;
                }
                *bytes += data.len() as u64;
                let kind = match stream {
                    Stream::Stdout => LogKind::Stdout,
                    Stream::Stderr => LogKind::Stderr,
                };
                self.append(id, kind, None, String::from_utf8_lossy(&data).into_owned())
                    .await;
            }
        }
    }
}

/// How a run ended, from what the runtime returned (its error as text)
/// and why the provider stopped it, if it did: the typed event, the
/// reason for a person, and the outcome when there is one.
fn judge(
    result: Result<Outcome, String>,
    stop: Option<Stop>,
) -> (RunEvent, Option<String>, Option<Outcome>) {
    match result {
        Ok(outcome) => {
            let (event, reason) = describe_exit(&outcome.exit, stop);
            let reason = with_runtime_reason(reason, outcome.reason.as_deref());
            (event, reason, Some(outcome))
        }
        Err(e) => (
            RunEvent::Failed {
                failure: RunFailure::Runtime,
            },
            Some(e),
            None,
        ),
    }
}

/// The typed event and the reason (for a person) for how a job ended.
fn describe_exit(exit: &Exit, stop: Option<Stop>) -> (RunEvent, Option<String>) {
    let failed = |failure| RunEvent::Failed { failure };
    match exit {
        Exit::Code(0) => (RunEvent::Exited { code: 0 }, None),
        Exit::Code(code) => (
            RunEvent::Exited { code: *code },
            Some(format!("exited with status {code}")),
        ),
        Exit::Signal(sig) => (
            failed(RunFailure::Signal { signal: *sig }),
            Some(format!("killed by signal {sig}")),
        ),
        Exit::TimeLimit => (
            failed(RunFailure::TimeLimit),
            Some("ran out of leased time and was stopped".into()),
        ),
        Exit::Limit(limit) => (
            failed(RunFailure::Limit { limit: *limit }),
            Some(format!("stopped at the sandbox's {} limit", limit.name())),
        ),
        Exit::Cancelled => match stop {
            Some(Stop::RequesterSilent { secs }) => (
                failed(RunFailure::RequesterSilent),
                Some(format!(
                    "the requester countersigned no receipt for {secs} s (interval plus grace); stopped"
                )),
            ),
            Some(Stop::Cancelled) => (
                RunEvent::Cancelled,
                Some("cancelled by the requester".into()),
            ),
            None => (RunEvent::Cancelled, Some("cancelled".into())),
        },
    }
}

/// The exit's description followed by the runtime's own reason (Ray's
/// message), when it gave one.
fn with_runtime_reason(reason: Option<String>, runtime: Option<&str>) -> Option<String> {
    match (reason, runtime) {
        (Some(r), Some(extra)) => Some(format!("{r}; {extra}")),
        (None, Some(extra)) => Some(extra.to_owned()),
        (reason, None) => reason,
    }
}

/// The text of the run's end event.
fn exit_detail(exit_code: Option<i32>, reason: Option<&str>) -> String {
    match (exit_code, reason) {
        (Some(code), None) => format!("exit status {code}"),
        (Some(code), Some(r)) => format!("exit status {code}: {r}"),
        (None, Some(r)) => r.to_owned(),
        (None, None) => String::new(),
    }
}

/// The result manifest of a run: its outputs, or none when the runtime
/// returned no outcome.
fn manifest_of(id: LeaseId, outcome: Option<&Outcome>) -> Manifest {
    Manifest {
        lease_id: id,
        files: outcome
            .map(|o| {
                o.outputs
                    .iter()
                    .map(|f| ManifestFile {
                        path: f.path.clone(),
                        size: f.size,
                        blake3: f.blake3,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        note: outcome
            .and_then(|o| o.outputs_note.clone())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::runtime::OutputFile;

    fn failed(failure: RunFailure) -> RunEvent {
        RunEvent::Failed { failure }
    }

    #[test]
    fn every_exit_and_stop_reason_is_described() {
        let silent = Some(Stop::RequesterSilent { secs: 40 });
        let cancelled = Some(Stop::Cancelled);
        let cases: Vec<(Exit, Option<Stop>, RunEvent, Option<&str>)> = vec![
            (Exit::Code(0), None, RunEvent::Exited { code: 0 }, None),
            // A job that exited by itself exited, whatever stop was asked.
            (Exit::Code(0), cancelled, RunEvent::Exited { code: 0 }, None),
            (
                Exit::Code(3),
                None,
                RunEvent::Exited { code: 3 },
                Some("exited with status 3"),
            ),
            (
                Exit::Code(-1),
                silent,
                RunEvent::Exited { code: -1 },
                Some("exited with status -1"),
            ),
            (
                Exit::Signal(9),
                None,
                failed(RunFailure::Signal { signal: 9 }),
                Some("killed by signal 9"),
            ),
            (
                Exit::TimeLimit,
                None,
                failed(RunFailure::TimeLimit),
                Some("ran out of leased time and was stopped"),
            ),
            (
                Exit::TimeLimit,
                cancelled,
                failed(RunFailure::TimeLimit),
                Some("ran out of leased time and was stopped"),
            ),
            (
                Exit::Cancelled,
                silent,
                failed(RunFailure::RequesterSilent),
                Some(
                    "the requester countersigned no receipt for 40 s (interval plus grace); stopped",
                ),
            ),
            (
                Exit::Cancelled,
                cancelled,
                RunEvent::Cancelled,
                Some("cancelled by the requester"),
            ),
            (
                Exit::Cancelled,
                None,
                RunEvent::Cancelled,
                Some("cancelled"),
            ),
        ];
        for (exit, stop, event, reason) in cases {
            let got = describe_exit(&exit, stop);
            assert_eq!(got, (event, reason.map(String::from)), "{exit:?} {stop:?}");
        }
    }

    #[test]
    fn the_runtimes_reason_follows_the_exits() {
        assert_eq!(with_runtime_reason(None, None), None);
        assert_eq!(
            with_runtime_reason(Some("a".into()), None).as_deref(),
            Some("a")
        );
        assert_eq!(with_runtime_reason(None, Some("b")).as_deref(), Some("b"));
        assert_eq!(
            with_runtime_reason(Some("a".into()), Some("b")).as_deref(),
            Some("a; b")
        );
    }

    #[test]
    fn the_end_events_text_carries_the_status_then_the_reason() {
        assert_eq!(exit_detail(Some(0), None), "exit status 0");
        assert_eq!(exit_detail(Some(2), Some("why")), "exit status 2: why");
        assert_eq!(exit_detail(None, Some("why")), "why");
        assert_eq!(exit_detail(None, None), "");
    }

    fn outcome(exit: Exit) -> Outcome {
        Outcome {
            exit,
            outputs: vec![OutputFile {
                path: "a.txt".into(),
                size: 3,
                blake3: [1; 32],
            }],
            output_dir: PathBuf::from("/jobs/x/out"),
            outputs_note: Some("2 files left out".into()),
            reason: Some("ray says so".into()),
        }
    }

    #[test]
    fn a_runtime_error_is_a_runtime_failure_with_its_text_and_no_outputs() {
        let (event, reason, outcome) = judge(Err("no bwrap".into()), Some(Stop::Cancelled));
        assert_eq!(event, failed(RunFailure::Runtime));
        assert_eq!(reason.as_deref(), Some("no bwrap"));
        assert!(outcome.is_none());
        let manifest = manifest_of(LeaseId([5; 32]), None);
        assert!(manifest.files.is_empty() && manifest.note.is_empty());
    }

    #[test]
    fn an_outcome_gives_its_exit_the_runtimes_reason_and_its_manifest() {
        let (event, reason, outcome) = judge(Ok(outcome(Exit::Code(1))), None);
        assert_eq!(event, RunEvent::Exited { code: 1 });
        assert_eq!(reason.as_deref(), Some("exited with status 1; ray says so"));
        let manifest = manifest_of(LeaseId([5; 32]), outcome.as_ref());
        assert_eq!(manifest.lease_id, LeaseId([5; 32]));
        assert_eq!(
            manifest.files,
            vec![ManifestFile {
                path: "a.txt".into(),
                size: 3,
                blake3: [1; 32],
            }]
        );
        assert_eq!(manifest.note, "2 files left out");
    }
}
