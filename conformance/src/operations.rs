//! Cases for what operators look at and do: how far a group is behind, and pausing a
//! consumer.

use std::sync::Arc;
use std::time::Duration;

use tidewater_core::{ErrorKind, PartitionLag, ReadTask};

use crate::cases::{topic, GRACE};
use crate::failures::Gate;
use crate::support::{batch, skip, subscribe, write_each, Act, Probe};
use crate::Fixture;

/// Case 21: A group's lag counts what it has not settled and drains to zero as its
/// handlers finish: 40 messages written while the group's handler holds the first show
/// a lag of 40 (a message being handled counts as behind), and 0 once all were
/// handled. The lag of a group that never read is `UnknownGroup` or counted from the
/// start, never an error of another kind.
pub async fn lag_drains_to_zero(f: Arc<dyn Fixture>) {
    const N: u64 = 40;
    let caps = f.capabilities();
    if !caps.reports_lag {
        return skip("lag_drains_to_zero", "reports_lag");
    }
    let admin = f.admin().await;
    let topic = topic(&*f, "lag").await;
    let gate = Arc::new(Gate::default());
    let probe = Probe::new({
        let gate = Arc::clone(&gate);
        move |_| Act::Await(gate.enter(usize::MAX))
    });
    let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("behind"), probe.clone()).await;
    write_each(&*f.writer().await, batch(&topic, N as usize, |i, m| m.with_key(format!("k{i}")))).await;

    // Brokers update what they report a moment after a write or a commit: ask until it
    // shows, and fail naming the last answer. Twice a second: a lag request can be
    // several admin calls (Pulsar: one a partition), and the stress run makes ten copies
    // of this case at once beside the others, which the broker then serves more slowly.
    let lag_becomes = |want: u64| {
        let (admin, topic) = (Arc::clone(&admin), topic.clone());
        async move {
            let mut last = None;
            let asked = tokio::time::timeout(caps.patience, async {
                loop {
                    match admin.lag(&topic, "behind").await {
                        Ok(lags) if PartitionLag::total(&lags) == want => return,
                        answer => last = Some(answer),
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
            .await;
            assert!(asked.is_ok(), "the lag of group behind on {topic} did not become {want}; last answer: {last:?}");
        }
    };
    lag_becomes(N).await;
    gate.open_anyway();
    probe.wait(caps.patience, "every message handled", |s| s.done_ids().len() >= N as usize).await;
    lag_becomes(0).await;
    sub.shutdown(GRACE).await;

    match admin.lag(&topic, "never-read").await {
        Ok(lags) => assert_eq!(PartitionLag::total(&lags), N, "a group that never read counts from the start"),
        Err(err) => assert_eq!(err.kind(), ErrorKind::UnknownGroup, "{err}"),
    }
}

/// Case 32: A paused task takes nothing new until it is resumed, then takes what came
/// meanwhile. The pause comes while the reader waits for more (its fetch is not cut
/// short: what that fetch brings waits for the resume); it lasts 3 s, past the Kafka
/// reader's keep-alive threshold (2 s), so its consumer is polled with its partitions
/// paused meanwhile; the task stays subscribed, and the group's place is kept.
pub async fn a_paused_task_takes_nothing_until_resumed(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    let topic = topic(&*f, "paused").await;
    let writer = f.writer().await;
    let probe = Probe::succeeding();
    let mut sub = subscribe(&*f, ReadTask::new(&topic).with_group("ps"), probe.clone()).await;
    let messages = batch(&topic, 4, |_, m| m);
    let mut messages = messages.into_iter();
    write_each(&*writer, messages.by_ref().take(1).collect()).await;
    probe.wait(caps.patience, "the first message", |s| s.done.len() == 1).await;

    let monitor = sub.monitor();
    assert_eq!(monitor.pause(&topic, Some("ps")), 1, "one task reads the topic in the group");
    write_each(&*writer, messages.collect()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = probe.state().calls.len();
    assert_eq!(calls, 1, "a paused task started {} handlers", calls - 1);
    let health = monitor.health();
    assert!(health.tasks[0].paused && health.ready, "paused, and still subscribed: {health:?}");

    assert_eq!(monitor.resume(&topic, Some("ps")), 1);
    probe.wait(caps.patience, "what came while it was paused", |s| s.done.len() == 4).await;
    assert!(!monitor.health().tasks[0].paused);
    sub.shutdown(GRACE).await;
}
