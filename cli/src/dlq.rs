//! `dlq list|show|redrive`: what is in a dead-letter topic, and the way back.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use tidewater::dead_letter::headers;
use tidewater::{
    handler_fn, Delivery, Driver, ErrorKind, EventRegistry, Handler, HandlerError, MessageId, PartitionLag, ReadTask,
    Redrive, RedriveRefusal, StartFrom, SubscriberScheduler,
};
use tokio::sync::Notify;

use crate::commands::{as_json, as_text, must_exist, terminate, Outcome, Own};

/// What `dlq` does.
#[derive(Debug, Subcommand)]
pub(crate) enum DlqAction {
    /// Print the dead letters of a dead-letter topic, one a line (or as JSON lines).
    List {
        /// The dead-letter topic (`<topic>.dlq` by default).
        topic: String,
        #[command(flatten)]
        filter: Filter,
        #[command(flatten)]
        read: ReadArgs,
        /// One JSON object a dead letter, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print one dead letter whole: headers, error and payload.
    Show {
        /// The dead-letter topic.
        topic: String,
        /// The message id.
        id: String,
        #[command(flatten)]
        read: ReadArgs,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write dead letters back to the topics they came from, without their dead-letter
    /// headers. Reads as a consumer group and acknowledges each dead letter only after
    /// its write returned, so an interrupted redrive loses nothing: what it had not
    /// finished comes again on the next run. A dead letter that does not match the
    /// filters is passed over and acknowledged in the group too; give a filtered run a
    /// group of its own if a later run should see the rest. One that can never be
    /// written back (its topic's name is not valid there, or the topic is gone, or it was
    /// written without its payload for being too large) is named on stderr and passed
    /// over as well, and the run ends with exit code 1. A write
    /// refused for the writer's sake (not authorized, the broker gone) stops the redrive
    /// instead: that dead letter and the rest stay unread by the group for the next run,
    /// and the run ends with exit code 1.
    Redrive {
        /// The dead-letter topic.
        topic: String,
        #[command(flatten)]
        filter: Filter,
        #[command(flatten)]
        read: ReadArgs,
        /// The consumer group that keeps the redrive's place.
        #[arg(long, default_value = "tidewater-redrive")]
        group: String,
        /// Print what would be redriven, write and acknowledge nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which dead letters a command takes.
#[derive(Debug, Default, Args)]
pub(crate) struct Filter {
    /// Only those whose error contains this text.
    #[arg(long)]
    reason: Option<String>,
    /// Only those that came from this topic.
    #[arg(long)]
    original_topic: Option<String>,
    /// Only those that last failed at least this long ago (30s, 15m, 2h, 7d).
    #[arg(long, value_parser = age)]
    older_than: Option<Duration>,
    /// Only those that last failed at most this long ago.
    #[arg(long, value_parser = age)]
    newer_than: Option<Duration>,
}

/// How long a read waits: a dead-letter topic has no end to reach, so a read ends
/// when nothing more comes.
#[derive(Debug, Args)]
pub(crate) struct ReadArgs {
    /// How long to wait for the first dead letter (subscribing to a group can take
    /// seconds on some brokers).
    #[arg(long, value_parser = age, default_value = "10s")]
    wait: Duration,
    /// After the first, the read ends once none came for this long.
    #[arg(long, value_parser = age, default_value = "3s")]
    idle: Duration,
}

/// `30s`, `15m`, `2h`, `7d`, or plain seconds.
pub(crate) fn age(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.find(|c: char| !c.is_ascii_digit()).map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 30s, 15m, 2h or 7d"))?;
    let seconds = match unit {
        "" | "s" => n,
        "ms" => return Ok(Duration::from_millis(n)),
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit {unit:?} in {text:?}: use ms, s, m, h or d")),
    };
    Ok(Duration::from_secs(seconds))
}

impl Filter {
    fn matches(&self, delivery: &Delivery, now: SystemTime) -> bool {
        let m = delivery.message();
        let error = m.headers.get(headers::ERROR).unwrap_or("");
        if self.reason.as_deref().is_some_and(|r| !error.contains(r)) {
            return false;
        }
        if self.original_topic.as_deref().is_some_and(|t| m.headers.get(headers::ORIGINAL_TOPIC) != Some(t)) {
            return false;
        }
        let age = now.duration_since(failed_at(delivery)).unwrap_or_default();
        !(self.older_than.is_some_and(|d| age < d) || self.newer_than.is_some_and(|d| age > d))
    }
}

/// When the dead letter last failed: its header, else the message's own time.
fn failed_at(delivery: &Delivery) -> SystemTime {
    let m = delivery.message();
    m.headers
        .get(headers::LAST_FAILURE)
        .and_then(|ms| ms.parse().ok())
        .map_or(m.timestamp, |ms| UNIX_EPOCH + Duration::from_millis(ms))
}

pub(crate) async fn dlq(driver: &impl Driver, action: DlqAction) -> Outcome {
    let (DlqAction::List { topic, .. } | DlqAction::Show { topic, .. } | DlqAction::Redrive { topic, .. }) = &action;
    must_exist(driver, topic, "no dead letter was written to it yet, or the name is misspelt").await?;
    match action {
        DlqAction::List { topic, filter, read, json } => {
            let now = SystemTime::now();
            scan(driver, &topic, &read, move |delivery| {
                if filter.matches(delivery, now) {
                    let line = if json { as_json(delivery) } else { summary(delivery, now) };
                    writeln!(std::io::stdout().lock(), "{line}")?;
                }
                Ok(Scan::More)
            })
            .await
        }
        DlqAction::Show { topic, id, read, json } => {
            let found = Arc::new(AtomicBool::new(false));
            let seen = Arc::clone(&found);
            let wanted = id.clone();
            scan(driver, &topic, &read, move |delivery| {
                if delivery.message().id != wanted {
                    return Ok(Scan::More);
                }
                seen.store(true, Ordering::SeqCst);
                writeln!(std::io::stdout().lock(), "{}", if json { as_json(delivery) } else { as_text(delivery) })?;
                Ok(Scan::Done)
            })
            .await?;
            if !found.load(Ordering::SeqCst) {
                return Err(format!("no message {id:?} in {topic} (read until none came for {:?})", read.idle).into());
            }
            Ok(())
        }
        DlqAction::Redrive { topic, filter, read, group, dry_run } => {
            if dry_run {
                let now = SystemTime::now();
                let (would, would_not) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
                let counted = (Arc::clone(&would), Arc::clone(&would_not));
                scan(driver, &topic, &read, move |delivery| {
                    if !filter.matches(delivery, now) {
                        return Ok(Scan::More);
                    }
                    let line = summary(delivery, now);
                    if let Some(refusal) = RedriveRefusal::of(delivery.message()) {
                        writeln!(std::io::stdout().lock(), "would not redrive ({refusal}) {line}")?;
                        counted.1.fetch_add(1, Ordering::SeqCst);
                    } else {
                        writeln!(std::io::stdout().lock(), "would redrive {line}")?;
                        counted.0.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Scan::More)
                })
                .await?;
                let (would, would_not) = (would.load(Ordering::SeqCst), would_not.load(Ordering::SeqCst));
                match would_not {
                    0 => writeln!(std::io::stdout().lock(), "dry run: {would} would be redriven")?,
                    n => writeln!(std::io::stdout().lock(), "dry run: {would} would be redriven, {n} would not")?,
                }
                return Ok(());
            }
            redrive(driver, &topic, filter, &read, &group).await
        }
    }
}

/// One line: id, original topic, recovery, attempts, age, error.
fn summary(delivery: &Delivery, now: SystemTime) -> String {
    let m = delivery.message();
    let h = |name| m.headers.get(name).unwrap_or("-");
    let age = now.duration_since(failed_at(delivery)).unwrap_or_default().as_secs();
    format!(
        "{}\t{}\t{}\tattempts={}\t{}s ago\t{}",
        m.id,
        h(headers::ORIGINAL_TOPIC),
        h(headers::RECOVERY),
        h(headers::ATTEMPTS),
        age,
        h(headers::ERROR).replace('\n', " ")
    )
}

/// Runs `handler` on `task` until nothing came for `idle`, `stop`, or Ctrl-C or SIGTERM; the
/// shutdown then lets running handlers finish, so what they did is settled. A task in a
/// group also waits while the broker says the group is behind: messages a killed run
/// had taken come again only when the broker gives up on it.
async fn read_until_idle(
    driver: &impl Driver,
    task: ReadTask,
    read: &ReadArgs,
    handler: impl Handler,
    stop: &Notify,
) -> Outcome {
    let (topic, group) = (task.topic.clone(), task.group.clone());
    let activity = Arc::new(Notify::new());
    let handler = {
        let activity = Arc::clone(&activity);
        let handler = Arc::new(handler);
        handler_fn(move |delivery: Delivery| {
            let (activity, handler) = (Arc::clone(&activity), Arc::clone(&handler));
            async move {
                activity.notify_one();
                let result = handler.handle(delivery).await;
                activity.notify_one();
                result
            }
        })
    };
    let mut scheduler = SubscriberScheduler::new(driver.reader(), EventRegistry::new());
    scheduler.add(task, Arc::new(Own(handler)));
    scheduler.start().await?;
    let mut quiet = read.wait;
    let admin = driver.admin();
    loop {
        tokio::select! {
            _ = activity.notified() => quiet = read.idle,
            _ = tokio::time::sleep(quiet) => {
                let behind = match &group {
                    Some(group) => admin.lag(&topic, group).await.map(|l| PartitionLag::total(&l)).unwrap_or(0),
                    None => 0,
                };
                if behind == 0 {
                    break;
                }
                quiet = read.idle;
            }
            _ = stop.notified() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate() => break,
        }
    }
    scheduler.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

/// Whether a scan goes on after a dead letter.
enum Scan {
    More,
    Done,
}

/// Calls `visit` on each dead letter of `topic` as it comes, once each (a broker may hand
/// one out twice), read on a private subscription from the start, so nothing is settled
/// for anyone else, until none came for `idle`, or `visit` says it is done. Printed as
/// they come, rather than gathered first: a large dead-letter topic is neither held in
/// memory nor silent until its end. An error of `visit` (stdout gone) stops the scan and
/// is its outcome.
async fn scan(
    driver: &impl Driver,
    topic: &str,
    read: &ReadArgs,
    visit: impl FnMut(&Delivery) -> std::io::Result<Scan> + Send + 'static,
) -> Outcome {
    struct State<F> {
        seen: HashSet<MessageId>,
        visit: F,
        ended: bool,
        failed: Option<std::io::Error>,
    }
    let state = Arc::new(Mutex::new(State { seen: HashSet::new(), visit, ended: false, failed: None }));
    let stop = Arc::new(Notify::new());
    let handler = {
        let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
        handler_fn(move |delivery: Delivery| {
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            if !state.ended && state.seen.insert(delivery.message().id.clone()) {
                let outcome = (state.visit)(&delivery);
                match outcome {
                    Ok(Scan::More) => {}
                    Ok(Scan::Done) => state.ended = true,
                    Err(err) => {
                        state.ended = true;
                        state.failed = Some(err);
                    }
                }
                if state.ended {
                    stop.notify_one();
                }
            }
            std::future::ready(Ok::<_, HandlerError>(()))
        })
    };
    let task = ReadTask::new(topic).with_start(StartFrom::Earliest);
    read_until_idle(driver, task, read, handler, &stop).await?;
    let failed = state.lock().unwrap_or_else(|e| e.into_inner()).failed.take();
    match failed {
        Some(err) => Err(err.into()),
        None => Ok(()),
    }
}

async fn redrive(driver: &impl Driver, topic: &str, filter: Filter, read: &ReadArgs, group: &str) -> Outcome {
    let total = driver.admin().lag(topic, group).await.ok().map(|lags| PartitionLag::total(&lags));
    if total == Some(0) {
        // The broker says the group has read everything: nothing to wait for.
        writeln!(std::io::stdout().lock(), "redriven 0, passed over 0")?;
        return Ok(());
    }
    let progress = Arc::new(Progress {
        redriven: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        total,
        stopped: Mutex::new(None),
        stop: Notify::new(),
    });
    let handler = {
        let (progress, redrive) = (Arc::clone(&progress), Redrive::new(driver.writer()));
        let filter = Arc::new(filter);
        handler_fn(move |delivery: Delivery| {
            let (progress, redrive, filter) = (Arc::clone(&progress), redrive.clone(), Arc::clone(&filter));
            async move {
                if !filter.matches(&delivery, SystemTime::now()) {
                    progress.skipped.fetch_add(1, Ordering::SeqCst);
                    progress.show();
                    return Ok(());
                }
                let id = delivery.message().id.clone();
                // Written before the ack: interrupted here, it comes again.
                match redrive.handle(delivery).await {
                    Ok(()) => progress.redriven.fetch_add(1, Ordering::SeqCst),
                    // One that can never be written back is said and passed over (it stays
                    // in the dead-letter topic); given back, it would come again for good
                    // and the redrive would never end.
                    Err(err) if !err.is_transient() => {
                        progress.say(&format!("not redriven: {id}: {}", err.chain()));
                        progress.refused.fetch_add(1, Ordering::SeqCst)
                    }
                    // Refused for the writer's own sake, every dead letter would be: the
                    // redrive stops, and this one and the rest stay unread by the group
                    // for a run after the cause is fixed. Given back to come again, it
                    // would keep the redrive from ever ending.
                    Err(err) if writes_nothing(&err) => {
                        progress.stop_at(&id, &err);
                        return Err(err);
                    }
                    Err(err) => {
                        progress.say(&format!("not redriven yet: {id}: {}; it comes again", err.chain()));
                        return Err(err);
                    }
                };
                progress.show();
                Ok(())
            }
        })
    };
    let task = ReadTask::new(topic).with_group(group).with_start(StartFrom::Earliest);
    read_until_idle(driver, task, read, handler, &progress.stop).await?;
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let (redriven, skipped) = (progress.redriven.load(Ordering::SeqCst), progress.skipped.load(Ordering::SeqCst));
    let stopped = progress.stopped.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(why) = stopped {
        writeln!(std::io::stdout().lock(), "redriven {redriven}, passed over {skipped}, then stopped")?;
        return Err(format!(
            "the redrive stopped: {why}; that dead letter and those after it stay in {topic}, unread by group \
             {group}: run the redrive again once the cause is fixed"
        )
        .into());
    }
    match progress.refused.load(Ordering::SeqCst) {
        0 => writeln!(std::io::stdout().lock(), "redriven {redriven}, passed over {skipped}")?,
        refused => {
            writeln!(std::io::stdout().lock(), "redriven {redriven}, passed over {skipped}, not redriven {refused}")?;
            let (these, stay) = match refused {
                1 => ("1 dead letter".to_owned(), "it stays"),
                n => (format!("{n} dead letters"), "they stay"),
            };
            return Err(format!(
                "{these} could not be written back (said above); {stay} in {topic}, passed by group {group}: \
                 redrive with another --group once the cause is fixed"
            )
            .into());
        }
    }
    Ok(())
}

/// How far a redrive is, shown on a terminal as one line that updates.
struct Progress {
    redriven: AtomicU64,
    skipped: AtomicU64,
    /// Dead letters whose write was refused for good.
    refused: AtomicU64,
    /// The group's lag when the redrive began, where the broker tells it.
    total: Option<u64>,
    /// Why the redrive stopped early: the dead letter and the writer's refusal.
    stopped: Mutex<Option<String>>,
    /// Notified when it does.
    stop: Notify,
}

/// Whether a redrive's failed write says the writer can write nothing now (the broker is
/// away, the writer is misconfigured or not authorized), rather than that this one dead
/// letter cannot be written or that the broker asks for a moment.
fn writes_nothing(err: &HandlerError) -> bool {
    let kind = err.source_ref().downcast_ref::<tidewater::Error>().map(tidewater::Error::kind);
    use ErrorKind as K;
    matches!(kind, Some(K::Connection | K::Closed | K::Config | K::Unsupported | K::BrokerPermanent))
}

impl Progress {
    fn show(&self) {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let (redriven, skipped) = (self.redriven.load(Ordering::SeqCst), self.skipped.load(Ordering::SeqCst));
        let refused = self.refused.load(Ordering::SeqCst);
        let of = self.total.map(|t| format!(" of {t}")).unwrap_or_default();
        let read = redriven + skipped + refused;
        eprint!("\rredriving: {read}{of} read, {redriven} redriven, {skipped} passed over, {refused} not redriven");
    }

    /// Records the first refusal that stops the redrive, and stops it.
    fn stop_at(&self, id: &str, err: &HandlerError) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if stopped.is_none() {
            *stopped = Some(format!("{id} was not written back: {}", err.chain()));
            self.stop.notify_one();
        }
    }

    /// A line on stderr, over the progress line on a terminal.
    fn say(&self, line: &str) {
        if std::io::stderr().is_terminal() {
            // Back to the line's start and cleared, so the progress line is not left under it.
            eprint!("\r\x1b[K");
        }
        eprintln!("{line}");
    }
}
