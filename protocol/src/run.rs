//! The run's contract between provider and requester: the typed lifecycle
//! events a provider reports about a leased job. The requester changes a
//! job's state on these alone — never on a log line's text — and the exit
//! status travels as a number, never inside a sentence.

use agora_proto::v1 as pb;
use serde::{Deserialize, Serialize};

/// Why a run ended without exiting by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunFailure {
    /// Killed by a signal nobody in the market sent.
    Signal {
        /// The signal.
        signal: i32,
    },
    /// It ran out of leased time and was stopped.
    TimeLimit,
    /// The requester countersigned no receipt for an interval plus grace.
    RequesterSilent,
    /// The runtime could not run it, or lost it.
    Runtime,
    /// The provider's node restarted while it ran.
    Restarted,
    /// It reached one of the sandbox's limits and was stopped (memory,
    /// disk) or refused (processes) by it.
    Limit {
        /// Which one.
        limit: SandboxLimit,
    },
}

/// A limit of the provider's sandbox that a job can run into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxLimit {
    /// Its memory, `/tmp` included: the kernel's OOM killer ran.
    Memory,
    /// Its processes and threads: a fork was refused.
    Pids,
    /// Its work dir and outputs on the provider's disk.
    Disk,
}

impl SandboxLimit {
    /// The name the offer's limits and the provider's config use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Pids => "pids",
            Self::Disk => "disk",
        }
    }
}

/// A lifecycle event of a run, as the provider reports it on its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunEvent {
    /// The payload was accepted; the runtime is starting it.
    Accepted,
    /// The job started (metering starts here).
    Started,
    /// The job exited by itself.
    Exited {
        /// Its exit status.
        code: i32,
    },
    /// The job did not end by exiting.
    Failed {
        /// Why.
        failure: RunFailure,
    },
    /// The requester's cancel stopped it.
    Cancelled,
    /// Some outputs were left out of the manifest.
    OutputsTruncated,
    /// The requester refused a receipt.
    ReceiptRefused,
    /// A countersigned receipt was paid on the ledger.
    Settled,
    /// The ledger refused a settlement for good.
    SettlementFailed,
    /// The lease is closed on the ledger.
    Closed,
}

impl RunEvent {
    /// Every kind, for documentation and tests.
    pub const NAMES: [&'static str; 10] = [
        "payload",
        "started",
        "exited",
        "failed",
        "cancelled",
        "outputs",
        "receipt_refused",
        "settled",
        "settlement_failed",
        "closed",
    ];

