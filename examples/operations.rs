//! A service's `main` as it runs in production: metrics with consumer lag, traces
//! across the broker, a health and metrics endpoint, and a run that lasts until the
//! orchestrator sends SIGTERM, then drains.
//!
//! Run it with `cargo run --example operations --features prometheus,otel`. It
//! publishes a few orders to itself, shows what a probe and a scrape see, pauses and
//! resumes billing as an operator would through an admin endpoint of the service's own,
//! and then sends itself SIGTERM, as Kubernetes or systemd would, to end the run.

use std::time::Duration;

use tidewater::memory::MemoryBroker;
use tidewater::prometheus::PrometheusMetrics;
use tidewater::testing::Recorder;
use tidewater::{Bus, EventRegistry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, EventRegistry::new());
    let metrics = PrometheusMetrics::new();
    metrics.instrument(&mut bus);
    tidewater::otel::instrument(&mut bus);
    let billed = Recorder::new();
    bus.subscribe("orders", billed.clone()).group("billing");

    // The endpoint a Prometheus scrape and the orchestrator's probes call.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = listener.local_addr()?;
    println!("serving /metrics, /health/live and /health/ready on http://{endpoint}");
    tokio::spawn(tidewater::prometheus::serve(listener, metrics.clone(), bus.monitor()));

    // What the rest of this service would do meanwhile: here, publish and look.
    let publisher = bus.publisher().clone();
    let monitor = bus.monitor();
    tokio::spawn(async move {
        let work = async {
            for order in ["o-1", "o-2", "o-3"] {
                publisher.publish_bytes("orders", order, "text/plain").await?;
            }
            billed.wait_for(3, Duration::from_secs(10)).await?;
            println!("GET /health/ready -> {}", get(endpoint, "/health/ready").await?.lines().next().unwrap_or(""));
            let scrape = get(endpoint, "/metrics").await?;
            for line in scrape.lines().filter(|l| l.starts_with("tidewater_messages_acked_total")) {
                println!("GET /metrics      -> {line}");
            }
            // Billing's database is being moved: billing stands still, the service runs on.
            println!("pausing billing: {} task", monitor.pause("orders", Some("billing")));
            publisher.publish_bytes("orders", "o-4", "text/plain").await?;
            let scrape = get(endpoint, "/metrics").await?;
            for line in scrape.lines().filter(|l| l.starts_with("tidewater_task_paused")) {
                println!("GET /metrics      -> {line}");
            }
            monitor.resume("orders", Some("billing"));
            billed.wait_for(4, Duration::from_secs(10)).await?;
            println!("resumed billing: o-4 billed");
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        };
        if let Err(err) = work.await {
            eprintln!("operations example: {err}");
        }
        // As the orchestrator would at a rollout.
        println!("sending SIGTERM to this process");
        let _ = std::process::Command::new("kill").args(["-TERM", &std::process::id().to_string()]).status();
    });

    let report = bus.run_until_stopped(Duration::from_secs(10)).await?;
    println!("drained and stopped: {} acked, clean: {}", report.acked(), report.is_clean());
    Ok(())
}

/// `GET path` on the endpoint: the status line, then the body.
async fn get(endpoint: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(endpoint).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(format!("{status}\n{body}"))
}
