//! Payloads of the data-path operations 0x01–0x07 (spec §1.6), with the trailing fields
//! later brokers add to Produce and Fetch. Those of fixed fields are tables in the legacy
//! encoding (`u32` lengths, nothing null); records and the optional trailers are written
//! out by hand.

use bytes::{BufMut, Bytes, BytesMut};

use super::primitives::{put_bytes, Cursor};
use super::wire::wire_struct;
use super::DecodeError;

type R<T> = Result<T, DecodeError>;

/// The smallest encoded record: offset, timestamp and three empty lengths.
pub const MIN_RECORD_SIZE: usize = 28;

/// One record, as produced and as fetched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The offset; producers send 0 and the broker assigns it.
    pub offset: i64,
    /// Unix nanoseconds.
    pub timestamp: i64,
    /// The key; empty means no key (the wire cannot tell them apart).
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// Headers, unique names. A v1.0.x broker does not store them.
    pub headers: Vec<(String, Bytes)>,
}

impl Record {
    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        MIN_RECORD_SIZE
            + self.key.len()
            + self.value.len()
            + self.headers.iter().map(|(k, v)| 8 + k.len() + v.len()).sum::<usize>()
    }

    /// Appends the record.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_i64(self.offset);
        buf.put_i64(self.timestamp);
        put_bytes(buf, &self.key);
        put_bytes(buf, &self.value);
        buf.put_u32(self.headers.len() as u32);
        for (k, v) in &self.headers {
            put_bytes(buf, k.as_bytes());
            put_bytes(buf, v);
        }
    }

    /// Reads one record.
    pub fn decode(c: &mut Cursor) -> R<Self> {
        let offset = c.i64("record offset")?;
        let timestamp = c.i64("record timestamp")?;
        let key = c.bytes("record key")?;
        let value = c.bytes("record value")?;
        let count = c.count("record header count", 8)?;
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let name = c.string("header name")?;
            let value = c.bytes("header value")?;
            headers.push((name, value));
        }
        Ok(Self { offset, timestamp, key, value, headers })
    }
}

fn records(c: &mut Cursor) -> R<Vec<Record>> {
    let count = c.count("record count", MIN_RECORD_SIZE)?;
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(Record::decode(c)?);
    }
    Ok(records)
}

/// Producer id and epoch, sent on Produce to a later broker (zero: not transactional).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// The producer id from InitProducerID.
    pub id: i64,
    /// The producer epoch.
    pub epoch: i16,
}

/// 0x01 Produce request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProduceRequest {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The records.
    pub records: Vec<Record>,
    /// Later brokers: the transactional producer. Not written when `None`.
    pub producer: Option<ProducerIdentity>,
}

impl ProduceRequest {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_bytes(buf, self.topic.as_bytes());
        buf.put_u32(self.partition);
        buf.put_u32(self.records.len() as u32);
        for r in &self.records {
            r.encode(buf);
        }
        if let Some(p) = self.producer {
            buf.put_i64(p.id);
            buf.put_i16(p.epoch);
        }
    }

    /// Reads the payload; the producer trailer is read when present.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        let topic = c.string("produce topic")?;
        let partition = c.u32("produce partition")?;
        let records = records(&mut c)?;
        let producer = if c.remaining() >= 10 {
            Some(ProducerIdentity { id: c.i64("producer id")?, epoch: c.i16("producer epoch")? })
        } else {
            None
        };
        Ok(Self { topic, partition, records, producer })
    }
}

/// 0x01 Produce response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProduceResponse {
    /// Offset of the first record written.
    pub base_offset: i64,
    /// How many were written.
    pub count: u32,
    /// The partition's high-water mark after the append.
    pub high_water_mark: i64,
}

impl ProduceResponse {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_i64(self.base_offset);
        buf.put_u32(self.count);
        buf.put_i64(self.high_water_mark);
    }

    /// Reads the payload.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        let r = Self {
            base_offset: c.i64("base offset")?,
            count: c.u32("produced count")?,
            high_water_mark: c.i64("high-water mark")?,
        };
        c.finish("produce response")?;
        Ok(r)
    }
}

/// Which records a fetch may return (later brokers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Every record, also of open or aborted transactions.
    ReadUncommitted = 0,
    /// Only records below the last stable offset that no aborted transaction wrote.
    ReadCommitted = 1,
}

/// 0x02 Fetch request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The first offset wanted.
    pub offset: i64,
    /// Key and value bytes wanted; the broker may exceed it by one record.
    pub max_bytes: u32,
    /// Later brokers: the isolation level. Not written when `None`.
    pub isolation: Option<Isolation>,
}

