//! Rollups equal raw events; late events re-roll their day; retention.

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, NaiveDate, Utc};
use engagetrack_server::retention;
use engagetrack_server::rollup::{self, SESSION_GAP_MINUTES};
use engagetrack_server::seed::{SeedOptions, seed_demo};
use engagetrack_tests::TestApp;
use shared::batch::Batch;
use shared::{EventId, Processed, Salt, SiteId, Visit};

const INTERACTIVE: &[&str] = &["click", "form", "download", "outbound", "mailto", "tel", "purchase", "custom"];

#[derive(Debug, Default, PartialEq)]
struct Totals {
    visitors: i64,
    visits: i64,
    pageviews: i64,
    bounces: i64,
    entry_pages: BTreeMap<String, i64>,
}

/// Sessions computed here, in Rust, from raw rows: an independent check of the SQL.
async fn raw_totals(app: &TestApp, site: SiteId, day: NaiveDate) -> Totals {
    let start = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let rows = app
        .db
        .client()
        .await
        .query(
            "SELECT visitor_hash, ts, event_type, pathname FROM events
             WHERE site_id = $1 AND ts >= $2 AND ts < $3 ORDER BY visitor_hash, ts, id",
            &[site.as_uuid(), &start, &(start + Duration::days(1))],
        )
        .await
        .unwrap();
    let mut by_visitor: HashMap<i64, Vec<(chrono::DateTime<Utc>, String, String)>> = HashMap::new();
    for r in &rows {
        by_visitor.entry(r.get(0)).or_default().push((r.get(1), r.get(2), r.get(3)));
    }
    let mut t = Totals { visitors: by_visitor.len() as i64, ..Totals::default() };
    for events in by_visitor.values() {
        let mut sessions: Vec<Vec<&(chrono::DateTime<Utc>, String, String)>> = Vec::new();
        for e in events {
            match sessions.last_mut() {
                Some(s) if e.0 - s.last().unwrap().0 <= Duration::minutes(SESSION_GAP_MINUTES.into()) => s.push(e),
                _ => sessions.push(vec![e]),
            }
        }
        for s in sessions {
            t.visits += 1;
            let pageviews: Vec<_> = s.iter().filter(|e| e.1 == "pageview").collect();
            t.pageviews += pageviews.len() as i64;
            if pageviews.len() == 1 && !s.iter().any(|e| INTERACTIVE.contains(&e.1.as_str())) {
                t.bounces += 1;
            }
            if let Some(entry) = pageviews.first() {
                *t.entry_pages.entry(entry.2.clone()).or_default() += 1;
            }
        }
    }
    t
}

