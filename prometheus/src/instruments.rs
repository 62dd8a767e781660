//! What is measured as it happens: handler durations and publishes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use tidewater_core::{BoxHandler, Delivery, Handler, HandlerError, Message, Middleware, Result, TopicName, Writer};

/// Histograms by topic, then group; counters by topic. Looked up by `&str`, so a
/// message that finds its series allocates nothing.
#[derive(Default)]
pub(crate) struct Instruments {
    durations: RwLock<HashMap<String, HashMap<String, Histogram>>>,
    published: RwLock<HashMap<String, Published>>,
}

/// A topic's writes: messages written and failed, and how long each write call took.
struct Published {
    sent: Counter,
    failed: Counter,
    durations: Histogram,
}

impl Default for Published {
    fn default() -> Self {
        // From 100 µs (an in-process broker, or one on the same host) to about 13 s
        // (a write that waited out a broker's leader election), doubling.
        Self {
            sent: Counter::default(),
            failed: Counter::default(),
            durations: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
        }
    }
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instruments").finish_non_exhaustive()
    }
}

/// From 1 ms to about 16 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Instruments {
    fn observe(&self, topic: &str, group: &str, seconds: f64) {
        {
            let durations = self.durations.read().unwrap_or_else(|e| e.into_inner());
            if let Some(h) = durations.get(topic).and_then(|g| g.get(group)) {
                h.observe(seconds);
                return;
            }
        }
        let mut durations = self.durations.write().unwrap_or_else(|e| e.into_inner());
        let groups = durations.entry(topic.to_owned()).or_default();
        groups.entry(group.to_owned()).or_insert_with(duration_histogram).observe(seconds);
    }

    /// Counts a write of `messages` to `topic`; `took`, the write call's time, for the
    /// first topic of the call only (a call is one wait, whatever topics it wrote to).
    fn published(&self, topic: &str, messages: u64, ok: bool, took: Option<f64>) {
        let count = |published: &Published| {
            if ok {
                published.sent.inc_by(messages);
            } else {
                published.failed.inc_by(messages);
            }
            if let Some(seconds) = took {
                published.durations.observe(seconds);
            }
        };
        if let Some(published) = self.published.read().unwrap_or_else(|e| e.into_inner()).get(topic) {
            count(published);
            return;
        }
        let mut published = self.published.write().unwrap_or_else(|e| e.into_inner());
        count(published.entry(topic.to_owned()).or_default());
    }
}

impl Collector for Instruments {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::result::Result<(), std::fmt::Error> {
        let published = self.published.read().unwrap_or_else(|e| e.into_inner());
        for (name, help, failed) in [
            ("messages_published", "Messages written.", false),
            ("publish_errors", "Messages whose write failed.", true),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (topic, written) in published.iter() {
                let counter = if failed { &written.failed } else { &written.sent };
                counter.encode(family.encode_family(&[("topic", topic.as_str())])?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "publish_duration_seconds",
            "Time a write call took, until the broker took its messages or refused them.",
            None,
            MetricType::Histogram,
        )?;
        for (topic, written) in published.iter() {
            written.durations.encode(family.encode_family(&[("topic", topic.as_str())])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "handler_duration_seconds",
            "Time from a delivery to the handler chain's return.",
            None,
            MetricType::Histogram,
        )?;
        for (topic, groups) in self.durations.read().unwrap_or_else(|e| e.into_inner()).iter() {
            for (group, histogram) in groups {
                histogram.encode(family.encode_family(&[("topic", topic.as_str()), ("group", group.as_str())])?)?;
            }
        }
        Ok(())
    }
}

/// A middleware that times each delivery's handler chain, by topic and group. Put it
/// first, so the time includes retries and the dead-letter write.
#[derive(Clone, Debug)]
pub struct HandlerTimer {
    instruments: Arc<Instruments>,
}

impl HandlerTimer {
    pub(crate) fn new(instruments: Arc<Instruments>) -> Self {
        Self { instruments }
    }
}

impl Middleware for HandlerTimer {
    fn wrap(&self, inner: BoxHandler) -> BoxHandler {
        Arc::new(Timed { inner, instruments: Arc::clone(&self.instruments) })
    }
}

struct Timed {
    inner: BoxHandler,
    instruments: Arc<Instruments>,
}

impl Handler for Timed {
    async fn handle(&self, delivery: Delivery) -> std::result::Result<(), HandlerError> {
        let started = Instant::now();
        // A second handle on the same delivery (a reference count), for its labels.
        let labels = delivery.clone();
        let result = self.inner.handle(delivery).await;
        let elapsed = started.elapsed().as_secs_f64();
        self.instruments.observe(&labels.message().stream, labels.group().unwrap_or(""), elapsed);
        result
    }
}

/// Counts the messages the writers it is put around write, and those whose write
/// failed, and times each write call, by topic.
#[derive(Clone, Debug)]
pub struct PublishCounter {
    instruments: Arc<Instruments>,
}

impl PublishCounter {
    pub(crate) fn new(instruments: Arc<Instruments>) -> Self {
        Self { instruments }
    }

    /// `inner`, counted.
    pub fn around(&self, inner: Arc<dyn Writer>) -> Arc<dyn Writer> {
        Arc::new(Counted { inner, instruments: Arc::clone(&self.instruments) })
    }
}

struct Counted {
    inner: Arc<dyn Writer>,
    instruments: Arc<Instruments>,
}

impl Counted {
    /// The batch's topics with their message counts, in runs (most batches are one).
    fn topics(batch: &[Message]) -> Vec<(TopicName, u64)> {
        let mut runs: Vec<(TopicName, u64)> = Vec::with_capacity(1);
        for message in batch {
            match runs.last_mut() {
                Some((topic, n)) if *topic == message.stream => *n += 1,
                _ => runs.push((message.stream.clone(), 1)),
            }
        }
        runs
    }

    fn count(&self, runs: &[(TopicName, u64)], ok: bool, started: Instant) {
        let took = started.elapsed().as_secs_f64();
        for (i, (topic, n)) in runs.iter().enumerate() {
            self.instruments.published(topic, *n, ok, (i == 0).then_some(took));
        }
    }
}

#[async_trait]
impl Writer for Counted {
    fn driver(&self) -> &'static str {
        self.inner.driver()
    }

    async fn write(&self, batch: Vec<Message>) -> Result<()> {
        let runs = Self::topics(&batch);
        let started = Instant::now();
        let result = self.inner.write(batch).await;
        self.count(&runs, result.is_ok(), started);
        result
    }

    async fn write_one(&self, message: Message) -> Result<()> {
        let runs = [(message.stream.clone(), 1)];
        let started = Instant::now();
        let result = self.inner.write_one(message).await;
        self.count(&runs, result.is_ok(), started);
        result
    }

    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
