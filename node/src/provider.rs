//! The provider role: inventory, pricing, offers and the bid engine (the
//! runtimes arrive later).

pub mod bidder;
pub mod dry_run;
pub mod inventory;
pub mod offers;
pub mod pricing;
