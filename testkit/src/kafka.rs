//! Apache Kafka 4 in KRaft mode, one node acting as broker and controller, from the jars
//! `scripts/setup` resolves from Maven Central.

use std::path::{Path, PathBuf};
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
    /// The secured listeners' ports, if [`KafkaBroker::start_secured`] made them.
    pub secured: Option<SecuredPorts>,
    process: BrokerProcess,
}

/// What a secured broker takes besides plain connections: a server certificate for
/// 127.0.0.1 and the CA that signed it (PEM files), and users for SASL.
#[derive(Clone, Debug)]
pub struct KafkaSecurity {
    /// The server's certificate chain (PEM), for 127.0.0.1.
    pub certificate: PathBuf,
    /// The server's private key (PEM, unencrypted).
    pub key: PathBuf,
    /// The CA whose client certificates the mutual-TLS listener accepts (PEM).
    pub client_ca: PathBuf,
    /// SASL users as name and password, known to every mechanism (PLAIN, SCRAM-SHA-256
    /// and SCRAM-SHA-512).
    pub users: Vec<(String, String)>,
}

/// The listeners of a secured broker, each on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
pub struct SecuredPorts {
    /// SASL over TLS (`sasl_ssl`): PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.
    pub sasl_ssl: u16,
    /// SASL without TLS (`sasl_plaintext`), the same mechanisms.
    pub sasl_plaintext: u16,
    /// TLS that requires a client certificate signed by the client CA (`ssl`).
    pub mutual_tls: u16,
}

impl KafkaBroker {
    /// Formats a new log directory and starts the broker on it; returns once it accepts
    /// connections.
    pub fn start() -> Self {
        Self::start_on(None)
    }

    /// A broker with secured listeners beside the plain one (see [`SecuredPorts`]), as
    /// `security` says; returns once it accepts connections.
    pub fn start_secured(security: &KafkaSecurity) -> Self {
        Self::start_on(Some(security))
    }

    fn start_on(security: Option<&KafkaSecurity>) -> Self {
        let port = free_port();
        let controller = free_port();
        let dir = fresh_dir("kafka");
        let mut config = properties(port, controller, &dir.join("logs"));
        let secured = security.map(|security| {
            let ports = SecuredPorts { sasl_ssl: free_port(), sasl_plaintext: free_port(), mutual_tls: free_port() };
            config = secured_properties(&config, ports, security, &dir);
            ports
        });
        std::fs::write(dir.join("server.properties"), config).expect("write server.properties");
        std::fs::write(dir.join("log4j2.yaml"), quiet_log_config(&["kafka.server.KafkaRaftServer"]))
            .expect("write the log config");
        let scram_users: Vec<String> = security
            .into_iter()
            .flat_map(|s| &s.users)
            .flat_map(|(name, password)| {
                ["SCRAM-SHA-256", "SCRAM-SHA-512"].map(|m| format!("{m}=[name={name},password={password}]"))
            })
            .collect();
        format(&dir, &scram_users);
        let process = BrokerProcess::start(dir, move |dir| {
            let mut command = jvm(dir);
            command.arg("kafka.Kafka").arg(dir.join("server.properties"));
            // The JVM and KRaft take 5-10 s on 2 busy cores; recovery after a kill adds a
            // little.
            Launch::on_port("kafka", command, port, Duration::from_secs(120))
        });
        Self { port, secured, process }
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
/// SCRAM credentials (`SCRAM-SHA-256=[name=...,password=...]`) live in that metadata, so
/// they are written here.
fn format(dir: &Path, scram_users: &[String]) {
    let mut command = jvm(dir);
    command
        .args(["kafka.tools.StorageTool", "format", "--cluster-id", "dGlkZXdhdGVyLXRlc3RzIQ", "--config"])
        .arg(dir.join("server.properties"));
    for user in scram_users {
        command.args(["--add-scram", user]);
    }
    let out = command.output().expect("run Kafka's StorageTool");
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

/// `plain` with the secured listeners added. The broker takes its certificate as a
/// PKCS#12 keystore, made here from the PEM files with the machine's `openssl`; the
/// client CA as a PEM truststore.
fn secured_properties(plain: &str, ports: SecuredPorts, security: &KafkaSecurity, dir: &Path) -> String {
    const STORE_PASSWORD: &str = "tidewater-test";
    let keystore = dir.join("server.p12");
    let out = Command::new("openssl")
        .args(["pkcs12", "-export", "-name", "kafka", "-passout"])
        .arg(format!("pass:{STORE_PASSWORD}"))
        .arg("-in")
        .arg(&security.certificate)
        .arg("-inkey")
        .arg(&security.key)
        .arg("-out")
        .arg(&keystore)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "making the Kafka keystore failed: {}", String::from_utf8_lossy(&out.stderr));
    let SecuredPorts { sasl_ssl, sasl_plaintext, mutual_tls } = ports;
    let plain_users: String =
        security.users.iter().map(|(name, password)| format!(" user_{name}=\"{password}\"")).collect();
    let mut config = String::new();
    for line in plain.lines() {
        let line = match line.split_once('=') {
            Some(("listeners", value)) => format!(
                "listeners={value},SECURED://127.0.0.1:{sasl_ssl},SASLPLAIN://127.0.0.1:{sasl_plaintext},\
                 MUTUAL://127.0.0.1:{mutual_tls}"
            ),
            Some(("advertised.listeners", value)) => format!(
                "advertised.listeners={value},SECURED://127.0.0.1:{sasl_ssl},\
                 SASLPLAIN://127.0.0.1:{sasl_plaintext},MUTUAL://127.0.0.1:{mutual_tls}"
            ),
            Some(("listener.security.protocol.map", value)) => {
                format!("listener.security.protocol.map={value},SECURED:SASL_SSL,SASLPLAIN:SASL_PLAINTEXT,MUTUAL:SSL")
            }
            _ => line.to_owned(),
        };
        config.push_str(&line);
        config.push('\n');
    }
    let scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
    let plain_login = format!("org.apache.kafka.common.security.plain.PlainLoginModule required{plain_users};");
    config.push_str(&format!(
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={STORE_PASSWORD}
ssl.key.password={STORE_PASSWORD}
ssl.truststore.type=PEM
ssl.truststore.location={client_ca}
listener.name.mutual.ssl.client.auth=required
",
        keystore = keystore.display(),
        client_ca = security.client_ca.display(),
    ));
    for listener in ["secured", "saslplain"] {
        config.push_str(&format!(
            "listener.name.{listener}.plain.sasl.jaas.config={plain_login}
listener.name.{listener}.scram-sha-256.sasl.jaas.config={scram}
listener.name.{listener}.scram-sha-512.sasl.jaas.config={scram}
"
        ));
    }
    config
}

impl Restart for KafkaBroker {
    fn process(&mut self) -> &mut BrokerProcess {
        &mut self.process
    }
}
