//! The log pusher: a task per run forwards the run's log to the
//! requester's node, which acknowledges the next sequence it expects;
//! nothing is dropped while the requester is away, and the result
//! manifest follows once the job ended.

use std::time::Duration;

use agora_protocol::LeaseId;
use tracing::warn;

use super::Executor;
use super::actor::{Command, Update};
use crate::clock::now;
use crate::network::wire::{JobUpdate, LogEntry};
use crate::network::{Request, Response};

/// Entries per update at most, and bytes of text.
const UPDATE_ENTRIES: usize = 512;
const UPDATE_BYTES: usize = 1024 * 1024;
/// How long after its lease ends a run's log is still offered to a
/// requester that went away.
const GIVE_UP_AFTER_MS: u64 = 3_600_000;

impl Executor {
    /// Forwards the run's log to the requester's node until it has every
    /// entry and the manifest, resending from what it acknowledged.
    pub(super) async fn push_log(&self, id: LeaseId) {
        let o = &self.inner.options;
        let Some(wake) = self
            .ask(|reply| Command::Wake { id, reply })
            .await
            .flatten()
        else {
            return;
        };
        let mut backoff = Duration::from_millis(250);
        loop {
            let notified = wake.notified();
            // Cheap: the manifest is shared, not copied.
            let Some(record) = self.record(id).await else {
                return;
            };
            let terms = record.lease.terms();
            let (peer, ends) = (terms.requester.peer_id(), terms.ends_at());
            let all_sent = record.all_acked();
            let ended = record.phase.ended();
            if record.finished() && record.manifest_delivered {
                return;
            }
            // A requester gone for good: stop trying an hour after the lease.
            if now().0 > ends.0 + GIVE_UP_AFTER_MS {
                return;
            }
            let entries = if all_sent {
                Vec::new()
            } else {
                o.store
                    .log_after(&id.0, record.acked - 1, UPDATE_ENTRIES, UPDATE_BYTES)
                    .unwrap_or_default()
            };
            let send_manifest = ended && !record.manifest_delivered;
            if entries.is_empty() && !send_manifest {
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    () = o.cancel.cancelled() => return,
                }
                continue;
            }
            let last = entries.last().map(|e| e.seq);
            let update = JobUpdate {
                lease_id: id,
                entries: entries
                    .into_iter()
                    .map(|e| LogEntry {
                        seq: e.seq,
                        at: e.at,
                        kind: e.kind,
                        event: e.run,
                        data: e.text.into_bytes(),
                    })
                    .collect(),
                manifest: if send_manifest {
                    record.manifest.as_ref().map(|m| m.bytes.clone())
                } else {
                    None
                },
            };
            match o.network.request(peer, Request::Update(update)).await {
                Ok(Response::UpdateAck(next)) => {
                    let next = next.clamp(1, record.log_seq + 1);
                    let manifest = send_manifest && last.is_none_or(|s| next > s);
                    if !self.update(id, Update::Acked { next, manifest }).await {
                        return;
                    }
                    backoff = Duration::from_millis(250);
                    continue;
                }
                Ok(Response::Refused(reason)) => {
                    warn!(lease = %id, %reason, "the requester refused the run's log");
                    return;
                }
                Ok(_) | Err(_) => {
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = o.cancel.cancelled() => return,
            }
        }
    }
}
