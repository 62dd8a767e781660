//! One connection: a request written in one piece, its response read back, in order.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::protocol::frame::{self, RESPONSE_OVERHEAD};
use crate::protocol::{FrameError, Request, ResponseHeader};

/// Why a call on a connection failed. Every one of them leaves the connection unusable.
///
/// The text of an I/O or frame error quotes it, and it is not also the source: a
/// reporter that prints each source would say it twice.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    #[error("the broker closed the connection")]
    Closed,
    #[error("invalid frame: {0}")]
    Frame(FrameError),
    #[error("response id {got} does not match request id {sent}")]
    IdMismatch { sent: u64, got: u64 },
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

impl From<std::io::Error> for CallError {
    fn from(err: std::io::Error) -> Self {
        CallError::Io(err)
    }
}

impl From<FrameError> for CallError {
    fn from(err: FrameError) -> Self {
        CallError::Frame(err)
    }
}

impl CallError {
    /// Whether the request may not have reached the broker's log (the broker may or
    /// may not have acted on it).
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, CallError::Timeout(_))
    }
}

pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// A connection with its own buffers, reused from request to request.
pub(crate) struct Connection {
    stream: Box<dyn Stream>,
    next_id: u64,
    write: BytesMut,
    read: BytesMut,
    pub(crate) last_used: Instant,
}

impl Connection {
    pub(crate) fn new(stream: Box<dyn Stream>) -> Self {
        Self {
            stream,
            next_id: 1,
            write: BytesMut::with_capacity(64 * 1024),
            read: BytesMut::with_capacity(64 * 1024),
            last_used: Instant::now(),
        }
    }

    pub(crate) async fn dial_tcp(addr: &str) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Sends `request` and reads its response: header and payload.
    pub(crate) async fn call(
        &mut self,
        request: &Request,
        flags: u16,
        timeout: Duration,
    ) -> Result<(ResponseHeader, Bytes), CallError> {
        let id = self.next_id;
        self.next_id += 1;
        self.write.clear();
        request.encode_frame(&mut self.write, id, flags)?;
        let exchange = async {
            self.stream.write_all(&self.write).await?;
            let mut prefix = [0u8; 4];
            match self.stream.read_exact(&mut prefix).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(CallError::Closed),
                Err(e) => return Err(e.into()),
            }
            let len = frame::body_len(prefix, RESPONSE_OVERHEAD)?;
            self.read.clear();
            self.read.resize(len, 0);
            match self.stream.read_exact(&mut self.read[..]).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(CallError::Closed),
                Err(e) => return Err(e.into()),
            }
            Ok(())
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| CallError::Timeout(timeout))??;
        let (header, payload) = frame::decode_response(self.read.split().freeze())?;
        if header.id != id {
            return Err(CallError::IdMismatch { sent: id, got: header.id });
        }
        self.last_used = Instant::now();
        Ok((header, payload))
    }
}
