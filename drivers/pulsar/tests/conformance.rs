//! The shared conformance suite on Apache Pulsar (standalone, started by `scripts/test`),
//! with every capability on but transactions (below) and `flow_follows_prefetch` (the
//! broker's flow permits must cover a producer's batch): the suite's topics are
//! partitioned topics of 3 partitions, made through the broker's admin API.

mod support;

use tidewater_conformance::{Capabilities, DriverFixture};
use tidewater_pulsar::Pulsar;

async fn fixture() -> DriverFixture<Pulsar> {
    // What the driver logs, kept with each test's output: a case that fails once in
    // many runs (a closed consumer's messages not handed on within the patience below)
    // then shows what the driver saw. A passing run logs nothing at this level.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("tidewater_pulsar=info"))
        .with_test_writer()
        .try_init();
    let url = support::shared_url();
    let pulsar = Pulsar::connect(support::config(&url)).await.expect("connect to the test Pulsar");
    // A minute to wait for deliveries, not the default half: under the stress test
    // (ten copies of the suite at once, beside three other JVMs on two cores) the
    // broker once took longer than 30 s to hand a closed consumer's unacked messages
    // to the next one. Only a failing case waits that long.
    let patience = std::time::Duration::from_secs(60);
    // Transactions: Pulsar has them (with the transaction coordinator switched on), the
    // pulsar crate the driver is built on does not, so the driver answers Unsupported.
    let capabilities = Capabilities {
        partitions: 3,
        patience,
        transactions: false,
        flow_follows_prefetch: false,
        ..Capabilities::default()
    };
    DriverFixture::new(pulsar, capabilities).viewing_topics_with(support::topic_view)
}

tidewater_conformance::conformance_tests!(
    fixture,
    ignore {
        prefetch_bounds_read_ahead: "Pulsar's flow permits are per partition and must cover a producer's batch (permits below it stalled the broker's dispatch of batched entries), so a member holds up to its receiver queue a partition whatever its prefetch"
    }
);
