//! The cases. Each takes a fixture, uses fresh topics, and panics with an explanation
//! when the driver breaks a rule.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tidewater_core::{ErrorKind, Message, MessageId, ReadTask, StartFrom};
use tokio::sync::Semaphore;

use crate::support::{abandon_one, batch, fresh_topic, ids, sequences_by_key, skip, subscribe, write_each, Act, Probe};
use crate::Fixture;

pub(crate) const GRACE: Duration = Duration::from_secs(10);

pub(crate) async fn topic(f: &dyn Fixture, case: &str) -> String {
    let topic = fresh_topic(case);
    let partitions = f.capabilities().partitions;
    if let Err(err) = f.create_topic(&topic, partitions).await {
        panic!("creating topic {topic} failed: {err}");
    }
    topic
}

fn millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).expect("after 1970").as_millis()
}

/// Case 1: Payload, key, headers, content type, id and timestamp arrive intact.
pub async fn round_trip(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    let topic = topic(&*f, "round-trip").await;
    let probe = Probe::succeeding();
    let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("rt"), probe.clone()).await;

    let payload: Bytes = (0..=255u8).collect::<Vec<u8>>().into();
    let sent = Message::new(&topic, payload)
        .with_id(format!("{topic}-only"))
        .with_key("key-1")
        .with_header("tenant", "acme")
        .with_header("trace", "a b c")
        .with_content_type("application/octet-stream");
    write_each(&*f.writer().await, vec![sent.clone()]).await;

    let state = probe.wait(caps.patience, "the message", |s| !s.done.is_empty()).await;
    let got = state.done[0].message();
    assert_eq!(got.id, sent.id, "id");
    assert_eq!(got.stream, sent.stream, "stream");
    assert_eq!(got.key, sent.key, "key");
    assert_eq!(got.payload, sent.payload, "payload (all 256 byte values)");
    assert_eq!(got.content_type, sent.content_type, "content type");
    for (name, value) in sent.headers.iter() {
        assert_eq!(got.headers.get(name), Some(value), "header {name}");
    }
    assert_eq!(millis(got.timestamp), millis(sent.timestamp), "timestamp, to the millisecond");
    assert_eq!(state.done[0].attempt(), 1, "first delivery is attempt 1");
    assert_eq!(state.done[0].group(), Some("rt"), "delivery names its group");
    let report = sub.shutdown(GRACE).await;
    assert!(report.is_clean(), "{report:?}");
}

/// Case 2: 1,280 messages written concurrently by 16 tasks all arrive.
pub async fn concurrent_publishers(f: Arc<dyn Fixture>) {
    const TASKS: usize = 16;
    const EACH: usize = 80;
    let caps = f.capabilities();
    let topic = topic(&*f, "concurrent").await;
    let probe = Probe::succeeding();
    let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("c").with_concurrency(4), probe.clone()).await;

    let writer = f.writer().await;
    let all = batch(&topic, TASKS * EACH, |i, m| m.with_key(format!("k{}", i % 64)));
    let expected = ids(&all);
    let mut chunks = all.into_iter();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let chunk: Vec<Message> = chunks.by_ref().take(EACH).collect();
        let writer = Arc::clone(&writer);
        tasks.push(tokio::spawn(async move { write_each(&*writer, chunk).await }));
    }
    for task in tasks {
        task.await.expect("publisher task");
    }
    let state = probe.wait_ids(caps.patience, &expected).await;
    println!("concurrent_publishers: {} messages, {} duplicates", expected.len(), state.duplicates());
    assert!(state.done_ids().is_subset(&expected), "only this topic's messages arrive");
    sub.shutdown(GRACE).await;
}

