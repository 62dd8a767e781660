//! PostgreSQL, from Debian's `postgresql` package, as a server of a test's own: a fresh
//! cluster in a temporary directory, on a free loopback port, trusting local users.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{free_port, fresh_dir, BrokerProcess, Launch, Restart};

/// A running PostgreSQL; dropping it kills it and removes its cluster.
pub struct PostgresServer {
    port: u16,
    process: BrokerProcess,
}

/// The directory of Debian's PostgreSQL programs (the newest major version installed).
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<u32> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("no PostgreSQL in {root:?} ({e}); scripts/setup installs Debian's postgresql"))
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let newest = versions.last().unwrap_or_else(|| panic!("no PostgreSQL version under {root:?}"));
    root.join(newest.to_string()).join("bin")
}

/// `program` run as the `postgres` user when this process is root, since PostgreSQL
/// refuses to run as root; `setpriv` replaces itself with the program, so the PID is
/// the server's own.
fn as_postgres_user(program: PathBuf) -> Command {
    let root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if root {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl PostgresServer {
    /// Makes a new cluster and starts it; returns once it takes connections.
    pub fn start() -> Self {
        let dir = fresh_dir("postgres");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("create the cluster directory");
        // The server runs as `postgres` when this is root (and only root can chown).
        let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status();
        let status = as_postgres_user(bin_dir().join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "tidewater", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(status.success(), "initdb of {data:?} failed: {status}");
        let port = free_port();
        let process = BrokerProcess::start(dir, move |dir| {
            let data = dir.join("data");
            let mut command = as_postgres_user(bin_dir().join("postgres"));
            command.arg("-D").arg(&data).args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"]);
            command.arg("-k").arg(&data).args(["-c", "fsync=off", "-c", "synchronous_commit=off"]);
            Launch::on_port("postgres", command, port, Duration::from_secs(60))
        });
        Self { port, process }
    }

    /// A connection URL for the `postgres` database as the `tidewater` superuser.
    pub fn url(&self) -> String {
        format!("postgres://tidewater@127.0.0.1:{}/postgres", self.port)
    }
}

impl Restart for PostgresServer {
    fn process(&mut self) -> &mut BrokerProcess {
        &mut self.process
    }
}
