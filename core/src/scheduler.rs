//! Starting one worker per read task, and shutting them down gracefully.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::dispatch::{another_type, Dispatch};
use crate::handler::{apply_chain, CatchPanic};
use crate::monitor::{Monitor, RunningGuard, TaskView};
use crate::reader::TaskStats;
use crate::shutdown::stop_pair;
use crate::{
    wire, BatchSpec, BoxHandler, Codec, DeadLetter, Delivery, Error, ErrorKind, Event, EventFn, EventRegistry,
    Extensions, Handler, HandlerError, Health, JsonCodec, Middleware, ReadContext, ReadTask, Reader, ReadySignal,
    Result, StartFrom, StopHandle, StopSignal, TaskHandler, TaskReport,
};

/// Longest wait between restarts of a failing reader.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(5);

/// The first wait before restarting a failed reader, doubled for each failure after.
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(50);

/// How long a reader must have run for its failure to count as a new outage, restarted
/// after the first wait again rather than the longest one the last outage reached.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long shutdown waits past the grace period for a reader to close its subscription.
const CLOSE_ALLOWANCE: Duration = Duration::from_secs(5);

/// A read task being configured: returned by the `subscribe` methods.
///
/// ```
/// # use tidewater_core::*;
/// # fn demo(scheduler: &mut SubscriberScheduler, handler: impl Handler) {
/// scheduler
///     .subscribe("orders", handler)
///     .group("billing")
///     .concurrency(8)
///     .start_from(StartFrom::Earliest);
/// # }
/// ```
pub struct TaskSpec {
    task: ReadTask,
    handler: Slot,
    middleware: Vec<Arc<dyn Middleware>>,
    /// Set for a task whose handler takes batches.
    batch: Option<BatchSpec>,
    /// The event type of a typed handler's task ([`SubscriberScheduler::subscribe_event`]).
    event_type: Option<&'static str>,
    /// That type's former names ([`Event::ALIASES`]).
    event_aliases: &'static [&'static str],
}

/// Makes a typed handler from the scheduler's states.
type BuildHandler = Box<dyn FnOnce(&Extensions) -> Result<TaskHandler> + Send + Sync>;

/// A task's handler, or how to make it once the scheduler's states are known.
enum Slot {
    Ready(TaskHandler),
    Build(BuildHandler),
}

impl TaskSpec {
    /// Makes the handler if it waits for the states; an error says which task it is.
    fn resolve(&mut self, states: &Extensions) -> Result<TaskHandler> {
        let slot = std::mem::replace(&mut self.handler, Slot::Build(Box::new(|_| unreachable!("being resolved"))));
        let handler = match slot {
            Slot::Ready(handler) => handler,
            Slot::Build(build) => build(states)?,
        };
        self.handler = Slot::Ready(handler.clone());
        Ok(handler)
    }
}

impl TaskSpec {
    /// Sets the consumer group.
    pub fn group(&mut self, group: impl Into<String>) -> &mut Self {
        self.task.group = Some(group.into());
        self
    }

    /// Sets how many handler calls may run at once (at least 1). Messages with the same
    /// key still run one at a time, in order.
    pub fn concurrency(&mut self, concurrency: usize) -> &mut Self {
        self.task.concurrency = concurrency.max(1);
        self
    }

    /// Sets where a new group starts.
    pub fn start_from(&mut self, start: StartFrom) -> &mut Self {
        self.task.start = start;
        self
    }

    /// Sets the default delay before a failed delivery comes again (`None`: at once).
    pub fn nack_delay(&mut self, delay: Option<Duration>) -> &mut Self {
        self.task.nack_delay = delay;
        self
    }

    /// Sets how many messages may be fetched ahead of the handlers (at least 1); see
    /// [`ReadTask::prefetch`].
    pub fn prefetch(&mut self, prefetch: usize) -> &mut Self {
        self.task.prefetch = prefetch.max(1);
        self
    }

    /// Adds a middleware for this task only, inside the scheduler-wide chain.
    pub fn middleware(&mut self, middleware: impl Middleware) -> &mut Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Adds a typed option for the driver.
    pub fn option<T: Send + Sync + 'static>(&mut self, value: T) -> &mut Self {
        self.task.options.insert(value);
        self
    }

    /// The task as configured so far.
    pub fn task(&self) -> &ReadTask {
        &self.task
    }
}

/// What a shutdown found.
#[derive(Clone, Debug, Default)]
pub struct ShutdownReport {
    /// One report per read task.
    pub tasks: Vec<TaskReport>,
    /// Tasks whose reader had not closed by the deadline plus a close allowance and
    /// were aborted: their unsettled messages come again.
    pub aborted: Vec<String>,
}

