//! When each offer reached this node: the record behind offer-propagation
//! measurements (`GET /v1/node/arrivals`).
//!
//! Every offer version — an offer id and its sequence — is recorded once,
//! the first time this node saw it: published by itself (`own`) or
//! received over gossip, whether or not the book kept it (a newer version
//! may have overtaken it). The record is a bounded ring; the oldest
//! entries fall off and are counted.

use std::collections::{HashSet, VecDeque};

use agora_client::api::{OfferArrival, OfferArrivals};
use agora_protocol::{Offer, OfferId, Timestamp};

/// Entries kept: a 100-provider market republishing every 2 s fills this
/// in about five minutes.
pub(crate) const ARRIVALS_KEPT: usize = 16 * 1024;

/// The ring of first sightings.
#[derive(Debug)]
pub(crate) struct Arrivals {
    ring: VecDeque<(OfferId, OfferArrival)>,
    seen: HashSet<(OfferId, u64)>,
    capacity: usize,
    evicted: u64,
}

impl Arrivals {
    /// An empty record keeping at most `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            ring: VecDeque::with_capacity(capacity.min(1024)),
            seen: HashSet::new(),
            capacity: capacity.max(1),
            evicted: 0,
        }
    }

    /// Records `offer` seen at `at`, unless this version was seen before.
    pub(crate) fn record(&mut self, offer: &Offer, own: bool, at: Timestamp) {
        let id = offer.id();
        if !self.seen.insert((id, offer.sequence)) {
            return;
        }
        if self.ring.len() == self.capacity
            && let Some((old_id, old)) = self.ring.pop_front()
        {
            self.seen.remove(&(old_id, old.sequence));
            self.evicted += 1;
        }
        self.ring.push_back((
            id,
            OfferArrival {
                offer: id.to_string(),
                sequence: offer.sequence,
                created_at: offer.created_at,
                received_at: at,
                own,
            },
        ));
    }

    /// Entries received after `after` (exclusive), oldest first, at most
    /// `limit` of them.
    pub(crate) fn after(&self, after: Timestamp, limit: usize) -> OfferArrivals {
        // Entries are in arrival order, so the start is a binary search.
        let start = self.ring.partition_point(|(_, a)| a.received_at <= after);
        let arrivals: Vec<OfferArrival> = self
            .ring
            .range(start..)
            .take(limit)
            .map(|(_, a)| a.clone())
            .collect();
        OfferArrivals {
            more: self.ring.len() - start > arrivals.len(),
            arrivals,
            evicted: self.evicted,
        }
    }
}

#[cfg(test)]
mod tests {
    use agora_protocol::{Benchmark, BenchmarkMethod, Energy, Keypair};

    use super::*;

    fn offer(key: &Keypair, slot: u32, sequence: u64, created: u64) -> Offer {
        Offer {
            limits: agora_protocol::SandboxLimits::default(),
            network: false,
            provider: key.public(),
            slot,
            sequence,
            gpu_model: "H100".into(),
            vram_mib: 81_920,
            compute_capability: 90,
            benchmark: Benchmark {
                fp32_mtflops: 60_000,
                fp16_mtflops: 0,
                memory_bandwidth_mbps: 0,
                method: BenchmarkMethod::Declared,
                method_detail: String::new(),
                measured_at: Timestamp(created),
            },
            gpu_total: 1,
            gpu_free: 1,
            price_per_gpu_hour: agora_protocol::Amount(2_000_000),
            region: "EU".into(),
            jurisdiction: None,
            energy: Energy::Unknown,
            simulated: true,
            created_at: Timestamp(created),
            expires_at: Timestamp(created + 30_000),
            runtimes: vec!["process".into()],
        }
    }

    #[test]
    fn records_each_version_once_and_pages_by_arrival_time() {
        let key = Keypair::from_seed(&[7; 32]);
        let mut arrivals = Arrivals::new(8);
        arrivals.record(&offer(&key, 0, 1, 100), false, Timestamp(105));
        // The same version again (a gossip duplicate, a re-announce): kept once.
        arrivals.record(&offer(&key, 0, 1, 100), false, Timestamp(300));
        arrivals.record(&offer(&key, 0, 2, 200), true, Timestamp(200));
        arrivals.record(&offer(&key, 1, 1, 250), false, Timestamp(260));

        let all = arrivals.after(Timestamp(0), 100);
        let got: Vec<_> = all
            .arrivals
            .iter()
            .map(|a| (a.sequence, a.created_at.0, a.received_at.0, a.own))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 100, 105, false),
                (2, 200, 200, true),
                (1, 250, 260, false)
            ]
        );
        assert!(!all.more);

        let later = arrivals.after(Timestamp(200), 100);
        assert_eq!(later.arrivals.len(), 1);
        assert_eq!(later.arrivals[0].received_at, Timestamp(260));

        let page = arrivals.after(Timestamp(0), 2);
        assert_eq!(page.arrivals.len(), 2);
        assert!(page.more);
    }

    #[test]
    fn the_ring_is_bounded_and_counts_what_fell_off() {
        let key = Keypair::from_seed(&[7; 32]);
        let mut arrivals = Arrivals::new(3);
        for sequence in 1..=5 {
            arrivals.record(
                &offer(&key, 0, sequence, sequence * 10),
                false,
                Timestamp(sequence * 10),
            );
        }
        let all = arrivals.after(Timestamp(0), 100);
        assert_eq!(
            all.arrivals.iter().map(|a| a.sequence).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(all.evicted, 2);
        // An evicted version seen again counts as new (it is no longer known).
        arrivals.record(&offer(&key, 0, 1, 10), false, Timestamp(60));
        assert_eq!(arrivals.after(Timestamp(50), 100).arrivals[0].sequence, 1);
    }
}
