//! The StreamBus binary protocol: frames, payloads of both protocol generations and
//! error codes, written from `shared/streambus-protocol.md`.
//!
//! Decoding is bounds-checked throughout: any input gives a value or a
//! [`DecodeError`]/[`FrameError`], never a panic (`tests/protocol_fuzz.rs` throws
//! random and mutated frames at every decoder). The broker double uses the same
//! module; the spec's test vectors (`tests/protocol_vectors.rs`) pin both directions
//! to bytes written by an independent encoder.

mod codes;
pub mod coordination;
pub mod data;
pub mod frame;
pub mod primitives;
mod wire;

use bytes::{Bytes, BytesMut};

pub use codes::{ErrorCode, RequestType, Status};
pub use coordination::*;
pub use data::*;
pub use frame::{RequestHeader, ResponseHeader, MAX_FRAME, PROTOCOL_VERSION};

/// A payload could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes were left than a field needs.
    #[error("{what}: needs {needed} bytes, {left} left")]
    Truncated {
        /// The field.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left.
        left: usize,
    },
    /// A field holds a value the protocol does not allow.
    #[error("{what}: {why}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Bytes were left after a payload that has no optional fields.
    #[error("{what}: {left} bytes left over")]
    Trailing {
        /// The payload.
        what: &'static str,
        /// Bytes left over.
        left: usize,
    },
    /// The request type is not one this protocol defines.
    #[error("unknown request type 0x{0:02x}")]
    UnknownType(u8),
}

/// A frame is not valid: what makes a broker close the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Over the 10 MiB frame limit.
    #[error("frame of {len} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge {
        /// The frame's size, length prefix included.
        len: usize,
    },
    /// Shorter than the fixed header.
    #[error("frame body of {len} bytes is shorter than its header")]
    TooShort {
        /// The body's size.
        len: usize,
    },
    /// The CRC does not match the body.
    #[error("frame checksum 0x{expected:08x} does not match the body's 0x{actual:08x}")]
    Checksum {
        /// The CRC the frame carries.
        expected: u32,
        /// The CRC of the body.
        actual: u32,
    },
}

/// A request payload of any type.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Request {
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    GetOffset(GetOffsetRequest),
    CreateTopic(CreateTopicRequest),
    DeleteTopic(DeleteTopicRequest),
    ListTopics,
    HealthCheck,
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    InitProducerId(InitProducerIdRequest),
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    EndTxn(EndTxnRequest),
    TxnOffsetCommit(TxnOffsetCommitRequest),
    FindCoordinator(FindCoordinatorRequest),
}

