//! Cases for what happens when handlers fail: panics, permanent failures, and attempt
//! counts across a shutdown. Each is a defect once seen on some driver, held to on all.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tidewater_core::dead_letter::headers;
use tidewater_core::{
    unix_time, DeadLetter, Delivery, Handler, ReadTask, Redrive, ShutdownReport, StartFrom, SubscriberScheduler,
};

use crate::cases::{topic, GRACE};
use crate::support::{abandon_one, batch, ids, skip, subscribe, subscribe_with, write_each, Act, Probe};
use crate::Fixture;

/// Subscribes a probe to the dead-letter topic of `topic`, which it creates.
async fn dead_letters(f: &dyn Fixture, topic: &str) -> (tidewater_core::SubscriberScheduler, Probe) {
    let dlq = format!("{topic}.dlq");
    if let Err(err) = f.create_topic(&dlq, f.capabilities().partitions).await {
        panic!("creating topic {dlq} failed: {err}");
    }
    let probe = Probe::succeeding();
    (subscribe(f, ReadTask::new(&dlq).with_group("dlq-reader"), probe.clone()).await, probe)
}

/// One message through a handler that does `act`, on a fresh topic named for `case`
/// read in `group`, with `dead_letter` placed on the scheduler by `place`: waits for its
/// dead letter and stops.
///
/// The message is stamped an hour before it is written, and its dead letter must come
/// back stamped when it was written, with the message's own time in a header: a dead
/// letter that kept an old time was deleted by Kafka's time retention at its next check
/// once that time was older than the dead-letter topic's retention.
async fn dead_lettered(
    f: &dyn Fixture,
    case: &str,
    group: &str,
    act: fn(&Delivery) -> Act,
    place: impl FnOnce(&mut SubscriberScheduler, DeadLetter),
) -> DeadLettered {
    let topic = topic(f, case).await;
    let (mut dlq_sub, dlq) = dead_letters(f, &topic).await;
    let writer = f.writer().await;
    let probe = Probe::new(act);
    let dead_letter = DeadLetter::new(Arc::clone(&writer));
    let mut sub =
        subscribe_with(f, ReadTask::new(&topic).with_group(group), probe.clone(), |s| place(s, dead_letter)).await;
    let created = SystemTime::now() - Duration::from_secs(3600);
    let written_from = unix_time::millis(SystemTime::now());
    write_each(&*writer, batch(&topic, 1, |_, m| m.with_timestamp(created))).await;
    let state = dlq.wait(f.capabilities().patience, "the dead letter", |s| !s.done.is_empty()).await;
    let report = sub.shutdown(GRACE).await;
    dlq_sub.shutdown(GRACE).await;
    let dead = state.done[0].clone();
    let (m, created) = (dead.message(), unix_time::millis(created));
    assert_eq!(m.headers.get(headers::ORIGINAL_TIMESTAMP), Some(created.to_string().as_str()), "{:?}", m.headers);
    let stamped = unix_time::millis(m.timestamp);
    assert!(stamped >= written_from, "the dead letter is stamped {stamped}, before it was written ({written_from})");
    DeadLettered { topic, probe, dead, report }
}

/// What [`dead_lettered`] saw.
struct DeadLettered {
    topic: String,
    probe: Probe,
    /// The dead letter, as its reader got it.
    dead: Delivery,
    report: ShutdownReport,
}

/// The calls the probe saw for the message with `id`.
fn calls_of(probe: &Probe, id: &str) -> Vec<Delivery> {
    probe.state().calls.into_iter().filter(|d| d.message().id == id).collect()
}

