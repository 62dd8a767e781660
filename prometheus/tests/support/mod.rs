//! Reading the exposition text as a scraper does.
#![allow(dead_code)]

use std::time::Duration;

use tidewater_prometheus::PrometheusMetrics;

/// The sum of the samples of `name` whose labels include every one of `labels`; `None`
/// when no sample matches.
pub(crate) fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, sample)) = line.rsplit_once(' ') else { continue };
        let (metric, label_text) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name || !labels.iter().all(|(k, v)| label_text.split(',').any(|l| l == format!("{k}=\"{v}\""))) {
            continue;
        }
        let sample: f64 = sample.parse().unwrap_or_else(|_| panic!("a number in {line:?}"));
        *found.get_or_insert(0.0) += sample;
    }
    found
}

/// Renders until `done` holds for the text, as a scraper would see it over time; fails
/// after a minute naming `what` and showing the last text.
pub(crate) async fn until(metrics: &PrometheusMetrics, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics.render().await;
        if done(&text) {
            return text;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} within a minute; last scrape:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
