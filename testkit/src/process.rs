//! A broker process of a test's own: started on free loopback ports with its own data
//! directory, waited for until it answers, killed by PID, and cleaned up on drop.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1, never one this process was given before.
///
/// The port is free when this returns; a broker started right after gets it unless
/// another process takes it first. The system hands out a port it just released again,
/// so without the record two ports asked for at once could be the same one (a Pulsar
/// broker and its bookie were, and the broker could not bind).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
        let port = listener.local_addr().expect("a bound listener has an address").port();
        if given.insert(port) {
            return port;
        }
    }
}

/// A new, empty directory for one broker's data and log, under the system's temporary
/// directory.
pub fn fresh_dir(name: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tidewater-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {dir:?}: {e}"));
    dir
}

/// When a started broker counts as ready.
pub enum Readiness {
    /// It accepts TCP connections on this port.
    Port(u16),
    /// An HTTP GET of `path` on `port` answers 200 with a body that contains `needle`.
    Http {
        /// The HTTP port.
        port: u16,
        /// The path to get.
        path: &'static str,
        /// What the body must contain.
        needle: &'static str,
        /// A bearer token to send, for a broker that requires one.
        token: Option<String>,
    },
}

impl Readiness {
    fn reached(&self) -> bool {
        match self {
            Readiness::Port(port) => TcpStream::connect(("127.0.0.1", *port)).is_ok(),
            Readiness::Http { port, path, needle, token } => {
                http_get(*port, path, token.as_deref()).is_some_and(|body| body.contains(needle))
            }
        }
    }
}

/// The body of a `200` answer to `GET path`, or `None`.
fn http_get(port: u16, path: &str, token: Option<&str>) -> Option<String> {
    http(port, "GET", path, token, "").ok().and_then(|(status, body)| (status == 200).then_some(body))
}

/// Sends one HTTP/1.0 request to 127.0.0.1:`port` (with a bearer `token` if given) and
/// returns the status and body: enough for the brokers' admin APIs, without an HTTP
/// client crate.
pub fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> std::io::Result<(u16, String)> {
    use std::io::Write;
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an HTTP answer: {answer:?}"));
    let (head, rest) = answer.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok((status, rest.to_owned()))
}

/// How to start one broker: the command and how to tell it is ready.
pub struct Launch {
    /// What a failure message calls the broker.
    pub name: String,
    /// The command, without its standard streams (they go to the log).
    pub command: Command,
    /// When it is ready.
    pub ready: Vec<Readiness>,
    /// How long it may take to get ready.
    pub patience: Duration,
}

impl Launch {
    /// A process that is ready once it accepts connections on `port`.
    pub fn on_port(name: &str, command: Command, port: u16, patience: Duration) -> Self {
        Self { name: name.into(), command, ready: vec![Readiness::Port(port)], patience }
    }
}

/// A running broker process. [`restart`](Self::restart) starts it again on the same
/// ports and data; dropping it kills it and removes its directory.
pub struct BrokerProcess {
    dir: PathBuf,
    /// What its launch calls it, which names its logs.
    name: String,
    make: Box<dyn Fn(&Path) -> Launch + Send + Sync>,
    child: Option<Child>,
    starts: usize,
}

impl BrokerProcess {
    /// Starts the broker `make` describes in `dir` (its data and log directory) and
    /// waits until it is ready. `make` is called again for every restart.
    pub fn start(dir: PathBuf, make: impl Fn(&Path) -> Launch + Send + Sync + 'static) -> Self {
        let mut process = Self { dir, name: String::new(), make: Box::new(make), child: None, starts: 0 };
        process.restart();
        process
    }

