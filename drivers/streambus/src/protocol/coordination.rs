//! Payloads of the group, offset and transaction requests 0x08–0x13 (spec §1.7), only
//! served by later brokers: each the table of its fields in wire order, in the
//! coordination encoding (the crate's `wire` module): strings have `i32` lengths; bytes
//! may be null.

use bytes::{BufMut, Bytes, BytesMut};

use super::primitives::Cursor;
use super::wire::{wire_struct, Wire, R};
use super::{DecodeError, ErrorCode};

wire_struct! {
    /// A member id with opaque bytes: a protocol's metadata in JoinGroup, a member's
    /// subscription in its response, a member's assignment in SyncGroup.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct NamedBlob {
        /// The protocol name or member id.
        pub name: String,
        /// The bytes (may be null on the wire).
        pub data: Option<Bytes>,
    }
}

wire_struct! {
    /// 0x08 JoinGroup request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct JoinGroupRequest {
        /// The group.
        pub group_id: String,
        /// Empty on the first join; the id the coordinator gave afterwards.
        pub member_id: String,
        /// The client's name.
        pub client_id: String,
        /// "consumer".
        pub protocol_type: String,
        /// Without a heartbeat for this long, the member is removed.
        pub session_timeout_ms: i32,
        /// How long a rebalance waits for members to rejoin.
        pub rebalance_timeout_ms: i32,
        /// Assignment strategies with the member's subscription as metadata.
        pub protocols: Vec<NamedBlob>,
    }
}

wire_struct! {
    /// 0x08 JoinGroup response.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct JoinGroupResponse {
        /// The outcome.
        pub error: ErrorCode,
        /// The generation this join round made.
        pub generation_id: i32,
        /// The strategy chosen.
        pub protocol_name: String,
        /// The member's id.
        pub member_id: String,
        /// The member that computes the assignment.
        pub leader_id: String,
        /// Every member with its subscription; only sent to the leader.
        pub members: Vec<NamedBlob>,
    }
}

wire_struct! {
    /// 0x09 SyncGroup request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct SyncGroupRequest {
        /// The group.
        pub group_id: String,
        /// The generation from JoinGroup.
        pub generation_id: i32,
        /// The member.
        pub member_id: String,
        /// The leader's assignment for every member; empty from followers.
        pub assignments: Vec<NamedBlob>,
    }
}

wire_struct! {
    /// 0x09 SyncGroup response.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct SyncGroupResponse {
        /// The outcome; `RebalanceInProgress` tells a follower to ask again.
        pub error: ErrorCode,
        /// The member's [`MemberAssignment`], encoded.
        pub assignment: Option<Bytes>,
    }
}

wire_struct! {
    /// 0x0A Heartbeat request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct HeartbeatRequest {
        /// The group.
        pub group_id: String,
        /// The member's generation.
        pub generation_id: i32,
        /// The member.
        pub member_id: String,
    }
}

wire_struct! {
    /// 0x0B LeaveGroup request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct LeaveGroupRequest {
        /// The group.
        pub group_id: String,
        /// The member.
        pub member_id: String,
    }
}

wire_struct! {
    /// A response that is only an error code (Heartbeat, LeaveGroup, AddOffsetsToTxn, EndTxn).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ErrorResponse {
        /// The outcome.
        pub error: ErrorCode,
    }
}

wire_struct! {
    /// One partition's offset to commit.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct CommitPartition {
        /// The partition.
        pub partition: i32,
        /// The next offset to read.
        pub offset: i64,
        /// Free text kept with the offset.
        pub metadata: String,
    }
}

wire_struct! {
    /// A topic's offsets to commit.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct CommitTopic {
        /// The topic.
        pub topic: String,
        /// Its partitions.
        pub partitions: Vec<CommitPartition>,
    }
}

impl CommitTopic {
    /// `positions` (partition, next offset to read) of `topic`, without metadata.
    pub fn positions(topic: impl Into<String>, positions: &[(u32, u64)]) -> Self {
        let partitions = positions
            .iter()
            .map(|&(partition, offset)| CommitPartition {
                partition: partition as i32,
                offset: offset as i64,
                metadata: String::new(),
            })
            .collect();
        Self { topic: topic.into(), partitions }
    }
}

wire_struct! {
    /// 0x0C OffsetCommit request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct OffsetCommitRequest {
        /// The group.
        pub group_id: String,
        /// The member's generation; −1 for a consumer outside group membership.
        pub generation_id: i32,
        /// The member; empty for a consumer outside group membership.
        pub member_id: String,
        /// The offsets.
        pub topics: Vec<CommitTopic>,
    }
}

wire_struct! {
    /// 0x0C OffsetCommit and 0x12 TxnOffsetCommit response: an error per partition, in the
    /// request's order.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct OffsetCommitResponse {
        /// Per topic, per partition.
        pub topics: Vec<(String, Vec<(i32, ErrorCode)>)>,
    }
}

impl OffsetCommitResponse {
    /// The first error the broker reported, if any.
    pub fn first_error(&self) -> Option<(&str, i32, ErrorCode)> {
        self.topics
            .iter()
            .flat_map(|(t, parts)| parts.iter().map(move |(p, e)| (t.as_str(), *p, *e)))
            .find(|(_, _, e)| !e.is_none())
    }
}

