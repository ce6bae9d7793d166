//! The cloneable front of the market actor.

use agora_client::api::{JobView, NodeInfo, OfferArrivals, OfferView, OffersPage, ProviderStatus};
use agora_protocol::Order;
use tokio::sync::{mpsc, oneshot};

use super::error::MarketError;

type Reply<T> = oneshot::Sender<Result<T, MarketError>>;

/// What the API asks of the market (public commands only: background
/// work reports to the router through its task pool, not through here).
// Moved once per message, never stored in bulk: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    Info(Reply<NodeInfo>),
    Search {
        query: String,
        sort: Option<String>,
        limit: usize,
        reply: Reply<OffersPage>,
    },
    Offer {
        id: String,
        reply: Reply<OfferView>,
    },
    Submit {
        order: Order,
        spec: Box<agora_client::api::JobSpec>,
        offer: Option<String>,
        reply: Reply<JobView>,
    },
    Jobs(Reply<Vec<JobView>>),
    Job {
        id: String,
        reply: Reply<JobView>,
    },
    Provider(Reply<ProviderStatus>),
    Arrivals {
        after: agora_protocol::Timestamp,
        limit: usize,
        reply: Reply<OfferArrivals>,
    },
    /// Cancel a job.
    Cancel {
        id: String,
        reply: Reply<JobView>,
    },
    /// The metrics' snapshot gauges, read from memory.
    Gauges(Reply<crate::metrics::snapshot::MarketGauges>),
}

/// Talks to the market actor. Cheap to clone.
#[derive(Clone)]
pub struct MarketHandle {
    pub(crate) commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for MarketHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MarketHandle")
    }
}

fn closed() -> MarketError {
    MarketError::internal("the node is shutting down")
}

impl MarketHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, MarketError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// The market has stopped (the node is shutting down).
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    /// Cancels a job: before its lease it just stops; after, the provider
    /// is told to stop it, and it is paid for the time used.
    pub async fn cancel(&self, id: String) -> Result<JobView, MarketError> {
        self.call(|reply| Command::Cancel { id, reply }).await
    }

    /// Node and network summary.
    pub async fn info(&self) -> Result<NodeInfo, MarketError> {
        self.call(Command::Info).await
    }

    /// Searches the book.
    pub async fn search(
        &self,
        query: String,
        sort: Option<String>,
        limit: usize,
    ) -> Result<OffersPage, MarketError> {
        self.call(|reply| Command::Search {
            query,
            sort,
            limit,
            reply,
        })
        .await
    }

    /// One offer.
    pub async fn offer(&self, id: String) -> Result<OfferView, MarketError> {
        self.call(|reply| Command::Offer { id, reply }).await
    }

    /// Submits an order made from `spec`; with `offer`, leases it directly.
    pub async fn submit(
        &self,
        order: Order,
        spec: agora_client::api::JobSpec,
        offer: Option<String>,
    ) -> Result<JobView, MarketError> {
        self.call(|reply| Command::Submit {
            order,
            spec: Box::new(spec),
            offer,
            reply,
        })
        .await
    }

    /// Every job.
    pub async fn jobs(&self) -> Result<Vec<JobView>, MarketError> {
        self.call(Command::Jobs).await
    }

    /// One job.
    pub async fn job(&self, id: String) -> Result<JobView, MarketError> {
        self.call(|reply| Command::Job { id, reply }).await
    }

    /// The provider's status.
    pub async fn provider(&self) -> Result<ProviderStatus, MarketError> {
        self.call(Command::Provider).await
    }

    /// What `/metrics` shows of the market now: book, leases, runs, jobs,
    /// earnings, tasks (answered from memory, awaiting nothing).
    pub async fn gauges(&self) -> Result<crate::metrics::snapshot::MarketGauges, MarketError> {
        self.call(Command::Gauges).await
    }

    /// Offer versions this node first saw after `after`, at most `limit`.
    pub async fn arrivals(
        &self,
        after: agora_protocol::Timestamp,
        limit: usize,
    ) -> Result<OfferArrivals, MarketError> {
        self.call(|reply| Command::Arrivals {
            after,
            limit,
            reply,
        })
        .await
    }
}
