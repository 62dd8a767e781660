//! The group coordinator of the later profile: join rounds, sync, heartbeats and
//! session expiry, Kafka style (the member that joins first is the leader and
//! computes the assignment on the client side).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tidewater_streambus::protocol::*;
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug)]
struct Member {
    session_timeout: Duration,
    rebalance_timeout: Duration,
    last_seen: Instant,
    protocols: Vec<NamedBlob>,
    joined: bool,
    assignment: Option<Bytes>,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    Empty,
    Joining { deadline: Instant },
    AwaitingSync,
    Stable,
}

#[derive(Debug)]
struct Group {
    generation: i32,
    phase: Phase,
    members: BTreeMap<String, Member>,
    leader: Option<String>,
    protocol: String,
    /// Bumped when a join round completes, to wake the members waiting on it.
    rounds: watch::Sender<i32>,
}

impl Group {
    fn new() -> Self {
        Self {
            generation: 0,
            phase: Phase::Empty,
            members: BTreeMap::new(),
            leader: None,
            protocol: String::new(),
            rounds: watch::channel(0).0,
        }
    }

    fn start_round(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Joining { .. }) {
            let wait = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::from_secs(1));
            self.phase = Phase::Joining { deadline: now + wait };
            for m in self.members.values_mut() {
                m.joined = false;
                m.assignment = None;
            }
        }
    }

    /// Ends the join round: members that did not rejoin are dropped.
    fn complete_round(&mut self) {
        self.members.retain(|_, m| m.joined);
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.leader = None;
            return;
        }
        self.generation += 1;
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        let leader = &self.members[self.leader.as_ref().expect("a leader")];
        self.protocol = leader.protocols.first().map(|p| p.name.clone()).unwrap_or_default();
        self.phase = Phase::AwaitingSync;
        self.rounds.send_replace(self.generation);
    }

    fn all_joined(&self) -> bool {
        self.members.values().all(|m| m.joined)
    }
}

/// Every group of a running double. Cleared by a restart, as a broker's are.
#[derive(Debug, Default)]
pub(crate) struct Coordinator {
    groups: Mutex<BTreeMap<String, Group>>,
    next_member: Mutex<u64>,
}

fn fail(error: ErrorCode) -> JoinGroupResponse {
    JoinGroupResponse {
        error,
        generation_id: -1,
        protocol_name: String::new(),
        member_id: String::new(),
        leader_id: String::new(),
        members: Vec::new(),
    }
}

