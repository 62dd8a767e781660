//! Consumer-group membership on a later broker: join and sync with client-side range
//! assignment, heartbeats, offset commit and fetch, leave.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tidewater_core::Result;

use crate::client::Client;
use crate::errors::broker_error;
use crate::pool::Pool;
use crate::protocol::*;

const PROTOCOL: &str = "range";

/// One member's place in a group.
pub(crate) struct Membership {
    client: Arc<Client>,
    pub(crate) group_id: String,
    topic: String,
    member_id: String,
    pub(crate) generation: i32,
}

/// What a heartbeat or commit says about the membership.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Still a member of the current generation.
    Member,
    /// A rebalance started, or this member fell out: rejoin.
    Rejoin,
}

fn standing(code: ErrorCode) -> Option<Standing> {
    match code {
        ErrorCode::NONE => Some(Standing::Member),
        ErrorCode::REBALANCE_IN_PROGRESS
        | ErrorCode::ILLEGAL_GENERATION
        | ErrorCode::INVALID_GENERATION_ID
        | ErrorCode::UNKNOWN_MEMBER_ID => Some(Standing::Rejoin),
        _ => None,
    }
}

impl Membership {
    pub(crate) fn new(client: Arc<Client>, group_id: String, topic: String) -> Self {
        Self { client, group_id, topic, member_id: String::new(), generation: -1 }
    }

    async fn pool(&self) -> Result<Arc<Pool>> {
        self.client.coordinator(CoordinatorKind::Group, &self.group_id).await
    }

    async fn call(&self, request: Request) -> Result<Response> {
        let pool = self.pool().await?;
        let result = self.client.call_on(&pool, request).await;
        if let Err(e) = &result {
            if crate::errors::broker_code(e) == Some(ErrorCode::NOT_COORDINATOR) {
                self.client.forget_coordinator(CoordinatorKind::Group, &self.group_id);
            }
        }
        result
    }

    /// Joins (or rejoins) and returns the partitions of the topic assigned to this member.
    pub(crate) async fn join(&mut self) -> Result<Vec<u32>> {
        let config = Arc::clone(&self.client.config);
        let mut pause = Duration::from_millis(50);
        loop {
            let subscription = Subscription { version: 1, topics: vec![self.topic.clone()], user_data: None };
            let request = Request::JoinGroup(JoinGroupRequest {
                group_id: self.group_id.clone(),
                member_id: self.member_id.clone(),
                client_id: config.client_id.clone(),
                protocol_type: "consumer".into(),
                session_timeout_ms: config.session_timeout.as_millis() as i32,
                rebalance_timeout_ms: config.rebalance_timeout.as_millis() as i32,
                protocols: vec![NamedBlob { name: PROTOCOL.into(), data: Some(subscription.to_bytes()) }],
            });
            let Response::JoinGroup(joined) = self.call(request).await? else { unreachable!() };
            match joined.error {
                ErrorCode::NONE => {}
                ErrorCode::UNKNOWN_MEMBER_ID => {
                    self.member_id.clear();
                    continue;
                }
                code if code.is_retryable() => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
                code => return Err(broker_error("JoinGroup failed", code, String::new()).with_topic(&self.topic)),
            }
            self.member_id = joined.member_id.clone();
            self.generation = joined.generation_id;
            let assignments =
                if joined.leader_id == joined.member_id { self.assign(&joined.members).await? } else { Vec::new() };
            if let Some(partitions) = self.sync(assignments).await? {
                tracing::debug!(group = %self.group_id, member = %self.member_id, generation = self.generation, ?partitions, "joined");
                return Ok(partitions);
            }
        }
    }

    /// Range assignment: per topic, the members that read it, sorted by id, each get a
    /// contiguous range; the first ones one more when it does not divide evenly.
    async fn assign(&self, members: &[NamedBlob]) -> Result<Vec<NamedBlob>> {
        let mut readers: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for m in members {
            let topics =
                m.data.clone().and_then(|d| Subscription::decode(d).ok()).map(|s| s.topics).unwrap_or_default();
            for t in topics {
                readers.entry(t).or_default().push(&m.name);
            }
        }
        let mut plan: HashMap<&str, Vec<(String, Vec<i32>)>> =
            members.iter().map(|m| (m.name.as_str(), Vec::new())).collect();
        for (topic, mut ids) in readers {
            ids.sort_unstable();
            let count = self.client.partitions(&topic, false).await? as usize;
            let (each, extra) = (count / ids.len(), count % ids.len());
            let mut next = 0;
            for (i, id) in ids.iter().enumerate() {
                let n = each + usize::from(i < extra);
                let parts: Vec<i32> = (next..next + n).map(|p| p as i32).collect();
                next += n;
                plan.get_mut(id).expect("a member").push((topic.clone(), parts));
            }
        }
        Ok(plan
            .into_iter()
            .map(|(id, topics)| NamedBlob {
                name: id.to_owned(),
                data: Some(MemberAssignment { version: 1, topics, user_data: None }.to_bytes()),
            })
            .collect())
    }

