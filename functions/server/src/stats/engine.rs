//! The engine: resolve the range in the site's timezone, read whole rolled-up
//! UTC days from `daily_rollups` and everything else from raw events (with
//! the same SQL the rollups were made with), add the sums, compute metrics.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc};
use deadpool_postgres::Pool;
use serde_json::{Value, json};
use shared::SiteId;
/// Every stats statement runs in one read-only transaction whose
/// `SET LOCAL statement_timeout` ends with it: nothing outlives the request on
/// a pooled connection, and RDS Proxy has no session state to pin.
type Client<'t> = tokio_postgres::Transaction<'t>;
use tokio_postgres::error::SqlState;

use super::error::StatsError;
use super::filters::{Params, filters_sql, grouping};
use super::goals::Goals;
use super::imported::{self, Ask, Imports};
use super::request::{DateRange, Dimension, Direction, Filter, Metric, OrderKey, Preset, Query, QueryRequest, TimeGrain, MAX_HOUR_BUCKETS, MAX_RANGE_DAYS};
use super::response::{ComparisonRow, Meta, QueryResponse, ResultRow, Sums, change};
use super::sessions::{Aggregate, session_events_sql, sessions_sql};

/// More raw pieces than this (a sparse site's empty days between rolled-up
/// ones) and one raw scan of the whole range is cheaper.
const MAX_RAW_PIECES: usize = 8;

/// Timezones whose days are UTC days, so day, week and month buckets can be
/// read from daily rollups.
const UTC_ZONES: &[&str] = &["UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu", "GMT", "Etc/GMT"];

/// The site a query is about, as the caller resolved it.
#[derive(Debug, Clone)]
pub struct StatsSite {
    pub id: SiteId,
    /// An IANA name, as stored in `sites.timezone`.
    pub timezone: String,
}

/// Where numbers may come from. `RawOnly` exists so tests can prove both
/// paths agree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Source {
    #[default]
    Auto,
    RawOnly,
}

/// Answers a Stats API v2 query for one site.
pub async fn query(pool: &Pool, site: &StatsSite, request: QueryRequest, now: DateTime<Utc>) -> Result<QueryResponse, StatsError> {
    query_with(pool, site, request, now, Source::Auto).await
}

pub async fn query_with(
    pool: &Pool,
    site: &StatsSite,
    request: QueryRequest,
    now: DateTime<Utc>,
    source: Source,
) -> Result<QueryResponse, StatsError> {
    let started = std::time::Instant::now();
    let q = Query::parse(&request)?;
    let mut client = pool.get().await?;
    let tx = bounded_read(&mut client).await?;
    let answer = answer(&tx, site, request, q, now, source).await;
    // Read-only: ending it either way changes nothing.
    let _ = tx.rollback().await;
    crate::metrics::global().observe_stats(crate::metrics::StatsKind::Query, started);
    answer
}

/// What a stats statement may take before PostgreSQL cancels it: a query from
/// an API caller (or a public share link) may not hold the database for long.
pub const STATEMENT_TIMEOUT: &str = "SET LOCAL statement_timeout = '20s'";

/// A read-only transaction with [`STATEMENT_TIMEOUT`], for one stats answer.
pub async fn bounded_read(client: &mut deadpool_postgres::Object) -> Result<Client<'_>, tokio_postgres::Error> {
    let client: &mut tokio_postgres::Client = client;
    let tx = client.build_transaction().read_only(true).start().await?;
    tx.batch_execute(STATEMENT_TIMEOUT).await?;
    Ok(tx)
}

