//! Payloads of the group, offset and transaction requests 0x08–0x13 (spec §1.7), only
//! served by later brokers. Strings have `i32` lengths; bytes may be null.

use bytes::{BufMut, Bytes, BytesMut};

use super::primitives::{put_wire_bytes, put_wire_string, Cursor};
use super::{DecodeError, ErrorCode};

type R<T> = Result<T, DecodeError>;

fn error(c: &mut Cursor) -> R<ErrorCode> {
    Ok(ErrorCode(c.u16("error code")?))
}

/// A member id with opaque bytes: a protocol's metadata in JoinGroup, a member's
/// subscription in its response, a member's assignment in SyncGroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedBlob {
    /// The protocol name or member id.
    pub name: String,
    /// The bytes (may be null on the wire).
    pub data: Option<Bytes>,
}

fn put_blobs(buf: &mut BytesMut, blobs: &[NamedBlob]) {
    buf.put_i32(blobs.len() as i32);
    for b in blobs {
        put_wire_string(buf, &b.name);
        put_wire_bytes(buf, b.data.as_deref());
    }
}

fn blobs(c: &mut Cursor, what: &'static str) -> R<Vec<NamedBlob>> {
    let n = c.wire_count(what, 8)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(NamedBlob { name: c.wire_string(what)?, data: c.wire_bytes(what)? });
    }
    Ok(out)
}

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

impl JoinGroupRequest {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_wire_string(buf, &self.group_id);
        put_wire_string(buf, &self.member_id);
        put_wire_string(buf, &self.client_id);
        put_wire_string(buf, &self.protocol_type);
        buf.put_i32(self.session_timeout_ms);
        buf.put_i32(self.rebalance_timeout_ms);
        put_blobs(buf, &self.protocols);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        Ok(Self {
            group_id: c.wire_string("group id")?,
            member_id: c.wire_string("member id")?,
            client_id: c.wire_string("client id")?,
            protocol_type: c.wire_string("protocol type")?,
            session_timeout_ms: c.i32("session timeout")?,
            rebalance_timeout_ms: c.i32("rebalance timeout")?,
            protocols: blobs(&mut c, "protocols")?,
        })
    }
}

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

impl JoinGroupResponse {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u16(self.error.0);
        buf.put_i32(self.generation_id);
        put_wire_string(buf, &self.protocol_name);
        put_wire_string(buf, &self.member_id);
        put_wire_string(buf, &self.leader_id);
        put_blobs(buf, &self.members);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        Ok(Self {
            error: error(&mut c)?,
            generation_id: c.i32("generation")?,
            protocol_name: c.wire_string("protocol name")?,
            member_id: c.wire_string("member id")?,
            leader_id: c.wire_string("leader id")?,
            members: blobs(&mut c, "members")?,
        })
    }
}

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

impl SyncGroupRequest {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_wire_string(buf, &self.group_id);
        buf.put_i32(self.generation_id);
        put_wire_string(buf, &self.member_id);
        put_blobs(buf, &self.assignments);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        Ok(Self {
            group_id: c.wire_string("group id")?,
            generation_id: c.i32("generation")?,
            member_id: c.wire_string("member id")?,
            assignments: blobs(&mut c, "assignments")?,
        })
    }
}

/// 0x09 SyncGroup response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncGroupResponse {
    /// The outcome; `RebalanceInProgress` tells a follower to ask again.
    pub error: ErrorCode,
    /// The member's [`MemberAssignment`], encoded.
    pub assignment: Option<Bytes>,
}

impl SyncGroupResponse {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u16(self.error.0);
        put_wire_bytes(buf, self.assignment.as_deref());
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        Ok(Self { error: error(&mut c)?, assignment: c.wire_bytes("assignment")? })
    }
}

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

impl HeartbeatRequest {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_wire_string(buf, &self.group_id);
        buf.put_i32(self.generation_id);
        put_wire_string(buf, &self.member_id);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        Ok(Self {
            group_id: c.wire_string("group id")?,
            generation_id: c.i32("generation")?,
            member_id: c.wire_string("member id")?,
        })
    }
}

/// 0x0B LeaveGroup request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveGroupRequest {
    /// The group.
    pub group_id: String,
    /// The member.
    pub member_id: String,
}

