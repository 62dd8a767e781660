//! The read side: a polling fetch loop over the assigned partitions, commits that never
//! pass an unprocessed record, and three ways to own partitions.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tidewater_core::{
    Delivery, Error, ErrorKind, Incoming, PartitionCommits, Position, ReadTask, Reader, ReadySignal, Result,
    Settlement, Settler, SharedSettle, Source, StartFrom, Ticket, TopicName, MOST_A_FETCH,
};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::client::{BrokerGeneration, Client};
use crate::counters::Counters;
use crate::errors::broker_code;
use crate::group::{Membership, Standing};
use crate::protocol::{ErrorCode, FetchRequest, Isolation, Record, Request, Response};
use crate::record;
use crate::transaction::StreamBusOrigin;
use crate::DRIVER;

/// Which partitions a reader takes on a v1.0.x broker, which has no consumer groups.
/// Put it in a read task's options. Without it, a reader takes every partition.
///
/// ```
/// use tidewater_core::ReadTask;
/// use tidewater_streambus::StaticPartitions;
///
/// let mut task = ReadTask::new("orders").with_group("billing");
/// task.options.insert(StaticPartitions(vec![0, 1]));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticPartitions(pub Vec<u32>);

/// Reads a topic of one StreamBus broker.
///
/// - **Partitions**: on a later broker a task with a group is a member of the
///   consumer group `<group>.<topic>` (see [`GroupScope`](crate::GroupScope)), with
///   range assignment computed by the leader, heartbeats and rebalances. On a v1.0.x
///   broker, which has no group requests, a task takes the partitions its
///   [`StaticPartitions`] option names (all by default) and keeps the group's
///   positions in the configured [`OffsetStore`](crate::OffsetStore): several
///   processes share a v1.0.x topic only by naming disjoint partitions. A task without
///   a group reads every partition and commits nothing.
/// - **Fetching**: brokers answer at once, also with nothing, so the reader polls each
///   partition in turn and, when none had records, pauses from 1 ms doubling up to
///   `fetch_idle_max`. The first position comes from the group's commit, else from
///   GetOffset (start or end, by [`StartFrom`]), never from a bare −1. The next
///   position is the broker's `next_offset` where it sends one (it steps over
///   transaction markers), else the last offset + 1.
/// - **Commits** are of the lowest offset not yet processed per partition, every
///   `commit_interval`, before a rebalance gives partitions away, and at stop. A record
///   of a partition that was taken away is released unhandled; a handler finishing
///   after that fails its settlement and commits nothing.
/// - **Nack** rewinds the partition to the record after the nack delay: it and the
///   records after it come again, in order; the reader counts attempts.
#[derive(Clone)]
pub struct StreamBusReader {
    client: Arc<Client>,
}

impl std::fmt::Debug for StreamBusReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamBusReader").field("broker", &self.client.config.broker).finish_non_exhaustive()
    }
}

impl StreamBusReader {
    pub(crate) fn new(client: Arc<Client>) -> Self {
        Self { client }
    }
}

enum Owner {
    /// No group: every partition, nothing committed.
    Private,
    /// v1.0.x: fixed partitions, positions in the offset store.
    Static { group_id: String },
    /// Later: a consumer-group member.
    Member(Membership),
}

struct Part {
    position: i64,
    commits: PartitionCommits,
    committed: u64,
    resume_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    /// Bumped whenever the assignment changes, so settle handles of an earlier
    /// assignment can tell.
    epoch: u64,
    parts: BTreeMap<u32, Part>,
    /// Attempts of records that were nacked, by partition and offset.
    attempts: HashMap<(u32, u64), u32>,
}

/// Why a settlement changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stale {
    /// The record's partition was assigned away since its dispatch.
    Revoked,
    /// A nack of an earlier record rewound the partition past it.
    Rewound,
}

