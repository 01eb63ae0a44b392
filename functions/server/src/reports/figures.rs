//! A report's numbers, asked of the stats engine as Stats API v2 queries, so
//! a report says exactly what `POST /api/v2/query` says for the same site and
//! dates. No metric is computed here; only the change against the period
//! before, with the API's own rule ([`crate::stats::response::change`]).

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::{Value, json};

use super::{Period, TOP_ROWS};
use crate::stats::request::Metric;
use crate::stats::response::change;
use crate::stats::{self, QueryRequest, QueryResponse, StatsError, StatsSite};

/// The headline metrics, in the order a report shows them.
pub const HEADLINE: [Metric; 4] = [Metric::Visitors, Metric::Pageviews, Metric::BounceRate, Metric::VisitDuration];

/// One headline figure: this period, the one before, and the change as the
/// API gives it (percent; points for the bounce rate; null from zero).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Figure {
    pub metric: &'static str,
    pub value: Value,
    pub previous: Value,
    pub change: Value,
}

/// A row of a top list: its name and its numbers (visitors first).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TopRow {
    pub name: String,
    pub visitors: i64,
    /// Pageviews for pages, conversions (goal events) for goals, none for sources.
    pub second: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    pub period: Period,
    pub previous: Period,
    pub figures: Vec<Figure>,
    pub top_pages: Vec<TopRow>,
    pub top_sources: Vec<TopRow>,
    pub top_goals: Vec<TopRow>,
    /// Visitors of each day of the period, in order (0 for a day without any).
    pub daily_visitors: Vec<(String, i64)>,
}

/// The Stats API body of a query over `period`'s dates.
pub fn request(site: &StatsSite, period: Period, metrics: &[&str], dimensions: &[&str], limit: Option<u64>) -> QueryRequest {
    let mut body = json!({
        "site_id": site.id.to_string(),
        "metrics": metrics,
        "date_range": [period.start.to_string(), period.end.to_string()],
        "dimensions": dimensions,
    });
    if let Some(limit) = limit {
        body["order_by"] = json!([["visitors", "desc"]]);
        body["pagination"] = json!({"limit": limit});
    }
    if dimensions.contains(&"time:day") {
        body["include"] = json!({"time_labels": true});
    }
    // The shape is ours and fixed; a failure here is a bug the engine names.
    serde_json::from_value(body).unwrap_or_else(|e| unreachable!("a report query is a valid request: {e}"))
}

fn int(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

fn top(answer: &QueryResponse, with_second: bool) -> Vec<TopRow> {
    answer
        .results
        .iter()
        .map(|r| TopRow {
            name: r.dimensions.first().cloned().unwrap_or_default(),
            visitors: int(r.metrics.first()),
            second: with_second.then(|| int(r.metrics.get(1))),
        })
        .collect()
}

pub async fn report(pool: &Pool, site: &StatsSite, period: Period, now: DateTime<Utc>) -> Result<Report, StatsError> {
    let names: Vec<&str> = HEADLINE.iter().map(|m| m.name()).collect();
    let previous = period.previous();
    // Two plain queries, not `previous_period`: the month before a month is a
    // calendar month, not the same number of days.
    let current = stats::query(pool, site, request(site, period, &names, &[], None), now).await?;
    let before = stats::query(pool, site, request(site, previous, &names, &[], None), now).await?;
    let totals = |a: &QueryResponse| a.results.first().map(|r| r.metrics.clone()).unwrap_or_default();
    let (now_values, before_values) = (totals(&current), totals(&before));
    let figures = HEADLINE
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let value = now_values.get(i).cloned().unwrap_or(Value::Null);
            let previous = before_values.get(i).cloned().unwrap_or(Value::Null);
            Figure { metric: m.name(), change: change(*m, &value, &previous), value, previous }
        })
        .collect();
    let pages = stats::query(pool, site, request(site, period, &["visitors", "pageviews"], &["event:page"], Some(TOP_ROWS)), now).await?;
    let sources = stats::query(pool, site, request(site, period, &["visitors"], &["visit:source"], Some(TOP_ROWS)), now).await?;
    let goals = stats::query(pool, site, request(site, period, &["visitors", "events"], &["event:goal"], Some(TOP_ROWS)), now).await?;
    let days = stats::query(pool, site, request(site, period, &["visitors"], &["time:day"], None), now).await?;
    let by_day: std::collections::HashMap<&str, i64> =
        days.results.iter().filter_map(|r| Some((r.dimensions.first()?.as_str(), int(r.metrics.first())))).collect();
    let labels = days.meta.time_labels.clone().unwrap_or_default();
    let daily_visitors = labels.iter().map(|l| (l.clone(), by_day.get(l.as_str()).copied().unwrap_or(0))).collect();
    Ok(Report {
        period,
        previous,
        figures,
        top_pages: top(&pages, true),
        top_sources: top(&sources, false),
        top_goals: top(&goals, true),
        daily_visitors,
    })
}