impl LeaveGroupRequest {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_wire_string(buf, &self.group_id);
        put_wire_string(buf, &self.member_id);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        Ok(Self { group_id: c.wire_string("group id")?, member_id: c.wire_string("member id")? })
    }
}

/// A response that is only an error code (Heartbeat, LeaveGroup, AddOffsetsToTxn, EndTxn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorResponse {
    /// The outcome.
    pub error: ErrorCode,
}

impl ErrorResponse {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u16(self.error.0);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        Ok(Self { error: error(&mut Cursor::new(payload))? })
    }
}

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

/// A topic's offsets to commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitTopic {
    /// The topic.
    pub topic: String,
    /// Its partitions.
    pub partitions: Vec<CommitPartition>,
}

fn put_commit_topics(buf: &mut BytesMut, topics: &[CommitTopic]) {
    buf.put_i32(topics.len() as i32);
    for t in topics {
        put_wire_string(buf, &t.topic);
        buf.put_i32(t.partitions.len() as i32);
        for p in &t.partitions {
            buf.put_i32(p.partition);
            buf.put_i64(p.offset);
            put_wire_string(buf, &p.metadata);
        }
    }
}

fn commit_topics(c: &mut Cursor) -> R<Vec<CommitTopic>> {
    let n = c.wire_count("commit topics", 8)?;
    let mut topics = Vec::with_capacity(n);
    for _ in 0..n {
        let topic = c.wire_string("topic")?;
        let m = c.wire_count("commit partitions", 16)?;
        let mut partitions = Vec::with_capacity(m);
        for _ in 0..m {
            partitions.push(CommitPartition {
                partition: c.i32("partition")?,
                offset: c.i64("offset")?,
                metadata: c.wire_string("metadata")?,
            });
        }
        topics.push(CommitTopic { topic, partitions });
    }
    Ok(topics)
}

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

impl OffsetCommitRequest {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_wire_string(buf, &self.group_id);
        buf.put_i32(self.generation_id);
        put_wire_string(buf, &self.member_id);
        put_commit_topics(buf, &self.topics);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        Ok(Self {
            group_id: c.wire_string("group id")?,
            generation_id: c.i32("generation")?,
            member_id: c.wire_string("member id")?,
            topics: commit_topics(&mut c)?,
        })
    }
}

/// 0x0C OffsetCommit and 0x12 TxnOffsetCommit response: an error per partition, in the
/// request's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetCommitResponse {
    /// Per topic, per partition.
    pub topics: Vec<(String, Vec<(i32, ErrorCode)>)>,
}

impl OffsetCommitResponse {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_i32(self.topics.len() as i32);
        for (topic, parts) in &self.topics {
            put_wire_string(buf, topic);
            buf.put_i32(parts.len() as i32);
            for (p, e) in parts {
                buf.put_i32(*p);
                buf.put_u16(e.0);
            }
        }
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        let n = c.wire_count("topics", 8)?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = c.wire_string("topic")?;
            let m = c.wire_count("partitions", 6)?;
            let mut parts = Vec::with_capacity(m);
            for _ in 0..m {
                parts.push((c.i32("partition")?, error(&mut c)?));
            }
            topics.push((topic, parts));
        }
        Ok(Self { topics })
    }

    /// The first error the broker reported, if any.
    pub fn first_error(&self) -> Option<(&str, i32, ErrorCode)> {
        self.topics
            .iter()
            .flat_map(|(t, parts)| parts.iter().map(move |(p, e)| (t.as_str(), *p, *e)))
            .find(|(_, _, e)| !e.is_none())
    }
}

/// 0x0D OffsetFetch request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetFetchRequest {
    /// The group.
    pub group_id: String,
    /// Topics with the partitions wanted; empty asks for all.
    pub topics: Vec<(String, Vec<i32>)>,
}

impl OffsetFetchRequest {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_wire_string(buf, &self.group_id);
        buf.put_i32(self.topics.len() as i32);
        for (topic, parts) in &self.topics {
            put_wire_string(buf, topic);
            buf.put_i32(parts.len() as i32);
            for p in parts {
                buf.put_i32(*p);
            }
        }
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        let group_id = c.wire_string("group id")?;
        let n = c.wire_count("topics", 8)?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = c.wire_string("topic")?;
            let m = c.wire_count("partitions", 4)?;
            let mut parts = Vec::with_capacity(m);
            for _ in 0..m {
                parts.push(c.i32("partition")?);
            }
            topics.push((topic, parts));
        }
        Ok(Self { group_id, topics })
    }
}

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

