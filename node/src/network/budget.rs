//! How many orders each peer may pass on: token buckets per peer that
//! delivered them (the gossip's propagation source, not the order's
//! signer: keys are free, connections are not). A peer has one bucket for
//! the orders it signed itself and one [`RELAY_FACTOR`] times larger for
//! those it relays from others, so an honest relay's traffic does not eat
//! into its own orders' budget and a burst of others' orders passed on is
//! not a flood. An order past the budget is ignored — neither delivered to
//! the node nor forwarded — and counts against the peer: its gossipsub
//! application score is minus its excess, which decays by a tenth a
//! second. A peer that keeps flooding falls past the graylist threshold and
//! gossipsub drops everything it sends until it stops for long enough.
//!
//! Pure: time comes in as milliseconds.

use std::collections::HashMap;

use libp2p::PeerId;

/// Buckets tracked at most; past that the longest-idle one is forgotten.
pub const MAX_TRACKED_PEERS: usize = 4096;

/// What share of its excess a peer keeps after each second.
const EXCESS_KEPT_PER_SEC: f64 = 0.9;

/// Excess below this is forgiven outright.
const FORGIVEN: f64 = 0.5;

/// How much larger the budget for relayed orders is than for a peer's own.
pub const RELAY_FACTOR: u32 = 10;

/// The order budget of every peer.
#[derive(Debug, Clone)]
pub struct OrderBudget {
    per_sec: f64,
    burst: f64,
    /// By peer, and whether the orders are relayed.
    peers: HashMap<(PeerId, bool), Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// When the tokens were last topped up.
    at_ms: u64,
    /// Orders past the budget, decayed.
    excess: f64,
}

impl OrderBudget {
    /// `per_sec` orders a second per peer, in bursts of up to `burst`.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        Self {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst.max(1)),
            peers: HashMap::new(),
        }
    }

    /// Whether one more order delivered by `peer` at `now_ms` is within
    /// its budget (`relayed`: signed by someone else); if not, it counts as
    /// excess.
    pub fn take(&mut self, peer: PeerId, relayed: bool, now_ms: u64) -> bool {
        let key = (peer, relayed);
        if !self.peers.contains_key(&key) && self.peers.len() >= MAX_TRACKED_PEERS {
            self.forget_idlest();
        }
        let (per_sec, burst) = self.limits(relayed);
        let bucket = self.peers.entry(key).or_insert(Bucket {
            tokens: burst,
            at_ms: now_ms,
            excess: 0.0,
        });
        let elapsed = now_ms.saturating_sub(bucket.at_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(burst);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            bucket.excess += 1.0;
            false
        }
    }

    fn limits(&self, relayed: bool) -> (f64, f64) {
        let factor = if relayed {
            f64::from(RELAY_FACTOR)
        } else {
            1.0
        };
        (self.per_sec * factor, self.burst * factor)
    }

    /// `peer`'s application score now: minus its excess.
    pub fn score(&self, peer: &PeerId) -> f64 {
        [false, true]
            .iter()
            .filter_map(|relayed| self.peers.get(&(*peer, *relayed)))
            .map(|b| -b.excess)
            .sum()
    }

    /// One second passed: every excess decays. Returns the peers whose
    /// score changed, with the new score (set them in gossipsub); buckets
    /// that are full again and whose excess is forgiven are forgotten.
    pub fn decay(&mut self, now_ms: u64) -> Vec<(PeerId, f64)> {
        let mut changed = Vec::new();
        let limits = [self.limits(false), self.limits(true)];
        self.peers.retain(|(peer, relayed), bucket| {
            if bucket.excess > 0.0 {
                bucket.excess *= EXCESS_KEPT_PER_SEC;
                if bucket.excess < FORGIVEN {
                    bucket.excess = 0.0;
                }
                changed.push(*peer);
            }
            let (per_sec, burst) = limits[usize::from(*relayed)];
            let elapsed = now_ms.saturating_sub(bucket.at_ms) as f64 / 1000.0;
            let full = bucket.tokens + elapsed * per_sec >= burst;
            !(full && bucket.excess == 0.0)
        });
        changed.sort();
        changed.dedup();
        changed
            .into_iter()
            .map(|peer| (peer, self.score(&peer)))
            .collect()
    }

    /// Buckets tracked now.
    pub fn tracked(&self) -> usize {
        self.peers.len()
    }

    fn forget_idlest(&mut self) {
        if let Some(idlest) = self
            .peers
            .iter()
            .min_by_key(|(_, b)| b.at_ms)
            .map(|(key, _)| *key)
        {
            self.peers.remove(&idlest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_and_the_excess_is_counted() {
        let mut budget = OrderBudget::new(2, 5);
        let peer = PeerId::random();
        let passed = (0..8).filter(|_| budget.take(peer, false, 1_000)).count();
        assert_eq!(passed, 5, "the burst");
        assert_eq!(budget.score(&peer), -3.0);
        // Half a second later one more token has come.
        assert!(budget.take(peer, false, 1_500));
        assert!(!budget.take(peer, false, 1_500));
        // Another peer has its own budget.
        let other = PeerId::random();
        assert!(budget.take(other, false, 1_500));
        assert_eq!(budget.score(&other), 0.0);
        // What a peer relays has a budget of its own, ten times larger.
        let relayed = (0..60).filter(|_| budget.take(peer, true, 1_500)).count();
        assert_eq!(relayed, 50);
        assert_eq!(budget.score(&peer), -(4.0 + 10.0));
    }

    #[test]
    fn excess_decays_to_nothing_and_quiet_peers_are_forgotten() {
        let mut budget = OrderBudget::new(1, 1);
        let flooder = PeerId::random();
        for _ in 0..101 {
            budget.take(flooder, false, 0);
        }
        assert_eq!(budget.score(&flooder), -100.0);
        let changed = budget.decay(1_000);
        assert_eq!(changed, vec![(flooder, -90.0)]);
        let mut now = 1_000;
        while budget.score(&flooder) < 0.0 {
            now += 1_000;
            budget.decay(now);
            assert!(now < 60_000, "the excess never decayed");
        }
        // Quiet, full and forgiven: forgotten.
        budget.decay(now + 1_000);
        assert_eq!(budget.tracked(), 0);
    }

    #[test]
    fn the_peers_tracked_are_bounded() {
        let mut budget = OrderBudget::new(1, 1);
        for i in 0..(MAX_TRACKED_PEERS as u64 + 10) {
            budget.take(PeerId::random(), i % 2 == 0, i);
        }
        assert_eq!(budget.tracked(), MAX_TRACKED_PEERS);
    }
}