/// Case 15: A handler that panics has failed one attempt, and the chain around it sees
/// that like any error: here a dead-letter middleware takes the message at the first
/// panic, with no opt-in middleware to turn panics into errors. The handler runs once,
/// and the shutdown report counts a panic and a dead letter, not an ack.
pub async fn panics_reach_the_chain(f: Arc<dyn Fixture>) {
    let run = dead_lettered(
        &*f,
        "panic-chain",
        "pc",
        |_| Act::Panic,
        |s, dead_letter| {
            s.with_middleware(dead_letter);
        },
    )
    .await;
    let (id, probe, report) = (format!("{}-0", run.topic), run.probe, run.report);
    let dead = run.dead.message();
    assert_eq!(dead.id, id);
    assert_eq!(dead.headers.get(headers::RECOVERY), Some("transient"), "a panic is a transient failure");
    let error = dead.headers.get(headers::ERROR).unwrap_or_default();
    assert!(error.contains("handler panicked: induced panic"), "the DLQ says it was a panic: {error}");
    assert_eq!(calls_of(&probe, &id).len(), 1, "dead-lettered at the first panic, called once");
    let task = &report.tasks[0];
    assert_eq!((task.panicked, task.dead_lettered, task.acked), (0, 1, 0), "{report:?}");

    // Redriven at once, the message comes back to its topic, with its id. (JetStream
    // took the redrive for a repeat of the original publish, which its duplicate window
    // still held, and dropped it while acknowledging it.)
    let back = Probe::succeeding();
    let task = ReadTask::new(&run.topic).with_group("pc-redriven").with_start(StartFrom::Latest);
    let mut sub = subscribe(&*f, task, back.clone()).await;
    Redrive::new(f.writer().await).handle(run.dead.clone()).await.expect("the redrive writes");
    let state = back.wait(f.capabilities().patience, "the redriven message", |s| !s.done.is_empty()).await;
    sub.shutdown(GRACE).await;
    let again = state.done[0].message();
    assert_eq!(again.id, id);
    assert!(headers::ALL.iter().all(|h| !again.headers.contains(h)), "{:?}", again.headers);
}

/// Case 16: A permanent failure goes to the default dead-letter queue when the chain has
/// no dead-letter middleware; where there is none at all it does not loop: it is
/// redelivered ever more slowly (the nack delay doubles per delivery) and is not lost.
pub async fn permanent_failures_never_loop(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    if !caps.redelivery_on_nack {
        return skip("permanent_failures_never_loop", "redelivery_on_nack");
    }
    // With a default dead letter: the first failure is the last.
    let place = |s: &mut SubscriberScheduler, dead_letter| {
        s.default_dead_letter(Some(dead_letter));
    };
    let DeadLettered { probe, dead, report, .. } =
        dead_lettered(&*f, "permanent", "pm", |_| Act::FailPermanently, place).await;
    assert_eq!(dead.message().headers.get(headers::RECOVERY), Some("permanent"));
    assert_eq!(probe.state().calls.len(), 1, "a permanent failure is not retried");
    assert_eq!((report.tasks[0].dead_lettered, report.tasks[0].acked), (1, 0), "{report:?}");

    // With none: 100 ms, then 200, 400, 800 ms... so at most 5 calls in 2.5 s, where an
    // undoubled delay made 25.
    let topic = crate::cases::topic(&*f, "permanent-alone").await;
    let writer = f.writer().await;
    let probe = Probe::new(|_| Act::FailPermanently);
    let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("pa"), probe.clone()).await;
    write_each(&*writer, batch(&topic, 1, |_, m| m)).await;
    let first = probe.wait(caps.patience, "the first call", |s| !s.calls.is_empty()).await;
    let since = tokio::time::Instant::now();
    probe.wait(caps.patience, "a redelivery", |s| s.calls.len() >= 2).await;
    tokio::time::sleep_until(since + Duration::from_millis(2500)).await;
    let calls = probe.state().calls.len();
    let report = sub.shutdown(GRACE).await;
    assert!(calls <= 6, "{calls} calls within 2.5 s of the first: the redelivery delay does not grow");
    assert_eq!(report.tasks[0].acked, 0, "{report:?}");
    let attempts: Vec<u32> = probe.state().calls.iter().map(Delivery::attempt).collect();
    if caps.counts_attempts {
        assert!(attempts.windows(2).all(|w| w[1] > w[0]), "attempts count up: {attempts:?}");
    }

    // Nothing was dropped: a handler that takes it gets it.
    if caps.persistent && caps.group_positions {
        let id = first.calls[0].message().id.clone();
        let fine = Probe::succeeding();
        let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("pa"), fine.clone()).await;
        let state = fine.wait(caps.patience, "the message, to a handler that takes it", |s| !s.done.is_empty()).await;
        sub.shutdown(GRACE).await;
        assert_eq!(state.done[0].message().id, id);
    }
}

