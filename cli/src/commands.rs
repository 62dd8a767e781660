//! The subcommands.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use tidewater::{
    handler_fn, Delivery, Driver, ErrorKind, EventRegistry, Handler, HandlerError, IdFactory, Message, ReadTask,
    StartFrom, SubscriberScheduler, UuidV7Ids,
};
use tokio::sync::Notify;

pub(crate) type Outcome = Result<(), Box<dyn std::error::Error>>;

/// What `topics` does.
#[derive(Debug, Subcommand)]
pub(crate) enum TopicsAction {
    /// Print the topics, one a line, sorted.
    List,
    /// Create a topic (an existing one is left as it is).
    Create {
        /// The topic.
        name: String,
        /// Partitions, where the broker has them (at least 1).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        partitions: u32,
    },
    /// Delete a topic with its messages.
    Delete {
        /// The topic.
        name: String,
    },
}

pub(crate) async fn topics(driver: &impl Driver, action: TopicsAction) -> Outcome {
    let admin = driver.admin();
    match action {
        TopicsAction::List => {
            let mut topics = admin.topics().await?;
            topics.sort();
            let mut out = std::io::stdout().lock();
            for topic in topics {
                writeln!(out, "{topic}")?;
            }
        }
        TopicsAction::Create { name, partitions } => admin.create_topic(&name, partitions).await?,
        TopicsAction::Delete { name } => admin.delete_topic(&name).await?,
    }
    Ok(())
}

/// Which group's lag `lag` prints.
#[derive(Debug, Args)]
pub(crate) struct LagArgs {
    /// The consumer group.
    group: String,
    /// The topics the group reads.
    #[arg(required = true)]
    topics: Vec<String>,
    /// One JSON object a topic, for scripts.
    #[arg(long)]
    json: bool,
}

/// Prints, per topic, the partitions' lags and their total; `topic<TAB>partition<TAB>lag`
/// lines end with a `topic<TAB>total<TAB>lag` line.
pub(crate) async fn lag(driver: &impl Driver, args: LagArgs) -> Outcome {
    let admin = driver.admin();
    let mut out = std::io::stdout().lock();
    for topic in &args.topics {
        let lags = admin.lag(topic, &args.group).await?;
        let total = tidewater::PartitionLag::total(&lags);
        if args.json {
            let partitions: serde_json::Map<String, serde_json::Value> =
                lags.iter().map(|l| (l.partition.to_string(), l.lag.into())).collect();
            let line =
                serde_json::json!({ "topic": topic, "group": args.group, "total": total, "partitions": partitions });
            writeln!(out, "{line}")?;
        } else {
            for l in &lags {
                writeln!(out, "{topic}\t{}\t{}", l.partition, l.lag)?;
            }
            writeln!(out, "{topic}\ttotal\t{total}")?;
        }
    }
    Ok(())
}

/// What `publish` sends.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The topic.
    topic: String,
    /// The payload; without it and without --file, stdin is read.
    payload: Option<String>,
    /// Read the payload from this file.
    #[arg(long, conflicts_with = "payload")]
    file: Option<PathBuf>,
    /// The message key (messages with one key keep their order).
    #[arg(long)]
    key: Option<String>,
    /// A header, as name=value; give it again for more.
    #[arg(long = "header", value_parser = header)]
    headers: Vec<(String, String)>,
    /// The content type.
    #[arg(long)]
    content_type: Option<String>,
    /// Each line of stdin is a message of its own.
    #[arg(long, conflicts_with_all = ["payload", "file"])]
    lines: bool,
}

fn header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not name=value")),
    }
}

/// Publishes, and prints each message's id, one a line.
pub(crate) async fn publish(driver: &impl Driver, args: PublishArgs) -> Outcome {
    let payloads: Vec<Bytes> = match (&args.payload, &args.file) {
        (Some(payload), _) => vec![Bytes::from(payload.clone())],
        (None, Some(path)) => {
            vec![Bytes::from(std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?)]
        }
        (None, None) => {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input)?;
            if args.lines {
                input.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(Bytes::copy_from_slice).collect()
            } else {
                vec![Bytes::from(input)]
            }
        }
    };
    let writer = driver.writer();
    let mut out = std::io::stdout().lock();
    // A reader of the ids that went away (`publish --lines < big | head -1`) must not cut
    // the publishing short: the lines after it would be lost without a word.
    let mut unprinted: Option<std::io::Error> = None;
    for payload in payloads {
        let mut message = Message::new(&args.topic, payload).with_id(UuidV7Ids.next_id());
        if let Some(key) = &args.key {
            message = message.with_key(key.clone());
        }
        if let Some(content_type) = &args.content_type {
            message = message.with_content_type(content_type.clone());
        }
        for (name, value) in &args.headers {
            message = message.with_header(name.clone(), value.clone());
        }
        let id = message.id.clone();
        writer.write(vec![message]).await?;
        if unprinted.is_none() {
            unprinted = writeln!(out, "{id}").err();
        }
    }
    writer.close().await?;
    printing_ended(unprinted, "published all, but cannot write their ids to stdout")
}

