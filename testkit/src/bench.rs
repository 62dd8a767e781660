//! What the throughput benches share: a counter their handlers hit, the payload, the
//! message count from the environment, and the statistics they print.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

mod targets;

pub use targets::{print_targets, Goal, Target};

/// How many messages a bench sends: `TW_BENCH_MESSAGES`, else `default`.
pub fn messages_from_env(default: usize) -> usize {
    count_from_env("TW_BENCH_MESSAGES", default)
}

/// A count a bench takes from the environment variable `name`, else `default` (also
/// when the value is not a number).
pub fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A payload of `len` bytes.
pub fn payload(len: usize) -> bytes::Bytes {
    bytes::Bytes::from(vec![7u8; len])
}

/// Messages a second.
pub fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

/// The median of the runs' figures (NaN for none).
pub fn median(mut figures: Vec<f64>) -> f64 {
    if figures.is_empty() {
        return f64::NAN;
    }
    figures.sort_by(f64::total_cmp);
    figures[figures.len() / 2]
}

/// The `p` quantile (0 to 1) of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The CPU time this process has used so far, on all its threads, those that have ended
/// included (not its children, such as a broker it started), to the nanosecond.
///
/// Next to a rate it says what a client costs: on a machine where the client shares its
/// cores with a broker, the rate moves with what the broker does, while the client's CPU
/// time a message hardly does. (`/proc/self/stat` counts in steps of 10 ms, a
/// microsecond a message over a core NATS run of 10,000.)
pub fn process_cpu() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid `timespec` for the call to write, and lives through it.
    let failed = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) } != 0;
    assert!(!failed, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID): {}", std::io::Error::last_os_error());
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The CPU time the JIT compiler threads of JVM `pid` (a broker the bench started) have
/// used so far. A JVM just started compiles its hot paths as load reaches them, for tens
/// of seconds, on the cores the clients measured beside it use too.
pub fn jit_cpu(pid: u32) -> Duration {
    let tasks = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&tasks).unwrap_or_else(|e| panic!("read {tasks}: {e}"));
    entries
        .filter_map(|task| task.ok())
        .filter(|task| {
            // HotSpot names them "C1 CompilerThread0", "C2 CompilerThread1", ...
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.contains("CompilerThre"))
        })
        .map(|task| cpu_of(&format!("{pid}/task/{}", task.file_name().to_string_lossy())))
        .sum()
}

fn cpu_of(process: &str) -> Duration {
    let path = format!("/proc/{process}/stat");
    let stat = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    // The command name, in parentheses, may hold spaces: the fields start after it.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    // utime and stime, fields 14 and 15 of the whole line, in clock ticks (USER_HZ, 100
    // on Linux whatever the kernel's own tick).
    let ticks: u64 = fields[11..13].iter().map(|f| f.parse::<u64>().expect("a tick count")).sum();
    Duration::from_millis(ticks * 10)
}

/// What a measured piece of work cost the process: CPU time on all its threads, and heap
/// allocations made through Rust's allocator (counted where the bench's allocator is
/// [`Counting`]; a C library's own allocations, such as librdkafka's, are not).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cost {
    /// CPU time.
    pub cpu: Duration,
    /// Allocations.
    pub allocations: u64,
}

/// Runs `work`, returning what it returns and what it cost the process.
pub async fn measured<T>(work: impl std::future::Future<Output = T>) -> (T, Cost) {
    let (cpu, allocations) = (process_cpu(), allocations());
    let out = work.await;
    (out, Cost { cpu: process_cpu().saturating_sub(cpu), allocations: self::allocations() - allocations })
}

/// Counts what handlers saw, remembers when the first arrived, and wakes the bench at
/// the last.
#[derive(Debug)]
pub struct Counter {
    seen: AtomicU64,
    target: u64,
    first: Mutex<Option<Instant>>,
    done: Notify,
}

impl Counter {
    /// A counter that wakes its waiter after `target` hits.
    pub fn new(target: usize) -> Arc<Self> {
        Arc::new(Self { seen: AtomicU64::new(0), target: target as u64, first: Mutex::new(None), done: Notify::new() })
    }

    /// Counts one message.
    pub fn hit(&self) {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 {
            *self.first.lock().unwrap() = Some(Instant::now());
        }
        if n == self.target {
            // notify_one keeps a permit when the waiter is not waiting yet.
            self.done.notify_one();
        }
    }