/// Case 3: Many topics at once stay isolated.
pub async fn topic_isolation(f: Arc<dyn Fixture>) {
    const TOPICS: usize = 8;
    const EACH: usize = 50;
    let caps = f.capabilities();
    let mut subs = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..TOPICS {
        let topic = topic(&*f, "isolation").await;
        let probe = Probe::succeeding();
        subs.push((subscribe(&*f, ReadTask::new(&topic).with_group("iso"), probe.clone()).await, probe));
        expected.push(topic);
    }
    let writer = f.writer().await;
    let mut all = Vec::new();
    for topic in &expected {
        all.extend(batch(topic, EACH, |_, m| m.with_header("topic", topic.as_str())));
    }
    writer.write(all).await.expect("write all topics in one batch");
    writer.flush().await.expect("flush");
    for ((_, probe), topic) in subs.iter().zip(&expected) {
        let state =
            probe.wait(caps.patience, &format!("{EACH} messages on {topic}"), |s| s.done_ids().len() >= EACH).await;
        for d in &state.done {
            assert_eq!(&d.message().stream, topic, "a message of another topic arrived");
            assert_eq!(d.message().headers.get("topic"), Some(topic.as_str()));
        }
    }
    for (mut sub, probe) in subs {
        sub.shutdown(GRACE).await;
        assert_eq!(probe.state().done_ids().len(), EACH, "exactly this topic's messages");
    }
}

/// Case 4: A nack leads to redelivery, and in the end every message is processed.
pub async fn nack_redelivery(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    if !caps.redelivery_on_nack {
        return skip("nack_redelivery", "redelivery_on_nack");
    }
    let topic = topic(&*f, "nack").await;
    let probe = fail_first_call(|_| Act::Fail);
    let mut task = ReadTask::new(&topic).with_group("n");
    task.nack_delay = Some(Duration::from_millis(20));
    let mut sub = subscribe(&*f, task, probe.clone()).await;
    let messages = batch(&topic, 20, |_, m| m);
    let expected = ids(&messages);
    write_each(&*f.writer().await, messages).await;
    let state = probe.wait_ids(caps.patience, &expected).await;
    for id in &expected {
        let calls = state.calls.iter().filter(|d| &d.message().id == id).count();
        assert!(calls >= 2, "{id} was called {calls} times; the nack should have redelivered it");
    }
    if caps.counts_attempts {
        assert!(state.done.iter().all(|d| d.attempt() >= 2), "redeliveries count attempts up");
    }
    let report = sub.shutdown(GRACE).await;
    assert!(report.tasks[0].nacked >= 20, "{report:?}");
}

/// Case 5: A handler error or panic does not stop consumption.
pub async fn failures_do_not_stop_consumption(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    let topic = topic(&*f, "failures").await;
    let probe = fail_first_call(|d| match d.message().headers.get("i").unwrap().parse::<usize>().unwrap() % 3 {
        0 => Act::Panic,
        1 => Act::Fail,
        _ => Act::Succeed,
    });
    let mut task = ReadTask::new(&topic).with_group("f");
    task.nack_delay = Some(Duration::from_millis(20));
    let mut sub = subscribe(&*f, task, probe.clone()).await;
    let messages = batch(&topic, 30, |i, m| m.with_header("i", i.to_string()));
    let always_fine: HashSet<MessageId> = messages
        .iter()
        .filter(|m| m.headers.get("i").unwrap().parse::<usize>().unwrap() % 3 == 2)
        .map(|m| m.id.clone())
        .collect();
    let expected = ids(&messages);
    write_each(&*f.writer().await, messages).await;
    if caps.redelivery_on_nack {
        probe.wait_ids(caps.patience, &expected).await;
    } else {
        probe.wait_ids(caps.patience, &always_fine).await;
    }
    let report = sub.shutdown(GRACE).await;
    let task = &report.tasks[0];
    assert_eq!(task.panicked, 10, "10 panics were counted: {report:?}");
    assert_eq!(task.failed, 10, "10 errors were counted: {report:?}");
    assert_eq!(task.restarts, 0, "the reader never had to restart: {report:?}");
}

