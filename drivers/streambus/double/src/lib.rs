//! An in-process StreamBus broker **double**, for tidewater's tests and benchmarks.
//!
//! No StreamBus broker can be built here, so the driver is tested against this double,
//! written from `shared/streambus-protocol.md` (it is not a StreamBus broker and holds
//! everything in memory). It has two profiles:
//!
//! - [`Profile::V1`], the released v1.0.x broker with its quirks: only request types
//!   0x01–0x07; the connection is closed (no response) on any other type, a bad CRC,
//!   an over-size frame or an undecodable payload; topics are auto-created with one
//!   partition on Produce and on Fetch; a fetch at or past the end, or below the start,
//!   is an empty OK; headers and timestamps are dropped on storage (fetched records
//!   carry no headers and Go's zero time); no Produce/Fetch trailers in responses.
//! - [`Profile::Later`]: adds group coordination, offset commit and fetch,
//!   transactions, FindCoordinator, the Produce/Fetch trailers, `OffsetOutOfRange` for
//!   invalid fetch offsets and stored headers and timestamps. Undecodable coordination
//!   payloads get an `InvalidRequest` error response.
//!
//! Both profiles answer strictly in order, one request at a time per connection, and
//! have the idle fault of §1.10: a connection that sends nothing for
//! [`DoubleConfig::idle_fault`] (30 s by default) is never answered again.
//! Where the real v1.0.x broker crashes on a frame whose inner lengths overrun, the
//! double closes the connection instead.
//!
//! [`BrokerDouble::stop`] and [`BrokerDouble::restart`] model a broker restart that
//! keeps its data (records, committed offsets, transactional ids) and loses its
//! in-memory group membership.

#![forbid(unsafe_code)]

mod groups;
mod storage;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tidewater_streambus::protocol::frame::{self, REQUEST_OVERHEAD};
use tidewater_streambus::protocol::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use storage::{Storage, CONTROL_HEADER, GO_ZERO_TIME_NANOS};

/// Which broker generation the double plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// The released v1.0.x broker: request types 0x01–0x07 only, metadata dropped.
    V1,
    /// A later broker: groups, offsets, transactions, FindCoordinator.
    Later,
}

/// How the double behaves.
#[derive(Clone, Debug)]
pub struct DoubleConfig {
    /// The generation.
    pub profile: Profile,
    /// After this long without a request, a connection is never answered again (the
    /// broker's idle fault). `None` turns the fault off.
    pub idle_fault: Option<Duration>,
    /// Whether headers and timestamps are dropped on storage; true for v1.0.x.
    pub drop_metadata: bool,
    /// How long a produce request waits before the double appends it and answers, as a
    /// slow disk would make it. Zero by default.
    pub produce_delay: Duration,
    /// Topics whose produce requests are refused with `AuthorizationFailed` (41), as a
    /// broker with security on refuses a client not allowed to write them. None by
    /// default.
    pub unwritable_topics: Vec<String>,
}

impl DoubleConfig {
    /// The defaults of a profile: the idle fault at 30 s; metadata dropped on V1.
    pub fn new(profile: Profile) -> Self {
        Self {
            profile,
            idle_fault: Some(Duration::from_secs(30)),
            drop_metadata: profile == Profile::V1,
            produce_delay: Duration::ZERO,
            unwritable_topics: Vec::new(),
        }
    }
}

/// What the double has seen, for tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Connections closed by the double because of a bad frame or request.
    pub rejected: AtomicU64,
    /// Connections that went silent because of the idle fault.
    pub idle_hung: AtomicU64,
    /// Produce requests received, counted before `produce_delay` holds them.
    pub produces_received: AtomicU64,
    /// Produce requests answered.
    pub produces: AtomicU64,
    /// Fetch requests answered.
    pub fetches: AtomicU64,
}

struct Shared {
    config: DoubleConfig,
    addr: SocketAddr,
    storage: Arc<Mutex<Storage>>,
    coordinator: Arc<groups::Coordinator>,
    counters: Arc<Counters>,
    started: Instant,
}

/// A running double on 127.0.0.1.
pub struct BrokerDouble {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for BrokerDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerDouble")
            .field("addr", &self.shared.addr)
            .field("profile", &self.shared.config.profile)
            .finish()
    }
}

