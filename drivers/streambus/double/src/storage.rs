//! Topics, partitions and records, with transaction state: what a restart keeps.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use tidewater_streambus::protocol::{ErrorCode, FetchResponse, Isolation, ProducerIdentity, Record};

/// Go's zero time in Unix nanoseconds: the timestamp a v1.0.x broker returns for every
/// record, because it does not store timestamps.
pub const GO_ZERO_TIME_NANOS: i64 = -6_795_364_578_871_345_152;

/// Header names of the transaction markers a later broker writes.
pub const CONTROL_HEADER: &str = "streambus.control";

#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub(crate) record: Record,
    /// The transactional producer that wrote it.
    pub(crate) producer: Option<i64>,
    pub(crate) control: bool,
    pub(crate) aborted: bool,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Partition {
    pub(crate) records: Vec<Stored>,
    /// Producer id -> first offset of its open transaction here.
    pub(crate) open: HashMap<i64, i64>,
}

impl Partition {
    pub(crate) fn end(&self) -> i64 {
        self.records.len() as i64
    }

    /// The last stable offset: below it, no transaction is open.
    pub(crate) fn last_stable(&self) -> i64 {
        self.open.values().copied().min().unwrap_or(self.end())
    }
}

/// A transactional id's state.
#[derive(Clone, Debug)]
pub(crate) struct Txn {
    pub(crate) producer: ProducerIdentity,
    pub(crate) partitions: BTreeSet<(String, u32)>,
    /// Offsets to commit with the transaction: group -> (topic, partition) -> offset.
    pub(crate) offsets: Vec<(String, String, i32, i64)>,
}

/// Everything the double stores. Kept across [`crate::BrokerDouble::restart`], like a
/// broker's data directory; group membership is not (it lives in memory on a broker).
#[derive(Debug, Default)]
pub struct Storage {
    pub(crate) topics: BTreeMap<String, Vec<Partition>>,
    /// (group, topic, partition) -> (offset, metadata).
    pub(crate) offsets: HashMap<(String, String, i32), (i64, String)>,
    pub(crate) txns: HashMap<String, Txn>,
    pub(crate) next_producer_id: i64,
}

pub(crate) type Outcome<T> = Result<T, (ErrorCode, String)>;

fn not_found(topic: &str, partition: u32) -> (ErrorCode, String) {
    (ErrorCode::TOPIC_NOT_FOUND, format!("partition {partition} does not exist in topic {topic}"))
}

impl Storage {
    /// Creates `topic`; the same count again is fine, another count is `TopicExists`.
    pub(crate) fn create(&mut self, topic: &str, partitions: u32) -> Outcome<()> {
        match self.topics.get(topic) {
            Some(existing) if existing.len() == partitions as usize => Ok(()),
            Some(existing) => Err((
                ErrorCode::TOPIC_EXISTS,
                format!("topic {topic} already exists with {} partitions", existing.len()),
            )),
            None => {
                self.topics.insert(topic.to_owned(), vec![Partition::default(); partitions as usize]);
                Ok(())
            }
        }
    }

    /// The partition, creating the topic with one partition first if it is unknown
    /// (both profiles auto-create on produce and fetch).
    pub(crate) fn partition_auto(&mut self, topic: &str, partition: u32) -> Outcome<&mut Partition> {
        if !self.topics.contains_key(topic) {
            self.create(topic, 1)?;
        }
        self.partition(topic, partition)
    }

    pub(crate) fn partition(&mut self, topic: &str, partition: u32) -> Outcome<&mut Partition> {
        self.topics
            .get_mut(topic)
            .and_then(|parts| parts.get_mut(partition as usize))
            .ok_or_else(|| not_found(topic, partition))
    }

