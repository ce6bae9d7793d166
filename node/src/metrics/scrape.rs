//! One scrape: the snapshot's parts asked at once, each within
//! [`DEADLINE`], then everything encoded. A part that does not answer in
//! time is left out (and `agora_scrape_source_up{source}` is 0): a slow
//! router delays a scrape by at most the deadline and is never held by it
//! (the router answers from memory, without awaiting anything).

use std::future::Future;
use std::time::Duration;

use super::Metrics;
use super::snapshot::{NetworkGauges, Snapshot};
use crate::market::MarketHandle;
use crate::network::NetworkHandle;
use crate::provider::telemetry::Telemetry;

/// How long a scrape waits for each part.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// What a scrape reads from.
pub struct Sources<'a> {
    /// The router.
    pub market: &'a MarketHandle,
    /// The swarm.
    pub network: Option<&'a NetworkHandle>,
    /// The GPU sampler (a provider).
    pub telemetry: Option<&'a Telemetry>,
}

async fn within<T, E>(work: impl Future<Output = Result<T, E>>) -> Option<T> {
    tokio::time::timeout(DEADLINE, work).await.ok()?.ok()
}

/// Reads the snapshot and encodes every metric.
pub async fn scrape(metrics: &Metrics, sources: Sources<'_>) -> Result<String, std::fmt::Error> {
    let network = async {
        match sources.network {
            Some(n) => Some(within(n.info()).await),
            None => None,
        }
    };
    let telemetry = async {
        match sources.telemetry {
            Some(t) => Some(within(t.latest()).await),
            None => None,
        }
    };
    let (network, market, gpus) = tokio::join!(network, within(sources.market.gauges()), telemetry);
    let mut snapshot = Snapshot {
        market,
        ..Snapshot::default()
    };
    snapshot.sources.push(("market", snapshot.market.is_some()));
    if let Some(network) = network {
        snapshot.sources.push(("network", network.is_some()));
        snapshot.network = network.map(|n| NetworkGauges {
            peers: n.connected_peers as u64,
            mesh_peers: n.mesh_peers as u64,
        });
    }
    if let Some(gpus) = gpus {
        snapshot.sources.push(("telemetry", gpus.is_some()));
        snapshot.gpus = gpus;
    }
    metrics.encode(&snapshot)
}
