//! Money over time, from countersigned receipts. Each time a receipt is
//! countersigned (on the requester when it signs, on the provider when the
//! countersignature comes back) the increase of the lease's cumulative
//! amount is stored once, keyed by side, time, lease and sequence: the
//! provider's earnings and the requester's spend by hour or day are sums
//! over that tree. Receipts are cumulative, so an increase is never
//! counted twice however often a receipt is resent.

use agora_client::api::{Bucket, MoneyBucket, MoneyPage};
use agora_protocol::{Amount, LeaseId, Timestamp};

use super::{Store, StoreError};

/// Most buckets one page may span.
pub const MAX_BUCKETS: u64 = 10_000;

const DAY_MS: u64 = 86_400_000;

/// Whose money a [`MoneyEntry`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Earned as a provider.
    Earned,
    /// Spent as a requester.
    Spent,
}

impl Side {
    fn byte(self) -> u8 {
        match self {
            Side::Earned => b'e',
            Side::Spent => b's',
        }
    }
}

/// One countersigned increase of a lease's cumulative amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoneyEntry {
    /// When the countersignature was made (requester) or arrived (provider).
    pub at: Timestamp,
    /// The lease.
    pub lease: LeaseId,
    /// The receipt's sequence.
    pub sequence: u64,
    /// Its cumulative amount minus the previous countersigned one.
    pub amount: Amount,
}

impl MoneyEntry {
    /// The entry for a newly countersigned receipt, or `None` when it adds
    /// nothing (a resend, or a receipt that owes no more than the last).
    pub fn increase(
        lease: LeaseId,
        sequence: u64,
        cumulative: Amount,
        previous: Option<(u64, Amount)>,
        at: Timestamp,
    ) -> Option<Self> {
        let (last_seq, last) = previous.unwrap_or((0, Amount::ZERO));
        let amount = cumulative.checked_sub(last)?;
        (sequence > last_seq && amount > Amount::ZERO).then_some(Self {
            at,
            lease,
            sequence,
            amount,
        })
    }
}

fn key(side: Side, at: Timestamp, lease: &LeaseId, sequence: u64) -> [u8; 49] {
    let mut key = [0u8; 49];
    key[0] = side.byte();
    key[1..9].copy_from_slice(&at.0.to_be_bytes());
    key[9..41].copy_from_slice(&lease.0);
    key[41..].copy_from_slice(&sequence.to_be_bytes());
    key
}

fn decode(key: &[u8], value: &[u8]) -> Result<MoneyEntry, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        tree: super::MONEY,
        key: hex::encode(key),
        reason: reason.into(),
    };
    let key: &[u8; 49] = key.try_into().map_err(|_| corrupt("key is not 49 bytes"))?;
    let value: [u8; 8] = value
        .try_into()
        .map_err(|_| corrupt("value is not 8 bytes"))?;
    let mut at = [0u8; 8];
    at.copy_from_slice(&key[1..9]);
    let mut lease = [0u8; 32];
    lease.copy_from_slice(&key[9..41]);
    let mut sequence = [0u8; 8];
    sequence.copy_from_slice(&key[41..]);
    Ok(MoneyEntry {
        at: Timestamp(u64::from_be_bytes(at)),
        lease: LeaseId(lease),
        sequence: u64::from_be_bytes(sequence),
        amount: Amount(u64::from_be_bytes(value)),
    })
}

impl Store {
    /// Records a countersigned increase (not flushed: the caller flushes
    /// with the record it belongs to). Writing the same receipt again
    /// changes nothing.
    pub fn put_money(&self, side: Side, entry: &MoneyEntry) -> Result<(), StoreError> {
        self.money.insert(
            key(side, entry.at, &entry.lease, entry.sequence),
            &entry.amount.0.to_be_bytes(),
        )?;
        Ok(())
    }

