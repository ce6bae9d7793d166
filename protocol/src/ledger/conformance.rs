//! The ledger conformance suite: property tests any [`super::Ledger`] backend runs.
