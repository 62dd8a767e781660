//! Request types, response status and the broker's error codes (spec §1.5, §1.8).

use std::fmt;

/// The request types of the protocol. 0x01–0x07 are served by every broker; 0x08–0x13
/// only by later brokers (a v1.0.x broker closes the connection on them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RequestType {
    /// Append records to a partition.
    Produce = 0x01,
    /// Read records of a partition from an offset.
    Fetch = 0x02,
    /// A partition's start and end offsets.
    GetOffset = 0x03,
    /// Create a topic (idempotent when the partition count matches).
    CreateTopic = 0x04,
    /// Delete a topic.
    DeleteTopic = 0x05,
    /// Every topic with its partition count.
    ListTopics = 0x06,
    /// Liveness and uptime.
    HealthCheck = 0x07,
    /// Join a consumer group (later brokers).
    JoinGroup = 0x08,
    /// Hand out or receive a group's assignment (later brokers).
    SyncGroup = 0x09,
    /// Keep a group membership alive (later brokers).
    Heartbeat = 0x0A,
    /// Leave a consumer group (later brokers).
    LeaveGroup = 0x0B,
    /// Commit a group's offsets (later brokers).
    OffsetCommit = 0x0C,
    /// Read a group's committed offsets (later brokers).
    OffsetFetch = 0x0D,
    /// Get a producer id and epoch for a transactional id (later brokers).
    InitProducerId = 0x0E,
    /// Add partitions to an open transaction (later brokers).
    AddPartitionsToTxn = 0x0F,
    /// Add a group's offsets to an open transaction (later brokers).
    AddOffsetsToTxn = 0x10,
    /// Commit or abort a transaction (later brokers).
    EndTxn = 0x11,
    /// Commit a group's offsets inside a transaction (later brokers).
    TxnOffsetCommit = 0x12,
    /// Find the coordinator of a group or transaction (later brokers).
    FindCoordinator = 0x13,
}

impl RequestType {
    /// The type with wire code `code`, if there is one.
    pub fn from_code(code: u8) -> Option<Self> {
        use RequestType::*;
        Some(match code {
            0x01 => Produce,
            0x02 => Fetch,
            0x03 => GetOffset,
            0x04 => CreateTopic,
            0x05 => DeleteTopic,
            0x06 => ListTopics,
            0x07 => HealthCheck,
            0x08 => JoinGroup,
            0x09 => SyncGroup,
            0x0A => Heartbeat,
            0x0B => LeaveGroup,
            0x0C => OffsetCommit,
            0x0D => OffsetFetch,
            0x0E => InitProducerId,
            0x0F => AddPartitionsToTxn,
            0x10 => AddOffsetsToTxn,
            0x11 => EndTxn,
            0x12 => TxnOffsetCommit,
            0x13 => FindCoordinator,
            _ => return None,
        })
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Whether a v1.0.x broker serves this type.
    pub fn is_legacy(self) -> bool {
        self.code() <= 0x07
    }
}

/// The status byte of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The payload is the type's response.
    Ok,
    /// The payload is an error message; the header carries the code.
    Error,
    /// Defined by the protocol, never sent by a broker.
    PartialSuccess,
}

impl Status {
    /// The status with wire code `code`.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Status::Ok),
            1 => Some(Status::Error),
            2 => Some(Status::PartialSuccess),
            _ => None,
        }
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Error => 1,
            Status::PartialSuccess => 2,
        }
    }
}

/// An error code from the broker, in a response header or inside a coordination payload.
///
/// Kept as the number the broker sent, so a code this client does not know is still
/// reported exactly; [`ErrorCode::name`] gives the protocol's name for known codes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

macro_rules! codes {
    ($($name:ident = $code:expr),* $(,)?) => {
        impl ErrorCode {
            $(
                #[allow(missing_docs)]
                pub const $name: ErrorCode = ErrorCode($code);
            )*

            /// The protocol's name of the code, or `None` for a code it does not define.
            pub fn name(self) -> Option<&'static str> {
                #[allow(non_upper_case_globals)]
                match self {
                    $(ErrorCode::$name => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    NONE = 0,
    UNKNOWN_REQUEST = 1,
    INVALID_REQUEST = 2,
    OFFSET_OUT_OF_RANGE = 3,
    CORRUPT_MESSAGE = 4,
    PARTITION_NOT_FOUND = 5,
    REQUEST_TIMEOUT = 6,
    STORAGE_ERROR = 7,
    TOPIC_NOT_FOUND = 8,
    TOPIC_EXISTS = 9,
    CHECKSUM_MISMATCH = 10,
    INVALID_PROTOCOL = 11,
    MESSAGE_TOO_LARGE = 12,
    UNKNOWN_MEMBER_ID = 20,
    INVALID_SESSION_TIMEOUT = 21,
    REBALANCE_IN_PROGRESS = 22,
    INVALID_GENERATION_ID = 23,
    UNKNOWN_CONSUMER_GROUP_ID = 24,
    NOT_COORDINATOR = 25,
    INVALID_COMMIT_OFFSET_SIZE = 26,
    GROUP_AUTHORIZATION_FAILED = 27,
    ILLEGAL_GENERATION = 28,
    INCONSISTENT_GROUP_PROTOCOL = 29,
    INVALID_PRODUCER_EPOCH = 30,
    INVALID_TRANSACTION_STATE = 31,
    INVALID_PRODUCER_ID_MAPPING = 32,
    TRANSACTION_COORDINATOR_NOT_AVAILABLE = 33,
    TRANSACTION_COORDINATOR_FENCED = 34,
    PRODUCER_FENCED = 35,
    INVALID_TRANSACTION_TIMEOUT = 36,
    CONCURRENT_TRANSACTIONS = 37,
    TRANSACTION_ABORTED = 38,
    INVALID_PARTITION_LIST = 39,
    AUTHENTICATION_FAILED = 40,
    AUTHORIZATION_FAILED = 41,
    INVALID_CREDENTIALS = 42,
    ACCOUNT_DISABLED = 43,
    FENCED_LEADER_EPOCH = 50,
    UNKNOWN_LEADER_EPOCH = 51,
    SCHEMA_VALIDATION_FAILED = 60,
}

impl ErrorCode {
    /// Whether the code means success.
    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    /// Whether the same request can succeed when tried again (after a rejoin, a
    /// coordinator lookup or a pause); false for errors in the request itself.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::REQUEST_TIMEOUT
                | ErrorCode::STORAGE_ERROR
                | ErrorCode::REBALANCE_IN_PROGRESS
                | ErrorCode::NOT_COORDINATOR
                | ErrorCode::ILLEGAL_GENERATION
                | ErrorCode::INVALID_GENERATION_ID
                | ErrorCode::UNKNOWN_MEMBER_ID
                | ErrorCode::TRANSACTION_COORDINATOR_NOT_AVAILABLE
                | ErrorCode::CONCURRENT_TRANSACTIONS
                | ErrorCode::FENCED_LEADER_EPOCH
                | ErrorCode::UNKNOWN_LEADER_EPOCH
        )
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "unknown error code {}", self.0),
        }
    }
}