/// Case 6: Per-key order holds with one consumer, and with concurrency above 1 where claimed.
pub async fn per_key_order(f: Arc<dyn Fixture>) {
    const KEYS: usize = 8;
    const EACH: usize = 50;
    let caps = f.capabilities();
    if !caps.ordered_per_key {
        return skip("per_key_order", "ordered_per_key");
    }
    let topic = topic(&*f, "order").await;
    let mut runs = vec![("single", 1)];
    if caps.ordered_per_key_concurrent {
        runs.push(("concurrent", 4));
    }
    // Subscribe first, so brokers that keep nothing deliver too.
    let mut subs = Vec::new();
    for (group, concurrency) in runs {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let probe = Probe::new(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
            Act::Succeed
        });
        let handler = SlowEveryOther { inner: probe.clone(), calls };
        let task =
            ReadTask::new(&topic).with_group(group).with_concurrency(concurrency).with_start(StartFrom::Earliest);
        subs.push((subscribe(&*f, task, handler).await, probe, concurrency));
    }
    let messages = batch(&topic, KEYS * EACH, |i, m| {
        m.with_key(format!("key-{}", i % KEYS)).with_header("seq", (i / KEYS).to_string())
    });
    let expected = ids(&messages);
    write_each(&*f.writer().await, messages).await;
    for (mut sub, probe, concurrency) in subs {
        let state = probe.wait_ids(caps.patience, &expected).await;
        sub.shutdown(GRACE).await;
        for (key, seqs) in sequences_by_key(&state.done) {
            let expected: Vec<usize> = (0..EACH).collect();
            assert_eq!(seqs, expected, "order of {key} with concurrency {concurrency}");
        }
        // A key's messages share a partition, where the broker has partitions: order
        // across partitions holds only by chance.
        let mut partitions: HashMap<String, HashSet<u32>> = HashMap::new();
        for d in &state.done {
            if let Some(p) = d.position().partition() {
                partitions.entry(d.message().key_str().expect("keyed").to_owned()).or_default().insert(p);
            }
        }
        for (key, held) in partitions {
            assert_eq!(held.len(), 1, "{key} was spread over partitions {held:?}");
        }
    }
}

/// Yields to the scheduler on some calls so that concurrent lanes interleave.
struct SlowEveryOther {
    inner: Probe,
    calls: Arc<AtomicUsize>,
}

impl tidewater_core::Handler for SlowEveryOther {
    async fn handle(&self, d: tidewater_core::Delivery) -> Result<(), tidewater_core::HandlerError> {
        let n = self.calls.load(Ordering::Relaxed);
        for _ in 0..(n % 3) {
            tokio::task::yield_now().await;
        }
        self.inner.handle(d).await
    }
}

/// Case 7: Two groups each get everything; two members of one group split the work.
pub async fn consumer_groups(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    if !caps.consumer_groups {
        return skip("consumer_groups", "consumer_groups");
    }
    let topic = topic(&*f, "groups").await;
    let (a, b) = (Probe::succeeding(), Probe::succeeding());
    let mut sub_a = subscribe(&*f, ReadTask::new(&topic).with_group("group-a"), a.clone()).await;
    let mut sub_b = subscribe(&*f, ReadTask::new(&topic).with_group("group-b"), b.clone()).await;
    let messages = batch(&topic, 200, |i, m| m.with_key(format!("k{i}")));
    let expected = ids(&messages);
    write_each(&*f.writer().await, messages).await;
    a.wait_ids(caps.patience, &expected).await;
    b.wait_ids(caps.patience, &expected).await;
    sub_a.shutdown(GRACE).await;
    sub_b.shutdown(GRACE).await;

    let topic = self::topic(&*f, "members").await;
    let union = Probe::succeeding();
    let (n1, n2) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let member = |count: &Arc<AtomicUsize>| Member { count: Arc::clone(count), union: union.clone() };
    let mut sub_1 = subscribe(&*f, ReadTask::new(&topic).with_group("shared"), member(&n1)).await;
    let mut sub_2 = subscribe(&*f, ReadTask::new(&topic).with_group("shared"), member(&n2)).await;
    let messages = batch(&topic, 400, |i, m| m.with_key(format!("k{i}")));
    let expected = ids(&messages);
    write_each(&*f.writer().await, messages).await;
    let state = union.wait_ids(caps.patience, &expected).await;
    sub_1.shutdown(GRACE).await;
    sub_2.shutdown(GRACE).await;
    let (n1, n2) = (n1.load(Ordering::Relaxed), n2.load(Ordering::Relaxed));
    println!("consumer_groups: members handled {n1} and {n2} of 400, {} duplicates", state.duplicates());
    assert!(n1 > 0 && n2 > 0, "both members of the group should get work: {n1} and {n2}");
}

