//! The writer thread: batches operations, applies them, fsyncs, replies.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agora_protocol::ledger::{Closure, EscrowState, LedgerError, Settlement, Supply, rules};
use agora_protocol::receipt::verify_claims;
use agora_protocol::{AccountId, Amount, CloseClaim, Lease, LeaseId, LeaseTerms, ReceiptClaim};
use tokio::sync::{mpsc, oneshot};

use super::SledConfig;
use super::store::{self, State};
use crate::clock::Clock;

/// An operation for the writer, with where to send its result.
pub(super) enum Command {
    Balance {
        account: AccountId,
        reply: oneshot::Sender<Reply>,
    },
    Deposit {
        account: AccountId,
        amount: Amount,
        reply: oneshot::Sender<Reply>,
    },
    Lock {
        lease: Box<Lease>,
        reply: oneshot::Sender<Reply>,
    },
    Settle {
        claim: Box<ReceiptClaim>,
        reply: oneshot::Sender<Reply>,
    },
    Close {
        lease: LeaseId,
        reply: oneshot::Sender<Reply>,
    },
    CloseEarly {
        claim: Box<CloseClaim>,
        reply: oneshot::Sender<Reply>,
    },
    Escrow {
        lease: LeaseId,
        reply: oneshot::Sender<Reply>,
    },
    Supply {
        reply: oneshot::Sender<Reply>,
    },
    /// Finish what is queued before it, close the store, then reply.
    Shutdown {
        reply: oneshot::Sender<Reply>,
    },
}

/// A result from the writer.
#[derive(Debug)]
pub(super) enum Reply {
    Amount(Result<Amount, LedgerError>),
    Escrow(Result<EscrowState, LedgerError>),
    Settlement(Result<Settlement, LedgerError>),
    Closure(Result<Closure, LedgerError>),
    MaybeEscrow(Option<EscrowState>),
    Supply(Supply),
    Stopped,
}

/// Keys a batch changed; written together before any reply goes out.
#[derive(Default)]
struct Dirty {
    accounts: HashSet<AccountId>,
    escrows: HashSet<LeaseId>,
    new_leases: Vec<LeaseId>,
    deposited: bool,
}

impl Dirty {
    fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.escrows.is_empty() && !self.deposited
    }
}

pub(super) fn spawn(
    db: sled::Db,
    state: State,
    rx: mpsc::Receiver<Command>,
    config: SledConfig,
    clock: Arc<dyn Clock>,
) -> std::io::Result<()> {
    let failed = Arc::new(AtomicBool::new(false));
    let flusher = if config.pipeline_flush {
        let (tx, jobs) = std::sync::mpsc::sync_channel(FLUSH_QUEUE);
        let (db, failed) = (db.clone(), failed.clone());
        let thread = std::thread::Builder::new()
            .name("ledger-flusher".into())
            .spawn(move || run_flusher(&db, &jobs, &failed))?;
        Some((tx, thread))
    } else {
        None
    };
    std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || {
            Writer {
                db,
                state,
                config,
                clock,
                flusher,
                failed,
            }
            .run(rx)
        })
        .map(|_| ())
}

/// Batches applied to sled but not yet fsynced that the flusher may hold.
const FLUSH_QUEUE: usize = 4;

/// One batch applied in memory, waiting to be written and fsynced: its
/// replies go out after that.
struct FlushJob {
    /// Every key the batch changed (`None`: a read-only batch, which only
    /// waits its turn so it never reveals state that is not yet durable).
    writes: Option<sled::Batch>,
    replies: Vec<(oneshot::Sender<Reply>, Reply)>,
}

/// Writes the jobs' keys in order (each job's atomically), then fsyncs
/// once if any job wrote.
fn write_and_sync(db: &sled::Db, jobs: &mut [FlushJob]) -> Result<(), LedgerError> {
    let mut wrote = false;
    for job in jobs.iter_mut() {
        if let Some(writes) = job.writes.take() {
            db.apply_batch(writes)
                .map_err(|e| LedgerError::Storage(e.to_string()))?;
            wrote = true;
        }
    }
    if wrote {
        db.flush()
            .map_err(|e| LedgerError::Storage(e.to_string()))?;
    }
    Ok(())
}

