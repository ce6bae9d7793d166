//! The unsigned messages of a run on the direct protocol: log updates,
//! output fetches and the result manifest. None creates an obligation; the
//! sender is authenticated by the connection and checked against the
//! lease. Every field a peer sends is bounded here, before anything acts
//! on it.

use agora_client::api::LogKind;
use agora_proto::v1 as pb;
use agora_protocol::{LeaseId, Timestamp};
use prost::Message;

/// Most entries in one update.
pub const MAX_UPDATE_ENTRIES: usize = 1024;
/// Most bytes of one entry's data.
pub const MAX_ENTRY_DATA: usize = 64 * 1024;
/// Most bytes of entries' data in one update.
pub const MAX_UPDATE_DATA: usize = 2 * 1024 * 1024;
/// Most files in a manifest.
pub const MAX_MANIFEST_FILES: usize = 10_000;
/// Largest encoded manifest.
pub const MAX_MANIFEST: usize = 2 * 1024 * 1024;
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
    /// The event's name (events only).
    pub event: String,
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

/// One output file in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// Plain relative path.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// blake3.
    pub blake3: [u8; 32],
}

/// What a run left; its blake3 is the final receipt's result hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The lease.
    pub lease_id: LeaseId,
    /// Files, sorted by path.
    pub files: Vec<ManifestFile>,
    /// Why outputs were left out, if any were.
    pub note: String,
}

fn lease_id(field: &str, bytes: &[u8]) -> Result<LeaseId, String> {
    <[u8; 32]>::try_from(bytes)
        .map(LeaseId)
        .map_err(|_| format!("{field}: {} bytes, expected 32", bytes.len()))
}

/// A plain relative `/`-separated path: no `..`, `.`, empty parts,
/// backslashes or NULs, at most 512 bytes.
pub fn plain_path(path: &str) -> Result<(), String> {
    let bad = path.is_empty()
        || path.len() > 512
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains('\0')
        || path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        Err(format!("{path:?} is not a plain relative path"))
    } else {
        Ok(())
    }
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
            expect = Some(e.seq + 1);
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
            if e.event.len() > 64 || (kind == LogKind::Event) == e.event.is_empty() {
                return Err(format!("update: entry {} has a bad event name", e.seq));
            }
            entries.push(LogEntry {
                seq: e.seq,
                at: Timestamp(e.at_ms),
                kind,
                event: e.event,
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
                    event: e.event.clone(),
                    data: e.data.clone(),
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

impl Manifest {
    /// The exact bytes whose blake3 the final receipt carries.
    pub fn encode(&self) -> Vec<u8> {
        pb::ResultManifest {
            lease_id: self.lease_id.0.to_vec(),
            files: self
                .files
                .iter()
                .map(|f| pb::OutputFile {
                    path: f.path.clone(),
                    size: f.size,
                    blake3: f.blake3.to_vec(),
                })
                .collect(),
            note: self.note.clone(),
        }
        .encode_to_vec()
    }

    /// Decodes and bounds a manifest a peer sent.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_MANIFEST {
            return Err(format!("manifest of {} bytes", bytes.len()));
        }
        let p = pb::ResultManifest::decode(bytes).map_err(|e| format!("manifest: {e}"))?;
        if p.files.len() > MAX_MANIFEST_FILES {
            return Err(format!("manifest: {} files", p.files.len()));
        }
        let mut files = Vec::with_capacity(p.files.len());
        for f in p.files {
            plain_path(&f.path).map_err(|e| format!("manifest: {e}"))?;
            let blake3 = <[u8; 32]>::try_from(f.blake3.as_slice())
                .map_err(|_| format!("manifest: {}: hash is not 32 bytes", f.path))?;
            files.push(ManifestFile {
                path: f.path,
                size: f.size,
                blake3,
            });
        }
        let mut note = p.note;
        note.truncate(4096);
        Ok(Self {
            lease_id: lease_id("manifest.lease_id", &p.lease_id)?,
            files,
            note,
        })
    }

    /// blake3 of [`Self::encode`].
    pub fn hash(bytes: &[u8]) -> [u8; 32] {
        *blake3::hash(bytes).as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_escape_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a\\b",
            "a/",
        ] {
            assert!(plain_path(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "out/model.bin", "a.b/c-d_e"] {
            assert!(plain_path(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn updates_must_be_consecutive_and_bounded() {
        let entry = |seq: u64| pb::LogEntry {
            seq,
            at_ms: 1,
            kind: pb::LogKind::Stdout as i32,
            event: String::new(),
            data: b"x\n".to_vec(),
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
        let mut unnamed = entry(1);
        unnamed.kind = pb::LogKind::Event as i32;
        assert!(JobUpdate::from_proto(update(vec![unnamed])).is_err());
    }

    #[test]
    fn manifests_round_trip_and_refuse_escaping_paths() {
        let m = Manifest {
            lease_id: LeaseId([1; 32]),
            files: vec![ManifestFile {
                path: "out.txt".into(),
                size: 3,
                blake3: *blake3::hash(b"abc").as_bytes(),
            }],
            note: String::new(),
        };
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        let mut evil = m.clone();
        evil.files[0].path = "../../root/.ssh/id".into();
        assert!(Manifest::decode(&evil.encode()).is_err());
    }
}
