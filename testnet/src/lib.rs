//! Launches a mock chain and real `agorad` processes on loopback.
//!
//! The launcher arrives with the market (issue #3); until then this crate
//! holds nothing but this note, and ships no binary that would pretend to work.
