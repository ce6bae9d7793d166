//! The node's durable state in sled: offers seen, jobs (orders, bids,
//! declines, leases) and the provider's reservations and leases. Writes are
//! not flushed one by one: whoever acknowledges something that creates an
//! obligation (a bid, a lease, a countersignature, an acknowledged
//! receipt or log update, an accepted job) flushes first, and sled's own
//! flusher makes the rest durable within half a second.

use std::path::Path;
use std::sync::Arc;

use agora_client::api::{JobLogEntry, LogKind};
use agora_protocol::{Lease, LeaseId, Offer, OfferId, OrderId, RunEvent, Signed, Timestamp};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub mod money;

pub use money::{MoneyEntry, Side};

/// One entry of a stored log (a run's on a provider, a job's on a
/// requester). The typed run event is kept beside its name, so nothing is
/// ever read back out of the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// From 1, gap-free per log.
    pub seq: u64,
    /// When it was recorded.
    pub at: Timestamp,
    /// Event or output.
    pub kind: LogKind,
    /// The event's name (events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The provider's typed run event, when this entry is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunEvent>,
    /// The detail, or the output.
    pub text: String,
}

impl LogRecord {
    /// The entry as the API shows it.
    pub fn view(self) -> JobLogEntry {
        JobLogEntry {
            seq: self.seq,
            at: self.at,
            kind: self.kind,
            event: self.event,
            text: self.text,
        }
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("state store: {0}")]
    Sled(#[from] sled::Error),
    /// A record does not decode (corruption or an incompatible version).
    #[error("state store: record {key} in {tree}: {reason}")]
    Corrupt {
        /// The tree.
        tree: &'static str,
        /// The key, hex.
        key: String,
        /// Why.
        reason: String,
    },
}

/// A stored (key, value) pair.
pub type StoredEntry = (Vec<u8>, Vec<u8>);

/// The node's sled database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    offers: sled::Tree,
    jobs: sled::Tree,
    leases: sled::Tree,
    meta: sled::Tree,
    runs: sled::Tree,
    logs: sled::Tree,
    money: sled::Tree,
    appended: Arc<tokio::sync::Notify>,
}

/// The store's page cache unless configured: 64 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

const OFFERS: &str = "offers";
const JOBS: &str = "jobs";
const LEASES: &str = "leases";
const META: &str = "meta";
const RUNS: &str = "runs";
const LOGS: &str = "logs";
const MONEY: &str = "money";

impl Store {
    /// Opens (or creates) the store under `dir`, with sled's page cache
    /// at its default for this store ([`DEFAULT_CACHE_BYTES`]).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the store under `dir` with a page cache of at
    /// most `cache_bytes` (sled's own default is 1 GiB, which a node that
    /// keeps every job's log would fill: `node.store_cache_mb`).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()?;
        Ok(Self {
            offers: db.open_tree(OFFERS)?,
            jobs: db.open_tree(JOBS)?,
            leases: db.open_tree(LEASES)?,
            meta: db.open_tree(META)?,
            runs: db.open_tree(RUNS)?,
            logs: db.open_tree(LOGS)?,
            money: db.open_tree(MONEY)?,
            appended: Arc::new(tokio::sync::Notify::new()),
            db,
        })
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Records a verified offer (not flushed: offers come back by gossip).
    pub fn put_offer(&self, offer: &Signed<Offer>) -> Result<(), StoreError> {
        self.offers.insert(offer.message().id().0, offer.encode())?;
        Ok(())
    }

    /// Forgets an offer.
    pub fn remove_offer(&self, id: &OfferId) -> Result<(), StoreError> {
        self.offers.remove(id.0)?;
        Ok(())
    }

    /// Every stored offer that still decodes and verifies; the rest are
    /// dropped.
    pub fn offers(&self) -> Result<Vec<Signed<Offer>>, StoreError> {
        let mut out = Vec::new();
        for entry in self.offers.iter() {
            let (key, value) = entry?;
            match Signed::<Offer>::decode(&value) {
                Ok(offer) => out.push(offer),
                Err(_) => {
                    self.offers.remove(key)?;
                }
            }
        }
        Ok(out)
    }

    /// Records a job (requester side) as its encoded record; not flushed:
    /// the market flushes before an answer that creates an obligation, and
    /// sled's own flusher makes the rest durable within half a second.
    pub fn put_job(&self, id: &OrderId, record: &[u8]) -> Result<(), StoreError> {
        self.jobs.insert(id.0, record)?;
        Ok(())
    }

    /// Every stored job, as (key, encoded record).
    pub fn jobs(&self) -> Result<Vec<StoredEntry>, StoreError> {
        let mut out = Vec::new();
        for entry in self.jobs.iter() {
            let (key, value) = entry?;
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    /// Deletes a job and its log (requester side): the log first, so a
    /// crash in between leaves the job to be deleted again. Returns how
    /// many log entries went.
    pub fn remove_job(&self, id: &OrderId) -> Result<usize, StoreError> {
        let removed = self.remove_log(&id.0)?;
        self.jobs.remove(id.0)?;
        Ok(removed)
    }

    /// Deletes every entry of `owner`'s log; how many there were.
    pub fn remove_log(&self, owner: &[u8; 32]) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for entry in self
            .logs
            .range(log_key(owner, 0)..=log_key(owner, u64::MAX))
        {
            let (key, _) = entry?;
            batch.remove(key);
            removed += 1;
        }
        self.logs.apply_batch(batch)?;
        Ok(removed)
    }

    /// Deletes a provider's run of `id`, its log (first) and its lease.
    /// Returns how many log entries went.
    pub fn remove_run(&self, id: &LeaseId) -> Result<usize, StoreError> {
        let removed = self.remove_log(&id.0)?;
        self.runs.remove(id.0)?;
        self.leases.remove(id.0)?;
        Ok(removed)
    }

    /// Records a lease this node signed (either side) and flushes.
    pub fn put_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.leases.insert(lease.id().0, lease.encode())?;
        self.flush()
    }