/// Case 17: A shutdown while a handler runs leaves its message's attempt count exact:
/// the next subscription sees it as the second delivery at most, not the 257th (a
/// closing JetStream pull once spun given-back messages through itself). Messages that
/// were fetched but never handled count at most one delivery more. Brokers differ in
/// whether a closing consumer's leftovers count: JetStream and the memory driver count
/// them (attempt 2), Pulsar counts only nacks and Kafka's and StreamBus's counts live in
/// the reader (attempt 1); each is exact by its broker's own count.
pub async fn attempts_stay_exact_across_a_shutdown(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    if !(caps.persistent && caps.group_positions) {
        return skip("attempts_stay_exact_across_a_shutdown", "persistent group_positions");
    }
    let topic = topic(&*f, "attempts").await;
    let messages = batch(&topic, 10, |_, m| m.with_key("one-key"));
    let expected = ids(&messages);
    write_each(&*f.writer().await, messages).await;

    let (first, report) = abandon_one(&*f, &topic, "at").await;
    assert_eq!(report.abandoned(), 1, "{report:?}");
    let abandoned = first.state().calls[0].message().id.clone();

    let second = Probe::succeeding();
    let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("at"), second.clone()).await;
    let state = second.wait_ids_again(&*f, &topic, caps.patience, &expected).await;
    sub.shutdown(GRACE).await;
    for d in &state.done {
        assert!(d.attempt() <= 2, "{} came as attempt {} after one abandoned call", d.message().id, d.attempt());
    }
    assert!(state.done.iter().any(|d| d.message().id == abandoned), "the abandoned message came again");
}

/// Case 31: A handler waiting on something other than work of its own (a retry's
/// backoff, an open circuit, a rate limit, a slot with a remote service) can let its
/// delivery go at a stop: it finds the stop as `StopSignal::current()` and returns
/// `HandlerError::stopping()`. The stop then ends at once rather than at its deadline;
/// the delivery counts as abandoned, is not nacked, and a dead letter that takes every
/// failure passes it by; and where the broker keeps a group's messages, the group's next
/// reader gets it. Held on every driver, as each leaves an unsettled delivery to its
/// broker in its own way when it closes. Two lanes, as each lane finds the signal apart.
pub async fn a_stop_lets_a_waiting_handler_go(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    let topic = topic(&*f, "let-go").await;
    let messages = batch(&topic, 2, |_, m| m);
    let expected = ids(&messages);
    let writer = f.writer().await;
    let probe = Probe::new(|_| Act::LetGoAtTheStop);
    let dead_letter = DeadLetter::new(Arc::clone(&writer));
    let task = ReadTask::new(&topic).with_group("lg").with_concurrency(2);
    let mut sub = subscribe_with(&*f, task, probe.clone(), |s| {
        s.with_middleware(dead_letter);
    })
    .await;
    write_each(&*writer, messages).await;
    probe.wait(caps.patience, "both handlers waiting", |s| s.calls.len() == 2).await;
    let grace = Duration::from_secs(120);
    let stopping = std::time::Instant::now();
    let report = sub.shutdown(grace).await;
    let took = stopping.elapsed();
    assert!(took < grace / 4, "the stop took {took:?} of its {grace:?}, though its handlers let go at once");
    let task = &report.tasks[0];
    assert_eq!((task.abandoned, task.nacked, task.dead_lettered, task.acked), (2, 0, 0, 0), "{report:?}");
    if caps.persistent && caps.group_positions {
        let again = Probe::succeeding();
        let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("lg"), again.clone()).await;
        again.wait_ids_again(&*f, &topic, caps.patience, &expected).await;
        sub.shutdown(GRACE).await;
    }
}

