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

pub const SESSION_GAP_MINUTES: i32 = 30;

/// Event types that make a session interactive (not a bounce).
const INTERACTIVE: &str = "('click','form','download','outbound','mailto','tel','purchase','custom')";
/// Event types counted as goal events.
const GOALS: &str = INTERACTIVE;

/// Dimensions whose value is a fact of the session (its first event's),
/// as (dimension name, SQL expression over the session row).
pub const SESSION_DIMENSIONS: &[(&str, &str)] = &[
    ("entry_page", "entry_page"),
    ("exit_page", "exit_page"),
    ("source", "source"),
    ("channel", "channel"),
    ("referrer", "referrer"),
    ("utm_source", "utm_source"),
    ("utm_medium", "utm_medium"),
    ("utm_campaign", "utm_campaign"),
    ("utm_term", "utm_term"),
    ("utm_content", "utm_content"),
    ("country", "country"),
    ("region", "region"),
    ("city", "city"),
    ("browser", "browser"),
    ("browser_version", "browser || ' ' || browser_version"),
    ("os", "os"),
    ("os_version", "os || ' ' || os_version"),
    ("device", "device"),
    ("screen", "screen"),
];

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

/// `VALUES` rows (dimension, value) for a session row aliased `s`.
fn lateral_values() -> String {
    std::iter::once("('', '')".to_owned())
        .chain(SESSION_DIMENSIONS.iter().map(|(name, expr)| {
            let qualified = expr.split(' ').map(|w| if w.chars().all(|c| c.is_ascii_lowercase() || c == '_') { format!("s.{w}") } else { w.to_owned() });
            format!("('{name}', {})", qualified.collect::<Vec<_>>().join(" "))
        }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rolls up one site's day from its raw events.
pub async fn rollup_day(pool: &Pool, site: SiteId, day: NaiveDate) -> Result<DayRolled, RollupError> {
    let start: DateTime<Utc> = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let end = start + Duration::days(1);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let site_id = *site.as_uuid();
    // 1. Events of the day with their session number.
    tx.execute(
        &format!(
            "CREATE TEMP TABLE r_ev ON COMMIT DROP AS
             SELECT e.*, sum(starts) OVER (PARTITION BY visitor_hash ORDER BY ts, id ROWS UNBOUNDED PRECEDING) AS session_no
             FROM (SELECT *, CASE WHEN ts - lag(ts) OVER (PARTITION BY visitor_hash ORDER BY ts, id) <= interval '{SESSION_GAP_MINUTES} minutes'
                                  THEN 0 ELSE 1 END AS starts
                   FROM events WHERE site_id = $1 AND ts >= $2 AND ts < $3) e"
        ),
        &[&site_id, &start, &end],
    )
    .await?;
    // 2. One row per session: its facts and its first event's attribution.
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE r_s ON COMMIT DROP AS
         WITH session_scroll AS (
             SELECT visitor_hash, session_no, sum(scroll) AS scroll_sum
             FROM (SELECT visitor_hash, session_no, pathname, max(scroll_depth) AS scroll
                   FROM r_ev WHERE event_type = 'engagement' GROUP BY 1, 2, 3) p
             GROUP BY 1, 2)
         SELECT s.*, coalesce(sc.scroll_sum, 0) AS scroll_sum
         FROM (
             SELECT visitor_hash, session_no,
                 count(*) FILTER (WHERE event_type = 'pageview') AS pageviews,
                 count(*) FILTER (WHERE event_type IN {GOALS}) AS goal_events,
                 count(*) FILTER (WHERE event_type = 'pageview') = 1
                     AND NOT bool_or(event_type IN {INTERACTIVE}) AS bounced,
                 coalesce(sum(engaged_ms), 0) AS engaged_ms,
                 (array_agg(pathname ORDER BY ts, id) FILTER (WHERE event_type = 'pageview'))[1] AS entry_page,
                 (array_agg(pathname ORDER BY ts DESC, id DESC) FILTER (WHERE event_type = 'pageview'))[1] AS exit_page,
                 (array_agg(referrer_source ORDER BY ts, id))[1] AS source,
                 (array_agg(channel ORDER BY ts, id))[1] AS channel,
                 (array_agg(referrer_host ORDER BY ts, id))[1] AS referrer,
                 (array_agg(utm_source ORDER BY ts, id))[1] AS utm_source,
                 (array_agg(utm_medium ORDER BY ts, id))[1] AS utm_medium,
                 (array_agg(utm_campaign ORDER BY ts, id))[1] AS utm_campaign,
                 (array_agg(utm_term ORDER BY ts, id))[1] AS utm_term,
                 (array_agg(utm_content ORDER BY ts, id))[1] AS utm_content,
                 (array_agg(country ORDER BY ts, id))[1] AS country,
                 (array_agg(region ORDER BY ts, id))[1] AS region,
                 (array_agg(city ORDER BY ts, id))[1] AS city,
                 (array_agg(browser ORDER BY ts, id))[1] AS browser,
                 (array_agg(browser_version ORDER BY ts, id))[1] AS browser_version,
                 (array_agg(os ORDER BY ts, id))[1] AS os,
                 (array_agg(os_version ORDER BY ts, id))[1] AS os_version,
                 (array_agg(device ORDER BY ts, id))[1] AS device,
                 (array_agg(CASE WHEN screen_width IS NULL THEN NULL
                                 WHEN screen_width < 576 THEN 'Mobile' WHEN screen_width < 992 THEN 'Tablet'
                                 WHEN screen_width < 1440 THEN 'Laptop' ELSE 'Desktop' END ORDER BY ts, id))[1] AS screen
             FROM r_ev GROUP BY visitor_hash, session_no) s
         LEFT JOIN session_scroll sc USING (visitor_hash, session_no)"
    ))
    .await?;
    // Temporary tables get no statistics by themselves; the planner needs them.
    tx.batch_execute("ANALYZE r_ev; ANALYZE r_s").await?;
    tx.execute("DELETE FROM daily_rollups WHERE site_id = $1 AND day = $2", &[&site_id, &day]).await?;
    // 3. Totals and session dimensions.
    let mut rows = tx
        .execute(
            &format!(
                "INSERT INTO daily_rollups (site_id, day, dimension, value, visitors, visits, pageviews, bounces,
                                            engaged_ms, scroll_depth_sum, events)
                 SELECT $1, $2, d.dimension, d.value, count(DISTINCT visitor_hash), count(*), sum(pageviews),
                        count(*) FILTER (WHERE bounced), sum(engaged_ms), sum(scroll_sum), sum(goal_events)
                 FROM r_s s CROSS JOIN LATERAL (VALUES {}) AS d(dimension, value)
                 WHERE d.value IS NOT NULL
                 GROUP BY d.dimension, d.value",
                lateral_values()
            ),
            &[&site_id, &day],
        )
        .await?;
    // 4. Pages: per pageview; bounces of sessions that entered there.
    rows += tx
        .execute(
            "INSERT INTO daily_rollups (site_id, day, dimension, value, visitors, visits, pageviews, bounces,
                                        engaged_ms, scroll_depth_sum, events)
             SELECT $1, $2, 'page', p.pathname, p.visitors, p.visits, p.pageviews,
                    coalesce(b.bounces, 0), coalesce(g.engaged, 0), coalesce(g.scroll, 0), 0
             FROM (SELECT pathname, count(DISTINCT visitor_hash) AS visitors,
                          count(DISTINCT (visitor_hash, session_no)) AS visits, count(*) AS pageviews
                   FROM r_ev WHERE event_type = 'pageview' GROUP BY pathname) p
             LEFT JOIN (SELECT entry_page, count(*) AS bounces FROM r_s WHERE bounced GROUP BY entry_page) b
                    ON b.entry_page = p.pathname
             LEFT JOIN (SELECT pathname, sum(ms) AS engaged, sum(scroll) AS scroll
                        FROM (SELECT pathname, sum(engaged_ms) AS ms, max(scroll_depth) AS scroll
                              FROM r_ev WHERE event_type = 'engagement' GROUP BY visitor_hash, session_no, pathname) x
                        GROUP BY pathname) g ON g.pathname = p.pathname",
            &[&site_id, &day],
        )
        .await?;
    // 5. Goal events by name, and their custom props.
    rows += tx
        .execute(
            &format!(
                "INSERT INTO daily_rollups (site_id, day, dimension, value, visitors, visits, events)
                 SELECT $1, $2, dimension, value, count(DISTINCT visitor_hash), count(DISTINCT (visitor_hash, session_no)), count(*)
                 FROM (SELECT 'event' AS dimension, name AS value, visitor_hash, session_no FROM r_ev WHERE event_type IN {GOALS}
                       UNION ALL
                       SELECT 'prop:' || p.key, p.value, visitor_hash, session_no
                       FROM r_ev, jsonb_each_text(props) AS p WHERE event_type IN {GOALS}) x
                 GROUP BY dimension, value"
            ),
            &[&site_id, &day],
        )
        .await?;
    // 6. Revenue per currency: totals, session dimensions, event names.
    tx.execute(
        &format!(
            "UPDATE daily_rollups d SET revenue = x.revenue
             FROM (SELECT dimension, value, jsonb_object_agg(currency, amount) AS revenue
                   FROM (SELECT dimension, value, currency, sum(minor) AS amount
                         FROM (SELECT d.dimension, d.value, e.revenue_currency AS currency, e.revenue_minor AS minor
                               FROM r_ev e JOIN r_s s USING (visitor_hash, session_no)
                               CROSS JOIN LATERAL (VALUES {}) AS d(dimension, value)
                               WHERE e.revenue_minor IS NOT NULL AND d.value IS NOT NULL
                               UNION ALL
                               SELECT 'event', name, revenue_currency, revenue_minor FROM r_ev WHERE revenue_minor IS NOT NULL) r
                         GROUP BY 1, 2, 3) c
                   GROUP BY 1, 2) x
             WHERE d.site_id = $1 AND d.day = $2 AND d.dimension = x.dimension AND d.value = x.value",
            lateral_values()
        ),
        &[&site_id, &day],
    )
    .await?;
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
