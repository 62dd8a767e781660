//! Apache Kafka 4 in KRaft mode, one node acting as broker and controller, from the jars
//! `scripts/setup` resolves from Maven Central.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::install::{class_path, java, version};
use crate::jvm::quiet_log_config;
use crate::process::{free_port, fresh_dir, BrokerProcess, Launch, Restart};

/// The Kafka broker version the tests run against.
pub fn kafka_version() -> &'static str {
    version("KAFKA_VERSION")
}

/// The class path of the Kafka broker and its dependencies (the Java client included).
pub fn kafka_class_path() -> String {
    class_path(&format!("kafka-{}/libs", kafka_version()))
}

/// One Kafka node on free loopback ports with its own log directory.
pub struct KafkaBroker {
    /// The client listener's port.
    pub port: u16,
    process: BrokerProcess,
}

impl KafkaBroker {
    /// Formats a new log directory and starts the broker on it; returns once it accepts
    /// connections.
    pub fn start() -> Self {
        let port = free_port();
        let controller = free_port();
        let dir = fresh_dir("kafka");
        std::fs::write(dir.join("server.properties"), properties(port, controller, &dir.join("logs")))
            .expect("write server.properties");
        std::fs::write(dir.join("log4j2.yaml"), quiet_log_config(&["kafka.server.KafkaRaftServer"]))
            .expect("write the log config");
        format(&dir);
        let process = BrokerProcess::start(dir, move |dir| {
            let mut command = jvm(dir);
            command.arg("kafka.Kafka").arg(dir.join("server.properties"));
            // The JVM and KRaft take 5-10 s on 2 busy cores; recovery after a kill adds a
            // little.
            Launch::on_port("kafka", command, port, Duration::from_secs(120))
        });
        Self { port, process }
    }

    /// The broker's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The bootstrap servers, `127.0.0.1:PORT`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A JVM with the Kafka class path and the quiet log configuration in `dir`.
fn jvm(dir: &Path) -> Command {
    let mut command = Command::new(java());
    command
        .args(["-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true"])
        .arg(format!("-Dlog4j2.configurationFile={}", dir.join("log4j2.yaml").display()))
        .arg("-cp")
        .arg(kafka_class_path());
    command
}

/// Writes the KRaft metadata into a new log directory (what `kafka-storage.sh format`
/// does), with a fixed cluster id: each broker has its own directory, so ids never meet.
fn format(dir: &Path) {
    let out = jvm(dir)
        .args(["kafka.tools.StorageTool", "format", "--cluster-id", "dGlkZXdhdGVyLXRlc3RzIQ", "--config"])
        .arg(dir.join("server.properties"))
        .output()
        .expect("run Kafka's StorageTool");
    assert!(
        out.status.success(),
        "formatting the Kafka log directory failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The broker's settings: loopback only, one replica of everything, and internal topics
/// small enough to create in a moment.
fn properties(port: u16, controller: u16, logs: &Path) -> String {
    format!(
        "process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={logs}
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
",
        logs = logs.display()
    )
}

impl Restart for KafkaBroker {
    fn process(&mut self) -> &mut BrokerProcess {
        &mut self.process
    }
}