/// How printing to stdout ended: `failed` is its write error, if any. A reader that
/// went away (a broken pipe, as after `| head -1`) had what it wanted: no error.
fn printing_ended(failed: Option<std::io::Error>, what: &str) -> Outcome {
    match failed {
        Some(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("{what}: {err}").into()),
        _ => Ok(()),
    }
}

/// Where `tail` starts a group that has no position yet.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum From {
    /// The oldest message the broker keeps.
    Start,
    /// Only messages published from now on.
    End,
}

/// What `tail` reads and how it prints.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// The topic.
    topic: String,
    /// Read as this consumer group (what it reads is settled, so the group moves on);
    /// without it, a private subscription that settles only for itself.
    #[arg(long)]
    group: Option<String>,
    /// Where to start without a stored position.
    #[arg(long, value_enum, default_value = "end")]
    from: From,
    /// Only messages written at most this long ago (30s, 15m, 2h, 7d), read from the
    /// start: brokers here seek by position, not time, so older ones are read and
    /// passed over.
    #[arg(long, value_parser = crate::dlq::age, conflicts_with = "from")]
    since: Option<Duration>,
    /// Stop after this many messages; without it, run until Ctrl-C or SIGTERM.
    #[arg(long)]
    count: Option<usize>,
    /// One JSON object a message, for scripts.
    #[arg(long)]
    json: bool,
}

/// Refuses to read a topic that does not exist. Where topics are made on first use (the
/// drivers' defaults on Kafka, Pulsar and JetStream), subscribing to a misspelt name
/// would make a new, empty topic and wait on it without a word.
///
/// A broker that cannot tell (no list of topics, or an admin API out of reach) is read
/// anyway, after a line on stderr that says why it was not asked.
/// `missing` is what to say of a topic that does not exist.
pub(crate) async fn must_exist(driver: &impl Driver, topic: &str, missing: &str) -> Outcome {
    match driver.admin().topic_exists(topic).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            Err(format!("topic {topic:?} does not exist: {missing} (`tidewater topics list` lists those that do)")
                .into())
        }
        Err(err) if err.kind() == ErrorKind::InvalidName => Err(err.into()),
        Err(err) if err.kind() == ErrorKind::Unsupported => Ok(()),
        Err(err) => {
            eprintln!("tidewater: cannot tell whether topic {topic:?} exists, reading it anyway: {err}");
            Ok(())
        }
    }
}

/// Prints messages as they come, until `--count`, a signal, or stdout's end: a write
/// that fails, or the reader of a pipe gone (`tail orders | head -1`).
pub(crate) async fn tail(driver: &impl Driver, args: TailArgs) -> Outcome {
    must_exist(driver, &args.topic, "the name is misspelt, or nothing made it yet").await?;
    let printed = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let unwritable: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
    let limit = args.count.unwrap_or(usize::MAX);
    let json = args.json;
    let since = args.since.map(|d| std::time::SystemTime::now() - d);
    let handler = {
        let (printed, enough, unwritable) = (Arc::clone(&printed), Arc::clone(&enough), Arc::clone(&unwritable));
        handler_fn(move |delivery: Delivery| {
            let (printed, enough, unwritable) = (Arc::clone(&printed), Arc::clone(&enough), Arc::clone(&unwritable));
            async move {
                if since.is_some_and(|since| delivery.message().timestamp < since) {
                    return Ok(());
                }
                // Past the count, or once stdout is gone, the message is given back, not
                // settled: a group must not lose what was never printed.
                if printed.load(Ordering::SeqCst) >= limit {
                    return Err(HandlerError::transient("tail printed what it was asked for"));
                }
                let mut unwritable = unwritable.lock().unwrap_or_else(|e| e.into_inner());
                if unwritable.is_some() {
                    return Err(HandlerError::transient("tail cannot write to stdout"));
                }
                let text = if json { as_json(&delivery) } else { as_text(&delivery) };
                let mut out = std::io::stdout().lock();
                if let Err(err) = writeln!(out, "{text}").and_then(|()| out.flush()) {
                    *unwritable = Some(err);
                    enough.notify_one();
                    return Err(HandlerError::transient("tail cannot write to stdout"));
                }
                drop(unwritable);
                if printed.fetch_add(1, Ordering::SeqCst) + 1 >= limit {
                    enough.notify_one();
                }
                Ok(())
            }
        })
    };
    let mut task = ReadTask::new(&args.topic).with_start(match (args.from, since) {
        (From::Start, _) | (_, Some(_)) => StartFrom::Earliest,
        (From::End, None) => StartFrom::Latest,
    });
    task.group = args.group;
    let mut scheduler = SubscriberScheduler::new(driver.reader(), EventRegistry::new());
    scheduler.add(task, Arc::new(Own(handler)));
    scheduler.start().await?;
    if limit > 0 {
        tokio::select! {
            _ = enough.notified() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate() => {}
            _ = stdout_closed() => {}
        }
    }
    scheduler.shutdown(Duration::from_secs(5)).await;
    let unwritable = unwritable.lock().unwrap_or_else(|e| e.into_inner()).take();
    printing_ended(unwritable, "cannot write to stdout")
}