    /// How many were counted.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Waits for the last message (panics after `limit`); the time since the first.
    pub async fn wait(&self, limit: Duration) -> Duration {
        if self.seen() < self.target {
            let waited = tokio::time::timeout(limit, self.done.notified()).await;
            assert!(waited.is_ok(), "{} of {} messages arrived in {limit:?}", self.seen(), self.target);
        }
        self.first.lock().unwrap().map_or(Duration::ZERO, |first| first.elapsed())
    }
}

/// Runs the two sides of a paired measurement one after the other, the raw client
/// first on even runs and ours first on odd ones, so that neither always meets a warmer
/// broker. Returns (raw, ours).
pub async fn paired<T>(
    run: usize,
    raw: impl std::future::Future<Output = T>,
    ours: impl std::future::Future<Output = T>,
) -> (T, T) {
    if run.is_multiple_of(2) {
        let r = raw.await;
        (r, ours.await)
    } else {
        let o = ours.await;
        (raw.await, o)
    }
}

/// Paired figures (messages a second) per path, printed as a table of medians with the
/// median of the runs' ratios ours / raw; and, for the paths whose sides were [`measured`], the process's CPU
/// time and allocations a message on each side.
#[derive(Debug)]
pub struct Ratios {
    raw: &'static str,
    rows: Vec<Row>,
}

/// One path's runs: rates and, where measured, CPU time (microseconds) and allocations a
/// message.
#[derive(Debug, Default)]
struct Row {
    name: &'static str,
    raw: Vec<f64>,
    ours: Vec<f64>,
    raw_cpu: Vec<f64>,
    ours_cpu: Vec<f64>,
    raw_allocations: Vec<f64>,
    ours_allocations: Vec<f64>,
}

impl Row {
    fn ratio(&self) -> f64 {
        median(self.ours.iter().zip(&self.raw).map(|(ours, raw)| ours / raw).collect())
    }
}

impl Ratios {
    /// A table of `paths`, with the raw side's column called `raw` ("raw rdkafka").
    pub fn new(raw: &'static str, paths: &[&'static str]) -> Self {
        Self { raw, rows: paths.iter().map(|&name| Row { name, ..Row::default() }).collect() }
    }

    /// Adds one run of path `row`: `n` messages in `raw` and in `ours`.
    pub fn push(&mut self, row: usize, n: usize, (raw, ours): (Duration, Duration)) {
        self.push_rates(row, rate(n, raw), rate(n, ours));
    }

    /// Adds one run of path `row` as rates.
    pub fn push_rates(&mut self, row: usize, raw: f64, ours: f64) {
        self.rows[row].raw.push(raw);
        self.rows[row].ours.push(ours);
    }

    /// Adds one run of path `row` whose sides were [`measured`]: `n` messages, each
    /// side's time and cost.
    pub fn push_measured(&mut self, row: usize, n: usize, (raw, ours): ((Duration, Cost), (Duration, Cost))) {
        self.push(row, n, (raw.0, ours.0));
        let row = &mut self.rows[row];
        for (cost, cpu, allocations) in [
            (raw.1, &mut row.raw_cpu, &mut row.raw_allocations),
            (ours.1, &mut row.ours_cpu, &mut row.ours_allocations),
        ] {
            cpu.push(cost.cpu.as_secs_f64() * 1e6 / n as f64);
            allocations.push(cost.allocations as f64 / n as f64);
        }
    }

    /// The ratio of path `row`, ours over raw, as [`Ratios::print`] shows it: the median
    /// of each run's own ratio, since the two sides of a run ran back to back while the
    /// medians of each side alone can come from runs minutes apart (NaN for a path not
    /// run).
    pub fn ratio(&self, row: usize) -> f64 {
        self.rows[row].ratio()
    }

    /// Prints [`Ratios::table`].
    pub fn print(&self) {
        print!("{}", self.table());
    }

    /// The medians as a Markdown table, leaving out the paths not run.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let path = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
        let raw = format!("{} msg/s", self.raw);
        let w = raw.len();
        let costs = self.rows.iter().any(|r| !r.raw_cpu.is_empty());
        let (costs_head, costs_rule) = if costs {
            (
                " raw CPU µs/msg | tidewater CPU µs/msg | raw allocations/msg | tidewater allocations/msg |",
                "----------------|----------------------|---------------------|---------------------------|",
            )
        } else {
            ("", "")
        };
        let _ = writeln!(out, "| {:<path$} | {raw} | tidewater msg/s | ratio |{costs_head}", "path");
        let _ = writeln!(out, "|{}|{}|-----------------|-------|{costs_rule}", "-".repeat(path + 2), "-".repeat(w + 2));
        for row in self.rows.iter().filter(|row| !row.raw.is_empty()) {
            let (r, o) = (median(row.raw.clone()), median(row.ours.clone()));
            let costs = if costs {
                format!(
                    " {:>14.2} | {:>20.2} | {:>19.1} | {:>25.1} |",
                    median(row.raw_cpu.clone()),
                    median(row.ours_cpu.clone()),
                    median(row.raw_allocations.clone()),
                    median(row.ours_allocations.clone())
                )
            } else {
                String::new()
            };
            let _ = writeln!(out, "| {:<path$} | {r:>w$.0} | {o:>15.0} | {:>5.2} |{costs}", row.name, row.ratio());
        }
        out
    }
}

