//! The provider role: inventory and pricing (the bid engine, offers and
//! runtimes arrive with the market).

pub mod inventory;
pub mod pricing;