    /// Every stored lease, verified again.
    pub fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let mut out = Vec::new();
        for entry in self.leases.iter() {
            let (key, value) = entry?;
            let lease = Lease::decode(&value).map_err(|e| StoreError::Corrupt {
                tree: LEASES,
                key: hex::encode(&key),
                reason: e.to_string(),
            })?;
            out.push(lease);
        }
        Ok(out)
    }

    /// One stored lease.
    pub fn lease(&self, id: &LeaseId) -> Result<Option<Lease>, StoreError> {
        match self.leases.get(id.0)? {
            None => Ok(None),
            Some(value) => Lease::decode(&value)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    tree: LEASES,
                    key: id.to_string(),
                    reason: e.to_string(),
                }),
        }
    }

    /// Stores a provider's run record (not flushed: callers flush before
    /// they acknowledge).
    pub fn put_run<T: Serialize>(&self, id: &LeaseId, run: &T) -> Result<(), StoreError> {
        put_json(&self.runs, &id.0, run)
    }

    /// Every run record.
    pub fn runs<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        all_json(&self.runs, RUNS)
    }

    /// Appends entries to the log named by `owner` (a lease on a provider,
    /// an order on a requester) and wakes every follower. Entries carry
    /// their own gap-free sequence.
    pub fn append_log(&self, owner: &[u8; 32], entries: &[LogRecord]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(entry).map_err(|e| StoreError::Corrupt {
                tree: LOGS,
                key: hex::encode(owner),
                reason: e.to_string(),
            })?;
            batch.insert(log_key(owner, entry.seq).to_vec(), bytes);
        }
        self.logs.apply_batch(batch)?;
        self.appended.notify_waiters();
        Ok(())
    }

    /// Entries of `owner`'s log with `seq > after`, at most `limit` of
    /// them and about `max_bytes` of text.
    pub fn log_after(
        &self,
        owner: &[u8; 32],
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, StoreError> {
        let start = log_key(owner, after.saturating_add(1));
        let end = log_key(owner, u64::MAX);
        let mut out = Vec::new();
        let mut bytes = 0;
        for entry in self.logs.range(start..=end) {
            let (key, value) = entry?;
            let e: LogRecord = serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                tree: LOGS,
                key: hex::encode(&key),
                reason: e.to_string(),
            })?;
            bytes += e.text.len();
            out.push(e);
            if out.len() >= limit || bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Resolves when any log gets entries (or spuriously); callers re-read.
    pub fn log_appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.appended.notified()
    }

    /// Stores a small named value (not flushed: callers flush before an
    /// answer that depends on it).
    pub fn put_meta<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        put_json(&self.meta, name.as_bytes(), value)
    }

    /// Reads a small named value.
    pub fn meta<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.meta.get(name.as_bytes())? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        tree: META,
                        key: name.to_string(),
                        reason: e.to_string(),
                    })
            }
        }
    }
}

fn log_key(owner: &[u8; 32], seq: u64) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(owner);
    key[32..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn put_json<T: Serialize>(tree: &sled::Tree, key: &[u8], value: &T) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        tree: "encode",
        key: hex::encode(key),
        reason: e.to_string(),
    })?;
    tree.insert(key, bytes)?;
    Ok(())
}

fn all_json<T: DeserializeOwned>(
    tree: &sled::Tree,
    name: &'static str,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for entry in tree.iter() {
        let (key, value) = entry?;
        out.push(
            serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                tree: name,
                key: hex::encode(&key),
                reason: e.to_string(),
            })?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_protocol::Keypair;

    #[test]
    fn meta_and_jobs_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_meta("sequence", &42u64).unwrap();
            let id = OrderId::new(&Keypair::from_seed(&[1; 32]).public(), &[7; 16]);
            store.put_job(&id, b"job").unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.meta::<u64>("sequence").unwrap(), Some(42));
        let jobs = store.jobs().unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].1, b"job".to_vec());
        assert_eq!(store.meta::<u64>("absent").unwrap(), None);
    }

    #[test]
    fn removing_a_job_takes_its_whole_log_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = Keypair::from_seed(&[1; 32]).public();
        let (gone, kept) = (OrderId::new(&key, &[1; 16]), OrderId::new(&key, &[2; 16]));
        let entries = |n: u64| -> Vec<LogRecord> {
            (1..=n)
                .map(|seq| LogRecord {
                    seq,
                    at: agora_protocol::Timestamp(seq),
                    kind: agora_client::api::LogKind::Stdout,
                    event: None,
                    run: None,
                    text: format!("line {seq}\n"),
                })
                .collect()
        };
        for id in [&gone, &kept] {
            store.put_job(id, b"job").unwrap();
            store.append_log(&id.0, &entries(300)).unwrap();
        }
        assert_eq!(store.remove_job(&gone).unwrap(), 300);
        assert!(
            store
                .log_after(&gone.0, 0, 1000, usize::MAX)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.log_after(&kept.0, 0, 1000, usize::MAX).unwrap().len(),
            300
        );
        let jobs = store.jobs().unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].0, kept.0.to_vec());
        // Again: nothing left to remove, no error.
        assert_eq!(store.remove_job(&gone).unwrap(), 0);
    }
}