/// Case 27: Groups whose names look alike to a broker stay two groups. Brokers limit
/// the characters of their own names, so a driver maps a group to one: `billing.eu` and
/// `billing_eu` of one topic may become one name (JetStream's consumer names hold no
/// `.`), and so may group `g` of topic `x.<t>` and group `g.x` of topic `<t>` (a group
/// id of `<group>.<topic>`). Each group of such a pair gets every message of its own
/// topic and none of the other's, or the second one is refused at its start with
/// `InvalidName`; it never shares the first one's messages.
///
/// It needs no shared group (`consumer_groups`): each group here has one member.
pub async fn groups_with_alike_names_stay_apart(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    let topic = self::topic(&*f, "alike").await;
    let dotted = Probe::succeeding();
    let mut first = subscribe(&*f, ReadTask::new(&topic).with_group("billing.eu"), dotted.clone()).await;
    let underscored = Probe::succeeding();
    let second = alike(&*f, ReadTask::new(&topic).with_group("billing_eu"), underscored.clone()).await;
    let messages = batch(&topic, 50, |i, m| m.with_key(format!("k{i}")));
    let expected = ids(&messages);
    write_each(&*f.writer().await, messages).await;
    dotted.wait_ids(caps.patience, &expected).await;
    if let Some(mut second) = second {
        underscored.wait_ids(caps.patience, &expected).await;
        second.shutdown(GRACE).await;
    }
    first.shutdown(GRACE).await;

    let inner = self::topic(&*f, "alike").await;
    let outer = format!("x.{inner}");
    if let Err(err) = f.create_topic(&outer, caps.partitions).await {
        panic!("creating topic {outer} failed: {err}");
    }
    let (of_outer, of_inner) = (Probe::succeeding(), Probe::succeeding());
    let mut first = subscribe(&*f, ReadTask::new(&outer).with_group("g"), of_outer.clone()).await;
    let second = alike(&*f, ReadTask::new(&inner).with_group("g.x"), of_inner.clone()).await;
    let (to_outer, to_inner) = (batch(&outer, 50, |_, m| m), batch(&inner, 50, |_, m| m));
    let (expect_outer, expect_inner) = (ids(&to_outer), ids(&to_inner));
    let writer = f.writer().await;
    write_each(&*writer, to_outer).await;
    write_each(&*writer, to_inner).await;
    of_outer.wait_ids(caps.patience, &expect_outer).await;
    if let Some(mut second) = second {
        of_inner.wait_ids(caps.patience, &expect_inner).await;
        second.shutdown(GRACE).await;
    }
    first.shutdown(GRACE).await;
    for (probe, own) in [(&of_outer, &outer), (&of_inner, &inner)] {
        let strays: Vec<String> = probe
            .state()
            .done
            .iter()
            .filter(|d| *d.message().stream != **own)
            .map(|d| d.message().stream.to_string())
            .collect();
        assert!(strays.is_empty(), "the group reading {own} got messages of {strays:?}");
    }
}

/// A scheduler reading `task`, started, or `None` when the driver refuses the task's
/// group at the start as `InvalidName` (its name maps to another group's), with an error
/// that says each thing once.
async fn alike(f: &dyn Fixture, task: ReadTask, probe: Probe) -> Option<tidewater_core::SubscriberScheduler> {
    let mut scheduler = tidewater_core::SubscriberScheduler::new(f.reader().await, Default::default());
    let group = task.group.clone().unwrap_or_default();
    scheduler.add(task, Arc::new(probe));
    match scheduler.start().await {
        Ok(()) => Some(scheduler),
        Err(err) => {
            assert_eq!(err.kind(), ErrorKind::InvalidName, "group {group:?} was refused for another reason: {err}");
            assert!(err.to_string().contains(&format!("{group:?}")), "the error names the group: {err}");
            crate::assert_each_cause_said_once(&err);
            scheduler.shutdown(GRACE).await;
            None
        }
    }
}