    /// Syncs; `None` means a new round started and the member must join again.
    async fn sync(&mut self, assignments: Vec<NamedBlob>) -> Result<Option<Vec<u32>>> {
        let deadline = tokio::time::Instant::now() + self.client.config.rebalance_timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            let request = Request::SyncGroup(SyncGroupRequest {
                group_id: self.group_id.clone(),
                generation_id: self.generation,
                member_id: self.member_id.clone(),
                assignments: assignments.clone(),
            });
            let Response::SyncGroup(synced) = self.call(request).await? else { unreachable!() };
            match synced.error {
                ErrorCode::NONE => {
                    let assignment = match synced.assignment {
                        Some(blob) if !blob.is_empty() => MemberAssignment::decode(blob).map_err(|e| {
                            tidewater_core::Error::new(
                                tidewater_core::ErrorKind::Decode,
                                format!("cannot decode the group assignment: {e}"),
                            )
                            .with_driver(crate::DRIVER)
                        })?,
                        _ => MemberAssignment::default(),
                    };
                    let mine = assignment
                        .topics
                        .into_iter()
                        .filter(|(t, _)| *t == self.topic)
                        .flat_map(|(_, p)| p)
                        .filter_map(|p| u32::try_from(p).ok())
                        .collect();
                    return Ok(Some(mine));
                }
                ErrorCode::REBALANCE_IN_PROGRESS => {
                    // Either the leader has not synced yet (ask again) or a new round
                    // started (rejoin); a heartbeat tells which.
                    if self.heartbeat().await? == Standing::Rejoin || tokio::time::Instant::now() > deadline {
                        return Ok(None);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                ErrorCode::UNKNOWN_MEMBER_ID => {
                    self.member_id.clear();
                    return Ok(None);
                }
                code if standing(code) == Some(Standing::Rejoin) => return Ok(None),
                code => return Err(broker_error("SyncGroup failed", code, String::new()).with_topic(&self.topic)),
            }
        }
    }

    pub(crate) async fn heartbeat(&mut self) -> Result<Standing> {
        let request = Request::Heartbeat(HeartbeatRequest {
            group_id: self.group_id.clone(),
            generation_id: self.generation,
            member_id: self.member_id.clone(),
        });
        let Response::Heartbeat(r) = self.call(request).await? else { unreachable!() };
        if r.error == ErrorCode::UNKNOWN_MEMBER_ID {
            self.member_id.clear();
        }
        standing(r.error).ok_or_else(|| broker_error("Heartbeat failed", r.error, String::new()))
    }

    /// Commits positions (the next offset to read) of this member's partitions.
    pub(crate) async fn commit(&mut self, positions: &[(u32, u64)]) -> Result<Standing> {
        let request = Request::OffsetCommit(OffsetCommitRequest {
            group_id: self.group_id.clone(),
            generation_id: self.generation,
            member_id: self.member_id.clone(),
            topics: vec![CommitTopic::positions(self.topic.clone(), positions)],
        });
        let Response::OffsetCommit(r) = self.call(request).await? else { unreachable!() };
        match r.first_error() {
            None => Ok(Standing::Member),
            Some((_, _, code)) => {
                if code == ErrorCode::UNKNOWN_MEMBER_ID {
                    self.member_id.clear();
                }
                standing(code).ok_or_else(|| broker_error("OffsetCommit failed", code, String::new()))
            }
        }
    }

    /// The group's committed positions of `partitions`; a partition without one is left out.
    pub(crate) async fn committed(&self, partitions: &[u32]) -> Result<HashMap<u32, u64>> {
        let request = Request::OffsetFetch(OffsetFetchRequest {
            group_id: self.group_id.clone(),
            topics: vec![(self.topic.clone(), partitions.iter().map(|p| *p as i32).collect())],
        });
        let Response::OffsetFetch(r) = self.call(request).await? else { unreachable!() };
        let mut out = HashMap::new();
        for (topic, parts) in r.topics {
            if topic != self.topic {
                continue;
            }
            for p in parts {
                if !p.error.is_none() {
                    return Err(broker_error("OffsetFetch failed", p.error, String::new()));
                }
                if p.offset >= 0 && p.partition >= 0 {
                    out.insert(p.partition as u32, p.offset as u64);
                }
            }
        }
        Ok(out)
    }

    /// Leaves the group, so the others rebalance at once instead of after the session
    /// timeout. Errors are only logged: the session runs out anyway.
    pub(crate) async fn leave(&self) {
        if self.member_id.is_empty() {
            return;
        }
        let request = Request::LeaveGroup(LeaveGroupRequest {
            group_id: self.group_id.clone(),
            member_id: self.member_id.clone(),
        });
        if let Err(e) = self.call(request).await {
            tracing::debug!(group = %self.group_id, error = %e, "LeaveGroup failed");
        }
    }
}
