//! Handlers and helpers the cases share.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewater_core::{
    Delivery, EventRegistry, Handler, HandlerError, IdFactory, Message, MessageId, ReadTask, Reader,
    SubscriberScheduler, UuidV7Ids, Writer,
};
use tokio::sync::{Notify, Semaphore};

use crate::Fixture;

/// A topic name no other case or run uses.
pub fn fresh_topic(case: &str) -> String {
    let id = UuidV7Ids.next_id().replace('-', "");
    format!("tw-{case}-{id}")
}

/// What the probe handler does with a delivery.
pub(crate) enum Act {
    Succeed,
    Fail,
    /// Fail with an error that says retrying cannot help.
    FailPermanently,
    Panic,
    /// Wait for a permit, then succeed.
    Block(Arc<Semaphore>),
    /// Wait for the future, then succeed.
    Await(futures::future::BoxFuture<'static, ()>),
    /// Wait for the read task's stop, then let the delivery go unprocessed.
    LetGoAtTheStop,
}

type Behaviour = Box<dyn Fn(&Delivery) -> Act + Send + Sync>;

/// A handler that acts as told per delivery and records every call and every success.
#[derive(Clone)]
pub(crate) struct Probe {
    inner: Arc<ProbeInner>,
}

struct ProbeInner {
    state: Mutex<ProbeState>,
    changed: Notify,
    behave: Behaviour,
}

#[derive(Default, Clone)]
pub(crate) struct ProbeState {
    /// Every call, in order.
    pub(crate) calls: Vec<Delivery>,
    /// Every successful call, in order.
    pub(crate) done: Vec<Delivery>,
}

impl ProbeState {
    pub(crate) fn done_ids(&self) -> HashSet<MessageId> {
        self.done.iter().map(|d| d.message().id.clone()).collect()
    }

    pub(crate) fn duplicates(&self) -> usize {
        self.done.len() - self.done_ids().len()
    }
}

impl Probe {
    pub(crate) fn new(behave: impl Fn(&Delivery) -> Act + Send + Sync + 'static) -> Self {
        Self {
            inner: Arc::new(ProbeInner {
                state: Mutex::new(ProbeState::default()),
                changed: Notify::new(),
                behave: Box::new(behave),
            }),
        }
    }

    pub(crate) fn succeeding() -> Self {
        Self::new(|_| Act::Succeed)
    }

    pub(crate) fn state(&self) -> ProbeState {
        self.inner.state.lock().unwrap().clone()
    }

    fn update(&self, f: impl FnOnce(&mut ProbeState)) {
        f(&mut self.inner.state.lock().unwrap());
        self.inner.changed.notify_waiters();
    }

    /// Waits until `done` holds, or fails the test after `patience` saying `what`.
    pub(crate) async fn wait(&self, patience: Duration, what: &str, done: impl Fn(&ProbeState) -> bool) -> ProbeState {
        self.try_wait(patience, what, done, |_| String::new()).await.unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Waits until `done` holds; after `patience`, gives back why not: what it waited
    /// for, the calls and successes then, what `explain` says of them, and the
    /// successes by partition.
    async fn try_wait(
        &self,
        patience: Duration,
        what: &str,
        done: impl Fn(&ProbeState) -> bool,
        explain: impl Fn(&ProbeState) -> String,
    ) -> Result<ProbeState, String> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let state = self.inner.state.lock().unwrap();
                if done(&state) {
                    return Ok(state.clone());
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let state = self.state();
                return Err(format!(
                    "timed out after {patience:?} waiting for {what}: {} calls, {} successes ({} distinct){}; \
                     successes by partition: {}",
                    state.calls.len(),
                    state.done.len(),
                    state.done_ids().len(),
                    explain(&state),
                    by_partition(&state.done)
                ));
            }
        }
    }

