//! The requester role. `order.rs` turns a job spec into an order; the
//! core (`core.rs` with `auction.rs`, `run.rs`, `settle.rs`) decides every
//! step of a job as pure logic over events and `now`, returning effects;
//! `job.rs` is the stored record; `lease.rs` and `tasks.rs` are the
//! background work the market's router runs for it.

mod auction;
pub mod core;
pub mod events;
pub mod job;
pub mod lease;
pub mod order;
mod run;
mod settle;
pub mod tasks;
#[cfg(test)]
mod tests;

pub use self::core::{Answer, Effect, Requester, RequesterError, Task, TaskKind, TaskResult};
pub use job::JobRecord;
