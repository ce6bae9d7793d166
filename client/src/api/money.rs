//! Money over time: `GET /v1/provider/earnings` and `GET /v1/billing`.

use agora_protocol::{Amount, Timestamp};
use serde::{Deserialize, Serialize};

/// The width of a [`MoneyPage`] bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// One hour (UTC).
    Hour,
    /// One day (UTC).
    #[default]
    Day,
}

impl Bucket {
    /// The bucket's width in milliseconds.
    pub fn millis(self) -> u64 {
        match self {
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }

    /// The start of the bucket holding `at`.
    pub fn start(self, at: Timestamp) -> Timestamp {
        Timestamp(at.0 - at.0 % self.millis())
    }
}

/// Money over one bucket: the increase of countersigned receipts whose
/// countersignature falls in `[start, start + width)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyBucket {
    /// Start of the bucket.
    pub start: Timestamp,
    /// Earned (or spent) in it.
    pub amount: Amount,
    /// Countersigned receipts in it.
    pub receipts: u64,
    /// Distinct leases those receipts belong to.
    pub leases: u64,
}

/// `GET /v1/provider/earnings` and `GET /v1/billing`: money computed from
/// countersigned receipts (what both sides signed, whether or not it has
/// settled yet), next to what the ledger has paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyPage {
    /// Bucket width.
    pub bucket: Bucket,
    /// The first bucket holds this time.
    pub since: Timestamp,
    /// Oldest first; buckets with nothing in them are left out.
    pub buckets: Vec<MoneyBucket>,
    /// Countersigned in the last 24 hours.
    pub last_24h: Amount,
    /// Countersigned in the last 7 days.
    pub last_7d: Amount,
    /// Countersigned over all time.
    pub all_time: Amount,
    /// Paid on the ledger over all time (earned: settled to the provider;
    /// billing: settled from this requester's escrows).
    pub settled: Amount,
}
