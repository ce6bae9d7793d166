//! Every step a requester records on a job. Their names are what the API
//! shows in `JobView.events` and in the job's log; the list below is the
//! whole of them (`client::api::JobEvent` documents it). The provider's own
//! run events (`agora_protocol::RunEvent`) reach the job's log as they came.

use serde::{Deserialize, Serialize};

/// A step of a job on the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEventKind {
    /// Accepted from the user.
    Submitted,
    /// The order went out on gossip.
    OrderPublished,
    /// A bid arrived.
    Bid,
    /// A provider declined.
    Decline,
    /// The bid window closed.
    AuctionClosed,
    /// Nobody bid (the detail says who declined and why).
    NoBids,
    /// A lease was proposed to a provider.
    LeaseProposed,
    /// The provider refused or could not be reached; the next bid is tried.
    LeaseRefused,
    /// Both signed the lease.
    LeaseSigned,
    /// Escrow is locked on the ledger.
    EscrowLocked,
    /// The provider has the payload.
    PayloadDelivered,
    /// The job started (its `started` run event, or its first receipt).
    Running,
    /// A receipt was countersigned (log only).
    Receipt,
    /// The user asked to cancel.
    CancelRequested,
    /// The provider has the cancel.
    CancelDelivered,
    /// Cancelled before a lease: nothing was paid.
    Cancelled,
    /// The provider was silent for two receipt intervals plus grace.
    ProviderUnresponsive,
    /// A settlement was seen on the ledger.
    Settled,
    /// The provider's early close was countersigned (the run is over).
    CloseCountersigned,
    /// The lease was closed and the rest refunded.
    Closed,
    /// Every output was fetched and checked.
    ResultsFetched,
    /// Outputs could not be fetched (the detail says why).
    ResultsFailed,
    /// The job reached its terminal state (the detail names it).
    Finished,
    /// The job failed (the detail says why).
    Failed,
    /// A step the stored record named that this node no longer records.
    Other,
}

impl JobEventKind {
    /// Every kind.
    pub const ALL: [JobEventKind; 25] = [
        Self::Submitted,
        Self::OrderPublished,
        Self::Bid,
        Self::Decline,
        Self::AuctionClosed,
        Self::NoBids,
        Self::LeaseProposed,
        Self::LeaseRefused,
        Self::LeaseSigned,
        Self::EscrowLocked,
        Self::PayloadDelivered,
        Self::Running,
        Self::Receipt,
        Self::CancelRequested,
        Self::CancelDelivered,
        Self::Cancelled,
        Self::ProviderUnresponsive,
        Self::Settled,
        Self::CloseCountersigned,
        Self::Closed,
        Self::ResultsFetched,
        Self::ResultsFailed,
        Self::Finished,
        Self::Failed,
        Self::Other,
    ];

    /// Its name, as the API shows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::OrderPublished => "order_published",
            Self::Bid => "bid",
            Self::Decline => "decline",
            Self::AuctionClosed => "auction_closed",
            Self::NoBids => "no_bids",
            Self::LeaseProposed => "lease_proposed",
            Self::LeaseRefused => "lease_refused",
            Self::LeaseSigned => "lease_signed",
            Self::EscrowLocked => "escrow_locked",
            Self::PayloadDelivered => "payload_delivered",
            Self::Running => "running",
            Self::Receipt => "receipt",
            Self::CancelRequested => "cancel_requested",
            Self::CancelDelivered => "cancel_delivered",
            Self::Cancelled => "cancelled",
            Self::ProviderUnresponsive => "provider_unresponsive",
            Self::Settled => "settled",
            Self::CloseCountersigned => "close_countersigned",
            Self::Closed => "closed",
            Self::ResultsFetched => "results_fetched",
            Self::ResultsFailed => "results_failed",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Other => "other",
        }
    }

    /// The kind named `name` (`Other` for a name no longer recorded).
    pub fn from_name(name: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .unwrap_or(Self::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for kind in JobEventKind::ALL {
            assert_eq!(JobEventKind::from_name(kind.name()), kind);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
        }
        assert_eq!(JobEventKind::from_name("nonsense"), JobEventKind::Other);
    }

    #[test]
    fn the_api_documents_every_event_a_node_can_emit() {
        let job: Vec<&str> = JobEventKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(job, agora_client::api::JOB_EVENTS);
        assert_eq!(
            agora_protocol::RunEvent::NAMES,
            agora_client::api::RUN_EVENTS
        );
    }
}