impl State {
    /// Settles the dispatch `ticket` of `partition`, made in assignment `epoch`: an ack
    /// counts it processed, a nack rewinds the partition to it and counts the attempt.
    /// A dispatch that is no longer current changes nothing, its attempt count
    /// included: a stale ack that forgot it would restart the count of a record nacked
    /// before and still to come again, past a limit on its deliveries.
    fn settle(
        &mut self,
        epoch: u64,
        partition: u32,
        ticket: Ticket,
        attempt: u32,
        settlement: Settlement,
    ) -> std::result::Result<(), Stale> {
        let State { epoch: current, parts, attempts } = self;
        let Some(part) = parts.get_mut(&partition).filter(|_| *current == epoch) else {
            return Err(Stale::Revoked);
        };
        match settlement {
            Settlement::Ack => {
                if !part.commits.mark_processed(ticket) {
                    return Err(Stale::Rewound);
                }
                attempts.remove(&(partition, ticket.offset));
            }
            Settlement::Nack { delay } => {
                if !part.commits.is_current(ticket) {
                    return Err(Stale::Rewound);
                }
                part.commits.rewind(ticket.offset);
                part.position = ticket.offset as i64;
                part.resume_at = delay.map(|d| Instant::now() + d);
                attempts.insert((partition, ticket.offset), attempt + 1);
            }
        }
        Ok(())
    }
}

/// Key and value bytes a fetch asks for: 8 KiB a prefetched record, as the Kafka driver
/// holds librdkafka's queue, up to `fetch_max_bytes`. The reader keeps one fetch until
/// its runner has taken it all, so this is what it holds ahead of its handlers; a fetch
/// of the configured 1 MiB held about a thousand 1 KiB records whatever the prefetch. The
/// broker answers with at least one record whatever the size.
fn fetch_bytes(prefetch: usize, fetch_max_bytes: u32) -> u32 {
    let wanted = prefetch.max(1).saturating_mul(ReadTask::BYTES_A_PREFETCHED_MESSAGE);
    u32::try_from(wanted).unwrap_or(u32::MAX).min(fetch_max_bytes).max(1)
}

struct Shared {
    client: Arc<Client>,
    topic: TopicName,
    start: StartFrom,
    /// Key and value bytes a fetch asks for; see [`fetch_bytes`].
    fetch_bytes: u32,
    group: Option<Arc<str>>,
    /// What deliveries of a group member carry, so a transaction can commit their
    /// positions (later brokers only).
    origin: Option<Arc<StreamBusOrigin>>,
    state: Mutex<State>,
    wake: Notify,
}

impl Shared {
    /// Resolves where each partition starts and makes it the assignment.
    async fn assign(&self, partitions: &[u32], committed: &HashMap<u32, u64>) -> Result<()> {
        let mut parts = BTreeMap::new();
        for &p in partitions {
            let position = match committed.get(&p) {
                Some(&o) => o as i64,
                None => {
                    let (start, end) = self.client.offsets(&self.topic, p).await?;
                    match self.start {
                        StartFrom::Earliest => start,
                        StartFrom::Latest => end,
                    }
                }
            };
            // A position resolved from the log (no commit yet) counts as committable, so
            // a later owner of the partition starts where this one did.
            let committed_before = committed.get(&p).copied().unwrap_or(u64::MAX);
            parts.insert(
                p,
                Part {
                    position,
                    commits: PartitionCommits::new(position as u64),
                    committed: committed_before,
                    resume_at: None,
                },
            );
        }
        let mut state = self.state.lock().unwrap();
        state.epoch += 1;
        state.parts = parts;
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// Gives every partition up: what was fetched but not handled is released, and late
    /// handlers commit nothing.
    fn revoke(&self) {
        let mut state = self.state.lock().unwrap();
        state.epoch += 1;
        state.parts.clear();
    }

    /// Positions processed since the last commit.
    fn to_commit(&self) -> Vec<(u32, u64)> {
        let state = self.state.lock().unwrap();
        state
            .parts
            .iter()
            .filter(|(_, p)| p.commits.committable() != p.committed)
            .map(|(id, p)| (*id, p.commits.committable()))
            .collect()
    }

    fn committed(&self, positions: &[(u32, u64)]) {
        let mut state = self.state.lock().unwrap();
        for (p, o) in positions {
            if let Some(part) = state.parts.get_mut(p) {
                part.committed = *o;
            }
        }
    }
}

#[async_trait]
impl Reader for StreamBusReader {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    /// Whether the driver's last exchanges with its brokers went through: a reader
    /// fetches at least every [`fetch_idle_max`](crate::StreamBusConfig::fetch_idle_max)
    /// and retries a failed fetch without failing, so this is what tells readiness of
    /// a broker that is gone.
    fn connected(&self) -> Option<bool> {
        self.client.connected()
    }

