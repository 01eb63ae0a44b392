//! The realtime view: read straight from raw events (minutes of them).

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};

use super::engine::StatsSite;
use super::error::StatsError;

const RECENT_EVENTS: i64 = 50;
const TOP_PAGES: i64 = 10;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Realtime {
    /// Distinct visitors with an event in the last 5 minutes.
    pub visitors: i64,
    /// Pageviews in each of the last 30 minutes, oldest first (30 entries).
    pub pageviews_per_minute: Vec<MinutePageviews>,
    /// Pages by visitors in the last 5 minutes.
    pub top_pages: Vec<PageNow>,
    /// The last 50 events, newest first; no hashes.
    pub recent_events: Vec<RecentEvent>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MinutePageviews {
    pub minute: DateTime<Utc>,
    pub pageviews: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PageNow {
    pub page: String,
    pub visitors: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecentEvent {
    pub event_type: String,
    pub name: String,
    pub page: String,
    pub country: Option<String>,
    pub browser: Option<String>,
    pub ts: DateTime<Utc>,
}

/// Current visitors: distinct visitors with an event in the last 5 minutes.
/// A visitor hash changes at UTC midnight; (day, hash) keeps one person one
/// visitor only within a day, as everywhere. `$1` the site, `$2` now.
const CURRENT_VISITORS_SQL: &str = "SELECT count(DISTINCT ((ts AT TIME ZONE 'UTC')::date, visitor_hash)) FROM events
     WHERE site_id = $1 AND ts > $2::timestamptz - interval '5 minutes' AND ts <= $2";

/// [`Realtime::visitors`] alone, for the traffic-spike alerts: one definition of "current visitors".
pub async fn current_visitors(pool: &Pool, site: shared::SiteId, now: DateTime<Utc>) -> Result<i64, StatsError> {
    let mut client = pool.get().await?;
    let tx = super::engine::bounded_read(&mut client).await?;
    let visitors = tx.query_one(CURRENT_VISITORS_SQL, &[site.as_uuid(), &now]).await.map(|r| r.get(0));
    let _ = tx.rollback().await;
    Ok(visitors?)
}

pub async fn realtime(pool: &Pool, site: &StatsSite, now: DateTime<Utc>) -> Result<Realtime, StatsError> {
    let started = std::time::Instant::now();
    let mut client = pool.get().await?;
    let tx = super::engine::bounded_read(&mut client).await?;
    let answer = now_on_site(&tx, site, now).await;
    let _ = tx.rollback().await;
    crate::metrics::global().observe_stats(crate::metrics::StatsKind::Realtime, started);
    answer
}

async fn now_on_site(client: &tokio_postgres::Transaction<'_>, site: &StatsSite, now: DateTime<Utc>) -> Result<Realtime, StatsError> {
    let id = site.id.as_uuid();
    let visitors: i64 = client.query_one(CURRENT_VISITORS_SQL, &[id, &now]).await?.get(0);
    let pageviews_per_minute = client
        .query(
            "SELECT m, count(e.ts) FROM generate_series(date_trunc('minute', $2::timestamptz) - interval '29 minutes',
                                                        date_trunc('minute', $2::timestamptz), interval '1 minute') m
             LEFT JOIN events e ON e.site_id = $1 AND e.event_type = 'pageview' AND date_trunc('minute', e.ts) = m AND e.ts <= $2
                               AND e.ts >= date_trunc('minute', $2::timestamptz) - interval '29 minutes'
             GROUP BY m ORDER BY m",
            &[id, &now],
        )
        .await?
        .iter()
        .map(|r| MinutePageviews { minute: r.get(0), pageviews: r.get(1) })
        .collect();
    let top_pages = client
        .query(
            "SELECT pathname, count(DISTINCT ((ts AT TIME ZONE 'UTC')::date, visitor_hash)) AS v FROM events
             WHERE site_id = $1 AND event_type = 'pageview' AND ts > $2::timestamptz - interval '5 minutes' AND ts <= $2
             GROUP BY pathname ORDER BY v DESC, pathname LIMIT $3",
            &[id, &now, &TOP_PAGES],
        )
        .await?
        .iter()
        .map(|r| PageNow { page: r.get(0), visitors: r.get(1) })
        .collect();
    let recent_events = client
        .query(
            "SELECT event_type, name, pathname, country, browser, ts FROM events
             WHERE site_id = $1 AND ts <= $2 AND ts > $2::timestamptz - interval '1 day'
             ORDER BY ts DESC, id DESC LIMIT $3",
            &[id, &now, &RECENT_EVENTS],
        )
        .await?
        .iter()
        .map(|r| RecentEvent { event_type: r.get(0), name: r.get(1), page: r.get(2), country: r.get(3), browser: r.get(4), ts: r.get(5) })
        .collect();
    Ok(Realtime { visitors, pageviews_per_minute, top_pages, recent_events })
}
