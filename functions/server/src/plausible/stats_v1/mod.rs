//! Plausible's Stats API v1 (`GET /api/v1/stats/{aggregate,timeseries,breakdown}`
//! and `realtime/visitors`), answered by our Stats API v2 engine: the query
//! string is parsed here, purely, into a v2 [`QueryRequest`] (which the engine
//! parses into its typed `Query`), and the engine's answer is shaped into
//! v1's JSON ([`answer`]). There is no second engine: a v1 answer is the v2
//! answer to the same query, relabelled.

mod answer;
pub mod filters;

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc};
use deadpool_postgres::Pool;
use serde::Deserialize;
use serde_json::{Value, json};
use thiserror::Error;
use tokio_postgres::error::SqlState;

use crate::cache::{self, CacheStore, StatsAnswer};
use crate::stats::request::{Comparisons, Include, MAX_OFFSET, Metric, Pagination};
use crate::stats::{QueryRequest, QueryResponse, StatsError, StatsSite};
pub use answer::shape;
use filters::V1Filter;

/// Breakdown rows per page: default and most.
pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 1000;
/// Years a `date` may name (as Stats API v2 takes them).
const YEARS: std::ops::RangeInclusive<i32> = 1900..=2999;

/// The three query endpoints (realtime takes `site_id` alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Aggregate,
    Timeseries,
    Breakdown,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Aggregate => "aggregate",
            Endpoint::Timeseries => "timeseries",
            Endpoint::Breakdown => "breakdown",
        }
    }
}

/// The query string as sent. Every value is kept as text so that a bad one
/// is answered with v1's own reason; unknown parameters are refused.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// The site's domain (as Plausible names it), or its id.
    #[param(example = "demo.engagetrack.test")]
    pub site_id: Option<String>,
    /// `day`, `7d`, `30d` (default), `month`, `6mo`, `12mo` or `custom`.
    pub period: Option<String>,
    /// `YYYY-MM-DD` (or `today`) the period is taken around, in the site's timezone; for `custom`, `YYYY-MM-DD,YYYY-MM-DD` (both days included).
    pub date: Option<String>,
    /// Comma-separated: `visitors` (default), `visits`, `pageviews`, `views_per_visit`, `bounce_rate`, `visit_duration`, `events`, `conversion_rate`, `time_on_page`.
    pub metrics: Option<String>,
    /// v1 filter expression: `;` AND, `==` / `!=`, `|` IN (`\|` a literal `|`), `*` wildcard; e.g. `event:page==/blog*;visit:country==DE|FR`.
    pub filters: Option<String>,
    /// breakdown only (required): the property to group by, e.g. `visit:source`, `event:page`, `event:props:plan`.
    pub property: Option<String>,
    /// timeseries only: `day` (or `date`) or `month`; default `month` for 6mo and 12mo, hours for `day`, else days.
    pub interval: Option<String>,
    /// breakdown only: rows per page, 1 to 1000 (default 100).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// breakdown only: the page of rows, from 1.
    #[param(value_type = Option<u64>, minimum = 1)]
    pub page: Option<String>,
    /// aggregate and breakdown: `previous_period` adds the period of the same length just before.
    pub compare: Option<String>,
    /// `true` or `false` (default): include data imported from other tools.
    #[param(value_type = Option<bool>)]
    pub with_imported: Option<String>,
}

/// `GET /api/v1/stats/realtime/visitors` takes the site alone.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RealtimeParams {
    /// The site's domain (as Plausible names it), or its id.
    #[param(example = "demo.engagetrack.test")]
    pub site_id: Option<String>,
}

