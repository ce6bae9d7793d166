//! Typed client of the Agora node API and the `agora` CLI.
//!
//! The node API arrives with the market (issue #3); until then this crate
//! holds nothing but this note, and ships no binary that would pretend to work.
