//! The shared conformance suite on the in-memory driver, with every capability on.

use tidewater_conformance::{Capabilities, DriverFixture};
use tidewater_memory::MemoryBroker;

async fn fixture() -> DriverFixture<MemoryBroker> {
    DriverFixture::new(MemoryBroker::new(), Capabilities { partitions: 4, ..Capabilities::default() })
}

tidewater_conformance::conformance_tests!(fixture);
