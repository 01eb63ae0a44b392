//! Funnels: ordered steps (pageview path patterns, goals, custom event names)
//! and how many visits get how far, over raw events, in one SQL statement.
//!
//! Definitions (README "Funnels"):
//! - a funnel is evaluated per visit, visits as [`super::sessions`] defines
//!   them (a visitor's events with no gap over 30 minutes, within a UTC day);
//! - the request's filters select events exactly as in any Stats API query
//!   (`visit:*` conditions judged on the event's visit); steps match among
//!   the selected events only;
//! - a visit reaches step k when it has events matching steps 1..k in that
//!   order: step k's event comes after step k-1's in the visit's order (time,
//!   then event id), so one event completes at most one step and repeating a
//!   step changes nothing. The earliest match of each step is taken, which
//!   finds an ordered match whenever one exists;
//! - visitors reaching a step are distinct visitor hashes per UTC day, summed
//!   over the days (as every visitor count here);
//! - raw events only: imported data has no order of events within a visit.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;

use super::engine::{StatsSite, bounded_read, pg_error, resolve_range};
use super::error::StatsError;
use super::filters::{Params, filters_sql};
use super::goals::{Goals, like_pattern};
use super::request::{DateRange, Dimension, Filter};
use super::response::round;
use super::sessions::{INTERACTIVE, SESSION_GAP_MINUTES, UTC_DAY, session_events_of_sql, sessions_sql};

pub const MIN_STEPS: usize = 2;
pub const MAX_STEPS: usize = 8;
const MAX_STEP_LEN: usize = 2_000;
/// The funnel's statement sorts the range's events by visitor: in memory rather
/// than in temporary files; and its one join (events to the visitor-days that
/// enter) hashed, since a nested loop there is quadratic when the table's
/// statistics underestimate it (a fresh table, today's rows).
const PLANNER: &str = "SET LOCAL work_mem = '64MB'; SET LOCAL enable_nestloop = off";

/// What `meta.imports` says: funnels never include imported data.
pub const IMPORTS_NOTE: &str = "not included: imported data has no order of events within a visit, so funnels read raw events only";

/// The request body as sent (`POST /api/v2/funnel`); `site_id` is resolved by the caller.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FunnelRequest {
    pub site_id: String,
    pub date_range: Value,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub filters: Vec<Value>,
    pub steps: Vec<Value>,
}

impl FunnelRequest {
    /// Reads a JSON body; a malformed one is [`StatsError::InvalidJson`].
    pub fn from_json(body: &[u8]) -> Result<Self, StatsError> {
        serde_json::from_slice(body).map_err(|e| StatsError::InvalidJson(e.to_string()))
    }
}

/// One step: what an event must be to complete it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// A pageview whose path matches the pattern (`*` matches any run of characters, `/` included).
    Page(String),
    /// A goal of the site, by its name: matched as the goal matches events.
    Goal(String),
    /// A goal-type (interactive) event with this name.
    Event(String),
}

impl Step {
    fn parse(index: usize, value: &Value) -> Result<Self, StatsError> {
        let bad = |why: &str| StatsError::InvalidFunnel(format!("step {}: {why}, not {value}", index + 1));
        let object = value
            .as_object()
            .filter(|o| o.len() == 1)
            .ok_or_else(|| bad("a step is one of {\"page\": …}, {\"goal\": …}, {\"event\": …}"))?;
        let (kind, text) = object.iter().next().ok_or_else(|| bad("a step is an object with one key"))?;
        let text = text.as_str().filter(|t| !t.trim().is_empty() && t.len() <= MAX_STEP_LEN);
        let text = text.ok_or_else(|| bad(&format!("`{kind}` takes a non-empty string of at most {MAX_STEP_LEN} bytes")))?.to_owned();
        match kind.as_str() {
            "page" if !text.starts_with('/') && !text.starts_with('*') => Err(bad("a page pattern starts with `/` (or `*`)")),
            "page" => Ok(Step::Page(text)),
            "goal" => Ok(Step::Goal(text)),
            "event" => Ok(Step::Event(text)),
            other => Err(bad(&format!("unknown step kind `{other}` (page, goal or event)"))),
        }
    }

    /// How the dashboard shows the step.
    pub fn label(&self) -> String {
        match self {
            Step::Page(p) => format!("Visit {p}"),
            Step::Goal(g) => g.clone(),
            Step::Event(e) => format!("Event {e}"),
        }
    }
}

/// A parsed funnel: 2 to 8 steps, a date range and filters.
#[derive(Debug, Clone)]
pub struct Funnel {
    pub steps: Vec<Step>,
    pub date_range: DateRange,
    pub filters: Vec<Filter>,
}