async fn rolled_totals(app: &TestApp, site: SiteId, day: NaiveDate) -> Totals {
    let client = app.db.client().await;
    let row = client
        .query_opt(
            "SELECT visitors, visits, pageviews, bounces FROM daily_rollups WHERE site_id = $1 AND day = $2 AND dimension = ''",
            &[site.as_uuid(), &day],
        )
        .await
        .unwrap();
    let Some(row) = row else { return Totals::default() };
    let entry_pages = client
        .query(
            "SELECT value, visits FROM daily_rollups WHERE site_id = $1 AND day = $2 AND dimension = 'entry_page'",
            &[site.as_uuid(), &day],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Totals { visitors: row.get(0), visits: row.get(1), pageviews: row.get(2), bounces: row.get(3), entry_pages }
}

pub(crate) async fn rollup_table(app: &TestApp, site: SiteId) -> Vec<String> {
    app.db
        .client()
        .await
        .query(
            "SELECT row_to_json(r)::text FROM (SELECT day, dimension, value, visitors, visits, pageviews, bounces, engaged_ms,
                    scroll_depth_sum, events, revenue FROM daily_rollups WHERE site_id = $1 ORDER BY day, dimension, value) r",
            &[site.as_uuid()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn rollups_equal_raw_events_for_a_seeded_month() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let demo = seed_demo(&app.state, now, SeedOptions { days: 30, visitors: 500, seed: 11 }).await.unwrap();
    let site = demo.site_id;
    let days: Vec<NaiveDate> = (0..30).map(|d| now.date_naive() - Duration::days(d)).collect();
    for day in &days {
        rollup::rollup_day(&app.state.pool, site, *day).await.unwrap();
    }
    let client = app.db.client().await;
    let (mut raw_sum, mut rolled_sum) = (0, 0);
    for day in &days {
        let raw = raw_totals(&app, site, *day).await;
        let rolled = rolled_totals(&app, site, *day).await;
        assert_eq!(rolled, raw, "{day}");
        raw_sum += raw.visitors;
        rolled_sum += rolled.visitors;
    }
    assert!(raw_sum > 400, "the month has traffic: {raw_sum}");
    assert_eq!(rolled_sum, raw_sum, "a month of visitors is the sum of its days");

    // Per-page pageviews, per-event counts and revenue per currency, for the whole month.
    let same = |rolled: &str, raw: &str| {
        let client = &client;
        let (rolled, raw) = (rolled.to_owned(), raw.to_owned());
        async move {
            let q = |sql: String| async move {
                let mut v: Vec<String> =
                    client.query(&sql, &[site.as_uuid()]).await.unwrap().iter().map(|r| r.get::<_, String>(0)).collect();
                v.sort();
                v
            };
            assert_eq!(q(rolled.clone()).await, q(raw).await, "{rolled}");
        }
    };
    same(
        "SELECT value || '=' || sum(pageviews) FROM daily_rollups WHERE site_id = $1 AND dimension = 'page' GROUP BY value",
        "SELECT pathname || '=' || count(*) FROM events WHERE site_id = $1 AND event_type = 'pageview' GROUP BY pathname",
    )
    .await;
    same(
        "SELECT value || '=' || sum(events) FROM daily_rollups WHERE site_id = $1 AND dimension = 'event' GROUP BY value",
        "SELECT name || '=' || count(*) FROM events WHERE site_id = $1
           AND event_type IN ('click','form','download','outbound','mailto','tel','purchase','custom') GROUP BY name",
    )
    .await;
    same(
        "SELECT r.key || '=' || sum(r.value::bigint) FROM daily_rollups, jsonb_each_text(revenue) r
         WHERE site_id = $1 AND dimension = '' GROUP BY r.key",
        "SELECT revenue_currency || '=' || sum(revenue_minor) FROM events WHERE site_id = $1 AND revenue_minor IS NOT NULL GROUP BY revenue_currency",
    )
    .await;
    // Sessions per channel add up to all sessions of the day.
    let unbalanced: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT day FROM daily_rollups WHERE site_id = $1 GROUP BY day
               HAVING sum(visits) FILTER (WHERE dimension = 'channel') <> sum(visits) FILTER (WHERE dimension = '')) x",
            &[site.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unbalanced, 0);

    let before = rollup_table(&app, site).await;
    for day in &days {
        rollup::rollup_day(&app.state.pool, site, *day).await.unwrap();
    }
    assert_eq!(rollup_table(&app, site).await, before, "re-running a rollup changes nothing");
}

#[tokio::test]
async fn a_late_event_rerolls_its_day() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let day = Utc::now().date_naive() - Duration::days(3);
    let at = day.and_hms_opt(12, 0, 0).unwrap().and_utc();
    let event = |n: u8, minutes: i64| {
        let body = format!(r#"{{"site":"{site}","type":"pageview","url":"https://example.com/late{n}","sid":"late-session"}}"#);
        let visit = Visit {
            ip: "192.0.2.1".parse().unwrap(),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0",
        };
        let id = EventId::new(at + Duration::minutes(minutes), [n; 10]);
        match app.state.ingest.pipeline().process(body.as_bytes(), visit, &Salt::from_bytes([2; 32]), id).unwrap() {
            Processed::Event(e) => *e,
            Processed::Bot(r) => panic!("{r}"),
        }
    };
    app.state.ingest.accept_batch(Batch { events: vec![event(1, 0)] }).await.unwrap();
    let first = rollup::rollup_due(&app.state.pool, Utc::now(), None).await.unwrap();
    assert!(first.iter().any(|d| d.day == day), "the dirty day is rolled up: {first:?}");
    assert_eq!(rolled_totals(&app, site, day).await.pageviews, 1);
    assert!(rollup::rollup_due(&app.state.pool, Utc::now(), None).await.unwrap().iter().all(|d| d.day != day), "and then clean");

    app.state.ingest.accept_batch(Batch { events: vec![event(2, 90)] }).await.unwrap();
    rollup::rollup_due(&app.state.pool, Utc::now(), None).await.unwrap();
    let t = rolled_totals(&app, site, day).await;
    assert_eq!((t.pageviews, t.visits, t.visitors), (2, 2, 1), "90 minutes apart: two visits of one visitor");
}

#[tokio::test]
async fn retention_deletes_old_raw_events_and_erased_accounts_but_keeps_rollups() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let client = app.db.client().await;
    client.execute("UPDATE sites SET retention_days = 10 WHERE id = $1", &[site.as_uuid()]).await.unwrap();
    let now = Utc::now();
    let salt = Salt::from_bytes([4; 32]);
    let mut events = Vec::new();
    for (n, days_ago) in [(1u8, 20i64), (2, 11), (3, 5), (4, 0)] {
        let body = format!(r#"{{"site":"{site}","type":"pageview","url":"https://example.com/r{n}","sid":"ret-session"}}"#);
        let visit = Visit {
            ip: "192.0.2.9".parse().unwrap(),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0",
        };
        let id = EventId::new(now - Duration::days(days_ago), [n; 10]);
        events.push(app.state.ingest.prepare(body.as_bytes(), visit, id, &salt).await.unwrap().unwrap());
    }
    app.state.ingest.store().write(&events).await.unwrap();
    let old_day = (now - Duration::days(20)).date_naive();
    rollup::rollup_day(&app.state.pool, site, old_day).await.unwrap();

    let user = |email: &str, deleted_days_ago: Option<i64>| {
        let client = &client;
        let email = email.to_owned();
        async move {
            let deleted = deleted_days_ago.map(|d| now - Duration::days(d));
            client
                .execute("INSERT INTO users (id, email, deleted_at) VALUES (gen_random_uuid(), $1, $2)", &[&email, &deleted])
                .await
                .unwrap();
        }
    };
    user("gone@example.com", Some(31)).await;
    user("leaving@example.com", Some(3)).await;
    user("here@example.com", None).await;
    client
        .execute("INSERT INTO audit_log (action, created_at) VALUES ('old', now() - interval '3 years'), ('new', now())", &[])
        .await
        .unwrap();

    let purged = retention::run(&app.state.pool, now).await.unwrap();
    assert_eq!((purged.events, purged.users, purged.audit_log), (2, 1, 1));
    assert_eq!(app.count_events(site).await, 2);
    let emails: Vec<String> = client.query("SELECT email FROM users ORDER BY email", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(emails, ["here@example.com", "leaving@example.com"]);
    let kept: i64 = client
        .query_one("SELECT pageviews FROM daily_rollups WHERE site_id = $1 AND day = $2 AND dimension = ''", &[site.as_uuid(), &old_day])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1, "daily summaries outlive raw events");
}
