//! The direct protocol's messages, decoded and verified from one frame's
//! bytes and encoded into them; `codec.rs` reads and writes the frames.
//!
//! No I/O and no libp2p here: this file and `wire.rs` use only
//! `agora_proto`, `agora_protocol` and `agora_client`, so the fuzz crate
//! (`fuzz/src/lib.rs`) compiles them as they are, without the node's
//! dependencies.

use agora_proto::{Message, v1 as pb};
use agora_protocol::message::truncate_on_char;
use agora_protocol::{
    Bid, CoSigned, Decline, JobControl, JobPayload, LeaseClose, LeaseTerms, Signed, SignedEnvelope,
    UsageReceipt, WireMessage,
};

use super::wire::{Fetch, JobUpdate};

/// Longest refusal reason kept from a peer, bytes.
pub(crate) const MAX_REASON: usize = 1024;

/// A verified request.
#[derive(Debug, Clone)]
// Moved once per message, never stored in bulk: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// A provider bids.
    Bid(Signed<Bid>),
    /// A provider declines.
    Decline(Signed<Decline>),
    /// A requester proposes lease terms.
    LeaseProposal(Signed<LeaseTerms>),
    /// A requester sends the job of a locked lease.
    JobPayload(Signed<JobPayload>),
    /// A requester controls its job.
    JobControl(Signed<JobControl>),
    /// A provider asks for a receipt's countersignature.
    Receipt(Signed<UsageReceipt>),
    /// A provider asks for an early close's countersignature.
    Close(Signed<LeaseClose>),
    /// A provider forwards a run's log.
    Update(JobUpdate),
    /// A requester fetches part of an output file.
    Fetch(Fetch),
}

/// A response. A `Lease` is verified by the party that asked for it, which
/// knows whom to expect.
#[derive(Debug, Clone)]
pub enum Response {
    /// Received and valid.
    Ack,
    /// Countersigned lease terms.
    Lease(CoSigned),
    /// Not accepted, with the reason.
    Refused(String),
    /// Not accepted now; the same request may succeed later.
    Retry(String),
    /// A countersigned receipt.
    Receipt(CoSigned),
    /// A countersigned early close.
    Close(CoSigned),
    /// The next log sequence the requester expects.
    UpdateAck(u64),
    /// Part of an output file, and the file's size.
    Chunk {
        /// The bytes.
        data: Vec<u8>,
        /// The whole file's size.
        size: u64,
    },
}

impl Request {
    fn to_proto(&self) -> pb::DirectRequest {
        use pb::direct_request::Body;
        let body = match self {
            Request::Bid(bid) => Body::Bid(bid.envelope().to_proto()),
            Request::Decline(decline) => Body::Decline(decline.envelope().to_proto()),
            Request::LeaseProposal(terms) => Body::LeaseProposal(terms.envelope().to_proto()),
            Request::JobPayload(p) => Body::JobPayload(p.envelope().to_proto()),
            Request::JobControl(c) => Body::JobControl(c.envelope().to_proto()),
            Request::Receipt(r) => Body::Receipt(r.envelope().to_proto()),
            Request::Close(c) => Body::Close(c.envelope().to_proto()),
            Request::Update(u) => Body::Update(u.to_proto()),
            Request::Fetch(f) => Body::Fetch(f.to_proto()),
        };
        pb::DirectRequest { body: Some(body) }
    }

    /// Decodes a frame and verifies the envelope inside it.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        use pb::direct_request::Body;
        let raw = pb::DirectRequest::decode(bytes).map_err(|e| format!("request: {e}"))?;
        Ok(match raw.body {
            Some(Body::Bid(e)) => Request::Bid(signed(e)?),
            Some(Body::Decline(e)) => Request::Decline(signed(e)?),
            Some(Body::LeaseProposal(e)) => Request::LeaseProposal(signed(e)?),
            Some(Body::JobPayload(e)) => Request::JobPayload(signed(e)?),
            Some(Body::JobControl(e)) => Request::JobControl(signed(e)?),
            Some(Body::Receipt(e)) => Request::Receipt(signed(e)?),
            Some(Body::Close(e)) => Request::Close(signed(e)?),
            Some(Body::Update(u)) => Request::Update(JobUpdate::from_proto(u)?),
            Some(Body::Fetch(f)) => Request::Fetch(Fetch::from_proto(f)?),
            None => return Err("request: empty".into()),
        })
    }

    /// The frame.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }
}

