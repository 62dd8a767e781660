//! Interop with a third-party Kafka client (Python's confluent-kafka, which
//! `scripts/test` installs): what tidewater writes, it reads with every field, and the
//! reverse.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tidewater_core::testing::Recorder;
use tidewater_core::{Driver, EventRegistry, IdFactory, Message, ReadTask, SubscriberScheduler, UuidV7Ids};
use tidewater_kafka::Kafka;

fn python() -> String {
    std::env::var("TIDEWATER_PYTHON")
        .expect("TIDEWATER_PYTHON is not set: run the tests with scripts/test, which installs confluent-kafka")
}

fn run_python(args: &[&str]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop.py");
    let out = Command::new(python()).arg(script).args(args).output().expect("run python");
    assert!(out.status.success(), "interop.py {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

fn topic(case: &str) -> String {
    format!("tw-kafka-{case}-{}", UuidV7Ids.next_id().replace('-', ""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_reads_what_tidewater_writes() {
    let brokers = support::shared_brokers();
    let kafka = Kafka::connect(support::config(&brokers)).await.unwrap();
    let topic = topic("to-python");
    kafka.create_topic(&topic, 3).await.unwrap();
    let sent = Message::new(&topic, vec![0u8, 1, 2, 255])
        .with_id("tw-1")
        .with_key("order-7")
        .with_content_type("application/octet-stream")
        .with_header("tenant", "acme")
        .with_header("trace", "a b c");
    kafka.writer().write(vec![sent.clone()]).await.unwrap();

    let topic_arg = topic.clone();
    let got = tokio::task::spawn_blocking(move || run_python(&["consume", &brokers, &topic_arg, "1"])).await.unwrap();
    let record = &got[0];
    assert_eq!(record["key"], "order-7");
    assert_eq!(record["value"], "000102ff");
    assert_eq!(record["headers"]["tw-id"], "tw-1");
    assert_eq!(record["headers"]["tw-content-type"], "application/octet-stream");
    assert_eq!(record["headers"]["tenant"], "acme");
    assert_eq!(record["headers"]["trace"], "a b c");
    let millis = sent.timestamp.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    assert_eq!(record["timestamp"].as_u64(), Some(millis));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tidewater_reads_what_confluent_kafka_writes() {
    let brokers = support::shared_brokers();
    let kafka = Kafka::connect(support::config(&brokers)).await.unwrap();
    let topic = topic("from-python");
    kafka.create_topic(&topic, 1).await.unwrap();
    let topic_arg = topic.clone();
    let brokers_arg = brokers.clone();
    let sent = tokio::task::spawn_blocking(move || run_python(&["produce", &brokers_arg, &topic_arg])).await.unwrap();
    let sent = &sent[0];

    let recorder = Recorder::new();
    let mut scheduler = SubscriberScheduler::new(kafka.reader(), EventRegistry::new());
    scheduler.add(ReadTask::new(&topic).with_group("from-python"), Arc::new(recorder.clone()));
    scheduler.start().await.unwrap();
    let got = recorder.wait_for(1, Duration::from_secs(60)).await.unwrap();
    scheduler.shutdown(Duration::from_secs(10)).await;
    let m = got[0].message();
    assert_eq!(m.key_str(), sent["key"].as_str());
    assert_eq!(std::str::from_utf8(&m.payload).unwrap(), sent["value"].as_str().unwrap());
    assert_eq!(m.headers.get("tenant"), Some("acme"));
    assert_eq!(m.headers.get("trace"), Some("a b c"));
    assert_eq!(m.content_type.as_deref(), Some("text/plain"), "tw-content-type becomes the content type");
    assert_eq!(m.headers.get("tw-content-type"), None, "and is not repeated as a header");
    assert_eq!(m.id, format!("{topic}-0-0"), "a record without tw-id is named by its position");
    let expected = UNIX_EPOCH + Duration::from_millis(sent["timestamp"].as_u64().unwrap());
    assert_eq!(m.timestamp, expected);
    assert!(m.timestamp < SystemTime::now());
}
