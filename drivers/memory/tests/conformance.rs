//! The shared conformance suite on the in-memory driver, with every capability on.

use std::sync::Arc;

use async_trait::async_trait;
use tidewater_conformance::{Capabilities, Fixture};
use tidewater_core::{Admin, Driver, Reader, Writer};
use tidewater_memory::MemoryBroker;

struct Memory {
    broker: MemoryBroker,
}

#[async_trait]
impl Fixture for Memory {
    fn capabilities(&self) -> Capabilities {
        Capabilities { partitions: 4, ..Capabilities::default() }
    }

    async fn admin(&self) -> Arc<dyn Admin> {
        Driver::admin(&self.broker)
    }

    async fn writer(&self) -> Arc<dyn Writer> {
        Driver::writer(&self.broker)
    }

    async fn reader(&self) -> Arc<dyn Reader> {
        Driver::reader(&self.broker)
    }
}

async fn fixture() -> Memory {
    Memory { broker: MemoryBroker::new() }
}

tidewater_conformance::conformance_tests!(fixture);
