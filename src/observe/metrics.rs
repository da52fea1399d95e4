//! Metric families for the Prometheus text exposition (written with the
//! `prometheus` crate; `runtime::admin::exposition` fills them), and the one metric
//! the request path records itself, a lock-free histogram.
//!
//! The request path only touches what it already keeps: plain atomics in the
//! proxy's and each backend's stats, plus that histogram. A scrape builds a
//! fresh registry from those numbers, so no label lookup, no lock and no
//! allocation happens per request for metrics. Names follow the
//! Prometheus conventions: `floatlb_` prefix, `_total` counters, base units.

use std::collections::HashMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
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

    /// A labelled histogram family from counts kept elsewhere (the VRRP
    /// thread's atomics): one row per label set with cumulative
    /// (upper bound, count) buckets, the total count and the sum.
    pub fn histogram_vec(&self, name: &str, help: &str, labels: &[&str], rows: Vec<HistogramRow>) {
        let desc = match Desc::new(
            name.into(),
            help.into(),
            labels.iter().map(|l| l.to_string()).collect(),
            HashMap::new(),
        ) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, name, "metric family not exported");
                return;
            }
        };
        let metrics = rows
            .into_iter()
            .map(|row| {
                let pairs = labels
                    .iter()
                    .zip(row.labels)
                    .map(|(n, v)| {
                        let mut p = LabelPair::default();
                        p.set_name(n.to_string());
                        p.set_value(v);
                        p
                    })
                    .collect();
                let mut h = proto::Histogram::default();
                h.set_sample_count(row.count);
                h.set_sample_sum(row.sum);
                h.set_bucket(
                    row.buckets
                        .into_iter()
                        .map(|(le, n)| {
                            let mut b = proto::Bucket::default();
                            b.set_upper_bound(le);
                            b.set_cumulative_count(n);
                            b
                        })
                        .collect(),
                );
                let mut m = proto::Metric::from_label(pairs);
                m.set_histogram(h);
                m
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(name.into());
        family.set_help(help.into());
        family.set_field_type(MetricType::HISTOGRAM);
        family.set_metric(metrics);
        self.add(ConstFamily { desc, family });
    }

    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// One label set of [`Families::histogram_vec`].
pub struct HistogramRow {
    pub labels: Vec<String>,
    /// (upper bound, observations at or below it), bounds ascending; +Inf is implied by `count`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

/// A family whose samples were computed before registration.
struct ConstFamily {
    desc: Desc,
    family: MetricFamily,
}

impl Collector for ConstFamily {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        vec![self.family.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_rows_encode_as_cumulative_buckets_with_inf() {
        let f = Families::new();
        f.histogram_vec(
            "floatlb_test_gap_seconds",
            "Test.",
            &["instance", "vrid"],
            vec![HistogramRow {
                labels: vec!["vrrp0-51".into(), "51".into()],
                buckets: vec![(0.01, 1), (0.1, 3)],
                count: 4,
                sum: 1.5,
            }],
        );
        let text = f.encode();
        for line in [
            "# TYPE floatlb_test_gap_seconds histogram",
            "floatlb_test_gap_seconds_bucket{instance=\"vrrp0-51\",vrid=\"51\",le=\"0.01\"} 1",
            "floatlb_test_gap_seconds_bucket{instance=\"vrrp0-51\",vrid=\"51\",le=\"0.1\"} 3",
            "floatlb_test_gap_seconds_bucket{instance=\"vrrp0-51\",vrid=\"51\",le=\"+Inf\"} 4",
            "floatlb_test_gap_seconds_sum{instance=\"vrrp0-51\",vrid=\"51\"} 1.5",
            "floatlb_test_gap_seconds_count{instance=\"vrrp0-51\",vrid=\"51\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
