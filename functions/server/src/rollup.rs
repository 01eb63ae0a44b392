//! Daily rollups: per site and UTC day, totals and breakdowns computed from
//! the raw events in one transaction (delete the day's rows, insert anew), so
//! re-running is idempotent and a late event simply re-rolls its day.
//!
//! Sessions are derived here, once: a visitor's events with no gap longer
//! than [`SESSION_GAP_MINUTES`]. Session-level facts (entry and exit page,
//! bounce, engaged time, and the attribution of its first event) feed the
//! session dimensions; pages, event names and props are counted per event.
//! Memory-mode visitor hashes never link days, so summing daily visitors over
//! a range is exact.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use deadpool_postgres::Pool;
use shared::SiteId;
use uuid::Uuid;

use crate::stats::goals::Goals;
pub use crate::stats::sessions::SESSION_GAP_MINUTES;
use crate::stats::sessions::{Aggregate, GOAL_TYPE_EVENTS, Key, SUM_COLUMNS, session_events_sql, sessions_sql};

/// Dimensions whose value is a fact of the session (its first event's),
/// as (dimension name in `daily_rollups`, SQL expression over the session row `s`).
pub const SESSION_DIMENSIONS: &[(&str, &str)] = &[
    ("entry_page", "s.entry_page"),
    ("exit_page", "s.exit_page"),
    ("source", "s.source"),
    ("channel", "s.channel"),
    ("referrer", "s.referrer"),
    ("utm_source", "s.utm_source"),
    ("utm_medium", "s.utm_medium"),
    ("utm_campaign", "s.utm_campaign"),
    ("utm_term", "s.utm_term"),
    ("utm_content", "s.utm_content"),
    ("country", "s.country"),
    ("region", "s.region"),
    ("city", "s.city"),
    ("browser", "s.browser"),
    ("browser_version", "s.browser || ' ' || s.browser_version"),
    ("os", "s.os"),
    ("os_version", "s.os || ' ' || s.os_version"),
    ("device", "s.device"),
    ("screen", "s.screen"),
];

/// The page dimension: a pageview makes a visit count for its page; engagement
/// on the page gives its time and scroll depth.
pub const PAGE_KEY: &str = "CASE WHEN ev.event_type IN ('pageview', 'engagement') THEN ev.pathname END";
pub const PAGE_PRESENCE: &str = "ev.event_type = 'pageview'";

#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DayRolled {
    pub site_id: Uuid,
    pub day: NaiveDate,
    pub rows: u64,
}

/// `VALUES` rows (dimension, value): the totals ('', '') and every session dimension.
fn session_fanout() -> String {
    let rows: Vec<String> = std::iter::once("('', '')".to_owned())
        .chain(SESSION_DIMENSIONS.iter().map(|(name, expr)| format!("('{name}', {expr})")))
        .collect();
    format!("CROSS JOIN LATERAL (VALUES {}) AS d(dimension, value)", rows.join(", "))
}

/// The four passes over the day's sessions.
fn rollup_passes(goals_source: &str) -> [Aggregate; 4] {
    let pass = |keys: [Key; 2]| Aggregate {
        ev: "r_ev".into(),
        s: "r_s".into(),
        keys: keys.to_vec(),
        fanout: String::new(),
        session_fanout: String::new(),
        filter: "true".into(),
        presence: "true".into(),
        counted: GOAL_TYPE_EVENTS.into(),
        engaged: "true".into(),
    };
    [
        // Totals and session dimensions: sessions fan out, not their events.
        Aggregate { session_fanout: session_fanout(), ..pass([Key::session("d.dimension"), Key::session("d.value")]) },
        Aggregate { presence: PAGE_PRESENCE.into(), ..pass([Key::event("'page'"), Key::event(PAGE_KEY)]) },
        Aggregate {
            fanout: "CROSS JOIN LATERAL (SELECT 'event', ev.name UNION ALL
                                         SELECT 'prop:' || p.key, p.value FROM jsonb_each_text(ev.props) p) AS d(dimension, value)"
                .into(),
            filter: GOAL_TYPE_EVENTS.into(),
            engaged: "false".into(),
            ..pass([Key::event("d.dimension"), Key::event("d.value")])
        },
        // A goal row counts every conversion, pageview goals included.
        Aggregate {
            fanout: format!("CROSS JOIN LATERAL (SELECT g.key FROM {goals_source} WHERE {}) AS d(goal)", Goals::match_sql()),
            counted: "true".into(),
            engaged: "false".into(),
            ..pass([Key::event("'goal'"), Key::event("d.goal")])
        },
    ]
}