/// Case 18: A topic name outside the portable rule is refused the same way on every
/// driver, by the writer and by the scheduler's start, with `InvalidName` and an error
/// that says each cause once: a name that passes in a test on the memory driver passes
/// on every broker. A batch with such a name
/// in it writes nothing, not even its messages to good topics before the bad one, and
/// creates none of their topics.
pub async fn names_follow_one_rule(f: Arc<dyn Fixture>) {
    let base = crate::fresh_topic("names");
    let writer = f.writer().await;
    for bad in [format!("{base}..eu"), format!("{base}."), format!(".{base}"), format!("{base}*x"), format!("{base} x")]
    {
        let err = writer.write(vec![tidewater_core::Message::new(&bad, "x")]).await.expect_err(&bad);
        assert_eq!(err.kind(), tidewater_core::ErrorKind::InvalidName, "writing to {bad:?}: {err}");
        crate::assert_each_cause_said_once(&err);
        let mut scheduler = tidewater_core::SubscriberScheduler::new(f.reader().await, Default::default());
        scheduler.subscribe(bad.clone(), Probe::succeeding());
        let err = scheduler.start().await.expect_err(&bad);
        assert_eq!(err.kind(), tidewater_core::ErrorKind::InvalidName, "subscribing to {bad:?}: {err}");
        assert!(err.to_string().contains(&format!("{bad:?}")), "the error names the topic: {err}");
        crate::assert_each_cause_said_once(&err);
    }

    let good = topic(&*f, "names-good").await;
    let probe = Probe::succeeding();
    let mut sub = subscribe(&*f, ReadTask::new(&good).with_group("names"), probe.clone()).await;
    // Keyed alike, so that on a partitioned broker the first would come before the last.
    let first = tidewater_core::Message::new(&good, "x").with_id(format!("{good}-before")).with_key("k");
    let bad = tidewater_core::Message::new(format!("{base}..eu"), "x");
    let err = writer.write(vec![first, bad.clone()]).await.expect_err("a batch with a bad name is refused");
    assert_eq!(err.kind(), tidewater_core::ErrorKind::InvalidName, "{err}");
    if f.capabilities().lists_topics {
        // Nor does it create the topic of a good message.
        let fresh = crate::fresh_topic("names-new");
        let err = writer.write(vec![tidewater_core::Message::new(&fresh, "x"), bad]).await.expect_err("refused again");
        assert_eq!(err.kind(), tidewater_core::ErrorKind::InvalidName, "{err}");
        let topics = f.admin().await.topics().await.expect("list the topics");
        assert!(!topics.contains(&fresh), "the refused batch created the topic {fresh}");
    }
    let last = tidewater_core::Message::new(&good, "y").with_id(format!("{good}-after")).with_key("k");
    writer.write(vec![last]).await.expect("the writer still writes after a refused batch");
    let state =
        probe.wait(f.capabilities().patience, "the message after the refused batch", |s| !s.done.is_empty()).await;
    sub.shutdown(GRACE).await;
    let got: Vec<&str> = state.done.iter().map(|d| d.message().id.as_str()).collect();
    assert!(got.iter().all(|id| id.ends_with("-after")), "only the message after the refused batch arrives: {got:?}");
}

/// Case 19: Topics are created, listed and deleted through the driver's admin the same
/// way everywhere: creating or deleting twice is no error, a created topic carries
/// messages and is listed and said to exist (where the broker keeps a list), a deleted
/// one is not, and asking whether a topic exists does not create it.
pub async fn topics_are_administered(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    let admin = f.admin().await;
    let topic = crate::fresh_topic("admin");
    let err = admin.topic_exists("no/slashes").await.expect_err("a name that is not valid exists nowhere");
    assert_eq!(err.kind(), tidewater_core::ErrorKind::InvalidName, "{err}");
    if caps.lists_topics {
        assert!(!admin.topic_exists(&topic).await.expect("ask"), "{topic} exists before its creation");
        assert!(!admin.topics().await.expect("list").contains(&topic), "asking whether {topic} exists created it");
    }
    admin.create_topic(&topic, caps.partitions).await.expect("create");
    admin.create_topic(&topic, caps.partitions).await.expect("creating an existing topic is no error");
    if caps.lists_topics {
        let topics = admin.topics().await.expect("list");
        assert!(topics.contains(&topic), "{topic} is listed after its creation");
        assert!(admin.topic_exists(&topic).await.expect("ask"), "{topic} exists after its creation");
    } else {
        let err = admin.topics().await.expect_err("a broker without a list says so");
        assert_eq!(err.kind(), tidewater_core::ErrorKind::Unsupported, "{err}");
        let err = admin.topic_exists(&topic).await.expect_err("a broker without a list cannot tell");
        assert_eq!(err.kind(), tidewater_core::ErrorKind::Unsupported, "{err}");
    }
    let probe = Probe::succeeding();
    let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("adm"), probe.clone()).await;
    write_each(&*f.writer().await, batch(&topic, 3, |_, m| m)).await;
    probe.wait(caps.patience, "3 messages on the created topic", |s| s.done_ids().len() >= 3).await;
    sub.shutdown(GRACE).await;

    admin.delete_topic(&topic).await.expect("delete");
    admin.delete_topic(&topic).await.expect("deleting a topic that is gone is no error");
    if caps.lists_topics {
        let topics = admin.topics().await.expect("list");
        assert!(!topics.contains(&topic), "{topic} is not listed after its deletion");
        assert!(!admin.topic_exists(&topic).await.expect("ask"), "{topic} exists after its deletion");
    }
}

