//! Agora's market rules as pure logic.
//!
//! Identities and signed envelopes, the validated wire messages (offers,
//! orders, bids, leases, receipts, jobs), the offer book and its query
//! language, matching and scoring, receipt rules, the GPU challenge's rules
//! and its CPU prover ([`challenge`]), and the [`ledger::Ledger`] trait with
//! the invariants every backend must keep.
//!
//! Nothing here touches the network or reads a clock: time is an argument,
//! so every rule is unit- and property-testable. The one exception is the
//! key file, which [`identity::Keypair`] reads and writes.

pub mod amount;
pub mod book;
pub mod challenge;
pub mod close;
pub mod envelope;
pub mod identity;
pub mod job;
pub mod lease;
pub mod ledger;
pub mod limits;
pub mod manifest;
pub mod matching;
pub mod message;
pub mod offer;
pub mod order;
pub mod query;
pub mod receipt;
pub mod run;
pub mod time;

pub use amount::{Amount, cost};
pub use book::{InsertOutcome, OfferBook};
pub use challenge::{ChallengeError, ChallengeParams, CpuProver};
pub use close::{CloseClaim, CloseReason, LeaseClose};
pub use envelope::{CoSigned, EnvelopeError, Kind, SignedEnvelope};
pub use identity::{AccountId, IdentityError, Keypair, PublicKey, Signature};
pub use job::{InputFile, JobAction, JobControl, JobPayload};
pub use lease::{Lease, LeaseId, LeaseTerms};
pub use ledger::{Ledger, LedgerError};
pub use limits::SandboxLimits;
pub use manifest::{Manifest, ManifestFile};
pub use message::{MessageError, Signed, ValidationError, WireMessage};
pub use offer::{Benchmark, BenchmarkMethod, Energy, Offer, OfferId};
pub use order::{Bid, Decline, DeclineReason, Order, OrderId};
pub use query::{Query, QueryError, SortKey};
pub use receipt::{ReceiptClaim, ReceiptError, UsageReceipt};
pub use run::{RunEvent, RunFailure};
pub use time::Timestamp;
