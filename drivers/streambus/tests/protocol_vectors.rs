//! The test vectors of `shared/streambus-protocol.md` §1.12, byte for byte, both ways.

use bytes::{Bytes, BytesMut};
use tidewater_streambus::protocol::frame::{self, flags, ResponseHeader};
use tidewater_streambus::protocol::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn request_frame(request: &Request, id: u64, flags: u16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    request.encode_frame(&mut buf, id, flags).unwrap();
    buf.to_vec()
}

/// Decodes a whole request frame the way the broker double does.
fn parse_request(bytes: &[u8]) -> (RequestHeader, Request) {
    let len = frame::body_len(bytes[..4].try_into().unwrap(), frame::REQUEST_OVERHEAD).unwrap();
    assert_eq!(len, bytes.len() - 4);
    let (header, payload) = frame::decode_request(Bytes::copy_from_slice(&bytes[4..])).unwrap();
    (header, Request::decode(header.code, payload).unwrap())
}

fn parse_response(bytes: &[u8]) -> (ResponseHeader, Bytes) {
    let len = frame::body_len(bytes[..4].try_into().unwrap(), frame::RESPONSE_OVERHEAD).unwrap();
    assert_eq!(len, bytes.len() - 4);
    frame::decode_response(Bytes::copy_from_slice(&bytes[4..])).unwrap()
}

const HEALTH_REQUEST: &str = "00000010 0000000000000001 07 01 0000 daa0bd51";
const HEALTH_RESPONSE: &str = "00000022 0000000000000001 00 0000 00000007 6865616c746879 0000000000000024 f1b292cc";
const CREATE_REQUEST: &str = "0000001f 0000000000000002 04 01 0000 00000005 70726f6265 00000002 0001 feaa8173";
const PRODUCE_REQUEST: &str = "0000004c 0000000000000003 01 01 0001 00000005 70726f6265 00000001 00000001 \
     0000000000000000 17979cfe3d85cd15 00000002 6b31 00000002 7631 00000001 00000002 6831 00000001 78 ddbf6b92";
const PRODUCE_RESPONSE: &str = "00000023 0000000000000003 00 0000 0000000000000000 00000001 0000000000000001 516b214d";
const ERROR_RESPONSE: &str = "0000002e 0000000000000004 01 0008 0000001b \
     746f706963206e6f7375636820646f6573206e6f74206578697374 c371be3c";

fn probe_record() -> Record {
    Record {
        offset: 0,
        timestamp: 1_700_000_000_123_456_789,
        key: Bytes::from_static(b"k1"),
        value: Bytes::from_static(b"v1"),
        headers: vec![("h1".into(), Bytes::from_static(b"x"))],
    }
}

#[test]
fn crc_is_ieee() {
    assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
}

#[test]
fn health_check_request() {
    assert_eq!(request_frame(&Request::HealthCheck, 1, 0), hex(HEALTH_REQUEST));
    let (header, request) = parse_request(&hex(HEALTH_REQUEST));
    assert_eq!((header.id, header.version, header.flags), (1, 1, 0));
    assert_eq!(request, Request::HealthCheck);
}

#[test]
fn health_check_response() {
    let response = Response::HealthCheck(HealthResponse { status: "healthy".into(), uptime_seconds: 36 });
    let mut buf = BytesMut::new();
    encode_ok_frame(&mut buf, 1, &response).unwrap();
    assert_eq!(buf.to_vec(), hex(HEALTH_RESPONSE));
    let (header, payload) = parse_response(&hex(HEALTH_RESPONSE));
    assert_eq!((header.id, header.status, header.error_code), (1, 0, 0));
    assert_eq!(Response::decode(RequestType::HealthCheck, payload).unwrap(), response);
}

#[test]
fn create_topic_request() {
    let request =
        Request::CreateTopic(CreateTopicRequest { topic: "probe".into(), partitions: 2, replication_factor: 1 });
    assert_eq!(request_frame(&request, 2, 0), hex(CREATE_REQUEST));
    assert_eq!(parse_request(&hex(CREATE_REQUEST)).1, request);
}

