//! Following a Ray job's log: Ray returns the whole log on every read;
//! the follower keeps what it has forwarded and cuts the new suffix into
//! chunks of whole lines.

use crate::runtime::process::output::take_chunk;

/// What of a job's log has been forwarded.
#[derive(Debug, Default)]
pub(crate) struct LogFollower {
    /// Bytes of the log already cut into chunks.
    seen: usize,
    /// A partial last line held back until its end (or the job's).
    pending: Vec<u8>,
}

impl LogFollower {
    /// The chunks `log` (the whole log so far) adds; a partial last line
    /// waits for the next read unless `last`. A log shorter than what was
    /// seen (Ray lost or rotated it) adds nothing.
    pub(crate) fn advance(&mut self, log: &[u8], last: bool) -> Vec<Vec<u8>> {
        if log.len() > self.seen {
            self.pending.extend_from_slice(&log[self.seen..]);
            self.seen = log.len();
        }
        let mut chunks = Vec::new();
        while let Some(chunk) = take_chunk(&mut self.pending, last) {
            chunks.push(chunk);
        }
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::MAX_CHUNK;

    #[test]
    fn only_the_new_whole_lines_are_forwarded() {
        let mut f = LogFollower::default();
        assert_eq!(f.advance(b"", false), Vec::<Vec<u8>>::new());
        assert_eq!(f.advance(b"one\ntw", false), vec![b"one\n".to_vec()]);
        // The same log again adds nothing; the partial line waits.
        assert!(f.advance(b"one\ntw", false).is_empty());
        assert_eq!(
            f.advance(b"one\ntwo\nthree\nfo", false),
            vec![b"two\nthree\n".to_vec()]
        );
        // At the end the partial line goes as it is.
        assert_eq!(
            f.advance(b"one\ntwo\nthree\nfour", true),
            vec![b"four".to_vec()]
        );
        assert_eq!(f.seen, 18);
        // A shorter log (rotated) does not resend anything.
        assert!(f.advance(b"one\n", true).is_empty());
    }

    #[test]
    fn long_suffixes_become_line_aligned_chunks_within_the_limit() {
        let line = vec![b'x'; 1000];
        let mut log = Vec::new();
        for _ in 0..20 {
            log.extend_from_slice(&line);
            log.push(b'\n');
        }
        let mut f = LogFollower::default();
        let chunks = f.advance(&log, false);
        assert!(chunks.len() > 1);
        assert!(
            chunks
                .iter()
                .all(|c| c.len() <= MAX_CHUNK && c.ends_with(b"\n"))
        );
        assert_eq!(chunks.concat(), log);
        // A single line longer than a chunk is split.
        let mut f = LogFollower::default();
        let long = vec![b'y'; MAX_CHUNK + 10];
        let chunks = f.advance(&long, true);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![MAX_CHUNK, 10]
        );
    }
}
