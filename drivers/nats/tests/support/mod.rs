//! The test brokers: the shared nats-server that `scripts/test` starts, and private
//! servers for tests that must stop and restart theirs.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The URL of the server `scripts/test` started. A missing server fails the test: run
/// the suite with `scripts/test`, which starts it.
pub fn shared_url() -> String {
    std::env::var("TIDEWATER_NATS_URL").expect(
        "TIDEWATER_NATS_URL is not set: run the tests with scripts/test, which starts nats-server with JetStream",
    )
}

/// The nats-server binary: `TIDEWATER_NATS_SERVER`, or Debian's.
pub fn server_binary() -> PathBuf {
    std::env::var_os("TIDEWATER_NATS_SERVER").map(PathBuf::from).unwrap_or_else(|| "/usr/sbin/nats-server".into())
}

/// A nats-server with JetStream on a free loopback port, killed on drop.
pub struct PrivateServer {
    pub port: u16,
    pub store: PathBuf,
    extra: Vec<String>,
    jetstream: bool,
    child: Option<Child>,
}

impl PrivateServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server started with `extra` arguments besides address, port and JetStream.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_inner(extra, true)
    }

    /// A server without JetStream (which operator mode would need a system account for),
    /// started with `extra` arguments besides address and port.
    pub fn start_core_with(extra: &[&str]) -> Self {
        Self::start_inner(extra, false)
    }

    fn start_inner(extra: &[&str], jetstream: bool) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let store = std::env::temp_dir().join(format!("tidewater-nats-{}-{port}", std::process::id()));
        let extra = extra.iter().map(|a| a.to_string()).collect();
        let mut server = Self { port, store, extra, jetstream, child: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again), with the same port and storage, and waits until it
    /// accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let bin = server_binary();
        let mut command = Command::new(&bin);
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.jetstream {
            command.args(["-js", "-sd"]).arg(&self.store);
        }
        let child = command
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin:?}: {e}; scripts/test installs nats-server"));
        self.child = Some(child);
        // The server gives no readiness signal but its port: poll it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {} within 10 s", self.port);
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

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
