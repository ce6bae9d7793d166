//! The market actor: the node's offer book, its provider role (offers, bids,
//! countersigned leases) and its requester role (orders, auctions, leases,
//! escrow). It owns that state alone; the API and internal tasks talk to it
//! through a cloneable [`MarketHandle`] over a bounded channel.

mod actor;
mod arrivals;
mod handle;
mod jobs;

pub use actor::{MarketOptions, spawn};
pub use handle::{MarketError, MarketHandle};
pub use jobs::JobRecord;

/// Capacity of the market's command channel.
pub const COMMAND_CAPACITY: usize = 256;