/// Writes `n` messages of `payload_len` bytes to `topic` through `writer`, in batches of
/// `batch` that each wait for their acknowledgements, keyed over 64 keys with ids
/// `<topic>-<i>`, as the raw rows of the driver benches send them: the time it took.
pub async fn produce(
    writer: Arc<dyn tidewater_core::Writer>,
    topic: &str,
    n: usize,
    batch: usize,
    payload_len: usize,
) -> Duration {
    use tidewater_core::Message;

    let p = payload(payload_len);
    let started = std::time::Instant::now();
    for start in (0..n).step_by(batch) {
        let messages: Vec<Message> = (start..(start + batch).min(n))
            .map(|i| Message::new(topic, p.clone()).with_id(format!("{topic}-{i}")).with_key(format!("k{}", i % 64)))
            .collect();
        writer.write(messages).await.expect("write a batch");
    }
    started.elapsed()
}

/// Reads `n` messages with `task` through `reader`, each handled by a handler that checks
/// its payload has `payload_len` bytes and counts it: the time from the first message to
/// the last, as a service's subscriber would see it.
pub async fn consume(
    reader: Arc<dyn tidewater_core::Reader>,
    task: tidewater_core::ReadTask,
    n: usize,
    payload_len: usize,
) -> Duration {
    use tidewater_core::{handler_fn, Delivery, EventRegistry, HandlerError, SubscriberScheduler};

    let counter = Counter::new(n);
    let c = Arc::clone(&counter);
    let handler = handler_fn(move |d: Delivery| {
        assert_eq!(d.message().payload.len(), payload_len);
        c.hit();
        async { Ok::<_, HandlerError>(()) }
    });
    let mut scheduler = SubscriberScheduler::new(reader, EventRegistry::new());
    scheduler.add(task, Arc::new(handler));
    scheduler.start().await.expect("subscribe");
    let elapsed = counter.wait(Duration::from_secs(300)).await;
    scheduler.shutdown(Duration::from_secs(10)).await;
    elapsed
}

/// `n` deliveries as a consumer's fetch makes them, numbered from `from`, for what calls
/// a handler directly (a middleware chain's bench and tests): each with its own default
/// id (a UUIDv7, 36 characters, which deduplication keeps) and a consumer group's name,
/// all sharing one 1 KiB payload, which no middleware reads.
pub fn deliveries(from: usize, n: usize) -> Vec<tidewater_core::Delivery> {
    use tidewater_core::{Delivery, IdFactory, Message, Position, UuidV7Ids};

    let payload = payload(1024);
    let group: Arc<str> = Arc::from("order-service");
    (from..from + n)
        .map(|i| {
            let message = Message::new("bench", payload.clone()).with_id(UuidV7Ids.next_id());
            let position = Position::Queue { partition: Some(0), sequence: Some(i as u64) };
            Delivery::new(message, 1, position, Some(Arc::clone(&group)))
        })
        .collect()
}

/// Counts heap allocations, so that a bench can say how many a message costs. A bench
/// makes it its allocator:
///
/// ```text
/// #[global_allocator]
/// static GLOBAL: tidewater_testkit::bench::Counting = tidewater_testkit::bench::Counting;
/// ```
///
/// and reads [`allocations`] before and after what it times.
#[derive(Debug)]
pub struct Counting;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Allocations (and reallocations) made so far, where [`Counting`] is the allocator.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