impl Coordinator {
    pub(crate) async fn join(self: &Arc<Self>, req: JoinGroupRequest) -> JoinGroupResponse {
        if req.session_timeout_ms < 1 || req.rebalance_timeout_ms < 1 {
            return fail(ErrorCode::INVALID_SESSION_TIMEOUT);
        }
        let now = Instant::now();
        let (member_id, mut rounds, deadline) = {
            let mut groups = self.groups.lock().unwrap();
            let group = groups.entry(req.group_id.clone()).or_insert_with(Group::new);
            let member_id = if req.member_id.is_empty() {
                let mut n = self.next_member.lock().unwrap();
                *n += 1;
                format!("{}-{}", req.client_id, *n)
            } else if group.members.contains_key(&req.member_id) {
                req.member_id.clone()
            } else {
                return fail(ErrorCode::UNKNOWN_MEMBER_ID);
            };
            group.start_round(now);
            group.members.insert(
                member_id.clone(),
                Member {
                    session_timeout: Duration::from_millis(req.session_timeout_ms as u64),
                    rebalance_timeout: Duration::from_millis(req.rebalance_timeout_ms as u64),
                    last_seen: now,
                    protocols: req.protocols.clone(),
                    joined: true,
                    assignment: None,
                },
            );
            let rounds = group.rounds.subscribe();
            if group.all_joined() {
                group.complete_round();
            }
            let deadline = match group.phase {
                Phase::Joining { deadline } => Some(deadline),
                _ => None,
            };
            (member_id, rounds, deadline)
        };
        if let Some(deadline) = deadline {
            // The round completes when the others rejoin, or at the deadline without them.
            if tokio::time::timeout_at(deadline, rounds.changed()).await.is_err() {
                let mut groups = self.groups.lock().unwrap();
                if let Some(group) = groups.get_mut(&req.group_id) {
                    if matches!(group.phase, Phase::Joining { .. }) {
                        group.complete_round();
                    }
                }
            }
        }
        let groups = self.groups.lock().unwrap();
        let Some(group) = groups.get(&req.group_id) else { return fail(ErrorCode::UNKNOWN_MEMBER_ID) };
        if !group.members.contains_key(&member_id) || matches!(group.phase, Phase::Joining { .. }) {
            return fail(ErrorCode::REBALANCE_IN_PROGRESS);
        }
        let leader_id = group.leader.clone().unwrap_or_default();
        let members = if leader_id == member_id {
            group
                .members
                .iter()
                .map(|(id, m)| NamedBlob {
                    name: id.clone(),
                    data: m.protocols.iter().find(|p| p.name == group.protocol).and_then(|p| p.data.clone()),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResponse {
            error: ErrorCode::NONE,
            generation_id: group.generation,
            protocol_name: group.protocol.clone(),
            member_id,
            leader_id,
            members,
        }
    }

    fn check<'a>(
        groups: &'a mut BTreeMap<String, Group>,
        id: &str,
        generation: i32,
        member: &str,
    ) -> Result<&'a mut Group, ErrorCode> {
        let group = groups.get_mut(id).ok_or(ErrorCode::UNKNOWN_MEMBER_ID)?;
        if !group.members.contains_key(member) {
            return Err(ErrorCode::UNKNOWN_MEMBER_ID);
        }
        if matches!(group.phase, Phase::Joining { .. }) {
            return Err(ErrorCode::REBALANCE_IN_PROGRESS);
        }
        if group.generation != generation {
            return Err(ErrorCode::ILLEGAL_GENERATION);
        }
        Ok(group)
    }

    pub(crate) fn sync(&self, req: SyncGroupRequest) -> SyncGroupResponse {
        let mut groups = self.groups.lock().unwrap();
        let group = match Self::check(&mut groups, &req.group_id, req.generation_id, &req.member_id) {
            Ok(g) => g,
            Err(error) => return SyncGroupResponse { error, assignment: None },
        };
        if group.leader.as_deref() == Some(req.member_id.as_str()) && group.phase == Phase::AwaitingSync {
            for a in req.assignments {
                if let Some(m) = group.members.get_mut(&a.name) {
                    m.assignment = Some(a.data.unwrap_or_default());
                }
            }
            for m in group.members.values_mut() {
                m.assignment.get_or_insert_with(Bytes::new);
            }
            group.phase = Phase::Stable;
        }
        let member = group.members.get_mut(&req.member_id).expect("checked");
        member.last_seen = Instant::now();
        match &member.assignment {
            Some(a) => SyncGroupResponse { error: ErrorCode::NONE, assignment: Some(a.clone()) },
            // A follower ahead of its leader asks again.
            None => SyncGroupResponse { error: ErrorCode::REBALANCE_IN_PROGRESS, assignment: None },
        }
    }

    pub(crate) fn heartbeat(&self, req: HeartbeatRequest) -> ErrorCode {
        let mut groups = self.groups.lock().unwrap();
        match Self::check(&mut groups, &req.group_id, req.generation_id, &req.member_id) {
            Ok(group) => {
                group.members.get_mut(&req.member_id).expect("checked").last_seen = Instant::now();
                ErrorCode::NONE
            }
            Err(e) => {
                if let Some(m) = groups.get_mut(&req.group_id).and_then(|g| g.members.get_mut(&req.member_id)) {
                    m.last_seen = Instant::now();
                }
                e
            }
        }
    }

    pub(crate) fn leave(&self, req: LeaveGroupRequest) -> ErrorCode {
        let mut groups = self.groups.lock().unwrap();
        let Some(group) = groups.get_mut(&req.group_id) else { return ErrorCode::UNKNOWN_MEMBER_ID };
        if group.members.remove(&req.member_id).is_none() {
            return ErrorCode::UNKNOWN_MEMBER_ID;
        }
        Self::after_removal(group);
        ErrorCode::NONE
    }

    fn after_removal(group: &mut Group) {
        if group.members.is_empty() {
            group.phase = Phase::Empty;
            group.leader = None;
            group.rounds.send_replace(group.generation);
        } else if let Phase::Joining { .. } = group.phase {
            if group.all_joined() {
                group.complete_round();
            }
        } else {
            group.start_round(Instant::now());
        }
    }

    /// Whether a commit from this member and generation may be taken. Commits during a
    /// rebalance are taken from members of the current generation, so work done before
    /// a revoke is not done again.
    pub(crate) fn may_commit(&self, group: &str, generation: i32, member: &str) -> ErrorCode {
        if generation == -1 && member.is_empty() {
            return ErrorCode::NONE;
        }
        let groups = self.groups.lock().unwrap();
        let Some(g) = groups.get(group) else { return ErrorCode::UNKNOWN_MEMBER_ID };
        if !g.members.contains_key(member) {
            ErrorCode::UNKNOWN_MEMBER_ID
        } else if g.generation != generation {
            ErrorCode::ILLEGAL_GENERATION
        } else {
            ErrorCode::NONE
        }
    }

    /// Drops members whose session expired and completes rounds whose deadline passed.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let mut groups = self.groups.lock().unwrap();
        for group in groups.values_mut() {
            let joining = matches!(group.phase, Phase::Joining { .. });
            let before = group.members.len();
            // A member waiting for its join round is not expected to heartbeat.
            group.members.retain(|_, m| (joining && m.joined) || now.duration_since(m.last_seen) <= m.session_timeout);
            if group.members.len() != before {
                Self::after_removal(group);
            }
            if let Phase::Joining { deadline } = group.phase {
                if now >= deadline {
                    group.complete_round();
                }
            }
        }
    }

    /// The members of a group and its generation, for tests.
    pub(crate) fn describe(&self, group: &str) -> Option<(i32, Vec<String>)> {
        let groups = self.groups.lock().unwrap();
        groups.get(group).map(|g| (g.generation, g.members.keys().cloned().collect()))
    }
}