/// Writes and fsyncs what the writer applied and only then answers, in
/// order; many waiting batches share one fsync. After a failure it answers everything
/// with the error and sets `failed`, which stops the writer.
fn run_flusher(db: &sled::Db, jobs: &std::sync::mpsc::Receiver<FlushJob>, failed: &AtomicBool) {
    while let Ok(first) = jobs.recv() {
        let mut pending = vec![first];
        pending.extend(jobs.try_iter());
        let error = if failed.load(Ordering::SeqCst) {
            Some(LedgerError::Storage("an earlier write failed".into()))
        } else {
            write_and_sync(db, &mut pending).err()
        };
        if error.is_some() {
            failed.store(true, Ordering::SeqCst);
        }
        for job in pending {
            answer(job.replies, error.as_ref());
        }
    }
}

/// Sends replies: the results, or `error` for every operation that changed
/// or read state that could not be stored.
fn answer(replies: Vec<(oneshot::Sender<Reply>, Reply)>, error: Option<&LedgerError>) {
    for (reply, result) in replies {
        let result = match error {
            Some(error) => fail(result, error),
            None => result,
        };
        // The caller may have given up waiting; the op stands.
        let _ = reply.send(result);
    }
}

struct Writer {
    db: sled::Db,
    state: State,
    config: SledConfig,
    clock: Arc<dyn Clock>,
    /// With `pipeline_flush`: the flusher thread and its queue.
    flusher: Option<(
        std::sync::mpsc::SyncSender<FlushJob>,
        std::thread::JoinHandle<()>,
    )>,
    /// Set by the flusher when an fsync failed.
    failed: Arc<AtomicBool>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let max = self.config.max_batch.max(1);
        let mut batch = Vec::with_capacity(max);
        let mut stopping = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            if self.failed.load(Ordering::SeqCst) {
                tracing::error!(
                    "ledger storage failed; the writer stops and the ledger refuses further operations"
                );
                return;
            }
            if let Some(block) = self.config.block_time_ms.filter(|b| *b > 0) {
                // Everything that arrives before the next block boundary
                // lands in that block.
                let now = self.clock.now().0;
                std::thread::sleep(Duration::from_millis(block - now % block));
            }
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Shutdown { reply } => {
                        // Nothing queued after the request is taken.
                        stopping.push(reply);
                        break;
                    }
                    command => batch.push(command),
                }
                if batch.len() < max {
                    next = rx.try_recv().ok();
                }
            }
            if !self.apply_batch(&mut batch) {
                tracing::error!(
                    "ledger storage failed; the writer stops and the ledger refuses further operations"
                );
                return;
            }
            if !stopping.is_empty() {
                break;
            }
        }
        // Refuse whatever is still queued, then close the store (releasing
        // its lock) before saying it is closed.
        rx.close();
        drop(rx);
        if let Some((queue, thread)) = self.flusher.take() {
            // The flusher answers what it holds, then ends.
            drop(queue);
            let _ = thread.join();
        }
        drop(self);
        for reply in stopping {
            let _ = reply.send(Reply::Stopped);
        }
    }

    /// Applies, persists and answers one batch. Returns false if storage
    /// failed, after answering every operation with the error.
    fn apply_batch(&mut self, batch: &mut Vec<Command>) -> bool {
        let checked = self.verify_claims(batch);
        let now = self.clock.now();
        let mut dirty = Dirty::default();
        let mut replies = Vec::with_capacity(batch.len());
        for (index, command) in batch.drain(..).enumerate() {
            let (reply, result) = match command {
                Command::Balance { account, reply } => {
                    (reply, Reply::Amount(Ok(self.state.balance(&account))))
                }
                Command::Deposit {
                    account,
                    amount,
                    reply,
                } => (
                    reply,
                    Reply::Amount(self.deposit(account, amount, &mut dirty)),
                ),
                Command::Lock { lease, reply } => {
                    (reply, Reply::Escrow(self.lock(*lease, now, &mut dirty)))
                }
                Command::Settle { claim, reply } => {
                    let result = match checked.get(&index) {
                        Some(Err(error)) => Err(error.clone()),
                        Some(Ok(())) => self.settle(&claim, true, &mut dirty),
                        // Its lease was unknown when the batch was checked
                        // (perhaps locked earlier in this very batch).
                        None => self.settle(&claim, false, &mut dirty),
                    };
                    (reply, Reply::Settlement(result))
                }
                Command::Close { lease, reply } => {
                    (reply, Reply::Closure(self.close(lease, now, &mut dirty)))
                }
                Command::CloseEarly { claim, reply } => {
                    (reply, Reply::Closure(self.close_early(&claim, &mut dirty)))
                }
                Command::Escrow { lease, reply } => (
                    reply,
                    Reply::MaybeEscrow(self.state.leases.get(&lease).map(|(_, e)| e.clone())),
                ),
                Command::Supply { reply } => (reply, Reply::Supply(self.state.supply())),
                // `run` takes these out of the batch; answer anyway.
                Command::Shutdown { reply } => (reply, Reply::Stopped),
            };
            replies.push((reply, result));
        }
        let writes = (!dirty.is_empty()).then(|| self.writes(&dirty));
        self.finish(FlushJob { writes, replies })
    }

    /// Writes, fsyncs and answers a batch: on the flusher thread when
    /// pipelined (the writer goes on with the next batch meanwhile), else
    /// here.
    /// Returns false if storage failed.
    fn finish(&mut self, job: FlushJob) -> bool {
        if let Some((queue, _)) = &self.flusher {
            return match queue.send(job) {
                Ok(()) => true,
                Err(std::sync::mpsc::SendError(job)) => {
                    answer(
                        job.replies,
                        Some(&LedgerError::Storage("the ledger flusher stopped".into())),
                    );
                    false
                }
            };
        }
        let mut jobs = [job];
        let error = write_and_sync(&self.db, &mut jobs).err();
        let ok = error.is_none();
        let [job] = jobs;
        answer(job.replies, error.as_ref());
        ok
    }

    /// Batch-verifies the signatures of every receipt claim in the batch
    /// whose lease is already stored. Returns, by position, the outcome for
    /// each claim it checked; a claim missing from the map was not checked
    /// and `settle` verifies it on its own.
    fn verify_claims(&self, batch: &[Command]) -> BTreeMap<usize, Result<(), LedgerError>> {
        let mut items = Vec::new();
        for (index, command) in batch.iter().enumerate() {
            if let Command::Settle { claim, .. } = command
                && let Some((lease, _)) = self.state.leases.get(&claim.receipt().lease_id)
            {
                items.push((index, claim.as_ref(), lease.terms()));
            }
        }
        let mut checked: BTreeMap<usize, Result<(), LedgerError>> =
            items.iter().map(|(i, _, _)| (*i, Ok(()))).collect();
        if items.is_empty() {
            return checked;
        }
        // Verify in parallel chunks, one per core; a chunk that fails is
        // re-checked one by one to find the culprits.
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let chunk = items.len().div_ceil(threads).max(32);
        let failed: Vec<(usize, LedgerError)> = if items.len() <= chunk {
            verify_chunk(&items)
        } else {
            std::thread::scope(|scope| {
                let parts: Vec<_> = items
                    .chunks(chunk)
                    .map(|part| (part, scope.spawn(move || verify_chunk(part))))
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|(part, handle)| {
                        // A verifier that panicked proved nothing: refuse its
                        // whole chunk rather than settle unchecked receipts.
                        handle.join().unwrap_or_else(|_| {
                            part.iter()
                                .map(|(i, _, _)| {
                                    (
                                        *i,
                                        LedgerError::Unavailable(
                                            "signature check failed internally; retry".into(),
                                        ),
                                    )
                                })
                                .collect()
                        })
                    })
                    .collect()
            })
        };
        for (index, error) in failed {
            checked.insert(index, Err(error));
        }
        checked
    }

    fn deposit(
        &mut self,
        account: AccountId,
        amount: Amount,
        dirty: &mut Dirty,
    ) -> Result<Amount, LedgerError> {
        let balance = self
            .state
            .balance(&account)
            .checked_add(amount)
            .ok_or_else(|| {
                LedgerError::Overflow(format!("balance of {account} would exceed u64"))
            })?;
        self.state.balances.insert(account, balance);
        self.state.balance_total += u128::from(amount.0);
        self.state.deposited += u128::from(amount.0);
        dirty.accounts.insert(account);
        dirty.deposited = true;
        Ok(balance)
    }

    fn lock(
        &mut self,
        lease: Lease,
        now: agora_protocol::Timestamp,
        dirty: &mut Dirty,
    ) -> Result<EscrowState, LedgerError> {
        if let Some((_, existing)) = self.state.leases.get(&lease.id()) {
            return Ok(existing.clone());
        }
        let payer = lease.terms().requester;
        let plan = rules::plan_lock(
            &lease,
            self.state.balance(&payer),
            now,
            self.config.close_grace_ms,
        )?;
        let escrow = plan.state.escrow;
        self.state.balances.insert(payer, plan.payer_balance);
        self.state.balance_total -= u128::from(escrow.0);
        self.state.escrow_total += u128::from(escrow.0);
        let id = lease.id();
        self.state.leases.insert(id, (lease, plan.state.clone()));
        dirty.accounts.insert(payer);
        dirty.escrows.insert(id);
        dirty.new_leases.push(id);
        Ok(plan.state)
    }

    /// Settles `claim`; `verified` says its signatures were already checked
    /// against its stored lease.
    fn settle(
        &mut self,
        claim: &ReceiptClaim,
        verified: bool,
        dirty: &mut Dirty,
    ) -> Result<Settlement, LedgerError> {
        let id = claim.receipt().lease_id;
        let (lease, escrow) = self
            .state
            .leases
            .get(&id)
            .ok_or(LedgerError::UnknownLease(id))?;
        if !verified {
            claim
                .verify(lease.terms())
                .map_err(agora_protocol::ledger::invalid_receipt)?;
        }
        let (next, settlement) = rules::plan_settle(lease, escrow, claim)?;
        if let Some(next) = next {
            let provider = next.provider;
            let paid = settlement.paid;
            let balance = self
                .state
                .balance(&provider)
                .checked_add(paid)
                .ok_or_else(|| {
                    LedgerError::Overflow(format!("balance of {provider} would exceed u64"))
                })?;
            self.state.balances.insert(provider, balance);
            self.state.balance_total += u128::from(paid.0);
            self.state.escrow_total -= u128::from(paid.0);
            if let Some(entry) = self.state.leases.get_mut(&id) {
                entry.1 = next;
            }
            dirty.accounts.insert(provider);
            dirty.escrows.insert(id);
        }
        Ok(settlement)
    }

    fn close(
        &mut self,
        id: LeaseId,
        now: agora_protocol::Timestamp,
        dirty: &mut Dirty,
    ) -> Result<Closure, LedgerError> {
        let (_, escrow) = self
            .state
            .leases
            .get(&id)
            .ok_or(LedgerError::UnknownLease(id))?;
        let (next, closure) = rules::plan_close(escrow, now)?;
        let requester = next.requester;
        let balance = self
            .state
            .balance(&requester)
            .checked_add(closure.refunded)
            .ok_or_else(|| {
                LedgerError::Overflow(format!("balance of {requester} would exceed u64"))
            })?;
        self.state.balances.insert(requester, balance);
        self.state.balance_total += u128::from(closure.refunded.0);
        self.state.escrow_total -= u128::from(closure.refunded.0);
        if let Some(entry) = self.state.leases.get_mut(&id) {
            entry.1 = next;
        }
        dirty.accounts.insert(requester);
        dirty.escrows.insert(id);
        Ok(closure)
    }

    /// Closes a lease early by a close both parties signed: the provider
    /// is paid up to it and the requester refunded the rest, together.
    fn close_early(
        &mut self,
        claim: &CloseClaim,
        dirty: &mut Dirty,
    ) -> Result<Closure, LedgerError> {
        let id = claim.close().lease_id;
        let (lease, escrow) = self
            .state
            .leases
            .get(&id)
            .ok_or(LedgerError::UnknownLease(id))?;
        if escrow.closed() {
            return Err(LedgerError::LeaseClosed(id));
        }
        claim
            .verify(&escrow.requester, &escrow.provider)
            .map_err(agora_protocol::ledger::invalid_close)?;
        let (next, closure, paid) = rules::plan_close_early(lease, escrow, claim.close())?;
        let (provider, requester) = (next.provider, next.requester);
        let credited = |account: &AccountId, amount: Amount| {
            self.state
                .balance(account)
                .checked_add(amount)
                .ok_or_else(|| {
                    LedgerError::Overflow(format!("balance of {account} would exceed u64"))
                })
        };
        // Both checked before either moves: all or nothing.
        let provider_balance = credited(&provider, paid)?;
        let requester_balance = credited(&requester, closure.refunded)?;
        self.state.balances.insert(provider, provider_balance);
        self.state.balances.insert(requester, requester_balance);
        let moved = u128::from(paid.0) + u128::from(closure.refunded.0);
        self.state.balance_total += moved;
        self.state.escrow_total -= moved;
        if let Some(entry) = self.state.leases.get_mut(&id) {
            entry.1 = next;
        }
        dirty.accounts.insert(provider);
        dirty.accounts.insert(requester);
        dirty.escrows.insert(id);
        Ok(closure)
    }

    /// Every changed key, as one atomic sled batch.
    fn writes(&self, dirty: &Dirty) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for account in &dirty.accounts {
            batch.insert(
                store::account_key(account),
                &self.state.balance(account).0.to_be_bytes(),
            );
        }
        for id in &dirty.new_leases {
            if let Some((lease, _)) = self.state.leases.get(id) {
                batch.insert(store::lease_key(id), lease.encode());
            }
        }
        for id in &dirty.escrows {
            if let Some((_, escrow)) = self.state.leases.get(id) {
                batch.insert(store::escrow_key(id), &store::encode_escrow(escrow)[..]);
            }
        }
        if dirty.deposited {
            batch.insert(store::DEPOSITED, &self.state.deposited.to_be_bytes());
        }
        batch
    }
}

