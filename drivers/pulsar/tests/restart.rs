//! The shared restart cases (`tidewater_conformance::restart`) on a private Apache
//! Pulsar standalone: killed (SIGKILL) in the middle of a 10,000-message run and started
//! again on the same data, and twice under a lagging consumer; at least once, nothing
//! acknowledged lost.

use std::sync::Mutex;

use tidewater_conformance::restart::RestartFixture;
use tidewater_core::{Driver, ReadTask};
use tidewater_pulsar::{Pulsar, PulsarConfig};
use tidewater_testkit::PulsarStandalone;

struct PulsarRestart {
    broker: Mutex<PulsarStandalone>,
    pulsar: Pulsar,
}

async fn restartable() -> PulsarRestart {
    // The driver's warnings (a stuck consumer, a reader restart) go to the test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "tidewater=info,warn".into()),
        )
        .with_test_writer()
        .try_init();
    let broker = PulsarStandalone::start("");
    let config = PulsarConfig::new(broker.url()).admin_url(broker.admin_url());
    let pulsar = Pulsar::connect(config).await.expect("connect to the private Pulsar");
    PulsarRestart { broker: Mutex::new(broker), pulsar }
}

#[async_trait::async_trait]
impl RestartFixture for PulsarRestart {
    fn driver(&self) -> &dyn Driver {
        &self.pulsar
    }

    /// Topics are made as they are first used.
    async fn prepare(&self, name: &str) -> ReadTask {
        ReadTask::new(name).with_group(name).with_concurrency(4)
    }

    /// Blocks while the JVM starts; the writer and reader go on meanwhile on the
    /// runtime's other thread.
    async fn restart(&self) {
        tokio::task::block_in_place(|| self.broker.lock().unwrap().restart());
    }
}

tidewater_conformance::restart_tests!(restartable);
