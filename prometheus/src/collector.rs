//! The task metrics, read from the scheduler's own counters at each scrape.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use tidewater_core::{Monitor, TaskHealth, TaskReport};

/// The monitors watched, and the lag the last refresh found.
#[derive(Default)]
pub(crate) struct TaskCollector {
    monitors: Mutex<Vec<Monitor>>,
    lag: Mutex<Vec<LagRow>>,
}

impl std::fmt::Debug for TaskCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskCollector").finish_non_exhaustive()
    }
}

struct LagRow {
    topic: String,
    group: String,
    partition: String,
    lag: u64,
}

/// A task counter: its name, help and where it is in a report.
type CounterOf = (&'static str, &'static str, fn(&TaskReport) -> u64);

/// A task's yes-or-no gauge, from its health: name, help, and the flag.
type GaugeOf = (&'static str, &'static str, fn(&TaskHealth) -> bool);

const TASK_GAUGES: [GaugeOf; 2] = [
    ("task_ready", "1 while the read task is subscribed.", |t| t.subscribed),
    ("task_paused", "1 while the read task is paused (Monitor::pause): it takes nothing new.", |t| t.paused),
];

const COUNTERS: [CounterOf; 10] = [
    ("messages_delivered", "Messages the broker handed to a handler.", |r| r.delivered),
    ("messages_acked", "Messages handled and settled as done.", |r| r.acked),
    ("messages_nacked", "Messages settled for redelivery.", |r| r.nacked),
    ("messages_dead_lettered", "Messages written to a dead-letter queue and settled.", |r| r.dead_lettered),
    ("messages_skipped", "Messages of an event type the handler does not take, settled unhandled.", |r| r.skipped),
    ("handler_failures", "Deliveries whose handler failed with an error, not dead-lettered.", |r| r.failed),
    ("handler_panics", "Deliveries whose handler panicked, not dead-lettered.", |r| r.panicked),
    ("handler_retries", "Handler calls made again in place by retry middleware.", |r| r.retried),
    ("reader_restarts", "Readers restarted after a failure.", |r| r.restarts),
    ("settle_errors", "Settlements the broker did not take.", |r| r.settle_errors),
];

impl TaskCollector {
    pub(crate) fn watch(&self, monitor: Monitor) {
        self.monitors.lock().unwrap_or_else(|e| e.into_inner()).push(monitor);
    }

    fn monitors(&self) -> Vec<Monitor> {
        self.monitors.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Asks the brokers for the lag of every watched group, each ask given at most
    /// `limit`.
    pub(crate) async fn refresh_lag(&self, limit: Duration) {
        let mut rows = Vec::new();
        let asks = self.monitors().into_iter().map(|monitor| async move { monitor.lag_within(limit).await });
        for tasks in futures::future::join_all(asks).await {
            for task in tasks {
                match task.partitions {
                    Ok(partitions) => rows.extend(partitions.into_iter().map(|p| LagRow {
                        topic: task.topic.clone(),
                        group: task.group.clone(),
                        partition: p.partition.to_string(),
                        lag: p.lag,
                    })),
                    Err(err) => {
                        tracing::debug!(topic = %task.topic, group = %task.group, error = %err, "no lag for this task")
                    }
                }
            }
        }
        *self.lag.lock().unwrap_or_else(|e| e.into_inner()) = rows;
    }
}

impl Collector for TaskCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let monitors = self.monitors();
        let reports: Vec<TaskReport> = monitors.iter().flat_map(Monitor::stats).collect();
        let labels = |r: &TaskReport| [("topic", r.topic.clone()), ("group", r.group.clone().unwrap_or_default())];
        for (name, help, value) in COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for report in &reports {
                ConstCounter::new(value(report)).encode(family.encode_family(&labels(report))?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "messages_in_flight",
            "Messages handed to a handler and not yet settled.",
            None,
            MetricType::Gauge,
        )?;
        for r in &reports {
            let settled = r.acked + r.nacked + r.dead_lettered + r.skipped + r.settle_errors + r.abandoned;
            let in_flight = r.delivered.saturating_sub(settled);
            ConstGauge::new(i64::try_from(in_flight).unwrap_or(i64::MAX)).encode(family.encode_family(&labels(r))?)?;
        }
        let health: Vec<_> = monitors.iter().map(|m| (m.driver(), m.health())).collect();
        for (name, help, value) in TASK_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (_, health) in &health {
                for task in &health.tasks {
                    let labels = [("topic", task.topic.clone()), ("group", task.group.clone().unwrap_or_default())];
                    ConstGauge::new(i64::from(value(task))).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        // A task stays subscribed while its client reconnects, so the connection is a
        // gauge of its own: the one that shows a broker outage as it happens. One series a
        // driver, down if any of its monitors says so.
        let mut connected = std::collections::BTreeMap::new();
        for (driver, health) in &health {
            if let Some(up) = health.connected {
                *connected.entry(*driver).or_insert(true) &= up;
            }
        }
        let mut family = encoder.encode_descriptor(
            "connected",
            "1 while the driver's connection to its broker is up, 0 while it is not; absent for a driver that cannot tell.",
            None,
            MetricType::Gauge,
        )?;
        for (driver, up) in connected {
            ConstGauge::new(i64::from(up)).encode(family.encode_family(&[("driver", driver)])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "consumer_lag",
            "Messages of the partition the group has not settled, as the broker told at this scrape.",
            None,
            MetricType::Gauge,
        )?;
        for row in self.lag.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let labels =
                [("topic", row.topic.as_str()), ("group", row.group.as_str()), ("partition", row.partition.as_str())];
            ConstGauge::new(i64::try_from(row.lag).unwrap_or(i64::MAX)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
