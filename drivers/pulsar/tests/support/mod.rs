//! The test brokers: the shared pulsar-lite that `scripts/test` starts, behind a proxy
//! (see `proxy.rs` for why), and private ones for tests that stop and restart theirs.
#![allow(dead_code)]

pub mod proxy;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tidewater_pulsar::PulsarConfig;

pub use proxy::Proxy;

/// The address of the pulsar-lite `scripts/test` started. A missing broker fails the
/// test: run the suite with `scripts/test`, which starts it.
pub fn shared_broker() -> SocketAddr {
    std::env::var("TIDEWATER_PULSAR_BROKER")
        .expect("TIDEWATER_PULSAR_BROKER is not set: run the tests with scripts/test, which starts pulsar-lite")
        .parse()
        .expect("TIDEWATER_PULSAR_BROKER is host:port")
}

/// The proxy in front of the shared broker, one per test binary.
pub fn shared_proxy() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| Proxy::start(shared_broker()))
}

/// The URL tests connect to: the shared broker, through the proxy.
pub fn shared_url() -> String {
    shared_proxy().url()
}

/// The configuration tests use against `url`.
pub fn config(url: &str) -> PulsarConfig {
    PulsarConfig::new(url)
}

/// The pulsar-lite binary: `TIDEWATER_PULSAR_LITE`, which `scripts/test` sets, or the
/// one in the venv `scripts/setup` installs it into.
pub fn pulsar_lite_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TIDEWATER_PULSAR_LITE") {
        return path.into();
    }
    let home = std::env::var_os("HOME").expect("HOME");
    let python = PathBuf::from(home).join(".cache/tidewater/py/bin/python");
    let out = Command::new(&python)
        .args([
            "-c",
            "import os, pulsar_lite; print(os.path.join(os.path.dirname(pulsar_lite.__file__), 'bin', 'pulsar-lite'))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?} ({e}): run scripts/setup, which installs pulsar-lite"));
    assert!(out.status.success(), "no pulsar-lite in {python:?}: run scripts/setup, which installs it");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A pulsar-lite of a test's own on a free loopback port, with its own storage, killed
/// on drop.
pub struct PrivatePulsar {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivatePulsar {
    /// Starts one; `extra_config` is added to its config file.
    pub fn start(extra_config: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("tidewater-pulsar-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pulsar-lite.toml"), format!("{extra_config}\n[metrics]\nenabled = false\n")).unwrap();
        let mut broker = Self { port, dir, child: None };
        broker.restart();
        broker
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts the broker (again) on the same port and storage, and waits until it
    /// accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::File::create(self.dir.join("pulsar-lite.log")).unwrap();
        let bin = pulsar_lite_binary();
        let child = Command::new(&bin)
            .arg("--config")
            .arg(self.dir.join("pulsar-lite.toml"))
            .args(["--addr", &format!("127.0.0.1:{}", self.port), "--log-level", "warn", "--db-path"])
            .arg(self.dir.join("db"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin:?}: {e}"));
        self.child = Some(child);
        // pulsar-lite gives no readiness signal but its port: poll it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "pulsar-lite did not listen on {} within 10 s", self.port);
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

impl Drop for PrivatePulsar {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
