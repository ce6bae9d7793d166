//! The requester's background work, as the router's task pool runs it:
//! each [`Task`] the core asks for becomes one future here, and its
//! [`TaskResult`] goes back to the core. These are the only requester
//! pieces that touch the network, the ledger or the disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agora_protocol::ledger::{EscrowState, Ledger};
use agora_protocol::{LeaseId, LedgerError, Manifest, OrderId, Timestamp};
use libp2p::PeerId;

use super::core::{Task, TaskResult};
use super::lease::{attempt_lease, lock_escrow};
use crate::network::wire::{Fetch, MAX_FETCH_CHUNK};
use crate::network::{NetworkHandle, Request, Response};

/// What the requester's tasks need.
#[derive(Clone)]
pub struct TaskContext {
    /// The swarm.
    pub network: NetworkHandle,
    /// The ledger.
    pub ledger: Arc<dyn Ledger>,
    /// Where fetched outputs go (`DIR/JOB/…`).
    pub results_dir: PathBuf,
}

/// Runs one task of job `id` to its result.
pub async fn run(cx: TaskContext, id: OrderId, task: Task) -> TaskResult {
    match task {
        Task::Lease(proposal) => {
            TaskResult::Lease(Box::new(attempt_lease(&cx.network, *proposal).await))
        }
        Task::Lock(lease) => TaskResult::Locked(lock_escrow(&*cx.ledger, &lease).await),
        Task::Deliver {
            what,
            peer,
            request,
            until,
        } => TaskResult::Delivered(what, send_until(&cx.network, peer, *request, until).await),
        Task::ReadEscrow(lease) => TaskResult::Escrow(
            read_and_close(&*cx.ledger, lease)
                .await
                .map(|s| s.map(Box::new)),
        ),
        Task::Fetch { peer, manifest } => {
            let dir = cx.results_dir.join(id.to_string());
            TaskResult::Fetched(fetch_outputs(&cx.network, peer, &manifest, &dir).await)
        }
    }
}

/// Reads a lease's escrow; closes it when the ledger allows (the final
/// receipt settled, or the lease's end plus grace passed) and it is still
/// open.
pub async fn read_and_close(
    ledger: &dyn Ledger,
    lease: LeaseId,
) -> Result<Option<EscrowState>, String> {
    let state = ledger.escrow(&lease).await.map_err(|e| e.to_string())?;
    let Some(state) = state else {
        return Ok(None);
    };
    if state.closed() {
        return Ok(Some(state));
    }
    let chain_now = ledger.now().await.map_err(|e| e.to_string())?;
    // With a final receipt countersigned, the provider settles it first (it
    // is paid before anything is refunded): the one closability rule waits
    // for that, or for the lease's time plus grace.
    if !state.closable(chain_now) {
        return Ok(Some(state));
    }
    match ledger.close(&lease).await {
        Ok(_) | Err(LedgerError::LeaseClosed(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    ledger.escrow(&lease).await.map_err(|e| e.to_string())
}

/// Sends a request until it is acknowledged, refused for good, or the lease
/// ends.
pub async fn send_until(
    network: &NetworkHandle,
    peer: PeerId,
    request: Request,
    ends: Timestamp,
) -> Result<(), String> {
    let mut backoff = Duration::from_millis(250);
    loop {
        let last = match network.request(peer, request.clone()).await {
            Ok(Response::Ack) => return Ok(()),
            Ok(Response::Refused(reason)) => return Err(reason),
            Ok(Response::Retry(reason)) => reason,
            Ok(other) => format!("unexpected answer {other:?}"),
            Err(e) => e.to_string(),
        };
        if crate::clock::now() >= ends {
            return Err(format!(
                "the lease ended before the provider took it ({last})"
            ));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(3));
    }
}

/// Fetches every output into `dir`, checking each against the manifest.
pub async fn fetch_outputs(
    network: &NetworkHandle,
    peer: PeerId,
    manifest: &Manifest,
    dir: &Path,
) -> Result<usize, String> {
    use tokio::io::AsyncWriteExt;
    for file in &manifest.files {
        let path: PathBuf = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let part = path.with_extension("agora-part");
        let mut out = tokio::fs::File::create(&part)
            .await
            .map_err(|e| format!("{}: {e}", part.display()))?;
        let mut hasher = blake3::Hasher::new();
        let mut offset = 0u64;
        let mut failures = 0;
        while offset < file.size {
            let fetch = Fetch {
                lease_id: manifest.lease_id,
                path: file.path.clone(),
                offset,
                max_len: MAX_FETCH_CHUNK,
            };
            match network.request(peer, Request::Fetch(fetch)).await {
                Ok(Response::Chunk { data, .. }) if !data.is_empty() => {
                    let take = data
                        .len()
                        .min(usize::try_from(file.size - offset).unwrap_or(usize::MAX));
                    hasher.update(&data[..take]);
                    out.write_all(&data[..take])
                        .await
                        .map_err(|e| format!("{}: {e}", part.display()))?;
                    offset += take as u64;
                }
                Ok(Response::Chunk { .. }) => {
                    return Err(format!("{}: shorter than its manifest says", file.path));
                }
                Ok(Response::Refused(reason)) => return Err(format!("{}: {reason}", file.path)),
                Ok(_) | Err(_) if failures < 10 => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(500 * failures)).await;
                }
                Ok(other) => return Err(format!("{}: unexpected answer {other:?}", file.path)),
                Err(e) => return Err(format!("{}: {e}", file.path)),
            }
        }
        out.flush().await.map_err(|e| e.to_string())?;
        drop(out);
        if *hasher.finalize().as_bytes() != file.blake3 {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(format!("{}: content does not match its hash", file.path));
        }
        tokio::fs::rename(&part, &path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(manifest.files.len())
}
