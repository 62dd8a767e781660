//! The test brokers: the shared tansu that `scripts/test` starts, private ones for tests
//! that must stop and restart theirs, and a look at a group's committed offsets.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tidewater_kafka::KafkaConfig;

/// The brokers of the tansu `scripts/test` started. A missing broker fails the test: run
/// the suite with `scripts/test`, which starts it.
pub fn shared_brokers() -> String {
    std::env::var("TIDEWATER_KAFKA_BROKERS").expect(
        "TIDEWATER_KAFKA_BROKERS is not set: run the tests with scripts/test, which starts tansu (a Kafka broker)",
    )
}

/// The configuration tests use against `brokers`.
pub fn config(brokers: &str) -> KafkaConfig {
    KafkaConfig::new(brokers)
}

/// The tansu binary: `TIDEWATER_TANSU`, which `scripts/test` sets, or where
/// `scripts/setup` installs it.
pub fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TIDEWATER_TANSU") {
        return path.into();
    }
    let home = std::env::var_os("HOME").expect("HOME");
    let path = PathBuf::from(home).join(".cache/tidewater/tansu-0.6.0/bin/tansu");
    assert!(path.exists(), "no tansu at {path:?}: run scripts/setup, which builds it once");
    path
}

/// How a private broker stores records.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// `sqlite://`: keeps records and offsets across a restart; reads from the middle of
    /// a batch correctly.
    Sqlite,
    /// `memory://`: fast, lost on stop, and a fetch from inside a batch skips the batch's
    /// rest (brokers.md), so only for measurements that never resume mid-batch.
    Memory,
}

/// A tansu broker on a free loopback port, killed on drop.
pub struct PrivateTansu {
    pub port: u16,
    dir: PathBuf,
    storage: Storage,
    child: Option<Child>,
}

impl PrivateTansu {
    pub fn start(storage: Storage) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("tidewater-tansu-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut broker = Self { port, dir, storage, child: None };
        broker.restart();
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again) on the same port and storage, and waits until it
    /// accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let engine = match self.storage {
            Storage::Sqlite => "sqlite://tansu.db",
            Storage::Memory => "memory://tansu/",
        };
        let log = std::fs::File::create(self.dir.join("tansu.log")).unwrap();
        let bin = tansu_binary();
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", engine])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin:?}: {e}"));
        self.child = Some(child);
        // tansu gives no readiness signal but its port: poll it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {} within 10 s", self.port);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateTansu {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The committed offset of `group` for each of `partitions` partitions of `topic`
/// (`None` where nothing was committed), read by a consumer that joins nothing.
pub fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer to read committed offsets");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let offsets = {
        // The list that `committed_offsets` returns must be dropped before the consumer,
        // or dropping the consumer blocks forever (brokers.md).
        let got = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
        got.elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .collect()
    };
    drop(consumer);
    offsets
}

/// The end offset (high watermark) of each of `partitions` partitions of `topic`.
pub fn ends(brokers: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("consumer");
    (0..partitions)
        .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks").1)
        .collect()
}
