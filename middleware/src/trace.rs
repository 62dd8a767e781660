//! Trace: a span around each handler call.

use tidewater_core::{Around, Delivery, HandlerError, Inner};
use tracing::Instrument;

/// Runs each handler call in a `tidewater.handle` span with the topic, message id,
/// attempt and group, and records the outcome (`ok`, `transient`, `permanent`) on it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Trace;

impl Around for Trace {
    async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
        let message = delivery.message();
        let span = tracing::info_span!(
            "tidewater.handle",
            topic = %message.stream,
            id = %message.id,
            attempt = delivery.attempt(),
            group = delivery.group().unwrap_or_default(),
            outcome = tracing::field::Empty,
        );
        if span.is_disabled() {
            // No subscriber takes the span: a call instrumented with it would still enter
            // and leave it at each poll and again to drop the call, for nothing. The
            // failure's event may be wanted on its own.
            let result = next.run(delivery).await;
            if let Err(err) = &result {
                failed(err);
            }
            return result;
        }
        // The span is the instrumented call's own, not a clone: a clone of an enabled
        // span is a call into the subscriber, and so is its drop.
        let mut call = std::pin::pin!(next.run(delivery).instrument(span));
        let result = call.as_mut().await;
        let span = call.span();
        let outcome = match &result {
            Ok(()) => "ok",
            // Not a failure: the delivery was let go unprocessed at a stop.
            Err(e) if e.is_stopping() => "stopping",
            Err(e) if e.is_transient() => "transient",
            Err(_) => "permanent",
        };
        span.record("outcome", outcome);
        if let Err(err) = &result {
            span.in_scope(|| failed(err));
        }
        result
    }
}

/// The event for a call that returned `err`.
fn failed(err: &HandlerError) {
    if err.is_stopping() {
        tracing::debug!("handler let the delivery go at the stop");
    } else {
        tracing::debug!(error = %err, "handler failed");
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use tidewater_core::{handler_fn, Handler, Message, Position};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    use super::*;

    /// What a subscriber saw: each span's name and fields as text, in the order they came,
    /// and each event's message with the span it was in.
    #[derive(Default)]
    struct Seen {
        spans: Vec<(&'static str, Vec<(String, String)>)>,
        events: Vec<(String, Option<u64>)>,
        current: Vec<u64>,
    }

    /// A subscriber that records into `Seen`, taking spans only when `spans` is set.
    #[derive(Clone)]
    struct Recording {
        seen: Arc<Mutex<Seen>>,
        spans: bool,
        next: Arc<AtomicU64>,
    }

    impl Recording {
        fn new(spans: bool) -> Self {
            Self { seen: Arc::default(), spans, next: Arc::new(AtomicU64::new(1)) }
        }
    }

    struct Fields<'a>(&'a mut Vec<(String, String)>);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().to_owned(), value.to_owned()));
        }
    }

    impl Subscriber for Recording {
        fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
            // Asked each time: the tests' subscribers differ in what they take.
            tracing::subscriber::Interest::sometimes()
        }

        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            metadata.is_event() || self.spans
        }

        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut fields = Vec::new();
            span.record(&mut Fields(&mut fields));
            self.seen.lock().unwrap().spans.push((span.metadata().name(), fields));
            Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed))
        }

        fn record(&self, span: &Id, values: &Record<'_>) {
            let mut seen = self.seen.lock().unwrap();
            let index = span.into_u64() as usize - 1;
            values.record(&mut Fields(&mut seen.spans[index].1));
        }

        fn record_follows_from(&self, _: &Id, _: &Id) {}

        fn event(&self, event: &Event<'_>) {
            let mut fields = Vec::new();
            event.record(&mut Fields(&mut fields));
            let message = fields.into_iter().find(|(name, _)| name == "message").map(|(_, v)| v).unwrap_or_default();
            let mut seen = self.seen.lock().unwrap();
            let within = seen.current.last().copied();
            seen.events.push((message, within));
        }

        fn enter(&self, span: &Id) {
            self.seen.lock().unwrap().current.push(span.into_u64());
        }

        fn exit(&self, _: &Id) {
            self.seen.lock().unwrap().current.pop();
        }
    }

    fn delivery() -> Delivery {
        let message = Message::new("orders", "x").with_id("m-1");
        Delivery::new(message, 2, Position::Queue { partition: None, sequence: None }, Some(Arc::from("billing")))
    }

    /// What the test handler returns.
    type Outcome = fn() -> Result<(), HandlerError>;

    /// Calls a traced handler that returns `outcome` once, with `subscriber` current.
    fn call(subscriber: &Recording, outcome: Outcome) -> (Result<(), HandlerError>, bool) {
        let ran = Arc::new(Mutex::new(false));
        let handler = {
            let ran = Arc::clone(&ran);
            Trace.wrapping(handler_fn(move |_d: Delivery| {
                *ran.lock().unwrap() = true;
                async move { outcome() }
            }))
        };
        let _current = tracing::subscriber::set_default(subscriber.clone());
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let result = runtime.block_on(handler.handle(delivery()));
        let ran = *ran.lock().unwrap();
        (result, ran)
    }

    fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
        fields.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_call_runs_in_a_span_that_names_the_message_and_records_the_outcome() {
        let outcomes: [(Outcome, &str); 4] = [
            (|| Ok(()), "ok"),
            (|| Err(HandlerError::transient("later")), "transient"),
            (|| Err(HandlerError::permanent("never")), "permanent"),
            (|| Err(HandlerError::stopping()), "stopping"),
        ];
        for (outcome, expected) in outcomes {
            let subscriber = Recording::new(true);
            let (result, ran) = call(&subscriber, outcome);
            assert!(ran);
            assert_eq!(result.is_ok(), expected == "ok", "the handler's result, passed on");
            let seen = subscriber.seen.lock().unwrap();
            let [(name, fields)] = &seen.spans[..] else { panic!("one span, not {:?}", seen.spans.len()) };
            assert_eq!(*name, "tidewater.handle");
            assert_eq!(field(fields, "topic"), Some("orders"));
            assert_eq!(field(fields, "id"), Some("m-1"));
            assert_eq!(field(fields, "attempt"), Some("2"));
            assert_eq!(field(fields, "group"), Some("billing"));
            assert_eq!(field(fields, "outcome"), Some(expected), "{fields:?}");
            let failed: Vec<_> = seen.events.iter().filter(|(m, _)| m == "handler failed").collect();
            if expected == "ok" || expected == "stopping" {
                assert!(failed.is_empty(), "{:?}", seen.events);
            } else {
                // The failure's event is inside the call's span.
                assert_eq!(failed, [&("handler failed".to_owned(), Some(1))]);
            }
        }
    }

    #[test]
    fn with_the_span_not_taken_the_call_runs_as_it_is_and_a_failure_is_still_told() {
        let subscriber = Recording::new(false);
        let (result, ran) = call(&subscriber, || Ok(()));
        assert!(ran && result.is_ok());
        let (result, ran) = call(&subscriber, || Err(HandlerError::transient("later")));
        assert!(ran);
        assert!(result.unwrap_err().is_transient(), "the handler's own error, untouched");
        let seen = subscriber.seen.lock().unwrap();
        assert!(seen.spans.is_empty());
        assert_eq!(seen.events, [("handler failed".to_owned(), None)]);
    }
}
