//! What tidewater's tests run against: real brokers started as processes of their own
//! (on free loopback ports, with their own data directories, killed by PID) and the
//! reference clients of the interop tests.
//!
//! - [`KafkaBroker`]: Apache Kafka 4 in KRaft mode.
//! - [`NatsServer`]: the current nats-server and Debian's 2.9.
//! - [`PulsarStandalone`]: Apache Pulsar standalone.
//! - [`PostgresServer`]: PostgreSQL, for the outbox.
//! - [`clients`]: Kafka's Java client and the Python clients.
//! - [`shared`]: the brokers `scripts/test` starts once per run.
//! - [`bench`](mod@bench): what the throughput benches share (their counter, paired runs, ratio tables and a timed consumer).
//!
//! Every broker here is installed by `scripts/setup` at the version `scripts/versions`
//! names. Each kind restarts on its own ports and data after a SIGKILL, for the restart
//! tests.

pub mod bench;
pub mod clients;
pub mod install;
mod jvm;
mod kafka;
mod nats;
mod postgres;
pub mod process;
mod pulsar;
pub mod shared;

pub use kafka::{kafka_class_path, kafka_version, KafkaBroker, KafkaSecurity, SecuredPorts};
pub use nats::{NatsRelease, NatsServer};
pub use postgres::PostgresServer;
pub use process::{free_port, fresh_dir, BrokerProcess, Restart};
pub use pulsar::{create_partitioned_topic, pulsar_version, PulsarOptions, PulsarStandalone};