impl Request {
    /// The request's type.
    pub fn kind(&self) -> RequestType {
        use Request::*;
        match self {
            Produce(_) => RequestType::Produce,
            Fetch(_) => RequestType::Fetch,
            GetOffset(_) => RequestType::GetOffset,
            CreateTopic(_) => RequestType::CreateTopic,
            DeleteTopic(_) => RequestType::DeleteTopic,
            ListTopics => RequestType::ListTopics,
            HealthCheck => RequestType::HealthCheck,
            JoinGroup(_) => RequestType::JoinGroup,
            SyncGroup(_) => RequestType::SyncGroup,
            Heartbeat(_) => RequestType::Heartbeat,
            LeaveGroup(_) => RequestType::LeaveGroup,
            OffsetCommit(_) => RequestType::OffsetCommit,
            OffsetFetch(_) => RequestType::OffsetFetch,
            InitProducerId(_) => RequestType::InitProducerId,
            AddPartitionsToTxn(_) => RequestType::AddPartitionsToTxn,
            AddOffsetsToTxn(_) => RequestType::AddOffsetsToTxn,
            EndTxn(_) => RequestType::EndTxn,
            TxnOffsetCommit(_) => RequestType::TxnOffsetCommit,
            FindCoordinator(_) => RequestType::FindCoordinator,
        }
    }

    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        use Request::*;
        match self {
            Produce(r) => r.encode(buf),
            Fetch(r) => r.encode(buf),
            GetOffset(r) => r.encode(buf),
            CreateTopic(r) => r.encode(buf),
            DeleteTopic(r) => r.encode(buf),
            ListTopics | HealthCheck => {}
            JoinGroup(r) => r.encode(buf),
            SyncGroup(r) => r.encode(buf),
            Heartbeat(r) => r.encode(buf),
            LeaveGroup(r) => r.encode(buf),
            OffsetCommit(r) => r.encode(buf),
            OffsetFetch(r) => r.encode(buf),
            InitProducerId(r) => r.encode(buf),
            AddPartitionsToTxn(r) => r.encode(buf),
            AddOffsetsToTxn(r) => r.encode(buf),
            EndTxn(r) => r.encode(buf),
            TxnOffsetCommit(r) => r.encode(buf),
            FindCoordinator(r) => r.encode(buf),
        }
    }

    /// Reads the payload of a request of type `code`.
    pub fn decode(code: u8, payload: Bytes) -> Result<Self, DecodeError> {
        let kind = RequestType::from_code(code).ok_or(DecodeError::UnknownType(code))?;
        Ok(match kind {
            RequestType::Produce => Request::Produce(ProduceRequest::decode(payload)?),
            RequestType::Fetch => Request::Fetch(FetchRequest::decode(payload)?),
            RequestType::GetOffset => Request::GetOffset(GetOffsetRequest::decode(payload)?),
            RequestType::CreateTopic => Request::CreateTopic(CreateTopicRequest::decode(payload)?),
            RequestType::DeleteTopic => Request::DeleteTopic(DeleteTopicRequest::decode(payload)?),
            RequestType::ListTopics => Request::ListTopics,
            RequestType::HealthCheck => Request::HealthCheck,
            RequestType::JoinGroup => Request::JoinGroup(JoinGroupRequest::decode(payload)?),
            RequestType::SyncGroup => Request::SyncGroup(SyncGroupRequest::decode(payload)?),
            RequestType::Heartbeat => Request::Heartbeat(HeartbeatRequest::decode(payload)?),
            RequestType::LeaveGroup => Request::LeaveGroup(LeaveGroupRequest::decode(payload)?),
            RequestType::OffsetCommit => Request::OffsetCommit(OffsetCommitRequest::decode(payload)?),
            RequestType::OffsetFetch => Request::OffsetFetch(OffsetFetchRequest::decode(payload)?),
            RequestType::InitProducerId => Request::InitProducerId(InitProducerIdRequest::decode(payload)?),
            RequestType::AddPartitionsToTxn => Request::AddPartitionsToTxn(AddPartitionsToTxnRequest::decode(payload)?),
            RequestType::AddOffsetsToTxn => Request::AddOffsetsToTxn(AddOffsetsToTxnRequest::decode(payload)?),
            RequestType::EndTxn => Request::EndTxn(EndTxnRequest::decode(payload)?),
            RequestType::TxnOffsetCommit => Request::TxnOffsetCommit(TxnOffsetCommitRequest::decode(payload)?),
            RequestType::FindCoordinator => Request::FindCoordinator(FindCoordinatorRequest::decode(payload)?),
        })
    }

    /// Encodes the whole frame with request id `id` and flags `flags` into `buf`.
    pub fn encode_frame(&self, buf: &mut BytesMut, id: u64, flags: u16) -> Result<(), FrameError> {
        let header = RequestHeader { id, code: self.kind().code(), version: PROTOCOL_VERSION, flags };
        frame::encode(buf, |b| header.encode(b), |b| self.encode(b))
    }
}

/// A successful response payload of any type.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Response {
    Produce(ProduceResponse),
    Fetch(FetchResponse),
    GetOffset(GetOffsetResponse),
    CreateTopic(TopicResult),
    DeleteTopic(TopicResult),
    ListTopics(ListTopicsResponse),
    HealthCheck(HealthResponse),
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    Heartbeat(ErrorResponse),
    LeaveGroup(ErrorResponse),
    OffsetCommit(OffsetCommitResponse),
    OffsetFetch(OffsetFetchResponse),
    InitProducerId(InitProducerIdResponse),
    AddPartitionsToTxn(AddPartitionsToTxnResponse),
    AddOffsetsToTxn(ErrorResponse),
    EndTxn(ErrorResponse),
    TxnOffsetCommit(OffsetCommitResponse),
    FindCoordinator(FindCoordinatorResponse),
}

