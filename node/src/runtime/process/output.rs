//! A job's stdout and stderr: read concurrently, cut into chunks of whole
//! lines, forwarded as [`RunEvent::Output`] within the job's log budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::runtime::{MAX_CHUNK, RunEvent, Stream};

/// How long a partial line (no newline yet) waits for its end before it
/// is sent as it is (progress bars, prompts).
const PARTIAL_LINE_WAIT: Duration = Duration::from_millis(200);

/// The bytes of output a job may still forward; both streams share it.
#[derive(Debug)]
pub(super) struct LogBudget {
    limit: u64,
    used: AtomicU64,
    dropped: AtomicU64,
    closed: AtomicBool,
}

impl LogBudget {
    /// A budget of `limit` bytes.
    pub(super) fn new(limit: u64) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Takes up to `len` bytes from the budget; returns how many may be
    /// forwarded and counts the rest as dropped.
    pub(super) fn take(&self, len: usize) -> usize {
        let want = len as u64;
        let mut granted = 0;
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                granted = want.min(self.limit.saturating_sub(used));
                Some(used + granted)
            });
        self.dropped.fetch_add(want - granted, Ordering::Relaxed);
        // granted ≤ len, so it fits.
        usize::try_from(granted).unwrap_or(len)
    }

    /// Bytes dropped so far.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Cuts the next chunk off the front of `buf`: every whole line that fits
/// in [`MAX_CHUNK`]; else, for a line longer than that, its first
/// `MAX_CHUNK` bytes; else, when `flush`, whatever is there. `None` when
/// `buf` holds only a partial line and `flush` is off.
pub(crate) fn take_chunk(buf: &mut Vec<u8>, flush: bool) -> Option<Vec<u8>> {
    if buf.is_empty() {
        return None;
    }
    let window = &buf[..buf.len().min(MAX_CHUNK)];
    if let Some(end) = window.iter().rposition(|&b| b == b'\n') {
        return Some(buf.drain(..=end).collect());
    }
    if buf.len() >= MAX_CHUNK || flush {
        let n = buf.len().min(MAX_CHUNK);
        return Some(buf.drain(..n).collect());
    }
    None
}

/// Reads `reader` to its end, forwarding chunks to `events`. Keeps
/// draining after the budget is spent or the receiver is gone, so the
/// job never blocks on a full pipe.
pub(super) async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: Stream,
    events: mpsc::Sender<RunEvent>,
    budget: Arc<LogBudget>,
) {
    let mut buf = Vec::with_capacity(2 * MAX_CHUNK);
    let mut scratch = vec![0u8; MAX_CHUNK];
    loop {
        let read = if buf.is_empty() {
            reader.read(&mut scratch).await
        } else {
            match tokio::time::timeout(PARTIAL_LINE_WAIT, reader.read(&mut scratch)).await {
                Ok(read) => read,
                Err(_) => {
                    while let Some(chunk) = take_chunk(&mut buf, true) {
                        forward(chunk, stream, &events, &budget).await;
                    }
                    continue;
                }
            }
        };
        match read {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&scratch[..n]);
                while let Some(chunk) = take_chunk(&mut buf, false) {
                    forward(chunk, stream, &events, &budget).await;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(?stream, error = %e, "reading job output failed");
                break;
            }
        }
    }
    while let Some(chunk) = take_chunk(&mut buf, true) {
        forward(chunk, stream, &events, &budget).await;
    }
}

/// Sends what the budget allows of `chunk`.
async fn forward(
    mut chunk: Vec<u8>,
    stream: Stream,
    events: &mpsc::Sender<RunEvent>,
    budget: &LogBudget,
) {
    let allowed = budget.take(chunk.len());
    if allowed == 0 || budget.closed.load(Ordering::Relaxed) {
        return;
    }
    chunk.truncate(allowed);
    let event = RunEvent::Output {
        stream,
        data: chunk,
    };
    if events.send(event).await.is_err() {
        budget.closed.store(true, Ordering::Relaxed);
    }
}
