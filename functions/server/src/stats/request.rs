//! The Stats API v2 request: the wire shape ([`QueryRequest`], serde) and the
//! typed query it parses into ([`Query`]). Everything the engine needs to know
//! is checked here, so the engine never meets an invalid query.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::StatsError;

/// Longest range a query may span, and most hour buckets.
pub const MAX_RANGE_DAYS: i64 = 3_660;
pub const MAX_HOUR_BUCKETS: i64 = 24 * 93;
pub const MAX_LIMIT: u64 = 10_000;
pub const MAX_OFFSET: u64 = 1_000_000;
const MAX_FILTER_DEPTH: usize = 8;
const MAX_FILTER_VALUES: usize = 100;
const MAX_VALUE_LEN: usize = 2_000;

/// The request body as sent. `site_id` is kept as given: the caller resolves it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub site_id: String,
    pub metrics: Vec<String>,
    pub date_range: Value,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub dimensions: Vec<String>,
    #[serde(default)]
    pub filters: Vec<Value>,
    #[serde(default)]
    pub order_by: Vec<(String, String)>,
    #[serde(default)]
    pub include: Include,
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

impl QueryRequest {
    /// Reads a JSON body; a malformed one is [`StatsError::InvalidJson`].
    pub fn from_json(body: &[u8]) -> Result<Self, StatsError> {
        serde_json::from_slice(body).map_err(|e| StatsError::InvalidJson(e.to_string()))
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Include {
    #[serde(default)]
    pub comparisons: Option<Comparisons>,
    #[serde(default)]
    pub time_labels: bool,
    #[serde(default)]
    pub total_rows: bool,
    /// Plausible's `include.imports`: add data imported from other tools
    /// (never mixed into raw events; see `imports`).
    #[serde(default)]
    pub imports: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Comparisons {
    pub mode: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pagination {
    #[serde(default = "default_limit")]
    pub limit: u64,
    #[serde(default)]
    pub offset: u64,
}

fn default_limit() -> u64 {
    MAX_LIMIT
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Visitors,
    Visits,
    Pageviews,
    ViewsPerVisit,
    BounceRate,
    VisitDuration,
    TimeOnPage,
    ScrollDepth,
    Events,
    ConversionRate,
    TotalRevenue,
    AverageRevenue,
}

impl Metric {
    pub const ALL: [Metric; 12] = [
        Metric::Visitors,
        Metric::Visits,
        Metric::Pageviews,
        Metric::ViewsPerVisit,
        Metric::BounceRate,
        Metric::VisitDuration,
        Metric::TimeOnPage,
        Metric::ScrollDepth,
        Metric::Events,
        Metric::ConversionRate,
        Metric::TotalRevenue,
        Metric::AverageRevenue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Visitors => "visitors",
            Metric::Visits => "visits",
            Metric::Pageviews => "pageviews",
            Metric::ViewsPerVisit => "views_per_visit",
            Metric::BounceRate => "bounce_rate",
            Metric::VisitDuration => "visit_duration",
            Metric::TimeOnPage => "time_on_page",
            Metric::ScrollDepth => "scroll_depth",
            Metric::Events => "events",
            Metric::ConversionRate => "conversion_rate",
            Metric::TotalRevenue => "total_revenue",
            Metric::AverageRevenue => "average_revenue",
        }
    }

    fn parse(name: &str) -> Result<Self, StatsError> {
        Self::ALL.into_iter().find(|m| m.name() == name).ok_or_else(|| StatsError::UnknownMetric(name.to_owned()))
    }

    /// Metrics about visits and reading: meaningless for event names and goals.
    fn is_session_metric(self) -> bool {
        matches!(self, Metric::BounceRate | Metric::VisitDuration | Metric::ViewsPerVisit | Metric::TimeOnPage | Metric::ScrollDepth)
    }

    pub fn is_revenue(self) -> bool {
        matches!(self, Metric::TotalRevenue | Metric::AverageRevenue)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeGrain {
    /// `time`: hour for a day, day up to 92 days, month beyond.
    Auto,
    Hour,
    Day,
    Week,
    Month,
}

/// How a dimension relates events to visits (see [`super::sessions::Aggregate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DimensionKind {
    /// A fact of the visit (its first event's, or entry/exit page).
    Session,
    /// The page a pageview (and engagement) is on.
    Page,
    /// A fact of each event (hostname).
    Event,
    /// Goal events' name or custom props.
    EventName,
    /// The goals an event completes.
    Goal,
    Time,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dimension {
    Page,
    Hostname,
    Name,
    Goal,
    Prop(String),
    /// A session dimension: its wire name's `visit:` suffix, which is also its
    /// `daily_rollups` name and its column in the sessions relation.
    Visit(&'static str),
    Time(TimeGrain),
}

const VISIT_DIMENSIONS: &[&str] = &[
    "entry_page",
    "exit_page",
    "source",
    "channel",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "country",
    "region",
    "city",
    "browser",
    "browser_version",
    "os",
    "os_version",
    "device",
    "screen",
];

impl Dimension {
    pub fn parse(name: &str) -> Result<Self, StatsError> {
        let unknown = || StatsError::UnknownDimension(name.to_owned());
        if let Some(key) = name.strip_prefix("event:props:") {
            if key.is_empty() || key.len() > 300 {
                return Err(unknown());
            }
            return Ok(Dimension::Prop(key.to_owned()));
        }
        if let Some(v) = name.strip_prefix("visit:") {
            return VISIT_DIMENSIONS.iter().find(|d| **d == v).map(|d| Dimension::Visit(d)).ok_or_else(unknown);
        }
        Ok(match name {
            "event:page" => Dimension::Page,
            "event:hostname" => Dimension::Hostname,
            "event:name" => Dimension::Name,
            "event:goal" => Dimension::Goal,
            "time" => Dimension::Time(TimeGrain::Auto),
            "time:hour" => Dimension::Time(TimeGrain::Hour),
            "time:day" => Dimension::Time(TimeGrain::Day),
            "time:week" => Dimension::Time(TimeGrain::Week),
            "time:month" => Dimension::Time(TimeGrain::Month),
            _ => return Err(unknown()),
        })
    }

    pub fn name(&self) -> String {
        match self {
            Dimension::Page => "event:page".into(),
            Dimension::Hostname => "event:hostname".into(),
            Dimension::Name => "event:name".into(),
            Dimension::Goal => "event:goal".into(),
            Dimension::Prop(k) => format!("event:props:{k}"),
            Dimension::Visit(v) => format!("visit:{v}"),
            Dimension::Time(TimeGrain::Auto) => "time".into(),
            Dimension::Time(TimeGrain::Hour) => "time:hour".into(),
            Dimension::Time(TimeGrain::Day) => "time:day".into(),
            Dimension::Time(TimeGrain::Week) => "time:week".into(),
            Dimension::Time(TimeGrain::Month) => "time:month".into(),
        }
    }

    pub fn kind(&self) -> DimensionKind {
        match self {
            Dimension::Page => DimensionKind::Page,
            Dimension::Hostname => DimensionKind::Event,
            Dimension::Name | Dimension::Prop(_) => DimensionKind::EventName,
            Dimension::Goal => DimensionKind::Goal,
            Dimension::Visit(_) => DimensionKind::Session,
            Dimension::Time(_) => DimensionKind::Time,
        }
    }

    /// The `daily_rollups.dimension` holding this breakdown, when there is one.
    pub fn rollup_name(&self) -> Option<String> {
        match self {
            Dimension::Page => Some("page".into()),
            Dimension::Name => Some("event".into()),
            Dimension::Goal => Some("goal".into()),
            Dimension::Prop(k) => Some(format!("prop:{k}")),
            Dimension::Visit(v) => Some((*v).to_owned()),
            Dimension::Hostname | Dimension::Time(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Is,
    IsNot,
    Contains,
    ContainsNot,
    Matches,
    MatchesNot,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Condition { op: Operator, dimension: Dimension, values: Vec<String> },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

impl Filter {
    pub(super) fn parse(value: &Value, depth: usize) -> Result<Self, StatsError> {
        let bad = |why: &str| StatsError::InvalidFilter(format!("{why}: {value}"));
        if depth > MAX_FILTER_DEPTH {
            return Err(bad("filters nest too deep"));
        }
        let items = value.as_array().ok_or_else(|| bad("a filter is an array"))?;
        let op = items.first().and_then(Value::as_str).ok_or_else(|| bad("a filter starts with its operator"))?;
        match (op, items.len()) {
            ("and" | "or", 2) => {
                let list = items[1].as_array().filter(|l| !l.is_empty()).ok_or_else(|| bad("`and`/`or` take a non-empty list"))?;
                let parsed = list.iter().map(|f| Filter::parse(f, depth + 1)).collect::<Result<Vec<_>, _>>()?;
                Ok(if op == "and" { Filter::And(parsed) } else { Filter::Or(parsed) })
            }
            ("not", 2) => Ok(Filter::Not(Box::new(Filter::parse(&items[1], depth + 1)?))),
            ("and" | "or" | "not", _) => Err(bad("`and`, `or` and `not` take one argument")),
            (_, 3) => Self::parse_condition(op, &items[1], &items[2], value),
            _ => Err(bad("a condition is [operator, dimension, [values]]")),
        }
    }

    fn parse_condition(op: &str, dimension: &Value, values: &Value, whole: &Value) -> Result<Self, StatsError> {
        let bad = |why: String| StatsError::InvalidFilter(format!("{why}: {whole}"));
        let op = match op {
            "is" => Operator::Is,
            "is_not" => Operator::IsNot,
            "contains" => Operator::Contains,
            "contains_not" => Operator::ContainsNot,
            "matches" => Operator::Matches,
            "matches_not" => Operator::MatchesNot,
            other => return Err(bad(format!("unknown filter operator `{other}`"))),
        };
        let dimension = Dimension::parse(dimension.as_str().ok_or_else(|| bad("the dimension is a string".into()))?)?;
        if matches!(dimension, Dimension::Time(_)) {
            return Err(bad("time is filtered with date_range, not filters".into()));
        }
        if dimension == Dimension::Goal && !matches!(op, Operator::Is | Operator::IsNot) {
            return Err(bad("event:goal takes `is` or `is_not`".into()));
        }
        let values: Vec<String> = values
            .as_array()
            .filter(|v| !v.is_empty() && v.len() <= MAX_FILTER_VALUES)
            .ok_or_else(|| bad(format!("values are a list of 1 to {MAX_FILTER_VALUES} strings")))?
            .iter()
            .map(|v| match v {
                Value::String(s) if s.len() <= MAX_VALUE_LEN => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(bad(format!("each value is a string of at most {MAX_VALUE_LEN} bytes"))),
            })
            .collect::<Result<_, _>>()?;
        if matches!(op, Operator::Matches | Operator::MatchesNot) {
            for v in &values {
                regex::Regex::new(v).map_err(|e| StatsError::InvalidRegex { pattern: v.clone(), reason: e.to_string() })?;
            }
        }
        Ok(Filter::Condition { op, dimension, values })
    }

    /// Every condition in the tree.
    pub fn conditions(&self) -> Vec<(&Operator, &Dimension, &Vec<String>)> {
        match self {
            Filter::Condition { op, dimension, values } => vec![(op, dimension, values)],
            Filter::And(list) | Filter::Or(list) => list.iter().flat_map(Filter::conditions).collect(),
            Filter::Not(f) => f.conditions(),
        }
    }

    pub fn is_goal_condition(&self) -> bool {
        matches!(self, Filter::Condition { dimension: Dimension::Goal, .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Day,
    Days(i64),
    Month,
    Months(i64),
    Year,
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DateRange {
    /// Relative to the anchor day (today in the site's timezone unless `date` is given).
    Preset { preset: Preset, anchor: Option<NaiveDate> },
    /// Whole local days, both included.
    Dates(NaiveDate, NaiveDate),
    /// Instants, `[start, end)`.
    Instants(DateTime<FixedOffset>, DateTime<FixedOffset>),
}

impl DateRange {
    pub(super) fn parse(value: &Value, date: Option<&str>) -> Result<Self, StatsError> {
        let bad = |why: String| StatsError::InvalidDateRange(why);
        let anchor = date.map(|d| parse_date(d).ok_or_else(|| bad(format!("`date` must be YYYY-MM-DD, not `{d}`")))).transpose()?;
        match value {
            Value::String(s) => {
                let preset = match s.as_str() {
                    "day" => Preset::Day,
                    "7d" => Preset::Days(7),
                    "28d" => Preset::Days(28),
                    "30d" => Preset::Days(30),
                    "91d" => Preset::Days(91),
                    "month" => Preset::Month,
                    "6mo" => Preset::Months(6),
                    "12mo" => Preset::Months(12),
                    "year" => Preset::Year,
                    "all" => Preset::All,
                    other => return Err(bad(format!("unknown date_range `{other}`"))),
                };
                Ok(DateRange::Preset { preset, anchor })
            }
            Value::Array(pair) if pair.len() == 2 => {
                if anchor.is_some() {
                    return Err(bad("`date` only goes with a named date_range".into()));
                }
                let (a, b) = (pair[0].as_str().unwrap_or_default(), pair[1].as_str().unwrap_or_default());
                Self::parse_pair(a, b)
            }
            _ => Err(bad("date_range is a name like \"30d\" or [start, end]".into())),
        }
    }

    fn parse_pair(a: &str, b: &str) -> Result<Self, StatsError> {
        let bad = |why: String| StatsError::InvalidDateRange(why);
        if let (Some(s), Some(e)) = (parse_date(a), parse_date(b)) {
            if e < s {
                return Err(bad(format!("the range ends ({e}) before it starts ({s})")));
            }
            let days = (e - s).num_days() + 1;
            if days > MAX_RANGE_DAYS {
                return Err(StatsError::RangeTooLong { days, max: MAX_RANGE_DAYS });
            }
            return Ok(DateRange::Dates(s, e));
        }
        let instant = |x: &str| {
            DateTime::parse_from_rfc3339(x)
                .ok()
                .filter(|t| YEARS.contains(&t.year()))
                .ok_or_else(|| bad(format!("`{x}` is neither YYYY-MM-DD nor an ISO 8601 datetime with offset (years {}-{})", YEARS.start(), YEARS.end())))
        };
        let (s, e) = (instant(a)?, instant(b)?);
        if e <= s {
            return Err(bad(format!("the range ends ({e}) before it starts ({s})")));
        }
        let days = (e - s).num_days();
        if days > MAX_RANGE_DAYS {
            return Err(StatsError::RangeTooLong { days, max: MAX_RANGE_DAYS });
        }
        Ok(DateRange::Instants(s, e))
    }
}

/// Years a date may have: date arithmetic near chrono's limits would overflow.
const YEARS: std::ops::RangeInclusive<i32> = 1900..=2999;

fn parse_date(s: &str) -> Option<NaiveDate> {
    // Exactly YYYY-MM-DD: chrono alone would also take `2024-1-5`.
    (s.len() == 10).then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()).flatten().filter(|d| YEARS.contains(&d.year()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OrderKey {
    Metric(Metric),
    /// The index into the query's dimensions.
    Dimension(usize),
}

/// A parsed, consistent query.
#[derive(Debug, Clone)]
pub struct Query {
    pub site_id: String,
    pub metrics: Vec<Metric>,
    pub date_range: DateRange,
    pub dimensions: Vec<Dimension>,
    pub filters: Vec<Filter>,
    pub order_by: Vec<(OrderKey, Direction)>,
    pub compare_previous: bool,
    pub time_labels: bool,
    pub total_rows: bool,
    pub with_imported: bool,
    pub limit: u64,
    pub offset: u64,
}

impl Query {
    pub fn parse(request: &QueryRequest) -> Result<Self, StatsError> {
        let metrics = parse_metrics(&request.metrics)?;
        let dimensions = parse_dimensions(&request.dimensions)?;
        let filters = request.filters.iter().map(|f| Filter::parse(f, 0)).collect::<Result<Vec<_>, _>>()?;
        check_combinations(&metrics, &dimensions, &filters)?;
        let order_by = parse_order_by(&request.order_by, &metrics, &dimensions)?;
        let compare_previous = match &request.include.comparisons {
            None => false,
            Some(c) if c.mode == "previous_period" => true,
            Some(c) => return Err(StatsError::InvalidInclude(format!("comparison mode `{}` (only `previous_period`)", c.mode))),
        };
        let Pagination { limit, offset } = request.pagination.unwrap_or(Pagination { limit: MAX_LIMIT, offset: 0 });
        if !(1..=MAX_LIMIT).contains(&limit) || offset > MAX_OFFSET {
            return Err(StatsError::InvalidPagination(format!(
                "limit must be 1 to {MAX_LIMIT} and offset at most {MAX_OFFSET} (got limit {limit}, offset {offset})"
            )));
        }
        Ok(Query {
            site_id: request.site_id.clone(),
            metrics,
            date_range: DateRange::parse(&request.date_range, request.date.as_deref())?,
            dimensions,
            filters,
            order_by,
            compare_previous,
            time_labels: request.include.time_labels,
            total_rows: request.include.total_rows,
            with_imported: request.include.imports,
            limit,
            offset,
        })
    }

    pub fn time_dimension(&self) -> Option<(usize, TimeGrain)> {
        self.dimensions.iter().enumerate().find_map(|(i, d)| match d {
            Dimension::Time(g) => Some((i, *g)),
            _ => None,
        })
    }
}

fn parse_metrics(names: &[String]) -> Result<Vec<Metric>, StatsError> {
    if names.is_empty() {
        return Err(StatsError::InvalidCombination("at least one metric is needed".into()));
    }
    let metrics = names.iter().map(|m| Metric::parse(m)).collect::<Result<Vec<_>, _>>()?;
    if let Some(dup) = metrics.iter().enumerate().find(|(i, m)| metrics[..*i].contains(m)) {
        return Err(StatsError::InvalidCombination(format!("metric `{}` is listed twice", dup.1.name())));
    }
    Ok(metrics)
}

fn parse_dimensions(names: &[String]) -> Result<Vec<Dimension>, StatsError> {
    let dims = names.iter().map(|d| Dimension::parse(d)).collect::<Result<Vec<_>, _>>()?;
    if let Some((_, d)) = dims.iter().enumerate().find(|(i, d)| dims[..*i].contains(d)) {
        return Err(StatsError::InvalidCombination(format!("dimension `{}` is listed twice", d.name())));
    }
    if dims.iter().filter(|d| matches!(d, Dimension::Time(_))).count() > 1 {
        return Err(StatsError::InvalidCombination("at most one time dimension".into()));
    }
    Ok(dims)
}

/// Combinations with no meaning are refused, not answered with zeros.
fn check_combinations(metrics: &[Metric], dims: &[Dimension], filters: &[Filter]) -> Result<(), StatsError> {
    let has = |k: DimensionKind| dims.iter().any(|d| d.kind() == k);
    let conversion_kind = has(DimensionKind::EventName) || has(DimensionKind::Goal);
    if has(DimensionKind::Page) && conversion_kind {
        return Err(StatsError::InvalidCombination(
            "event:page cannot be combined with event:name, event:goal or event:props dimensions (an event has one or the other)".into(),
        ));
    }
    if conversion_kind && let Some(m) = metrics.iter().find(|m| m.is_session_metric()) {
        return Err(StatsError::InvalidCombination(format!(
            "metric `{}` is about visits and pages; it cannot be broken down by event:name, event:goal or event:props",
            m.name()
        )));
    }
    if has(DimensionKind::Page) && metrics.contains(&Metric::ViewsPerVisit) {
        return Err(StatsError::InvalidCombination("views_per_visit cannot be broken down by event:page".into()));
    }
    if metrics.contains(&Metric::ConversionRate) {
        let goal_dim = dims.contains(&Dimension::Goal);
        let top_goal_filter = filters.iter().any(Filter::is_goal_condition);
        let nested_goal = filters.iter().filter(|f| !f.is_goal_condition()).any(|f| f.conditions().iter().any(|c| *c.1 == Dimension::Goal));
        if !(goal_dim || top_goal_filter) {
            return Err(StatsError::InvalidCombination("conversion_rate needs an event:goal dimension or an event:goal filter".into()));
        }
        if nested_goal {
            return Err(StatsError::InvalidCombination("with conversion_rate, event:goal filters must be top-level conditions".into()));
        }
    }
    Ok(())
}

fn parse_order_by(order: &[(String, String)], metrics: &[Metric], dims: &[Dimension]) -> Result<Vec<(OrderKey, Direction)>, StatsError> {
    order
        .iter()
        .map(|(key, dir)| {
            let direction = match dir.as_str() {
                "asc" => Direction::Asc,
                "desc" => Direction::Desc,
                other => return Err(StatsError::InvalidOrderBy(format!("direction `{other}` (asc or desc)"))),
            };
            if let Some(i) = dims.iter().position(|d| d.name() == *key) {
                return Ok((OrderKey::Dimension(i), direction));
            }
            let metric = Metric::parse(key).map_err(|_| StatsError::InvalidOrderBy(format!("`{key}` is not a queried metric or dimension")))?;
            if !metrics.contains(&metric) {
                return Err(StatsError::InvalidOrderBy(format!("`{key}` is not among the queried metrics")));
            }
            if metric.is_revenue() {
                return Err(StatsError::InvalidOrderBy(format!("`{key}` has one value per currency and cannot order rows")));
            }
            Ok((OrderKey::Metric(metric), direction))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<Query, StatsError> {
        Query::parse(&serde_json::from_value::<QueryRequest>(body).map_err(|e| StatsError::InvalidJson(e.to_string()))?)
    }

    fn base() -> Value {
        json!({"site_id": "example.com", "metrics": ["visitors"], "date_range": "30d"})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut b = base();
        b[key] = value;
        b
    }

    #[test]
    fn a_full_request_parses() {
        let q = parse(json!({
            "site_id": "example.com", "metrics": ["visitors", "bounce_rate", "total_revenue"],
            "date_range": ["2026-01-01", "2026-01-31"], "dimensions": ["visit:source", "time:day"],
            "filters": [["is", "visit:country", ["DE", "FR"]], ["or", [["contains", "event:page", ["/blog"]], ["not", ["is", "visit:browser", ["Chrome"]]]]]],
            "order_by": [["visitors", "desc"], ["time:day", "asc"]],
            "include": {"comparisons": {"mode": "previous_period"}, "time_labels": true, "total_rows": true},
            "pagination": {"limit": 5, "offset": 10}
        }))
        .unwrap();
        assert_eq!(q.dimensions, vec![Dimension::Visit("source"), Dimension::Time(TimeGrain::Day)]);
        assert_eq!(q.date_range, DateRange::Dates(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(), NaiveDate::from_ymd_opt(2026, 1, 31).unwrap()));
        assert_eq!(q.order_by, vec![(OrderKey::Metric(Metric::Visitors), Direction::Desc), (OrderKey::Dimension(1), Direction::Asc)]);
        assert!(q.compare_previous && q.time_labels && q.total_rows);
        assert_eq!((q.limit, q.offset), (5, 10));
        assert_eq!(q.filters.len(), 2);
        assert!(matches!(&q.filters[1], Filter::Or(list) if matches!(&list[1], Filter::Not(_))));
    }

    #[test]
    fn props_dimensions_keep_their_key() {
        let q = parse(with("dimensions", json!(["event:props:plan"]))).unwrap();
        assert_eq!(q.dimensions, vec![Dimension::Prop("plan".into())]);
        assert_eq!(q.dimensions[0].rollup_name().as_deref(), Some("prop:plan"));
    }

    #[test]
    fn unknown_names_are_named_in_the_error() {
        let e = parse(with("metrics", json!(["visitors", "sessions"]))).unwrap_err();
        assert!(matches!(&e, StatsError::UnknownMetric(m) if m == "sessions"), "{e}");
        let e = parse(with("dimensions", json!(["visit:planet"]))).unwrap_err();
        assert!(e.to_string().contains("visit:planet"), "{e}");
        let e = parse(with("dimensions", json!(["event:props:"]))).unwrap_err();
        assert!(matches!(e, StatsError::UnknownDimension(_)));
    }

    #[test]
    fn bad_dates_and_long_ranges_are_refused() {
        for range in [json!("3d"), json!(["2026-02-30", "2026-03-01"]), json!(["0001-01-01", "0001-01-02"]),
                      json!(["-262143-01-01T00:00:00Z", "2026-01-01T00:00:00Z"]), json!(["2026-03-02", "2026-03-01"]), json!(["2026-1-1", "2026-01-02"]), json!(42)] {
            let e = parse(with("date_range", range.clone())).unwrap_err();
            assert!(matches!(e, StatsError::InvalidDateRange(_)), "{range}: {e}");
        }
        let e = parse(with("date_range", json!(["2000-01-01", "2026-01-01"]))).unwrap_err();
        assert!(matches!(e, StatsError::RangeTooLong { .. }), "{e}");
        let q = parse(with("date_range", json!(["2026-01-01T00:00:00+01:00", "2026-01-02T00:00:00Z"]))).unwrap();
        assert!(matches!(q.date_range, DateRange::Instants(..)));
        assert!(matches!(parse(with("date", json!("0001-01-01"))), Err(StatsError::InvalidDateRange(_))));
        let mut b = with("date", json!("2026-02-01"));
        b["date_range"] = json!("7d");
        assert_eq!(parse(b).unwrap().date_range, DateRange::Preset { preset: Preset::Days(7), anchor: NaiveDate::from_ymd_opt(2026, 2, 1) });
    }

    #[test]
    fn filters_are_checked() {
        let cases = [
            json!([["equals", "visit:country", ["DE"]]]),
            json!([["is", "visit:country", []]]),
            json!([["is", "visit:country", "DE"]]),
            json!([["is", "time:day", ["2026-01-01"]]]),
            json!([["and", []]]),
            json!([["contains", "event:goal", ["Sign"]]]),
            json!(["is", "visit:country", ["DE"]]),
        ];
        for f in cases {
            assert!(matches!(parse(with("filters", f.clone())), Err(StatsError::InvalidFilter(_))), "{f}");
        }
        let e = parse(with("filters", json!([["matches", "event:page", ["^/(blog"]]]))).unwrap_err();
        assert!(matches!(&e, StatsError::InvalidRegex { pattern, .. } if pattern == "^/(blog"), "{e}");
        let deep = (0..20).fold(json!(["is", "visit:country", ["DE"]]), |f, _| json!(["not", f]));
        assert!(matches!(parse(with("filters", json!([deep]))), Err(StatsError::InvalidFilter(_))));
    }

    #[test]
    fn senseless_combinations_are_refused() {
        let mut b = with("dimensions", json!(["event:name"]));
        b["metrics"] = json!(["visitors", "bounce_rate"]);
        assert!(matches!(parse(b), Err(StatsError::InvalidCombination(_))));
        let b = with("metrics", json!(["conversion_rate"]));
        assert!(matches!(parse(b), Err(StatsError::InvalidCombination(_))));
        let mut b = with("dimensions", json!(["event:page", "event:goal"]));
        b["metrics"] = json!(["visitors"]);
        assert!(matches!(parse(b), Err(StatsError::InvalidCombination(_))));
        assert!(matches!(parse(with("dimensions", json!(["time:day", "time:month"]))), Err(StatsError::InvalidCombination(_))));
        assert!(matches!(parse(with("metrics", json!([]))), Err(StatsError::InvalidCombination(_))));
        let mut b = with("metrics", json!(["visitors", "conversion_rate"]));
        b["filters"] = json!([["is", "event:goal", ["Signup"]]]);
        assert!(parse(b).is_ok());
    }

    #[test]
    fn order_and_pagination_are_checked() {
        assert!(matches!(parse(with("order_by", json!([["pageviews", "desc"]]))), Err(StatsError::InvalidOrderBy(_))));
        assert!(matches!(parse(with("order_by", json!([["visitors", "up"]]))), Err(StatsError::InvalidOrderBy(_))));
        assert!(matches!(parse(with("pagination", json!({"limit": 0}))), Err(StatsError::InvalidPagination(_))));
        assert!(matches!(parse(with("pagination", json!({"limit": 10_001}))), Err(StatsError::InvalidPagination(_))));
        assert!(matches!(parse(with("include", json!({"comparisons": {"mode": "year_over_year"}}))), Err(StatsError::InvalidInclude(_))));
    }

    #[test]
    fn unknown_fields_and_bad_json_are_invalid_json() {
        assert!(matches!(QueryRequest::from_json(br#"{"site_id": "x"}"#), Err(StatsError::InvalidJson(_))));
        assert!(matches!(QueryRequest::from_json(br#"{"site_id": "x", "metrics": [], "date_range": "day", "extra": 1}"#), Err(StatsError::InvalidJson(_))));
    }
}