/// What a v1 call can fail with. All but [`V1Error::Stats`] are the caller's (400).
#[derive(Debug, Error)]
pub enum V1Error {
    #[error("the `site_id` parameter is required: the site's domain, e.g. `site_id=example.com`")]
    MissingSiteId,
    #[error("`{param}` does not apply to /api/v1/stats/{endpoint}")]
    NotApplicable { param: &'static str, endpoint: &'static str },
    #[error("invalid period `{0}`: one of day, 7d, 30d, month, 6mo, 12mo, custom")]
    Period(String),
    #[error("invalid date: {0}")]
    Date(String),
    #[error("invalid metrics: {0}")]
    Metric(String),
    #[error("invalid filters: {0}")]
    Filter(String),
    #[error("invalid property: {0}")]
    Property(String),
    #[error("invalid interval `{0}`: `day` (or `date`) or `month`")]
    Interval(String),
    #[error("invalid limit `{0}`: a whole number from 1 to {MAX_LIMIT}")]
    Limit(String),
    #[error("invalid page `{0}`: a whole number from 1 (and limit × page at most {MAX_OFFSET})")]
    Page(String),
    #[error("invalid compare `{0}`: only `previous_period`")]
    Compare(String),
    #[error("invalid with_imported `{0}`: `true` or `false`")]
    WithImported(String),
    #[error("a cached stats answer did not read back: {0}")]
    Cache(String),
    #[error(transparent)]
    Stats(#[from] StatsError),
}

impl V1Error {
    /// True when the request is at fault: answer 400 with the message.
    pub fn is_client_error(&self) -> bool {
        match self {
            V1Error::Stats(e) => e.is_client_error(),
            V1Error::Cache(_) => false,
            _ => true,
        }
    }
}

/// A v1 call, parsed: the v2 query that answers it and how to shape the answer.
#[derive(Debug, Clone)]
pub struct V1Query {
    pub endpoint: Endpoint,
    /// The Stats API v2 query it is answered with.
    pub request: QueryRequest,
    /// The metrics asked for, in order. `request.metrics` may end in one
    /// more, unshown: a breakdown of `time_on_page` alone is ordered by visitors.
    pub metrics: Vec<Metric>,
    /// Breakdown rows: the key of each of `request.dimensions`, in order.
    pub row_keys: Vec<String>,
}

/// Metrics Stats API v1 has.
const V1_METRICS: &[Metric] = &[
    Metric::Visitors,
    Metric::Visits,
    Metric::Pageviews,
    Metric::ViewsPerVisit,
    Metric::BounceRate,
    Metric::VisitDuration,
    Metric::Events,
    Metric::ConversionRate,
    Metric::TimeOnPage,
];

/// Parses a v1 call. `today` is today in the site's timezone (periods are
/// taken around it unless `date` says otherwise).
pub fn parse(endpoint: Endpoint, params: &Params, today: NaiveDate) -> Result<V1Query, V1Error> {
    let site_id = params.site_id.as_deref().map(str::trim).filter(|s| !s.is_empty()).ok_or(V1Error::MissingSiteId)?;
    let not_for = |param: &'static str| V1Error::NotApplicable { param, endpoint: endpoint.name() };
    let breakdown = endpoint == Endpoint::Breakdown;
    if !breakdown {
        for (name, value) in [("property", &params.property), ("limit", &params.limit), ("page", &params.page)] {
            if value.is_some() {
                return Err(not_for(name));
            }
        }
    }
    if endpoint != Endpoint::Timeseries && params.interval.is_some() {
        return Err(not_for("interval"));
    }
    // v1's timeseries has no comparison in its answer shape.
    if endpoint == Endpoint::Timeseries && params.compare.is_some() {
        return Err(not_for("compare"));
    }

    let period = params.period.as_deref().unwrap_or("30d");
    let (first, last) = date_range(period, params.date.as_deref(), today)?;
    let filters = filters::parse(params.filters.as_deref().unwrap_or(""))?;
    let property = match (breakdown, params.property.as_deref()) {
        (true, None) => return Err(V1Error::Property("the `property` parameter is required, e.g. `property=visit:source`".into())),
        (true, Some(p)) => Some(breakdown_property(p.trim())?),
        (false, _) => None,
    };
    let metrics = parse_metrics(params.metrics.as_deref().unwrap_or("visitors"))?;
    for m in &metrics {
        check_metric(*m, &filters, property)?;
    }

    let mut metric_names: Vec<String> = metrics.iter().map(|m| m.name().to_owned()).collect();
    let mut dimensions = Vec::new();
    let mut row_keys = Vec::new();
    let mut order_by = Vec::new();
    let mut pagination = Pagination { limit: crate::stats::request::MAX_LIMIT, offset: 0 };
    match endpoint {
        Endpoint::Aggregate => {}
        Endpoint::Timeseries => dimensions.push(time_dimension(period, params.interval.as_deref())?.to_owned()),
        Endpoint::Breakdown => {
            let property = property.unwrap_or_default();
            // Plausible's version rows name the browser (or OS) too.
            if let Some(parent) = match property {
                "visit:browser_version" => Some("visit:browser"),
                "visit:os_version" => Some("visit:os"),
                _ => None,
            } {
                dimensions.push(parent.to_owned());
                row_keys.push(row_key(parent));
            }
            dimensions.push(filters::v2_dimension(property).to_owned());
            row_keys.push(row_key(property));
            // The first metric but time_on_page, descending (visitors if there is none).
            let by = match metrics.iter().find(|m| **m != Metric::TimeOnPage) {
                Some(m) => m.name().to_owned(),
                None => {
                    metric_names.push(Metric::Visitors.name().to_owned());
                    Metric::Visitors.name().to_owned()
                }
            };
            order_by.push((by, "desc".to_owned()));
            let limit = parse_limit(params.limit.as_deref())?;
            let page = parse_page(params.page.as_deref())?;
            let offset = (page - 1).checked_mul(limit).filter(|o| *o <= MAX_OFFSET).ok_or_else(|| V1Error::Page(page.to_string()))?;
            pagination = Pagination { limit, offset };
        }
    }
    let comparisons = match params.compare.as_deref() {
        None => None,
        Some("previous_period") => Some(Comparisons { mode: "previous_period".into() }),
        Some(other) => return Err(V1Error::Compare(other.to_owned())),
    };
    let with_imported = match params.with_imported.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(V1Error::WithImported(other.to_owned())),
    };
    let request = QueryRequest {
        site_id: site_id.to_owned(),
        metrics: metric_names,
        date_range: json!([first.to_string(), last.to_string()]),
        date: None,
        dimensions,
        filters: filters.into_iter().map(|f| f.filter).collect(),
        order_by,
        include: Include { comparisons, time_labels: endpoint == Endpoint::Timeseries, total_rows: false, imports: with_imported },
        pagination: Some(pagination),
    };
    Ok(V1Query { endpoint, request, metrics, row_keys })
}