impl FetchRequest {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_bytes(buf, self.topic.as_bytes());
        buf.put_u32(self.partition);
        buf.put_i64(self.offset);
        buf.put_u32(self.max_bytes);
        if let Some(i) = self.isolation {
            buf.put_i8(i as i8);
        }
    }

    /// Reads the payload; the isolation byte is read when present.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        let topic = c.string("fetch topic")?;
        let partition = c.u32("fetch partition")?;
        let offset = c.i64("fetch offset")?;
        let max_bytes = c.u32("fetch max bytes")?;
        let isolation = match c.remaining() {
            0 => None,
            _ => Some(match c.i8("isolation level")? {
                0 => Isolation::ReadUncommitted,
                1 => Isolation::ReadCommitted,
                _ => return Err(DecodeError::Invalid { what: "isolation level", why: "must be 0 or 1" }),
            }),
        };
        Ok(Self { topic, partition, offset, max_bytes, isolation })
    }
}

/// 0x02 Fetch response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchResponse {
    /// The partition's high-water mark.
    pub high_water_mark: i64,
    /// The records.
    pub records: Vec<Record>,
    /// Later brokers: the last stable offset.
    pub last_stable_offset: Option<i64>,
    /// Later brokers: where the next fetch should start (past filtered control
    /// records); −1 means "after the last record".
    pub next_offset: Option<i64>,
}

impl FetchResponse {
    /// Appends the payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_i64(self.high_water_mark);
        buf.put_u32(self.records.len() as u32);
        for r in &self.records {
            r.encode(buf);
        }
        if let (Some(lso), Some(next)) = (self.last_stable_offset, self.next_offset) {
            buf.put_i64(lso);
            buf.put_i64(next);
        }
    }

    /// Reads the payload; the later trailer is read when present.
    pub fn decode(payload: Bytes) -> R<Self> {
        let mut c = Cursor::new(payload);
        let high_water_mark = c.i64("high-water mark")?;
        let records = records(&mut c)?;
        let (last_stable_offset, next_offset) = if c.remaining() >= 16 {
            (Some(c.i64("last stable offset")?), Some(c.i64("next offset")?))
        } else {
            (None, None)
        };
        Ok(Self { high_water_mark, records, last_stable_offset, next_offset })
    }

    /// Where the next fetch starts: `next_offset` when the broker sent a valid one,
    /// otherwise after the last record, otherwise `from` (nothing was returned).
    pub fn next_position(&self, from: i64) -> i64 {
        match self.next_offset {
            Some(next) if next >= 0 => next.max(from),
            _ => self.records.last().map_or(from, |r| r.offset + 1),
        }
    }
}

wire_struct! {
    in Legacy;
    /// 0x03 GetOffset request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct GetOffsetRequest {
        /// The topic.
        pub topic: String,
        /// The partition.
        pub partition: u32,
    }
}

wire_struct! {
    in Legacy;
    /// 0x03 GetOffset response.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct GetOffsetResponse {
        /// The topic.
        pub topic: String,
        /// The partition.
        pub partition: u32,
        /// The first offset held.
        pub start_offset: i64,
        /// The offset the next record will get.
        pub end_offset: i64,
        /// The high-water mark.
        pub high_water_mark: i64,
    }
}

wire_struct! {
    in Legacy;
    /// 0x04 CreateTopic request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct CreateTopicRequest {
        /// The topic.
        pub topic: String,
        /// Partitions (fixed at creation).
        pub partitions: u32,
        /// Accepted and ignored by every broker.
        pub replication_factor: u16,
    }
}

wire_struct! {
    in Legacy;
    /// 0x04 CreateTopic and 0x05 DeleteTopic responses: the topic and whether it happened.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct TopicResult {
        /// The topic.
        pub topic: String,
        /// Created (or deleted).
        pub done: bool,
    }
}

wire_struct! {
    in Legacy;
    /// 0x05 DeleteTopic request.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct DeleteTopicRequest {
        /// The topic.
        pub topic: String,
    }
}

wire_struct! {
    in Legacy;
    /// 0x06 ListTopics response.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct ListTopicsResponse {
        /// Each topic with its partition count, in no particular order.
        pub topics: Vec<(String, u32)>,
    }
}

wire_struct! {
    in Legacy;
    /// 0x07 HealthCheck response.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct HealthResponse {
        /// "healthy".
        pub status: String,
        /// Seconds since the broker started.
        pub uptime_seconds: i64,
    }
}