    /// Waits until every id in `ids` was processed successfully. A failure names the ids
    /// still missing, so a stall can be told from a loss and traced to its partition.
    pub(crate) async fn wait_ids(&self, patience: Duration, ids: &HashSet<MessageId>) -> ProbeState {
        let (what, done, explain) = Self::all_of(ids);
        self.try_wait(patience, &what, done, explain).await.unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// [`Probe::wait_ids`] for messages that a closed consumer left unsettled, read
    /// again from `topic`: a failure also says what the broker holds of the topic then
    /// (where `f` can ask it), which tells a consumer that still holds them from one
    /// that was never given them.
    pub(crate) async fn wait_ids_again(
        &self,
        f: &dyn Fixture,
        topic: &str,
        patience: Duration,
        ids: &HashSet<MessageId>,
    ) -> ProbeState {
        let (what, done, explain) = Self::all_of(ids);
        match self.try_wait(patience, &what, done, explain).await {
            Ok(state) => state,
            Err(failure) => match f.broker_view(topic).await {
                Some(view) => panic!("{failure}\nthe broker's view of {topic} then:\n{view}"),
                None => panic!("{failure}"),
            },
        }
    }

    /// What waiting for every id of `ids` waits for, when it is done, and what a failure
    /// adds: the ids still missing.
    fn all_of(
        ids: &HashSet<MessageId>,
    ) -> (String, impl Fn(&ProbeState) -> bool + '_, impl Fn(&ProbeState) -> String + '_) {
        let explain = move |s: &ProbeState| {
            let done = s.done_ids();
            let mut missing: Vec<&str> = ids.iter().filter(|id| !done.contains(*id)).map(MessageId::as_str).collect();
            missing.sort_unstable();
            let shown = missing.iter().take(MISSING_SHOWN).copied().collect::<Vec<_>>().join(", ");
            let more = missing.len().saturating_sub(MISSING_SHOWN);
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            format!("; missing {}: {shown}{more}", missing.len())
        };
        let all_done = move |s: &ProbeState| {
            let done = s.done_ids();
            ids.iter().all(|id| done.contains(id))
        };
        (format!("{} distinct messages", ids.len()), all_done, explain)
    }
}

/// How many missing ids a failed wait names.
const MISSING_SHOWN: usize = 20;

/// `done` counted by the partition each came from (`-` where the broker names none),
/// as `0: 13, 1: 14`: a partition missing from it handed nothing over.
fn by_partition(done: &[Delivery]) -> String {
    let mut counts: std::collections::BTreeMap<Option<u32>, usize> = std::collections::BTreeMap::new();
    for d in done {
        *counts.entry(d.position().partition()).or_default() += 1;
    }
    let shown: Vec<String> =
        counts.iter().map(|(p, n)| format!("{}: {n}", p.map_or_else(|| "-".to_owned(), |p| p.to_string()))).collect();
    if shown.is_empty() {
        "none".to_owned()
    } else {
        shown.join(", ")
    }
}

impl Handler for Probe {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let act = (self.inner.behave)(&delivery);
        self.update(|s| s.calls.push(delivery.clone()));
        match act {
            Act::Succeed => {}
            Act::Fail => return Err(HandlerError::transient("induced failure")),
            Act::FailPermanently => return Err(HandlerError::permanent("induced permanent failure")),
            Act::Panic => panic!("induced panic (the conformance suite checks that workers survive it)"),
            Act::Block(permits) => {
                permits.acquire().await.expect("semaphore open").forget();
            }
            Act::Await(wait) => wait.await,
            Act::LetGoAtTheStop => {
                tidewater_core::StopSignal::current().stopped().await;
                return Err(HandlerError::stopping());
            }
        }
        self.update(|s| s.done.push(delivery));
        Ok(())
    }
}

/// A started scheduler with one task.
pub(crate) async fn subscribe(f: &dyn Fixture, task: ReadTask, handler: impl Handler) -> SubscriberScheduler {
    subscribe_with(f, task, handler, |_| {}).await
}