    /// Appends records; returns the base offset and the new end.
    pub(crate) fn append(
        &mut self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
        producer: Option<i64>,
        drop_metadata: bool,
    ) -> Outcome<(i64, i64)> {
        let p = self.partition_auto(topic, partition)?;
        let base = p.end();
        if let Some(pid) = producer {
            p.open.entry(pid).or_insert(base);
        }
        for (i, mut record) in records.into_iter().enumerate() {
            record.offset = base + i as i64;
            if drop_metadata {
                record.headers.clear();
                record.timestamp = GO_ZERO_TIME_NANOS;
            }
            p.records.push(Stored { record, producer, control: false, aborted: false });
        }
        Ok((base, p.end()))
    }

    /// Reads from `offset`, skipping control records (and aborted ones when reading
    /// committed), up to `max_bytes` of key and value (at least one record).
    pub(crate) fn fetch(
        &mut self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: u32,
        isolation: Option<Isolation>,
        later: bool,
    ) -> Outcome<FetchResponse> {
        let p = self.partition_auto(topic, partition)?;
        let end = p.end();
        let lso = p.last_stable();
        if later && !(0..=end).contains(&offset) {
            return Err((ErrorCode::OFFSET_OUT_OF_RANGE, format!("offset {offset} is outside 0..={end}")));
        }
        let limit = match isolation {
            Some(Isolation::ReadCommitted) => lso,
            _ => end,
        };
        let mut records = Vec::new();
        let mut bytes = 0usize;
        let mut next = offset.max(0);
        while next < limit && (next as usize) < p.records.len() {
            let stored = &p.records[next as usize];
            let skip = stored.control || (stored.aborted && isolation == Some(Isolation::ReadCommitted));
            if !skip {
                // Checked before adding, as the broker does: at least one record comes
                // back when max_bytes is not zero.
                if bytes >= max_bytes as usize || max_bytes == 0 {
                    break;
                }
                bytes += stored.record.key.len() + stored.record.value.len();
                records.push(stored.record.clone());
            }
            next += 1;
        }
        let (last_stable_offset, next_offset) = if later { (Some(lso), Some(next)) } else { (None, None) };
        Ok(FetchResponse { high_water_mark: end, records, last_stable_offset, next_offset })
    }

    /// Ends `pid`'s transaction on one partition: writes the marker and, on abort,
    /// marks what the producer wrote there as aborted.
    pub(crate) fn end_txn(&mut self, topic: &str, partition: u32, producer: ProducerIdentity, commit: bool) {
        let Ok(p) = self.partition(topic, partition) else { return };
        if let Some(first) = p.open.remove(&producer.id) {
            if !commit {
                for stored in &mut p.records[first as usize..] {
                    if stored.producer == Some(producer.id) {
                        stored.aborted = true;
                    }
                }
            }
        }
        let marker = Record {
            offset: p.end(),
            timestamp: 0,
            key: Bytes::new(),
            value: Bytes::new(),
            headers: vec![
                (CONTROL_HEADER.into(), Bytes::from_static(b"txn-marker")),
                ("streambus.txn.commit".into(), Bytes::from(if commit { "true" } else { "false" })),
                ("streambus.txn.producer_id".into(), Bytes::from(producer.id.to_string())),
                ("streambus.txn.producer_epoch".into(), Bytes::from(producer.epoch.to_string())),
            ],
        };
        p.records.push(Stored { record: marker, producer: Some(producer.id), control: true, aborted: false });
    }

    /// The records of a partition as stored, control records included.
    pub fn records(&self, topic: &str, partition: u32) -> Vec<Record> {
        self.topics
            .get(topic)
            .and_then(|parts| parts.get(partition as usize))
            .map(|p| p.records.iter().map(|s| s.record.clone()).collect())
            .unwrap_or_default()
    }

    /// A group's committed offset for a partition.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(&(group.to_owned(), topic.to_owned(), partition)).map(|(o, _)| *o)
    }

    /// How many partitions `topic` has.
    pub fn partitions(&self, topic: &str) -> Option<u32> {
        self.topics.get(topic).map(|p| p.len() as u32)
    }
}