/// Rolls up one site's day from its raw events. Goal rows are keyed by goal
/// id and hold the goals as they are now; the stats engine reads them only for
/// days rolled up after the newest goal was made.
pub async fn rollup_day(pool: &Pool, site: SiteId, day: NaiveDate) -> Result<DayRolled, RollupError> {
    let start: DateTime<Utc> = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let end = start + Duration::days(1);
    let mut client = pool.get().await?;
    let goals = Goals::load(&**client, site).await?;
    let tx = client.transaction().await?;
    // The day's events are sorted several times; on disk that is several times slower.
    // A rollup may run long: no statement timeout, whatever the server's default.
    tx.batch_execute("SET LOCAL work_mem = '64MB'; SET LOCAL statement_timeout = 0").await?;
    let site_id = *site.as_uuid();
    // Sessions once, into temporary tables every pass reads.
    tx.execute(
        &format!("CREATE TEMP TABLE r_ev ON COMMIT DROP AS {}", session_events_sql("$1", "$2", "$3", "''::text")),
        &[&site_id, &start, &end],
    )
    .await?;
    tx.batch_execute(&format!("CREATE TEMP TABLE r_s ON COMMIT DROP AS {}", sessions_sql("r_ev"))).await?;
    // Temporary tables get no statistics by themselves; the planner needs them.
    tx.batch_execute("ANALYZE r_ev; ANALYZE r_s").await?;
    tx.execute("DELETE FROM daily_rollups WHERE site_id = $1 AND day = $2", &[&site_id, &day]).await?;
    let (ids, kinds, patterns, names) = goals.by_id_arrays();
    let goals_source = "unnest($3::text[], $4::text[], $5::text[], $6::text[]) AS g(key, kind, pattern, event_name)";
    let mut rows = 0;
    for (n, pass) in rollup_passes(goals_source).into_iter().enumerate() {
        let sql = format!(
            "INSERT INTO daily_rollups (site_id, day, dimension, value, {SUM_COLUMNS})
             WITH {} SELECT $1, $2, k0, k1, {SUM_COLUMNS} FROM ({}) x",
            pass.ctes(),
            pass.select()
        );
        // Only the goals pass (the last) uses the goal arrays; PostgreSQL
        // refuses parameters a statement does not mention.
        let params: &[&(dyn tokio_postgres::types::ToSql + Sync)] =
            if n == 3 { &[&site_id, &day, &ids, &kinds, &patterns, &names] } else { &[&site_id, &day] };
        rows += tx.execute(&sql, params).await?;
    }
    tx.execute("DELETE FROM rollup_dirty WHERE site_id = $1 AND day = $2", &[&site_id, &day]).await?;
    tx.commit().await?;
    Ok(DayRolled { site_id, day, rows })
}

/// The scheduled rollup: today, yesterday (until its grace is over, so late
/// events land), and every day marked dirty by a late event, for every site
/// with events on that day.
pub async fn rollup_due(pool: &Pool, now: DateTime<Utc>, only_day: Option<NaiveDate>) -> Result<Vec<DayRolled>, RollupError> {
    let today = now.date_naive();
    let days: Vec<NaiveDate> = match only_day {
        Some(d) => vec![d],
        None => vec![today - Duration::days(1), today],
    };
    let client = pool.get().await?;
    let mut work: Vec<(Uuid, NaiveDate)> = Vec::new();
    for day in &days {
        let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        let rows = client
            .query(
                "SELECT id FROM sites s WHERE EXISTS (SELECT 1 FROM events e WHERE e.site_id = s.id AND e.ts >= $1 AND e.ts < $2)",
                &[&start, &(start + Duration::days(1))],
            )
            .await?;
        work.extend(rows.iter().map(|r| (r.get(0), *day)));
    }
    if only_day.is_none() {
        let dirty = client.query("SELECT site_id, day FROM rollup_dirty ORDER BY day", &[]).await?;
        work.extend(dirty.iter().map(|r| (r.get(0), r.get(1))));
    }
    drop(client);
    work.sort();
    work.dedup();
    let mut done = Vec::with_capacity(work.len());
    for (site, day) in work {
        done.push(rollup_day(pool, SiteId::from_uuid(site), day).await?);
    }
    Ok(done)
}