    /// Whether any entry of `side` exists (for the one-time backfill).
    pub fn has_money(&self, side: Side) -> Result<bool, StoreError> {
        Ok(self
            .money
            .scan_prefix([side.byte()])
            .next()
            .transpose()?
            .is_some())
    }

    /// `side`'s entries from `since` on, oldest first.
    pub fn money_since(&self, side: Side, since: Timestamp) -> Result<Vec<MoneyEntry>, StoreError> {
        let start = key(side, since, &LeaseId([0; 32]), 0);
        let end = key(side, Timestamp(u64::MAX), &LeaseId([0xff; 32]), u64::MAX);
        self.money
            .range(start..=end)
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }
}

/// Why a page cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError(pub String);

/// The page of `entries` (all of one side, oldest first, any `since`) in
/// `bucket`s from the one holding `since` to `now`, with the 24 h, 7 d and
/// all-time sums and what the ledger has `settled`.
pub fn page(
    entries: &[MoneyEntry],
    bucket: Bucket,
    since: Timestamp,
    now: Timestamp,
    settled: Amount,
) -> Result<MoneyPage, PageError> {
    if since > now {
        return Err(PageError(format!(
            "since ({}) is in the future (now is {})",
            since.0, now.0
        )));
    }
    let first = bucket.start(since);
    let spans = (now.0 - first.0) / bucket.millis() + 1;
    if spans > MAX_BUCKETS {
        return Err(PageError(format!(
            "{spans} {bucket:?} buckets from since to now; at most {MAX_BUCKETS} (use a later since or --bucket day)"
        )));
    }
    let mut buckets: Vec<MoneyBucket> = Vec::new();
    let mut leases: Vec<LeaseId> = Vec::new();
    let (mut day, mut week, mut all) = (0u64, 0u64, 0u64);
    for e in entries {
        let a = e.amount.0;
        all = all.saturating_add(a);
        if e.at.0 + DAY_MS > now.0 {
            day = day.saturating_add(a);
        }
        if e.at.0 + 7 * DAY_MS > now.0 {
            week = week.saturating_add(a);
        }
        if e.at < first || e.at > now {
            continue;
        }
        let start = bucket.start(e.at);
        if buckets.last().is_none_or(|b| b.start != start) {
            buckets.push(MoneyBucket {
                start,
                amount: Amount::ZERO,
                receipts: 0,
                leases: 0,
            });
            leases.clear();
        }
        let Some(b) = buckets.last_mut() else {
            continue;
        };
        b.amount = Amount(b.amount.0.saturating_add(a));
        b.receipts += 1;
        if !leases.contains(&e.lease) {
            leases.push(e.lease);
            b.leases += 1;
        }
    }
    Ok(MoneyPage {
        bucket,
        since: first,
        buckets,
        last_24h: Amount(day),
        last_7d: Amount(week),
        all_time: Amount(all),
        settled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000;

    fn entry(at: u64, lease: u8, sequence: u64, amount: u64) -> MoneyEntry {
        MoneyEntry {
            at: Timestamp(at),
            lease: LeaseId([lease; 32]),
            sequence,
            amount: Amount(amount),
        }
    }

    #[test]
    fn an_increase_is_counted_once_and_only_when_it_adds() {
        let lease = LeaseId([1; 32]);
        let at = Timestamp(5);
        let first = MoneyEntry::increase(lease, 1, Amount(30), None, at).unwrap();
        assert_eq!(first.amount, Amount(30));
        let next = MoneyEntry::increase(lease, 2, Amount(45), Some((1, Amount(30))), at).unwrap();
        assert_eq!(next.amount, Amount(15));
        // A resend of the same receipt, an older one, and one that owes no
        // more add nothing.
        assert_eq!(
            MoneyEntry::increase(lease, 2, Amount(45), Some((2, Amount(45))), at),
            None
        );
        assert_eq!(
            MoneyEntry::increase(lease, 1, Amount(30), Some((2, Amount(45))), at),
            None
        );
        assert_eq!(
            MoneyEntry::increase(lease, 3, Amount(45), Some((2, Amount(45))), at),
            None
        );
    }

    #[test]
    fn buckets_sum_by_hour_and_day_with_distinct_leases() {
        let now = 10 * 24 * H + 30 * 60_000; // day 10, 00:30
        let entries = [
            entry(H / 2, 1, 1, 100),              // day 0: outside 7 d
            entry(9 * 24 * H + H, 1, 2, 10),      // day 9, 01:xx
            entry(9 * 24 * H + H + 5, 2, 1, 20),  // same hour, another lease
            entry(9 * 24 * H + H + 9, 2, 2, 5),   // same hour, same lease
            entry(9 * 24 * H + 5 * H, 1, 3, 7),   // day 9, 05:xx
            entry(10 * 24 * H + 60_000, 3, 1, 1), // day 10, 00:01
        ];
        let hourly = page(
            &entries,
            Bucket::Hour,
            Timestamp(now - 24 * H),
            Timestamp(now),
            Amount(140),
        )
        .unwrap();
        assert_eq!(hourly.since, Timestamp(9 * 24 * H));
        let sums: Vec<_> = hourly
            .buckets
            .iter()
            .map(|b| (b.start.0, b.amount.0, b.receipts, b.leases))
            .collect();
        assert_eq!(
            sums,
            [
                (9 * 24 * H + H, 35, 3, 2),
                (9 * 24 * H + 5 * H, 7, 1, 1),
                (10 * 24 * H, 1, 1, 1)
            ]
        );
        assert_eq!(hourly.last_24h, Amount(43));
        assert_eq!(hourly.last_7d, Amount(43));
        assert_eq!(hourly.all_time, Amount(143));
        assert_eq!(hourly.settled, Amount(140));
        let daily = page(
            &entries,
            Bucket::Day,
            Timestamp(0),
            Timestamp(now),
            Amount(0),
        )
        .unwrap();
        let days: Vec<_> = daily
            .buckets
            .iter()
            .map(|b| (b.start.0 / (24 * H), b.amount.0))
            .collect();
        assert_eq!(days, [(0, 100), (9, 42), (10, 1)]);
        // The bucket sums add up to the all-time figure.
        let total: u64 = daily.buckets.iter().map(|b| b.amount.0).sum();
        assert_eq!(Amount(total), daily.all_time);
    }

    #[test]
    fn a_span_too_long_or_in_the_future_is_refused_with_the_reason() {
        let now = Timestamp(MAX_BUCKETS * 2 * H);
        let err = page(&[], Bucket::Hour, Timestamp(0), now, Amount::ZERO).unwrap_err();
        assert!(err.0.contains("at most 10000"), "{}", err.0);
        assert!(page(&[], Bucket::Day, Timestamp(0), now, Amount::ZERO).is_ok());
        let err = page(&[], Bucket::Day, Timestamp(now.0 + 1), now, Amount::ZERO).unwrap_err();
        assert!(err.0.contains("future"), "{}", err.0);
    }

    #[test]
    fn entries_are_stored_once_per_receipt_and_read_back_from_since() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(!store.has_money(Side::Earned).unwrap());
        let a = entry(1_000, 1, 1, 10);
        let b = entry(2_000, 1, 2, 5);
        store.put_money(Side::Earned, &a).unwrap();
        store.put_money(Side::Earned, &a).unwrap();
        store.put_money(Side::Earned, &b).unwrap();
        store
            .put_money(Side::Spent, &entry(1_500, 9, 1, 99))
            .unwrap();
        assert!(store.has_money(Side::Earned).unwrap());
        assert_eq!(
            store.money_since(Side::Earned, Timestamp(0)).unwrap(),
            [a, b]
        );
        assert_eq!(
            store.money_since(Side::Earned, Timestamp(1_001)).unwrap(),
            [b]
        );
        assert_eq!(
            store.money_since(Side::Spent, Timestamp(0)).unwrap().len(),
            1
        );
    }
}
