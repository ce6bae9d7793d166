//! End-to-end tests: real `agorad` processes and a mock chain on loopback,
//! driven through their HTTP API. Each test has its own directory and
//! ports; polls have deadlines and print the job and the logs on failure.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod auth;
mod chaos;
mod cli;
mod crash_loop;
mod dashboard;
mod faults;
mod instant;
mod launcher;
mod market;
mod ray;
mod restart;
mod support;
