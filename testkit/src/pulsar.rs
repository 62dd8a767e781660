//! Apache Pulsar standalone (broker, bookie and RocksDB metadata store in one JVM), from
//! the jars `scripts/setup` resolves from Maven Central.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::clients::output_lines;
use crate::install::{class_path, java, version};
use crate::jvm::quiet_log_config;
use crate::process::{free_port, fresh_dir, BrokerProcess, Launch, Readiness, Restart};

/// The Pulsar version the tests run against.
pub fn pulsar_version() -> &'static str {
    version("PULSAR_VERSION")
}

/// How to start a Pulsar standalone beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct PulsarOptions {
    /// Lines added to its configuration.
    pub extra: String,
    /// A TLS port too (`pulsar+ssl://`), with this certificate and PKCS#8 key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Token authentication (HS256 with a secret of its own) for every client, the
    /// broker's own included; [`PulsarStandalone::token`] makes tokens for it.
    pub token_auth: bool,
}

/// A Pulsar standalone on free loopback ports with its own data directories.
pub struct PulsarStandalone {
    /// The binary protocol port (`pulsar://`).
    pub port: u16,
    /// The TLS port (`pulsar+ssl://`), if TLS is on.
    pub tls_port: Option<u16>,
    /// The admin HTTP port.
    pub web_port: u16,
    /// The token secret (`data:;base64,...`), if token authentication is on.
    secret: Option<String>,
    process: BrokerProcess,
}

impl PulsarStandalone {
    /// Starts one with `extra` lines added to its configuration; returns once the
    /// `public/default` namespace exists, so topics can be used at once.
    pub fn start(extra: &str) -> Self {
        Self::start_with(PulsarOptions { extra: extra.to_owned(), ..PulsarOptions::default() })
    }

    /// Starts one as `options` say; returns once the `public/default` namespace exists.
    pub fn start_with(options: PulsarOptions) -> Self {
        let port = free_port();
        let web_port = free_port();
        let bookie_port = free_port();
        let dir = fresh_dir("pulsar");
        let mut extra = options.extra.clone();
        let tls_port = options.tls.as_ref().map(|(cert, key)| {
            let tls_port = free_port();
            extra.push_str(&format!(
                "\nbrokerServicePortTls={tls_port}\ntlsCertificateFilePath={}\ntlsKeyFilePath={}\n",
                cert.display(),
                key.display()
            ));
            tls_port
        });
        let (secret, admin_token) = if options.token_auth {
            let secret = format!("data:;base64,{}", tokens(&["create-secret-key", "--base64"]));
            let admin = tokens(&["create", "--secret-key", &secret, "--subject", "admin"]);
            extra.push_str(&format!(
                "
authenticationEnabled=true
authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderToken
tokenSecretKey={secret}
superUserRoles=admin
authorizationEnabled=false
brokerClientAuthenticationPlugin=org.apache.pulsar.client.impl.auth.AuthenticationToken
brokerClientAuthenticationParameters=token:{admin}
"
            ));
            (Some(secret), Some(admin))
        } else {
            (None, None)
        };
        std::fs::write(dir.join("standalone.conf"), config(port, web_port, &extra)).expect("write standalone.conf");
        std::fs::write(dir.join("log4j2.yaml"), quiet_log_config(&[])).expect("write the log config");
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
                    Readiness::Http {
                        port: web_port,
                        path: "/admin/v2/namespaces/public",
                        needle: "public/default",
                        token: admin_token.clone(),
                    },
                ],
                patience: Duration::from_secs(180),
            }
        });
        Self { port, tls_port, web_port, secret, process }
    }

    /// `pulsar+ssl://127.0.0.1:TLS_PORT`, if TLS is on.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("pulsar+ssl://127.0.0.1:{p}"))
    }

    /// A token for `subject` signed with this broker's secret; panics unless token
    /// authentication is on.
    pub fn token(&self, subject: &str) -> String {
        let secret = self.secret.as_deref().expect("token authentication is off for this broker");
        tokens(&["create", "--secret-key", secret, "--subject", subject])
    }

    /// Makes `topic` (in `public/default`) a partitioned topic of `partitions`
    /// partitions through the admin API.
    pub fn create_partitioned_topic(&self, topic: &str, partitions: u32) {
        create_partitioned_topic(self.web_port, topic, partitions);
    }

    /// `pulsar://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("pulsar://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:WEB_PORT`, the admin API.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.web_port)
    }
}

/// Makes `topic` (in `public/default`) a partitioned topic of `partitions` partitions
/// through the admin API on `web_port`.
pub fn create_partitioned_topic(web_port: u16, topic: &str, partitions: u32) {
    let path = format!("/admin/v2/persistent/public/default/{topic}/partitions");
    let (status, body) = crate::process::http(web_port, "PUT", &path, None, &partitions.to_string())
        .unwrap_or_else(|e| panic!("the Pulsar admin API on port {web_port}: {e}"));
    assert!(status == 204 || status == 200, "creating {topic} with {partitions} partitions: {status} {body}");
}

/// What Pulsar's token tool (`TokensCliUtils`, in the broker's jars) prints for `args`.
fn tokens(args: &[&str]) -> String {
    let mut command = Command::new(java());
    command
        .arg("-cp")
        .arg(class_path(&format!("pulsar-{}/libs", pulsar_version())))
        .arg("org.apache.pulsar.utils.auth.tokens.TokensCliUtils")
        .args(args);
    let lines = output_lines(command);
    lines.last().cloned().unwrap_or_else(|| panic!("the token tool printed nothing for {args:?}"))
}

/// The standalone's configuration, which its bookie reads too. The bookie's disk limits
/// are raised from 95 % to 99 %: at 95 % it turns read-only and every publish fails with
/// "not enough non-faulty bookies", which a machine full of build output reached.
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
diskUsageThreshold=0.99
diskUsageWarnThreshold=0.99
diskUsageLwmThreshold=0.98
{extra}
"
    )
}

impl Restart for PulsarStandalone {
    fn process(&mut self) -> &mut BrokerProcess {
        &mut self.process
    }
}
