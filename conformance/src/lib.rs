//! The conformance suite every tidewater driver runs against its real broker.
//!
//! A driver's tests implement [`Fixture`] (how to get a writer and a reader, and what the
//! broker can do) and expand [`conformance_tests!`], which makes one `#[tokio::test]`
//! per case plus the stress test. Every case uses fresh topic names, so cases and stress
//! copies never see each other's messages.
//!
//! # A driver author's checklist
//!
//! 1. The writer implements [`BrokerWriter`](tidewater_core::BrokerWriter) and
//!    `Driver::writer` returns it in a [`Closable`](tidewater_core::Closable), which
//!    refuses writes after a close the same way on every driver. Its `write` returns only
//!    once the broker has every message of the batch (or fails it whole, with an
//!    [`ErrorKind`](tidewater_core::ErrorKind) that says whether a retry helps); messages
//!    over the broker's limit are `TooLarge`, names that break
//!    [`names::check_topic`](tidewater_core::names::check_topic) are `InvalidName`.
//!    An error keeps its client's error as its cause
//!    ([`Error::with_source`](tidewater_core::Error::with_source)); the driver's tests
//!    check its real failures with [`assert_each_cause_said_once`]. A broker that refuses
//!    the client's credentials or its TLS handshake is a `Config` error at connect, which
//!    a retry cannot help ([`assert_refused_for_good`]).
//! 2. `Reader::open` subscribes and returns the subscription's
//!    [`Source`](tidewater_core::Source); core's `Reader::read` marks the reader ready
//!    and runs the handlers over it. A source ends only when the broker ended the
//!    subscription (core restarts it as a failure); one that is subscribed only after the
//!    open (a log consumer waiting for partitions) says so with `announces_ready` and
//!    calls the ready signal itself. `next_batch` hands out at most its `max` and never
//!    more than [`MOST_A_FETCH`](tidewater_core::MOST_A_FETCH) deliveries a call,
//!    leaving the rest in the broker's client. After a nack rewinds a partition, it
//!    hands out none of what it held of that partition past the nacked record. A
//!    consumer whose handlers are busy (the source not asked for more) keeps its place
//!    with the broker however long they take: what the broker needs to see of it
//!    (polls, heartbeats, in-progress acks) goes on beside the fetches, and the fixture
//!    gives a reader configured with a short window for case 30 ([`Fixture::busy_reader`]).
//! 3. Every delivery is settled exactly once: `Settle::settle` for ack or nack,
//!    `release` for one given back unhandled (or, for a source that keeps its settlement
//!    state in one place, the same calls of one
//!    [`SharedSettle`](tidewater_core::SharedSettle), with no allocation per delivery);
//!    a log driver commits through
//!    [`PartitionCommits`](tidewater_core::PartitionCommits) so the commit never passes
//!    an unsettled message.
//! 4. `Delivery::new` gets the broker's delivery count where it keeps one (else the
//!    driver counts), the group, and a [`Position`](tidewater_core::Position). Messages
//!    read from one topic are named with one shared
//!    [`TopicName`](tidewater_core::TopicName), not a copy of the name per record. A
//!    group mapped to a broker's name for it never becomes another group's: two groups
//!    whose names map to one are told apart or the second is refused (case 27).
//! 5. `Driver::admin` creates, deletes and lists topics and tells a group's lag where
//!    the broker can; the rest answers `Unsupported`. A topic deleted and made again
//!    works again for the readers and writers that used it before (case 29): nothing a
//!    driver keeps per topic may still point at what was deleted. So do `Driver::transactions`
//!    (a driver whose deliveries can be committed in a transaction gives them an origin,
//!    [`Delivery::with_origin`](tidewater_core::Delivery::with_origin)) and
//!    `Driver::native_requests`, which may stay `None`.
//! 6. The fixture declares a capability off only where the broker lacks it, and lists
//!    the cases that need it in `conformance_tests!`'s ignore list with the reason.
//! 7. The tests run against the real broker `scripts/test` starts (the test kit's
//!    helpers), never a mock, plus the restart cases where the broker can be killed and
//!    started again: a [`restart::RestartFixture`] on a broker of the test's own (for a
//!    broker the test kit starts as a process, [`restart::ProcessRestart`] is that
//!    fixture) and [`restart_tests!`], which runs the same three cases on every such driver:
//!    nothing lost through a restart, a lagging consumer through two, and readiness that
//!    follows the broker ([`Reader::connected`] says whether the broker is reached).
//!
//! Capabilities are switched off only where the broker truly lacks them, and a case that
//! needs a missing capability is declared ignored with the reason in the driver's
//! `conformance_tests!` (so `cargo test` lists it as ignored); a case that finds its
//! capability off without that declaration fails. In the stress run, which runs every
//! case, such a case says so on standard output and returns.

