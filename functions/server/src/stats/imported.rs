//! Imported data in answers (`include.imports`): the imported_* aggregates
//! (see `crate::imports`) added to the native sums, for the query shapes
//! they can answer exactly. Every dimension and filter of the query must
//! live in ONE imported table (so one property at a time, with Plausible's
//! grouped exceptions falling out of the tables: country/region/city,
//! os/os version, browser/browser version, hostname/page, the goal name with
//! its link url or 404 path, a source with its UTM tags), the range must be
//! whole days, the interval at least a day, and the metrics ones the tables
//! hold. Any other shape answers native data and says why
//! (`meta.imports_skip_reason`, `meta.imports_warning`), as Plausible does.

use std::collections::HashMap;

use crate::imports::Table;

use super::error::StatsError;
use super::filters::{Params, match_sql};
use super::goals::Goals;
use super::request::{Dimension, Filter, Metric, Operator, TimeGrain};
use super::response::Sums;

type Client<'t> = tokio_postgres::Transaction<'t>;

/// What became of the imported data for a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imports {
    Included,
    /// Plausible's `imports_skip_reason` and, for a shape we cannot answer, a warning.
    Skipped {
        reason: &'static str,
        warning: Option<String>,
    },
}

const UNSUPPORTED_WARNING: &str = "Imported stats are not included in the results because query parameters are not supported. For more information, see README \"Imports\".";

fn unsupported(why: &str) -> Imports {
    tracing::debug!(why, "imported data skipped");
    Imports::Skipped { reason: "unsupported_query", warning: Some(UNSUPPORTED_WARNING.to_owned()) }
}

/// The imported table and column expression of a dimension.
fn column(d: &Dimension) -> Option<(Table, &'static str)> {
    Some(match d {
        Dimension::Page => (Table::Pages, "page"),
        Dimension::Hostname => (Table::Pages, "hostname"),
        Dimension::Name => (Table::CustomEvents, "name"),
        Dimension::Prop(k) if k == "url" => (Table::CustomEvents, "link_url"),
        Dimension::Prop(k) if k == "path" => (Table::CustomEvents, "path"),
        Dimension::Visit(v) => match *v {
            "source" => (Table::Sources, "source"),
            "referrer" => (Table::Sources, "referrer"),
            "channel" => (Table::Sources, "channel"),
            "utm_source" => (Table::Sources, "utm_source"),
            "utm_medium" => (Table::Sources, "utm_medium"),
            "utm_campaign" => (Table::Sources, "utm_campaign"),
            "utm_content" => (Table::Sources, "utm_content"),
            "utm_term" => (Table::Sources, "utm_term"),
            "entry_page" => (Table::EntryPages, "entry_page"),
            "exit_page" => (Table::ExitPages, "exit_page"),
            "country" => (Table::Locations, "country"),
            "region" => (Table::Locations, "region"),
            "city" => (Table::Locations, "city"),
            "device" => (Table::Devices, "device"),
            "browser" => (Table::Browsers, "browser"),
            // As the native dimension shows it: "Chrome 122".
            "browser_version" => (Table::Browsers, "browser || ' ' || browser_version"),
            "os" => (Table::OperatingSystems, "operating_system"),
            "os_version" => (Table::OperatingSystems, "operating_system || ' ' || operating_system_version"),
            _ => return None,
        },
        Dimension::Goal | Dimension::Prop(_) | Dimension::Time(_) => return None,
    })
}

/// The metric sums of a table's row, as SQL over its columns (totals; visit
/// duration is seconds there, milliseconds in [`Sums`]).
fn sums_sql(table: Table) -> [&'static str; 5] {
    // visitors, visits, pageviews, bounces, visit_duration (s)
    match table {
        Table::Pages => ["visitors", "visits", "pageviews", "0", "0"],
        Table::EntryPages => ["visitors", "entrances", "pageviews", "bounces", "visit_duration"],
        Table::ExitPages => ["visitors", "exits", "pageviews", "bounces", "visit_duration"],
        Table::CustomEvents => ["visitors", "0", "0", "0", "0"],
        _ => ["visitors", "visits", "pageviews", "bounces", "visit_duration"],
    }
}

fn filter_sql(f: &Filter, table: Table, params: &mut Params) -> Option<String> {
    Some(match f {
        Filter::Condition { op, dimension, values } => {
            let (t, col) = column(dimension)?;
            if t != table {
                return None;
            }
            match_sql(*op, &format!("nullif({col}, '')"), values, params)
        }
        Filter::And(list) => format!("({})", list.iter().map(|f| filter_sql(f, table, params)).collect::<Option<Vec<_>>>()?.join(" AND ")),
        Filter::Or(list) => format!("({})", list.iter().map(|f| filter_sql(f, table, params)).collect::<Option<Vec<_>>>()?.join(" OR ")),
        Filter::Not(inner) => format!("NOT {}", filter_sql(inner, table, params)?),
    })
}