    /// Its data and log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log of its latest start: what it printed, standard output and error both.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}-{}.log", self.name, self.starts))
    }

    /// The last `records` records of its latest log, without the lines that continue
    /// a record (a Java stack trace's frames): enough to see what a broker complained
    /// of while a test failed, where a plain tail would show one stack trace.
    pub fn recent_log(&self, records: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let heads: Vec<&str> = text.lines().filter(|line| !line.starts_with([' ', '\t'])).collect();
        heads[heads.len().saturating_sub(records)..].join("\n")
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it (SIGKILL, as a crash would) if it runs, starts it again on the same
    /// ports and data, and waits until it is ready.
    pub fn restart(&mut self) {
        self.kill();
        let Launch { name, mut command, ready, patience } = (self.make)(&self.dir);
        self.starts += 1;
        self.name.clone_from(&name);
        let log_path = self.log_path();
        let log = File::create(&log_path).unwrap_or_else(|e| panic!("cannot create {log_path:?}: {e}"));
        let err_log = log.try_clone().expect("clone a log file handle");
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}; scripts/setup installs it"));
        self.child = Some(child);
        let deadline = Instant::now() + patience;
        for condition in &ready {
            // No broker here gives a readiness signal but its ports: poll them.
            while !condition.reached() {
                if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    panic!("{name} exited ({status}) before it was ready; its log:\n{}", tail(&log_path));
                }
                if Instant::now() > deadline {
                    panic!("{name} was not ready within {patience:?}; its log:\n{}", tail(&log_path));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Kills it with SIGKILL, as a crash would, and reaps it. Nothing happens if it is
    /// not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A broker the tests can crash and start again: every kind this crate starts.
pub trait Restart: Send + 'static {
    /// Its process.
    fn process(&mut self) -> &mut BrokerProcess;

    /// Kills it (SIGKILL, as a crash would) and starts it again on the same ports and
    /// data; returns once it is ready.
    fn restart(&mut self) {
        self.process().restart();
    }

    /// Kills it (SIGKILL), as a crash would; [`Restart::restart`] starts it again.
    fn kill(&mut self) {
        self.process().kill();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The last lines of a log, for a failure message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_asked_for_together_are_all_different() {
        let ports: Vec<u16> = (0..2_000).map(|_| free_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
    }

    #[test]
    fn a_process_that_exits_early_fails_with_its_log() {
        let dir = fresh_dir("early-exit");
        let outcome = std::panic::catch_unwind(|| {
            BrokerProcess::start(dir, |_| {
                let mut command = Command::new("sh");
                command.args(["-c", "echo the reason it stopped; exit 3"]);
                Launch::on_port("quitter", command, free_port(), Duration::from_secs(10))
            })
        });
        let message = *outcome.err().expect("start panics").downcast::<String>().expect("a message");
        assert!(message.contains("quitter exited"), "{message}");
        assert!(message.contains("the reason it stopped"), "{message}");
    }

    #[test]
    fn restart_kills_the_old_process_and_starts_a_new_one() {
        let port = free_port();
        let mut process = BrokerProcess::start(fresh_dir("listener"), move |_| {
            let mut command = Command::new("python3");
            command.args([
                "-c",
                "import socket, sys, time\n\
                 s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                 s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n\
                 time.sleep(600)",
                &port.to_string(),
            ]);
            Launch::on_port("listener", command, port, Duration::from_secs(10))
        });
        let first = process.pid().expect("running");
        process.restart();
        let second = process.pid().expect("running again");
        assert_ne!(first, second);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        let dir = process.dir().to_owned();
        drop(process);
        assert!(!dir.exists(), "dropping removes the data directory");
        assert!(!Path::new(&format!("/proc/{second}")).exists(), "dropping kills the process");
    }

    #[test]
    fn the_recent_log_keeps_records_and_leaves_out_stack_frames() {
        let port = free_port();
        let process = BrokerProcess::start(fresh_dir("logger"), move |_| {
            let mut command = Command::new("python3");
            command.args([
                "-c",
                "import socket, sys, time\n\
                 for i in range(5): print(f'[t] WARN record {i}')\n\
                 print('\\tat Frame.of(Record.java:4)')\n\
                 print('[t] ERROR the last record', flush=True)\n\
                 s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n\
                 time.sleep(600)",
                &port.to_string(),
            ]);
            Launch::on_port("logger", command, port, Duration::from_secs(10))
        });
        assert!(process.log_path().ends_with("logger-1.log"), "{:?}", process.log_path());
        let recent = process.recent_log(3);
        assert_eq!(recent, "[t] WARN record 3\n[t] WARN record 4\n[t] ERROR the last record");
    }
}