#[test]
fn produce_request() {
    let request = Request::Produce(ProduceRequest {
        topic: "probe".into(),
        partition: 1,
        records: vec![probe_record()],
        producer: None,
    });
    assert_eq!(request_frame(&request, 3, flags::REQUIRE_ACK), hex(PRODUCE_REQUEST));
    let (header, decoded) = parse_request(&hex(PRODUCE_REQUEST));
    assert_eq!(header.flags, flags::REQUIRE_ACK);
    assert_eq!(decoded, request);
}

#[test]
fn produce_response() {
    let response = Response::Produce(ProduceResponse { base_offset: 0, count: 1, high_water_mark: 1 });
    let mut buf = BytesMut::new();
    encode_ok_frame(&mut buf, 3, &response).unwrap();
    assert_eq!(buf.to_vec(), hex(PRODUCE_RESPONSE));
    let (_, payload) = parse_response(&hex(PRODUCE_RESPONSE));
    assert_eq!(Response::decode(RequestType::Produce, payload).unwrap(), response);
}

#[test]
fn error_response() {
    let mut buf = BytesMut::new();
    encode_error_frame(&mut buf, 4, ErrorCode::TOPIC_NOT_FOUND, "topic nosuch does not exist").unwrap();
    assert_eq!(buf.to_vec(), hex(ERROR_RESPONSE));
    let (header, payload) = parse_response(&hex(ERROR_RESPONSE));
    assert_eq!(header.status, Status::Error.code());
    assert_eq!(ErrorCode(header.error_code), ErrorCode::TOPIC_NOT_FOUND);
    assert_eq!(decode_error_message(payload).unwrap(), "topic nosuch does not exist");
}

#[test]
fn a_flipped_bit_fails_the_checksum() {
    let mut bytes = hex(PRODUCE_REQUEST);
    bytes[30] ^= 0x01;
    let err = frame::decode_request(Bytes::copy_from_slice(&bytes[4..])).unwrap_err();
    assert!(matches!(err, FrameError::Checksum { .. }), "{err}");
}

#[test]
fn later_trailers_are_optional_both_ways() {
    // A later client's produce (producer id and epoch) decodes; a v1.0.x one leaves it None.
    let mut produce = ProduceRequest { topic: "t".into(), partition: 0, records: vec![probe_record()], producer: None };
    let mut buf = BytesMut::new();
    produce.encode(&mut buf);
    assert_eq!(ProduceRequest::decode(buf.split().freeze()).unwrap().producer, None);
    produce.producer = Some(ProducerIdentity { id: 7, epoch: 2 });
    produce.encode(&mut buf);
    assert_eq!(ProduceRequest::decode(buf.split().freeze()).unwrap(), produce);

    // A v1.0.x fetch response (no LSO, no next offset) means "after the last record".
    let old = FetchResponse {
        high_water_mark: 5,
        records: vec![Record { offset: 3, ..probe_record() }],
        ..Default::default()
    };
    old.encode(&mut buf);
    let decoded = FetchResponse::decode(buf.split().freeze()).unwrap();
    assert_eq!((decoded.last_stable_offset, decoded.next_offset, decoded.next_position(3)), (None, None, 4));
    let later = FetchResponse { last_stable_offset: Some(5), next_offset: Some(9), ..old };
    later.encode(&mut buf);
    let decoded = FetchResponse::decode(buf.split().freeze()).unwrap();
    assert_eq!(decoded.next_position(3), 9, "next_offset steps over filtered control records");
}

#[test]
fn a_frame_over_ten_mebibytes_is_refused() {
    let big = Record { value: Bytes::from(vec![0u8; MAX_FRAME]), ..probe_record() };
    let request =
        Request::Produce(ProduceRequest { topic: "t".into(), partition: 0, records: vec![big], producer: None });
    let mut buf = BytesMut::new();
    assert!(matches!(request.encode_frame(&mut buf, 1, 0), Err(FrameError::TooLarge { .. })));
    assert!(buf.is_empty(), "nothing of a refused frame is left in the buffer");
    assert!(frame::body_len(((MAX_FRAME - 3) as u32).to_be_bytes(), frame::REQUEST_OVERHEAD).is_err());
    assert!(frame::body_len(((MAX_FRAME - 4) as u32).to_be_bytes(), frame::REQUEST_OVERHEAD).is_ok());
}