/// Verifies a chunk of claims together; if the batch check fails, checks
/// them one by one to find the bad ones.
fn verify_chunk(part: &[(usize, &ReceiptClaim, &LeaseTerms)]) -> Vec<(usize, LedgerError)> {
    let pairs: Vec<_> = part.iter().map(|(_, c, t)| (*c, *t)).collect();
    if verify_claims(&pairs).is_ok() {
        return Vec::new();
    }
    part.iter()
        .filter_map(|(i, c, t)| {
            c.verify(t)
                .err()
                .map(|e| (*i, agora_protocol::ledger::invalid_receipt(e)))
        })
        .collect()
}

/// The reply an operation gets when its batch could not be stored.
fn fail(result: Reply, error: &LedgerError) -> Reply {
    match result {
        Reply::Amount(_) => Reply::Amount(Err(error.clone())),
        Reply::Escrow(_) => Reply::Escrow(Err(error.clone())),
        Reply::Settlement(_) => Reply::Settlement(Err(error.clone())),
        Reply::Closure(_) => Reply::Closure(Err(error.clone())),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use agora_protocol::ledger::conformance::{Tamper, lease, receipt};
    use agora_protocol::{Amount, Keypair, Ledger, LedgerError, Timestamp};

    use crate::clock::ManualClock;
    use crate::sled_ledger::{SledConfig, SledLedger};

    /// A ledger whose writer waits for a block boundary before each batch,
    /// so operations sent together land in one batch.
    fn blocky(dir: &std::path::Path, pipeline_flush: bool) -> SledLedger {
        let config = SledConfig {
            block_time_ms: Some(300),
            pipeline_flush,
            ..SledConfig::default()
        };
        let clock = ManualClock::new(Timestamp(1_700_000_000_000));
        SledLedger::open(dir, config, Arc::new(clock)).unwrap()
    }

    #[tokio::test]
    async fn a_forged_receipt_is_refused_even_in_the_batch_that_locks_its_lease() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = blocky(dir.path(), true);
        let (requester, provider) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
        ledger
            .deposit(&requester.public(), Amount(10_000_000))
            .await
            .unwrap();
        let now = ledger.now().await.unwrap();
        let lease = lease(&requester, &provider, Amount(3_600_000), 1, 600, now, 1);
        let forged = receipt(
            &lease,
            &requester,
            &provider,
            1,
            100,
            false,
            Tamper::StrangerForPayer,
        );
        let good = receipt(&lease, &requester, &provider, 1, 100, false, Tamper::None);
        // All three wait for the same block boundary: one batch.
        let (locked, forged, good) = tokio::join!(
            ledger.lock_escrow(lease.cosigned()),
            async {
                tokio::task::yield_now().await;
                ledger.settle(&forged).await
            },
            async {
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                ledger.settle(&good).await
            },
        );
        locked.unwrap();
        assert!(
            matches!(forged, Err(LedgerError::InvalidReceipt(_))),
            "{forged:?}"
        );
        // The good one pays (or, had it landed first, found no lease).
        match good {
            Ok(settlement) => assert_eq!(settlement.paid, Amount(100_000)),
            Err(e) => assert!(matches!(e, LedgerError::UnknownLease(_)), "{e}"),
        }
        assert!(ledger.supply().await.unwrap().conserved());
    }

    #[tokio::test]
    async fn operations_in_one_batch_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        // The writer fsyncs each batch itself here (no flusher thread).
        let ledger = blocky(dir.path(), false);
        let (requester, provider) = (Keypair::from_seed(&[3; 32]), Keypair::from_seed(&[4; 32]));
        let now = ledger.now().await.unwrap();
        let lease = lease(&requester, &provider, Amount(3_600_000), 1, 600, now, 2);
        let payer = requester.public();
        let (deposited, locked) = tokio::join!(ledger.deposit(&payer, Amount(1_000_000)), async {
            tokio::task::yield_now().await;
            ledger.lock_escrow(lease.cosigned()).await
        },);
        deposited.unwrap();
        assert_eq!(locked.unwrap().escrow, Amount(600_000));
        assert_eq!(
            ledger.balance(&requester.public()).await.unwrap(),
            Amount(400_000)
        );
    }
}
