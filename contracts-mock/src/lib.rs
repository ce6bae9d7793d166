//! A durable [`agora_protocol::Ledger`] for testnets, served over HTTP.
//!
//! - [`SledLedger`]: the ledger on sled, one writer thread with group
//!   commit (an operation is acknowledged only once it is fsynced);
//! - [`server`]: the HTTP "mock chain" serving any `Ledger`;
//! - [`HttpLedger`]: a client implementing `Ledger` over that API, so many
//!   nodes share one chain;
//! - [`clock`]: chain time, real or manual.

pub mod client;
pub mod clock;
pub mod server;
pub mod sled_ledger;

pub use client::HttpLedger;
pub use clock::{Clock, ManualClock, SystemClock};
pub use sled_ledger::{OpenError, SledConfig, SledLedger};
