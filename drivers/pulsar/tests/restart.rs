//! The shared restart cases (`tidewater_conformance::restart`) on a private Apache
//! Pulsar standalone: killed (SIGKILL) in the middle of a 10,000-message run and started
//! again on the same data, and twice under a lagging consumer; at least once, nothing
//! acknowledged lost.

use tidewater_conformance::restart::ProcessRestart;
use tidewater_pulsar::{Pulsar, PulsarConfig};
use tidewater_testkit::PulsarStandalone;

async fn restartable() -> ProcessRestart<Pulsar, PulsarStandalone> {
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
    ProcessRestart::new(pulsar, broker)
}

tidewater_conformance::restart_tests!(restartable);