impl Funnel {
    pub fn parse(request: &FunnelRequest) -> Result<Self, StatsError> {
        let n = request.steps.len();
        if !(MIN_STEPS..=MAX_STEPS).contains(&n) {
            return Err(StatsError::InvalidFunnel(format!("a funnel has {MIN_STEPS} to {MAX_STEPS} steps, not {n}")));
        }
        let steps = request.steps.iter().enumerate().map(|(i, s)| Step::parse(i, s)).collect::<Result<Vec<_>, _>>()?;
        let filters = request.filters.iter().map(|f| Filter::parse(f, 0)).collect::<Result<Vec<_>, _>>()?;
        Ok(Funnel { steps, date_range: DateRange::parse(&request.date_range, request.date.as_deref())?, filters })
    }
}

/// One step of the answer. Rates are percentages with 2 decimals (0 when the base is 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// The step as asked, e.g. `{"page": "/pricing*"}`.
    pub step: Step,
    pub label: String,
    /// Visitors (per UTC day, summed) with a visit reaching the step.
    pub visitors: i64,
    /// Visits reaching the step.
    pub visits: i64,
    /// Visits reaching this step over visits reaching step 1.
    pub conversion_rate: f64,
    /// Visits reaching this step over visits reaching the step before (100 for step 1).
    pub conversion_rate_step: f64,
    /// Visits that reached the step before but not this one (0 for step 1).
    pub dropoff: i64,
    /// `dropoff` over visits reaching the step before.
    pub dropoff_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelMeta {
    /// Always `raw`: funnels need each visit's events in order.
    pub source: String,
    pub imports: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelResponse {
    pub steps: Vec<StepResult>,
    /// Visits completing the funnel over visits reaching step 1, in percent.
    pub conversion_rate: f64,
    pub meta: FunnelMeta,
    pub query: Value,
}

/// Answers a funnel request for one site.
pub async fn funnel(pool: &Pool, site: &StatsSite, request: FunnelRequest, now: DateTime<Utc>) -> Result<FunnelResponse, StatsError> {
    let started = std::time::Instant::now();
    let f = Funnel::parse(&request)?;
    let mut client = pool.get().await?;
    let tx = bounded_read(&mut client).await?;
    tx.batch_execute(PLANNER).await?;
    let answer = answer(&tx, site, &request, &f, now).await;
    // Read-only: ending it either way changes nothing.
    let _ = tx.rollback().await;
    crate::metrics::global().observe_stats(crate::metrics::StatsKind::Query, started);
    answer
}

async fn answer(
    tx: &tokio_postgres::Transaction<'_>,
    site: &StatsSite,
    request: &FunnelRequest,
    f: &Funnel,
    now: DateTime<Utc>,
) -> Result<FunnelResponse, StatsError> {
    let goals = Goals::load(tx, site.id).await?;
    let range = resolve_range(tx, site, &f.date_range, now).await?;
    let (sql, params) = funnel_sql(site, f, &goals, range.start, range.end)?;
    let row = tx.query_one(&sql, &params.refs()).await.map_err(|e| match e.code() {
        Some(&SqlState::QUERY_CANCELED) => StatsError::FunnelTooSlow,
        _ => pg_error(e),
    })?;
    let reached: Vec<(i64, i64)> = (0..f.steps.len()).map(|k| (row.get(2 * k), row.get(2 * k + 1))).collect();
    let steps = shape(&f.steps, &reached);
    let first = reached.first().map_or(0, |r| r.1);
    let last = reached.last().map_or(0, |r| r.1);
    Ok(FunnelResponse {
        steps,
        conversion_rate: percent(last, first),
        meta: FunnelMeta { source: "raw".into(), imports: IMPORTS_NOTE.into() },
        query: json!({
            "site_id": request.site_id, "date_range": [range.start.to_rfc3339(), range.end.to_rfc3339()], "timezone": site.timezone,
            "filters": request.filters, "steps": f.steps,
        }),
    })
}

fn percent(part: i64, whole: i64) -> f64 {
    if whole == 0 { 0.0 } else { round(part as f64 / whole as f64 * 100.0, 2) }
}

/// The answer's steps from `(visitors, visits)` reaching each step.
pub fn shape(steps: &[Step], reached: &[(i64, i64)]) -> Vec<StepResult> {
    let first = reached.first().map_or(0, |r| r.1);
    steps
        .iter()
        .zip(reached)
        .enumerate()
        .map(|(k, (step, &(visitors, visits)))| {
            let before = if k == 0 { visits } else { reached[k - 1].1 };
            let dropoff = before - visits;
            StepResult {
                step: step.clone(),
                label: step.label(),
                visitors,
                visits,
                conversion_rate: percent(visits, first),
                conversion_rate_step: percent(visits, before),
                dropoff,
                dropoff_rate: percent(dropoff, before),
            }
        })
        .collect()
}

/// Whether event `ev` (or another alias) completes the step; values go in as parameters.
fn step_sql(step: &Step, goals: &Goals, ev: &str, params: &mut Params) -> Result<String, StatsError> {
    let page =
        |like: String, params: &mut Params| format!("{ev}.event_type = 'pageview' AND {ev}.pathname LIKE {}", params.push(like, "::text"));
    let event =
        |name: String, params: &mut Params| format!("{ev}.event_type IN {INTERACTIVE} AND {ev}.name = {}", params.push(name, "::text"));
    Ok(match step {
        Step::Page(p) => page(like_pattern(p), params),
        Step::Event(e) => event(e.clone(), params),
        Step::Goal(name) => {
            let goal = goals.by_name(name).ok_or_else(|| StatsError::InvalidFunnel(format!("the site has no goal named `{name}`")))?;
            match (goal.kind.as_str(), &goal.like_pattern, &goal.event_name) {
                ("pageview", Some(like), _) => page(like.clone(), params),
                (_, _, Some(name)) => event(name.clone(), params),
                // A goal without what it matches on matches nothing.
                _ => "false".into(),
            }
        }
    })
}

/// The one statement: each visit's selected events that match any step,
/// numbered in order; per visit the positions matching each step; the
/// earliest position of step k after step k-1's, stage by stage; then
/// visits and visitors with each step reached.
pub fn funnel_sql(
    site: &StatsSite,
    f: &Funnel,
    goals: &Goals,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(String, Params), StatsError> {
    let named = f.filters.iter().flat_map(Filter::conditions).filter(|c| *c.1 == Dimension::Goal).flat_map(|c| c.2.iter());
    if let Some(name) = named.into_iter().find(|name| goals.by_name(name).is_none()) {
        return Err(StatsError::InvalidFilter(format!("the site has no goal named `{name}`")));
    }
    let mut params = Params::default();
    let site_p = params.push(*site.id.as_uuid(), "::uuid");
    let (start, end) = (params.push(start, "::timestamptz"), params.push(end, "::timestamptz"));
    // Without filters the steps are judged in the scan itself (alias `e`).
    let alias = if f.filters.is_empty() { "e" } else { "ev" };
    let matches = f.steps.iter().map(|s| step_sql(s, goals, alias, &mut params)).collect::<Result<Vec<_>, _>>()?;
    // Only visitor-days with an event of step 1 can enter: the others are
    // dropped before their sessions are made (most of a site's, usually).
    let entering = step_sql(&f.steps[0], goals, "x", &mut params)?;
    let visitor_days = format!(
        "((e.ts AT TIME ZONE 'UTC')::date, e.visitor_hash) IN (SELECT (x.ts AT TIME ZONE 'UTC')::date, x.visitor_hash FROM events x
           WHERE x.site_id = {site_p} AND x.ts >= {start} AND x.ts < {end} AND {entering})"
    );
    let n = matches.len();
    if f.filters.is_empty() {
        return Ok((unfiltered_sql(&matches, &site_p, &start, &end, &visitor_days), params));
    }
    let filter = filters_sql(&f.filters, goals, &mut params);
    let flags: String = matches.iter().enumerate().map(|(k, m)| format!(", coalesce(({m}), false) AS m{k}")).collect();
    let any = matches.iter().map(|m| format!("({m})")).collect::<Vec<_>>().join(" OR ");
    // With filters, each event carries its visit's facts (`visit:*` conditions read them).
    let sessions = sessions_sql("ev");
    let join = "JOIN s s ON s.uday = ev.uday AND s.bucket = ev.bucket AND s.visitor_hash = ev.visitor_hash AND s.session_no = ev.session_no";
    let sql = format!(
        "WITH ev AS ({events}), s AS ({sessions}),
         sel AS (
            SELECT ev.uday, ev.visitor_hash, ev.session_no,
                   -- Numbered per visitor-day, in the order sessions were made in (no new sort); within a visit that is its order.
                   row_number() OVER (PARTITION BY ev.uday, ev.bucket, ev.visitor_hash ORDER BY ev.ts, ev.id) AS pos{flags}
            FROM ev ev {join}
            WHERE ({filter}) AND ({any})),
         {counted}",
        counted = counted_sql(n, ""),
        events = session_events_of_sql(&site_p, &start, &end, "''::text", &visitor_days),
    );
    Ok((sql, params))
}

/// The statement without filters, in one ordered pass: only the columns it
/// needs leave the scan (the step matches as booleans, not the paths), one
/// sort by visitor-day and time feeds the session split and the positions,
/// and only events matching a step reach the per-visit arrays. Each visit's
/// stage (how many steps it reached) is then counted per visitor-day, so
/// visitors need no distinct count.
fn unfiltered_sql(matches: &[String], site: &str, start: &str, end: &str, visitor_days: &str) -> String {
    let n = matches.len();
    let flags: String = matches.iter().enumerate().map(|(k, m)| format!(", coalesce(({m}), false) AS m{k}")).collect();
    let cols: String = (0..n).map(|k| format!(", m{k}")).collect();
    let any = (0..n).map(|k| format!("m{k}")).collect::<Vec<_>>().join(" OR ");
    format!(
        "WITH ev AS (
            SELECT {UTC_DAY} AS uday, e.visitor_hash, e.ts, e.id{flags}
            FROM events e WHERE e.site_id = {site} AND e.ts >= {start} AND e.ts < {end} AND ({visitor_days})),
         w AS (
            SELECT ev.uday, ev.visitor_hash, ev.ts, ev.id{cols}, row_number() OVER o AS pos,
                   CASE WHEN ev.ts - lag(ev.ts) OVER o <= interval '{SESSION_GAP_MINUTES} minutes' THEN 0 ELSE 1 END AS starts
            FROM ev ev WINDOW o AS (PARTITION BY ev.uday, ev.visitor_hash ORDER BY ev.ts, ev.id)),
         sel AS (
            -- The same window order: no second sort.
            SELECT w.uday, w.visitor_hash, w.pos{cols},
                   sum(w.starts) OVER (PARTITION BY w.uday, w.visitor_hash ORDER BY w.ts, w.id ROWS UNBOUNDED PRECEDING) AS session_no
            FROM w w),
         {counted}",
        counted = counted_sql(n, &format!(" WHERE {any}")),
    )
}

