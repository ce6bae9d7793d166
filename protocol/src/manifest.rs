//! The result manifest: what a run left, file by file, with each file's
//! blake3. Its exact encoding is hashed into the final usage receipt
//! (`result_hash`), so both sides agree on the outputs the money paid for.
//! Every field a peer sends is bounded here, before anything acts on it.

use agora_proto::Message;
use agora_proto::v1 as pb;

use crate::lease::LeaseId;
use crate::message::truncate_on_char;

/// Most files in a manifest.
pub const MAX_MANIFEST_FILES: usize = 10_000;
/// Largest encoded manifest.
pub const MAX_MANIFEST: usize = 2 * 1024 * 1024;
/// Longest note kept from a peer's manifest, bytes; a longer one is cut
/// on a character boundary.
pub const MAX_NOTE: usize = 4096;

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

/// A 32-byte lease id from a peer's bytes; `field` names it in the error.
pub fn lease_id(field: &str, bytes: &[u8]) -> Result<LeaseId, String> {
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
        truncate_on_char(&mut note, MAX_NOTE);
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

    /// A note longer than the bound with a multi-byte character across it
    /// panicked in `String::truncate` (its input is in the fuzz corpus,
    /// `fuzz/corpus/manifest/crash-note-split-char`).
    #[test]
    fn a_long_note_is_cut_on_a_character_boundary() {
        let m = Manifest {
            lease_id: LeaseId([1; 32]),
            files: vec![],
            note: format!("{}é and more", "x".repeat(MAX_NOTE - 1)),
        };
        let decoded = Manifest::decode(&m.encode()).unwrap();
        assert_eq!(decoded.note, "x".repeat(MAX_NOTE - 1));
        let short = Manifest {
            note: "é".repeat(10),
            ..m
        };
        assert_eq!(Manifest::decode(&short.encode()).unwrap().note, short.note);
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
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        assert_eq!(Manifest::hash(&bytes), *blake3::hash(&bytes).as_bytes());
        let mut evil = m.clone();
        evil.files[0].path = "../../root/.ssh/id".into();
        assert!(Manifest::decode(&evil.encode()).is_err());
        let mut short = m;
        short.lease_id = LeaseId([0; 32]);
        let mut p = pb::ResultManifest::decode(short.encode().as_slice()).unwrap();
        p.lease_id.truncate(5);
        assert!(Manifest::decode(&p.encode_to_vec()).is_err());
    }
}