async fn answer(
    client: &Client<'_>,
    site: &StatsSite,
    request: QueryRequest,
    q: Query,
    now: DateTime<Utc>,
    source: Source,
) -> Result<QueryResponse, StatsError> {
    let goals = Goals::load(client, site.id).await?;
    check_goal_names(&q, &goals)?;
    let range = resolve_range(client, site, &q.date_range, now).await?;
    let grain = q.time_dimension().map(|(_, g)| concrete_grain(g, &range)).transpose()?;
    let engine = Engine { client, site, goals: &goals, grain, source, now };
    let shape = Shape { dims: q.dimensions.clone(), filters: q.filters.clone(), revenue: q.metrics.iter().any(|m| m.is_revenue()) };
    let current = engine.period(&q, &shape, &range).await?;
    let previous = match q.compare_previous {
        true => {
            let prev = previous_range(client, site, &range).await?;
            let period = engine.period(&q, &shape, &prev).await?;
            Some((prev, period))
        }
        false => None,
    };
    let labels = match grain {
        Some(g) if q.time_labels || previous.is_some() => Some(time_labels(client, site, g, &range).await?),
        _ => None,
    };
    let prev_labels = match (grain, &previous) {
        (Some(g), Some((prev, _))) => Some(time_labels(client, site, g, prev).await?),
        _ => None,
    };
    let mut rows = current.result_rows(&q);
    sort_rows(&mut rows, &q);
    let total_rows = rows.len() as u64;
    let page: Vec<ResultRow> = rows
        .into_iter()
        .skip(q.offset as usize)
        .take(q.limit as usize)
        .map(|(key, metrics)| {
            let comparison = previous.as_ref().map(|(_, p)| {
                let prev_key = shift_time_key(&key, &q, labels.as_deref(), prev_labels.as_deref());
                let metrics_before = p.metrics(&q, &prev_key);
                let change = q.metrics.iter().zip(metrics.iter().zip(&metrics_before)).map(|(m, (a, b))| change(*m, a, b)).collect();
                ComparisonRow { dimensions: prev_key, metrics: metrics_before, change }
            });
            ResultRow { metrics, dimensions: key, comparison }
        })
        .collect();
    let used = previous.as_ref().map_or(current.used, |(_, p)| current.used.and(p.used));
    Ok(QueryResponse {
        results: page,
        meta: Meta {
            time_labels: labels.filter(|_| q.time_labels),
            total_rows: q.total_rows.then_some(total_rows),
            comparison_date_range: previous.as_ref().map(|(p, _)| [p.start.to_rfc3339(), p.end.to_rfc3339()]),
            source: used.name().to_owned(),
            imports_included: current.imports.as_ref().map(|i| *i == Imports::Included),
            imports_skip_reason: match &current.imports {
                Some(Imports::Skipped { reason, .. }) => Some((*reason).to_owned()),
                _ => None,
            },
            imports_warning: match &current.imports {
                Some(Imports::Skipped { warning, .. }) => warning.clone(),
                _ => None,
            },
        },
        query: json!({
            "site_id": request.site_id, "metrics": request.metrics,
            "date_range": [range.start.to_rfc3339(), range.end.to_rfc3339()], "timezone": site.timezone,
            "dimensions": request.dimensions, "filters": request.filters, "order_by": request.order_by,
            "include": request.include, "pagination": {"limit": q.limit, "offset": q.offset},
        }),
    })
}

/// A goal filter naming no goal of the site is a mistake, not an empty answer.
fn check_goal_names(q: &Query, goals: &Goals) -> Result<(), StatsError> {
    let named = q.filters.iter().flat_map(Filter::conditions).filter(|c| *c.1 == Dimension::Goal).flat_map(|c| c.2.iter());
    match named.into_iter().find(|name| goals.by_name(name).is_none()) {
        Some(name) => Err(StatsError::InvalidFilter(format!("the site has no goal named `{name}`"))),
        None => Ok(()),
    }
}

/// `[start, end)` in UTC; `days` are the local days it was made of, if any.
#[derive(Debug, Clone)]
pub struct Range {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub days: Option<(NaiveDate, NaiveDate)>,
}

pub(super) fn pg_error(e: tokio_postgres::Error) -> StatsError {
    // Rust's regex syntax is checked at parse time; PostgreSQL's may still differ.
    if e.code() == Some(&SqlState::INVALID_REGULAR_EXPRESSION) {
        let reason = e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned());
        return StatsError::InvalidRegex { pattern: "(a `matches` filter)".into(), reason };
    }
    StatsError::Postgres(e)
}

