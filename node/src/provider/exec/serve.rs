//! The output file server: the lease's requester fetches the files its
//! run's manifest lists, piece by piece.

use std::path::Path;

use libp2p::PeerId;

use super::Executor;
use super::actor::{Command, Source};
use crate::network::Response;
use crate::network::wire::Fetch;

impl Executor {
    /// Serves a piece of an output file to the lease's requester.
    pub async fn on_fetch(&self, peer: PeerId, fetch: Fetch) -> Response {
        let lookup = self
            .try_ask(|reply| Command::Fetch {
                peer,
                fetch: fetch.clone(),
                reply,
            })
            .await;
        let (dir, file) = match lookup {
            Ok(Source::File { dir, file }) => (dir, file),
            Ok(Source::NotEnded) => return Response::Retry("the job has not ended yet".into()),
            Ok(Source::Refused(reason)) => return Response::Refused(reason),
            Err(busy) => return busy,
        };
        match read_piece(&dir.join(&file.path), fetch.offset, fetch.max_len).await {
            Ok(data) => Response::Chunk {
                data,
                size: file.size,
            },
            Err(e) => Response::Refused(format!("cannot read {:?}: {e}", file.path)),
        }
    }
}

/// Up to `max_len` bytes of `path` from `offset`.
async fn read_piece(path: &Path, offset: u64, max_len: u32) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut buf = Vec::with_capacity(max_len as usize);
    file.take(u64::from(max_len)).read_to_end(&mut buf).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_piece_is_at_most_max_len_from_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_piece(&path, 2, 3).await.unwrap(), b"234");
        assert_eq!(read_piece(&path, 8, 100).await.unwrap(), b"89");
        assert!(read_piece(&path, 20, 4).await.unwrap().is_empty());
        assert!(read_piece(&dir.path().join("missing"), 0, 4).await.is_err());
    }
}
