//! `[node]`: market timing, retention, the disk floor, and what the
//! network may cost (connections, the order budget).

use serde::Deserialize;

use super::ConfigError;

/// `[node]`: market timing. Every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Offers expire this long after they are signed.
    pub offer_ttl_secs: u64,
    /// Offers are republished this often (and on every change).
    pub offer_refresh_secs: u64,
    /// A bid holds its GPUs for the order's bid window plus this.
    pub bid_hold_grace_ms: u64,
    /// The receipt interval a requester puts in lease terms; a provider
    /// refuses leases with a longer one (its unpaid risk is one interval).
    pub receipt_interval_secs: u32,
    /// The store's page cache (sled), MiB: what the node keeps of its
    /// state in memory; the rest is read from disk when needed.
    pub store_cache_mb: u64,
    /// Below this much free space on the data disk, MiB, the node takes no
    /// new work (a requester refuses submissions, a provider stops offering
    /// and bidding) and keeps running the work it has.
    pub min_free_disk_mib: u64,
    /// A requester keeps a finished job (and its log) this long, days.
    pub job_retention_days: u64,
    /// …and at most this many finished jobs: the oldest go first.
    pub max_finished_jobs: usize,
    /// Orders each peer may deliver over gossip a second, sustained…
    pub orders_per_peer_per_sec: u32,
    /// …and in a burst. Past the budget an order is ignored and the peer
    /// that delivered it scored down, until gossipsub ignores it.
    pub order_burst_per_peer: u32,
    /// Established connections at most; incoming ones past it are refused.
    pub max_connections: u32,
    /// Peers the node connects to on its own as it learns of them; past
    /// that it connects only to peers it talks to.
    pub target_peers: u32,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            offer_ttl_secs: 60,
            offer_refresh_secs: 20,
            bid_hold_grace_ms: 5_000,
            receipt_interval_secs: 60,
            store_cache_mb: crate::store::DEFAULT_CACHE_BYTES / (1024 * 1024),
            min_free_disk_mib: 512,
            job_retention_days: 30,
            max_finished_jobs: 10_000,
            orders_per_peer_per_sec: crate::network::NetworkConfig::ORDERS_PER_PEER_PER_SEC,
            order_burst_per_peer: crate::network::NetworkConfig::ORDER_BURST_PER_PEER,
            max_connections: crate::network::NetworkConfig::MAX_CONNECTIONS,
            target_peers: crate::network::NetworkConfig::TARGET_PEERS,
        }
    }
}

impl NodeSection {
    /// Checks the ranges: offers must live 1 s..=24 h and be refreshed
    /// before they expire; the hold grace is at most 10 minutes; receipts
    /// come every 1..=3600 s.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            field: format!("node.{field}"),
            reason,
        };
        if !(1..=24 * 3600).contains(&self.offer_ttl_secs) {
            return Err(invalid(
                "offer_ttl_secs",
                format!("{} is outside 1..=86400 seconds", self.offer_ttl_secs),
            ));
        }
        if self.offer_refresh_secs == 0 || self.offer_refresh_secs >= self.offer_ttl_secs {
            return Err(invalid(
                "offer_refresh_secs",
                format!(
                    "{} must be at least 1 and below offer_ttl_secs ({}), or offers lapse \
                     between refreshes",
                    self.offer_refresh_secs, self.offer_ttl_secs
                ),
            ));
        }
        if self.bid_hold_grace_ms > 600_000 {
            return Err(invalid(
                "bid_hold_grace_ms",
                format!(
                    "{} ms would hold GPUs for over 10 minutes after each bid window",
                    self.bid_hold_grace_ms
                ),
            ));
        }
        if !(1..=36_500).contains(&self.job_retention_days) {
            return Err(invalid(
                "job_retention_days",
                format!("{} is outside 1..=36500 days", self.job_retention_days),
            ));
        }
        if !(1..=10_000_000).contains(&self.max_finished_jobs) {
            return Err(invalid(
                "max_finished_jobs",
                format!("{} is outside 1..=10000000", self.max_finished_jobs),
            ));
        }
        if self.min_free_disk_mib > 1 << 30 {
            return Err(invalid(
                "min_free_disk_mib",
                format!("{} MiB is more than any disk", self.min_free_disk_mib),
            ));
        }
        if !(8..=65_536).contains(&self.store_cache_mb) {
            return Err(invalid(
                "store_cache_mb",
                format!("{} is outside 8..=65536 MiB", self.store_cache_mb),
            ));
        }
        if !(1..=100_000).contains(&self.orders_per_peer_per_sec) {
            return Err(invalid(
                "orders_per_peer_per_sec",
                format!("{} is outside 1..=100000", self.orders_per_peer_per_sec),
            ));
        }
        if !(1..=1_000_000).contains(&self.order_burst_per_peer) {
            return Err(invalid(
                "order_burst_per_peer",
                format!("{} is outside 1..=1000000", self.order_burst_per_peer),
            ));
        }
        if !(8..=100_000).contains(&self.max_connections) {
            return Err(invalid(
                "max_connections",
                format!(
                    "{} is outside 8..=100000 (the gossip mesh alone needs up to 12)",
                    self.max_connections
                ),
            ));
        }
        if self.target_peers == 0 || self.target_peers > self.max_connections {
            return Err(invalid(
                "target_peers",
                format!(
                    "{} must be at least 1 and at most max_connections ({})",
                    self.target_peers, self.max_connections
                ),
            ));
        }
        let max = agora_protocol::lease::MAX_RECEIPT_INTERVAL_SECS;
        if !(1..=max).contains(&self.receipt_interval_secs) {
            return Err(invalid(
                "receipt_interval_secs",
                format!(
                    "{} is outside 1..={max} seconds",
                    self.receipt_interval_secs
                ),
            ));
        }
        Ok(())
    }
}
