//! The shared restart cases (`tidewater_conformance::restart`) on a private Apache
//! Kafka: killed (SIGKILL) in the middle of a 10,000-message run and started again on
//! the same log directory, and twice under a lagging consumer; at least once, nothing
//! acknowledged lost, duplicates counted and printed.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use tidewater_conformance::restart::RestartFixture;
use tidewater_core::{Driver, ReadTask};
use tidewater_kafka::Kafka;
use tidewater_testkit::KafkaBroker;

struct KafkaRestart {
    broker: Mutex<KafkaBroker>,
    kafka: Kafka,
}

async fn restartable() -> KafkaRestart {
    let broker = KafkaBroker::start();
    let mut config = support::config(&broker.brokers());
    // Writes in flight during the outage wait for the broker instead of failing.
    config.delivery_timeout = Duration::from_secs(120);
    let kafka = Kafka::connect(config).await.expect("connect to the private Kafka");
    KafkaRestart { broker: Mutex::new(broker), kafka }
}

#[async_trait::async_trait]
impl RestartFixture for KafkaRestart {
    fn driver(&self) -> &dyn Driver {
        &self.kafka
    }

    async fn prepare(&self, name: &str) -> ReadTask {
        self.kafka.create_topic(name, 3).await.unwrap();
        ReadTask::new(name).with_group(name).with_concurrency(4)
    }

    /// Blocks while the JVM starts; the writer and reader go on meanwhile on the
    /// runtime's other thread.
    async fn restart(&self) {
        tokio::task::block_in_place(|| self.broker.lock().unwrap().restart());
    }
}

tidewater_conformance::restart_tests!(restartable);
