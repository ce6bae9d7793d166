//! A [`Ledger`] on sled with group commit.
//!
//! One writer thread owns the ledger's state in memory. Callers send it
//! operations over a bounded channel; it takes every operation waiting (up
//! to `max_batch`), verifies the batch's receipt signatures together,
//! applies each operation in order through `agora_protocol::ledger::rules`
//! (a refused operation changes nothing), writes every changed key in one
//! sled batch, fsyncs, and only then replies. An acknowledged operation is
//! therefore on disk, and many concurrent operations share one fsync.
//!
//! With `pipeline_flush` (the default) the sled write, the fsync and the
//! replies happen on a flusher thread, in batch order, while the writer already verifies and
//! applies the next batch; batches that wait for the disk share one fsync.
//! A reply still leaves only after the fsync that covers its batch, and a
//! read-only batch waits its turn, so no answer reveals state that is not
//! yet durable.
//!
//! Reads go through the same queue, so they see exactly the acknowledged
//! state and never a half-applied batch.
//!
//! Key layout (one sled tree):
//!
//! | key | value |
//! | --- | --- |
//! | `a` ‖ account (32 bytes) | balance, u64 big-endian |
//! | `l` ‖ lease id (32 bytes) | the co-signed lease, wire bytes |
//! | `e` ‖ lease id (32 bytes) | what changes of its `EscrowState`, 38 bytes (see `store.rs`) |
//! | `m:deposited` | all deposits ever, u128 big-endian |

mod store;
mod writer;

use std::path::Path;
use std::sync::Arc;

use agora_protocol::ledger::{Closure, EscrowState, Settlement, Supply};
use agora_protocol::{
    AccountId, Amount, CoSigned, Lease, LeaseId, Ledger, LedgerError, Timestamp, ledger,
};
use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use writer::{Command, Reply};

/// Settings of a [`SledLedger`].
#[derive(Debug, Clone)]
pub struct SledConfig {
    /// After a lease's end, how long before anyone may close it.
    pub close_grace_ms: u64,
    /// Most operations applied under one fsync.
    pub max_batch: usize,
    /// Operations that may wait for the writer (the channel bound).
    pub queue: usize,
    /// Simulated block time: acknowledge only at block boundaries. `None`
    /// acknowledges as soon as the batch is on disk.
    pub block_time_ms: Option<u64>,
    /// Fsync on a second thread, so the writer verifies and applies the
    /// next batch while the last one reaches the disk. Replies still wait
    /// for their fsync. Off: the writer fsyncs each batch itself.
    pub pipeline_flush: bool,
}

impl Default for SledConfig {
    fn default() -> Self {
        Self {
            close_grace_ms: 60_000,
            max_batch: 4096,
            queue: 16_384,
            block_time_ms: None,
            pipeline_flush: true,
        }
    }
}

/// Why the ledger could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// sled could not open the directory.
    #[error("cannot open the ledger at {path}: {source} (is another agora-mock-chain using it?)")]
    Sled {
        /// The directory.
        path: String,
        /// sled's error.
        source: sled::Error,
    },
    /// The stored state does not add up.
    #[error("the ledger at {path} is inconsistent: {reason}")]
    Corrupt {
        /// The directory.
        path: String,
        /// What does not add up.
        reason: String,
    },
    /// The writer thread could not start.
    #[error("cannot start the ledger writer thread: {0}")]
    Thread(std::io::Error),
}

/// A durable ledger on sled. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct SledLedger {
    tx: mpsc::Sender<Command>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SledLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledLedger").finish_non_exhaustive()
    }
}

impl SledLedger {
    /// Opens (or creates) the ledger in `path`, loads its state, checks that
    /// money adds up, and starts the writer thread.
    pub fn open(path: &Path, config: SledConfig, clock: Arc<dyn Clock>) -> Result<Self, OpenError> {
        let shown = path.display().to_string();
        let db = open_db(path).map_err(|source| OpenError::Sled {
            path: shown.clone(),
            source,
        })?;
        let state = store::load(&db).map_err(|reason| OpenError::Corrupt {
            path: shown.clone(),
            reason,
        })?;
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        writer::spawn(db, state, rx, config, clock.clone()).map_err(OpenError::Thread)?;
        Ok(Self { tx, clock })
    }

