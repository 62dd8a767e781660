//! Frames: `u32 length` + header + payload + CRC-32 (IEEE) over everything after the
//! length (spec §1.1–1.3).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::wire::wire_struct;
use super::FrameError;

/// The largest frame, length prefix included, that a broker accepts or sends (10 MiB).
pub const MAX_FRAME: usize = 10 * 1024 * 1024;
/// Fixed bytes of a request frame: length, id, type, version, flags and CRC.
pub const REQUEST_OVERHEAD: usize = 20;
/// Fixed bytes of a response frame: length, id, status, error code and CRC.
pub const RESPONSE_OVERHEAD: usize = 19;
/// The protocol version this client writes. Brokers ignore it.
pub const PROTOCOL_VERSION: u8 = 1;

/// Request flags. Brokers read none of them; they are written for fidelity with the
/// SDK, which sets `REQUIRE_ACK` on produce.
pub mod flags {
    /// The producer wants an acknowledgement (every request gets a response anyway).
    pub const REQUIRE_ACK: u16 = 1;
    /// Compressed payload (never used: no broker decompresses).
    pub const COMPRESSED: u16 = 1 << 1;
    /// A batch of records.
    pub const BATCH: u16 = 1 << 2;
    /// Fire and forget (ignored: every request is answered).
    pub const ASYNC: u16 = 1 << 3;
    /// Idempotent producer (ignored: there are no sequence numbers on the wire).
    pub const IDEMPOTENT: u16 = 1 << 4;
}

wire_struct! {
    in Legacy;
    /// The header of a request frame.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct RequestHeader {
        /// Echoed in the response.
        pub id: u64,
        /// The request type code (see [`RequestType`](super::RequestType)).
        pub code: u8,
        /// The protocol version; brokers ignore it.
        pub version: u8,
        /// Flag bits (see [`flags`]); brokers ignore them.
        pub flags: u16,
    }
}

wire_struct! {
    in Legacy;
    /// The header of a response frame.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ResponseHeader {
        /// The id of the request answered.
        pub id: u64,
        /// The status code (see [`Status`](super::Status)).
        pub status: u8,
        /// The error code, 0 when the status is OK.
        pub error_code: u16,
    }
}

/// Appends a whole frame to `buf`: the length prefix (filled in last), the header
/// `header` writes (a [`RequestHeader`] or a [`ResponseHeader`]), the payload `payload`
/// writes, then the CRC. A frame over [`MAX_FRAME`] is refused and nothing is left in
/// `buf`.
pub fn encode(
    buf: &mut BytesMut,
    header: impl FnOnce(&mut BytesMut),
    payload: impl FnOnce(&mut BytesMut),
) -> Result<(), FrameError> {
    let start = buf.len();
    buf.put_u32(0);
    header(buf);
    payload(buf);
    let crc = crc32fast::hash(&buf[start + 4..]);
    buf.put_u32(crc);
    let total = buf.len() - start;
    if total > MAX_FRAME {
        buf.truncate(start);
        return Err(FrameError::TooLarge { len: total });
    }
    buf[start..start + 4].copy_from_slice(&((total - 4) as u32).to_be_bytes());
    Ok(())
}

/// The body length announced by a length prefix, checked against the frame limit and
/// the smallest body of the frame kind (`overhead` is [`REQUEST_OVERHEAD`] or
/// [`RESPONSE_OVERHEAD`]).
pub fn body_len(prefix: [u8; 4], overhead: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME - 4 {
        return Err(FrameError::TooLarge { len: len + 4 });
    }
    if len < overhead - 4 {
        return Err(FrameError::TooShort { len });
    }
    Ok(len)
}

fn check_crc(body: &mut Bytes, overhead: usize) -> Result<(), FrameError> {
    if body.len() < overhead - 4 {
        return Err(FrameError::TooShort { len: body.len() });
    }
    let split = body.len() - 4;
    let expected = u32::from_be_bytes(body[split..].try_into().expect("4 bytes"));
    let actual = crc32fast::hash(&body[..split]);
    if expected != actual {
        return Err(FrameError::Checksum { expected, actual });
    }
    body.truncate(split);
    Ok(())
}

/// Checks the CRC of a request body (the frame without its length prefix) and splits
/// it into header and payload.
pub fn decode_request(mut body: Bytes) -> Result<(RequestHeader, Bytes), FrameError> {
    check_crc(&mut body, REQUEST_OVERHEAD)?;
    let id = body.get_u64();
    let code = body.get_u8();
    let version = body.get_u8();
    let flags = body.get_u16();
    Ok((RequestHeader { id, code, version, flags }, body))
}

/// Checks the CRC of a response body and splits it into header and payload.
pub fn decode_response(mut body: Bytes) -> Result<(ResponseHeader, Bytes), FrameError> {
    check_crc(&mut body, RESPONSE_OVERHEAD)?;
    let id = body.get_u64();
    let status = body.get_u8();
    let error_code = body.get_u16();
    Ok((ResponseHeader { id, status, error_code }, body))
}