/// A started scheduler with one task, set up by `setup` before the start.
pub(crate) async fn subscribe_with(
    f: &dyn Fixture,
    task: ReadTask,
    handler: impl Handler,
    setup: impl FnOnce(&mut SubscriberScheduler),
) -> SubscriberScheduler {
    start_reading(f.reader().await, task, handler, setup).await
}

/// Reads `topic` in `group` with a handler that never finishes, waits until it runs,
/// and stops with a deadline of 200 ms, so that the handler is abandoned. The probe's one
/// call is the abandoned delivery; the report, what the stop said.
pub(crate) async fn abandon_one(f: &dyn Fixture, topic: &str, group: &str) -> (Probe, tidewater_core::ShutdownReport) {
    let stuck = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&stuck);
    let probe = Probe::new(move |_| Act::Block(Arc::clone(&held)));
    let mut sub = subscribe(f, ReadTask::new(topic).with_group(group), probe.clone()).await;
    probe.wait(f.capabilities().patience, "a handler running", |s| !s.calls.is_empty()).await;
    let report = sub.shutdown(Duration::from_millis(200)).await;
    // Let the abandoned call end, now that it no longer counts.
    stuck.add_permits(1000);
    (probe, report)
}

async fn start_reading(
    reader: Arc<dyn Reader>,
    task: ReadTask,
    handler: impl Handler,
    setup: impl FnOnce(&mut SubscriberScheduler),
) -> SubscriberScheduler {
    let mut scheduler = SubscriberScheduler::new(reader, EventRegistry::new());
    setup(&mut scheduler);
    let topic = task.topic.clone();
    scheduler.add(task, Arc::new(handler));
    if let Err(err) = scheduler.start().await {
        panic!("subscribing to {topic} failed: {err}");
    }
    scheduler
}

/// `n` messages for `topic` with ids `<topic>-<i>`, made by `make`.
pub(crate) fn batch(topic: &str, n: usize, make: impl Fn(usize, Message) -> Message) -> Vec<Message> {
    (0..n).map(|i| make(i, Message::new(topic, format!("payload {i}")).with_id(format!("{topic}-{i}")))).collect()
}

pub(crate) fn ids(messages: &[Message]) -> HashSet<MessageId> {
    messages.iter().map(|m| m.id.clone()).collect()
}

/// Writes each message with its own call, as services usually do.
pub(crate) async fn write_each(writer: &dyn Writer, messages: Vec<Message>) {
    for message in messages {
        let id = message.id.clone();
        if let Err(err) = writer.write(vec![message]).await {
            panic!("writing {id} failed: {err}");
        }
    }
    writer.flush().await.expect("flush");
}

/// Per key, the sequence numbers in the order they were processed.
pub(crate) fn sequences_by_key(done: &[Delivery]) -> HashMap<String, Vec<usize>> {
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for d in done {
        let key = d.message().key_str().expect("keyed message").to_owned();
        by_key.entry(key).or_default().push(seq(d));
    }
    by_key
}

/// The number in a delivery's `seq` header, which the cases and the drivers' own tests
/// give the messages of a key in order.
pub fn seq(d: &Delivery) -> usize {
    d.message().headers.get("seq").expect("seq header").parse().expect("number")
}

/// Runs `handler` on `task` over `reader`, returning once subscribed; the caller shuts
/// the scheduler down.
pub async fn subscribe_reader(reader: Arc<dyn Reader>, task: ReadTask, handler: impl Handler) -> SubscriberScheduler {
    start_reading(reader, task, handler, |_| {}).await
}

