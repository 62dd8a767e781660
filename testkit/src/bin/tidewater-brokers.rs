//! Starts the shared test brokers for `scripts/test`, in parallel, and keeps them until
//! its standard input closes (the script holds it open while it runs, so the brokers
//! stop when the script ends, however it ends).
//!
//! ```text
//! tidewater-brokers kafka nats nats-debian pulsar
//! ```
//!
//! Prints `export NAME=value` lines for the tests, then `ready`. A line `logs` on its
//! standard input makes it print the latest records of each broker's log to standard
//! error: `scripts/test` asks for them when a test failed, while the brokers still run
//! and their logs are still there.

use std::io::BufRead;

use tidewater_testkit::{
    install, kafka_version, pulsar_version, BrokerProcess, KafkaBroker, NatsRelease, NatsServer, PulsarStandalone,
    Restart,
};

/// How many records of each broker's log a failed run shows.
const LOG_RECORDS: usize = 60;

enum Started {
    Kafka(KafkaBroker),
    Nats(NatsServer, NatsRelease),
    Pulsar(PulsarStandalone),
}

impl Started {
    fn exports(&self) -> Vec<(String, String)> {
        match self {
            Started::Kafka(k) => vec![("TIDEWATER_KAFKA_BROKERS".into(), k.brokers())],
            Started::Nats(n, NatsRelease::Current) => vec![("TIDEWATER_NATS_URL".into(), n.url())],
            Started::Nats(n, NatsRelease::Debian) => vec![("TIDEWATER_NATS_DEBIAN_URL".into(), n.url())],
            Started::Pulsar(p) => {
                vec![("TIDEWATER_PULSAR_URL".into(), p.url()), ("TIDEWATER_PULSAR_ADMIN_URL".into(), p.admin_url())]
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Started::Kafka(k) => format!("Apache Kafka {} (KRaft) on {}", kafka_version(), k.brokers()),
            Started::Nats(n, NatsRelease::Current) => {
                format!("nats-server {} on {}", install::version("NATS_SERVER_VERSION"), n.url())
            }
            Started::Nats(n, NatsRelease::Debian) => format!("Debian's nats-server on {}", n.url()),
            Started::Pulsar(p) => format!("Apache Pulsar {} standalone on {}", pulsar_version(), p.url()),
        }
    }

    fn process(&mut self) -> &mut BrokerProcess {
        match self {
            Started::Kafka(k) => k.process(),
            Started::Nats(n, _) => n.process(),
            Started::Pulsar(p) => p.process(),
        }
    }
}

fn start(name: &str) -> Started {
    match name {
        "kafka" => Started::Kafka(KafkaBroker::start()),
        "nats" => Started::Nats(NatsServer::start(NatsRelease::Current), NatsRelease::Current),
        "nats-debian" => Started::Nats(NatsServer::start(NatsRelease::Debian), NatsRelease::Debian),
        "pulsar" => Started::Pulsar(PulsarStandalone::start("")),
        other => panic!("unknown broker {other}: kafka, nats, nats-debian or pulsar"),
    }
}

fn main() {
    let names: Vec<String> = std::env::args().skip(1).collect();
    // Each start blocks until its broker is ready; the JVMs take seconds, so in parallel.
    let outcomes: Vec<std::thread::Result<Started>> = std::thread::scope(|scope| {
        let handles: Vec<_> = names.iter().map(|name| scope.spawn(move || start(name))).collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    // A broker that failed has said why (its panic message, with its log); the others
    // are stopped before the program fails.
    if outcomes.iter().any(Result::is_err) {
        drop(outcomes);
        std::process::exit(1);
    }
    let started: Vec<Started> = outcomes.into_iter().flatten().collect();
    for broker in &started {
        eprintln!("ok: {}", broker.describe());
        for (name, value) in broker.exports() {
            println!("export {name}={value}");
        }
    }
    println!("ready");
    let mut started = started;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "logs" {
            for broker in &mut started {
                let describe = broker.describe();
                let process = broker.process();
                eprintln!(
                    "\n--- the last records of the log of {describe} ({}) ---\n{}",
                    process.log_path().display(),
                    process.recent_log(LOG_RECORDS)
                );
            }
        }
    }
    drop(started);
}