/// One member of a group: counts its deliveries, records them in the shared probe.
struct Member {
    count: Arc<AtomicUsize>,
    union: Probe,
}

impl tidewater_core::Handler for Member {
    async fn handle(&self, d: tidewater_core::Delivery) -> Result<(), tidewater_core::HandlerError> {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.union.handle(d).await
    }
}

/// A probe that acts as `first` says on the first call for each message id and
/// succeeds on later calls.
fn fail_first_call(first: impl Fn(&tidewater_core::Delivery) -> Act + Send + Sync + 'static) -> Probe {
    let seen: std::sync::Mutex<HashSet<MessageId>> = Default::default();
    Probe::new(move |d| if seen.lock().unwrap().insert(d.message().id.clone()) { first(d) } else { Act::Succeed })
}

/// Case 8: A subscriber that comes late gets old messages.
pub async fn late_subscriber(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    if !caps.persistent {
        return skip("late_subscriber", "persistent");
    }
    let topic = topic(&*f, "late").await;
    let messages = batch(&topic, 50, |_, m| m);
    let expected = ids(&messages);
    write_each(&*f.writer().await, messages).await;
    let probe = Probe::succeeding();
    let task = ReadTask::new(&topic).with_group("late").with_start(StartFrom::Earliest);
    let mut sub = subscribe(&*f, task, probe.clone()).await;
    probe.wait_ids(caps.patience, &expected).await;
    sub.shutdown(GRACE).await;
}

/// Case 9: Closing and re-subscribing many times loses nothing; duplicates are counted.
pub async fn resubscribe(f: Arc<dyn Fixture>) {
    const ROUNDS: usize = 10;
    let caps = f.capabilities();
    if !(caps.persistent && caps.group_positions) {
        return skip("resubscribe", "persistent group_positions");
    }
    let topic = topic(&*f, "resubscribe").await;
    let messages = batch(&topic, 300, |i, m| m.with_key(format!("k{}", i % 10)));
    let expected = ids(&messages);
    write_each(&*f.writer().await, messages).await;
    let probe = Probe::succeeding();
    for round in 0..ROUNDS {
        let before = probe.state().done.len();
        let mut sub =
            subscribe(&*f, ReadTask::new(&topic).with_group("again").with_concurrency(2), probe.clone()).await;
        probe
            .wait(caps.patience, &format!("progress in round {round}"), |s| {
                s.done.len() > before || expected.is_subset(&s.done_ids())
            })
            .await;
        let report = sub.shutdown(GRACE).await;
        assert!(report.aborted.is_empty(), "{report:?}");
    }
    let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("again"), probe.clone()).await;
    let state = probe.wait_ids_again(&*f, &topic, caps.patience, &expected).await;
    sub.shutdown(GRACE).await;
    let duplicates = probe.state().duplicates();
    println!("resubscribe: {} messages over {} subscriptions, {duplicates} duplicates", expected.len(), ROUNDS + 1);
    assert!(state.done_ids().is_subset(&expected));
    if caps.settles_exactly {
        assert_eq!(duplicates, 0, "settled messages came again after a graceful close");
    }
}

/// Case 10: Closing a writer flushes everything it accepted; writing after close fails.
pub async fn close_flushes(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    let topic = topic(&*f, "flush").await;
    let probe = Probe::succeeding();
    let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("flush"), probe.clone()).await;
    let writer = f.writer().await;
    let messages = batch(&topic, 500, |_, m| m);
    let expected = ids(&messages);
    for m in messages {
        writer.write(vec![m]).await.expect("write");
    }
    writer.close().await.expect("close flushes");
    probe.wait_ids(caps.patience, &expected).await;
    let late = writer.write(vec![Message::new(&topic, "late")]).await;
    assert_eq!(late.map_err(|e| e.kind()), Err(ErrorKind::Closed), "writing after close must fail with Closed");
    sub.shutdown(GRACE).await;
}