    async fn open(&self, task: &ReadTask, _ready: &ReadySignal) -> Result<Box<dyn Source>> {
        record::check_topic(&task.topic)?;
        let client = Arc::clone(&self.client);
        let count = client.partitions(&task.topic, true).await.map_err(|e| e.with_topic(&task.topic))?;
        let shared = Arc::new(Shared {
            client: Arc::clone(&client),
            topic: TopicName::from(&task.topic),
            start: task.start,
            fetch_bytes: fetch_bytes(task.prefetch, client.config.fetch_max_bytes),
            group: task.group.as_deref().map(Arc::from),
            origin: match (&task.group, client.generation) {
                (Some(group), BrokerGeneration::Later) => {
                    Some(Arc::new(StreamBusOrigin { group_id: client.config.group_id(group, &task.topic) }))
                }
                _ => None,
            },
            state: Mutex::default(),
            wake: Notify::new(),
        });
        let all: Vec<u32> = (0..count).collect();
        let mut owner = match (&task.group, client.generation) {
            (None, _) => Owner::Private,
            (Some(group), BrokerGeneration::V1) => {
                Owner::Static { group_id: client.config.group_id(group, &task.topic) }
            }
            (Some(group), BrokerGeneration::Later) => Owner::Member(Membership::new(
                Arc::clone(&client),
                client.config.group_id(group, &task.topic),
                task.topic.clone(),
            )),
        };
        match &mut owner {
            Owner::Private => shared.assign(&all, &HashMap::new()).await?,
            Owner::Static { group_id } => {
                let partitions = match task.options.get::<StaticPartitions>() {
                    Some(StaticPartitions(p)) => {
                        if let Some(bad) = p.iter().find(|p| **p >= count) {
                            return Err(Error::new(
                                ErrorKind::Config,
                                format!("partition {bad} of {:?} does not exist; it has {count}", task.topic),
                            )
                            .with_driver(DRIVER)
                            .with_topic(&task.topic));
                        }
                        p.clone()
                    }
                    None => all,
                };
                let mut committed = HashMap::new();
                for &p in &partitions {
                    if let Some(o) = client.config.offset_store.load(group_id, &task.topic, p).await? {
                        committed.insert(p, o);
                    }
                }
                shared.assign(&partitions, &committed).await?;
            }
            Owner::Member(member) => {
                let partitions = member.join().await?;
                let committed = member.committed(&partitions).await?;
                shared.assign(&partitions, &committed).await?;
            }
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let background = tokio::spawn(keep_up(Arc::clone(&shared), owner, stop_rx));
        Ok(Box::new(StreamBusSource {
            shared,
            pending: None,
            dispatches: Vec::new(),
            next_partition: 0,
            idle: Duration::ZERO,
            background: Some((stop_tx, background)),
        }))
    }
}

/// The reader's background work: heartbeats and rebalances (group members) and
/// periodic commits; at stop, the last commit and, for members, LeaveGroup.
async fn keep_up(shared: Arc<Shared>, mut owner: Owner, mut stop: watch::Receiver<bool>) -> Result<()> {
    let config = Arc::clone(&shared.client.config);
    let tick = match owner {
        Owner::Member(_) => config.heartbeat_interval.min(config.commit_interval),
        _ => config.commit_interval,
    };
    let mut next_commit = Instant::now() + config.commit_interval;
    let mut next_heartbeat = Instant::now() + config.heartbeat_interval;
    loop {
        let stopped = tokio::select! {
            _ = tokio::time::sleep(tick) => false,
            _ = stop.changed() => true,
        };
        let now = Instant::now();
        if stopped || now >= next_commit {
            next_commit = now + config.commit_interval;
            let standing = commit(&shared, &mut owner).await;
            if stopped {
                if let Owner::Member(member) = &owner {
                    member.leave().await;
                }
                return standing.map(|_| ());
            }
            match standing {
                Ok(Standing::Rejoin) => rebalance(&shared, &mut owner).await?,
                Ok(Standing::Member) => {}
                Err(e) => {
                    tracing::warn!(topic = %shared.topic, error = %e, "commit failed; retrying at the next interval")
                }
            }
        }
        if let Owner::Member(member) = &mut owner {
            if now >= next_heartbeat {
                next_heartbeat = now + config.heartbeat_interval;
                match member.heartbeat().await {
                    Ok(Standing::Member) => {}
                    Ok(Standing::Rejoin) => rebalance(&shared, &mut owner).await?,
                    Err(e) => tracing::warn!(topic = %shared.topic, error = %e, "heartbeat failed"),
                }
            }
        }
    }
}

async fn commit(shared: &Shared, owner: &mut Owner) -> Result<Standing> {
    let positions = shared.to_commit();
    if positions.is_empty() {
        return Ok(Standing::Member);
    }
    let standing = match owner {
        Owner::Private => Standing::Member,
        Owner::Static { group_id } => {
            shared.client.config.offset_store.commit(group_id, &shared.topic, &positions).await?;
            Standing::Member
        }
        Owner::Member(member) => member.commit(&positions).await?,
    };
    if standing == Standing::Member {
        shared.committed(&positions);
    }
    Ok(standing)
}

async fn rebalance(shared: &Shared, owner: &mut Owner) -> Result<()> {
    let Owner::Member(member) = owner else { return Ok(()) };
    // What finished is committed before the partitions go; the broker takes commits
    // from the current generation during a rebalance.
    let positions = shared.to_commit();
    if !positions.is_empty() {
        if let Err(e) = member.commit(&positions).await {
            tracing::debug!(error = %e, "commit before rebalance failed; the new owner reads those records again");
        }
    }
    shared.revoke();
    let mut pause = Duration::from_millis(100);
    loop {
        let joined = async {
            let partitions = member.join().await?;
            let committed = member.committed(&partitions).await?;
            shared.assign(&partitions, &committed).await
        };
        match joined.await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() => {
                tracing::warn!(group = %member.group_id, error = %e, "rejoining the group failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The records of a fetch not yet handed out, and where the fetch left their partition.
struct Pending {
    epoch: u64,
    partition: u32,
    /// The partition's position after the fetch. A nack or a reset moves it back and a
    /// reassignment bumps the epoch; either makes the rest of the fetch stale.
    next: i64,
    records: std::vec::IntoIter<Record>,
}

struct StreamBusSource {
    shared: Arc<Shared>,
    /// The fetch being handed out: its deliveries are made as they are handed out, not
    /// as the fetch arrives, so none is made that a nack meanwhile made stale.
    pending: Option<Pending>,
    /// Scratch for [`StreamBusSource::hand_out`]: each record's ticket serial and attempt.
    dispatches: Vec<(u64, u32)>,
    next_partition: usize,
    idle: Duration,
    background: Option<(watch::Sender<bool>, tokio::task::JoinHandle<Result<()>>)>,
}

impl StreamBusSource {
    /// Partitions to fetch now with their positions, in turn, and when the next paused
    /// one resumes.
    fn plan(&mut self) -> (u64, Vec<(u32, i64)>, Option<Instant>) {
        let state = self.shared.state.lock().unwrap();
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut resume = None;
        for (id, part) in &state.parts {
            match part.resume_at {
                Some(at) if at > now => resume = Some(resume.map_or(at, |r: Instant| r.min(at))),
                _ => ready.push((*id, part.position)),
            }
        }
        if !ready.is_empty() {
            let turn = self.next_partition % ready.len();
            ready.rotate_left(turn);
            self.next_partition = self.next_partition.wrapping_add(1);
        }
        (state.epoch, ready, resume)
    }

    async fn fetch(&mut self, epoch: u64, partition: u32, position: i64) -> Result<usize> {
        let client = &self.shared.client;
        let later = client.generation == BrokerGeneration::Later;
        let request = Request::Fetch(FetchRequest {
            topic: self.shared.topic.to_string(),
            partition,
            offset: position,
            max_bytes: self.shared.fetch_bytes,
            isolation: later.then_some(if client.config.read_committed {
                Isolation::ReadCommitted
            } else {
                Isolation::ReadUncommitted
            }),
        });
        let response = match client.call(request).await {
            Ok(Response::Fetch(r)) => r,
            Ok(_) => unreachable!("a fetch is answered with a fetch response"),
            Err(e) if broker_code(&e) == Some(ErrorCode::OFFSET_OUT_OF_RANGE) => {
                // The log was cut or recreated under us.
                self.reset(partition, position).await?;
                return Ok(0);
            }
            Err(e) => return Err(e.with_topic(self.shared.topic.clone())),
        };
        Counters::add(&client.counters.fetches, 1);
        Counters::add(&client.counters.fetched, response.records.len() as u64);
        if response.records.is_empty() && position > response.high_water_mark {
            // A v1.0.x broker answers a fetch past the log's end with an empty list, not
            // OFFSET_OUT_OF_RANGE: the same fault, found by comparing with the end. (A
            // stored position from before the topic was recreated, or from another
            // broker.) Left alone, the reader would wait there for good.
            self.reset(partition, position).await?;
            return Ok(0);
        }
        let next = response.next_position(position);
        let mut state = self.shared.state.lock().unwrap();
        let State { epoch: now_epoch, parts, .. } = &mut *state;
        let Some(part) = parts.get_mut(&partition) else { return Ok(0) };
        if *now_epoch != epoch || part.position != position {
            // Rewound or reassigned while the fetch was out: its records are stale.
            return Ok(0);
        }
        part.position = next;
        drop(state);
        let count = response.records.len();
        let mut records = response.records;
        records.retain(|r| r.offset >= position);
        if !records.is_empty() {
            self.pending = Some(Pending { epoch, partition, next, records: records.into_iter() });
        }
        Ok(count)
    }

    /// Hands out up to `max` records of the pending fetch as deliveries, dispatched now:
    /// none if a nack or a reassignment since the fetch made them stale, in which case
    /// the fetch is dropped and its partition read again from where it was moved to.
    fn hand_out(&mut self, batch: &mut Vec<Incoming>, max: usize) -> usize {
        let Some(pending) = &mut self.pending else { return 0 };
        let n = max.clamp(1, MOST_A_FETCH).min(pending.records.len());
        {
            // Tickets are taken in offset order and only while the partition is where the
            // fetch left it; the deliveries are made after, outside the lock the handlers
            // settle under.
            let mut state = self.shared.state.lock().unwrap();
            let State { epoch, parts, attempts } = &mut *state;
            let part = parts
                .get_mut(&pending.partition)
                .filter(|part| *epoch == pending.epoch && part.position == pending.next);
            let Some(part) = part else {
                self.pending = None;
                return 0;
            };
            self.dispatches.clear();
            for record in &pending.records.as_slice()[..n] {
                let offset = record.offset as u64;
                let ticket = part.commits.dispatched(offset);
                let attempt = attempts.get(&(pending.partition, offset)).copied().unwrap_or(1);
                self.dispatches.push((ticket.serial(), attempt));
            }
        }
        let (epoch, partition) = (pending.epoch, pending.partition);
        for (rec, &(serial, attempt)) in pending.records.by_ref().take(n).zip(&self.dispatches) {
            let offset = rec.offset as u64;
            let message = record::from_record(&self.shared.topic, partition, rec);
            let (position, group) = (Position::Log { partition, offset }, self.shared.group.clone());
            let mut delivery = Delivery::new(message, attempt, position, group);
            let origin = self.shared.origin.as_ref().map(|o| Arc::clone(o) as Arc<dyn std::any::Any + Send + Sync>);
            // Always true: the delivery was made just now.
            let set = delivery.set_dispatch(attempt, origin, [epoch, serial, 0]);
            debug_assert!(set);
            batch.push(Incoming { delivery, settle: Settler::Shared(Arc::clone(&self.shared) as _) });
        }
        if pending.records.len() == 0 {
            self.pending = None;
        }
        n
    }
}

impl StreamBusSource {
    /// Moves `partition` from `position`, which lies outside its log, to where the
    /// task's [`StartFrom`] says (its start or its end), as a new group would start,
    /// and says so.
    async fn reset(&mut self, partition: u32, position: i64) -> Result<()> {
        let (start, end) = self.shared.client.offsets(&self.shared.topic, partition).await?;
        let to = match self.shared.start {
            StartFrom::Earliest => start,
            StartFrom::Latest => end,
        };
        let mut state = self.shared.state.lock().unwrap();
        if let Some(part) = state.parts.get_mut(&partition).filter(|p| p.position == position) {
            tracing::warn!(
                topic = %self.shared.topic, partition, position, start, end, to, start_from = ?self.shared.start,
                "the read position lies outside the partition's log; moving to where the task starts from"
            );
            part.position = to;
            part.commits.rewind(to as u64);
        }
        Ok(())
    }
}

#[async_trait]
impl Source for StreamBusSource {
    async fn next_batch(&mut self, batch: &mut Vec<Incoming>, max: usize) -> Result<usize> {
        loop {
            if self.pending.is_some() {
                match self.hand_out(batch, max) {
                    0 => {}
                    n => return Ok(n),
                }
            }
            if let Some((_, task)) = &self.background {
                if task.is_finished() {
                    let (_, task) = self.background.take().expect("present");
                    return match task.await {
                        Ok(Err(e)) => Err(e),
                        _ => Err(Error::new(ErrorKind::Connection, "the group membership ended").with_driver(DRIVER)),
                    };
                }
            }
            let (epoch, ready, resume) = self.plan();
            let mut fetched = 0;
            for (partition, position) in ready {
                match self.fetch(epoch, partition, position).await {
                    Ok(n) => fetched += n,
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(topic = %self.shared.topic, partition, error = %e, "fetch failed; trying again");
                        self.idle = self.shared.client.config.fetch_idle_max;
                    }
                    Err(e) => return Err(e),
                }
                if self.pending.is_some() {
                    break;
                }
            }
            if fetched > 0 {
                self.idle = Duration::ZERO;
                continue;
            }
            let max_idle = self.shared.client.config.fetch_idle_max;
            self.idle = (self.idle * 2).clamp(Duration::from_millis(1), max_idle);
            let mut until = Instant::now() + self.idle;
            if let Some(at) = resume {
                until = until.min(at);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = self.shared.wake.notified() => self.idle = Duration::ZERO,
            }
        }
    }

    async fn close(&mut self) -> Result<()> {
        self.pending = None;
        if let Some((stop, task)) = self.background.take() {
            let _ = stop.send(true);
            match task.await {
                Ok(result) => result?,
                Err(e) => {
                    return Err(Error::new(ErrorKind::Closed, "the reader's background task failed")
                        .with_driver(DRIVER)
                        .with_source(e))
                }
            }
        }
        Ok(())
    }
}

/// One dispatch of a record, as its delivery tells it: its position, its delivery count,
/// and the note the reader put on it (the assignment's epoch and the ticket's serial).
/// Kept on the delivery rather than in a settle handle of each record, which was an
/// allocation a record and, settled by an `async fn`, a boxed future too.
struct Dispatch {
    epoch: u64,
    partition: u32,
    ticket: Ticket,
    attempt: u32,
}

impl Dispatch {
    fn of(delivery: &Delivery) -> Result<Self> {
        let Position::Log { partition, offset } = delivery.position() else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("delivery of message {} has no StreamBus record's position to settle", delivery.message().id),
            )
            .with_driver(DRIVER));
        };
        let [epoch, serial, _] = delivery.note();
        Ok(Self { epoch, partition, ticket: Ticket::from_parts(offset, serial), attempt: delivery.deliveries() })
    }
}

impl Shared {
    fn settle_record(&self, delivery: &Delivery, settlement: Settlement) -> Result<()> {
        let dispatch = Dispatch::of(delivery)?;
        let mut state = self.state.lock().unwrap();
        let stale = |why: &str| {
            Err(Error::new(
                ErrorKind::BrokerTransient,
                format!("offset {} of partition {} was not settled: {why}", dispatch.ticket.offset, dispatch.partition),
            )
            .with_driver(DRIVER)
            .with_topic(self.topic.clone()))
        };
        match state.settle(dispatch.epoch, dispatch.partition, dispatch.ticket, dispatch.attempt, settlement) {
            Ok(()) => {
                if let Settlement::Nack { .. } = settlement {
                    drop(state);
                    self.wake.notify_one();
                }
                Ok(())
            }
            Err(Stale::Revoked) => stale("the partition was taken away; its new owner reads it again"),
            Err(Stale::Rewound) => {
                stale("a nack of an earlier record rewound the partition; it will be delivered again")
            }
        }
    }
}

/// The reader's shared state settles each of its records, at once: bookkeeping under its
/// lock.
#[async_trait]
impl SharedSettle for Shared {
    async fn settle(&self, delivery: &Delivery, settlement: Settlement) -> Result<()> {
        self.settle_record(delivery, settlement)
    }