wire_struct! {
    /// 0x0D OffsetFetch request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct OffsetFetchRequest {
        /// The group.
        pub group_id: String,
        /// Topics with the partitions wanted; empty asks for all.
        pub topics: Vec<(String, Vec<i32>)>,
    }
}

wire_struct! {
    /// A committed offset as OffsetFetch returns it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct FetchedOffset {
        /// The partition.
        pub partition: i32,
        /// The committed offset; −1 when there is none.
        pub offset: i64,
        /// The metadata committed with it.
        pub metadata: String,
        /// The outcome for this partition.
        pub error: ErrorCode,
    }
}

wire_struct! {
    /// 0x0D OffsetFetch response.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct OffsetFetchResponse {
        /// Per topic, per partition.
        pub topics: Vec<(String, Vec<FetchedOffset>)>,
    }
}

wire_struct! {
    /// 0x0E InitProducerID request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct InitProducerIdRequest {
        /// The transactional id; empty for an idempotent-only producer.
        pub transaction_id: String,
        /// How long a transaction may stay open.
        pub transaction_timeout_ms: i32,
    }
}

wire_struct! {
    /// 0x0E InitProducerID response.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct InitProducerIdResponse {
        /// The producer id.
        pub producer_id: i64,
        /// The producer epoch; a new init for the same transactional id bumps it.
        pub producer_epoch: i16,
        /// The outcome.
        pub error: ErrorCode,
    }
}

wire_struct! {
    /// The transaction a request is about, as its first three fields say it: the
    /// transactional id and the producer that InitProducerId gave it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct TxnIdentity {
        /// The transactional id.
        pub transaction_id: String,
        /// The producer id.
        pub producer_id: i64,
        /// The producer epoch.
        pub producer_epoch: i16,
    }
}

wire_struct! {
    /// 0x0F AddPartitionsToTxn request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct AddPartitionsToTxnRequest {
        /// Whose transaction.
        pub txn: TxnIdentity,
        /// Topic and partition pairs.
        pub partitions: Vec<(String, i32)>,
    }
}

wire_struct! {
    /// 0x0F AddPartitionsToTxn response.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct AddPartitionsToTxnResponse {
        /// An error per partition.
        pub results: Vec<(String, i32, ErrorCode)>,
    }
}

wire_struct! {
    /// 0x10 AddOffsetsToTxn request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct AddOffsetsToTxnRequest {
        /// Whose transaction.
        pub txn: TxnIdentity,
        /// The group whose offsets the transaction will commit.
        pub group_id: String,
    }
}

wire_struct! {
    /// 0x11 EndTxn request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct EndTxnRequest {
        /// Whose transaction.
        pub txn: TxnIdentity,
        /// Commit (true) or abort.
        pub commit: bool,
    }
}

wire_struct! {
    /// 0x12 TxnOffsetCommit request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct TxnOffsetCommitRequest {
        /// The transactional id.
        pub transaction_id: String,
        /// The group.
        pub group_id: String,
        /// The producer id.
        pub producer_id: i64,
        /// The producer epoch.
        pub producer_epoch: i16,
        /// The offsets.
        pub topics: Vec<CommitTopic>,
    }
}

/// What a coordinator is looked up for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoordinatorKind {
    /// A consumer group.
    Group = 0,
    /// A transactional id.
    Transaction = 1,
}

impl Wire for CoordinatorKind {
    const MIN: usize = 1;

    fn put(&self, buf: &mut BytesMut) {
        buf.put_i8(*self as i8);
    }

    fn get(c: &mut Cursor, what: &'static str) -> R<Self> {
        match c.i8(what)? {
            0 => Ok(CoordinatorKind::Group),
            1 => Ok(CoordinatorKind::Transaction),
            _ => Err(DecodeError::Invalid { what, why: "must be 0 or 1" }),
        }
    }
}

wire_struct! {
    /// 0x13 FindCoordinator request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct FindCoordinatorRequest {
        /// The group or transactional id.
        pub key: String,
        /// What the key names.
        pub kind: CoordinatorKind,
    }
}

wire_struct! {
    /// 0x13 FindCoordinator response.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct FindCoordinatorResponse {
        /// The outcome.
        pub error: ErrorCode,
        /// The coordinator's node id.
        pub node_id: i32,
        /// The coordinator's host.
        pub host: String,
        /// The coordinator's port.
        pub port: i32,
    }
}

wire_struct! {
    /// A member's subscription, the metadata of its JoinGroup protocol.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct Subscription {
        /// Format version, 1.
        pub version: i16,
        /// The topics the member reads.
        pub topics: Vec<String>,
        /// Free bytes.
        pub user_data: Option<Bytes>,
    }
}

impl Subscription {
    /// The encoded blob.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.freeze()
    }
}

wire_struct! {
    /// A member's assignment, the blob of its SyncGroup entry.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct MemberAssignment {
        /// Format version, 1.
        pub version: i16,
        /// Topics with their partitions; encoded sorted by topic name.
        pub topics: Vec<(String, Vec<i32>)>,
        /// Free bytes.
        pub user_data: Option<Bytes>,
    }
}

impl MemberAssignment {
    /// The encoded blob, topics sorted by name (the order other clients write).
    pub fn to_bytes(&self) -> Bytes {
        let mut sorted = self.clone();
        sorted.topics.sort_by(|a, b| a.0.cmp(&b.0));
        let mut buf = BytesMut::new();
        sorted.encode(&mut buf);
        buf.freeze()
    }
}