/// Ends when stdout is a pipe whose reader has gone, as GNU `tail -f` does: without it,
/// a tail of a quiet topic would learn of it only at its next message's write.
#[cfg(unix)]
async fn stdout_closed() {
    use std::os::fd::AsFd;
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    let Ok(stdout) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return std::future::pending().await;
    };
    // SAFETY: the descriptor is this function's own duplicate of stdout, which the AsyncFd
    // owns and closes when it is dropped, so it stays open and the same while registered.
    let registered = unsafe { AsyncFd::register_with_interest(stdout, Interest::ERROR) };
    // A file or /dev/null cannot be watched (epoll refuses them), nor need to be.
    let Ok(watched) = registered else {
        return std::future::pending().await;
    };
    loop {
        match watched.ready(Interest::ERROR).await {
            Ok(ready) if ready.ready().is_error() => return,
            Ok(mut ready) => ready.clear_ready(),
            Err(_) => return std::future::pending().await,
        }
    }
}

#[cfg(not(unix))]
async fn stdout_closed() {
    std::future::pending().await
}

/// A handler of the command's own. None fails a message for good: what one cannot
/// finish it gives back, for the group's next reader. So no dead-letter topic is wanted,
/// and none is added, nor warned of on stderr.
pub(crate) struct Own<H>(pub(crate) H);

impl<H: Handler> Handler for Own<H> {
    fn handle(&self, delivery: Delivery) -> impl std::future::Future<Output = Result<(), HandlerError>> + Send {
        self.0.handle(delivery)
    }

    fn dead_letters(&self) -> bool {
        true
    }
}

#[cfg(unix)]
pub(crate) async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
pub(crate) async fn terminate() {
    std::future::pending().await
}

fn millis(delivery: &Delivery) -> u128 {
    delivery.message().timestamp.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

pub(crate) fn as_json(delivery: &Delivery) -> String {
    let m = delivery.message();
    let headers: serde_json::Map<String, serde_json::Value> =
        m.headers.iter().map(|(name, value)| (name.to_owned(), value.into())).collect();
    let mut object = serde_json::json!({
        "topic": m.stream,
        "id": m.id,
        "key": m.key_str(),
        "content_type": m.content_type,
        "timestamp_ms": millis(delivery) as u64,
        "attempt": delivery.attempt(),
        "headers": headers,
    });
    match std::str::from_utf8(&m.payload) {
        Ok(text) => object["payload"] = text.into(),
        Err(_) => object["payload_hex"] = m.payload.iter().map(|b| format!("{b:02x}")).collect::<String>().into(),
    }
    object.to_string()
}

pub(crate) fn as_text(delivery: &Delivery) -> String {
    let m = delivery.message();
    let mut text = format!("--- {} {} key={} at {} ms", m.stream, m.id, m.key_str().unwrap_or("-"), millis(delivery));
    if let Some(content_type) = &m.content_type {
        text.push_str(&format!("\ncontent-type: {content_type}"));
    }
    for (name, value) in m.headers.iter() {
        text.push_str(&format!("\n{name}: {value}"));
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&m.payload));
    text
}