/// Case 11: Cancelling an idle subscription ends it promptly.
pub async fn cancel_is_prompt(f: Arc<dyn Fixture>) {
    let topic = topic(&*f, "cancel").await;
    let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("cancel"), Probe::succeeding()).await;
    let report = tokio::time::timeout(Duration::from_secs(3), sub.shutdown(GRACE))
        .await
        .expect("an idle subscription must close within 3 s");
    assert!(report.is_clean(), "{report:?}");
}

/// Case 12: Shutdown while handlers run: what finishes in time is settled, what does not comes
/// again, nothing is lost.
pub async fn shutdown_with_handlers_running(f: Arc<dyn Fixture>) {
    const IN_FLIGHT: usize = 4;
    let caps = f.capabilities();
    if !(caps.persistent && caps.group_positions) {
        return skip("shutdown_with_handlers_running", "persistent group_positions");
    }
    let topic = topic(&*f, "shutdown").await;
    let messages = batch(&topic, 40, |i, m| m.with_key(format!("k{i}")));
    let expected = ids(&messages);
    write_each(&*f.writer().await, messages).await;

    // Round 1: four handlers block; stop is requested; then they are let go.
    let gate = Arc::new(Semaphore::new(0));
    let blocked = Arc::clone(&gate);
    let first = Probe::new(move |_| Act::Block(Arc::clone(&blocked)));
    let task = ReadTask::new(&topic).with_group("sd").with_concurrency(IN_FLIGHT);
    let mut sub = subscribe(&*f, task, first.clone()).await;
    first.wait(caps.patience, "4 handlers running", |s| s.calls.len() >= IN_FLIGHT).await;
    sub.begin_shutdown(GRACE);
    gate.add_permits(1000);
    let report = sub.shutdown(GRACE).await;
    let round1 = first.state();
    assert!(report.is_clean(), "nothing abandoned with time to spare: {report:?}");
    assert_eq!(report.acked(), round1.done.len() as u64, "every finished handler was settled: {report:?}");
    assert!(!round1.done.is_empty());

    // Round 2: a handler that never finishes in time is abandoned, not settled.
    let (second, report) = abandon_one(&*f, &topic, "sd").await;
    assert_eq!(report.abandoned(), 1, "the stuck handler is abandoned at the deadline: {report:?}");
    assert_eq!(report.acked(), 0, "{report:?}");

    // Round 3: everything not settled before comes again.
    let third = Probe::succeeding();
    let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("sd"), third.clone()).await;
    let done_before = round1.done_ids();
    let rest: HashSet<MessageId> = expected.difference(&done_before).cloned().collect();
    let round3 = third.wait_ids_again(&*f, &topic, caps.patience, &rest).await;
    sub.shutdown(GRACE).await;
    let abandoned_id = second.state().calls[0].message().id.clone();
    let round3_ids = round3.done_ids();
    assert!(round3_ids.contains(&abandoned_id), "the abandoned message was redelivered");
    if caps.settles_exactly {
        let again: Vec<&MessageId> = done_before.intersection(&round3_ids).collect();
        assert!(again.is_empty(), "messages settled at shutdown came again: {again:?}");
    }
}

