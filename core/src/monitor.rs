//! A shared, read-only view of a scheduler's tasks, for what watches a service from
//! beside it: health probes, metrics exporters, an HTTP endpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::{
    Admin, Error, ErrorKind, Health, PartitionLag, Reader, ReadySignal, Result, TaskHealth, TaskReport, TaskStats,
};

/// Health, counters and lag of a scheduler's read tasks, and the switch that pauses
/// them ([`Monitor::pause`]), from
/// [`Bus::monitor`](crate::Bus::monitor) or
/// [`SubscriberScheduler::monitor`](crate::SubscriberScheduler::monitor).
///
/// It is cheap to clone and stays current: tasks started after it was taken show in it,
/// so a service takes it once, hands it to its probe or exporter, and goes on to run
/// the bus.
///
/// ```
/// # async fn demo(bus: &mut tidewater_core::Bus) -> tidewater_core::Result<()> {
/// let monitor = bus.monitor();
/// tokio::spawn(async move {
///     // A probe's view, while the bus runs.
///     let health = monitor.health();
///     println!("ready: {}, tasks: {}", health.ready, health.tasks.len());
/// });
/// bus.start().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Monitor {
    reader: Arc<dyn Reader>,
    admin: Option<Arc<dyn Admin>>,
    tasks: Arc<RwLock<Vec<TaskView>>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").field("driver", &self.reader.driver()).field("tasks", &self.read().len()).finish()
    }
}

/// What the monitor sees of one task.
#[derive(Clone)]
pub(crate) struct TaskView {
    pub(crate) topic: String,
    pub(crate) group: Option<String>,
    pub(crate) stats: Arc<TaskStats>,
    pub(crate) ready: ReadySignal,
    /// Cleared when the task's worker ends.
    pub(crate) running: Arc<AtomicBool>,
    pub(crate) pause: crate::PauseSwitch,
}

/// Clears a task's `running` flag when its worker ends, however it ends.
pub(crate) struct RunningGuard(pub(crate) Arc<AtomicBool>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// How far one task's group is behind, from [`Monitor::lag`].
#[derive(Debug)]
pub struct TaskLag {
    /// The topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Per partition, or why the broker could not tell.
    pub partitions: Result<Vec<PartitionLag>>,
}

impl Monitor {
    pub(crate) fn new(reader: Arc<dyn Reader>, tasks: Arc<RwLock<Vec<TaskView>>>) -> Self {
        Self { reader, admin: None, tasks }
    }

    /// Asks `admin` for the lag of the tasks' groups ([`Monitor::lag`]).
    pub fn with_admin(mut self, admin: Arc<dyn Admin>) -> Self {
        self.admin = Some(admin);
        self
    }

    /// The driver's name.
    pub fn driver(&self) -> &'static str {
        self.reader.driver()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<TaskView>> {
        self.tasks.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the read tasks run, are subscribed and connected: see [`Health`].
    pub fn health(&self) -> Health {
        let tasks: Vec<TaskHealth> = self
            .read()
            .iter()
            .map(|t| TaskHealth {
                topic: t.topic.clone(),
                group: t.group.clone(),
                running: t.running.load(Ordering::Acquire),
                subscribed: t.ready.is_ready(),
                restarts: t.stats.get(crate::reader::Count::Restarts),
                paused: t.pause.is_paused(),
            })
            .collect();
        let connected = self.reader.connected();
        let live = tasks.iter().all(|t| t.running);
        let ready = live && tasks.iter().all(|t| t.subscribed) && connected != Some(false);
        Health { live, ready, connected, tasks }
    }

    /// Pauses the tasks that read `topic`, in `group` (`None`: in any group), and
    /// returns how many there are: 0 says no task reads it. A paused task takes nothing
    /// new from the broker, while what it holds is handled and settled, until
    /// [`Monitor::resume`]; it stays subscribed, and so ready (see [`PauseSwitch`](crate::PauseSwitch)
    /// for what each broker does meanwhile). For an operator who needs a consumer to
    /// stand still for a while (its database under repair, a downstream service being
    /// moved) without stopping the service: wire it to an admin endpoint of your own.
    ///
    /// ```
    /// # async fn demo(bus: &mut tidewater_core::Bus) {
    /// let monitor = bus.monitor();
    /// assert_eq!(monitor.pause("orders", Some("billing")), 1);
    /// assert!(monitor.health().tasks.iter().any(|t| t.paused));
    /// monitor.resume("orders", Some("billing"));
    /// # }
    /// ```
    pub fn pause(&self, topic: &str, group: Option<&str>) -> usize {
        self.each_task(topic, group, |pause| {
            pause.pause();
        })
    }

    /// Resumes the tasks that read `topic`, in `group` (`None`: in any group), and
    /// returns how many there are.
    pub fn resume(&self, topic: &str, group: Option<&str>) -> usize {
        self.each_task(topic, group, |pause| {
            pause.resume();
        })
    }

    fn each_task(&self, topic: &str, group: Option<&str>, flip: impl Fn(&crate::PauseSwitch)) -> usize {
        let tasks = self.read();
        let chosen = tasks.iter().filter(|t| t.topic == topic && (group.is_none() || t.group.as_deref() == group));
        chosen.map(|t| flip(&t.pause)).count()
    }

    /// Live counters of every task.
    pub fn stats(&self) -> Vec<TaskReport> {
        self.read().iter().map(|t| t.stats.report(&t.topic, t.group.as_deref())).collect()
    }

    /// The lag of every task that reads in a group, asked of the broker now, all tasks at
    /// once; empty without an admin ([`Monitor::with_admin`]; a [`Bus`](crate::Bus)'s
    /// monitor has its driver's).
    ///
    /// While the broker is away each ask takes the driver's request timeout; see
    /// [`Monitor::lag_within`] for an answer in bounded time.
    pub async fn lag(&self) -> Vec<TaskLag> {
        self.ask_lag(None).await
    }

    /// [`Monitor::lag`], each task's ask given at most `limit`: one the broker has not
    /// answered by then is a `Timeout` for that task. For a metrics scrape, which its
    /// scraper gives up on whole after its own timeout (10 s by default in Prometheus).
    pub async fn lag_within(&self, limit: Duration) -> Vec<TaskLag> {
        self.ask_lag(Some(limit)).await
    }

    async fn ask_lag(&self, limit: Option<Duration>) -> Vec<TaskLag> {
        let Some(admin) = &self.admin else { return Vec::new() };
        let mut asked: Vec<(String, String)> =
            self.read().iter().filter_map(|t| Some((t.topic.clone(), t.group.clone()?))).collect();
        asked.sort();
        asked.dedup();
        // At once rather than one after another: with the broker away, one after another
        // took a request timeout for each task.
        let asks = asked.into_iter().map(|(topic, group)| async move {
            let ask = admin.lag(&topic, &group);
            let partitions = match limit {
                None => ask.await,
                Some(limit) => tokio::time::timeout(limit, ask).await.unwrap_or_else(|_| {
                    let text = format!("the broker did not tell group {group:?}'s lag within {limit:?}");
                    Err(Error::new(ErrorKind::Timeout, text).with_driver(admin.driver()).with_topic(&topic))
                }),
            };
            TaskLag { topic, group, partitions }
        });
        futures::future::join_all(asks).await
    }
}