async fn today_in(client: &Client<'_>, site: &StatsSite, now: DateTime<Utc>) -> Result<NaiveDate, StatsError> {
    client
        .query_one("SELECT ($1::timestamptz AT TIME ZONE $2)::date", &[&now, &site.timezone])
        .await
        .map(|r| r.get(0))
        .map_err(|e| if e.code() == Some(&SqlState::INVALID_PARAMETER_VALUE) { StatsError::SiteTimezone(site.timezone.clone()) } else { e.into() })
}

/// Local days `[a, b]` as UTC instants: PostgreSQL does the timezone maths.
async fn local_days(client: &Client<'_>, site: &StatsSite, a: NaiveDate, b: NaiveDate) -> Result<Range, StatsError> {
    let row = client
        .query_one(
            "SELECT ($1::date::timestamp AT TIME ZONE $3), (($2::date + 1)::timestamp AT TIME ZONE $3)",
            &[&a, &b, &site.timezone],
        )
        .await?;
    Ok(Range { start: row.get(0), end: row.get(1), days: Some((a, b)) })
}

pub(super) async fn resolve_range(client: &Client<'_>, site: &StatsSite, range: &DateRange, now: DateTime<Utc>) -> Result<Range, StatsError> {
    let today = today_in(client, site, now).await?;
    let (a, b) = match range {
        DateRange::Instants(s, e) => return Ok(Range { start: s.to_utc(), end: e.to_utc(), days: None }),
        DateRange::Dates(a, b) => (*a, *b),
        DateRange::Preset { preset, anchor } => {
            let t = anchor.unwrap_or(today);
            let first_of_month = t.with_day(1).unwrap_or(t);
            match preset {
                Preset::Day => (t, t),
                Preset::Days(n) => (t - Duration::days(*n), t - Duration::days(1)),
                Preset::Month => (first_of_month, t),
                Preset::Months(n) => (first_of_month.checked_sub_months(Months::new(*n as u32 - 1)).unwrap_or(first_of_month), t),
                Preset::Year => (t.with_ordinal(1).unwrap_or(t), t),
                Preset::All => {
                    let first = first_day(client, site).await?.unwrap_or(t).min(t);
                    (first.max(t - Duration::days(MAX_RANGE_DAYS - 1)), t)
                }
            }
        }
    };
    local_days(client, site, a, b).await
}

/// The site's first day with data, in its timezone.
async fn first_day(client: &Client<'_>, site: &StatsSite) -> Result<Option<NaiveDate>, StatsError> {
    let row = client
        .query_one(
            "SELECT least((SELECT min(day) FROM daily_rollups WHERE site_id = $1 AND dimension = ''),
                          (SELECT (min(ts) AT TIME ZONE $2)::date FROM events WHERE site_id = $1))",
            &[site.id.as_uuid(), &site.timezone],
        )
        .await?;
    Ok(row.get(0))
}

/// The period of the same length just before.
async fn previous_range(client: &Client<'_>, site: &StatsSite, range: &Range) -> Result<Range, StatsError> {
    match range.days {
        Some((a, b)) => {
            let n = (b - a).num_days() + 1;
            local_days(client, site, a - Duration::days(n), a - Duration::days(1)).await
        }
        None => Ok(Range { start: range.start - (range.end - range.start), end: range.start, days: None }),
    }
}

fn concrete_grain(grain: TimeGrain, range: &Range) -> Result<TimeGrain, StatsError> {
    let span = range.end - range.start;
    let grain = match grain {
        TimeGrain::Auto if span <= Duration::hours(25) => TimeGrain::Hour,
        TimeGrain::Auto if span <= Duration::days(92) => TimeGrain::Day,
        TimeGrain::Auto => TimeGrain::Month,
        g => g,
    };
    let hours = span.num_hours();
    if grain == TimeGrain::Hour && hours > MAX_HOUR_BUCKETS {
        return Err(StatsError::TooManyBuckets { buckets: hours, max: MAX_HOUR_BUCKETS });
    }
    Ok(grain)
}

/// (`date_trunc` unit, `to_char` format) of a grain.
fn grain_sql(grain: TimeGrain) -> (&'static str, &'static str) {
    match grain {
        TimeGrain::Hour => ("hour", "YYYY-MM-DD HH24:00:00"),
        TimeGrain::Week => ("week", "YYYY-MM-DD"),
        TimeGrain::Month => ("month", "YYYY-MM-DD"),
        TimeGrain::Day | TimeGrain::Auto => ("day", "YYYY-MM-DD"),
    }
}

