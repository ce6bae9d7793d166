//! The unsigned messages of a run on the direct protocol: log updates,
//! output fetches and the result manifest. None creates an obligation; the
//! sender is authenticated by the connection and checked against the
//! lease. Every field a peer sends is bounded here, before anything acts
//! on it.

use agora_client::api::LogKind;
use agora_proto::v1 as pb;
use agora_protocol::manifest::lease_id;
pub use agora_protocol::manifest::{MAX_MANIFEST, Manifest, ManifestFile, plain_path};
use agora_protocol::{LeaseId, RunEvent, Timestamp};

/// Most entries in one update.
pub const MAX_UPDATE_ENTRIES: usize = 1024;
/// Most bytes of one entry's data.
pub const MAX_ENTRY_DATA: usize = 64 * 1024;
/// Most bytes of entries' data in one update.
pub const MAX_UPDATE_DATA: usize = 2 * 1024 * 1024;
/// Largest piece of an output file one fetch returns.
pub const MAX_FETCH_CHUNK: u32 = 1024 * 1024;

/// One entry of a run's log as the provider numbered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// From 1, gap-free.
    pub seq: u64,
    /// The provider's clock.
    pub at: Timestamp,
    /// Event or output.
    pub kind: LogKind,
    /// The typed lifecycle event (events only); its name is derived.
    pub event: Option<RunEvent>,
    /// Detail or output bytes.
    pub data: Vec<u8>,
}

/// A batch of a run's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobUpdate {
    /// The lease.
    pub lease_id: LeaseId,
    /// Consecutive entries.
    pub entries: Vec<LogEntry>,
    /// The encoded [`Manifest`], once the run ended.
    pub manifest: Option<Vec<u8>>,
}

/// A request for part of an output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// The lease.
    pub lease_id: LeaseId,
    /// The file, as the manifest names it.
    pub path: String,
    /// From.
    pub offset: u64,
    /// At most this many bytes (capped at [`MAX_FETCH_CHUNK`]).
    pub max_len: u32,
}

impl JobUpdate {
    pub(crate) fn from_proto(p: pb::JobUpdate) -> Result<Self, String> {
        if p.entries.len() > MAX_UPDATE_ENTRIES {
            return Err(format!(
                "update: {} entries, at most {MAX_UPDATE_ENTRIES}",
                p.entries.len()
            ));
        }
        if p.manifest.len() > MAX_MANIFEST {
            return Err(format!("update: manifest of {} bytes", p.manifest.len()));
        }
        let mut total = 0usize;
        let mut entries = Vec::with_capacity(p.entries.len());
        let mut expect: Option<u64> = None;
        for e in p.entries {
            if e.data.len() > MAX_ENTRY_DATA {
                return Err(format!(
                    "update: entry {} has {} bytes",
                    e.seq,
                    e.data.len()
                ));
            }
            total += e.data.len();
            if total > MAX_UPDATE_DATA {
                return Err("update: entries exceed 2 MiB".into());
            }
            if e.seq == 0 || expect.is_some_and(|x| x != e.seq) {
                return Err(format!("update: entry sequence {} out of order", e.seq));
            }
            expect = Some(
                e.seq
                    .checked_add(1)
                    .ok_or_else(|| format!("update: entry sequence {} is the last one", e.seq))?,
            );
            let kind = match pb::LogKind::try_from(e.kind) {
                Ok(pb::LogKind::Event) => LogKind::Event,
                Ok(pb::LogKind::Stdout) => LogKind::Stdout,
                Ok(pb::LogKind::Stderr) => LogKind::Stderr,
                _ => {
                    return Err(format!(
                        "update: entry {} has unknown kind {}",
                        e.seq, e.kind
                    ));
                }
            };
            let event = match (kind, e.run.as_ref()) {
                (LogKind::Event, Some(run)) => Some(
                    RunEvent::from_proto(run)
                        .map_err(|why| format!("update: entry {}: {why}", e.seq))?,
                ),
                (LogKind::Event, None) => {
                    return Err(format!(
                        "update: entry {} is an event without a kind",
                        e.seq
                    ));
                }
                (_, Some(_)) => {
                    return Err(format!("update: entry {} is output with an event", e.seq));
                }
                (_, None) => None,
            };
            entries.push(LogEntry {
                seq: e.seq,
                at: Timestamp(e.at_ms),
                kind,
                event,
                data: e.data,
            });
        }
        Ok(Self {
            lease_id: lease_id("update.lease_id", &p.lease_id)?,
            entries,
            manifest: (!p.manifest.is_empty()).then_some(p.manifest),
        })
    }

