//! Testing a service: the test kit wraps any driver, records what the service published
//! and what became of every delivery, and waits for it, so tests assert on outcomes
//! without sleeping. The same test runs on the in-memory driver and, unchanged, on a
//! real broker.
//!
//! ```sh
//! cargo test --example testing_a_service
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewater::{Bus, Driver, Event, EventRegistry, HandlerError, HandlerResult, Publisher, State};

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(type = "user.signed_up", key = email)]
struct SignUp {
    email: String,
}

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(type = "mail.welcome")]
struct Welcome {
    email: String,
}

/// The service under test: a welcome mail for every valid sign-up.
async fn welcome(signup: SignUp, State(publisher): State<Publisher>) -> HandlerResult {
    if !signup.email.contains('@') {
        return Err(HandlerError::permanent(format!("{:?} is not an address", signup.email)));
    }
    publisher.publish(&Welcome { email: signup.email }).await?;
    Ok(())
}

/// Wires the service on `driver` and starts it, as `main` would.
async fn start(driver: &impl Driver) -> tidewater::Result<Bus> {
    let registry = EventRegistry::new().route::<SignUp>("signups").route::<Welcome>("mail");
    let mut bus = Bus::new(driver, registry);
    bus.subscribe_event(welcome).group("onboarding");
    bus.start().await?;
    Ok(bus)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = tidewater::memory::MemoryBroker::new();
    let mut bus = start(&broker).await?;
    bus.publisher().publish(&SignUp { email: "ada@example.com".into() }).await?;
    broker.wait_acked("signups", "onboarding", 1, Duration::from_secs(5)).await?;
    bus.shutdown(Duration::from_secs(5)).await?;
    println!("run `cargo test --example testing_a_service` for the tests");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater::testing::{Outcome, TestKit};

    /// The test, for any driver.
    async fn welcomes_valid_sign_ups_and_dead_letters_the_rest(driver: impl Driver) {
        let kit = TestKit::new();
        let mut bus = start(&kit.wrap(driver)).await.unwrap();
        for email in ["ada@example.com", "not-an-address"] {
            bus.publisher().publish(&SignUp { email: email.into() }).await.unwrap();
        }
        // Waits until every delivery was settled one way or the other: no sleeps.
        kit.wait_idle(Duration::from_secs(30)).await.unwrap();

        let mails = kit.published("mail");
        assert_eq!(mails.len(), 1, "one welcome mail");
        let mail: Welcome = serde_json::from_slice(&mails[0].payload).unwrap();
        assert_eq!(mail.email, "ada@example.com");
        assert_eq!(kit.count("signups", Outcome::Acked), 1);
        assert_eq!(kit.count("signups", Outcome::DeadLettered), 1, "the bad address went to signups.dlq");
        let handled = kit.handled("signups");
        let dead = handled.iter().find(|h| h.outcome == Outcome::DeadLettered).unwrap();
        assert!(dead.error.as_deref().unwrap_or_default().contains("is not an address"), "{dead:?}");
        bus.shutdown(Duration::from_secs(5)).await.unwrap();
    }

    #[tokio::test]
    async fn on_memory() {
        welcomes_valid_sign_ups_and_dead_letters_the_rest(tidewater::memory::MemoryBroker::new()).await;
    }

    #[cfg(feature = "nats")]
    #[tokio::test]
    async fn on_jetstream() {
        use tidewater::nats::{JetStream, JetStreamConfig, NatsConfig};
        let nats = NatsConfig::new(tidewater_testkit::shared::nats_url());
        let js = JetStream::connect(&nats, JetStreamConfig::default()).await.unwrap();
        welcomes_valid_sign_ups_and_dead_letters_the_rest(js).await;
    }
}