    /// The event's name on a log (stable: the API shows it).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Accepted => "payload",
            Self::Started => "started",
            Self::Exited { .. } => "exited",
            Self::Failed { .. } => "failed",
            Self::Cancelled => "cancelled",
            Self::OutputsTruncated => "outputs",
            Self::ReceiptRefused => "receipt_refused",
            Self::Settled => "settled",
            Self::SettlementFailed => "settlement_failed",
            Self::Closed => "closed",
        }
    }

    /// The job stopped: it exited, failed or was cancelled.
    pub fn ends_run(&self) -> bool {
        matches!(
            self,
            Self::Exited { .. } | Self::Failed { .. } | Self::Cancelled
        )
    }

    /// The exit status, when the job exited by itself.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Self::Exited { code } => Some(*code),
            _ => None,
        }
    }

    /// The wire form.
    pub fn to_proto(&self) -> pb::RunEvent {
        let mut p = pb::RunEvent::default();
        let kind = match self {
            Self::Accepted => pb::RunEventKind::Accepted,
            Self::Started => pb::RunEventKind::Started,
            Self::Exited { code } => {
                p.exit_code = *code;
                pb::RunEventKind::Exited
            }
            Self::Failed { failure } => {
                p.failure = match failure {
                    RunFailure::Signal { signal } => {
                        p.signal = *signal;
                        pb::RunFailure::Signal
                    }
                    RunFailure::TimeLimit => pb::RunFailure::TimeLimit,
                    RunFailure::RequesterSilent => pb::RunFailure::RequesterSilent,
                    RunFailure::Runtime => pb::RunFailure::Runtime,
                    RunFailure::Restarted => pb::RunFailure::Restarted,
                    RunFailure::Limit { limit } => {
                        p.limit = match limit {
                            SandboxLimit::Memory => pb::SandboxLimitKind::Memory,
                            SandboxLimit::Pids => pb::SandboxLimitKind::Pids,
                            SandboxLimit::Disk => pb::SandboxLimitKind::Disk,
                        } as i32;
                        pb::RunFailure::Limit
                    }
                } as i32;
                pb::RunEventKind::Failed
            }
            Self::Cancelled => pb::RunEventKind::Cancelled,
            Self::OutputsTruncated => pb::RunEventKind::OutputsTruncated,
            Self::ReceiptRefused => pb::RunEventKind::ReceiptRefused,
            Self::Settled => pb::RunEventKind::Settled,
            Self::SettlementFailed => pb::RunEventKind::SettlementFailed,
            Self::Closed => pb::RunEventKind::Closed,
        };
        p.kind = kind as i32;
        p
    }

    /// Decodes a peer's event; an unknown kind or failure is an error that
    /// names it.
    pub fn from_proto(p: &pb::RunEvent) -> Result<Self, String> {
        let kind = pb::RunEventKind::try_from(p.kind)
            .map_err(|_| format!("run event: unknown kind {}", p.kind))?;
        Ok(match kind {
            pb::RunEventKind::Unspecified => return Err("run event: no kind".into()),
            pb::RunEventKind::Accepted => Self::Accepted,
            pb::RunEventKind::Started => Self::Started,
            pb::RunEventKind::Exited => Self::Exited { code: p.exit_code },
            pb::RunEventKind::Failed => {
                let failure = match pb::RunFailure::try_from(p.failure) {
                    Ok(pb::RunFailure::Signal) => RunFailure::Signal { signal: p.signal },
                    Ok(pb::RunFailure::TimeLimit) => RunFailure::TimeLimit,
                    Ok(pb::RunFailure::RequesterSilent) => RunFailure::RequesterSilent,
                    Ok(pb::RunFailure::Runtime) => RunFailure::Runtime,
                    Ok(pb::RunFailure::Restarted) => RunFailure::Restarted,
                    Ok(pb::RunFailure::Limit) => RunFailure::Limit {
                        limit: match pb::SandboxLimitKind::try_from(p.limit) {
                            Ok(pb::SandboxLimitKind::Memory) => SandboxLimit::Memory,
                            Ok(pb::SandboxLimitKind::Pids) => SandboxLimit::Pids,
                            Ok(pb::SandboxLimitKind::Disk) => SandboxLimit::Disk,
                            Ok(pb::SandboxLimitKind::Unspecified) | Err(_) => {
                                return Err(format!("run event: unknown limit {}", p.limit));
                            }
                        },
                    },
                    Ok(pb::RunFailure::Unspecified) | Err(_) => {
                        return Err(format!("run event: unknown failure {}", p.failure));
                    }
                };
                Self::Failed { failure }
            }
            pb::RunEventKind::Cancelled => Self::Cancelled,
            pb::RunEventKind::OutputsTruncated => Self::OutputsTruncated,
            pb::RunEventKind::ReceiptRefused => Self::ReceiptRefused,
            pb::RunEventKind::Settled => Self::Settled,
            pb::RunEventKind::SettlementFailed => Self::SettlementFailed,
            pb::RunEventKind::Closed => Self::Closed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<RunEvent> {
        vec![
            RunEvent::Accepted,
            RunEvent::Started,
            RunEvent::Exited { code: 0 },
            RunEvent::Exited { code: -3 },
            RunEvent::Failed {
                failure: RunFailure::Signal { signal: 9 },
            },
            RunEvent::Failed {
                failure: RunFailure::TimeLimit,
            },
            RunEvent::Failed {
                failure: RunFailure::RequesterSilent,
            },
            RunEvent::Failed {
                failure: RunFailure::Runtime,
            },
            RunEvent::Failed {
                failure: RunFailure::Restarted,
            },
            RunEvent::Failed {
                failure: RunFailure::Limit {
                    limit: SandboxLimit::Memory,
                },
            },
            RunEvent::Failed {
                failure: RunFailure::Limit {
                    limit: SandboxLimit::Pids,
                },
            },
            RunEvent::Failed {
                failure: RunFailure::Limit {
                    limit: SandboxLimit::Disk,
                },
            },
            RunEvent::Cancelled,
            RunEvent::OutputsTruncated,
            RunEvent::ReceiptRefused,
            RunEvent::Settled,
            RunEvent::SettlementFailed,
            RunEvent::Closed,
        ]
    }

    #[test]
    fn every_event_round_trips_on_the_wire_and_in_json() {
        for event in all() {
            assert_eq!(RunEvent::from_proto(&event.to_proto()), Ok(event));
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<RunEvent>(&json).unwrap(), event);
            assert!(RunEvent::NAMES.contains(&event.name()), "{event:?}");
        }
    }

    #[test]
    fn unknown_kinds_and_failures_are_refused() {
        let mut p = RunEvent::Cancelled.to_proto();
        p.kind = 99;
        assert!(RunEvent::from_proto(&p).unwrap_err().contains("99"));
        p.kind = 0;
        assert!(RunEvent::from_proto(&p).is_err());
        let mut f = RunEvent::Failed {
            failure: RunFailure::Runtime,
        }
        .to_proto();
        f.failure = 0;
        assert!(RunEvent::from_proto(&f).is_err());
        // A limit failure must say which limit.
        let mut l = RunEvent::Failed {
            failure: RunFailure::Limit {
                limit: SandboxLimit::Disk,
            },
        }
        .to_proto();
        l.limit = 0;
        let err = RunEvent::from_proto(&l).unwrap_err();
        assert!(err.contains("unknown limit"), "{err}");
    }

    #[test]
    fn only_exits_carry_a_code_and_only_endings_end() {
        assert_eq!(RunEvent::Exited { code: 3 }.exit_code(), Some(3));
        assert_eq!(RunEvent::Cancelled.exit_code(), None);
        let ending: Vec<_> = all().into_iter().filter(RunEvent::ends_run).collect();
        // Two exits, eight failures, one cancel.
        assert_eq!(ending.len(), 11);
    }
}