impl Response {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        use Response::*;
        match self {
            Produce(r) => r.encode(buf),
            Fetch(r) => r.encode(buf),
            GetOffset(r) => r.encode(buf),
            CreateTopic(r) | DeleteTopic(r) => r.encode(buf),
            ListTopics(r) => r.encode(buf),
            HealthCheck(r) => r.encode(buf),
            JoinGroup(r) => r.encode(buf),
            SyncGroup(r) => r.encode(buf),
            Heartbeat(r) | LeaveGroup(r) | AddOffsetsToTxn(r) | EndTxn(r) => r.encode(buf),
            OffsetCommit(r) | TxnOffsetCommit(r) => r.encode(buf),
            OffsetFetch(r) => r.encode(buf),
            InitProducerId(r) => r.encode(buf),
            AddPartitionsToTxn(r) => r.encode(buf),
            FindCoordinator(r) => r.encode(buf),
        }
    }

    /// Reads the OK payload of a response to a request of type `kind`. The response
    /// does not carry its type: the caller remembers what it asked.
    pub fn decode(kind: RequestType, payload: Bytes) -> Result<Self, DecodeError> {
        Ok(match kind {
            RequestType::Produce => Response::Produce(ProduceResponse::decode(payload)?),
            RequestType::Fetch => Response::Fetch(FetchResponse::decode(payload)?),
            RequestType::GetOffset => Response::GetOffset(GetOffsetResponse::decode(payload)?),
            RequestType::CreateTopic => Response::CreateTopic(TopicResult::decode(payload)?),
            RequestType::DeleteTopic => Response::DeleteTopic(TopicResult::decode(payload)?),
            RequestType::ListTopics => Response::ListTopics(ListTopicsResponse::decode(payload)?),
            RequestType::HealthCheck => Response::HealthCheck(HealthResponse::decode(payload)?),
            RequestType::JoinGroup => Response::JoinGroup(JoinGroupResponse::decode(payload)?),
            RequestType::SyncGroup => Response::SyncGroup(SyncGroupResponse::decode(payload)?),
            RequestType::Heartbeat => Response::Heartbeat(ErrorResponse::decode(payload)?),
            RequestType::LeaveGroup => Response::LeaveGroup(ErrorResponse::decode(payload)?),
            RequestType::OffsetCommit => Response::OffsetCommit(OffsetCommitResponse::decode(payload)?),
            RequestType::OffsetFetch => Response::OffsetFetch(OffsetFetchResponse::decode(payload)?),
            RequestType::InitProducerId => Response::InitProducerId(InitProducerIdResponse::decode(payload)?),
            RequestType::AddPartitionsToTxn => {
                Response::AddPartitionsToTxn(AddPartitionsToTxnResponse::decode(payload)?)
            }
            RequestType::AddOffsetsToTxn => Response::AddOffsetsToTxn(ErrorResponse::decode(payload)?),
            RequestType::EndTxn => Response::EndTxn(ErrorResponse::decode(payload)?),
            RequestType::TxnOffsetCommit => Response::TxnOffsetCommit(OffsetCommitResponse::decode(payload)?),
            RequestType::FindCoordinator => Response::FindCoordinator(FindCoordinatorResponse::decode(payload)?),
        })
    }
}

/// Reads an error response's payload: `u32` length + UTF-8 message. Bytes that are not
/// UTF-8 are replaced rather than refused: the code in the header is what counts.
pub fn decode_error_message(payload: Bytes) -> Result<String, DecodeError> {
    let mut c = primitives::Cursor::new(payload);
    let text = c.bytes("error message")?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// Encodes an error response frame.
pub fn encode_error_frame(buf: &mut BytesMut, id: u64, code: ErrorCode, message: &str) -> Result<(), FrameError> {
    let header = ResponseHeader { id, status: Status::Error.code(), error_code: code.0 };
    frame::encode(buf, |b| header.encode(b), |b| primitives::put_bytes(b, message.as_bytes()))
}

/// Encodes an OK response frame.
pub fn encode_ok_frame(buf: &mut BytesMut, id: u64, response: &Response) -> Result<(), FrameError> {
    let header = ResponseHeader { id, status: Status::Ok.code(), error_code: 0 };
    frame::encode(buf, |b| header.encode(b), |b| response.encode(b))
}
