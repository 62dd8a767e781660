//! What a liveness or readiness probe asks: are the read tasks running, subscribed and
//! connected.

/// The health of a scheduler's read tasks, from [`Bus::health`](crate::Bus::health).
///
/// - **live**: every read task's worker runs. A worker ends only at a shutdown (a failing
///   reader is restarted, never given up), so a task that is not running means something
///   has gone badly wrong, and restarting the process is the remedy a liveness probe
///   stands for.
/// - **ready**: live, every task is subscribed (its reader said so and has not failed
///   since), and the driver's connection is up where it can tell
///   ([`Reader::connected`](crate::Reader::connected)). A reader that fails is
///   unsubscribed until its restart subscribes again, so readiness goes false while the
///   broker is away and true once it is back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Every worker runs.
    pub live: bool,
    /// Live, every task subscribed, and connected where the driver can tell.
    pub ready: bool,
    /// The driver's answer to [`Reader::connected`](crate::Reader::connected).
    pub connected: Option<bool>,
    /// Each task.
    pub tasks: Vec<TaskHealth>,
}

/// The health of one read task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskHealth {
    /// The topic.
    pub topic: String,
    /// The consumer group.
    pub group: Option<String>,
    /// Its worker runs.
    pub running: bool,
    /// Its reader is subscribed now.
    pub subscribed: bool,
    /// How often its reader was restarted so far.
    pub restarts: u64,
    /// Paused ([`Monitor::pause`](crate::Monitor::pause)): it takes nothing new.
    pub paused: bool,
}
