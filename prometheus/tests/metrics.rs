//! The exposition after a run, checked against what the run did, and the lag draining
//! to zero as a backlog is handled: on the memory driver and on the real Kafka that
//! `scripts/test` starts.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{until, value};
use tidewater_core::{handler_fn, Bus, Delivery, Driver, EventRegistry, HandlerError};
use tidewater_memory::MemoryBroker;
use tidewater_middleware::{CircuitBreaker, Retry};
use tidewater_prometheus::PrometheusMetrics;
use tokio::sync::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_numbers_are_what_the_run_did() {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, EventRegistry::new());
    let metrics = PrometheusMetrics::new();
    metrics.instrument(&mut bus);
    // One message fails for good (the bus dead-letters it), one fails once and passes
    // on the retry, the other eight pass.
    bus.subscribe(
        "orders",
        handler_fn(|d: Delivery| async move {
            match &d.message().payload[..] {
                b"bad" => Err(HandlerError::permanent("no such customer")),
                b"flaky" if d.attempt() == 1 => Err(HandlerError::transient("the database blinked")),
                _ => Ok(()),
            }
        }),
    )
    .group("billing")
    .middleware(Retry::new().max_attempts(3).min_delay(Duration::from_millis(1)));
    bus.start().await.unwrap();
    let payloads = ["ok", "ok", "bad", "ok", "flaky", "ok", "ok", "ok", "ok", "ok"];
    for payload in payloads {
        bus.publisher().publish_bytes("orders", payload, "text/plain").await.unwrap();
    }

    let task = [("topic", "orders"), ("group", "billing")];
    let text = until(&metrics, "every message settled", |t| {
        value(t, "tidewater_messages_acked_total", &task) == Some(9.0)
            && value(t, "tidewater_messages_dead_lettered_total", &task) == Some(1.0)
    })
    .await;
    let get = |name: &str, labels: &[(&str, &str)]| value(&text, name, labels);
    assert_eq!(get("tidewater_messages_published_total", &[("topic", "orders")]), Some(10.0), "{text}");
    assert_eq!(get("tidewater_messages_published_total", &[("topic", "orders.dlq")]), Some(1.0), "{text}");
    assert_eq!(get("tidewater_messages_delivered_total", &task), Some(10.0), "{text}");
    assert_eq!(get("tidewater_messages_nacked_total", &task), Some(0.0), "{text}");
    assert_eq!(get("tidewater_messages_skipped_total", &task), Some(0.0), "{text}");
    assert_eq!(get("tidewater_handler_retries_total", &task), Some(1.0), "{text}");
    assert_eq!(get("tidewater_handler_duration_seconds_count", &task), Some(10.0), "{text}");
    assert_eq!(get("tidewater_messages_in_flight", &task), Some(0.0), "{text}");
    assert_eq!(get("tidewater_task_ready", &task), Some(1.0), "{text}");
    assert_eq!(get("tidewater_task_paused", &task), Some(0.0), "{text}");
    assert_eq!(bus.monitor().pause("orders", Some("billing")), 1);
    let paused = metrics.render().await;
    assert_eq!(value(&paused, "tidewater_task_paused", &task), Some(1.0), "{paused}");
    bus.monitor().resume("orders", None);
    assert_eq!(get("tidewater_consumer_lag", &task), Some(0.0), "{text}");
    assert_eq!(get("tidewater_reader_restarts_total", &task), Some(0.0), "{text}");
    // Each publish is one write call, and so is the dead letter's.
    assert_eq!(get("tidewater_publish_duration_seconds_count", &[("topic", "orders")]), Some(10.0), "{text}");
    assert_eq!(get("tidewater_publish_duration_seconds_count", &[("topic", "orders.dlq")]), Some(1.0), "{text}");
    let took = get("tidewater_publish_duration_seconds_sum", &[("topic", "orders")]).unwrap();
    assert!(took > 0.0 && took < 10.0, "ten writes to memory took {took} s in all");
    bus.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A breaker opened by an outage: the scrape shows it open and what it holds, then