/// 0x0D OffsetFetch response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetFetchResponse {
    /// Per topic, per partition.
    pub topics: Vec<(String, Vec<FetchedOffset>)>,
}

impl OffsetFetchResponse {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_i32(self.topics.len() as i32);
        for (topic, parts) in &self.topics {
            put_wire_string(buf, topic);
            buf.put_i32(parts.len() as i32);
            for p in parts {
                buf.put_i32(p.partition);
                buf.put_i64(p.offset);
                put_wire_string(buf, &p.metadata);
                buf.put_u16(p.error.0);
            }
        }
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        let n = c.wire_count("topics", 8)?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = c.wire_string("topic")?;
            let m = c.wire_count("partitions", 18)?;
            let mut parts = Vec::with_capacity(m);
            for _ in 0..m {
                parts.push(FetchedOffset {
                    partition: c.i32("partition")?,
                    offset: c.i64("offset")?,
                    metadata: c.wire_string("metadata")?,
                    error: error(&mut c)?,
                });
            }
            topics.push((topic, parts));
        }
        Ok(Self { topics })
    }
}

/// 0x0E InitProducerID request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitProducerIdRequest {
    /// The transactional id; empty for an idempotent-only producer.
    pub transaction_id: String,
    /// How long a transaction may stay open.
    pub transaction_timeout_ms: i32,
}

impl InitProducerIdRequest {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_wire_string(buf, &self.transaction_id);
        buf.put_i32(self.transaction_timeout_ms);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        Ok(Self { transaction_id: c.wire_string("transaction id")?, transaction_timeout_ms: c.i32("timeout")? })
    }
}

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

impl InitProducerIdResponse {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_i64(self.producer_id);
        buf.put_i16(self.producer_epoch);
        buf.put_u16(self.error.0);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        Ok(Self { producer_id: c.i64("producer id")?, producer_epoch: c.i16("epoch")?, error: error(&mut c)? })
    }
}

/// 0x0F AddPartitionsToTxn request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddPartitionsToTxnRequest {
    /// The transactional id.
    pub transaction_id: String,
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// Topic and partition pairs.
    pub partitions: Vec<(String, i32)>,
}

impl AddPartitionsToTxnRequest {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_wire_string(buf, &self.transaction_id);
        buf.put_i64(self.producer_id);
        buf.put_i16(self.producer_epoch);
        buf.put_i32(self.partitions.len() as i32);
        for (t, p) in &self.partitions {
            put_wire_string(buf, t);
            buf.put_i32(*p);
        }
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        let transaction_id = c.wire_string("transaction id")?;
        let producer_id = c.i64("producer id")?;
        let producer_epoch = c.i16("epoch")?;
        let n = c.wire_count("partitions", 8)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            partitions.push((c.wire_string("topic")?, c.i32("partition")?));
        }
        Ok(Self { transaction_id, producer_id, producer_epoch, partitions })
    }
}

/// 0x0F AddPartitionsToTxn response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddPartitionsToTxnResponse {
    /// An error per partition.
    pub results: Vec<(String, i32, ErrorCode)>,
}

impl AddPartitionsToTxnResponse {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_i32(self.results.len() as i32);
        for (t, p, e) in &self.results {
            put_wire_string(buf, t);
            buf.put_i32(*p);
            buf.put_u16(e.0);
        }
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        let n = c.wire_count("results", 10)?;
        let mut results = Vec::with_capacity(n);
        for _ in 0..n {
            results.push((c.wire_string("topic")?, c.i32("partition")?, error(&mut c)?));
        }
        Ok(Self { results })
    }
}

/// 0x10 AddOffsetsToTxn request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddOffsetsToTxnRequest {
    /// The transactional id.
    pub transaction_id: String,
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// The group whose offsets the transaction will commit.
    pub group_id: String,
}

impl AddOffsetsToTxnRequest {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_wire_string(buf, &self.transaction_id);
        buf.put_i64(self.producer_id);
        buf.put_i16(self.producer_epoch);
        put_wire_string(buf, &self.group_id);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        Ok(Self {
            transaction_id: c.wire_string("transaction id")?,
            producer_id: c.i64("producer id")?,
            producer_epoch: c.i16("epoch")?,
            group_id: c.wire_string("group id")?,
        })
    }
}