/// From `sel` (a visit's events as `uday, visitor_hash, session_no, pos, m0..`):
/// the visits entering, as arrays of the positions matching each step; each
/// visit's stage (how many steps it reached) once, a `LATERAL` per step (a
/// chain of inlined CTEs would be evaluated again wherever referenced); then
/// per visitor-day the visits reaching each step, so visitors need no
/// distinct count; and the sums, visitors and visits per step.
fn counted_sql(n: usize, only: &str) -> String {
    let arrays: String = (0..n).map(|k| format!(", array_agg(pos) FILTER (WHERE m{k}) AS a{k}")).collect();
    let stages: String = (0..n)
        .map(|k| {
            let after = if k == 0 { String::new() } else { format!(" WHERE u.p > r{}.p", k - 1) };
            format!(",\n LATERAL (SELECT min(u.p) FROM unnest(v.a{k}) AS u(p){after}) AS r{k}(p)")
        })
        .collect();
    let stage = (0..n).map(|k| format!("(r{k}.p IS NOT NULL)::int")).collect::<Vec<_>>().join(" + ");
    let per_day: String = (0..n).map(|k| format!(", count(*) FILTER (WHERE stage > {k}) AS v{k}")).collect();
    let counts =
        (0..n).map(|k| format!("count(*) FILTER (WHERE v{k} > 0)::bigint, coalesce(sum(v{k}), 0)::bigint")).collect::<Vec<_>>().join(", ");
    format!(
        "visits AS (
            SELECT uday, visitor_hash{arrays} FROM sel{only} GROUP BY uday, visitor_hash, session_no HAVING bool_or(m0)),
         days AS (
            SELECT uday, visitor_hash{per_day}
            FROM (SELECT v.uday, v.visitor_hash, {stage} AS stage FROM visits v{stages}) v GROUP BY uday, visitor_hash)
         SELECT {counts} FROM days"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> Result<Funnel, StatsError> {
        Funnel::parse(&serde_json::from_value::<FunnelRequest>(body).map_err(|e| StatsError::InvalidJson(e.to_string()))?)
    }

    fn with_steps(steps: Value) -> Result<Funnel, StatsError> {
        request(json!({"site_id": "example.com", "date_range": "30d", "steps": steps}))
    }

    #[test]
    fn steps_of_each_kind_parse() {
        let f = with_steps(json!([{"page": "/pricing*"}, {"goal": "Signup"}, {"event": "Purchase"}])).unwrap();
        assert_eq!(f.steps, vec![Step::Page("/pricing*".into()), Step::Goal("Signup".into()), Step::Event("Purchase".into())]);
        assert_eq!(serde_json::to_value(&f.steps[0]).unwrap(), json!({"page": "/pricing*"}));
        assert_eq!(f.steps[0].label(), "Visit /pricing*");
    }

    #[test]
    fn bad_steps_are_refused_with_the_reason() {
        let cases = [
            (json!([{"page": "/"}]), "2 to 8 steps, not 1"),
            (json!((0..9).map(|i| json!({"page": format!("/{i}")})).collect::<Vec<_>>()), "not 9"),
            (json!([{"page": "/"}, {"pgae": "/x"}]), "step 2: unknown step kind `pgae`"),
            (json!([{"page": "/"}, {"page": ""}]), "step 2: `page` takes a non-empty string"),
            (json!([{"page": "pricing"}, {"page": "/x"}]), "step 1: a page pattern starts with `/`"),
            (json!([{"page": "/", "goal": "x"}, {"page": "/x"}]), "step 1: a step is one of"),
            (json!(["/", {"page": "/x"}]), "step 1: a step is one of"),
            (json!([{"page": "/"}, {"goal": 3}]), "step 2: `goal` takes"),
            (json!([{"page": "/"}, {"event": "x".repeat(2001)}]), "at most 2000 bytes"),
        ];
        for (steps, reason) in cases {
            let e = with_steps(steps.clone()).unwrap_err();
            assert!(matches!(e, StatsError::InvalidFunnel(_)), "{steps}: {e}");
            assert!(e.to_string().contains(reason), "{steps}: {e}");
            assert!(e.is_client_error());
        }
        let e = request(json!({"site_id": "x", "date_range": "30d", "steps": [{"page": "/"}, {"page": "/a"}], "metrics": []})).unwrap_err();
        assert!(matches!(e, StatsError::InvalidJson(_)), "{e}");
        let e = request(json!({"site_id": "x", "date_range": "3d", "steps": [{"page": "/"}, {"page": "/a"}]})).unwrap_err();
        assert!(matches!(e, StatsError::InvalidDateRange(_)), "{e}");
        let e = request(json!({"site_id": "x", "date_range": "30d", "filters": [["is", "visit:planet", ["x"]]], "steps": [{"page": "/"}, {"page": "/a"}]}))
            .unwrap_err();
        assert!(matches!(e, StatsError::UnknownDimension(_)), "{e}");
    }

    #[test]
    fn rates_and_dropoffs_follow_the_counts() {
        let steps = [Step::Page("/".into()), Step::Page("/a".into()), Step::Page("/b".into())];
        let out = shape(&steps, &[(9, 10), (4, 4), (0, 0)]);
        assert_eq!((out[0].conversion_rate, out[0].conversion_rate_step, out[0].dropoff, out[0].dropoff_rate), (100.0, 100.0, 0, 0.0));
        assert_eq!((out[1].conversion_rate, out[1].conversion_rate_step, out[1].dropoff, out[1].dropoff_rate), (40.0, 40.0, 6, 60.0));
        assert_eq!((out[2].conversion_rate, out[2].conversion_rate_step, out[2].dropoff, out[2].dropoff_rate), (0.0, 0.0, 4, 100.0));
        let empty = shape(&steps, &[(0, 0), (0, 0), (0, 0)]);
        assert!(empty.iter().all(|s| s.conversion_rate == 0.0 && s.dropoff_rate == 0.0));
    }

    #[test]
    fn step_values_are_parameters_and_unknown_goals_are_refused() {
        let site = StatsSite { id: shared::SiteId::from_uuid(uuid::Uuid::nil()), timezone: "UTC".into() };
        let evil = "/'; DROP TABLE events; --";
        let f = with_steps(json!([{"page": evil}, {"event": evil}])).unwrap();
        let (sql, params) = funnel_sql(&site, &f, &Goals::default(), Utc::now(), Utc::now()).unwrap();
        assert!(!sql.contains("DROP"), "{sql}");
        assert_eq!(params.refs().len(), 6, "site, range, two steps, step 1 again for the visitor-days");
        assert!(sql.contains("unnest(v.a1) AS u(p) WHERE u.p > r0.p) AS r1(p)"), "{sql}");
        let f = with_steps(json!([{"page": "/"}, {"goal": "Nope"}])).unwrap();
        let Err(e) = funnel_sql(&site, &f, &Goals::default(), Utc::now(), Utc::now()) else { panic!("an unknown goal is refused") };
        assert!(e.to_string().contains("no goal named `Nope`"), "{e}");
    }
}
