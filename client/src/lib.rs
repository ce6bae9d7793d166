//! Typed client of the Agora node API and the `agora` CLI.
//!
//! [`api`] holds the JSON types of the node API (the node serves them, this
//! crate reads them); [`http`] calls them; [`spec`] reads job spec files; [`sse`] parses the job log stream.

pub mod api;
pub mod http;
pub mod spec;
pub mod sse;