#![forbid(unsafe_code)]

mod batches;
mod cases;
pub mod certs;
mod failures;
mod flow;
mod operations;
pub mod restart;
mod support;
mod transactions;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidewater_core::{Admin, Reader, Result, Transactions, Writer};

pub use batches::*;
pub use cases::*;
pub use failures::*;
pub use flow::*;
pub use operations::*;
pub use support::{
    assert_each_cause_said_once, assert_refused_for_good, fresh_topic, message_with_every_field, seq, subscribe_reader,
    EVERY_FIELD_HEADERS, EVERY_FIELD_PAYLOAD_HEX,
};
pub use transactions::*;

/// What a driver's broker can do. Each flag turns on the cases that need it.
#[derive(Clone, Debug)]
pub struct Capabilities {
    /// Messages are kept: a subscriber that comes later still gets them.
    pub persistent: bool,
    /// Consumer groups: each group gets every message and members of one group share
    /// them.
    pub consumer_groups: bool,
    /// A group keeps its position across subscriptions: a new subscription of the group
    /// goes on where the last one stopped. Brokers with consumer groups have it; a
    /// driver can also keep positions itself where its broker has no groups.
    pub group_positions: bool,
    /// Messages with one key arrive in publish order to a single consumer.
    pub ordered_per_key: bool,
    /// Per-key order also holds with concurrency above 1.
    pub ordered_per_key_concurrent: bool,
    /// A nack (or handler error) leads to a redelivery.
    pub redelivery_on_nack: bool,
    /// The broker counts delivery attempts, so a redelivery has attempt 2 or more.
    pub counts_attempts: bool,
    /// A settled delivery is never delivered again to its group (no duplicates after a
    /// graceful shutdown).
    pub settles_exactly: bool,
    /// The broker keeps a list of its topics ([`Admin::topics`] answers).
    pub lists_topics: bool,
    /// The broker tells how far a group is behind ([`Admin::lag`] answers).
    pub reports_lag: bool,
    /// A group's members share every partition's messages, and the broker gives each
    /// only as many as its reader asks for (JetStream's pull requests), so a reader's
    /// prefetch bounds what a member holds: one whose handlers are stuck leaves the rest
    /// to the others. Off where members own partitions (Kafka, StreamBus, the memory
    /// driver: a partition's messages wait for its owner), where the broker pushes
    /// messages unasked (core NATS), and where its flow control is coarser than a
    /// prefetch (Pulsar, whose flow permits must cover a producer's batch).
    pub flow_follows_prefetch: bool,
    /// Transactions: writes that land together or not at all, and consumed positions
    /// committed with them ([`Fixture::transactions`] opens them). Off, the driver must
    /// answer `Unsupported`, which the transactions case checks instead.
    pub transactions: bool,
    /// Partitions to create topics with.
    pub partitions: u32,
    /// How long a case waits for deliveries before it fails.
    pub patience: Duration,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            persistent: true,
            consumer_groups: true,
            group_positions: true,
            ordered_per_key: true,
            ordered_per_key_concurrent: true,
            redelivery_on_nack: true,
            counts_attempts: true,
            settles_exactly: true,
            lists_topics: true,
            reports_lag: true,
            flow_follows_prefetch: true,
            transactions: true,
            partitions: 3,
            patience: Duration::from_secs(30),
        }
    }
}

