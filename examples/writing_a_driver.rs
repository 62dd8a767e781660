//! Writing a driver: a toy in-process broker, at most once (fan-out to subscriptions, one
//! member of a group per message, nothing kept), that passes the conformance suite with
//! the cases its semantics rule out declared ignored, as core NATS does. The four
//! pieces every driver has: a `Writer`, a `Reader` that hands core a `Source` of
//! deliveries with their `Settle`, an `Admin`, and the `Driver` that makes them.
//!
//! ```sh
//! cargo run --example writing_a_driver          # a round trip through it
//! cargo test --example writing_a_driver         # the conformance suite against it
//! ```
//! The checklist a driver is held to is at the top of `conformance/src/lib.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tidewater::{
    names, Admin, BrokerWriter, Closable, Delivery, Driver, Error, ErrorKind, Incoming, Message, Position, ReadTask,
    Reader, ReadySignal, Result, Settle, Settlement, Source, Writer, MOST_A_FETCH,
};
use tokio::sync::mpsc;

const DRIVER: &str = "toy";
/// What the toy refuses as too large, as brokers have a message limit.
const MAX_BYTES: usize = 1024 * 1024;

/// The broker: per topic, the live subscriptions. Cloning shares it.
#[derive(Clone, Default)]
pub struct Toy {
    topics: Arc<Mutex<HashMap<String, Vec<Subscription>>>>,
    next_id: Arc<AtomicU64>,
}

/// One reader's subscription: its group (if any) and where its messages go.
struct Subscription {
    id: u64,
    group: Option<String>,
    to: mpsc::UnboundedSender<Message>,
}

impl Toy {
    /// Hands `message` to every subscription without a group and to one member of each
    /// group (the first, then rotating, so members share the work).
    fn deliver(&self, message: &Message) {
        let mut topics = self.topics.lock().unwrap();
        let Some(subscriptions) = topics.get_mut(message.stream.as_str()) else { return };
        subscriptions.retain(|s| !s.to.is_closed());
        let mut groups_served = Vec::new();
        for s in subscriptions.iter() {
            match &s.group {
                None => drop(s.to.send(message.clone())),
                Some(group) if !groups_served.contains(group) => {
                    groups_served.push(group.clone());
                    let _ = s.to.send(message.clone());
                }
                Some(_) => {}
            }
        }
        // Rotate, so the next message of a group goes to its next member.
        if subscriptions.len() > 1 {
            subscriptions.rotate_left(1);
        }
    }
}

impl Driver for Toy {
    fn writer(&self) -> Arc<dyn Writer> {
        // Closable refuses writes once the writer was closed, as every driver's writer does.
        Arc::new(Closable::new(DRIVER, ToyWriter { broker: self.clone() }))
    }

    fn reader(&self) -> Arc<dyn Reader> {
        Arc::new(self.clone())
    }

    fn admin(&self) -> Arc<dyn Admin> {
        Arc::new(self.clone())
    }
}

/// The write side: checks what every driver checks, then delivers at once.
struct ToyWriter {
    broker: Toy,
}

impl BrokerWriter for ToyWriter {
    async fn write(&self, batch: Vec<Message>) -> Result<()> {
        // Everything is checked before anything is delivered: a bad message fails the
        // write whole.
        for m in &batch {
            names::check_topic(&m.stream).map_err(|e| e.with_driver(DRIVER))?;
            if m.payload.len() > MAX_BYTES {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!("message {} has {} bytes; the toy takes {MAX_BYTES}", m.id, m.payload.len()),
                )
                .with_driver(DRIVER)
                .with_topic(&m.stream));
            }
        }
        for m in &batch {
            self.broker.deliver(m);
        }
        Ok(())
    }
}

#[async_trait]
impl Reader for Toy {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    /// Subscribes and hands core the source: core marks the reader ready and runs the
    /// handlers, concurrency, settlement and the shutdown the same way for every driver.
    async fn open(&self, task: &ReadTask, _ready: &ReadySignal) -> Result<Box<dyn Source>> {
        let (to, from) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let subscription = Subscription { id, group: task.group.clone(), to };
        self.topics.lock().unwrap().entry(task.topic.clone()).or_default().push(subscription);
        Ok(Box::new(ToySource {
            broker: self.clone(),
            topic: task.topic.clone(),
            id,
            from,
            group: task.group.as_deref().map(Arc::from),
        }))
    }
}

