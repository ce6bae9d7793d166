//! The requester role: job specs become orders (the auction, leases and
//! escrow arrive with the market).

pub mod order;