/// The local days `[first, last]` of a v1 period, as Plausible takes them:
/// `7d` and `30d` end on the date (30d spans 31 days), `month` is the whole
/// month of the date, `6mo` and `12mo` whole months up to the date's.
fn date_range(period: &str, date: Option<&str>, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), V1Error> {
    if period == "custom" {
        let raw = date.ok_or_else(|| V1Error::Date("`period=custom` needs `date=YYYY-MM-DD,YYYY-MM-DD`".into()))?;
        let (a, b) =
            raw.split_once(',').ok_or_else(|| V1Error::Date(format!("`{raw}`: a custom period is two dates joined by a comma")))?;
        let (first, last) = (parse_date(a.trim())?, parse_date(b.trim())?);
        if last < first {
            return Err(V1Error::Date(format!("`{raw}` ends before it starts")));
        }
        return Ok((first, last));
    }
    let d = match date.map(str::trim) {
        None | Some("today") => today,
        Some(raw) => parse_date(raw)?,
    };
    let month_start = d.with_day(1).unwrap_or(d);
    let month_end = month_start.checked_add_months(Months::new(1)).map_or(d, |n| n - Duration::days(1));
    let months_back = |n: u32| month_start.checked_sub_months(Months::new(n)).unwrap_or(month_start);
    Ok(match period {
        "day" => (d, d),
        "7d" => (d - Duration::days(6), d),
        "30d" => (d - Duration::days(30), d),
        "month" => (month_start, month_end),
        "6mo" => (months_back(5), month_end),
        "12mo" => (months_back(11), month_end),
        other => return Err(V1Error::Period(other.to_owned())),
    })
}

fn parse_date(raw: &str) -> Result<NaiveDate, V1Error> {
    // Exactly YYYY-MM-DD (chrono alone would take `2026-1-5`).
    (raw.len() == 10)
        .then(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok())
        .flatten()
        .filter(|d| YEARS.contains(&d.year()))
        .ok_or_else(|| V1Error::Date(format!("`{raw}` is not a date YYYY-MM-DD (years {}-{})", YEARS.start(), YEARS.end())))
}

fn time_dimension(period: &str, interval: Option<&str>) -> Result<&'static str, V1Error> {
    Ok(match interval {
        Some("day" | "date") => "time:day",
        Some("month") => "time:month",
        Some(other) => return Err(V1Error::Interval(other.to_owned())),
        None => match period {
            "day" => "time:hour",
            "6mo" | "12mo" => "time:month",
            _ => "time:day",
        },
    })
}

fn breakdown_property(p: &str) -> Result<&str, V1Error> {
    if p == "event:hostname" {
        return Err(V1Error::Property("`event:hostname` cannot be broken down by in Stats API v1 (it can be filtered on)".into()));
    }
    if !filters::is_v1_property(p) {
        return Err(V1Error::Property(format!("unknown property `{p}`")));
    }
    Ok(p)
}

fn parse_limit(raw: Option<&str>) -> Result<u64, V1Error> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => s.trim().parse::<u64>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| V1Error::Limit(s.to_owned())),
    }
}

fn parse_page(raw: Option<&str>) -> Result<u64, V1Error> {
    match raw {
        None => Ok(1),
        Some(s) => s.trim().parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| V1Error::Page(s.to_owned())),
    }
}

