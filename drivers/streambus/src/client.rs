//! Requests with timeouts and retries, the generation probe, and the caches of
//! partition counts and coordinators.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tidewater_core::{Error, ErrorKind, Result};

use crate::connection::CallError;
use crate::counters::Counters;
use crate::errors::{broker_error, connection};
use crate::pool::{Link, Pool};
use crate::protocol::frame::flags;
use crate::protocol::*;
use crate::{CoordinatorAddress, Generation, StreamBusConfig, DRIVER};

/// The protocol generation a broker speaks, as probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerGeneration {
    /// Request types 0x01–0x07 only; headers and timestamps not stored.
    V1,
    /// Groups, offsets, transactions and FindCoordinator.
    Later,
}

pub(crate) struct Client {
    pub(crate) config: Arc<StreamBusConfig>,
    pool: Arc<Pool>,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    coordinators: Mutex<HashMap<(CoordinatorKind, String), String>>,
    partitions: Mutex<HashMap<String, u32>>,
    pub(crate) generation: BrokerGeneration,
    pub(crate) counters: Arc<Counters>,
}

impl Client {
    pub(crate) async fn connect(config: StreamBusConfig) -> Result<Arc<Self>> {
        let config = Arc::new(config);
        let pool = Pool::new(config.broker.clone(), Arc::clone(&config));
        let generation = match config.generation {
            Generation::V1 => BrokerGeneration::V1,
            Generation::Later => BrokerGeneration::Later,
            Generation::Detect => probe(&config).await?,
        };
        let client = Arc::new(Self {
            pools: Mutex::new(HashMap::from([(config.broker.clone(), Arc::clone(&pool))])),
            config,
            pool,
            coordinators: Mutex::default(),
            partitions: Mutex::default(),
            generation,
            counters: Arc::default(),
        });
        let health = client.call(Request::HealthCheck).await?;
        tracing::debug!(broker = %client.config.broker, ?generation, ?health, "connected to StreamBus");
        Ok(client)
    }

    /// Whether this client reaches its brokers, from how its last exchanges went: not
    /// while the last exchange with a broker in use failed to connect, broke its
    /// connection or timed out. A broker counts as in use while its last exchange is
    /// recent (a reader's idle fetches and a member's heartbeats are seconds apart), so
    /// a coordinator given up for another does not keep the client down; with none in
    /// use, the last exchange with any tells. `None` before the first.
    pub(crate) fn connected(&self) -> Option<bool> {
        let in_use = (self.config.request_timeout * 2).max(Duration::from_secs(10));
        let pools = self.pools.lock().unwrap();
        reached(pools.values().map(|pool| pool.link()), in_use)
    }

    /// Sends `request` to the configured broker, retrying as the policy allows.
    pub(crate) async fn call(&self, request: Request) -> Result<Response> {
        self.call_on(&self.pool, request).await
    }