/// Asserts that a reporter that prints each source says each cause of `err` once: no
/// cause's text is already in what came before it, and the kind and the driver appear
/// once. A driver's error that quotes its client's error and returns it as its source too
/// fails it (see [`tidewater_core::Error`]).
pub fn assert_each_cause_said_once(err: &tidewater_core::Error) {
    let mut said = err.to_string();
    let mut next = std::error::Error::source(err);
    while let Some(cause) = next {
        let text = cause.to_string();
        // The whole report is made only for the failure's message.
        assert!(
            !said.contains(&text),
            "{text:?} is said twice by a reporter: {}",
            tidewater_core::testing::reported(err)
        );
        said.push_str(": ");
        said.push_str(&text);
        next = cause.source();
    }
    for once in [err.kind().to_string(), "(driver ".to_owned()] {
        assert!(said.matches(&once).count() <= 1, "{once:?} is said more than once: {said}");
    }
}

/// Asserts that `err` is a broker's refusal that retrying cannot fix (credentials, a
/// certificate): a `Config` error, not retryable, whose text says `says`, each cause
/// once. Every driver's security tests hold it, so that a service tells a wrong password
/// or an untrusted CA the same way on every broker, and apart from a broker that is away
/// (a `Connection` error, worth retrying).
pub fn assert_refused_for_good(err: &tidewater_core::Error, says: &str) {
    assert_eq!(err.kind(), tidewater_core::ErrorKind::Config, "a refusal, which retrying cannot help: {err}");
    assert!(!err.kind().is_retryable(), "{err}");
    let report = tidewater_core::testing::reported(err);
    assert!(report.contains(says), "the error says {says:?}: {report}");
    assert_each_cause_said_once(err);
}

/// A message with every field a driver maps to its broker: id, key, content type and
/// two headers (one with spaces), over bytes that are not UTF-8. The interop tests send
/// it to the brokers' own clients.
pub fn message_with_every_field(topic: &str) -> Message {
    Message::new(topic, vec![0u8, 1, 2, 255])
        .with_id("tw-1")
        .with_key("order-7")
        .with_content_type("application/octet-stream")
        .with_header("tenant", "acme")
        .with_header("trace", "a b c")
}

/// The headers another client reads on [`message_with_every_field`]: the id and the
/// content type under their wire names, then the message's own headers.
pub const EVERY_FIELD_HEADERS: [(&str, &str); 4] = [
    (tidewater_core::wire::ID, "tw-1"),
    (tidewater_core::wire::CONTENT_TYPE, "application/octet-stream"),
    ("tenant", "acme"),
    ("trace", "a b c"),
];

/// The payload of [`message_with_every_field`] in hex, as the interop scripts print it.
pub const EVERY_FIELD_PAYLOAD_HEX: &str = "000102ff";

pub(crate) fn skip(case: &str, missing: &str) {
    assert!(
        !crate::is_strict(),
        "conformance case {case} needs the {missing} capability, which the driver declares off: \
         declare the case in conformance_tests!'s ignore list with the reason"
    );
    println!("conformance case {case}: not run, the driver declares no {missing} capability");
}

#[cfg(test)]
mod tests {
    use std::panic::AssertUnwindSafe;

    use futures::FutureExt;
    use tidewater_core::{Message, Position};

    use super::*;

    #[tokio::test]
    async fn a_failed_wait_names_the_missing_ids_and_where_the_rest_came_from() {
        let probe = Probe::succeeding();
        let on = |id: &str, partition| {
            let position = Position::Queue { partition: Some(partition), sequence: None };
            Delivery::new(Message::new("t", "p").with_id(id), 1, position, None)
        };
        probe.handle(on("a", 1)).await.unwrap();
        probe.handle(on("b", 1)).await.unwrap();
        let ids: HashSet<MessageId> = ["a", "b", "c", "d"].into_iter().map(MessageId::from).collect();
        let failed = AssertUnwindSafe(probe.wait_ids(Duration::from_millis(100), &ids)).catch_unwind().await;
        let Err(panic) = failed else { panic!("c and d never come") };
        let message = *panic.downcast::<String>().expect("a message");
        assert!(message.contains("2 successes (2 distinct); missing 2: c, d;"), "{message}");
        assert!(message.ends_with("successes by partition: 1: 2"), "{message}");
    }
}