    /// Applies every operation queued so far, closes the store (its
    /// directory may be reopened as soon as this returns) and stops the
    /// writer. Every clone then answers [`LedgerError::Unavailable`].
    pub async fn shutdown(&self) -> Result<(), LedgerError> {
        match self.call(|reply| Command::Shutdown { reply }).await? {
            Reply::Stopped => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn call(
        &self,
        command: impl FnOnce(oneshot::Sender<Reply>) -> Command,
    ) -> Result<Reply, LedgerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(command(reply))
            .await
            .map_err(|_| LedgerError::Unavailable("the ledger writer has stopped".into()))?;
        rx.await.map_err(|_| {
            LedgerError::Unavailable("the ledger writer stopped before replying".into())
        })
    }
}

/// How long [`open_db`] waits for a closing instance's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the sled database. A ledger just shut down in this process can
/// still hold the directory's lock for a moment (sled's own background
/// threads drop their handles after the writer has closed it), so a held
/// lock is retried for up to [`LOCK_WAIT`]; every other error is at once.
fn open_db(path: &Path) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        let opened = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn unexpected(reply: &Reply) -> LedgerError {
    LedgerError::Storage(format!("internal: unexpected reply {reply:?}"))
}

#[async_trait]
impl Ledger for SledLedger {
    async fn now(&self) -> Result<Timestamp, LedgerError> {
        Ok(self.clock.now())
    }

    async fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError> {
        match self
            .call(|reply| Command::Balance {
                account: *account,
                reply,
            })
            .await?
        {
            Reply::Amount(result) => result,
            other => Err(unexpected(&other)),
        }
    }

    async fn deposit(&self, account: &AccountId, amount: Amount) -> Result<Amount, LedgerError> {
        if amount == Amount::ZERO {
            return Err(LedgerError::BadRequest("a deposit must be positive".into()));
        }
        match self
            .call(|reply| Command::Deposit {
                account: *account,
                amount,
                reply,
            })
            .await?
        {
            Reply::Amount(result) => result,
            other => Err(unexpected(&other)),
        }
    }

    async fn lock_escrow(&self, lease: &CoSigned) -> Result<EscrowState, LedgerError> {
        // Verified here, in the caller's task, so many callers verify in parallel.
        let lease = Lease::verify(lease.clone()).map_err(ledger::invalid_lease)?;
        match self
            .call(|reply| Command::Lock {
                lease: Box::new(lease),
                reply,
            })
            .await?
        {
            Reply::Escrow(result) => result,
            other => Err(unexpected(&other)),
        }
    }

    async fn settle(&self, receipt: &CoSigned) -> Result<Settlement, LedgerError> {
        let claim = agora_protocol::ReceiptClaim::from_cosigned(receipt.clone())
            .map_err(ledger::invalid_receipt)?;
        match self
            .call(|reply| Command::Settle {
                claim: Box::new(claim),
                reply,
            })
            .await?
        {
            Reply::Settlement(result) => result,
            other => Err(unexpected(&other)),
        }
    }

    async fn close(&self, lease: &LeaseId) -> Result<Closure, LedgerError> {
        match self
            .call(|reply| Command::Close {
                lease: *lease,
                reply,
            })
            .await?
        {
            Reply::Closure(result) => result,
            other => Err(unexpected(&other)),
        }
    }

    async fn close_early(&self, close: &CoSigned) -> Result<Closure, LedgerError> {
        let claim = agora_protocol::CloseClaim::from_cosigned(close.clone())
            .map_err(ledger::invalid_close)?;
        match self
            .call(|reply| Command::CloseEarly {
                claim: Box::new(claim),
                reply,
            })
            .await?
        {
            Reply::Closure(result) => result,
            other => Err(unexpected(&other)),
        }
    }

    async fn escrow(&self, lease: &LeaseId) -> Result<Option<EscrowState>, LedgerError> {
        match self
            .call(|reply| Command::Escrow {
                lease: *lease,
                reply,
            })
            .await?
        {
            Reply::MaybeEscrow(state) => Ok(state),
            other => Err(unexpected(&other)),
        }
    }

    async fn supply(&self) -> Result<Supply, LedgerError> {
        match self.call(|reply| Command::Supply { reply }).await? {
            Reply::Supply(supply) => Ok(supply),
            other => Err(unexpected(&other)),
        }
    }
}
