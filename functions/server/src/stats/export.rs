//! A site's stats as CSV, for GDPR portability and spreadsheets: daily
//! totals, then top pages and sources, each line tagged with its section.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::{Value, json};

use super::engine::{StatsSite, query};
use super::error::StatsError;
use super::request::QueryRequest;

const TOP: u64 = 100;
const METRICS: [&str; 5] = ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"];

/// `date_range` takes what a query's `date_range` takes ("30d", ["2026-01-01", "2026-01-31"], ...).
pub async fn export_csv(pool: &Pool, site: &StatsSite, date_range: Value, now: DateTime<Utc>) -> Result<String, StatsError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let header = ["section", "key"].into_iter().chain(METRICS);
    out.write_record(header).map_err(csv_error)?;
    for (section, dimension) in [("day", "time:day"), ("page", "event:page"), ("source", "visit:source")] {
        let request: QueryRequest = serde_json::from_value(json!({
            "site_id": site.id.to_string(), "metrics": METRICS, "date_range": date_range.clone(), "dimensions": [dimension],
            "pagination": {"limit": if section == "day" { 10_000 } else { TOP }},
        }))
        .map_err(|e| StatsError::InvalidJson(e.to_string()))?;
        for row in query(pool, site, request, now).await?.results {
            let values = row.metrics.iter().map(Value::to_string);
            let record: Vec<String> = [section.to_owned(), row.dimensions.concat()].into_iter().chain(values).collect();
            out.write_record(&record).map_err(csv_error)?;
        }
    }
    let bytes = out.into_inner().map_err(|e| StatsError::Csv(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| StatsError::Csv(e.to_string()))
}

fn csv_error(e: csv::Error) -> StatsError {
    StatsError::Csv(e.to_string())
}
