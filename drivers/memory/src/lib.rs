//! The in-memory driver of tidewater: a broker inside the process that behaves like a
//! real one, so a service's tests exercise the same rules they meet in production.
//!
//! - **Topics with partitions.** A message's key picks its partition (FNV-1a hash), so
//!   messages with one key keep their order; keyless messages are spread round robin.
//! - **Consumer groups.** Each group receives every message; the members of a group share
//!   the partitions (round robin, rebalanced as members join and leave). A new group
//!   starts at the earliest retained message or at the end, as its task says; a named
//!   group keeps its position when its members leave, until
//!   [`MemoryBroker::delete_group`]. A task without a group gets a private one that
//!   disappears with it.
//!   A member is handed its partitions' messages oldest first, as they were published,
//!   so one publisher's keyless messages reach a lone member in order, and a slow
//!   member frees room in every partition as fast as publishers fill it.
//! - **Queue-style settlement** ([`DeliveryModel::Queue`](tidewater_core::DeliveryModel)):
//!   each delivery is acked or nacked on its own. A nack redelivers after the delay, with
//!   the attempt counting up; what a member had in flight when it left comes again to the
//!   group. A redelivered message may overtake later messages of its key.
//! - **Retention and backpressure.** A partition holds at most
//!   [`MemoryConfig::capacity`] messages. Of those every group has settled it keeps the
//!   newest [`MemoryConfig::retain`] (default 1,024) for late groups and
//!   [`MemoryBroker::published`]: each publish trims up to two of the oldest beyond
//!   that (past three quarters of the capacity, down to half of it), and a full
//!   partition trims all it can. A publisher to a partition full of messages some group
//!   has not settled waits, so nothing is dropped and memory stays bounded. With no
//!   group on a topic, the oldest messages make room only when it is full.
//!
//!   The retention is kept short by default because a message freed long after it was
//!   written is out of every cache: with 30,000 kept (the old rule's three quarters of
//!   the default capacity, 4 partitions), the peer bench's counting row ran at
//!   0.9-1.2M msg/s, and 1.4-1.7M with 1,024 (`BENCHMARKS.md`, session 23). A test that
//!   reads back more than that per partition with `published` sets a larger `retain`.
//! - **Checks a real broker makes**: topic names as Kafka allows them, a message size
//!   limit, and optionally no auto-creation of topics.
//!
//! - **Transactions** ([`MemoryTransactions`]): a transaction's writes land together at
//!   its commit, or not at all.
//!
//! For tests: [`MemoryBroker::published`] and [`MemoryBroker::wait_published`] read back
//! what a service published, [`MemoryBroker::wait_acked`] waits until a group handled N
//! messages, and [`Recorder`](tidewater_core::testing::Recorder) records deliveries.

mod broker;
mod config;
mod gather;
mod source;
mod topic;
mod transaction;

pub use broker::{MemoryBroker, MemoryWriter};
pub use config::MemoryConfig;
pub use transaction::MemoryTransactions;