/// closed, once the dependency is back and a trial succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_breaker_shows_its_state_and_what_it_holds() {
    let broker = MemoryBroker::new();
    broker.create_topic("orders", 1).unwrap();
    let mut bus = Bus::new(&broker, EventRegistry::new());
    let metrics = PrometheusMetrics::new();
    metrics.instrument(&mut bus);
    let breaker = CircuitBreaker::new("payments-api").failures(1).open_for(Duration::from_millis(300));
    metrics.watch_breaker(&breaker);
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let handler = {
        let down = Arc::clone(&down);
        handler_fn(move |_: Delivery| {
            let down = down.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if down {
                    Err(HandlerError::transient("payments API unreachable"))
                } else {
                    Ok(())
                }
            }
        })
    };
    bus.subscribe("orders", handler).group("billing").middleware(breaker.clone());
    bus.start().await.unwrap();
    for _ in 0..2 {
        bus.publisher().publish_bytes("orders", "{}", "application/json").await.unwrap();
    }

    let circuit = |state| [("breaker", "payments-api"), ("state", state)];
    let text = until(&metrics, "the circuit open, holding a delivery", |t| {
        value(t, "tidewater_circuit_state", &circuit("open")) == Some(1.0)
            && value(t, "tidewater_circuit_held", &[("breaker", "payments-api")]) == Some(1.0)
    })
    .await;
    assert_eq!(value(&text, "tidewater_circuit_state", &circuit("closed")), Some(0.0), "{text}");
    assert_eq!(value(&text, "tidewater_circuit_opened_total", &[("breaker", "payments-api")]), Some(1.0), "{text}");
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    let task = [("topic", "orders"), ("group", "billing")];
    let text = until(&metrics, "the circuit closed and both messages acked", |t| {
        value(t, "tidewater_circuit_state", &circuit("closed")) == Some(1.0)
            && value(t, "tidewater_messages_acked_total", &task) == Some(2.0)
    })
    .await;
    assert_eq!(value(&text, "tidewater_circuit_held", &[("breaker", "payments-api")]), Some(0.0), "{text}");
    assert_eq!(value(&text, "tidewater_circuit_state", &circuit("half_open")), Some(0.0), "{text}");
    bus.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// 20 messages wait behind a handler that holds the first: the lag shows all 20 and one
/// in flight; released, the lag goes to zero.
async fn lag_drains(driver: &impl Driver, topic: &str) {
    let mut bus = Bus::new(driver, EventRegistry::new());
    let metrics = PrometheusMetrics::new();
    metrics.instrument(&mut bus);
    let gate = Arc::new(Semaphore::new(0));
    bus.subscribe(
        topic,
        handler_fn({
            let gate = Arc::clone(&gate);
            move |_d: Delivery| {
                let gate = Arc::clone(&gate);
                async move {
                    gate.acquire().await.expect("the gate stays open").forget();
                    Ok::<_, HandlerError>(())
                }
            }
        }),
    )
    .group("drainers");
    bus.start().await.unwrap();
    for i in 0..20 {
        bus.publisher().publish_bytes(topic, format!("m{i}"), "text/plain").await.unwrap();
    }
    let task = [("topic", topic), ("group", "drainers")];
    until(&metrics, "a lag of 20 with one in flight", |t| {
        value(t, "tidewater_consumer_lag", &task) == Some(20.0)
            && value(t, "tidewater_messages_in_flight", &task) == Some(1.0)
    })
    .await;
    gate.add_permits(20);
    until(&metrics, "the lag back to 0", |t| {
        value(t, "tidewater_consumer_lag", &task) == Some(0.0)
            && value(t, "tidewater_messages_acked_total", &task) == Some(20.0)
    })
    .await;
    bus.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_drains_on_memory() {
    lag_drains(&MemoryBroker::new(), "backlog").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_drains_on_kafka() {
    let kafka =
        tidewater_kafka::Kafka::connect(tidewater_kafka::KafkaConfig::new(tidewater_testkit::shared::kafka_brokers()))
            .await
            .expect("the Kafka scripts/test started");
    let topic = format!("prometheus-lag-{}", std::process::id());
    kafka.admin().create_topic(&topic, 3).await.unwrap();
    lag_drains(&kafka, &topic).await;
    kafka.admin().delete_topic(&topic).await.unwrap();
}