/// The query's piece that imported data can answer.
pub struct Ask<'a> {
    pub site: &'a shared::SiteId,
    pub metrics: &'a [Metric],
    pub dims: &'a [Dimension],
    pub filters: &'a [Filter],
    pub grain: Option<TimeGrain>,
    /// The local days of the range; None for a range of instants.
    pub days: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    pub goals: &'a Goals,
}

/// Adds the imported sums of `ask` into `out`, or says why it did not.
pub async fn add(client: &Client<'_>, ask: &Ask<'_>, out: &mut HashMap<Vec<String>, Sums>) -> Result<Imports, StatsError> {
    let site = *ask.site.as_uuid();
    let any: bool =
        client.query_one("SELECT EXISTS (SELECT 1 FROM imports WHERE site_id = $1 AND status = 'done')", &[&site]).await?.get(0);
    if !any {
        return Ok(Imports::Skipped { reason: "no_imported_data", warning: None });
    }
    let Some((first, last)) = ask.days else { return Ok(unsupported("a range of instants; imported data is by day")) };
    let overlaps: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM imports WHERE site_id = $1 AND status = 'done' AND range_start <= $3 AND range_end >= $2)",
            &[&site, &first, &last],
        )
        .await?
        .get(0);
    if !overlaps {
        return Ok(Imports::Skipped { reason: "out_of_range", warning: None });
    }
    let goal_shape = ask.dims.contains(&Dimension::Goal) || ask.filters.iter().any(Filter::is_goal_condition);
    if let Some(m) = ask.metrics.iter().find(|m| {
        matches!(m, Metric::TimeOnPage | Metric::ScrollDepth | Metric::TotalRevenue | Metric::AverageRevenue)
            || (**m == Metric::ConversionRate && !goal_shape)
    }) {
        return Ok(unsupported(m.name()));
    }
    let bucket = match ask.grain {
        None => "''".to_owned(),
        Some(TimeGrain::Hour) => return Ok(Imports::Skipped { reason: "unsupported_interval", warning: None }),
        Some(TimeGrain::Week) => "to_char(date_trunc('week', date::timestamp), 'YYYY-MM-DD')".to_owned(),
        Some(TimeGrain::Month) => "to_char(date_trunc('month', date::timestamp), 'YYYY-MM-DD')".to_owned(),
        Some(TimeGrain::Day | TimeGrain::Auto) => "to_char(date, 'YYYY-MM-DD')".to_owned(),
    };
    if goal_shape {
        return goals(client, ask, (first, last), &bucket, out).await;
    }
    let mut tables = Vec::new();
    for d in ask.dims.iter().filter(|d| !matches!(d, Dimension::Time(_))) {
        match column(d) {
            Some((t, _)) => tables.push(t),
            None => return Ok(unsupported("a dimension with no imported table")),
        }
    }
    for f in ask.filters {
        for (_, d, _) in f.conditions() {
            match column(d) {
                Some((t, _)) => tables.push(t),
                None => return Ok(unsupported("a filter with no imported table")),
            }
        }
    }
    tables.sort();
    tables.dedup();
    let table = match tables[..] {
        [] => Table::Visitors,
        [t] => t,
        _ => return Ok(unsupported("dimensions and filters from more than one imported table")),
    };
    if table == Table::CustomEvents && ask.metrics.iter().any(|m| !matches!(m, Metric::Visitors | Metric::Events)) {
        return Ok(unsupported("custom events hold visitors and events only"));
    }
    let mut params = Params::default();
    let site_p = params.push(site, "::uuid");
    let (first_p, last_p) = (params.push(first, "::date"), params.push(last, "::date"));
    let mut keys = Vec::new();
    let mut present = Vec::new();
    for d in ask.dims {
        match d {
            Dimension::Time(_) => keys.push(bucket.clone()),
            d => {
                let (_, col) = column(d).unwrap_or((table, "''"));
                // A value the tool did not know is no row, as a NULL is natively.
                present.push(format!("nullif({col}, '') IS NOT NULL"));
                keys.push(format!("({col})::text"));
            }
        }
    }
    let mut wheres = vec![
        format!("site_id = {site_p}"),
        format!("date BETWEEN {first_p} AND {last_p}"),
        format!("import_id IN (SELECT id FROM imports WHERE site_id = {site_p} AND status = 'done')"),
    ];
    wheres.extend(present);
    for f in ask.filters {
        match filter_sql(f, table, &mut params) {
            Some(sql) => wheres.push(sql),
            None => return Ok(unsupported("a filter with no imported table")),
        }
    }
    let [visitors, visits, pageviews, bounces, duration] = sums_sql(table);
    let events = if table == Table::CustomEvents { "events" } else { "pageviews" };
    let key_list = if keys.is_empty() { "''".to_owned() } else { keys.join(", ") };
    let group = (1..=keys.len().max(1)).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {key_list}, sum({visitors})::bigint, sum({visits})::bigint, sum({pageviews})::bigint, sum({bounces})::bigint,
                sum({duration})::bigint, sum({events})::bigint
         FROM {} WHERE {} GROUP BY {group}",
        table.sql_table(),
        wheres.join(" AND ")
    );
    let rows = client.query(&sql, &params.refs()).await?;
    let n = keys.len().max(1);
    for r in &rows {
        let key: Vec<String> = if keys.is_empty() { Vec::new() } else { (0..n).map(|i| r.get(i)).collect() };
        let sums = Sums {
            visitors: r.get(n),
            visits: r.get(n + 1),
            pageviews: r.get(n + 2),
            bounces: r.get(n + 3),
            engaged_ms: r.get::<_, i64>(n + 4).saturating_mul(1000),
            events: r.get(n + 5),
            ..Sums::default()
        };
        out.entry(key).or_default().add(&sums);
    }
    Ok(Imports::Included)
}