    pub(crate) async fn call_on(&self, pool: &Arc<Pool>, request: Request) -> Result<Response> {
        let kind = request.kind();
        let policy = &self.config.retry;
        let retryable = (kind != RequestType::Produce || self.config.retry_produce) && !policy.deadline.is_zero();
        let started = tokio::time::Instant::now();
        let mut attempt = 0;
        loop {
            match self.call_once(pool, &request).await {
                Ok(response) => return Ok(response),
                Err(err) if retryable && transport_retryable(&err) => {
                    attempt += 1;
                    let wait = policy.delay(attempt);
                    let spent = started.elapsed();
                    if spent + wait > policy.deadline {
                        let text = format!(
                            "gave up on {kind:?} after {} tries over {spent:.1?}, as the next would pass the \
                             retry deadline of {:?}",
                            attempt, policy.deadline
                        );
                        return Err(Error::new(err.kind(), text).with_driver(DRIVER).with_source(err));
                    }
                    tracing::debug!(?kind, attempt, ?wait, error = %err, "retrying a StreamBus request");
                    tokio::time::sleep(wait).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn call_once(&self, pool: &Arc<Pool>, request: &Request) -> Result<Response> {
        let kind = request.kind();
        let mut lease = match kind {
            RequestType::JoinGroup => pool.get_outside_limit().await?,
            _ => pool.get().await?,
        };
        let flags = if kind == RequestType::Produce { flags::REQUIRE_ACK } else { 0 };
        // A JoinGroup is answered when the round completes, up to the rebalance timeout.
        let timeout = match kind {
            RequestType::JoinGroup => self.config.request_timeout.max(self.config.rebalance_timeout * 2),
            _ => self.config.request_timeout,
        };
        match lease.conn.call(request, flags, timeout).await {
            Ok((header, payload)) => {
                lease.release();
                pool.note(Link::Up);
                match Status::from_code(header.status) {
                    Some(Status::Ok) => Response::decode(kind, payload).map_err(|e| {
                        Error::new(ErrorKind::Decode, format!("cannot decode the {kind:?} response: {e}"))
                            .with_driver(DRIVER)
                    }),
                    _ => {
                        let text = decode_error_message(payload).unwrap_or_default();
                        Err(broker_error(&format!("{kind:?} failed"), ErrorCode(header.error_code), text))
                    }
                }
            }
            Err(e) => {
                // The lease is dropped: a connection that failed in any way is closed.
                let what = match (&e, kind.is_legacy(), self.generation) {
                    (CallError::Closed, false, BrokerGeneration::V1) => {
                        return Err(Error::new(
                            ErrorKind::Unsupported,
                            format!("a v1.0.x broker does not serve {kind:?} (it closed the connection)"),
                        )
                        .with_driver(DRIVER))
                    }
                    _ => format!("{kind:?} to {} failed", pool.addr()),
                };
                // A broker that answers garbage is reached all the same.
                if matches!(e, CallError::Io(_) | CallError::Closed | CallError::Timeout(_)) {
                    pool.note(Link::Down);
                }
                let err = if e.is_timeout() {
                    Error::new(ErrorKind::Timeout, what).with_driver(DRIVER).with_source(e)
                } else {
                    connection(what, e)
                };
                Err(err)
            }
        }
    }

    /// The pool of the coordinator for `key`, found with FindCoordinator and cached.
    pub(crate) async fn coordinator(&self, kind: CoordinatorKind, key: &str) -> Result<Arc<Pool>> {
        self.require_later("coordination")?;
        if self.config.coordinator_address == CoordinatorAddress::Bootstrap {
            let addr = self.config.broker.clone();
            let mut pools = self.pools.lock().unwrap();
            let pool = pools.entry(addr.clone()).or_insert_with(|| Pool::new(addr, Arc::clone(&self.config)));
            return Ok(Arc::clone(pool));
        }
        let cached = self.coordinators.lock().unwrap().get(&(kind, key.to_owned())).cloned();
        let addr = match cached {
            Some(addr) => addr,
            None => {
                let request = Request::FindCoordinator(FindCoordinatorRequest { key: key.to_owned(), kind });
                let Response::FindCoordinator(found) = self.call(request).await? else { unreachable!() };
                if !found.error.is_none() {
                    return Err(broker_error("FindCoordinator failed", found.error, String::new()));
                }
                let addr = format!("{}:{}", found.host, found.port);
                self.coordinators.lock().unwrap().insert((kind, key.to_owned()), addr.clone());
                addr
            }
        };
        let mut pools = self.pools.lock().unwrap();
        let pool = pools.entry(addr.clone()).or_insert_with(|| Pool::new(addr, Arc::clone(&self.config)));
        Ok(Arc::clone(pool))
    }

    /// Forgets a coordinator after `NotCoordinator` or a coordinator error.
    pub(crate) fn forget_coordinator(&self, kind: CoordinatorKind, key: &str) {
        self.coordinators.lock().unwrap().remove(&(kind, key.to_owned()));
    }

    pub(crate) fn require_later(&self, what: &str) -> Result<()> {
        match self.generation {
            BrokerGeneration::Later => Ok(()),
            BrokerGeneration::V1 => Err(Error::new(
                ErrorKind::Unsupported,
                format!("{what} needs a later StreamBus broker; this one speaks v1.0.x"),
            )
            .with_driver(DRIVER)),
        }
    }

    /// The partition count of `topic`, from the cache or ListTopics. With `create`, a
    /// missing topic is created as the configuration allows.
    pub(crate) async fn partitions(&self, topic: &str, create: bool) -> Result<u32> {
        if let Some(n) = self.partitions.lock().unwrap().get(topic) {
            return Ok(*n);
        }
        if let Some(n) = self.refresh(topic).await? {
            return Ok(n);
        }
        match (create, self.config.auto_create_partitions) {
            (true, Some(n)) => {
                self.create_topic(topic, n).await?;
                Ok(n)
            }
            _ => Err(Error::new(ErrorKind::UnknownTopic, format!("topic {topic:?} does not exist"))
                .with_driver(DRIVER)
                .with_topic(topic)),
        }
    }

    /// Reads the partition count again (after an error that says it may have changed).
    pub(crate) async fn refresh(&self, topic: &str) -> Result<Option<u32>> {
        let Response::ListTopics(list) = self.call(Request::ListTopics).await? else { unreachable!() };
        let mut cache = self.partitions.lock().unwrap();
        cache.clear();
        cache.extend(list.topics.iter().cloned());
        Ok(cache.get(topic).copied())
    }

    pub(crate) fn forget_topic(&self, topic: &str) {
        self.partitions.lock().unwrap().remove(topic);
    }

    /// Deletes `topic`; one that does not exist (TopicNotFound) is fine.
    pub(crate) async fn delete_topic(&self, topic: &str) -> Result<()> {
        self.forget_topic(topic);
        let request = Request::DeleteTopic(DeleteTopicRequest { topic: topic.to_owned() });
        match self.call(request).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::UnknownTopic => {}
            Err(e) => return Err(e.with_topic(topic)),
        }
        // Positions this driver keeps (v1.0.x brokers keep none) would skip the first
        // records of a topic made again under the name. A later broker keeps a group's
        // offsets itself, and the protocol has no request to drop them.
        self.config.offset_store.forget_topic(topic).await.map_err(|e| e.with_topic(topic))
    }

    /// Every topic with its partition count.
    pub(crate) async fn list_topics(&self) -> Result<Vec<(String, u32)>> {
        let Response::ListTopics(list) = self.call(Request::ListTopics).await? else { unreachable!() };
        Ok(list.topics)
    }

    pub(crate) async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        crate::record::check_topic(topic)?;
        let request =
            Request::CreateTopic(CreateTopicRequest { topic: topic.to_owned(), partitions, replication_factor: 1 });
        self.call(request).await.map_err(|e| e.with_topic(topic))?;
        self.partitions.lock().unwrap().insert(topic.to_owned(), partitions);
        Ok(())
    }

    /// Start and end offsets of a partition.
    pub(crate) async fn offsets(&self, topic: &str, partition: u32) -> Result<(i64, i64)> {
        let request = Request::GetOffset(GetOffsetRequest { topic: topic.to_owned(), partition });
        let Response::GetOffset(r) = self.call(request).await.map_err(|e| e.with_topic(topic))? else { unreachable!() };
        Ok((r.start_offset, r.end_offset))
    }

    pub(crate) fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }
}

/// [`Client::connected`]'s answer from each broker's last outcome and its time: down if
/// one within `in_use` failed, up if one within it went through, else the latest.
fn reached(links: impl Iterator<Item = (Link, Instant)>, in_use: Duration) -> Option<bool> {
    let (mut recently_up, mut latest) = (false, None::<(Link, Instant)>);
    for (link, at) in links {
        match (link, at.elapsed() <= in_use) {
            (Link::Untried, _) => continue,
            (Link::Down, true) => return Some(false),
            (Link::Up, true) => recently_up = true,
            _ => {}
        }
        if latest.is_none_or(|(_, then)| at > then) {
            latest = Some((link, at));
        }
    }
    match latest {
        _ if recently_up => Some(true),
        Some((link, _)) => Some(link == Link::Up),
        None => None,
    }
}

fn transport_retryable(err: &Error) -> bool {
    match crate::errors::broker_code(err) {
        Some(code) => code.is_retryable(),
        None => matches!(err.kind(), ErrorKind::Connection | ErrorKind::Timeout),
    }
}

/// Asks the broker for a coordinator on a connection of its own: a later broker
/// answers, a v1.0.x broker closes the connection.
async fn probe(config: &StreamBusConfig) -> Result<BrokerGeneration> {
    let pool = Pool::new(config.broker.clone(), Arc::new(config.clone()));
    let mut lease = pool.get().await?;
    let request = Request::FindCoordinator(FindCoordinatorRequest {
        key: "tidewater-probe".into(),
        kind: CoordinatorKind::Group,
    });
    let outcome = lease.conn.call(&request, 0, config.request_timeout).await;
    match outcome {
        Ok(_) => {
            lease.release();
            Ok(BrokerGeneration::Later)
        }
        Err(CallError::Closed) => Ok(BrokerGeneration::V1),
        Err(CallError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(BrokerGeneration::V1),
        Err(e) => Err(connection(format!("cannot probe the StreamBus broker at {}", config.broker), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_broker_no_longer_in_use_does_not_keep_the_client_down() {
        let in_use = Duration::from_secs(10);
        let start = Instant::now();
        tokio::time::advance(Duration::from_secs(60)).await;
        let (old, new) = (start, Instant::now());
        assert_eq!(reached([].into_iter(), in_use), None);
        assert_eq!(reached([(Link::Untried, new)].into_iter(), in_use), None);
        assert_eq!(reached([(Link::Up, new), (Link::Down, new)].into_iter(), in_use), Some(false));
        assert_eq!(reached([(Link::Down, old), (Link::Up, new)].into_iter(), in_use), Some(true), "given up");
        // None in use: the latest outcome tells.
        assert_eq!(reached([(Link::Down, old)].into_iter(), in_use), Some(false));
        let later = old + Duration::from_secs(1);
        assert_eq!(reached([(Link::Down, old), (Link::Up, later)].into_iter(), in_use), Some(true));
        assert_eq!(reached([(Link::Up, old), (Link::Down, later)].into_iter(), in_use), Some(false));
    }
}