/// 0x11 EndTxn request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndTxnRequest {
    /// The transactional id.
    pub transaction_id: String,
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// Commit (true) or abort.
    pub commit: bool,
}

impl EndTxnRequest {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_wire_string(buf, &self.transaction_id);
        buf.put_i64(self.producer_id);
        buf.put_i16(self.producer_epoch);
        buf.put_u8(self.commit as u8);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        Ok(Self {
            transaction_id: c.wire_string("transaction id")?,
            producer_id: c.i64("producer id")?,
            producer_epoch: c.i16("epoch")?,
            commit: c.bool("commit")?,
        })
    }
}

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

impl TxnOffsetCommitRequest {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_wire_string(buf, &self.transaction_id);
        put_wire_string(buf, &self.group_id);
        buf.put_i64(self.producer_id);
        buf.put_i16(self.producer_epoch);
        put_commit_topics(buf, &self.topics);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        Ok(Self {
            transaction_id: c.wire_string("transaction id")?,
            group_id: c.wire_string("group id")?,
            producer_id: c.i64("producer id")?,
            producer_epoch: c.i16("epoch")?,
            topics: commit_topics(&mut c)?,
        })
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

/// 0x13 FindCoordinator request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindCoordinatorRequest {
    /// The group or transactional id.
    pub key: String,
    /// What the key names.
    pub kind: CoordinatorKind,
}

impl FindCoordinatorRequest {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_wire_string(buf, &self.key);
        buf.put_i8(self.kind as i8);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        let key = c.wire_string("key")?;
        let kind = match c.i8("key type")? {
            0 => CoordinatorKind::Group,
            1 => CoordinatorKind::Transaction,
            _ => return Err(DecodeError::Invalid { what: "key type", why: "must be 0 or 1" }),
        };
        Ok(Self { key, kind })
    }
}

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

impl FindCoordinatorResponse {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u16(self.error.0);
        buf.put_i32(self.node_id);
        put_wire_string(buf, &self.host);
        buf.put_i32(self.port);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        Ok(Self {
            error: error(&mut c)?,
            node_id: c.i32("node id")?,
            host: c.wire_string("host")?,
            port: c.i32("port")?,
        })
    }
}

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

impl Subscription {
    /// The encoded blob.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(self.version);
        buf.put_i32(self.topics.len() as i32);
        for t in &self.topics {
            put_wire_string(&mut buf, t);
        }
        put_wire_bytes(&mut buf, self.user_data.as_deref());
        buf.freeze()
    }

    /// Reads the blob.
    pub fn decode(blob: Bytes) -> R<Self> {
        let mut c = Cursor::new(blob);
        let version = c.i16("subscription version")?;
        let n = c.wire_count("subscription topics", 4)?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            topics.push(c.wire_string("topic")?);
        }
        Ok(Self { version, topics, user_data: c.wire_bytes("user data")? })
    }
}

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

impl MemberAssignment {
    /// The encoded blob, topics sorted by name.
    pub fn to_bytes(&self) -> Bytes {
        let mut topics: Vec<&(String, Vec<i32>)> = self.topics.iter().collect();
        topics.sort_by(|a, b| a.0.cmp(&b.0));
        let mut buf = BytesMut::new();
        buf.put_i16(self.version);
        buf.put_i32(topics.len() as i32);
        for (t, parts) in topics {
            put_wire_string(&mut buf, t);
            buf.put_i32(parts.len() as i32);
            for p in parts {
                buf.put_i32(*p);
            }
        }
        put_wire_bytes(&mut buf, self.user_data.as_deref());
        buf.freeze()
    }

    /// Reads the blob.
    pub fn decode(blob: Bytes) -> R<Self> {
        let mut c = Cursor::new(blob);
        let version = c.i16("assignment version")?;
        let n = c.wire_count("assignment topics", 8)?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = c.wire_string("topic")?;
            let m = c.wire_count("assigned partitions", 4)?;
            let mut parts = Vec::with_capacity(m);
            for _ in 0..m {
                parts.push(c.i32("partition")?);
            }
            topics.push((topic, parts));
        }
        Ok(Self { version, topics, user_data: c.wire_bytes("user data")? })
    }
}
