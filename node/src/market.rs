//! The market: the node's router. One actor owns the offer book and hands
//! every event — gossip, direct requests, API commands, background work's
//! answers, ticks — to the provider core (`provider::core`) and the
//! requester core (`requester::core`), then carries out what they decide.
//! The API and internal tasks talk to it through a cloneable
//! [`MarketHandle`] over a bounded channel.

mod actor;
mod arrivals;
mod error;
pub(crate) mod handle;
mod loop_stats;
pub mod tasks;

pub use actor::{MAX_QUEUED_TASKS, MAX_TASKS, MarketOptions, spawn};
pub use error::MarketError;
pub use handle::MarketHandle;

/// Capacity of the market's command channel.
pub const COMMAND_CAPACITY: usize = 256;
