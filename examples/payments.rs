//! A payments service, written as a service would be: two events, handlers that are plain
//! async functions taking the event and the state they need, a card gateway that times
//! out once (retried in place, behind a circuit breaker that would hold the requests if
//! the gateway went down), a request that can never be charged (dead-lettered by the
//! bus on its own), and a batch publish. Its test runs the same service on the memory
//! driver and, with `scripts/test`, on JetStream, Kafka and Pulsar.
//!
//! ```sh
//! cargo run --example payments
//! scripts/test                  # runs its tests on every real broker too
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tidewater::middleware::{CircuitBreaker, Retry};
use tidewater::testing::TestKit;
use tidewater::{Around, Bus, Driver, Event, EventRegistry, HandlerError, HandlerResult, Message, Publisher, State};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(type = "payment.requested", key = payment_id)]
struct PaymentRequested {
    payment_id: String,
    cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(type = "payment.settled", key = payment_id)]
struct PaymentSettled {
    payment_id: String,
    cents: i64,
}

// ---- the service ------------------------------------------------------------------

async fn charge(request: PaymentRequested, State(books): State<Books>, State(out): State<Publisher>) -> HandlerResult {
    books.charge(&request)?;
    out.publish(&PaymentSettled { payment_id: request.payment_id, cents: request.cents }).await?;
    Ok(())
}

async fn record(settled: PaymentSettled, State(books): State<Books>) -> HandlerResult {
    books.record(settled);
    Ok(())
}

/// The whole setup: routes, shared state, retry, two subscriptions. A request that fails
/// for good goes to `<requests>.dlq` without any setup. Should five requests in a row
/// fail even after their retries, the breaker takes the gateway for down and holds the
/// rest, trying one now and then, rather than fail them all.
fn service(driver: &impl Driver, topics: &Topics, books: Books) -> Bus {
    let routes =
        EventRegistry::new().route::<PaymentRequested>(&topics.requests).route::<PaymentSettled>(&topics.settled);
    let mut bus = Bus::new(driver, routes);
    let gateway = CircuitBreaker::new("card-gateway");
    bus.with_state(books).with_middleware(gateway.then(Retry::new().min_delay(Duration::from_millis(20))));
    bus.subscribe_event(charge).group("payments");
    bus.subscribe_event(record).group("ledger");
    bus
}

// ---- what it talks to: a card gateway and the books, kept in memory -------------------

/// The card gateway and the books: a stand-in for a client and a database, shared by
/// the handlers (clones share it).
#[derive(Clone, Default)]
struct Books(Arc<Mutex<Inner>>);

#[derive(Default)]
struct Inner {
    charges: HashMap<String, u32>,
    settled: Vec<PaymentSettled>,
}

impl Books {
    /// Charges the card: a request for nothing can never succeed; the gateway times out on
    /// the first try of a payment whose id ends in `-flaky`.
    fn charge(&self, request: &PaymentRequested) -> HandlerResult {
        if request.cents <= 0 {
            return Err(HandlerError::permanent(format!("payment {} has nothing to charge", request.payment_id)));
        }
        let mut inner = self.0.lock().unwrap();
        let tries = inner.charges.entry(request.payment_id.clone()).or_default();
        *tries += 1;
        if *tries == 1 && request.payment_id.ends_with("-flaky") {
            return Err(HandlerError::transient("the card gateway timed out"));
        }
        Ok(())
    }

    fn record(&self, settled: PaymentSettled) {
        self.0.lock().unwrap().settled.push(settled);
    }

    fn settled(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.0.lock().unwrap().settled.iter().map(|s| s.payment_id.clone()).collect();
        ids.sort();
        ids
    }
}

/// Topics of one run, so that runs on a shared broker never see each other's messages.
struct Topics {
    requests: String,
    settled: String,
}

impl Topics {
    fn fresh() -> Self {
        let run = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos();
        Self { requests: format!("payments-requested-{run}"), settled: format!("payments-settled-{run}") }
    }
}

/// What a run saw.
struct Run {
    settled: Vec<String>,
    dead_letters: Vec<Message>,
    retries: u32,
    acked: u64,
    dead_lettered: u64,
}

/// Runs the service on `driver`: publishes four requests in one batch and waits, without
/// sleeping, until every message has ended one way or the other.
async fn run(driver: impl Driver) -> Result<Run, Box<dyn std::error::Error>> {
    let (kit, topics, books) = (TestKit::new(), Topics::fresh(), Books::default());
    let mut bus = service(&kit.wrap(driver), &topics, books.clone());
    bus.start().await?;
    let requests = ["p-1", "p-2-flaky", "p-3", "p-4"]
        .map(|id| PaymentRequested { payment_id: id.into(), cents: if id == "p-3" { 0 } else { 1250 } });
    bus.publisher().publish_batch(&requests).await?;
    kit.wait_idle(Duration::from_secs(60)).await?;
    let report = bus.shutdown(Duration::from_secs(10)).await?;
    Ok(Run {
        settled: books.settled(),
        dead_letters: kit.published(&format!("{}.dlq", topics.requests)),
        retries: kit.retries(&topics.requests),
        acked: report.acked(),
        dead_lettered: report.dead_lettered(),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run = run(tidewater::memory::MemoryBroker::new()).await?;
    println!("settled:  {}", run.settled.join(", "));
    for dead in &run.dead_letters {
        let why = dead.headers.get(tidewater::dead_letter::headers::ERROR).unwrap_or("?");
        println!("dlq:      {} ({why})", String::from_utf8_lossy(&dead.payload));
    }
    println!("retries:  {} in place; report: {} acked, {} dead-lettered", run.retries, run.acked, run.dead_lettered);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn check(driver: impl Driver) {
        let run = run(driver).await.expect("the run ends");
        assert_eq!(run.settled, ["p-1", "p-2-flaky", "p-4"], "every payment that can be charged is settled once");
        assert_eq!(run.dead_letters.len(), 1, "the request for nothing is dead-lettered");
        let dead: PaymentRequested = serde_json::from_slice(&run.dead_letters[0].payload).expect("a request");
        assert_eq!(dead.payment_id, "p-3");
        let why = run.dead_letters[0].headers.get(tidewater::dead_letter::headers::ERROR);
        assert_eq!(why, Some("payment p-3 has nothing to charge"));
        assert_eq!(run.retries, 1, "the gateway's time-out was retried in place once");
        assert_eq!((run.acked, run.dead_lettered), (6, 1), "3 requests and 3 settlements acked, 1 dead letter");
    }

    #[tokio::test]
    async fn on_memory() {
        check(tidewater::memory::MemoryBroker::new()).await;
    }

    #[cfg(feature = "nats")]
    #[tokio::test]
    async fn on_jetstream() {
        use tidewater::nats::{JetStream, JetStreamConfig, NatsConfig};
        let url = tidewater_testkit::shared::nats_url();
        check(JetStream::connect(&NatsConfig::new(url), JetStreamConfig::default()).await.unwrap()).await;
    }

    #[cfg(feature = "kafka")]
    #[tokio::test]
    async fn on_kafka() {
        use tidewater::kafka::{Kafka, KafkaConfig};
        check(Kafka::connect(KafkaConfig::new(tidewater_testkit::shared::kafka_brokers())).await.unwrap()).await;
    }

    #[cfg(feature = "pulsar")]
    #[tokio::test]
    async fn on_pulsar() {
        use tidewater::pulsar::{Pulsar, PulsarConfig};
        check(Pulsar::connect(PulsarConfig::new(tidewater_testkit::shared::pulsar_url())).await.unwrap()).await;
    }
}
