//! A trace across each real broker `scripts/test` starts (JetStream, Kafka, Pulsar),
//! exported to an in-memory span exporter: publish -> handler -> publish -> handler is
//! one trace with each span the child of the one before, and a message from a plain
//! client starts a trace of its own. On the memory driver: which calls a span marks as
//! failed.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tidewater_core::testing::Recorder;
use tidewater_core::{handler_fn, Bus, Delivery, Driver, EventRegistry, HandlerError, Message, Publisher};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// The exporter of this test binary's one subscriber, which every test shares: each
/// picks its own spans out by its topics' names.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("tidewater-tests"));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("the only subscriber of this test binary");
        exporter
    })
}

fn span<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one span named {name:?} among {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    found[0]
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
}

/// Waits until the exporter holds `n` spans that `mine` picks.
async fn finished(n: usize, mine: impl Fn(&SpanData) -> bool) -> Vec<SpanData> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let spans: Vec<SpanData> =
            exporter().get_finished_spans().expect("the exporter answers").into_iter().filter(&mine).collect();
        if spans.len() >= n {
            return spans;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} spans within 30 s; have {spans:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The checkout trace through `driver`, whose name spans show as `messaging.system`.
async fn one_trace_crosses_the_broker_twice(driver: &impl Driver, system: &str) {
    exporter();
    let run = std::process::id();
    let (orders, invoices) = (format!("otel{run}-{system}.orders"), format!("otel{run}-{system}.invoices"));
    for topic in [&orders, &invoices] {
        driver.admin().create_topic(topic, 1).await.unwrap();
    }
    let mine = {
        let (orders, invoices) = (orders.clone(), invoices.clone());
        move |s: &SpanData| {
            s.name.ends_with(orders.as_str()) || s.name.ends_with(invoices.as_str()) || s.name == "checkout"
        }
    };
    let mut bus = Bus::new(driver, EventRegistry::new());
    tidewater_otel::instrument(&mut bus);
    let publisher: Publisher = bus.publisher().clone();
    let invoiced = Recorder::new();
    bus.subscribe(
        &orders,
        handler_fn({
            let (publisher, invoices) = (publisher.clone(), invoices.clone());
            move |_d: Delivery| {
                let (publisher, invoices) = (publisher.clone(), invoices.clone());
                async move {
                    publisher
                        .publish_bytes(&invoices, "invoice", "text/plain")
                        .await
                        .map_err(HandlerError::transient)?;
                    Ok(())
                }
            }
        }),
    )
    .group("billing");
    bus.subscribe(&invoices, invoiced.clone()).group("mailer");
    bus.start().await.unwrap();

    let checkout = tracing::info_span!("checkout", system);
    let id = publisher.publish_bytes(&orders, "order", "text/plain").instrument(checkout.clone()).await.unwrap();
    drop(checkout);
    invoiced.wait_for(1, Duration::from_secs(30)).await.unwrap();
    let spans =
        finished(5, |s| mine(s) && (s.name != "checkout" || attribute(s, "system").as_deref() == Some(system))).await;

    let checkout = span(&spans, "checkout");
    let publish_order = span(&spans, &format!("publish {orders}"));
    let process_order = span(&spans, &format!("process {orders}"));
    let publish_invoice = span(&spans, &format!("publish {invoices}"));
    let process_invoice = span(&spans, &format!("process {invoices}"));
    let trace = checkout.span_context.trace_id();
    for s in [publish_order, process_order, publish_invoice, process_invoice] {
        assert_eq!(s.span_context.trace_id(), trace, "{} is in the checkout's trace", s.name);
    }
    assert_eq!(publish_order.parent_span_id, checkout.span_context.span_id());
    assert_eq!(process_order.parent_span_id, publish_order.span_context.span_id());
    assert!(process_order.parent_span_is_remote, "the consumer's parent came through the broker");
    assert_eq!(publish_invoice.parent_span_id, process_order.span_context.span_id());
    assert_eq!(process_invoice.parent_span_id, publish_invoice.span_context.span_id());
    assert_eq!(attribute(process_order, "messaging.message.id").as_deref(), Some(id.as_str()));
    assert_eq!(attribute(process_order, "messaging.consumer.group.name").as_deref(), Some("billing"));
    assert_eq!(attribute(publish_order, "messaging.system").as_deref(), Some(system));

    // A plain client's message, with no trace context: a trace of its own.
    driver.writer().write(vec![Message::new(&invoices, "from elsewhere").with_id("plain-1")]).await.unwrap();
    invoiced.wait_for(2, Duration::from_secs(30)).await.unwrap();
    let spans = finished(1, |s| mine(s) && attribute(s, "messaging.message.id").as_deref() == Some("plain-1")).await;
    let process = span(&spans, &format!("process {invoices}"));
    assert_eq!(process.parent_span_id, SpanId::INVALID, "a root span");
    assert_ne!(process.span_context.trace_id(), trace, "a new trace");
    bus.shutdown(Duration::from_secs(5)).await.unwrap();
    for topic in [&orders, &invoices] {
        driver.admin().delete_topic(topic).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_jetstream() {
    let nats = tidewater_nats::NatsConfig::new(tidewater_testkit::shared::nats_url());
    let js = tidewater_nats::JetStream::connect(&nats, tidewater_nats::JetStreamConfig::default())
        .await
        .expect("the nats-server scripts/test started");
    one_trace_crosses_the_broker_twice(&js, "nats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka() {
    let config = tidewater_kafka::KafkaConfig::new(tidewater_testkit::shared::kafka_brokers());
    let kafka = tidewater_kafka::Kafka::connect(config).await.expect("the Kafka scripts/test started");
    one_trace_crosses_the_broker_twice(&kafka, "kafka").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_pulsar() {
    let config = tidewater_pulsar::PulsarConfig::new(tidewater_testkit::shared::pulsar_url())
        .admin_url(tidewater_testkit::shared::pulsar_admin_url());
    let pulsar = tidewater_pulsar::Pulsar::connect(config).await.expect("the Pulsar scripts/test started");
    one_trace_crosses_the_broker_twice(&pulsar, "pulsar").await;
}

/// A batch has many parents: its one consumer span links the publish span of each
/// message in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_links_every_message_it_took() {
    exporter();
    let nats = tidewater_nats::NatsConfig::new(tidewater_testkit::shared::nats_url());
    let js = tidewater_nats::JetStream::connect(&nats, tidewater_nats::JetStreamConfig::default())
        .await
        .expect("the nats-server scripts/test started");
    let topic = format!("otel{}-batch.clicks", std::process::id());
    js.admin().create_topic(&topic, 1).await.unwrap();
    let mut bus = Bus::new(&js, EventRegistry::new());
    tidewater_otel::instrument(&mut bus);
    let handled = Recorder::new();
    let store = {
        let handled = handled.clone();
        tidewater_core::batch_handler_fn(move |batch: Vec<Delivery>| {
            let handled = handled.clone();
            async move {
                for delivery in batch {
                    handled.record(delivery);
                }
                Ok::<_, tidewater_core::BatchError>(())
            }
        })
    };
    bus.subscribe_batch(&topic, 3, Duration::from_secs(5), tidewater_otel::TracedBatch::new(store)).group("clicks");
    bus.start().await.unwrap();
    // Three messages, each published in a trace of its own.
    for i in 0..3 {
        let publish = bus.publisher().publish_bytes(&topic, format!("click {i}"), "text/plain");
        publish.instrument(tracing::info_span!("page", i)).await.unwrap();
    }
    handled.wait_for(3, Duration::from_secs(30)).await.unwrap();
    let publish_name = format!("publish {topic}");
    let process_name = format!("process {topic}");
    let spans = finished(4, |s| s.name == publish_name || s.name == process_name).await;
    let published: Vec<_> = spans.iter().filter(|s| s.name == publish_name).map(|s| s.span_context.clone()).collect();
    let batch = span(&spans, &process_name);
    assert_eq!(batch.parent_span_id, SpanId::INVALID, "a batch span is a root of its own");
    let mut linked: Vec<_> = batch.links.links.iter().map(|l| l.span_context.span_id()).collect();
    let mut want: Vec<_> = published.iter().map(|c| c.span_id()).collect();
    linked.sort_by_key(|id| id.to_string());
    want.sort_by_key(|id| id.to_string());
    assert_eq!(linked, want, "the batch links the publish span of each of its messages");
    bus.shutdown(Duration::from_secs(5)).await.unwrap();
    js.admin().delete_topic(&topic).await.unwrap();
}

/// A failed call's consumer span has the error status; a delivery let go at a stop was
/// not processed, but nothing failed, and its span says so by leaving the status unset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_let_go_at_the_stop_is_no_error() {
    exporter();
    let broker = tidewater_memory::MemoryBroker::new();
    let (failing, letting_go) =
        (format!("otel{}-fails", std::process::id()), format!("otel{}-lets-go", std::process::id()));
    let mut bus = Bus::new(&broker, EventRegistry::new());
    tidewater_otel::instrument(&mut bus);
    bus.subscribe(&failing, handler_fn(|_: Delivery| async { Err::<(), _>(HandlerError::transient("down")) }))
        .group("g");
    let waiting = Recorder::new();
    let handler = {
        let waiting = waiting.clone();
        handler_fn(move |delivery: Delivery| {
            let waiting = waiting.clone();
            async move {
                let stop = tidewater_core::StopSignal::current();
                waiting.record(delivery);
                stop.stopped().await;
                Err::<(), _>(HandlerError::stopping())
            }
        })
    };
    bus.subscribe(&letting_go, handler).group("g");
    bus.start().await.unwrap();
    bus.publisher().publish_bytes(&failing, "x", "text/plain").await.unwrap();
    bus.publisher().publish_bytes(&letting_go, "y", "text/plain").await.unwrap();
    let failed_name = format!("process {failing}");
    let failed = finished(1, |s| s.name == failed_name).await;
    assert!(matches!(failed[0].status, opentelemetry::trace::Status::Error { .. }), "{:?}", failed[0].status);
    waiting.wait_for(1, Duration::from_secs(30)).await.unwrap();
    bus.shutdown(Duration::from_secs(30)).await.unwrap();
    let let_go_name = format!("process {letting_go}");
    let let_go = finished(1, |s| s.name == let_go_name).await;
    assert_eq!(let_go[0].status, opentelemetry::trace::Status::Unset);
}
