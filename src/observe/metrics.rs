//! Metric families for the Prometheus text exposition (written with the
//! `prometheus` crate; `runtime::exposition` fills them), and the one metric
//! the request path records itself, a lock-free histogram.
//!
//! The request path only touches what it already keeps: plain atomics in the
//! proxy's and each backend's stats, plus that histogram. A scrape builds a
//! fresh registry from those numbers, so no label lookup, no lock and no
//! allocation happens per request for metrics. Names follow the
//! Prometheus conventions: `floatlb_` prefix, `_total` counters, base units.

use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Metrics the request path records directly.
pub struct RequestMetrics {
    /// Time from a request head being received to the response head being ready.
    pub duration: Histogram,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        // 250 µs .. ~16 s, doubling.
        let buckets = exponential_buckets(0.000_25, 2.0, 17).unwrap_or_default();
        let opts = HistogramOpts::new(
            "floatlb_request_duration_seconds",
            "Time from a client request head received to the response head ready.",
        )
        .buckets(buckets);
        RequestMetrics {
            duration: Histogram::with_opts(opts).unwrap_or_else(|_| {
                Histogram::with_opts(HistogramOpts::new("floatlb_request_duration_seconds", "-"))
                    .expect("default histogram options are valid")
            }),
        }
    }
}

/// Collects families into a scrape-local registry. Registration only fails on
/// a duplicate or invalid name, which is a programming error: it is logged and
/// that family skipped rather than failing the scrape.
pub struct Families {
    registry: Registry,
}

impl Default for Families {
    fn default() -> Self {
        Self::new()
    }
}

impl Families {
    pub fn new() -> Self {
        Families {
            registry: Registry::new(),
        }
    }

    pub fn add(&self, c: impl Collector + 'static) {
        if let Err(e) = self.registry.register(Box::new(c)) {
            tracing::error!(error = %e, "metric family not exported");
        }
    }

    pub fn counter(&self, name: &str, help: &str, v: u64) {
        if let Ok(c) = IntCounter::new(name, help) {
            c.inc_by(v);
            self.add(c);
        }
    }

    pub fn gauge(&self, name: &str, help: &str, v: i64) {
        if let Ok(g) = IntGauge::new(name, help) {
            g.set(v);
            self.add(g);
        }
    }

    pub fn gauge_f64(&self, name: &str, help: &str, v: f64) {
        if let Ok(g) = Gauge::new(name, help) {
            g.set(v);
            self.add(g);
        }
    }

    /// A labelled counter family from (label values, value) rows.
    pub fn counter_vec<'a>(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        rows: impl IntoIterator<Item = (Vec<&'a str>, u64)>,
    ) {
        if let Ok(v) = IntCounterVec::new(Opts::new(name, help), labels) {
            for (values, n) in rows {
                v.with_label_values(&values).inc_by(n);
            }
            self.add(v);
        }
    }

    /// A labelled gauge family from (label values, value) rows.
    pub fn gauge_vec<'a>(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        rows: impl IntoIterator<Item = (Vec<&'a str>, i64)>,
    ) {
        if let Ok(v) = IntGaugeVec::new(Opts::new(name, help), labels) {
            for (values, n) in rows {
                v.with_label_values(&values).set(n);
            }
            self.add(v);
        }
    }

    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
