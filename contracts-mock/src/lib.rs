//! A sled-backed [`agora_protocol::Ledger`], an HTTP mock chain serving it,
//! and a client implementing the same trait over HTTP.