/// A driver under test.
#[async_trait]
pub trait Fixture: Send + Sync + 'static {
    /// What the broker can do.
    fn capabilities(&self) -> Capabilities;

    /// The driver's topic administration: the cases create their topics through it.
    async fn admin(&self) -> Arc<dyn Admin>;

    /// Creates `topic` with `partitions` partitions, through [`Fixture::admin`].
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        self.admin().await.create_topic(topic, partitions).await
    }

    /// A new writer.
    async fn writer(&self) -> Arc<dyn Writer>;

    /// A reader.
    async fn reader(&self) -> Arc<dyn Reader>;

    /// Transactions under `id`. The default answers `Unsupported`, as a driver without
    /// them does.
    async fn transactions(&self, id: &str) -> Result<Arc<dyn Transactions>> {
        let _ = id;
        Err(tidewater_core::transaction::unsupported(self.reader().await.driver()))
    }

    /// What the broker says of `topic` (its subscriptions, their consumers and what each
    /// holds unacked), for the message of a case that waited in vain for messages to
    /// come again: it tells a consumer that still holds them from one that was never
    /// given them. `None` where the fixture cannot ask, as by default.
    async fn broker_view(&self, topic: &str) -> Option<String> {
        let _ = topic;
        None
    }

    /// A reader whose broker gives up on a consumer that seems stuck (its handlers busy,
    /// nothing asked of the broker) after `window`, with that window, configured short
    /// for the case that holds a handler past it (Kafka's `max.poll.interval.ms`,
    /// JetStream's ack wait, a StreamBus group's session). `None`, as by default, where
    /// the broker gives up on no such consumer; the case then holds a handler for a few
    /// seconds all the same.
    async fn busy_reader(&self) -> Option<(Arc<dyn Reader>, Duration)> {
        None
    }
}

/// Makes the reader of [`Fixture::busy_reader`] for a [`DriverFixture`].
pub type MakeReader = Arc<dyn Fn() -> futures::future::BoxFuture<'static, Arc<dyn Reader>> + Send + Sync>;

/// How a [`DriverFixture`] asks its broker about a topic (see [`Fixture::broker_view`]).
/// It may block: it runs on a blocking thread.
pub type BrokerView = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The fixture of a driver whose writer, reader and admin all come from its
/// [`Driver`](tidewater_core::Driver), as most do: the driver and what its broker can do.
///
/// ```text
/// async fn fixture() -> DriverFixture<MyDriver> {
///     DriverFixture::new(MyDriver::connect().await, Capabilities { partitions: 3, ..Capabilities::default() })
/// }
/// tidewater_conformance::conformance_tests!(fixture);
/// ```
pub struct DriverFixture<D> {
    driver: D,
    capabilities: Capabilities,
    /// What must live as long as the fixture: the broker process or double it runs on.
    _keep: Option<Box<dyn std::any::Any + Send + Sync>>,
    view: Option<BrokerView>,
    /// The window of [`Fixture::busy_reader`], and how to make its reader where the
    /// driver's own does not have that window.
    busy: Option<(Duration, Option<MakeReader>)>,
}

impl<D> DriverFixture<D> {
    /// `driver`, whose broker can do what `capabilities` says.
    pub fn new(driver: D, capabilities: Capabilities) -> Self {
        Self { driver, capabilities, _keep: None, view: None, busy: None }
    }

    /// Answers [`Fixture::broker_view`] with `view`.
    pub fn viewing_topics_with(mut self, view: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.view = Some(Arc::new(view));
        self
    }

    /// Answers [`Fixture::busy_reader`] with the driver's own reader, whose broker gives
    /// up on a consumer that seems stuck after `window`.
    pub fn busy_after(mut self, window: Duration) -> Self {
        self.busy = Some((window, None));
        self
    }

    /// Answers [`Fixture::busy_reader`] with a reader `make` makes, configured so that its
    /// broker gives up on a consumer that seems stuck after `window`. Called only by the
    /// case that needs it, so the other cases connect nothing more.
    pub fn busy_after_with<F, Fut>(mut self, window: Duration, make: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Arc<dyn Reader>> + Send + 'static,
    {
        let make: MakeReader = Arc::new(move || Box::pin(make()));
        self.busy = Some((window, Some(make)));
        self
    }

    /// Keeps `broker` (a process or a double the fixture's own) alive as long as the
    /// fixture.
    pub fn keeping(mut self, broker: impl std::any::Any + Send + Sync) -> Self {
        self._keep = Some(Box::new(broker));
        self
    }

    /// The driver.
    pub fn driver(&self) -> &D {
        &self.driver
    }
}

#[async_trait]
impl<D: tidewater_core::Driver + Send + Sync + 'static> Fixture for DriverFixture<D> {
    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }

    async fn admin(&self) -> Arc<dyn Admin> {
        self.driver.admin()
    }

    async fn writer(&self) -> Arc<dyn Writer> {
        self.driver.writer()
    }

    async fn reader(&self) -> Arc<dyn Reader> {
        self.driver.reader()
    }

    async fn transactions(&self, id: &str) -> Result<Arc<dyn Transactions>> {
        self.driver.transactions(id)
    }

    async fn broker_view(&self, topic: &str) -> Option<String> {
        let view = Arc::clone(self.view.as_ref()?);
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || view(&topic)).await.ok().flatten()
    }

    async fn busy_reader(&self) -> Option<(Arc<dyn Reader>, Duration)> {
        let (window, make) = self.busy.as_ref()?;
        let reader = match make {
            Some(make) => make().await,
            None => self.driver.reader(),
        };
        Some((reader, *window))
    }
}