/// Goals from imported data: an event goal is its event name's row in
/// imported_custom_events, a pageview goal the imported_pages rows its path
/// pattern matches (their pageviews are its events; a visitor of two
/// matching pages counts twice, as in Plausible's own imported goals). The
/// goal dimension, alone or with time, and top-level `is` goal filters
/// naming one goal, or all of them when the goal is the dimension.
async fn goals(
    client: &Client<'_>,
    ask: &Ask<'_>,
    (first, last): (chrono::NaiveDate, chrono::NaiveDate),
    bucket: &str,
    out: &mut HashMap<Vec<String>, Sums>,
) -> Result<Imports, StatsError> {
    if ask.dims.iter().any(|d| !matches!(d, Dimension::Goal | Dimension::Time(_))) {
        return Ok(unsupported("the goal with another dimension"));
    }
    if ask.metrics.iter().any(|m| !matches!(m, Metric::Visitors | Metric::Events | Metric::ConversionRate)) {
        return Ok(unsupported("goals hold visitors and events only"));
    }
    let mut named: Option<Vec<&String>> = None;
    for f in ask.filters {
        match f {
            Filter::Condition { op: Operator::Is, dimension: Dimension::Goal, values } => named = Some(values.iter().collect()),
            _ => return Ok(unsupported("a goal filter other than `is`, or another filter beside it")),
        }
    }
    let by_dim = ask.dims.contains(&Dimension::Goal);
    if !by_dim && named.as_ref().is_none_or(|n| n.len() != 1) {
        return Ok(unsupported("conversions of several goals at once"));
    }
    let chosen = ask.goals.goals.iter().filter(|g| named.as_ref().is_none_or(|n| n.contains(&&g.display_name)));
    let (names, kinds, patterns, events) = Goals::by_name_arrays(chosen);
    let mut params = Params::default();
    let site = params.push(*ask.site.as_uuid(), "::uuid");
    let (first, last) = (params.push(first, "::date"), params.push(last, "::date"));
    let goals = format!(
        "unnest({}, {}, {}, {}) AS g(name, kind, pattern, event_name)",
        params.push(names, "::text[]"),
        params.push(kinds, "::text[]"),
        params.push(patterns, "::text[]"),
        params.push(events, "::text[]")
    );
    let done = format!("import_id IN (SELECT id FROM imports WHERE site_id = {site} AND status = 'done')");
    let sql = format!(
        "SELECT {bucket}, g.name, sum(x.visitors)::bigint, sum(x.events)::bigint
         FROM {goals} CROSS JOIN LATERAL (
             SELECT date, visitors, events FROM imported_custom_events
             WHERE site_id = {site} AND date BETWEEN {first} AND {last} AND {done} AND g.kind <> 'pageview' AND name = g.event_name
             UNION ALL
             SELECT date, visitors, pageviews FROM imported_pages
             WHERE site_id = {site} AND date BETWEEN {first} AND {last} AND {done} AND g.kind = 'pageview' AND page LIKE g.pattern
         ) x
         GROUP BY 1, 2"
    );
    for r in &client.query(&sql, &params.refs()).await? {
        let (time, goal): (String, String) = (r.get(0), r.get(1));
        let key = ask.dims.iter().map(|d| if *d == Dimension::Goal { goal.clone() } else { time.clone() }).collect();
        let sums = Sums { visitors: r.get(2), events: r.get(3), ..Sums::default() };
        out.entry(key).or_default().add(&sums);
    }
    Ok(Imports::Included)
}
