//! A trace across a real broker (the JetStream `scripts/test` starts), exported to an
//! in-memory span exporter: publish -> handler -> publish -> handler is one trace with
//! each span the child of the one before, and a message from a plain client starts a
//! trace of its own.

use std::time::Duration;

use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tidewater_core::testing::Recorder;
use tidewater_core::{handler_fn, Bus, Delivery, Driver, EventRegistry, HandlerError, Message, Publisher};
use tidewater_nats::{JetStream, JetStreamConfig, NatsConfig};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

fn span<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one span named {name:?} among {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    found[0]
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
}

/// Waits until the exporter holds `n` spans.
async fn finished(exporter: &InMemorySpanExporter, n: usize) -> Vec<SpanData> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let spans = exporter.get_finished_spans().expect("the exporter answers");
        if spans.len() >= n {
            return spans;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} spans within 30 s; have {spans:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_crosses_the_broker_twice() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tidewater-tests")));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");

    let nats = NatsConfig::new(tidewater_testkit::shared::nats_url());
    let js = JetStream::connect(&nats, JetStreamConfig::default()).await.expect("the nats-server scripts/test started");
    let run = std::process::id();
    let (orders, invoices) = (format!("otel{run}.orders"), format!("otel{run}.invoices"));
    for topic in [&orders, &invoices] {
        js.admin().create_topic(topic, 1).await.unwrap();
    }
    let mut bus = Bus::new(&js, EventRegistry::new());
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

    let id = publisher
        .publish_bytes(&orders, "order", "text/plain")
        .instrument(tracing::info_span!("checkout"))
        .await
        .unwrap();
    invoiced.wait_for(1, Duration::from_secs(30)).await.unwrap();
    let spans = finished(&exporter, 5).await;

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
    assert_eq!(attribute(publish_order, "messaging.system").as_deref(), Some("nats"));

    // A plain client's message, with no trace context: a trace of its own.
    exporter.reset();
    js.writer().write(vec![Message::new(&invoices, "from elsewhere").with_id("plain-1")]).await.unwrap();
    invoiced.wait_for(2, Duration::from_secs(30)).await.unwrap();
    let spans = finished(&exporter, 1).await;
    let process = span(&spans, &format!("process {invoices}"));
    assert_eq!(process.parent_span_id, SpanId::INVALID, "a root span");
    assert_ne!(process.span_context.trace_id(), trace, "a new trace");
    bus.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(provider);
}
