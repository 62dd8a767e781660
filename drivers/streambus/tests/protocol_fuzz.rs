//! Decoding never panics: random and mutated input through every decoder, and
//! encode/decode round trips. Run longer with `PROPTEST_CASES=100000`.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tidewater_streambus::protocol::frame;
use tidewater_streambus::protocol::*;

const ALL_TYPES: std::ops::RangeInclusive<u8> = 0x01..=0x13;

fn every_decoder(bytes: &[u8]) {
    let b = Bytes::copy_from_slice(bytes);
    for code in ALL_TYPES.chain([0x00, 0x14, 0xff]) {
        let _ = Request::decode(code, b.clone());
        if let Some(kind) = RequestType::from_code(code) {
            let _ = Response::decode(kind, b.clone());
        }
    }
    let _ = Subscription::decode(b.clone());
    let _ = MemberAssignment::decode(b.clone());
    let _ = decode_error_message(b.clone());
    let _ = frame::decode_request(b.clone());
    let _ = frame::decode_response(b.clone());
    if bytes.len() >= 4 {
        let _ = frame::body_len(bytes[..4].try_into().unwrap(), frame::REQUEST_OVERHEAD);
    }
}

fn record() -> impl Strategy<Value = Record> {
    (
        any::<i64>(),
        any::<i64>(),
        proptest::collection::vec(any::<u8>(), 0..16),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::btree_map("[a-z]{1,6}", proptest::collection::vec(any::<u8>(), 0..8), 0..4),
    )
        .prop_map(|(offset, timestamp, key, value, headers)| Record {
            offset,
            timestamp,
            key: key.into(),
            value: value.into(),
            headers: headers.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect(),
        })
}

fn valid_frames() -> Vec<Vec<u8>> {
    let requests = [
        Request::Produce(ProduceRequest {
            topic: "orders".into(),
            partition: 2,
            records: vec![Record {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                ..Default::default()
            }],
            producer: Some(ProducerIdentity { id: 3, epoch: 1 }),
        }),
        Request::Fetch(FetchRequest {
            topic: "orders".into(),
            partition: 0,
            offset: 5,
            max_bytes: 1024,
            isolation: Some(Isolation::ReadCommitted),
        }),
        Request::JoinGroup(JoinGroupRequest {
            group_id: "g".into(),
            member_id: String::new(),
            client_id: "c".into(),
            protocol_type: "consumer".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 20_000,
            protocols: vec![NamedBlob {
                name: "range".into(),
                data: Some(Subscription { version: 1, topics: vec!["orders".into()], user_data: None }.to_bytes()),
            }],
        }),
        Request::OffsetCommit(OffsetCommitRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: "m".into(),
            topics: vec![CommitTopic {
                topic: "orders".into(),
                partitions: vec![CommitPartition { partition: 0, offset: 9, metadata: String::new() }],
            }],
        }),
    ];
    requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut buf = BytesMut::new();
            r.encode_frame(&mut buf, i as u64, 0).unwrap();
            buf.to_vec()
        })
        .collect()
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        every_decoder(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(which in 0usize..4, edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut bytes = valid_frames()[which].clone();
        for (at, value) in edits {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        every_decoder(&bytes);
        if bytes.len() > 4 {
            // With a recomputed CRC the payload decoders see the mutation too.
            let body_end = bytes.len().saturating_sub(4).max(4);
            let crc = crc32fast::hash(&bytes[4..body_end]);
            let mut fixed = bytes[..body_end].to_vec();
            fixed.extend_from_slice(&crc.to_be_bytes());
            if let Ok((header, payload)) = frame::decode_request(Bytes::copy_from_slice(&fixed[4..])) {
                let _ = Request::decode(header.code, payload);
            }
        }
    }

    #[test]
    fn records_round_trip(records in proptest::collection::vec(record(), 0..8), hwm in any::<i64>()) {
        let response = FetchResponse { high_water_mark: hwm, records, ..Default::default() };
        let mut buf = BytesMut::new();
        response.encode(&mut buf);
        prop_assert_eq!(FetchResponse::decode(buf.freeze()).unwrap(), response);
    }

    #[test]
    fn assignments_round_trip(topics in proptest::collection::btree_map("[a-z.]{1,12}", proptest::collection::vec(any::<i32>(), 0..6), 0..5)) {
        let assignment = MemberAssignment { version: 1, topics: topics.into_iter().collect(), user_data: None };
        prop_assert_eq!(MemberAssignment::decode(assignment.to_bytes()).unwrap(), assignment);
    }
}

#[test]
fn a_huge_count_with_few_bytes_is_refused_without_allocating() {
    // Fetch response: hwm, then a record count of u32::MAX and nothing behind it.
    let mut bytes = vec![0u8; 8];
    bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(FetchResponse::decode(Bytes::from(bytes)).is_err());
    // A Fetch whose topic claims 1000 bytes but has 3 (the frame that kills a v1.0.x broker).
    let mut bytes = 1000u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(b"abc");
    assert!(matches!(FetchRequest::decode(Bytes::from(bytes)), Err(DecodeError::Truncated { .. })));
}