impl BrokerDouble {
    /// Starts a double of `profile` with its defaults on a free port.
    pub async fn start(profile: Profile) -> Self {
        Self::start_with(DoubleConfig::new(profile)).await
    }

    /// Starts a double as `config` says on a free port.
    pub async fn start_with(config: DoubleConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the double");
        Self::serve(listener, config, Arc::default(), Arc::default())
    }

    /// Starts again on the same address with the same storage, after [`stop`](Self::stop).
    pub async fn restart(addr: SocketAddr, config: DoubleConfig, storage: Arc<Mutex<Storage>>) -> Self {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!("rebinding {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot rebind the double on {addr}: {e}"),
            }
        };
        Self::serve(listener, config, storage, Arc::default())
    }

    fn serve(
        listener: TcpListener,
        config: DoubleConfig,
        storage: Arc<Mutex<Storage>>,
        counters: Arc<Counters>,
    ) -> Self {
        let shared = Arc::new(Shared {
            addr: listener.local_addr().expect("local address"),
            config,
            storage,
            coordinator: Arc::default(),
            counters,
            started: Instant::now(),
        });
        let mut tasks = JoinSet::new();
        let accept = Arc::clone(&shared);
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        accept.counters.connections.fetch_add(1, Ordering::Relaxed);
                        connections.spawn(connection(Arc::clone(&accept), stream));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        let sweeper = Arc::clone(&shared);
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                sweeper.coordinator.sweep();
            }
        });
        Self { shared, tasks }
    }

    /// The address clients dial.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The profile and settings.
    pub fn config(&self) -> &DoubleConfig {
        &self.shared.config
    }

    /// The stored data, kept across a restart.
    pub fn storage(&self) -> Arc<Mutex<Storage>> {
        Arc::clone(&self.shared.storage)
    }

    /// What the double has seen.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The generation and member ids of a group (later profile), for tests.
    pub fn group(&self, group: &str) -> Option<(i32, Vec<String>)> {
        self.shared.coordinator.describe(group)
    }

    /// Stops listening and drops every connection, like a killed broker. Returns what a
    /// restart needs.
    pub async fn stop(mut self) -> (SocketAddr, DoubleConfig, Arc<Mutex<Storage>>) {
        self.tasks.shutdown().await;
        (self.shared.addr, self.shared.config.clone(), Arc::clone(&self.shared.storage))
    }
}

