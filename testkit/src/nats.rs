//! nats-server: the current release (built by `scripts/setup` from the Go module proxy)
//! and Debian's 2.9, so the driver is proven on both.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::install::{installed, version};
use crate::process::{free_port, fresh_dir, BrokerProcess, Launch, Restart};

/// Which nats-server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatsRelease {
    /// The release `scripts/versions` names (`NATS_SERVER_VERSION`), from the Go module
    /// proxy.
    Current,
    /// Debian bookworm's package, 2.9.
    Debian,
}

impl NatsRelease {
    /// The server binary.
    pub fn binary(self) -> PathBuf {
        match self {
            NatsRelease::Current => installed(&format!("nats-server-{}/nats-server", version("NATS_SERVER_VERSION"))),
            NatsRelease::Debian => {
                let path = PathBuf::from("/usr/sbin/nats-server");
                assert!(path.exists(), "no {path:?}: run scripts/setup, which installs Debian's nats-server");
                path
            }
        }
    }
}

/// A nats-server on a free loopback port, with its own JetStream store when JetStream
/// is on.
pub struct NatsServer {
    /// Its client port.
    pub port: u16,
    process: BrokerProcess,
}

impl NatsServer {
    /// A server with JetStream.
    pub fn start(release: NatsRelease) -> Self {
        Self::start_with(release, true, &[])
    }

    /// A server with `extra` arguments besides address, port and, if `jetstream`,
    /// JetStream and its store.
    pub fn start_with(release: NatsRelease, jetstream: bool, extra: &[&str]) -> Self {
        let port = free_port();
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let binary = release.binary();
        let process = BrokerProcess::start(fresh_dir("nats"), move |dir| {
            let mut command = Command::new(&binary);
            command.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
            if jetstream {
                command.args(["-js", "-sd"]).arg(dir.join("jetstream"));
            }
            command.args(&extra);
            Launch::on_port("nats-server", command, port, Duration::from_secs(20))
        });
        Self { port, process }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Restart for NatsServer {
    fn process(&mut self) -> &mut BrokerProcess {
        &mut self.process
    }
}
