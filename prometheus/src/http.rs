//! A small HTTP endpoint: `/metrics` for Prometheus, `/health/live` and `/health/ready`
//! for orchestrators' probes. GET only, one request a connection; it needs no HTTP stack.

use std::time::Duration;

use tidewater_core::{Health, Monitor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::PrometheusMetrics;

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Answers on `listener` until the task is dropped or aborted:
///
/// - `GET /metrics`: [`PrometheusMetrics::render`], as OpenMetrics text;
/// - `GET /health/live`: 200 while every read task runs, else 503;
/// - `GET /health/ready`: 200 while every task is subscribed and the driver connected,
///   else 503.
///
/// The health answers carry the [`Health`] as JSON, so a person curling them sees which
/// task is not ready. Returns only if accepting fails.
pub async fn serve(listener: TcpListener, metrics: PrometheusMetrics, monitor: Monitor) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let (metrics, monitor) = (metrics.clone(), monitor.clone());
        tokio::spawn(async move {
            if let Err(err) = answer(stream, &metrics, &monitor).await {
                tracing::debug!(error = %err, "a health or metrics request failed");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, metrics: &PrometheusMetrics, monitor: &Monitor) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return respond(&mut stream, 408, "text/plain", "request timeout\n").await,
    };
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" {
        return respond(&mut stream, 405, "text/plain", "only GET is served\n").await;
    }
    // A query string does not change the answer.
    match target.split('?').next().unwrap_or("") {
        "/metrics" => {
            let text = metrics.render().await;
            respond(&mut stream, 200, "application/openmetrics-text; version=1.0.0; charset=utf-8", &text).await
        }
        "/health/live" => {
            let health = monitor.health();
            respond(&mut stream, if health.live { 200 } else { 503 }, "application/json", &as_json(&health)).await
        }
        "/health/ready" => {
            let health = monitor.health();
            respond(&mut stream, if health.ready { 200 } else { 503 }, "application/json", &as_json(&health)).await
        }
        _ => respond(&mut stream, 404, "text/plain", "not found: /metrics, /health/live, /health/ready\n").await,
    }
}

/// The request line and headers, up to the blank line.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

async fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

fn as_json(health: &Health) -> String {
    let tasks: Vec<serde_json::Value> = health
        .tasks
        .iter()
        .map(|t| {
            serde_json::json!({
                "topic": t.topic,
                "group": t.group,
                "running": t.running,
                "subscribed": t.subscribed,
                "restarts": t.restarts,
                "paused": t.paused,
            })
        })
        .collect();
    let value = serde_json::json!({
        "live": health.live,
        "ready": health.ready,
        "connected": health.connected,
        "tasks": tasks,
    });
    format!("{value}\n")
}
