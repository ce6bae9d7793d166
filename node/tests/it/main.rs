//! Integration tests of the node library: real nodes in one process, on
//! loopback, with an in-process mock chain.

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod bad_bodies;
mod doctor;
mod full_disk;
mod hostile_api;
mod hostile_gossip;
mod lookup;
mod metrics;
mod order_floods;
mod overload;
mod support;
mod telemetry;
mod unfunded;
