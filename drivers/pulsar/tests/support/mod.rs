//! The shared Apache Pulsar standalone that `scripts/test` starts. Tests that need a
//! broker of their own (restart, TLS and token authentication) start it through
//! `tidewater_testkit::PulsarStandalone`.
#![allow(dead_code)]

use tidewater_pulsar::{Pulsar, PulsarConfig};

/// The shared broker's `pulsar://` URL. A missing broker fails the test: run the suite
/// with `scripts/test`, which starts it.
pub(crate) fn shared_url() -> String {
    tidewater_testkit::shared::pulsar_url()
}

/// Makes `topic` a partitioned topic of `partitions` on the shared broker.
pub(crate) fn create_partitioned_topic(topic: &str, partitions: u32) {
    tidewater_testkit::create_partitioned_topic(tidewater_testkit::shared::pulsar_admin_port(), topic, partitions);
}

/// The configuration tests use against `url`.
pub(crate) fn config(url: &str) -> PulsarConfig {
    PulsarConfig::new(url).admin_url(tidewater_testkit::shared::pulsar_admin_url())
}

/// A driver connected as `config` says.
pub(crate) async fn connect(config: PulsarConfig) -> Pulsar {
    Pulsar::connect(config).await.expect("connect to the test Pulsar")
}

/// A driver on the shared broker, configured as tests are.
pub(crate) async fn shared() -> Pulsar {
    connect(config(&shared_url())).await
}

/// What the driver logs at `warn` and above from here on, for tests that check a
/// warning: the first call installs a subscriber for the whole test binary that keeps
/// each formatted line.
pub(crate) fn warnings() -> &'static std::sync::Mutex<Vec<String>> {
    static LINES: std::sync::OnceLock<std::sync::Mutex<Vec<String>>> = std::sync::OnceLock::new();
    LINES.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("tidewater_pulsar=warn"))
            .with_ansi(false)
            .with_writer(|| Line(Vec::new()))
            .try_init();
        std::sync::Mutex::new(Vec::new())
    })
}

/// One formatted event, kept when it is dropped.
struct Line(Vec<u8>);

impl std::io::Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.0).into_owned();
        warnings().lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
}

/// What the shared broker says of each partition of `topic`, by its admin API: each
/// subscription's backlog, unacked count and messages queued for redelivery (replay),
/// whether its dispatcher waits on a read, its consumers and what each holds unacked
/// with its flow permits left, and where its cursor stands. For the message of a
/// conformance case that waited in vain for a closed consumer's messages to come again.
pub(crate) fn topic_view(topic: &str) -> Option<String> {
    let port = tidewater_testkit::shared::pulsar_admin_port();
    let get = |path: String| -> Option<serde_json::Value> {
        match tidewater_testkit::process::http(port, "GET", &path, None, "") {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    };
    let base = format!("/admin/v2/persistent/public/default/{topic}");
    let stats = get(format!("{base}/partitioned-stats?perPartition=true"))?;
    let mut lines = Vec::new();
    let partitions = stats["partitions"].as_object()?;
    let mut names: Vec<&String> = partitions.keys().collect();
    names.sort();
    for name in names {
        let short = name.rsplit('-').next().unwrap_or(name);
        let internal = get(format!("{base}-partition-{short}/internalStats")).unwrap_or_default();
        let subscriptions = partitions[name]["subscriptions"].as_object().cloned().unwrap_or_default();
        for (subscription, sub) in &subscriptions {
            let cursor = &internal["cursors"][subscription];
            lines.push(format!(
                "partition {short}, subscription {subscription} ({}): backlog {}, unacked {}, in replay {}, blocked \
                 {}; cursor: mark-delete {}, read {} (last entry {}), acked beyond {}, waiting read {}, pending reads \
                 {}; dispatcher: read pending {}, replay read pending {}",
                sub["type"],
                sub["msgBacklog"],
                sub["unackedMessages"],
                sub["msgInReplay"],
                sub["blockedSubscriptionOnUnackedMsgs"],
                cursor["markDeletePosition"],
                cursor["readPosition"],
                internal["lastConfirmedEntry"],
                cursor["individuallyDeletedMessages"],
                cursor["waitingReadOp"],
                cursor["pendingReadOps"],
                cursor["subscriptionHavePendingRead"],
                cursor["subscriptionHavePendingReplayRead"],
            ));
            for consumer in sub["consumers"].as_array().into_iter().flatten() {
                lines.push(format!(
                    "  consumer {} at {}, since {}: unacked {}, permits {}, blocked {}",
                    consumer["consumerName"],
                    consumer["address"],
                    consumer["connectedSince"],
                    consumer["unackedMessages"],
                    consumer["availablePermits"],
                    consumer["blockedConsumerOnUnackedMsgs"],
                ));
            }
        }
    }
    Some(lines.join("\n"))
}
