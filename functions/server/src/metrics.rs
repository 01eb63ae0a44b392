//! Operational metrics in the Prometheus text format (OpenMetrics), served at
//! `GET /metrics` to a caller holding the `metrics-token` secret.
//!
//! One registry per process, as Prometheus expects of an exporter: every
//! counter here describes the process, not one `AppState` (tests that start
//! several apps in one process compare deltas).

use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What happened to one beacon or one event of a signed batch.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Committed to storage.
    Stored,
    /// Already stored by an earlier delivery of the same id.
    Duplicate,
    /// Dropped as a bot (the sender still got a 2xx).
    Bot,
    /// Dropped by the site's allowed hostnames or excluded paths.
    Filtered,
    /// Not stored, with the reason in `Refusal`.
    Refused,
}

/// Why an event was refused (the sender got a 4xx or 503).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Refusal {
    None,
    /// The beacon or batch did not parse or validate (400/413/415).
    Invalid,
    UnknownSite,
    InactiveSite,
    /// Storage could not commit it (503): the sender retries.
    Unavailable,
    /// A signed batch whose signature did not verify (401).
    BadSignature,
    /// Events of a signed batch for a site that is unknown or not accepting events.
    SiteNotAccepting,
    /// The organisation used its quota and grace (402); counted in `quota_drops` too.
    OverQuota,
    /// The site sent more beacons a second than `ENGAGETRACK_SITE_BEACON_RATE` allows (429).
    RateLimited,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngestLabels {
    /// `beacon` (POST /api/e) or `batch` (POST /ingest/batch).
    pub path: Path,
    pub outcome: Outcome,
    pub reason: Refusal,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Path {
    Beacon,
    Batch,
    /// Plausible's Events API, `POST /api/event`.
    Plausible,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatsLabels {
    /// `query` (Stats API v2), `realtime`.
    pub kind: StatsKind,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum StatsKind {
    Query,
    Realtime,
}

/// Label values in snake_case, as Prometheus names go.
macro_rules! label_values {
    ($($ty:ty { $($variant:ident => $name:literal),* $(,)? })*) => {$(
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                use std::fmt::Write;
                encoder.write_str(match self { $(Self::$variant => $name),* })
            }
        }
    )*};
}

label_values! {
    Outcome { Stored => "stored", Duplicate => "duplicate", Bot => "bot", Filtered => "filtered", Refused => "refused" }
    Refusal { None => "", Invalid => "invalid", UnknownSite => "unknown_site", InactiveSite => "inactive_site", Unavailable => "unavailable", BadSignature => "bad_signature", SiteNotAccepting => "site_not_accepting", OverQuota => "over_quota", RateLimited => "rate_limited" }
    Path { Beacon => "beacon", Batch => "batch", Plausible => "plausible" }
    StatsKind { Query => "query", Realtime => "realtime" }
}

pub struct Metrics {
    registry: Registry,
    ingest: Family<IngestLabels, Counter>,
    commit_seconds: Histogram,
    commit_events: Histogram,
    commit_failures: Counter,
    queue_depth: Gauge,
    stats_seconds: Family<StatsLabels, Histogram>,
    mail_outbox: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Latency buckets from 0.5 ms to ~16 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 16)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("engagetrack");
        let ingest = Family::<IngestLabels, Counter>::default();
        registry.register("ingest_events", "Beacons and batch events by path and outcome (refused ones by reason)", ingest.clone());
        let commit_seconds = Histogram::new(latency_buckets());
        registry.register("ingest_commit_seconds", "Time to write and commit one group-commit transaction", commit_seconds.clone());
        let commit_events = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 13));
        registry.register("ingest_commit_events", "Events per group-commit transaction", commit_events.clone());
        let commit_failures = Counter::default();
        registry.register("ingest_commit_failures", "Group-commit transactions that failed (their senders got 503)", commit_failures.clone());
        let queue_depth = Gauge::default();
        registry.register("ingest_queue_depth", "Events waiting in the group-commit queue", queue_depth.clone());
        let stats_seconds = Family::<StatsLabels, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()));
        registry.register("stats_query_seconds", "Time to answer a stats query, by kind", stats_seconds.clone());
        let mail_outbox = Gauge::default();
        registry.register("mail_outbox_messages", "Messages in the mail outbox not yet sent or failed (read at scrape time)", mail_outbox.clone());
        Self { registry, ingest, commit_seconds, commit_events, commit_failures, queue_depth, stats_seconds, mail_outbox }
    }

    pub fn count_ingest(&self, path: Path, outcome: Outcome, reason: Refusal, events: u64) {
        if events > 0 {
            self.ingest.get_or_create(&IngestLabels { path, outcome, reason }).inc_by(events);
        }
    }

    pub fn ingest_count(&self, path: Path, outcome: Outcome, reason: Refusal) -> u64 {
        self.ingest.get_or_create(&IngestLabels { path, outcome, reason }).get()
    }

    pub fn observe_commit(&self, started: Instant, events: usize, ok: bool) {
        self.commit_seconds.observe(started.elapsed().as_secs_f64());
        self.commit_events.observe(events as f64);
        if !ok {
            self.commit_failures.inc();
        }
    }

    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    pub fn observe_stats(&self, kind: StatsKind, started: Instant) {
        self.stats_seconds.get_or_create(&StatsLabels { kind }).observe(started.elapsed().as_secs_f64());
    }

    pub fn set_mail_outbox(&self, messages: i64) {
        self.mail_outbox.set(messages);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_names_each_metric_with_its_labels() {
        let m = Metrics::new();
        m.count_ingest(Path::Beacon, Outcome::Refused, Refusal::UnknownSite, 2);
        m.count_ingest(Path::Batch, Outcome::Stored, Refusal::None, 5);
        m.observe_commit(Instant::now(), 5, true);
        m.set_queue_depth(3);
        let text = m.encode();
        assert!(text.contains(r#"engagetrack_ingest_events_total{path="beacon",outcome="refused",reason="unknown_site"} 2"#), "{text}");
        assert!(text.contains(r#"engagetrack_ingest_events_total{path="batch",outcome="stored",reason=""} 5"#), "{text}");
        assert!(text.contains("engagetrack_ingest_queue_depth 3"), "{text}");
        assert!(text.contains("engagetrack_ingest_commit_seconds_count 1"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[test]
    fn zero_events_adds_no_series() {
        let m = Metrics::new();
        m.count_ingest(Path::Beacon, Outcome::Bot, Refusal::None, 0);
        assert!(!m.encode().contains("bot"));
    }
}