/// Case 29: A topic deleted and made again is a new topic to the writer and the group
/// that used it before: what the same writer writes after lands in it, and the same
/// group reads all of that and nothing from before. Here it is made again with one
/// partition, where it had the fixture's number: Kafka's producer, which had learned
/// of partitions that were gone, failed the writes it had queued for them. On Pulsar,
/// a producer kept from before the deletion wrote to its partitions' own names
/// (`<topic>-partition-1`, which failed; `<topic>-partition-0`, which the broker made
/// as a topic of its own, so that those writes were acknowledged and read by no one).
/// The StreamBus driver kept a v1.0.x group's positions in the old topic, so the group
/// skipped the new one's first records.
///
/// The group's subscription is stopped before the deletion, as brokers ask of a topic
/// being deleted: a consumer left running on a deleted topic may make it again on
/// its own (where topics are made on first use) or not notice the new one.
pub async fn a_topic_made_again_is_a_new_topic(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    let admin = f.admin().await;
    let topic = topic(&*f, "again").await;
    let writer = f.writer().await;
    let probe = Probe::succeeding();
    let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("again"), probe.clone()).await;
    let before = batch(&topic, 6, |_, m| m);
    let before_ids = ids(&before);
    write_each(&*writer, before).await;
    probe.wait_ids(caps.patience, &before_ids).await;
    sub.shutdown(GRACE).await;

    admin.delete_topic(&topic).await.expect("delete");
    if let Err(err) = f.create_topic(&topic, 1).await {
        panic!("making {topic} again right after its deletion failed: {err}");
    }
    let after = batch(&topic, 6, |i, m| m.with_id(format!("{topic}-after-{i}")));
    let after_ids = ids(&after);
    let probe = Probe::succeeding();
    let task = ReadTask::new(&topic).with_group("again");
    // Where messages are kept, the group comes back after they were written, as a
    // service restarted later does: a position kept from the deleted topic would then
    // skip some of them, where a new, empty topic might have hidden it.
    let mut sub = match caps.persistent {
        true => {
            write_each(&*writer, after).await;
            subscribe(&*f, task, probe.clone()).await
        }
        false => {
            let sub = subscribe(&*f, task, probe.clone()).await;
            write_each(&*writer, after).await;
            sub
        }
    };
    let state = probe.wait_ids(caps.patience, &after_ids).await;
    sub.shutdown(GRACE).await;
    let stale: Vec<_> = state.done_ids().into_iter().filter(|id| before_ids.contains(id)).collect();
    assert!(stale.is_empty(), "messages written before the deletion were read after it: {stale:?}");
    admin.delete_topic(&topic).await.expect("delete");
}

