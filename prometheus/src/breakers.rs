//! The circuit breakers' state, read from the breakers themselves at each scrape.

use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use tidewater_middleware::{CircuitBreaker, CircuitState};

/// The breakers watched.
#[derive(Default)]
pub(crate) struct BreakerCollector {
    breakers: Mutex<Vec<CircuitBreaker>>,
}

impl std::fmt::Debug for BreakerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerCollector").finish_non_exhaustive()
    }
}

const STATES: [(CircuitState, &str); 3] =
    [(CircuitState::Closed, "closed"), (CircuitState::Open, "open"), (CircuitState::HalfOpen, "half_open")];

impl BreakerCollector {
    pub(crate) fn watch(&self, breaker: CircuitBreaker) {
        self.breakers.lock().unwrap_or_else(|e| e.into_inner()).push(breaker);
    }
}

impl Collector for BreakerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if breakers.is_empty() {
            return Ok(());
        }
        // One series a state, 1 for the one it is in: an alert on `state="open"` then
        // needs no knowledge of how states are numbered.
        let mut family = encoder.encode_descriptor(
            "circuit_state",
            "1 for the state the circuit breaker is in (closed, open, half_open), 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for breaker in &breakers {
            let now = breaker.state();
            for (state, label) in STATES {
                let labels = [("breaker", breaker.name()), ("state", label)];
                ConstGauge::new(i64::from(now == state)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "circuit_held",
            "Deliveries the circuit breaker holds while it is open.",
            None,
            MetricType::Gauge,
        )?;
        for breaker in &breakers {
            let held = i64::try_from(breaker.held()).unwrap_or(i64::MAX);
            ConstGauge::new(held).encode(family.encode_family(&[("breaker", breaker.name())])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "circuit_opened",
            "Times the circuit breaker opened after being closed.",
            None,
            MetricType::Counter,
        )?;
        for breaker in &breakers {
            ConstCounter::new(breaker.times_opened()).encode(family.encode_family(&[("breaker", breaker.name())])?)?;
        }
        Ok(())
    }
}