/// Every bucket label of the range, in the site's timezone.
async fn time_labels(client: &Client<'_>, site: &StatsSite, grain: TimeGrain, range: &Range) -> Result<Vec<String>, StatsError> {
    let (unit, fmt) = grain_sql(grain);
    let rows = client
        .query(
            &format!(
                "SELECT to_char(g, '{fmt}') FROM generate_series(date_trunc('{unit}', $1::timestamptz AT TIME ZONE $3),
                                                                 ($2::timestamptz AT TIME ZONE $3) - interval '1 microsecond',
                                                                 interval '1 {unit}') g"
            ),
            &[&range.start, &range.end, &site.timezone],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What is grouped and filtered; one query may need several (conversion bases).
#[derive(Debug, Clone)]
struct Shape {
    dims: Vec<Dimension>,
    filters: Vec<Filter>,
    revenue: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Used {
    Nothing,
    Rollups,
    Raw,
    Mixed,
}

impl Used {
    fn and(self, other: Used) -> Used {
        match (self, other) {
            (Used::Nothing, o) | (o, Used::Nothing) => o,
            (a, b) if a == b => a,
            _ => Used::Mixed,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Used::Nothing | Used::Raw => "raw",
            Used::Rollups => "rollups",
            Used::Mixed => "mixed",
        }
    }
}

/// A period's sums per dimension key, and the conversion bases if asked.
struct Period {
    rows: HashMap<Vec<String>, Sums>,
    bases: Option<HashMap<Vec<String>, i64>>,
    used: Used,
    /// With `include.imports`: whether the imported sums are in `rows`.
    imports: Option<Imports>,
}

impl Period {
    fn goal_index(q: &Query) -> Option<usize> {
        q.dimensions.iter().position(|d| *d == Dimension::Goal)
    }

    fn metrics(&self, q: &Query, key: &[String]) -> Vec<Value> {
        let empty = Sums::default();
        let sums = self.rows.get(key).unwrap_or(&empty);
        let base = self.bases.as_ref().map(|b| {
            let mut base_key = key.to_vec();
            if let Some(i) = Self::goal_index(q) {
                base_key.remove(i);
            }
            b.get(&base_key).copied().unwrap_or(0)
        });
        q.metrics.iter().map(|m| sums.metric(*m, base)).collect()
    }

    fn result_rows(&self, q: &Query) -> Vec<(Vec<String>, Vec<Value>)> {
        let mut keys: Vec<&Vec<String>> = self.rows.keys().collect();
        let none = Vec::new();
        if q.dimensions.is_empty() && keys.is_empty() {
            keys.push(&none);
        }
        keys.into_iter().map(|k| (k.clone(), self.metrics(q, k))).collect()
    }
}

struct Engine<'a> {
    client: &'a Client<'a>,
    site: &'a StatsSite,
    goals: &'a Goals,
    grain: Option<TimeGrain>,
    source: Source,
    now: DateTime<Utc>,
}

impl Engine<'_> {
    async fn period(&self, q: &Query, shape: &Shape, range: &Range) -> Result<Period, StatsError> {
        let (mut rows, used) = self.compute(shape, range).await?;
        let bases = match q.metrics.contains(&Metric::ConversionRate) {
            true => {
                // Visitors of the same breakdown without the goal: what converted is taken of it.
                let base_shape = Shape {
                    dims: shape.dims.iter().filter(|d| **d != Dimension::Goal).cloned().collect(),
                    filters: shape.filters.iter().filter(|f| !f.is_goal_condition()).cloned().collect(),
                    revenue: false,
                };
                let (mut base, _) = self.compute(&base_shape, range).await?;
                if q.with_imported {
                    // What imported conversions are taken of: the imported visitors of the same shape.
                    let ask = self.ask(&[Metric::Visitors], &base_shape, range);
                    imported::add(self.client, &ask, &mut base).await?;
                }
                Some(base.into_iter().map(|(k, s)| (k, s.visitors)).collect())
            }
            false => None,
        };
        let imports = match q.with_imported {
            true => {
                let ask = self.ask(&q.metrics, shape, range);
                Some(imported::add(self.client, &ask, &mut rows).await?)
            }
            false => None,
        };
        Ok(Period { rows, bases, used, imports })
    }

    /// The part of a query imported data may answer (see [`imported::add`]).
    fn ask<'s>(&'s self, metrics: &'s [Metric], shape: &'s Shape, range: &Range) -> Ask<'s> {
        Ask { site: &self.site.id, metrics, dims: &shape.dims, filters: &shape.filters, grain: self.grain, days: range.days, goals: self.goals }
    }

    async fn compute(&self, shape: &Shape, range: &Range) -> Result<(HashMap<Vec<String>, Sums>, Used), StatsError> {
        let (days, raw) = self.plan(shape, range).await?;
        let mut out: HashMap<Vec<String>, Sums> = HashMap::new();
        let mut used = Used::Nothing;
        if !days.is_empty() {
            self.read_rollups(shape, &days, &mut out).await?;
            used = Used::Rollups;
        }
        for (start, end) in raw {
            self.read_raw(shape, start, end, &mut out).await?;
            used = used.and(Used::Raw);
        }
        tracing::debug!(site = %self.site.id, rollup_days = days.len(), source = used.name(), "stats query");
        Ok((out, used))
    }

    /// Rollups answer a query with no filters and at most one stored
    /// breakdown, bucketed (if at all) in whole UTC days.
    fn rollup_answers(&self, shape: &Shape) -> bool {
        let non_time: Vec<&Dimension> = shape.dims.iter().filter(|d| !matches!(d, Dimension::Time(_))).collect();
        let time_ok = match self.grain {
            None => true,
            Some(TimeGrain::Hour) => false,
            Some(_) => UTC_ZONES.contains(&self.site.timezone.as_str()),
        };
        self.source == Source::Auto
            && shape.filters.is_empty()
            && non_time.len() <= 1
            && non_time.iter().all(|d| d.rollup_name().is_some())
            && (time_ok || !shape.dims.iter().any(|d| matches!(d, Dimension::Time(_))))
    }

    /// The rolled-up days to read and the raw pieces for the rest.
    async fn plan(&self, shape: &Shape, range: &Range) -> Result<(Vec<NaiveDate>, Vec<(DateTime<Utc>, DateTime<Utc>)>), StatsError> {
        let everything_raw = Ok((Vec::new(), vec![(range.start, range.end)]));
        if !self.rollup_answers(shape) {
            return everything_raw;
        }
        let start_day = range.start.date_naive();
        let first = if range.start == start_day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc() { start_day } else { start_day + Duration::days(1) };
        // Whole days only, and never today: its rollup is still growing.
        let last_excl = range.end.date_naive().min(self.now.date_naive());
        if first >= last_excl {
            return everything_raw;
        }
        let goals_since: Option<DateTime<Utc>> = if shape.dims.contains(&Dimension::Goal) { self.goals.newest() } else { None };
        let days: Vec<NaiveDate> = self
            .client
            .query(
                "SELECT day FROM daily_rollups r
                 WHERE site_id = $1 AND dimension = '' AND value = '' AND day >= $2 AND day < $3
                   AND rolled_up_at >= ((day + 1)::timestamp AT TIME ZONE 'UTC')
                   AND rolled_up_at >= coalesce($4::timestamptz, '-infinity')
                   AND NOT EXISTS (SELECT 1 FROM rollup_dirty d WHERE d.site_id = r.site_id AND d.day = r.day)
                 ORDER BY day",
                &[self.site.id.as_uuid(), &first, &last_excl, &goals_since],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let raw = complement(range, &days);
        if raw.len() > MAX_RAW_PIECES {
            return everything_raw;
        }
        Ok((days, raw))
    }

    async fn read_rollups(&self, shape: &Shape, days: &[NaiveDate], out: &mut HashMap<Vec<String>, Sums>) -> Result<(), StatsError> {
        let dimension = shape.dims.iter().find_map(Dimension::rollup_name).unwrap_or_default();
        let bucket = match self.grain {
            Some(g) => format!("to_char(date_trunc('{}', day::timestamp), 'YYYY-MM-DD')", grain_sql(g).0),
            None => "''".to_owned(),
        };
        let site = self.site.id.as_uuid();
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {bucket}, value, sum(visitors)::bigint, sum(visits)::bigint, sum(pageviews)::bigint, sum(bounces)::bigint,
                            sum(engaged_ms)::bigint, sum(scroll_depth_sum)::bigint, sum(engaged_pages)::bigint, sum(events)::bigint
                     FROM daily_rollups WHERE site_id = $1 AND dimension = $2 AND day = ANY($3::date[])
                     GROUP BY 1, 2"
                ),
                &[site, &dimension, &days],
            )
            .await?;
        for r in &rows {
            let Some(key) = self.rollup_key(shape, r.get(0), r.get(1)) else { continue };
            let sums = Sums {
                visitors: r.get(2),
                visits: r.get(3),
                pageviews: r.get(4),
                bounces: r.get(5),
                engaged_ms: r.get(6),
                scroll_depth_sum: r.get(7),
                engaged_pages: r.get(8),
                events: r.get(9),
                revenue: Default::default(),
            };
            out.entry(key).or_default().add(&sums);
        }
        if shape.revenue {
            let rows = self
                .client
                .query(
                    &format!(
                        "SELECT {bucket}, d.value, r.cur, sum(r.amount::bigint)::bigint,
                                sum(coalesce((d.revenue_events ->> r.cur)::bigint, 0))::bigint
                         FROM daily_rollups d, jsonb_each_text(d.revenue) AS r(cur, amount)
                         WHERE d.site_id = $1 AND d.dimension = $2 AND d.day = ANY($3::date[])
                         GROUP BY 1, 2, 3"
                    ),
                    &[site, &dimension, &days],
                )
                .await?;
            for r in &rows {
                let Some(key) = self.rollup_key(shape, r.get(0), r.get(1)) else { continue };
                let mut sums = Sums::default();
                sums.revenue.insert(r.get(2), (r.get(3), r.get(4)));
                out.entry(key).or_default().add(&sums);
            }
        }
        Ok(())
    }

    /// A rollup row's key in the query's dimension order; goal rows are
    /// stored by goal id and shown by name (deleted goals drop out).
    fn rollup_key(&self, shape: &Shape, bucket: String, value: String) -> Option<Vec<String>> {
        shape
            .dims
            .iter()
            .map(|d| match d {
                Dimension::Time(_) => Some(bucket.clone()),
                Dimension::Goal => self.goals.by_id(&value).map(|g| g.display_name.clone()),
                _ => Some(value.clone()),
            })
            .collect()
    }

    async fn read_raw(&self, shape: &Shape, start: DateTime<Utc>, end: DateTime<Utc>, out: &mut HashMap<Vec<String>, Sums>) -> Result<(), StatsError> {
        let mut params = Params::default();
        let site = params.push(*self.site.id.as_uuid(), "::uuid");
        let (start, end) = (params.push(start, "::timestamptz"), params.push(end, "::timestamptz"));
        let bucket = match self.grain {
            Some(g) => {
                let (unit, fmt) = grain_sql(g);
                let tz = params.push(self.site.timezone.clone(), "::text");
                format!("to_char(date_trunc('{unit}', e.ts AT TIME ZONE {tz}), '{fmt}')")
            }
            None => "''::text".to_owned(),
        };
        let g = grouping(&shape.dims, self.goals, &mut params);
        let filter = filters_sql(&shape.filters, self.goals, &mut params);
        let agg = Aggregate {
            ev: "ev".into(),
            s: "s".into(),
            keys: g.keys,
            fanout: g.fanout,
            session_fanout: String::new(),
            filter,
            presence: g.presence.into(),
            counted: g.counted.into(),
            engaged: g.engaged.into(),
        };
        let sql = format!(
            "WITH ev AS ({}), s AS ({}), {} {}",
            session_events_sql(&site, &start, &end, &bucket),
            sessions_sql("ev"),
            agg.ctes(),
            agg.select()
        );
        let rows = self.client.query(&sql, &params.refs()).await.map_err(pg_error)?;
        let n = shape.dims.len();
        for r in &rows {
            let key: Vec<String> = (0..n).map(|i| r.get(2 + i)).collect();
            let c = 2 + n;
            let mut sums = Sums {
                visitors: r.get(c),
                visits: r.get(c + 1),
                pageviews: r.get(c + 2),
                bounces: r.get(c + 3),
                engaged_ms: r.get(c + 4),
                scroll_depth_sum: r.get(c + 5),
                engaged_pages: r.get(c + 6),
                events: r.get(c + 7),
                revenue: Default::default(),
            };
            let (revenue, counts): (Value, Value) = (r.get(c + 8), r.get(c + 9));
            if let Some(map) = revenue.as_object() {
                for (cur, amount) in map {
                    let n = counts.get(cur).and_then(Value::as_i64).unwrap_or(0);
                    sums.revenue.insert(cur.clone(), (amount.as_i64().unwrap_or(0), n));
                }
            }
            out.entry(key).or_default().add(&sums);
        }
        Ok(())
    }
}