/// How many copies of the suite the stress test runs at once: the
/// `TIDEWATER_STRESS` environment variable, 2 when it is not set.
pub fn stress_copies() -> usize {
    std::env::var("TIDEWATER_STRESS").ok().and_then(|v| v.parse().ok()).unwrap_or(2).max(1)
}

/// Expands to one `#[tokio::test]` per conformance case, each building its fixture
/// with `$make().await`, plus `stress`, which runs the whole suite
/// [`stress_copies`] times in parallel.
///
/// A case that needs a capability the broker lacks is declared ignored with the reason,
/// so that `cargo test` reports it as ignored rather than as a pass:
///
/// ```text
/// async fn fixture() -> MyFixture { MyFixture::connect().await }
/// tidewater_conformance::conformance_tests!(fixture);
///
/// tidewater_conformance::conformance_tests!(fixture, ignore {
///     late_subscriber: "core NATS keeps no messages",
/// });
/// ```
///
/// A case whose capability is off but that is not declared ignored fails, saying so.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!($make, ignore {});
    };
    ($make:path, ignore { $($skip:ident : $why:literal),* $(,)? }) => {
        $crate::__conformance_cases!($make; [$($skip : $why),*];
            round_trip, concurrent_publishers, topic_isolation, nack_redelivery,
            failures_do_not_stop_consumption, per_key_order, consumer_groups,
            late_subscriber, resubscribe, close_flushes, cancel_is_prompt,
            oversize_is_too_large, shutdown_with_handlers_running, panics_reach_the_chain,
            permanent_failures_never_loop, attempts_stay_exact_across_a_shutdown, names_follow_one_rule,
            topics_are_administered, concurrency_runs_handlers_in_parallel, lag_drains_to_zero,
            batches_settle_each_delivery, transactions_land_whole_or_not_at_all, prefetch_bounds_read_ahead,
            fetches_stay_bounded_whatever_the_prefetch, nothing_stale_is_handed_out_after_a_nack,
            groups_with_alike_names_stay_apart, a_stuck_key_holds_up_only_its_own_lane,
            a_topic_made_again_is_a_new_topic, a_busy_handler_keeps_its_place, a_stop_lets_a_waiting_handler_go,
            a_paused_task_takes_nothing_until_resumed);

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn stress() {
            let fixture: ::std::sync::Arc<dyn $crate::Fixture> = ::std::sync::Arc::new($make().await);
            $crate::run_stress(fixture, $crate::stress_copies()).await;
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($make:path; $skips:tt; $($case:ident),*) => {
        $( $crate::__conformance_case!($make; $skips; $case); )*
    };
}

/// One case: ignored with its reason if the ignore list names it, else a test that
/// fails if the case finds its capability off. The list is walked head by head; an arm
/// a case matches a head that is that very case (macro patterns compare names only as
/// literals, hence one arm per case: a new case needs its arm here).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case {
    ($make:path; []; $case:ident) => {
        $crate::__conformance_test!($make; $case);
    };
    ($make:path; round_trip; [round_trip : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; round_trip; $why);
    };
    ($make:path; concurrent_publishers; [concurrent_publishers : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; concurrent_publishers; $why);
    };
    ($make:path; topic_isolation; [topic_isolation : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; topic_isolation; $why);
    };
    ($make:path; nack_redelivery; [nack_redelivery : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; nack_redelivery; $why);
    };
    ($make:path; failures_do_not_stop_consumption; [failures_do_not_stop_consumption : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; failures_do_not_stop_consumption; $why);
    };
    ($make:path; per_key_order; [per_key_order : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; per_key_order; $why);
    };
    ($make:path; consumer_groups; [consumer_groups : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; consumer_groups; $why);
    };
    ($make:path; late_subscriber; [late_subscriber : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; late_subscriber; $why);
    };
    ($make:path; resubscribe; [resubscribe : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; resubscribe; $why);
    };
    ($make:path; close_flushes; [close_flushes : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; close_flushes; $why);
    };
    ($make:path; cancel_is_prompt; [cancel_is_prompt : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; cancel_is_prompt; $why);
    };
    ($make:path; oversize_is_too_large; [oversize_is_too_large : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; oversize_is_too_large; $why);
    };
    ($make:path; shutdown_with_handlers_running; [shutdown_with_handlers_running : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; shutdown_with_handlers_running; $why);
    };
    ($make:path; panics_reach_the_chain; [panics_reach_the_chain : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; panics_reach_the_chain; $why);
    };
    ($make:path; permanent_failures_never_loop; [permanent_failures_never_loop : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; permanent_failures_never_loop; $why);
    };
    ($make:path; attempts_stay_exact_across_a_shutdown; [attempts_stay_exact_across_a_shutdown : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; attempts_stay_exact_across_a_shutdown; $why);
    };
    ($make:path; names_follow_one_rule; [names_follow_one_rule : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; names_follow_one_rule; $why);
    };
    ($make:path; topics_are_administered; [topics_are_administered : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; topics_are_administered; $why);
    };
    ($make:path; concurrency_runs_handlers_in_parallel; [concurrency_runs_handlers_in_parallel : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; concurrency_runs_handlers_in_parallel; $why);
    };
    ($make:path; lag_drains_to_zero; [lag_drains_to_zero : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; lag_drains_to_zero; $why);
    };
    ($make:path; batches_settle_each_delivery; [batches_settle_each_delivery : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; batches_settle_each_delivery; $why);
    };
    ($make:path; transactions_land_whole_or_not_at_all; [transactions_land_whole_or_not_at_all : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; transactions_land_whole_or_not_at_all; $why);
    };
    ($make:path; prefetch_bounds_read_ahead; [prefetch_bounds_read_ahead : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; prefetch_bounds_read_ahead; $why);
    };
    ($make:path; fetches_stay_bounded_whatever_the_prefetch; [fetches_stay_bounded_whatever_the_prefetch : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; fetches_stay_bounded_whatever_the_prefetch; $why);
    };
    ($make:path; nothing_stale_is_handed_out_after_a_nack; [nothing_stale_is_handed_out_after_a_nack : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; nothing_stale_is_handed_out_after_a_nack; $why);
    };
    ($make:path; groups_with_alike_names_stay_apart; [groups_with_alike_names_stay_apart : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; groups_with_alike_names_stay_apart; $why);
    };
    ($make:path; a_stuck_key_holds_up_only_its_own_lane; [a_stuck_key_holds_up_only_its_own_lane : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; a_stuck_key_holds_up_only_its_own_lane; $why);
    };
    ($make:path; a_topic_made_again_is_a_new_topic; [a_topic_made_again_is_a_new_topic : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; a_topic_made_again_is_a_new_topic; $why);
    };
    ($make:path; a_busy_handler_keeps_its_place; [a_busy_handler_keeps_its_place : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; a_busy_handler_keeps_its_place; $why);
    };
    ($make:path; a_stop_lets_a_waiting_handler_go; [a_stop_lets_a_waiting_handler_go : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; a_stop_lets_a_waiting_handler_go; $why);
    };
    ($make:path; a_paused_task_takes_nothing_until_resumed; [a_paused_task_takes_nothing_until_resumed : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_test!($make; a_paused_task_takes_nothing_until_resumed; $why);
    };
    ($make:path; [$skip:ident : $why:literal $(, $r:ident : $rw:literal)*]; $case:ident) => {
        $crate::__conformance_case!($make; $case; [$skip : $why $(, $r : $rw)*]);
    };
    ($make:path; $case:ident; [$skip:ident : $why:literal $(, $r:ident : $rw:literal)*]) => {
        $crate::__conformance_case!($make; [$($r : $rw),*]; $case);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test {
    ($make:path; $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let fixture: ::std::sync::Arc<dyn $crate::Fixture> = ::std::sync::Arc::new($make().await);
            $crate::strict($crate::$case(fixture)).await;
        }
    };
    ($make:path; $case:ident; $why:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = $why]
        async fn $case() {
            let fixture: ::std::sync::Arc<dyn $crate::Fixture> = ::std::sync::Arc::new($make().await);
            $crate::$case(fixture).await;
        }
    };
}

tokio::task_local! {
    /// Set while a case runs as a test of its own (not in the stress run): a capability
    /// found off there is an undeclared skip.
    static STRICT: ();
}

/// Runs `case` so that a skip inside it fails: the driver must declare the case ignored.
#[doc(hidden)]
pub async fn strict(case: impl std::future::Future<Output = ()>) {
    STRICT.scope((), case).await
}

/// Whether the running case must not skip.
pub(crate) fn is_strict() -> bool {
    STRICT.try_with(|_| ()).is_ok()
}