    pub(crate) fn to_proto(&self) -> pb::JobUpdate {
        pb::JobUpdate {
            lease_id: self.lease_id.0.to_vec(),
            entries: self
                .entries
                .iter()
                .map(|e| pb::LogEntry {
                    seq: e.seq,
                    at_ms: e.at.0,
                    kind: match e.kind {
                        LogKind::Event => pb::LogKind::Event,
                        LogKind::Stdout => pb::LogKind::Stdout,
                        LogKind::Stderr => pb::LogKind::Stderr,
                    } as i32,
                    event: e.event.map(|r| r.name().to_owned()).unwrap_or_default(),
                    data: e.data.clone(),
                    run: e.event.map(|r| r.to_proto()),
                })
                .collect(),
            manifest: self.manifest.clone().unwrap_or_default(),
        }
    }
}

impl Fetch {
    pub(crate) fn from_proto(p: pb::FetchOutput) -> Result<Self, String> {
        plain_path(&p.path).map_err(|e| format!("fetch: {e}"))?;
        Ok(Self {
            lease_id: lease_id("fetch.lease_id", &p.lease_id)?,
            path: p.path,
            offset: p.offset,
            max_len: p.max_len.min(MAX_FETCH_CHUNK),
        })
    }

    pub(crate) fn to_proto(&self) -> pb::FetchOutput {
        pb::FetchOutput {
            lease_id: self.lease_id.0.to_vec(),
            path: self.path.clone(),
            offset: self.offset,
            max_len: self.max_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_must_be_consecutive_and_bounded() {
        let entry = |seq: u64| pb::LogEntry {
            seq,
            at_ms: 1,
            kind: pb::LogKind::Stdout as i32,
            event: String::new(),
            data: b"x\n".to_vec(),
            run: None,
        };
        let update = |entries| pb::JobUpdate {
            lease_id: vec![7; 32],
            entries,
            manifest: vec![],
        };
        assert!(JobUpdate::from_proto(update(vec![entry(3), entry(4)])).is_ok());
        assert!(JobUpdate::from_proto(update(vec![entry(3), entry(5)])).is_err());
        assert!(JobUpdate::from_proto(update(vec![entry(0)])).is_err());
        let mut big = entry(1);
        big.data = vec![0; MAX_ENTRY_DATA + 1];
        assert!(JobUpdate::from_proto(update(vec![big])).is_err());
        let mut untyped = entry(1);
        untyped.kind = pb::LogKind::Event as i32;
        untyped.event = "exited".into();
        assert!(JobUpdate::from_proto(update(vec![untyped.clone()])).is_err());
        let mut typed = untyped.clone();
        typed.run = Some(RunEvent::Exited { code: 3 }.to_proto());
        let decoded = JobUpdate::from_proto(update(vec![typed])).unwrap();
        assert_eq!(decoded.entries[0].event, Some(RunEvent::Exited { code: 3 }));
        let mut output_with_event = entry(1);
        output_with_event.run = Some(RunEvent::Started.to_proto());
        assert!(JobUpdate::from_proto(update(vec![output_with_event])).is_err());
    }

    /// A sequence of `u64::MAX` overflowed computing the next one (a panic
    /// with overflow checks, a wrap to 0 without; fuzz corpus:
    /// `fuzz/corpus/direct_request/crash-seq-overflow`).
    #[test]
    fn the_last_sequence_number_is_refused_not_overflowed() {
        let entry = pb::LogEntry {
            seq: u64::MAX,
            at_ms: 1,
            kind: pb::LogKind::Stdout as i32,
            event: String::new(),
            data: vec![],
            run: None,
        };
        let err = JobUpdate::from_proto(pb::JobUpdate {
            lease_id: vec![7; 32],
            entries: vec![entry],
            manifest: vec![],
        })
        .unwrap_err();
        assert!(err.contains("last one"), "{err}");
    }
}
