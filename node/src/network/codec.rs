//! The direct protocol `/agora/direct/1`: one length-prefixed prost frame
//! per request and per response, each bounded before it is read, each
//! decoded and verified (in `direct.rs`) before anything acts on it.

use std::io;

use agora_protocol::envelope::MAX_JOB_PAYLOAD_BODY;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

pub use super::direct::{Request, Response};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/direct/1");

/// Largest frame accepted: room for a job payload and its envelope.
pub const MAX_FRAME: usize = MAX_JOB_PAYLOAD_BODY + 64 * 1024;

/// The request-response codec.
#[derive(Debug, Clone, Default)]
pub struct DirectCodec;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Reads one unsigned-varint length prefix and then that many bytes,
/// refusing lengths above `MAX_FRAME` before allocating.
pub(crate) async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len: u64 = 0;
    for shift in (0..64).step_by(7).take(10) {
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await?;
        len |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > MAX_FRAME {
                return Err(invalid(format!(
                    "frame of {len} bytes exceeds the limit of {MAX_FRAME}"
                )));
            }
            let mut frame = vec![0u8; len];
            io.read_exact(&mut frame).await?;
            return Ok(frame);
        }
    }
    Err(invalid("frame length prefix longer than 10 bytes".into()))
}

/// Writes one length-prefixed frame.
pub(crate) async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    frame: &[u8],
) -> io::Result<()> {
    if frame.len() > MAX_FRAME {
        return Err(invalid(format!(
            "frame of {} bytes exceeds the limit of {MAX_FRAME}",
            frame.len()
        )));
    }
    let mut prefix = Vec::with_capacity(10);
    let mut len = frame.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            prefix.push(byte);
            break;
        }
        prefix.push(byte | 0x80);
    }
    io.write_all(&prefix).await?;
    io.write_all(frame).await?;
    io.close().await
}

impl libp2p::request_response::Codec for DirectCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io).await?;
        Request::decode(&frame).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io).await?;
        Response::decode(&frame).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request.encode()).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[test]
    fn frames_round_trip_and_oversized_lengths_are_refused_before_reading() {
        futures::executor::block_on(async {
            let mut buf = Cursor::new(Vec::new());
            write_frame(&mut buf, b"hello").await.unwrap();
            let mut read = Cursor::new(buf.into_inner());
            assert_eq!(read_frame(&mut read).await.unwrap(), b"hello");

            // A prefix announcing 1 GiB with no body: refused by length, not
            // by running out of bytes.
            let mut huge = Cursor::new(vec![0x80, 0x80, 0x80, 0x80, 0x04]);
            let err = read_frame(&mut huge).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains("exceeds"), "{err}");

            let mut endless = Cursor::new(vec![0xff; 16]);
            assert!(read_frame(&mut endless).await.is_err());
        });
    }
}
