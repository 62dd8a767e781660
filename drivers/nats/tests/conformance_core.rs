//! The shared conformance suite on core NATS, against a real nats-server.
//!
//! Capabilities off, because core NATS lacks them (not the driver): it keeps no
//! messages (`persistent`), so late subscribers and re-subscriptions get nothing old;
//! it cannot redeliver (`redelivery_on_nack`, `counts_attempts`, `settles_exactly`).
//! Queue groups give consumer groups without positions, which the cases that need
//! positions also require `persistent` for.

mod support;

use tidewater_conformance::{Capabilities, DriverFixture};
use tidewater_nats::{NatsConfig, NatsCore};

async fn fixture() -> DriverFixture<NatsCore> {
    let core =
        NatsCore::connect(&NatsConfig::new(support::shared_url())).await.expect("connect to the test nats-server");
    let capabilities = Capabilities {
        persistent: false,
        redelivery_on_nack: false,
        counts_attempts: false,
        settles_exactly: false,
        // Core NATS keeps no list of subjects.
        lists_topics: false,
        // Nor positions to measure a group against.
        reports_lag: false,
        group_positions: false,
        // Nor transactions.
        transactions: false,
        // The server pushes every message as it is published: no flow control.
        flow_follows_prefetch: false,
        partitions: 1,
        ..Capabilities::default()
    };
    DriverFixture::new(core, capabilities)
}

tidewater_conformance::conformance_tests!(
    fixture,
    ignore {
        nack_redelivery: "core NATS does not redeliver: a nack is dropped",
        permanent_failures_never_loop: "core NATS does not redeliver, so nothing can loop",
        late_subscriber: "core NATS keeps no messages for a subscriber that comes later",
        resubscribe: "core NATS keeps no position for a group that subscribes again",
        shutdown_with_handlers_running: "core NATS keeps nothing for a redelivery after a shutdown",
        attempts_stay_exact_across_a_shutdown: "core NATS keeps nothing for a redelivery after a shutdown",
        lag_drains_to_zero: "core NATS keeps no messages and no positions, so a group has no lag to tell",
        batches_settle_each_delivery: "core NATS does not redeliver the delivery a batch reports failed",
        nothing_stale_is_handed_out_after_a_nack: "core NATS does not redeliver: a nack rewinds nothing",
        prefetch_bounds_read_ahead:
            "core NATS has no flow control: the server pushes each message to a queue group member as it is published",
    }
);
