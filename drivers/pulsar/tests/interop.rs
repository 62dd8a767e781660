//! Interop with the official Python client (pulsar-client, which `scripts/setup`
//! installs) on the shared Apache Pulsar: what tidewater writes, it reads with its key
//! and properties, and the reverse.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;
use tidewater_conformance::{fresh_topic, EVERY_FIELD_HEADERS, EVERY_FIELD_PAYLOAD_HEX};
use tidewater_core::testing::Recorder;
use tidewater_core::{Driver, EventRegistry, ReadTask, SubscriberScheduler};
use tidewater_pulsar::Pulsar;

fn run_python(args: &[&str]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop.py");
    let out = Command::new(tidewater_testkit::install::python()).arg(script).args(args).output().expect("run python");
    assert!(out.status.success(), "interop.py {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn broker_url() -> String {
    support::shared_url()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_reads_what_tidewater_writes() {
    let pulsar = Pulsar::connect(support::config(&support::shared_url())).await.unwrap();
    let topic = fresh_topic("to-python");
    let sent = tidewater_conformance::message_with_every_field(&topic);
    pulsar.writer().write(vec![sent.clone()]).await.unwrap();

    let topic_arg = topic.clone();
    let got =
        tokio::task::spawn_blocking(move || run_python(&["consume", &broker_url(), &topic_arg, "1"])).await.unwrap();
    let m = &got[0];
    assert_eq!(m["key"], "order-7");
    assert_eq!(m["ordering_key"], "order-7");
    assert_eq!(m["value"], EVERY_FIELD_PAYLOAD_HEX);
    for (name, value) in EVERY_FIELD_HEADERS {
        assert_eq!(m["properties"][name], value, "property {name}");
    }
    let millis = sent.timestamp.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    assert_eq!(m["event_time"].as_u64(), Some(millis));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tidewater_reads_what_the_python_client_writes() {
    let pulsar = Pulsar::connect(support::config(&support::shared_url())).await.unwrap();
    let topic = fresh_topic("from-python");
    let topic_arg = topic.clone();
    let sent = tokio::task::spawn_blocking(move || run_python(&["produce", &broker_url(), &topic_arg])).await.unwrap();
    let sent = &sent[0];

    let recorder = Recorder::new();
    let mut scheduler = SubscriberScheduler::new(pulsar.reader(), EventRegistry::new());
    scheduler.add(ReadTask::new(&topic).with_group("from-python"), Arc::new(recorder.clone()));
    scheduler.start().await.unwrap();
    let got = recorder.wait_for(1, Duration::from_secs(60)).await.unwrap();
    scheduler.shutdown(Duration::from_secs(10)).await;
    let m = got[0].message();
    assert_eq!(m.key_str(), sent["key"].as_str());
    assert_eq!(std::str::from_utf8(&m.payload).unwrap(), sent["value"].as_str().unwrap());
    assert_eq!(m.headers.get("tenant"), Some("acme"));
    assert_eq!(m.headers.get("trace"), Some("a b c"));
    assert_eq!(m.content_type.as_deref(), Some("text/plain"));
    assert!(!m.headers.contains("tw-content-type"), "the content type is a field, not a header");
    assert_eq!(
        m.timestamp.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
        sent["event_time"].as_u64().unwrap()
    );
    assert!(m.id.starts_with(&format!("{topic}-")), "a message without tw-id gets its Pulsar id: {}", m.id);
}
