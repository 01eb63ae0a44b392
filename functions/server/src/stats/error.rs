use thiserror::Error;

/// Everything a stats call can fail with. [`StatsError::is_client_error`]
/// tells the route which ones are the caller's (400) and which are ours (5xx).
#[derive(Debug, Error)]
pub enum StatsError {
    #[error("invalid request body: {0}")]
    InvalidJson(String),
    #[error("unknown metric `{0}`")]
    UnknownMetric(String),
    #[error("unknown dimension `{0}`")]
    UnknownDimension(String),
    #[error("invalid date range: {0}")]
    InvalidDateRange(String),
    #[error("the date range spans {days} days; at most {max} are allowed")]
    RangeTooLong { days: i64, max: i64 },
    #[error("too many time buckets: {buckets} (at most {max}); use a coarser time dimension or a shorter range")]
    TooManyBuckets { buckets: i64, max: i64 },
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    #[error("invalid regular expression `{pattern}`: {reason}")]
    InvalidRegex { pattern: String, reason: String },
    #[error("invalid query: {0}")]
    InvalidCombination(String),
    #[error("invalid order_by: {0}")]
    InvalidOrderBy(String),
    #[error("invalid pagination: {0}")]
    InvalidPagination(String),
    #[error("invalid funnel: {0}")]
    InvalidFunnel(String),
    /// Funnels read raw events; a range too big for the statement timeout is the caller's to narrow.
    #[error("the funnel took longer than the 20 s a stats statement may take: ask for a shorter date_range or a narrower first step")]
    FunnelTooSlow,
    #[error("invalid include: {0}")]
    InvalidInclude(String),
    #[error("the site's timezone `{0}` is not known to the database")]
    SiteTimezone(String),
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {}", db_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("CSV: {0}")]
    Csv(String),
}

impl StatsError {
    /// True when the request itself is at fault: answer 400 with the message.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, StatsError::SiteTimezone(_) | StatsError::Pool(_) | StatsError::Postgres(_) | StatsError::Csv(_))
    }
}

/// tokio-postgres shows "db error" alone; the server's message is what helps.
fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map_or_else(|| e.to_string(), |d| format!("{} ({})", d.message(), d.code().code()))
}
