//! Seeing a stopped job's lease settled and closed: its escrow is read
//! every second (25 ms after the final receipt is countersigned, then
//! doubling, since the provider settles within milliseconds), and closed
//! by the requester itself when the one closability rule allows
//! (`EscrowState::closable`, applied by the read task).

use agora_client::api::JobState;
use agora_protocol::ledger::EscrowState;
use agora_protocol::{OrderId, Timestamp};
use tracing::info;

use super::core::{EscrowPoll, Requester, Task};

impl EscrowPoll {
    /// A poll with a read due at `now`.
    fn due(now: Timestamp) -> Self {
        Self {
            next_at: now,
            in_flight: false,
            quick: None,
        }
    }
}
use super::events::JobEventKind;
use super::job::Settlement;

/// How often a settling job's escrow is read.
pub(crate) const SETTLE_POLL_MS: u64 = 1_000;
/// Quick re-reads after the final receipt: the first after this long,
/// then doubling…
pub(crate) const QUICK_ESCROW_FIRST_MS: u64 = 25;
/// …this many times.
pub(crate) const QUICK_ESCROW_READS: u32 = 6;

impl Requester {
    /// The final receipt is countersigned: read the escrow soon.
    pub(super) fn read_escrow_soon(&mut self, id: OrderId, now: Timestamp) {
        let poll = self.polls.entry(id).or_insert_with(|| EscrowPoll::due(now));
        poll.quick = Some(0);
        if !poll.in_flight {
            poll.next_at = now.plus_ms(QUICK_ESCROW_FIRST_MS);
        }
    }

    /// Starts the escrow reads that are due.
    pub(super) fn tick_settlements(&mut self, now: Timestamp) {
        let due: Vec<OrderId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Settling)
            .filter(|(id, _)| {
                self.polls
                    .get(id)
                    .is_none_or(|p| !p.in_flight && now >= p.next_at)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(lease) = self.jobs.get(&id).and_then(|j| j.lease()).map(|l| l.id()) else {
                continue;
            };
            let poll = self.polls.entry(id).or_insert_with(|| EscrowPoll::due(now));
            poll.in_flight = true;
            self.start(id, Task::ReadEscrow(lease));
        }
    }

    /// An escrow read (and close, when it was due) answered.
    pub(super) fn escrow_read(
        &mut self,
        id: OrderId,
        state: Result<Option<EscrowState>, String>,
        now: Timestamp,
    ) {
        let poll = self.polls.entry(id).or_insert_with(|| EscrowPoll::due(now));
        poll.in_flight = false;
        let state = match state {
            Ok(state) => state,
            Err(e) => {
                info!(job = %id, error = %e, "escrow read failed; will retry");
                poll.next_at = now.plus_ms(SETTLE_POLL_MS);
                return;
            }
        };
        let closed = state.as_ref().is_some_and(EscrowState::closed);
        poll.next_at = match poll.quick {
            Some(done) if !closed && done < QUICK_ESCROW_READS => {
                poll.quick = Some(done + 1);
                now.plus_ms(QUICK_ESCROW_FIRST_MS << (done + 1))
            }
            _ => {
                poll.quick = None;
                now.plus_ms(SETTLE_POLL_MS)
            }
        };
        let Some(state) = state else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let before = job.settlement.map(|s| (s.settled, s.refunded));
        job.settlement = Some(Settlement {
            escrow: state.escrow,
            settled: state.settled,
            last_sequence: state.last_sequence,
            refunded: state.refunded,
            closable_at: state.closable_at,
            ops: state.ops,
        });
        if before != Some((state.settled, state.refunded)) {
            let kind = if state.closed() {
                JobEventKind::Closed
            } else {
                JobEventKind::Settled
            };
            let detail = format!(
                "{} paid to the provider{}",
                state.settled,
                state
                    .refunded
                    .map(|r| format!(", {r} refunded"))
                    .unwrap_or_default()
            );
            self.event(id, now, kind, detail);
        }
        self.finish_if_done(id, now);
        self.persist(id);
    }
}

impl Requester {
    /// Takes out the finished jobs past their retention: those that
    /// finished more than `max_age_ms` before `now`, and any beyond the
    /// `keep` most recently finished. A job still going is never taken.
    /// Returns their ids, oldest first, for the caller to delete from the
    /// store (with their logs).
    pub fn retire(&mut self, now: Timestamp, max_age_ms: u64, keep: usize) -> Vec<OrderId> {
        let mut finished: Vec<(Timestamp, OrderId)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state.is_terminal())
            .map(|(id, j)| {
                let at = j.events.last().map_or(j.submitted_at, |e| e.at);
                (at, *id)
            })
            .collect();
        // Newest first: the first `keep` young enough stay.
        finished.sort_unstable_by(|a, b| b.cmp(a));
        let mut retired: Vec<OrderId> = finished
            .iter()
            .enumerate()
            .filter(|(i, (at, _))| *i >= keep || now.ms_since(*at) > max_age_ms)
            .map(|(_, (_, id))| *id)
            .collect();
        retired.reverse();
        for id in &retired {
            if let Some(job) = self.jobs.remove(id)
                && let Some(lease) = job.lease()
            {
                self.by_lease.remove(&lease.id());
            }
            self.polls.remove(id);
            self.fetching.remove(id);
        }
        retired
    }
}