/// The key of a breakdown row: the property without its prefix, a prop's own key.
fn row_key(property: &str) -> String {
    match property.strip_prefix("event:props:") {
        Some(key) => key.to_owned(),
        None => property.split_once(':').map_or(property, |(_, k)| k).to_owned(),
    }
}

fn parse_metrics(raw: &str) -> Result<Vec<Metric>, V1Error> {
    let mut out: Vec<Metric> = Vec::new();
    for name in raw.split(',').map(str::trim) {
        let metric = match Metric::ALL.into_iter().find(|m| m.name() == name) {
            Some(m) if V1_METRICS.contains(&m) => m,
            Some(m) => {
                return Err(V1Error::Metric(format!("`{}` is not a Stats API v1 metric; POST /api/v2/query has it", m.name())));
            }
            None if name.is_empty() => return Err(V1Error::Metric(format!("an empty name in `{raw}`"))),
            None => return Err(V1Error::Metric(format!("unknown metric `{name}`"))),
        };
        if out.contains(&metric) {
            return Err(V1Error::Metric(format!("`{name}` is listed twice")));
        }
        out.push(metric);
    }
    Ok(out)
}

/// Event-only properties: visits have none of them.
fn event_only(property: &str) -> bool {
    matches!(property, "event:name" | "event:goal") || property.starts_with("event:props:")
}

/// v1's rules on which metric may go with which filter and breakdown.
fn check_metric(m: Metric, filters: &[V1Filter], property: Option<&str>) -> Result<(), V1Error> {
    let filtered = |p: &str| filters.iter().any(|f| f.property == p);
    let bad = |why: String| Err(V1Error::Metric(why));
    let name = m.name();
    let session_check = || {
        if let Some(p) = property.filter(|p| event_only(p)) {
            return bad(format!("session metric `{name}` cannot be broken down by `{p}`"));
        }
        if let Some(f) = filters.iter().find(|f| event_only(&f.property)) {
            return bad(format!("session metric `{name}` cannot be queried with a filter on `{}`", f.property));
        }
        Ok(())
    };
    match m {
        Metric::Visitors | Metric::Pageviews | Metric::Events => Ok(()),
        Metric::TimeOnPage => {
            if let Some(p) = ["event:goal", "event:name"].into_iter().find(|p| filtered(p)) {
                return bad(format!("`time_on_page` cannot be queried with a filter on `{p}`"));
            }
            match property {
                Some("event:page") => Ok(()),
                Some(_) => bad("`time_on_page` is only broken down by `event:page`".into()),
                None if filtered("event:page") => Ok(()),
                None => bad("`time_on_page` needs an `event:page` filter or an `event:page` breakdown".into()),
            }
        }
        Metric::ConversionRate => match property == Some("event:goal") || filtered("event:goal") {
            true => Ok(()),
            false => bad("`conversion_rate` needs an `event:goal` filter or an `event:goal` breakdown".into()),
        },
        Metric::ViewsPerVisit => {
            if filtered("event:page") {
                return bad("`views_per_visit` cannot be queried with a filter on `event:page`".into());
            }
            if property.is_some() {
                return bad("`views_per_visit` is not available in breakdowns".into());
            }
            session_check()
        }
        Metric::Visits | Metric::BounceRate | Metric::VisitDuration => session_check(),
        _ => bad(format!("`{name}` is not a Stats API v1 metric")),
    }
}

/// Today in the site's timezone, as the engine reckons it.
pub async fn today(pool: &Pool, site: &StatsSite, now: DateTime<Utc>) -> Result<NaiveDate, StatsError> {
    let client = pool.get().await?;
    client.query_one("SELECT ($1::timestamptz AT TIME ZONE $2)::date", &[&now, &site.timezone]).await.map(|r| r.get(0)).map_err(|e| {
        if e.code() == Some(&SqlState::INVALID_PARAMETER_VALUE) { StatsError::SiteTimezone(site.timezone.clone()) } else { e.into() }
    })
}

/// Answers a v1 call for a site the caller may read: parse, run the v2
/// query (through the stats cache, as v2 does), shape.
pub async fn answer(
    pool: &Pool,
    cache: &dyn CacheStore,
    site: &StatsSite,
    endpoint: Endpoint,
    params: &Params,
    now: DateTime<Utc>,
) -> Result<Value, V1Error> {
    let query = parse(endpoint, params, today(pool, site, now).await?)?;
    let response: QueryResponse = match cache::stats_query(pool, cache, site, query.request.clone(), now).await? {
        StatsAnswer::Fresh(r) => r,
        StatsAnswer::Cached(bytes) => serde_json::from_slice(&bytes).map_err(|e| V1Error::Cache(e.to_string()))?,
    };
    Ok(shape(&query, &response))
}

#[cfg(test)]
mod tests;