/// The parts of `range` not covered by the given (sorted) UTC days.
fn complement(range: &Range, days: &[NaiveDate]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut pieces = Vec::new();
    let mut cursor = range.start;
    for day in days {
        let day_start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        if cursor < day_start {
            pieces.push((cursor, day_start));
        }
        cursor = cursor.max(day_start + Duration::days(1));
    }
    if cursor < range.end {
        pieces.push((cursor, range.end));
    }
    pieces
}

/// The previous period's key of a row: the time label at the same position.
fn shift_time_key(key: &[String], q: &Query, labels: Option<&[String]>, prev_labels: Option<&[String]>) -> Vec<String> {
    let mut key = key.to_vec();
    if let (Some((i, _)), Some(labels), Some(prev)) = (q.time_dimension(), labels, prev_labels)
        && let Some(pos) = labels.iter().position(|l| *l == key[i])
        && let Some(label) = prev.get(pos)
    {
        key[i] = label.clone();
    }
    key
}

/// The requested order, then the default (time ascending, else the first
/// metric descending), then dimension values: the same data always gives the
/// same page.
fn sort_rows(rows: &mut [(Vec<String>, Vec<Value>)], q: &Query) {
    let mut order = q.order_by.clone();
    match q.time_dimension() {
        Some((i, _)) => order.push((OrderKey::Dimension(i), Direction::Asc)),
        None if !q.metrics[0].is_revenue() => order.push((OrderKey::Metric(q.metrics[0]), Direction::Desc)),
        None => {}
    }
    order.extend((0..q.dimensions.len()).map(|i| (OrderKey::Dimension(i), Direction::Asc)));
    let number = |v: &Value| v.as_f64().unwrap_or(f64::NEG_INFINITY);
    rows.sort_by(|a, b| {
        for (key, dir) in &order {
            let ord = match key {
                OrderKey::Dimension(i) => a.0[*i].cmp(&b.0[*i]),
                OrderKey::Metric(m) => {
                    let idx = q.metrics.iter().position(|x| x == m).unwrap_or(0);
                    number(&a.1[idx]).total_cmp(&number(&b.1[idx]))
                }
            };
            let ord = if *dir == Direction::Desc { ord.reverse() } else { ord };
            if ord.is_ne() {
                return ord;
            }
        }
        std::cmp::Ordering::Equal
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    #[test]
    fn the_complement_of_rolled_days_is_the_raw_pieces() {
        let at = |d: u32, h: u32| day(d).and_hms_opt(h, 0, 0).unwrap().and_utc();
        let range = Range { start: at(1, 5), end: at(6, 12), days: None };
        assert_eq!(complement(&range, &[day(2), day(3), day(5)]), vec![(at(1, 5), at(2, 0)), (at(4, 0), at(5, 0)), (at(6, 0), at(6, 12))]);
        assert_eq!(complement(&range, &[]), vec![(at(1, 5), at(6, 12))]);
    }
}