impl ShutdownReport {
    /// Deliveries settled as processed, over all tasks.
    pub fn acked(&self) -> u64 {
        self.tasks.iter().map(|t| t.acked).sum()
    }

    /// Deliveries written to a dead-letter queue, over all tasks.
    pub fn dead_lettered(&self) -> u64 {
        self.tasks.iter().map(|t| t.dead_lettered).sum()
    }

    /// Deliveries passed over as not for their task's handler, over all tasks.
    pub fn skipped(&self) -> u64 {
        self.tasks.iter().map(|t| t.skipped).sum()
    }

    /// Handler calls abandoned at the deadline, over all tasks.
    pub fn abandoned(&self) -> u64 {
        self.tasks.iter().map(|t| t.abandoned).sum()
    }

    /// Whether every task ended within the deadline with nothing abandoned.
    pub fn is_clean(&self) -> bool {
        self.aborted.is_empty() && self.abandoned() == 0
    }
}

struct Running {
    view: TaskView,
    join: JoinHandle<()>,
}

/// Runs read tasks: one worker per task, restarted with backoff when its reader fails
/// (50 ms, doubled for each failure that follows up to 5 s, and 50 ms again after a run
/// of a minute), stopped gracefully by [`SubscriberScheduler::shutdown`].
///
/// A handler's error never ends a worker: the delivery is nacked and comes again, as
/// the task's nack policy says (use the retry and dead-letter middleware for more).
pub struct SubscriberScheduler<C: Codec = JsonCodec> {
    reader: Arc<dyn Reader>,
    codec: Arc<C>,
    registry: Arc<EventRegistry>,
    middleware: Vec<Arc<dyn Middleware>>,
    dead_letter: Option<DeadLetter>,
    states: Extensions,
    pending: Vec<TaskSpec>,
    running: Vec<Running>,
    /// What the scheduler's monitors see: the running tasks.
    views: Arc<RwLock<Vec<TaskView>>>,
    stop: StopHandle,
    signal: StopSignal,
}

impl<C: Codec> fmt::Debug for SubscriberScheduler<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriberScheduler")
            .field("driver", &self.reader.driver())
            .field("pending", &self.pending.len())
            .field("running", &self.running.len())
            .finish()
    }
}

impl SubscriberScheduler<JsonCodec> {
    /// A scheduler reading through `reader`, decoding typed events as JSON.
    pub fn new(reader: Arc<dyn Reader>, registry: EventRegistry) -> Self {
        Self::with_codec(reader, Arc::new(registry), JsonCodec)
    }
}

impl<C: Codec> SubscriberScheduler<C> {
    /// A scheduler with its own codec.
    pub fn with_codec(reader: Arc<dyn Reader>, registry: Arc<EventRegistry>, codec: C) -> Self {
        let (stop, signal) = stop_pair();
        Self {
            reader,
            codec: Arc::new(codec),
            registry,
            middleware: Vec::new(),
            dead_letter: None,
            states: Extensions::new(),
            pending: Vec::new(),
            running: Vec::new(),
            views: Arc::default(),
            stop,
            signal,
        }
    }

    /// Adds a middleware to every task, outside each task's own chain. The first added
    /// runs first.
    ///
    /// Each middleware added boxes its future on every call: layers joined with
    /// [`Around::then`](crate::Around::then) and added once cost one allocation a message
    /// for the whole chain, where the same layers added one by one cost one each.
    pub fn with_middleware(&mut self, middleware: impl Middleware) -> &mut Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Sets the dead letter for tasks whose chain has none (no middleware whose
    /// [`Middleware::dead_letters`] is true, nor a handler whose
    /// [`Handler::dead_letters`] is, as a [`Layered`](crate::Layered) one can be): the
    /// runner hands it what the chain returns as failed, panics included, as if it were
    /// outermost in the chain, but without a layer on the success path. `None` removes it. A [`Bus`](crate::Bus) sets a
    /// [`DeadLetter`] to `<topic>.dlq` through its own writer; a scheduler made on its own
    /// has none.
    ///
    /// Without one, a permanent failure has nowhere to go: its message is redelivered
    /// after the task's nack delay, doubling each time up to
    /// [`ReadTask::MAX_NACK_DELAY`], never dropped, and `start` logs a warning.
    pub fn default_dead_letter(&mut self, dead_letter: Option<DeadLetter>) -> &mut Self {
        self.dead_letter = dead_letter;
        self
    }

    /// Whether a default dead letter is set ([`SubscriberScheduler::default_dead_letter`]).
    pub(crate) fn has_default_dead_letter(&self) -> bool {
        self.dead_letter.is_some()
    }

    /// Subscribes `handler` to the raw messages of `topic`.
    pub fn subscribe(&mut self, topic: impl Into<String>, handler: impl Handler) -> &mut TaskSpec {
        self.add(ReadTask::new(topic), TaskHandler::new(handler))
    }

    /// Gives typed handlers a value they take as [`State<S>`](crate::State), cloned into
    /// each call; a later value of the same type replaces it.
    pub fn with_state<S: Clone + Send + Sync + 'static>(&mut self, state: S) -> &mut Self {
        self.states.insert(state);
        self
    }

