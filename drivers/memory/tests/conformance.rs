//! The shared conformance suite on the in-memory driver, with every capability on but
//! `flow_follows_prefetch`: a group's members own partitions, as on Kafka.

use tidewater_conformance::{Capabilities, DriverFixture};
use tidewater_memory::MemoryBroker;

async fn fixture() -> DriverFixture<MemoryBroker> {
    DriverFixture::new(
        MemoryBroker::new(),
        Capabilities { partitions: 4, flow_follows_prefetch: false, ..Capabilities::default() },
    )
}

tidewater_conformance::conformance_tests!(
    fixture,
    ignore {
        prefetch_bounds_read_ahead: "a group's members own partitions: a partition's messages wait for its owner"
    }
);
