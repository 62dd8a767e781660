//! Apache Pulsar standalone (broker, bookie and RocksDB metadata store in one JVM), from
//! the jars `scripts/setup` resolves from Maven Central.

use std::process::Command;
use std::time::Duration;

use crate::install::{class_path, java, version};
use crate::process::{free_port, fresh_dir, BrokerProcess, Launch, Readiness};

/// The Pulsar version the tests run against.
pub fn pulsar_version() -> &'static str {
    version("PULSAR_VERSION")
}

/// A Pulsar standalone on free loopback ports with its own data directories.
pub struct PulsarStandalone {
    /// The binary protocol port (`pulsar://`).
    pub port: u16,
    /// The admin HTTP port.
    pub web_port: u16,
    process: BrokerProcess,
}

impl PulsarStandalone {
    /// Starts one with `extra` lines added to its configuration; returns once the
    /// `public/default` namespace exists, so topics can be used at once.
    pub fn start(extra: &str) -> Self {
        let port = free_port();
        let web_port = free_port();
        let bookie_port = free_port();
        let dir = fresh_dir("pulsar");
        std::fs::write(dir.join("standalone.conf"), config(port, web_port, extra)).expect("write standalone.conf");
        std::fs::write(dir.join("log4j2.yaml"), LOG_CONFIG).expect("write the log config");
        let process = BrokerProcess::start(dir, move |dir| {
            let mut command = Command::new(java());
            command
                .args(["-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true"])
                // Pulsar reads the container's limits through JDK internals.
                .args(["--add-opens", "java.base/jdk.internal.platform=ALL-UNNAMED"])
                .arg(format!("-Dlog4j2.configurationFile={}", dir.join("log4j2.yaml").display()))
                .arg("-cp")
                .arg(class_path(&format!("pulsar-{}/libs", pulsar_version())))
                .arg("org.apache.pulsar.PulsarStandaloneStarter")
                .arg("--config")
                .arg(dir.join("standalone.conf"))
                .args(["--no-functions-worker", "--no-stream-storage"])
                .args(["--bookkeeper-port", &bookie_port.to_string()])
                .arg("--metadata-dir")
                .arg(dir.join("metadata"))
                .arg("--bookkeeper-dir")
                .arg(dir.join("bookkeeper"))
                // Its relative paths (ledger data among them) land in its own directory.
                .current_dir(dir);
            Launch {
                name: "pulsar".into(),
                command,
                ready: vec![
                    Readiness::Port(port),
                    Readiness::Http { port: web_port, path: "/admin/v2/namespaces/public", needle: "public/default" },
                ],
                patience: Duration::from_secs(180),
            }
        });
        Self { port, web_port, process }
    }

    /// `pulsar://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("pulsar://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:WEB_PORT`, the admin API.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.web_port)
    }

    /// Kills it (SIGKILL) and starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.process.restart();
    }

    /// Kills it (SIGKILL), leaving its data.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

fn config(port: u16, web_port: u16, extra: &str) -> String {
    format!(
        "clusterName=standalone
bindAddress=127.0.0.1
advertisedAddress=127.0.0.1
brokerServicePort={port}
webServicePort={web_port}
managedLedgerDefaultEnsembleSize=1
managedLedgerDefaultWriteQuorum=1
managedLedgerDefaultAckQuorum=1
allowAutoTopicCreation=true
allowAutoTopicCreationType=non-partitioned
brokerDeleteInactiveTopicsEnabled=false
functionsWorkerEnabled=false
{extra}
"
    )
}

const LOG_CONFIG: &str = "Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: \"[%d] %p %m (%c)%n\"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
";