/// Deliveries of one subscription, as core asks for them.
struct ToySource {
    broker: Toy,
    topic: String,
    id: u64,
    from: mpsc::UnboundedReceiver<Message>,
    group: Option<Arc<str>>,
}

#[async_trait]
impl Source for ToySource {
    /// Waits for one message, then takes what else is there, up to `max` and no more
    /// than core's `MOST_A_FETCH` (the channel keeps the rest).
    async fn next_batch(&mut self, batch: &mut Vec<Incoming>, max: usize) -> Result<usize> {
        let max = max.min(MOST_A_FETCH);
        let Some(first) = self.from.recv().await else { return Ok(0) };
        let mut n = 0;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            let position = Position::Queue { partition: None, sequence: None };
            let delivery = Delivery::new(message, 1, position, self.group.clone());
            batch.push(Incoming::new(delivery, AtMostOnce));
            n += 1;
            if n < max {
                next = self.from.try_recv().ok();
            }
        }
        Ok(n)
    }

    async fn close(&mut self) -> Result<()> {
        if let Some(subscriptions) = self.broker.topics.lock().unwrap().get_mut(&self.topic) {
            subscriptions.retain(|s| s.id != self.id);
        }
        Ok(())
    }
}

/// At most once: a settlement has nothing to tell the toy.
struct AtMostOnce;

#[async_trait]
impl Settle for AtMostOnce {
    async fn settle(self: Box<Self>, _settlement: Settlement) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl Admin for Toy {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    async fn create_topic(&self, topic: &str, _partitions: u32) -> Result<()> {
        names::check_topic(topic).map_err(|e| e.with_driver(DRIVER))?;
        self.topics.lock().unwrap().entry(topic.to_owned()).or_default();
        Ok(())
    }

    async fn delete_topic(&self, topic: &str) -> Result<()> {
        self.topics.lock().unwrap().remove(topic);
        Ok(())
    }

    async fn topics(&self) -> Result<Vec<String>> {
        Ok(self.topics.lock().unwrap().keys().cloned().collect())
    }
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let toy = Toy::default();
    let mut bus = tidewater::Bus::new(&toy, tidewater::EventRegistry::new());
    let seen = tidewater::testing::Recorder::new();
    bus.subscribe("greetings", seen.clone()).group("readers");
    bus.start().await?;
    bus.publisher().publish_bytes("greetings", "hello from the toy driver", "text/plain").await?;
    let got = seen.wait_for(1, Duration::from_secs(5)).await?;
    println!("{}", String::from_utf8_lossy(&got[0].message().payload));
    bus.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}

#[cfg(test)]
mod conformance {
    use super::*;
    use tidewater_conformance::{Capabilities, DriverFixture};

    /// The toy and what it can do: it keeps nothing and redelivers nothing.
    async fn fixture() -> DriverFixture<Toy> {
        let capabilities = Capabilities {
            persistent: false,
            group_positions: false,
            redelivery_on_nack: false,
            counts_attempts: false,
            settles_exactly: false,
            reports_lag: false,
            // It pushes each message to a member as it is published, asked or not.
            flow_follows_prefetch: false,
            transactions: false,
            partitions: 1,
            ..Capabilities::default()
        };
        DriverFixture::new(Toy::default(), capabilities)
    }

    tidewater_conformance::conformance_tests!(
        fixture,
        ignore {
            nack_redelivery: "the toy delivers at most once: a nack is dropped",
            permanent_failures_never_loop: "the toy does not redeliver, so nothing can loop",
            late_subscriber: "the toy keeps no messages for a subscriber that comes later",
            resubscribe: "the toy keeps no position for a group that subscribes again",
            shutdown_with_handlers_running: "the toy keeps nothing for a redelivery after a shutdown",
            attempts_stay_exact_across_a_shutdown: "the toy keeps nothing for a redelivery after a shutdown",
            lag_drains_to_zero: "the toy keeps no positions, so a group has no lag to tell",
            batches_settle_each_delivery: "the toy does not redeliver the delivery a batch reports failed",
            nothing_stale_is_handed_out_after_a_nack: "the toy does not redeliver: a nack rewinds nothing",
            prefetch_bounds_read_ahead:
                "the toy pushes each message to a member as it is published, with no flow control",
        }
    );
}