/// Case 13: A message larger than any broker takes (16 MiB and a byte) is refused with
/// `TooLarge`, which no retry can fix, and its error says each thing once: its kind, the
/// driver, what happened, and each cause, in its text and as a reporter that prints each
/// source makes it. The writer goes on working, and nothing of the refused write
/// arrives, not even the good message before the big one in its batch: a batch is
/// checked whole before any of it is sent. Nor does a refused batch create a topic, where
/// the driver can list them to show it.
pub async fn oversize_is_too_large(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    let topic = topic(&*f, "oversize").await;
    let probe = Probe::succeeding();
    let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("big"), probe.clone()).await;
    let writer = f.writer().await;
    let before = Message::new(&topic, "small").with_id(format!("{topic}-before")).with_key("k");
    let big = Message::new(&topic, Bytes::from(vec![b'x'; 16 * 1024 * 1024 + 1])).with_id(format!("{topic}-big"));
    let err = writer.write(vec![before, big]).await.expect_err("a 16 MiB message is refused");
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    for once in [ErrorKind::TooLarge.to_string(), "(driver ".to_owned()] {
        assert_eq!(text.matches(&once).count(), 1, "{once:?} should appear once in: {text}");
    }
    crate::assert_each_cause_said_once(&err);
    if caps.lists_topics {
        // Nor does a refused batch create the topic it names: the checks that need no
        // broker come before the lookup that creates a missing topic.
        let fresh = fresh_topic("oversize-new");
        let big = Message::new(&fresh, Bytes::from(vec![b'x'; 16 * 1024 * 1024 + 1]));
        let err = writer.write(vec![Message::new(&fresh, "small"), big]).await.expect_err("refused again");
        assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
        let topics = f.admin().await.topics().await.expect("list the topics");
        assert!(!topics.contains(&fresh), "the refused batch created its topic {fresh}");
    }
    // Keyed as the good message of the refused batch was, so on a partitioned broker it
    // would have come first.
    let after = Message::new(&topic, "small").with_id(format!("{topic}-small")).with_key("k");
    writer.write(vec![after]).await.expect("the writer still writes after a refused message");
    writer.flush().await.expect("flush");
    let state = probe.wait(caps.patience, "the message after the refused one", |s| !s.done.is_empty()).await;
    sub.shutdown(GRACE).await;
    let got: Vec<&str> = state.done.iter().map(|d| d.message().id.as_str()).collect();
    assert!(got.iter().all(|id| id.ends_with("-small")), "only the small message arrives: {got:?}");
}

/// Case 14: The whole suite, `copies` times in parallel.
pub async fn run_stress(f: Arc<dyn Fixture>, copies: usize) {
    let mut runs = Vec::new();
    for _ in 0..copies {
        let f = Arc::clone(&f);
        runs.push(tokio::spawn(async move {
            round_trip(Arc::clone(&f)).await;
            concurrent_publishers(Arc::clone(&f)).await;
            topic_isolation(Arc::clone(&f)).await;
            nack_redelivery(Arc::clone(&f)).await;
            failures_do_not_stop_consumption(Arc::clone(&f)).await;
            per_key_order(Arc::clone(&f)).await;
            consumer_groups(Arc::clone(&f)).await;
            late_subscriber(Arc::clone(&f)).await;
            resubscribe(Arc::clone(&f)).await;
            close_flushes(Arc::clone(&f)).await;
            cancel_is_prompt(Arc::clone(&f)).await;
            oversize_is_too_large(Arc::clone(&f)).await;
            shutdown_with_handlers_running(Arc::clone(&f)).await;
            crate::panics_reach_the_chain(Arc::clone(&f)).await;
            crate::permanent_failures_never_loop(Arc::clone(&f)).await;
            crate::attempts_stay_exact_across_a_shutdown(Arc::clone(&f)).await;
            crate::a_stop_lets_a_waiting_handler_go(Arc::clone(&f)).await;
            crate::names_follow_one_rule(Arc::clone(&f)).await;
            crate::topics_are_administered(Arc::clone(&f)).await;
            crate::concurrency_runs_handlers_in_parallel(Arc::clone(&f)).await;
            crate::lag_drains_to_zero(Arc::clone(&f)).await;
            crate::batches_settle_each_delivery(Arc::clone(&f)).await;
            crate::transactions_land_whole_or_not_at_all(Arc::clone(&f)).await;
            crate::prefetch_bounds_read_ahead(Arc::clone(&f)).await;
            crate::fetches_stay_bounded_whatever_the_prefetch(Arc::clone(&f)).await;
            crate::nothing_stale_is_handed_out_after_a_nack(Arc::clone(&f)).await;
            groups_with_alike_names_stay_apart(f).await;
        }));
    }
    for run in runs {
        if let Err(err) = run.await {
            std::panic::resume_unwind(err.into_panic());
        }
    }
    println!("stress: {copies} copies of the suite passed");
}
