//! Collecting a finished job's outputs: the regular files under its
//! output dir, hashed, within the provider's limits.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::runtime::OutputFile;

/// Names listed per kind of left-out entry in the note; the rest are
/// counted.
const NOTE_NAMES: usize = 10;

/// Directory entries looked at, at most, whatever the limits: a job that
/// leaves a million empty directories does not keep the node walking.
const MAX_ENTRIES: usize = 100_000;

/// What was left out, by reason.
#[derive(Debug, Default)]
struct LeftOut {
    too_many: Vec<String>,
    too_large: Vec<String>,
    not_regular: Vec<String>,
    bad_name: Vec<String>,
    walk_stopped: bool,
}

impl LeftOut {
    fn note(&self, max_files: u32, max_bytes: u64) -> Option<String> {
        let list = |names: &[String]| {
            let mut s = names
                .iter()
                .take(NOTE_NAMES)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if names.len() > NOTE_NAMES {
                s.push_str(&format!(" and {} more", names.len() - NOTE_NAMES));
            }
            s
        };
        let mut parts = Vec::new();
        if !self.too_many.is_empty() {
            parts.push(format!(
                "{} file(s) past max_output_files ({max_files}): {}",
                self.too_many.len(),
                list(&self.too_many)
            ));
        }
        if !self.too_large.is_empty() {
            parts.push(format!(
                "{} file(s) past max_output_bytes ({max_bytes}): {}",
                self.too_large.len(),
                list(&self.too_large)
            ));
        }
        if !self.not_regular.is_empty() {
            parts.push(format!(
                "{} entr(y/ies) not regular files (symlinks, devices, sockets, fifos): {}",
                self.not_regular.len(),
                list(&self.not_regular)
            ));
        }
        if !self.bad_name.is_empty() {
            parts.push(format!(
                "{} entr(y/ies) whose names are not UTF-8: {}",
                self.bad_name.len(),
                list(&self.bad_name)
            ));
        }
        if self.walk_stopped {
            parts.push(format!(
                "the output dir holds more than {MAX_ENTRIES} entries; the rest was not looked at"
            ));
        }
        (!parts.is_empty()).then(|| format!("outputs left out: {}", parts.join("; ")))
    }
}

/// Walks `out_dir` (never following symlinks) and hashes its regular
/// files in path order until `max_files` or `max_bytes` is reached.
/// Returns the files kept and a note on what was left out.
pub(crate) fn collect(
    out_dir: &Path,
    max_files: u32,
    max_bytes: u64,
) -> io::Result<(Vec<OutputFile>, Option<String>)> {
    match fs::symlink_metadata(out_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Ok((
                Vec::new(),
                Some("outputs left out: the job replaced its output dir with something that is not a directory".to_owned()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok((
                Vec::new(),
                Some("outputs left out: the job removed its output dir".to_owned()),
            ));
        }
        Err(e) => return Err(e),
    }

    let mut left = LeftOut::default();
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut dirs: Vec<(PathBuf, String)> = vec![(out_dir.to_path_buf(), String::new())];
    let mut seen = 0usize;
    'walk: while let Some((dir, prefix)) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            seen += 1;
            if seen > MAX_ENTRIES {
                left.walk_stopped = true;
                break 'walk;
            }
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                left.bad_name
                    .push(format!("{prefix}{}", name.to_string_lossy()));
                continue;
            };
            let rel = format!("{prefix}{name}");
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push((entry.path(), format!("{rel}/")));
            } else if kind.is_file() {
                files.push((rel, entry.path()));
            } else {
                left.not_regular.push(rel);
            }
        }
    }
    files.sort();
    left.not_regular.sort();
    left.bad_name.sort();

    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut full = false;
    for (rel, path) in files {
        if kept.len() >= max_files as usize {
            left.too_many.push(rel);
            continue;
        }
        let size = fs::symlink_metadata(&path)?.len();
        if full || total.saturating_add(size) > max_bytes {
            // Path order until a limit: once one file does not fit, the
            // rest is left out too.
            full = true;
            left.too_large.push(rel);
            continue;
        }
        let (size, blake3) = hash_file(&path)?;
        total = total.saturating_add(size);
        kept.push(OutputFile {
            path: rel,
            size,
            blake3,
        });
    }
    Ok((kept, left.note(max_files, max_bytes)))
}

/// Size and blake3 of a file's contents.
pub(super) fn hash_file(path: &Path) -> io::Result<(u64, [u8; 32])> {
    let mut file = fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let size = io::copy(&mut file, &mut hasher)?;
    Ok((size, *hasher.finalize().as_bytes()))
}