/// Case 20: Concurrency `n` gives `n` handlers at once when keys are spread, on every
/// driver: lanes and partitions are chosen by key, and a lane choice that followed the
/// partition choice (both modulo the same hash) once left the memory driver's keyed
/// messages of a partition on 2 lanes of 8, so at most 4 handlers ran.
pub async fn concurrency_runs_handlers_in_parallel(f: Arc<dyn Fixture>) {
    const LANES: usize = 8;
    let caps = f.capabilities();
    let topic = crate::cases::topic(&*f, "parallel").await;
    // Every handler waits until LANES of them have run at once; that never happens if
    // fewer lanes are busy, and the probe's wait fails naming how many did.
    let gate = Arc::new(Gate::default());
    let probe = Probe::new({
        let gate = Arc::clone(&gate);
        move |_| Act::Await(gate.enter(LANES))
    });
    let task = ReadTask::new(&topic).with_group("par").with_concurrency(LANES);
    let mut sub = subscribe(&*f, task, probe.clone()).await;
    let messages = batch(&topic, 400, |i, m| m.with_key(format!("customer-{i}")));
    write_each(&*f.writer().await, messages).await;
    let waited = tokio::time::timeout(caps.patience, gate.opened()).await;
    let most = gate.most();
    gate.open_anyway();
    probe.wait(caps.patience, "all 400 messages", |s| s.done_ids().len() >= 400).await;
    sub.shutdown(GRACE).await;
    assert!(waited.is_ok(), "with concurrency {LANES}, at most {most} handlers ran at once");
}

/// Case 28: a key whose handler is stuck holds up its own lane only. With concurrency,
/// the messages of other keys fetched behind the stuck key's still run, as long as the
/// prefetch has room for them. When each lane had a queue of 16, the dispatch waited
/// for room behind the stuck key's 18th message, and every other lane waited with it.
pub async fn a_stuck_key_holds_up_only_its_own_lane(f: Arc<dyn Fixture>) {
    const LANES: usize = 2;
    const STUCK: usize = 30;
    const OTHER: usize = 5;
    let caps = f.capabilities();
    let topic = topic(&*f, "stuck-lane").await;
    let lane = |key: &str| tidewater_core::hash::lane_of(key.as_bytes(), LANES);
    let other = (0..).map(|i| format!("other-{i}")).find(|k| lane(k) != lane("stuck")).expect("a key");
    let held = Arc::new(tokio::sync::Semaphore::new(0));
    let probe = Probe::new({
        let held = Arc::clone(&held);
        move |d: &Delivery| match d.message().key_str() {
            Some("stuck") => Act::Block(Arc::clone(&held)),
            _ => Act::Succeed,
        }
    });
    let task = ReadTask::new(&topic).with_group("lanes").with_concurrency(LANES).with_prefetch(64);
    let mut sub = subscribe(&*f, task, probe.clone()).await;
    let messages =
        batch(&topic, STUCK + OTHER, |i, m| m.with_key(if i < STUCK { "stuck".to_owned() } else { other.clone() }));
    let all = ids(&messages);
    write_each(&*f.writer().await, messages).await;
    // Only the other key's handlers can succeed while the stuck key's are held.
    probe
        .wait(caps.patience, &format!("the {OTHER} messages of a key on the free lane"), |s| s.done.len() >= OTHER)
        .await;
    held.add_permits(STUCK);
    probe.wait_ids(caps.patience, &all).await;
    sub.shutdown(GRACE).await;
}

/// Counts handlers running at once, and opens once `n` have.
#[derive(Default)]
pub(crate) struct Gate {
    running: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    open: tokio::sync::Notify,
    is_open: std::sync::atomic::AtomicBool,
}

impl Gate {
    /// A future for one handler call: counted in, waits for the gate, counted out.
    pub(crate) fn enter(self: &Arc<Self>, n: usize) -> futures::future::BoxFuture<'static, ()> {
        use std::sync::atomic::Ordering::SeqCst;
        let gate = Arc::clone(self);
        Box::pin(async move {
            let now = gate.running.fetch_add(1, SeqCst) + 1;
            gate.most.fetch_max(now, SeqCst);
            if now >= n {
                gate.open_anyway();
            }
            gate.opened().await;
            gate.running.fetch_sub(1, SeqCst);
        })
    }

    async fn opened(&self) {
        loop {
            let notified = self.open.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_open.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn open_anyway(&self) {
        self.is_open.store(true, std::sync::atomic::Ordering::SeqCst);
        self.open.notify_waiters();
    }

    fn most(&self) -> usize {
        self.most.load(std::sync::atomic::Ordering::SeqCst)
    }
}