    /// Subscribes a typed handler to the topic the registry gives its event: an async
    /// function (or closure) that takes the event and, after it, any of [`Delivery`],
    /// [`State<S>`](crate::State) or another [`FromDelivery`](crate::FromDelivery) (see
    /// [`EventFn`]). A payload that does not decode fails permanently (so it goes to the
    /// dead-letter queue) and never reaches the handler.
    ///
    /// A topic may carry several event types. A message whose event-type header
    /// ([`wire::EVENT_TYPE`]) names another type that the registry routes to the same
    /// topic is passed over: settled without a call and counted in
    /// [`TaskReport::skipped`], not dead-lettered, as the topic carries it on purpose
    /// (for another group, or only published). A type the registry does not know fails
    /// permanently, so it reaches the dead-letter queue: it may be one that a newer
    /// version of the service, deployed beside this one in the same group, handles, and
    /// passed over it would be lost to it (route it to declare it known). For the same
    /// reason, a handler added to a group for a type its registry already routed to the
    /// topic misses what the group's older instances pass over during a rolling
    /// deploy: give such a handler a group of its own. Typed handlers subscribed in one group to one
    /// topic (their events routed there together) run as one subscription that hands
    /// each message to the handler of its type, so a key's events keep their order
    /// across types; as group members of their own, each would get some of the others'
    /// messages and pass them over. Their settings must then agree, two of them may not
    /// take one type, and no other kind of task (a batch handler, one of raw messages)
    /// may read the topic in the group: [`start`](Self::start) says where they do not.
    ///
    /// An event type with no route, or a state never given, makes
    /// [`start`](Self::start) fail with an error that says so.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # use tidewater_core::*;
    /// # #[derive(Serialize, Deserialize)] struct OrderPlaced { id: u64 }
    /// # impl Event for OrderPlaced { const TYPE: &'static str = "order.placed"; }
    /// async fn bill(order: OrderPlaced) -> HandlerResult {
    ///     println!("order {}", order.id);
    ///     Ok(())
    /// }
    ///
    /// # fn demo(scheduler: &mut SubscriberScheduler) {
    /// scheduler.subscribe_event(bill).group("billing");
    /// # }
    /// ```
    pub fn subscribe_event<T: 'static, H: EventFn<T>>(&mut self, handler: H) -> &mut TaskSpec {
        let (codec, registry) = (Arc::clone(&self.codec), Arc::clone(&self.registry));
        let (topic, slot) = match self.registry.topic_of::<H::Event>() {
            Ok(topic) => {
                let build = move |states: &Extensions| -> Result<TaskHandler> {
                    let parts = H::resolve(states)?;
                    let _args = PhantomData::<fn() -> T>;
                    Ok(TaskHandler::new(EventHandler { f: handler, parts, codec, registry, _args }))
                };
                (topic.to_owned(), Slot::Build(Box::new(build)))
            }
            Err(err) => (H::Event::TYPE.to_owned(), Slot::Build(Box::new(move |_: &Extensions| Err(err)))),
        };
        self.pending.push(TaskSpec {
            task: ReadTask::new(topic),
            handler: slot,
            middleware: Vec::new(),
            batch: None,
            event_type: Some(H::Event::TYPE),
            event_aliases: H::Event::ALIASES,
        });
        self.pending.last_mut().expect("just pushed")
    }

    /// Adds a fully built task: its handler a [`TaskHandler`], an `Arc` of a handler or a
    /// [`BoxHandler`].
    pub fn add(&mut self, task: ReadTask, handler: impl Into<TaskHandler>) -> &mut TaskSpec {
        let handler = Slot::Ready(handler.into());
        self.pending.push(TaskSpec {
            task,
            handler,
            middleware: Vec::new(),
            batch: None,
            event_type: None,
            event_aliases: &[],
        });
        self.pending.last_mut().expect("just pushed")
    }

    /// A typed batch handler on the topic the registry gives `E`: `f` gets the events of
    /// a batch that decode (one that does not fails permanently, as with
    /// [`subscribe_event`](Self::subscribe_event)), and indices in its
    /// [`BatchError`](crate::BatchError) are into the events it got.
    pub fn subscribe_event_batch<E, F, Fut>(&mut self, max: usize, linger: Duration, f: F) -> &mut TaskSpec
    where
        E: Event,
        F: Fn(Vec<E>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = crate::BatchResult> + Send + 'static,
    {
        let handler = crate::batch::EventBatch {
            f,
            codec: Arc::clone(&self.codec),
            registry: Arc::clone(&self.registry),
            _event: PhantomData::<fn() -> E>,
        };
        let spec = match self.registry.topic_of::<E>() {
            Ok(topic) => {
                let topic = topic.to_owned();
                self.subscribe_batch(topic, max, linger, handler)
            }
            Err(err) => {
                let spec = self.subscribe_batch(E::TYPE, max, linger, handler);
                spec.handler = Slot::Build(Box::new(move |_: &Extensions| Err(err)));
                spec
            }
        };
        spec.event_type = Some(E::TYPE);
        spec.event_aliases = E::ALIASES;
        spec
    }

    /// Subscribes a batch handler to `topic`: it gets up to `max` deliveries at once, or
    /// what came within `linger` of the first, in the order the broker delivered them,
    /// one batch after another (so a key's messages keep their order across batches;
    /// the task's concurrency does not apply). Each delivery is then settled by its own
    /// outcome: those the handler reports failed ([`BatchError`](crate::BatchError)) are
    /// dead-lettered or redelivered as a single handler's failures are, the rest acked,
    /// and on a log the commit never passes one that is not settled. Middleware wraps
    /// single handlers and does not apply to batches.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tidewater_core::*;
    /// # fn demo(scheduler: &mut SubscriberScheduler) {
    /// scheduler
    ///     .subscribe_batch("clicks", 500, Duration::from_millis(50), batch_handler_fn(|batch: Vec<Delivery>| async move {
    ///         println!("storing {} clicks in one insert", batch.len());
    ///         Ok::<_, BatchError>(())
    ///     }))
    ///     .group("analytics");
    /// # }
    /// ```
    ///
    /// See [`subscribe_event_batch`](Self::subscribe_event_batch) for typed events.
    pub fn subscribe_batch(
        &mut self,
        topic: impl Into<String>,
        max: usize,
        linger: Duration,
        handler: impl crate::BatchHandler,
    ) -> &mut TaskSpec {
        let spec = BatchSpec::new(Arc::new(handler), max, linger);
        let mut task = ReadTask::new(topic);
        // Fetch what a batch can hold.
        task.prefetch = task.prefetch.max(spec.max);
        let unused = TaskHandler::new(crate::handler_fn(|_d: Delivery| async {
            Err::<(), _>(HandlerError::permanent("a batch task's deliveries go to its batch handler"))
        }));
        self.pending.push(TaskSpec {
            task,
            handler: Slot::Ready(unused),
            middleware: Vec::new(),
            batch: Some(spec),
            event_type: None,
            event_aliases: &[],
        });
        self.pending.last_mut().expect("just pushed")
    }

    /// Starts a worker for every task added since the last start, and waits until each
    /// is subscribed, so that messages published after `start` returns are received.
    /// Returns the first error a reader met before it was subscribed; the workers keep
    /// retrying in the background until [`SubscriberScheduler::shutdown`].
    pub async fn start(&mut self) -> Result<()> {
        if self.signal.is_stopped() {
            return Err(Error::closed("the scheduler was shut down"));
        }
        // Everything that can be wrong before subscribing is checked for every task first,
        // so that a mistake starts nothing. The topic is checked here for every driver, so
        // a name that works in a test on the memory driver works on every broker.
        self.join_typed()?;
        let mut handlers = Vec::with_capacity(self.pending.len());
        for spec in &mut self.pending {
            handlers.push(spec.resolve(&self.states)?);
            crate::names::check_topic(&spec.task.topic)?;
        }
        let mut waits = Vec::new();
        for (spec, handler) in std::mem::take(&mut self.pending).into_iter().zip(handlers) {
            let (handler, dead_letter) = self.chain(&spec, handler);
            let (ready, ready_rx) = ReadySignal::new();
            let (first_error, error_rx) = oneshot::channel();
            let stats = Arc::new(TaskStats::default());
            let pause = crate::PauseSwitch::new();
            let ctx = ReadContext {
                stop: self.signal.clone(),
                pause: pause.clone(),
                ready: ready.clone(),
                stats: Arc::clone(&stats),
                dead_letter,
                batch: spec.batch.clone(),
            };
            let topic = spec.task.topic.clone();
            let running = Arc::new(AtomicBool::new(true));
            let view = TaskView { topic: topic.clone(), group: spec.task.group.clone(), stats, ready, running, pause };
            let guard = RunningGuard(Arc::clone(&view.running));
            let work = worker(Arc::clone(&self.reader), spec.task, handler, ctx, first_error);
            let join = tokio::spawn(async move {
                let _guard = guard;
                work.await;
            });
            self.views.write().unwrap_or_else(|e| e.into_inner()).push(view.clone());
            self.running.push(Running { view, join });
            waits.push((topic, ready_rx, error_rx));
        }
        for (topic, mut ready, error) in waits {
            tokio::select! {
                biased;
                Ok(_) = ready.wait_for(|r| *r) => {}
                err = error => {
                    return Err(err.unwrap_or_else(|_| {
                        Error::closed("the reader ended before it was subscribed").with_topic(topic)
                    }));
                }
            }
        }
        Ok(())
    }

    /// Makes the pending typed handlers of one topic and group one task that hands each
    /// message to the handler of its type ([`Dispatch`]). Members of a group split a
    /// topic's messages, so as tasks of their own each would get some of the others'
    /// messages and pass them over, and the others would never see them.
    ///
    /// They run as one subscription, so their settings must agree; two handlers of one
    /// event type in one group, a group already read by a running typed task, and
    /// driver options on any but the first are refused, saying why.
    fn join_typed(&mut self) -> Result<()> {
        self.refuse_mixed()?;
        let key = |spec: &TaskSpec| match (spec.event_type, &spec.task.group, &spec.batch) {
            (Some(_), Some(group), None) => Some((spec.task.topic.clone(), group.clone())),
            _ => None,
        };
        // Every set is checked before any is joined, so that a refusal leaves the
        // pending tasks as they were.
        let mut sets: Vec<((String, String), Vec<&TaskSpec>)> = Vec::new();
        for spec in &self.pending {
            if let Some(k) = key(spec) {
                match sets.iter_mut().find(|(seen, _)| *seen == k) {
                    Some((_, specs)) => specs.push(spec),
                    None => sets.push((k, vec![spec])),
                }
            }
        }
        for ((topic, group), specs) in &sets {
            if let [first, mates @ ..] = &specs[..] {
                check_mates(first, mates, topic, group)?;
            }
        }
        let mut i = 0;
        while i < self.pending.len() {
            let Some((topic, group)) = key(&self.pending[i]) else {
                i += 1;
                continue;
            };
            let same = |spec: &TaskSpec| key(spec).is_some_and(|(t, g)| t == topic && g == group);
            let mut mates = Vec::new();
            let mut j = i + 1;
            while j < self.pending.len() {
                if same(&self.pending[j]) {
                    mates.push(self.pending.remove(j));
                } else {
                    j += 1;
                }
            }
            if !mates.is_empty() {
                let registry = Arc::clone(&self.registry);
                join(&mut self.pending[i], mates, topic, group, registry);
            }
            i += 1;
        }
        Ok(())
    }

    /// Refuses a typed handler that would share its topic and group with a task it
    /// cannot be joined to (a batch handler, or one of raw messages): as two members of
    /// the group, it would pass over the events of other types it got, which the other
    /// task should have had.
    fn refuse_mixed(&self) -> Result<()> {
        for (i, spec) in self.pending.iter().enumerate() {
            let (Some(kind), Some(group)) = (spec.event_type, &spec.task.group) else {
                continue;
            };
            let topic = &spec.task.topic;
            if self.running.iter().any(|r| r.view.topic == *topic && r.view.group.as_ref() == Some(group)) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "a typed handler of {kind:?} reads topic {topic} in group {group}, which a running task \
                         already reads: subscribe a group's typed handlers of one topic before the same start"
                    ),
                ));
            }
            for (j, other) in self.pending.iter().enumerate() {
                if i == j || other.task.topic != *topic || other.task.group.as_ref() != Some(group) {
                    continue;
                }
                let what = match (other.event_type, other.batch.is_some()) {
                    (Some(_), false) if spec.batch.is_none() => continue,
                    (Some(other_kind), false) => format!("a typed handler of {other_kind:?}"),
                    (Some(other_kind), true) => format!("a typed batch handler of {other_kind:?}"),
                    (None, false) => "a handler of its raw messages".to_owned(),
                    (None, true) => "a batch handler of its raw messages".to_owned(),
                };
                let this = if spec.batch.is_some() { "typed batch handler" } else { "typed handler" };
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "a {this} of {kind:?} reads topic {topic} in group {group} beside {what}: members of one \
                         group split a topic's messages, so each would pass over events the other should get; give \
                         one of them a group of its own"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The handler of `spec` in its middleware (the task's own innermost, then the
    /// scheduler's), and the default dead letter if no middleware dead-letters.
    fn chain(&self, spec: &TaskSpec, handler: TaskHandler) -> (TaskHandler, Option<DeadLetter>) {
        let dead_letters =
            handler.dead_letters() || spec.middleware.iter().chain(&self.middleware).any(|m| m.dead_letters());
        let default = self.dead_letter.clone().filter(|_| !dead_letters);
        if !dead_letters && default.is_none() {
            tracing::warn!(
                topic = %spec.task.topic,
                "no dead-letter queue for this task: a message that fails permanently comes again, \
                 ever more slowly, until the handler takes it"
            );
        }
        if spec.middleware.is_empty() && self.middleware.is_empty() {
            // The runner's own catch makes a panic one failed attempt already.
            return (handler, default);
        }
        let handler: BoxHandler = Arc::new(CatchPanic(handler.boxed()));
        (apply_chain(apply_chain(handler, &spec.middleware), &self.middleware).into(), default)
    }

    /// Tells every task to stop taking new messages now, with `grace` for in-flight
    /// handlers, without waiting; [`SubscriberScheduler::shutdown`] then waits and reports.
    /// The first call fixes the deadline.
    pub fn begin_shutdown(&self, grace: Duration) {
        self.stop.stop(grace);
    }

    /// Whether the read tasks run, are subscribed and connected: what liveness and
    /// readiness probes ask. See [`Health`].
    pub fn health(&self) -> Health {
        self.monitor().health()
    }

    /// Live counters of the running tasks.
    pub fn stats(&self) -> Vec<TaskReport> {
        self.monitor().stats()
    }

    /// A shared view of the tasks' health and counters that stays current, for probes
    /// and exporters that run beside the scheduler. See [`Monitor`].
    pub fn monitor(&self) -> Monitor {
        Monitor::new(Arc::clone(&self.reader), Arc::clone(&self.views))
    }

    /// Stops taking new messages, gives in-flight handlers `grace` to finish, settles
    /// what finished, closes the subscriptions and reports what each task did. Handlers
    /// still running at the deadline are left unsettled, so the broker delivers their
    /// messages again.
    pub async fn shutdown(&mut self, grace: Duration) -> ShutdownReport {
        self.begin_shutdown(grace);
        let deadline = tokio::time::Instant::now() + grace + CLOSE_ALLOWANCE;
        let mut report = ShutdownReport::default();
        for mut running in self.running.drain(..) {
            let view = &running.view;
            if tokio::time::timeout_at(deadline, &mut running.join).await.is_err() {
                running.join.abort();
                tracing::error!(topic = %view.topic, "reader did not close in time; aborted");
                report.aborted.push(view.topic.clone());
            }
            report.tasks.push(view.stats.report(&view.topic, view.group.as_deref()));
        }
        self.views.write().unwrap_or_else(|e| e.into_inner()).clear();
        report
    }
}

async fn worker(
    reader: Arc<dyn Reader>,
    task: ReadTask,
    handler: TaskHandler,
    ctx: ReadContext,
    first_error: oneshot::Sender<Error>,
) {
    let mut first_error = Some(first_error);
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        let started = tokio::time::Instant::now();
        let result = reader.read(task.clone(), handler.clone(), ctx.clone()).await;
        if ctx.stop.is_stopped() {
            if let Err(err) = result {
                tracing::warn!(topic = %task.topic, error = %err, "reader failed while stopping");
            }
            return;
        }
        // Only a stop ends a subscription: a reader that returns without one was ended by
        // its broker (a consumer that gave up, a closed connection), and is restarted
        // like one that failed.
        let err = match result {
            Ok(()) => Error::closed("the subscription ended without a stop").with_topic(task.topic.clone()),
            Err(err) => err,
        };
        if started.elapsed() >= HEALTHY_RUN {
            delay = FIRST_RESTART_DELAY;
        }
        tracing::warn!(topic = %task.topic, error = %err, retry_in = ?delay, "reader failed; restarting");
        ctx.stats.add(crate::reader::Count::Restarts, 1);
        let was_ready = ctx.ready.is_ready();
        ctx.ready.unready();
        if !was_ready {
            if let Some(tx) = first_error.take() {
                let _ = tx.send(err);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = ctx.stop.stopped() => return,
        }
        delay = (delay * 2).min(MAX_RESTART_DELAY);
    }
}

/// Refuses to join `mates` to `first` where they cannot be one subscription.
fn check_mates(first: &TaskSpec, mates: &[&TaskSpec], topic: &str, group: &str) -> Result<()> {
    let refuse = |why: String| {
        Err(Error::new(
            ErrorKind::Config,
            format!(
                "typed handlers read topic {topic} in group {group}, which makes them one subscription that hands \
                 each event to the handler of its type; {why}"
            ),
        ))
    };
    let settings = |t: &ReadTask| (t.concurrency, t.start, t.nack_delay, t.prefetch);
    let mut types = vec![first.event_type.unwrap_or_default()];
    let mut names: Vec<&str> = first.event_aliases.iter().copied().chain(types.iter().copied()).collect();
    for mate in mates {
        let kind = mate.event_type.unwrap_or_default();
        // A former name is taken as much as a type's own: a message under it could not
        // tell which handler it is for.
        if let Some(taken) = std::iter::once(&kind).chain(mate.event_aliases).find(|name| names.contains(name)) {
            return refuse(format!("two of them take {taken:?}: give one of them a group of its own"));
        }
        names.extend(std::iter::once(kind).chain(mate.event_aliases.iter().copied()));
        types.push(kind);
        if settings(&mate.task) != settings(&first.task) {
            return refuse(format!(
                "the one of {kind:?} has other settings (concurrency, start, nack delay, prefetch: {:?}) than the \
                 first, of {:?} ({:?}): give them the same",
                settings(&mate.task),
                types[0],
                settings(&first.task)
            ));
        }
        if !mate.task.options.is_empty() {
            return refuse(format!(
                "the one of {kind:?} has driver options: set them on the first subscribed, of {:?}",
                types[0]
            ));
        }
    }
    Ok(())
}

/// Makes `first` the task of itself and its `mates`: a [`Dispatch`] over each handler in
/// its own task middleware.
fn join(first: &mut TaskSpec, mates: Vec<TaskSpec>, topic: String, group: String, registry: Arc<EventRegistry>) {
    let mut members = Vec::with_capacity(mates.len() + 1);
    let own = std::mem::replace(&mut first.handler, Slot::Build(Box::new(|_| unreachable!("joined"))));
    members.push((
        (first.event_type.unwrap_or_default(), first.event_aliases),
        own,
        std::mem::take(&mut first.middleware),
    ));
    members.extend(
        mates.into_iter().map(|m| ((m.event_type.unwrap_or_default(), m.event_aliases), m.handler, m.middleware)),
    );
    (first.event_type, first.event_aliases) = (None, &[]);
    first.handler = Slot::Build(Box::new(move |states: &Extensions| {
        let mut by_type = Vec::with_capacity(members.len());
        let mut dead_letters = true;
        for (kind, slot, middleware) in members {
            let handler = match slot {
                Slot::Ready(handler) => handler,
                Slot::Build(build) => build(states)?,
            };
            dead_letters &= handler.dead_letters() || middleware.iter().any(|m| m.dead_letters());
            let handler = match middleware.is_empty() {
                true => handler.boxed(),
                false => apply_chain(Arc::new(CatchPanic(handler.boxed())), &middleware),
            };
            by_type.push((kind, handler));
        }
        Ok(TaskHandler::new(Dispatch { topic, group, by_type, dead_letters, registry }))
    }));
}

struct EventHandler<H: EventFn<T>, T, C> {
    f: H,
    parts: H::Parts,
    codec: Arc<C>,
    registry: Arc<EventRegistry>,
    _args: PhantomData<fn() -> T>,
}

impl<H, T, C> Handler for EventHandler<H, T, C>
where
    H: EventFn<T>,
    T: 'static,
    C: Codec,
{
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let message = delivery.message();
        if let Some(kind) = message.headers.get(wire::EVENT_TYPE) {
            if !crate::event::takes::<H::Event>(kind) {
                let expected = <H::Event as Event>::TYPE;
                return another_type(&delivery, kind, &self.registry, || format!("{expected:?}"));
            }
        }
        let event: H::Event = self.codec.decode_message(message).map_err(HandlerError::permanent)?;
        self.f.call(event, &self.parts, &delivery).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::{handler_fn, Incoming, Source};
    use async_trait::async_trait;

    /// A reader whose first subscription ends at once without an error (as a consumer
    /// whose broker gave up does), and whose later ones run until the stop.
    struct EndsOnce {
        reads: AtomicUsize,
        second: tokio::sync::Notify,
    }

    #[async_trait]
    impl Reader for EndsOnce {
        fn driver(&self) -> &'static str {
            "ends-once"
        }

        async fn open(&self, _task: &ReadTask, _ready: &ReadySignal) -> Result<Box<dyn Source>> {
            let first = self.reads.fetch_add(1, Ordering::SeqCst) == 0;
            if !first {
                self.second.notify_one();
            }
            Ok(Box::new(Ends { at_once: first }))
        }
    }

    /// A source that ends at once, or that never delivers and so runs until the stop.
    struct Ends {
        at_once: bool,
    }

    #[async_trait]
    impl Source for Ends {
        async fn next_batch(&mut self, _batch: &mut Vec<Incoming>, _max: usize) -> Result<usize> {
            if self.at_once {
                return Ok(0);
            }
            std::future::pending().await
        }

        async fn close(&mut self) -> Result<()> {
            Ok(())
        }
    }

    /// A reader that subscribes each time, and whose subscriptions fail as `fails` says
    /// of each: at once, after a while, or never. It records when each was opened.
    struct Flaky {
        opened: Mutex<Vec<tokio::time::Instant>>,
        fails: fn(usize) -> Option<Duration>,
        settled: tokio::sync::Notify,
    }

    #[async_trait]
    impl Reader for Flaky {
        fn driver(&self) -> &'static str {
            "flaky"
        }

        async fn open(&self, _task: &ReadTask, _ready: &ReadySignal) -> Result<Box<dyn Source>> {
            let mut opened = self.opened.lock().unwrap();
            opened.push(tokio::time::Instant::now());
            let fails_after = (self.fails)(opened.len() - 1);
            if fails_after.is_none() {
                self.settled.notify_one();
            }
            Ok(Box::new(FailsAfter(fails_after)))
        }
    }

    struct FailsAfter(Option<Duration>);

    #[async_trait]
    impl Source for FailsAfter {
        async fn next_batch(&mut self, _batch: &mut Vec<Incoming>, _max: usize) -> Result<usize> {
            match self.0 {
                Some(after) => {
                    tokio::time::sleep(after).await;
                    Err(Error::new(ErrorKind::Connection, "the broker went away"))
                }
                None => std::future::pending().await,
            }
        }

        async fn close(&mut self) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_ran_a_long_while_is_restarted_at_once_again() {
        // Seven failures in a row (the waits grow to 3.2 s), then a subscription that
        // runs two minutes before it fails, then one more failure, then one that holds.
        let reader = Arc::new(Flaky {
            opened: Mutex::default(),
            fails: |i| match i {
                0..=6 => Some(Duration::ZERO),
                7 => Some(Duration::from_secs(120)),
                8 => Some(Duration::ZERO),
                _ => None,
            },
            settled: tokio::sync::Notify::new(),
        });
        let mut scheduler = SubscriberScheduler::new(Arc::clone(&reader) as Arc<dyn Reader>, EventRegistry::new());
        scheduler.subscribe("t", handler_fn(|_d: Delivery| async { Ok::<_, HandlerError>(()) }));
        scheduler.start().await.unwrap();
        tokio::time::timeout(Duration::from_secs(600), reader.settled.notified()).await.expect("a subscription holds");
        scheduler.shutdown(Duration::from_secs(1)).await;

        let opened = reader.opened.lock().unwrap().clone();
        let waits: Vec<Duration> = opened.windows(2).map(|w| w[1] - w[0]).collect();
        let ms = Duration::from_millis;
        assert_eq!(&waits[..7], [ms(50), ms(100), ms(200), ms(400), ms(800), ms(1600), ms(3200)]);
        // After two healthy minutes, the failure is a new outage: the first wait again.
        assert_eq!(waits[7], Duration::from_secs(120) + ms(50), "{waits:?}");
        assert_eq!(waits[8], ms(100), "{waits:?}");
    }

    #[tokio::test]
    async fn start_refuses_a_topic_no_broker_takes() {
        let reader = Arc::new(EndsOnce { reads: AtomicUsize::new(0), second: tokio::sync::Notify::new() });
        let mut scheduler = SubscriberScheduler::new(Arc::clone(&reader) as Arc<dyn Reader>, EventRegistry::new());
        scheduler.subscribe("orders..eu", handler_fn(|_d: Delivery| async { Ok::<_, HandlerError>(()) }));
        let err = scheduler.start().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{err}");
        assert_eq!(reader.reads.load(Ordering::SeqCst), 0, "nothing was subscribed");
    }

    #[tokio::test]
    async fn a_subscription_that_ends_without_a_stop_is_restarted() {
        let reader = Arc::new(EndsOnce { reads: AtomicUsize::new(0), second: tokio::sync::Notify::new() });
        let mut scheduler = SubscriberScheduler::new(Arc::clone(&reader) as Arc<dyn Reader>, EventRegistry::new());
        scheduler.subscribe("t", handler_fn(|_d: Delivery| async { Ok::<_, HandlerError>(()) }));
        scheduler.start().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), reader.second.notified())
            .await
            .expect("the ended subscription is started again");
        let report = scheduler.shutdown(Duration::from_secs(1)).await;
        assert_eq!(reader.reads.load(Ordering::SeqCst), 2);
        assert_eq!(report.tasks[0].restarts, 1, "the end counts as a restart: {report:?}");
        assert!(report.is_clean(), "{report:?}");
    }
}
