//! Message headers as a carrier of trace context.

use opentelemetry::propagation::{Extractor, Injector};
use tidewater_core::Headers;

/// Writes the propagator's fields into headers.
pub(crate) struct HeaderInjector<'a>(pub(crate) &'a mut Headers);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value);
    }
}

/// Reads the propagator's fields from headers.
pub(crate) struct HeaderExtractor<'a>(pub(crate) &'a Headers);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k).collect()
    }
}