// SAFETY: every call goes to the system allocator as it is; counting is all it adds.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

/// [`Counting`], that also keeps the bytes live on the heap, for tests that hold a
/// figure to a bound: what a held message costs, or what a path leaves allocated. Its
/// frees touch a counter shared by every thread, which [`Counting`]'s do not: a bench
/// that times a path should keep to [`Counting`].
#[derive(Debug)]
pub struct Tracking;

static LIVE_BYTES: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

/// Bytes allocated and not yet freed, where [`Tracking`] is the allocator.
pub fn live_bytes() -> isize {
    LIVE_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

// SAFETY: every call goes to `Counting`, which passes it to the system allocator as it
// is; keeping the count of bytes is all this adds.
unsafe impl std::alloc::GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::GlobalAlloc::alloc(&Counting, layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::GlobalAlloc::dealloc(&Counting, ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::GlobalAlloc::realloc(&Counting, ptr, layout, new_size) }
    }
}

/// This process's resident set size, in KiB (Linux).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of kB")
}

/// How far the resident set grew above `before` (KiB) by the time it stopped growing:
/// for two seconds by more than 64 KiB, or a minute at most.
pub async fn rss_growth_until_steady(before: u64) -> u64 {
    let (mut last, mut since) = (rss_kib(), std::time::Instant::now());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while since.elapsed() < Duration::from_secs(2) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = rss_kib();
        if now > last + 64 {
            (last, since) = (now, std::time::Instant::now());
        }
    }
    last.saturating_sub(before)
}

/// Subscribes `task` through `reader` with a handler that never finishes, so the reader
/// fills all the read-ahead it allows and stops, and returns how much the resident set
/// grew (KiB). Measure in a process of its own: a resident set only grows within one.
pub async fn read_ahead_kib(reader: Arc<dyn tidewater_core::Reader>, task: tidewater_core::ReadTask) -> u64 {
    use tidewater_core::{handler_fn, Delivery, EventRegistry, HandlerError, SubscriberScheduler};

    let mut scheduler = SubscriberScheduler::new(reader, EventRegistry::new());
    let before = rss_kib();
    let handler = handler_fn(|_d: Delivery| async move {
        std::future::pending::<()>().await;
        Ok::<_, HandlerError>(())
    });
    scheduler.add(task, Arc::new(handler));
    scheduler.start().await.expect("subscribe");
    rss_growth_until_steady(before).await
}

/// Writes `n` messages of 1 KiB to `topic`, keyed over 64 keys, in writes of 1,000: a
/// backlog for a reader to find.
pub async fn write_backlog(writer: &dyn tidewater_core::Writer, topic: &str, n: usize) {
    let payload = payload(1024);
    for start in (0..n).step_by(1000) {
        let batch = (start..(start + 1000).min(n))
            .map(|i| tidewater_core::Message::new(topic, payload.clone()).with_key(format!("k{}", i % 64)))
            .collect();
        writer.write(batch).await.expect("write the backlog");
    }
}

/// Runs this bench again as a process of its own with `env` set, and returns the number
/// it prints: for a measurement a process must make alone (a resident set only grows
/// within one).
pub fn measured_alone(env: &[(&str, String)]) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().expect("this executable"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("the measuring process runs");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a figure from the measuring process")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_is_the_median_of_each_runs_own() {
        let mut table = Ratios::new("raw", &["path"]);
        // Run by run, ours ran at half of raw twice and at twice raw once: a median of
        // 0.5, where the median of each side alone gives 200 over 200.
        table.push_rates(0, 100.0, 50.0);
        table.push_rates(0, 400.0, 200.0);
        table.push_rates(0, 200.0, 400.0);
        assert_eq!(table.ratio(0), 0.5);
        assert!(Ratios::new("raw", &["never run"]).ratio(0).is_nan());
    }

    #[test]
    fn a_path_not_run_is_left_out_of_the_table() {
        let mut table = Ratios::new("raw", &["run", "skipped"]);
        table.push_rates(0, 100.0, 50.0);
        let printed = table.table();
        assert!(printed.contains("| run "), "{printed}");
        assert!(!printed.contains("skipped") && !printed.contains("NaN"), "{printed}");
        assert_eq!(printed.lines().count(), 3, "{printed}");
    }
}