impl Response {
    /// Decodes a frame. A countersigned lease is checked by the caller.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        use pb::direct_response::Body;
        let raw = pb::DirectResponse::decode(bytes).map_err(|e| format!("response: {e}"))?;
        Ok(match raw.body {
            Some(Body::Ack(_)) => Response::Ack,
            Some(Body::Lease(c)) => {
                Response::Lease(CoSigned::from_proto(c).map_err(|e| e.to_string())?)
            }
            Some(Body::Refused(r)) => {
                let mut reason = r.reason;
                truncate_on_char(&mut reason, MAX_REASON);
                if r.retry {
                    Response::Retry(reason)
                } else {
                    Response::Refused(reason)
                }
            }
            Some(Body::Receipt(c)) => {
                Response::Receipt(CoSigned::from_proto(c).map_err(|e| e.to_string())?)
            }
            Some(Body::Close(c)) => {
                Response::Close(CoSigned::from_proto(c).map_err(|e| e.to_string())?)
            }
            Some(Body::UpdateAck(a)) => Response::UpdateAck(a.next),
            Some(Body::Chunk(c)) => {
                if c.data.len() > super::wire::MAX_FETCH_CHUNK as usize {
                    return Err(format!("response: chunk of {} bytes", c.data.len()));
                }
                Response::Chunk {
                    data: c.data,
                    size: c.size,
                }
            }
            None => return Err("response: empty".into()),
        })
    }

    /// The frame.
    pub fn encode(&self) -> Vec<u8> {
        use pb::direct_response::Body;
        let body = match self {
            Response::Ack => Body::Ack(pb::Ack {}),
            Response::Lease(c) => Body::Lease(c.to_proto()),
            Response::Refused(reason) => Body::Refused(pb::Refusal {
                reason: reason.clone(),
                retry: false,
            }),
            Response::Retry(reason) => Body::Refused(pb::Refusal {
                reason: reason.clone(),
                retry: true,
            }),
            Response::Receipt(c) => Body::Receipt(c.to_proto()),
            Response::Close(c) => Body::Close(c.to_proto()),
            Response::UpdateAck(next) => Body::UpdateAck(pb::UpdateAck { next: *next }),
            Response::Chunk { data, size } => Body::Chunk(pb::OutputChunk {
                data: data.clone(),
                size: *size,
            }),
        };
        pb::DirectResponse { body: Some(body) }.encode_to_vec()
    }
}

/// Verifies an envelope and its message, naming the failure.
fn signed<T: WireMessage>(raw: pb::SignedEnvelope) -> Result<Signed<T>, String> {
    let envelope = SignedEnvelope::from_proto(raw).map_err(|e| e.to_string())?;
    Signed::from_envelope(envelope).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_empty_requests_are_errors() {
        assert!(Request::decode(&[0xff, 0x01, 0x02]).is_err());
        assert!(Request::decode(&[]).unwrap_err().contains("empty"));
        assert!(Response::decode(&[]).unwrap_err().contains("empty"));
    }

    /// A refusal's reason longer than the bound with a multi-byte
    /// character across it panicked in `String::truncate` (fuzz corpus:
    /// `fuzz/corpus/direct_response/crash-reason-split-char`).
    #[test]
    fn a_long_refusal_reason_is_cut_on_a_character_boundary() {
        let reason = format!("{}€ and more", "x".repeat(MAX_REASON - 2));
        let frame = Response::Refused(reason).encode();
        match Response::decode(&frame).unwrap() {
            Response::Refused(kept) => assert_eq!(kept, "x".repeat(MAX_REASON - 2)),
            other => panic!("{other:?}"),
        }
        let frame = Response::Retry("ü".repeat(600)).encode();
        match Response::decode(&frame).unwrap() {
            Response::Retry(kept) => assert_eq!(kept, "ü".repeat(512)),
            other => panic!("{other:?}"),
        }
    }
}
