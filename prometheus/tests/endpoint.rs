//! The health and metrics endpoint over a real nats-server that is killed and started
//! again: ready answers 503 while it is away and 200 once it is back; metrics are served
//! all along.

mod support;

use std::time::Duration;

use tidewater_core::testing::Recorder;
use tidewater_core::{Bus, EventRegistry};
use tidewater_nats::{JetStream, JetStreamConfig, NatsConfig};
use tidewater_prometheus::PrometheusMetrics;
use tidewater_testkit::{NatsRelease, NatsServer, Restart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The status and body of `GET path`.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("the endpoint listens");
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("HTTP: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// Asks until `path` answers `status`, as a probe would.
async fn until(addr: std::net::SocketAddr, path: &str, status: u16) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (got, body) = get(addr, path).await;
        if got == status {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path} answers {status} within a minute; last {got}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_broker_and_metrics_are_served() {
    let mut server = NatsServer::start(NatsRelease::Current);
    let nats = NatsConfig { request_timeout: Duration::from_secs(2), ..NatsConfig::new(server.url()) };
    let js = JetStream::connect(&nats, JetStreamConfig::default()).await.unwrap();
    js.create_stream("probed", &["probed.events"]).await.unwrap();
    let mut bus = Bus::new(&js, EventRegistry::new());
    let metrics = PrometheusMetrics::new();
    metrics.instrument(&mut bus);
    let seen = Recorder::new();
    bus.subscribe("probed.events", seen.clone()).group("probe");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let endpoint = tokio::spawn(tidewater_prometheus::serve(listener, metrics.clone(), bus.monitor()));
    bus.start().await.unwrap();

    let body = until(addr, "/health/ready", 200).await;
    let health: serde_json::Value = serde_json::from_str(&body).expect("the health as JSON");
    assert_eq!(health["tasks"][0]["topic"], "probed.events", "{body}");
    assert_eq!(get(addr, "/health/live").await.0, 200);
    bus.publisher().publish_bytes("probed.events", "one", "text/plain").await.unwrap();
    seen.wait_for(1, Duration::from_secs(30)).await.unwrap();
    let (status, text) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let task = [("topic", "probed.events"), ("group", "probe")];
    let acked = support::value(&text, "tidewater_messages_acked_total", &task);
    assert!(acked.is_some(), "the task's counters are served:\n{text}");

    tokio::task::block_in_place(|| server.kill());
    let body = until(addr, "/health/ready", 503).await;
    assert!(body.contains("\"ready\":false"), "{body}");
    assert_eq!(get(addr, "/health/live").await.0, 200, "the workers run on while the broker is away");

    tokio::task::block_in_place(|| server.restart());
    until(addr, "/health/ready", 200).await;
    assert_eq!(get(addr, "/nowhere").await.0, 404);
    bus.shutdown(Duration::from_secs(5)).await.unwrap();
    endpoint.abort();
}

/// Before, a scrape asked each group's lag in turn, each taking the driver's request
/// timeout (10 s here) while the broker was away: three groups made a scrape of about
/// a minute, far past the 10 s Prometheus waits, so every metric was lost. Now the
/// groups are asked at once, each for at most the lag timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_while_the_broker_is_away_is_served_in_time() {
    const PROMETHEUS_WAITS: Duration = Duration::from_secs(10);
    let mut server = NatsServer::start(NatsRelease::Current);
    let js = JetStream::connect(&NatsConfig::new(server.url()), JetStreamConfig::default()).await.unwrap();
    let mut bus = Bus::new(&js, EventRegistry::new());
    let metrics = PrometheusMetrics::new().with_lag_timeout(Duration::from_secs(1));
    metrics.instrument(&mut bus);
    for name in ["away1", "away2", "away3"] {
        js.create_stream(name, &[&format!("{name}.events")]).await.unwrap();
        bus.subscribe(format!("{name}.events"), Recorder::new()).group("probe");
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let endpoint = tokio::spawn(tidewater_prometheus::serve(listener, metrics.clone(), bus.monitor()));
    bus.start().await.unwrap();
    until(addr, "/health/ready", 200).await;
    let (_, text) = get(addr, "/metrics").await;
    assert!(text.contains("tidewater_consumer_lag{"), "the lag is there while the broker is:\n{text}");
    assert_eq!(support::value(&text, "tidewater_connected", &[("driver", "nats")]), Some(1.0), "{text}");

    tokio::task::block_in_place(|| server.kill());
    until(addr, "/health/ready", 503).await;
    let (status, text) = tokio::time::timeout(PROMETHEUS_WAITS, get(addr, "/metrics"))
        .await
        .expect("a scrape is served before Prometheus gives up on it");
    assert_eq!(status, 200);
    for name in ["away1", "away2", "away3"] {
        let task = [("topic", &*format!("{name}.events")), ("group", "probe")];
        assert_eq!(support::value(&text, "tidewater_messages_delivered_total", &task), Some(0.0), "{text}");
    }
    assert!(!text.contains("tidewater_consumer_lag{"), "no lag the broker did not tell:\n{text}");
    assert_eq!(support::value(&text, "tidewater_connected", &[("driver", "nats")]), Some(0.0), "{text}");

    tokio::task::block_in_place(|| server.restart());
    until(addr, "/health/ready", 200).await;
    bus.shutdown(Duration::from_secs(5)).await.unwrap();
    endpoint.abort();
}
