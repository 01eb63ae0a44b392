//! Logs go through `tracing`: human-readable locally, one JSON object a line
//! in Lambda (when `AWS_LAMBDA_FUNCTION_NAME` is set), which CloudWatch Logs
//! Insights reads field by field. No log line carries an IP address or a
//! User-Agent (privacy invariant 1), whatever `RUST_LOG` asks for.

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

const DEFAULT_FILTER: &str = "info,tokio_postgres=warn";

/// The most a library may say, however verbose the filter: below these
/// levels they print what a request carried. lambda_runtime logs the raw
/// event at TRACE (API Gateway's `sourceIp` and `userAgent`, every header);
/// tokio_postgres logs statement parameters at DEBUG (emails, tokens).
const CEILINGS: &[(&str, Level)] = &[("lambda_runtime", Level::DEBUG), ("lambda_http", Level::DEBUG), ("tokio_postgres", Level::INFO)];

fn below_ceiling(meta: &Metadata<'_>) -> bool {
    // A more verbose level compares greater in `tracing`.
    CEILINGS.iter().all(|(prefix, ceiling)| !meta.target().starts_with(prefix) || meta.level() <= ceiling)
}

/// `RUST_LOG` when set; else the level Lambda's logging controls pass in
/// `AWS_LAMBDA_LOG_LEVEL`; else info.
fn env_filter() -> EnvFilter {
    if let Ok(filter) = EnvFilter::try_from_default_env() {
        return filter;
    }
    let lambda_level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().map(|l| l.to_ascii_lowercase());
    match lambda_level.as_deref() {
        Some(level @ ("trace" | "debug" | "info" | "warn" | "error")) => EnvFilter::new(format!("{level},tokio_postgres=warn")),
        Some("fatal") => EnvFilter::new("error"),
        _ => EnvFilter::new(DEFAULT_FILTER),
    }
}

pub fn init() {
    let filter = env_filter().and(filter_fn(below_ceiling));
    let layer = if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        // CloudWatch stamps each line; the invocation's span (request id) is in `span`.
        fmt::layer().json().without_time().with_current_span(true).with_span_list(false).with_writer(std::io::stderr).boxed()
    } else {
        fmt::layer().with_writer(std::io::stderr).boxed()
    };
    // A second init (tests) keeps the first subscriber.
    drop(tracing_subscriber::registry().with(layer.with_filter(filter)).try_init());
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::callsite::Identifier;
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;

    struct Site;
    impl tracing::Callsite for Site {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!()
        }
    }
    static SITE: Site = Site;

    fn meta(target: &'static str, level: Level) -> Metadata<'static> {
        Metadata::new("event", target, level, None, None, None, FieldSet::new(&[], Identifier(&SITE)), Kind::EVENT)
    }

    #[test]
    fn libraries_that_print_requests_are_capped() {
        assert!(!below_ceiling(&meta("lambda_runtime::layers::api_response", Level::TRACE)));
        assert!(below_ceiling(&meta("lambda_runtime::runtime", Level::DEBUG)));
        assert!(!below_ceiling(&meta("lambda_runtime_api_client", Level::TRACE)));
        assert!(!below_ceiling(&meta("tokio_postgres::query", Level::DEBUG)));
        assert!(below_ceiling(&meta("tokio_postgres::connection", Level::WARN)));
        assert!(below_ceiling(&meta("engagetrack_server::ingest", Level::TRACE)));
    }
}
