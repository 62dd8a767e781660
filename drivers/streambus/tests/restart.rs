//! The shared restart cases (`tidewater_conformance::restart`) on the broker double
//! (later profile, log kept): restarted in the middle of a 10,000-message run, and twice
//! under a lagging consumer; at least once, nothing lost, and the group reader rejoins by
//! itself (a restarted broker has forgotten its group members). And readiness while the
//! double is away.

mod support;

use std::sync::Arc;
use std::time::Duration;

use tidewater_conformance::restart::RestartFixture;
use tidewater_core::{Driver, ReadTask};
use tidewater_streambus::StreamBus;
use tidewater_streambus_double::{BrokerDouble, DoubleConfig, Profile, Storage};
use tokio::sync::Mutex;

/// A killed double's address, configuration and log, for its start.
type Stopped = (std::net::SocketAddr, DoubleConfig, Arc<std::sync::Mutex<Storage>>);

struct DoubleRestart {
    double: Mutex<Option<BrokerDouble>>,
    /// What a killed double leaves for its start: its address, configuration and log.
    stopped: Mutex<Option<Stopped>>,
    bus: StreamBus,
}

async fn restartable() -> DoubleRestart {
    let double = BrokerDouble::start(Profile::Later).await;
    let bus = StreamBus::connect(support::config(double.addr())).await.unwrap();
    DoubleRestart { double: Mutex::new(Some(double)), stopped: Mutex::new(None), bus }
}

#[async_trait::async_trait]
impl RestartFixture for DoubleRestart {
    fn driver(&self) -> &dyn Driver {
        &self.bus
    }

    async fn prepare(&self, name: &str) -> ReadTask {
        self.bus.create_topic(name, 3).await.unwrap();
        ReadTask::new(name).with_group(name).with_concurrency(4)
    }

    async fn kill(&self) {
        let mut slot = self.double.lock().await;
        let stopped = slot.take().expect("a running double").stop().await;
        *self.stopped.lock().await = Some(stopped);
    }

    async fn start(&self) {
        let (addr, config, storage) = self.stopped.lock().await.take().expect("a stopped double");
        *self.double.lock().await = Some(BrokerDouble::restart(addr, config, storage).await);
    }

    async fn restart(&self) {
        self.kill().await;
        // The broker stays away for a while, as a real restart does.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.start().await;
    }

    /// The restarted broker saw the reader join again, and leave at its shutdown.
    async fn after_run(&self, name: &str) {
        let slot = self.double.lock().await;
        let double = slot.as_ref().expect("a running double");
        let group = format!("{name}.{name}");
        let (generation, members) = double.group(&group).expect("the group exists again");
        assert!(
            generation >= 1 && members.is_empty(),
            "the reader rejoined, then left at shutdown: {generation} {members:?}"
        );
    }
}

tidewater_conformance::restart_tests!(restartable);