    fn settle_now(&self, delivery: &Delivery, settlement: Settlement) -> Option<Result<()>> {
        Some(self.settle_record(delivery, settlement))
    }

    fn is_current(&self, delivery: &Delivery) -> bool {
        let Ok(dispatch) = Dispatch::of(delivery) else { return false };
        let state = self.state.lock().unwrap();
        state.epoch == dispatch.epoch
            && state.parts.get(&dispatch.partition).is_some_and(|p| p.commits.is_current(dispatch.ticket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(offset: u64) -> State {
        let part = Part {
            position: offset as i64,
            commits: PartitionCommits::new(offset),
            committed: offset,
            resume_at: None,
        };
        State { epoch: 1, parts: BTreeMap::from([(0, part)]), attempts: HashMap::new() }
    }

    #[test]
    fn a_fetch_asks_for_8_kib_a_prefetched_record_up_to_the_configured_most() {
        const MOST: u32 = 1024 * 1024;
        assert_eq!(fetch_bytes(4, MOST), 32 * 1024);
        assert_eq!(fetch_bytes(0, MOST), 8 * 1024, "a prefetch of 0 counts as 1");
        assert_eq!(fetch_bytes(256, MOST), MOST, "the default prefetch asks for the configured most");
        assert_eq!(fetch_bytes(usize::MAX, MOST), MOST);
        assert_eq!(fetch_bytes(4, 0), 1, "a fetch asks for at least a byte: the broker returns nothing for 0");
    }

    #[test]
    fn a_stale_settlement_is_an_error_and_keeps_the_attempt_count() {
        let mut state = state(5);
        let commits = &mut state.parts.get_mut(&0).unwrap().commits;
        let (five, six) = (commits.dispatched(5), commits.dispatched(6));
        // 6 failed before: its next delivery is its second.
        state.attempts.insert((0, 6), 2);
        // A nack of 5 rewinds the partition to it, so 6's dispatch is stale.
        assert_eq!(state.settle(1, 0, five, 1, Settlement::Nack { delay: None }), Ok(()));
        assert_eq!(state.attempts.get(&(0, 5)), Some(&2));
        assert_eq!(state.settle(1, 0, six, 2, Settlement::Ack), Err(Stale::Rewound));
        assert_eq!(state.attempts.get(&(0, 6)), Some(&2), "a stale ack forgets no attempt");
        assert_eq!(state.settle(1, 0, six, 2, Settlement::Nack { delay: None }), Err(Stale::Rewound));
        assert_eq!(state.parts[&0].position, 5, "a stale nack moves nothing");
        // Dispatched again, 5 is acked and forgets its count; 6 then is current again.
        let commits = &mut state.parts.get_mut(&0).unwrap().commits;
        let (five, six) = (commits.dispatched(5), commits.dispatched(6));
        assert_eq!(state.settle(1, 0, five, 2, Settlement::Ack), Ok(()));
        assert_eq!(state.attempts.get(&(0, 5)), None);
        assert_eq!(state.settle(1, 0, six, 2, Settlement::Ack), Ok(()));
        assert_eq!(state.parts[&0].commits.committable(), 7);
        // A settlement from an earlier assignment.
        let seven = state.parts.get_mut(&0).unwrap().commits.dispatched(7);
        assert_eq!(state.settle(0, 0, seven, 1, Settlement::Ack), Err(Stale::Revoked));
    }
}