/// Serves one connection: read a frame, answer it, in order. Returns (closing the
/// socket) on EOF, on a frame the broker cannot decode, or never again answers after
/// the idle fault.
async fn connection(shared: Arc<Shared>, mut stream: TcpStream) {
    let mut out = BytesMut::with_capacity(4096);
    loop {
        let mut prefix = [0u8; 4];
        let read = async {
            stream.read_exact(&mut prefix).await?;
            let len = match frame::body_len(prefix, REQUEST_OVERHEAD) {
                Ok(len) => len,
                Err(e) => return Err(std::io::Error::other(e)),
            };
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await?;
            Ok::<_, std::io::Error>(Bytes::from(body))
        };
        let body = match shared.config.idle_fault {
            Some(limit) => match tokio::time::timeout(limit, read).await {
                Ok(r) => r,
                Err(_) => {
                    // The broker's read deadline expired: it spins and never answers
                    // this socket again. Hold it open until the client goes away.
                    shared.counters.idle_hung.fetch_add(1, Ordering::Relaxed);
                    let mut sink = [0u8; 1024];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    return;
                }
            },
            None => read.await,
        };
        let Ok(body) = body else {
            shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Ok((header, payload)) = frame::decode_request(body) else {
            shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(kind) = RequestType::from_code(header.code) else {
            shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if shared.config.profile == Profile::V1 && !kind.is_legacy() {
            shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let request = match Request::decode(header.code, payload) {
            Ok(r) => r,
            Err(e) if !kind.is_legacy() => {
                let _ = encode_error_frame(&mut out, header.id, ErrorCode::INVALID_REQUEST, &e.to_string());
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
                continue;
            }
            Err(_) => {
                shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let answer = handle(&shared, request).await;
        let encoded = match answer {
            Ok(response) => encode_ok_frame(&mut out, header.id, &response),
            Err((code, message)) => encode_error_frame(&mut out, header.id, code, &message),
        };
        if encoded.is_err() {
            // The broker cannot encode a response over 10 MiB and closes the socket.
            shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        shared.counters.requests.fetch_add(1, Ordering::Relaxed);
        if stream.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

fn valid_topic(topic: &str) -> Result<(), (ErrorCode, String)> {
    // The broker uses topic names as directory names; the double refuses what would
    // escape its directory instead of writing there.
    if topic.is_empty() || topic.contains('/') || topic.contains("..") || topic.contains('\0') {
        return Err((ErrorCode::INVALID_REQUEST, format!("invalid topic name {topic:?}")));
    }
    Ok(())
}

/// Answers one request, one arm a request type as the protocol lists them; the longer
/// answers are functions of their own below.
async fn handle(shared: &Shared, request: Request) -> Result<Response, (ErrorCode, String)> {
    let coordinator = &shared.coordinator;
    Ok(match request {
        Request::Produce(r) => produce(shared, r).await?,
        Request::Fetch(r) => fetch(shared, r)?,
        Request::GetOffset(r) => get_offset(shared, r)?,
        Request::CreateTopic(r) => create_topic(shared, r)?,
        Request::DeleteTopic(r) => {
            if shared.storage.lock().unwrap().topics.remove(&r.topic).is_none() {
                return Err((ErrorCode::TOPIC_NOT_FOUND, format!("topic {} does not exist", r.topic)));
            }
            Response::DeleteTopic(TopicResult { topic: r.topic, done: true })
        }
        Request::ListTopics => {
            let storage = shared.storage.lock().unwrap();
            let topics = storage.topics.iter().map(|(t, p)| (t.clone(), p.len() as u32)).collect();
            Response::ListTopics(ListTopicsResponse { topics })
        }
        Request::HealthCheck => Response::HealthCheck(HealthResponse {
            status: "healthy".into(),
            uptime_seconds: shared.started.elapsed().as_secs() as i64,
        }),
        Request::FindCoordinator(_) => Response::FindCoordinator(FindCoordinatorResponse {
            error: ErrorCode::NONE,
            node_id: 0,
            host: shared.addr.ip().to_string(),
            port: shared.addr.port() as i32,
        }),
        Request::JoinGroup(r) => Response::JoinGroup(coordinator.join(r).await),
        Request::SyncGroup(r) => Response::SyncGroup(coordinator.sync(r)),
        Request::Heartbeat(r) => Response::Heartbeat(ErrorResponse { error: coordinator.heartbeat(r) }),
        Request::LeaveGroup(r) => Response::LeaveGroup(ErrorResponse { error: coordinator.leave(r) }),
        Request::OffsetCommit(r) => offset_commit(shared, r)?,
        Request::OffsetFetch(r) => offset_fetch(shared, r)?,
        Request::InitProducerId(r) => {
            let mut storage = shared.storage.lock().unwrap();
            let response = init_producer(&mut storage, r);
            Response::InitProducerId(response)
        }
        Request::AddPartitionsToTxn(r) => add_partitions_to_txn(shared, r)?,
        Request::AddOffsetsToTxn(r) => {
            let storage = shared.storage.lock().unwrap();
            Response::AddOffsetsToTxn(ErrorResponse {
                error: txn_check(&storage, &r.txn.transaction_id, r.txn.producer_id, r.txn.producer_epoch),
            })
        }
        Request::TxnOffsetCommit(r) => txn_offset_commit(shared, r)?,
        Request::EndTxn(r) => {
            let mut storage = shared.storage.lock().unwrap();
            let error = txn_check(&storage, &r.txn.transaction_id, r.txn.producer_id, r.txn.producer_epoch);
            if error.is_none() {
                end_txn(&mut storage, &r.txn.transaction_id, r.commit);
            }
            Response::EndTxn(ErrorResponse { error })
        }
    })
}

async fn produce(shared: &Shared, r: ProduceRequest) -> Result<Response, (ErrorCode, String)> {
    let later = shared.config.profile == Profile::Later;
    valid_topic(&r.topic)?;
    if shared.config.unwritable_topics.contains(&r.topic) {
        return Err((ErrorCode::AUTHORIZATION_FAILED, format!("not authorized to write to topic {}", r.topic)));
    }
    shared.counters.produces_received.fetch_add(1, Ordering::Relaxed);
    if !shared.config.produce_delay.is_zero() {
        tokio::time::sleep(shared.config.produce_delay).await;
    }
    let mut storage = shared.storage.lock().unwrap();
    let producer = match r.producer {
        Some(p) if later && p.id != 0 => {
            let ok = storage
                .txns
                .values()
                .any(|t| t.producer == p && t.partitions.contains(&(r.topic.clone(), r.partition)));
            if !ok {
                return Err((
                    ErrorCode::INVALID_TRANSACTION_STATE,
                    format!("producer {} has no open transaction on {}/{}", p.id, r.topic, r.partition),
                ));
            }
            Some(p.id)
        }
        _ => None,
    };
    let count = r.records.len() as u32;
    let drop = shared.config.drop_metadata;
    let (base, end) = storage.append(&r.topic, r.partition, r.records, producer, drop)?;
    shared.counters.produces.fetch_add(1, Ordering::Relaxed);
    Ok(Response::Produce(ProduceResponse { base_offset: base, count, high_water_mark: end }))
}

fn fetch(shared: &Shared, r: FetchRequest) -> Result<Response, (ErrorCode, String)> {
    let later = shared.config.profile == Profile::Later;
    valid_topic(&r.topic)?;
    let isolation = if later { r.isolation } else { None };
    let mut storage = shared.storage.lock().unwrap();
    let response = storage.fetch(&r.topic, r.partition, r.offset, r.max_bytes, isolation, later)?;
    shared.counters.fetches.fetch_add(1, Ordering::Relaxed);
    Ok(Response::Fetch(response))
}

fn get_offset(shared: &Shared, r: GetOffsetRequest) -> Result<Response, (ErrorCode, String)> {
    let mut storage = shared.storage.lock().unwrap();
    if storage.partitions(&r.topic).is_none() {
        return Err((ErrorCode::TOPIC_NOT_FOUND, format!("topic {} does not exist", r.topic)));
    }
    let end = storage.partition(&r.topic, r.partition)?.end();
    Ok(Response::GetOffset(GetOffsetResponse {
        topic: r.topic,
        partition: r.partition,
        start_offset: 0,
        end_offset: end,
        high_water_mark: end,
    }))
}

fn create_topic(shared: &Shared, r: CreateTopicRequest) -> Result<Response, (ErrorCode, String)> {
    valid_topic(&r.topic)?;
    if r.partitions == 0 {
        return Err((ErrorCode::INVALID_REQUEST, "a topic needs at least one partition".into()));
    }
    shared.storage.lock().unwrap().create(&r.topic, r.partitions)?;
    Ok(Response::CreateTopic(TopicResult { topic: r.topic, done: true }))
}

fn offset_commit(shared: &Shared, r: OffsetCommitRequest) -> Result<Response, (ErrorCode, String)> {
    let coordinator = &shared.coordinator;
    let error = coordinator.may_commit(&r.group_id, r.generation_id, &r.member_id);
    let mut storage = shared.storage.lock().unwrap();
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    if error.is_none() {
                        let key = (r.group_id.clone(), t.topic.clone(), p.partition);
                        storage.offsets.insert(key, (p.offset, p.metadata));
                    }
                    (p.partition, error)
                })
                .collect();
            (t.topic, parts)
        })
        .collect();
    Ok(Response::OffsetCommit(OffsetCommitResponse { topics }))
}

fn offset_fetch(shared: &Shared, r: OffsetFetchRequest) -> Result<Response, (ErrorCode, String)> {
    let storage = shared.storage.lock().unwrap();
    let wanted: Vec<(String, Vec<i32>)> = if r.topics.is_empty() {
        let mut all: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
        for (g, t, p) in storage.offsets.keys() {
            if *g == r.group_id {
                all.entry(t.clone()).or_default().push(*p);
            }
        }
        all.into_iter().collect()
    } else {
        r.topics
    };
    let topics = wanted
        .into_iter()
        .map(|(topic, parts)| {
            let parts = parts
                .into_iter()
                .map(|p| {
                    let (offset, metadata) = storage
                        .offsets
                        .get(&(r.group_id.clone(), topic.clone(), p))
                        .cloned()
                        .unwrap_or((-1, String::new()));
                    FetchedOffset { partition: p, offset, metadata, error: ErrorCode::NONE }
                })
                .collect();
            (topic, parts)
        })
        .collect();
    Ok(Response::OffsetFetch(OffsetFetchResponse { topics }))
}

fn add_partitions_to_txn(shared: &Shared, r: AddPartitionsToTxnRequest) -> Result<Response, (ErrorCode, String)> {
    let mut storage = shared.storage.lock().unwrap();
    let check = txn_check(&storage, &r.txn.transaction_id, r.txn.producer_id, r.txn.producer_epoch);
    let mut results = Vec::new();
    for (topic, partition) in r.partitions {
        let error = match check {
            ErrorCode::NONE if partition < 0 => ErrorCode::INVALID_PARTITION_LIST,
            ErrorCode::NONE => match storage.partition(&topic, partition as u32) {
                Ok(_) => {
                    let txn = storage.txns.get_mut(&r.txn.transaction_id).expect("checked");
                    txn.partitions.insert((topic.clone(), partition as u32));
                    ErrorCode::NONE
                }
                Err((code, _)) => code,
            },
            e => e,
        };
        results.push((topic, partition, error));
    }
    Ok(Response::AddPartitionsToTxn(AddPartitionsToTxnResponse { results }))
}

fn txn_offset_commit(shared: &Shared, r: TxnOffsetCommitRequest) -> Result<Response, (ErrorCode, String)> {
    let mut storage = shared.storage.lock().unwrap();
    let error = txn_check(&storage, &r.transaction_id, r.producer_id, r.producer_epoch);
    let mut topics = Vec::new();
    for t in r.topics {
        let mut parts = Vec::new();
        for p in t.partitions {
            if error.is_none() {
                let txn = storage.txns.get_mut(&r.transaction_id).expect("checked");
                txn.offsets.push((r.group_id.clone(), t.topic.clone(), p.partition, p.offset));
            }
            parts.push((p.partition, error));
        }
        topics.push((t.topic, parts));
    }
    Ok(Response::TxnOffsetCommit(OffsetCommitResponse { topics }))
}

fn init_producer(storage: &mut Storage, r: InitProducerIdRequest) -> InitProducerIdResponse {
    if r.transaction_timeout_ms < 0 {
        return InitProducerIdResponse {
            producer_id: -1,
            producer_epoch: -1,
            error: ErrorCode::INVALID_TRANSACTION_TIMEOUT,
        };
    }
    storage.next_producer_id += 1;
    let fresh = storage.next_producer_id;
    if r.transaction_id.is_empty() {
        return InitProducerIdResponse { producer_id: fresh, producer_epoch: 0, error: ErrorCode::NONE };
    }
    if storage.txns.contains_key(&r.transaction_id) {
        // A new session of the same transactional id fences the old one and aborts
        // whatever it left open.
        end_txn(storage, &r.transaction_id, false);
        let txn = storage.txns.get_mut(&r.transaction_id).expect("present");
        txn.producer.epoch += 1;
        let p = txn.producer;
        return InitProducerIdResponse { producer_id: p.id, producer_epoch: p.epoch, error: ErrorCode::NONE };
    }
    let producer = ProducerIdentity { id: fresh, epoch: 0 };
    storage
        .txns
        .insert(r.transaction_id, storage::Txn { producer, partitions: Default::default(), offsets: Vec::new() });
    InitProducerIdResponse { producer_id: producer.id, producer_epoch: 0, error: ErrorCode::NONE }
}

fn txn_check(storage: &Storage, id: &str, producer_id: i64, epoch: i16) -> ErrorCode {
    match storage.txns.get(id) {
        None => ErrorCode::INVALID_PRODUCER_ID_MAPPING,
        Some(t) if t.producer.id != producer_id => ErrorCode::INVALID_PRODUCER_ID_MAPPING,
        Some(t) if t.producer.epoch > epoch => ErrorCode::PRODUCER_FENCED,
        Some(t) if t.producer.epoch != epoch => ErrorCode::INVALID_PRODUCER_EPOCH,
        Some(_) => ErrorCode::NONE,
    }
}

fn end_txn(storage: &mut Storage, id: &str, commit: bool) {
    let Some(txn) = storage.txns.get_mut(id) else { return };
    let partitions = std::mem::take(&mut txn.partitions);
    let offsets = std::mem::take(&mut txn.offsets);
    let producer = txn.producer;
    for (topic, partition) in partitions {
        storage.end_txn(&topic, partition, producer, commit);
    }
    if commit {
        for (group, topic, partition, offset) in offsets {
            storage.offsets.insert((group, topic, partition), (offset, String::new()));
        }
    }
}
