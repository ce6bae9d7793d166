//! The provider role: inventory, pricing, offers, the bid engine, and the
//! role as the market actor runs it, the executor that runs leased jobs, and
//! the GPU telemetry sampler.

pub mod bidder;
pub mod core;
pub mod dry_run;
pub mod exec;
pub mod inventory;
pub mod offers;
pub mod pricing;
pub mod role;
pub mod telemetry;

pub use self::core::Provider;
pub use bidder::Decision;
pub use role::ProviderRole;
