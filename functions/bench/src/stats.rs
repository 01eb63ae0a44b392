//! The stats bench: the queries a dashboard makes for a 30-day range, over
//! a month of seeded events, timed as a set.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use engagetrack_server::cache::{self, CacheStore, InProcessStore};
use engagetrack_server::rollup;
use engagetrack_server::stats::{self, FunnelRequest, QueryRequest, StatsSite};
use engagetrack_tests::TestApp;
use serde_json::{Value, json};
use shared::SiteId;

const DAYS: i64 = 30;

/// One day of synthetic traffic in SQL: visitors of five events each
/// (pageviews, engagement, now and then a signup or a purchase), spread over
/// the day, with pages, sources, places and browsers from small lists.
/// generate_series beats COPY from Rust here: nothing crosses the wire.
const SEED_DAY: &str = "
INSERT INTO events (id, site_id, ts, event_type, name, visitor_hash, session_hash, hostname, pathname,
                    referrer_host, referrer_source, channel, utm_source, utm_medium, utm_campaign,
                    country, region, city, browser, browser_version, os, os_version, device, screen_width, screen_height,
                    engaged_ms, scroll_depth, revenue_minor, revenue_currency, props)
SELECT gen_random_uuid(), $1, x.ts, x.kind,
       CASE x.kind WHEN 'click' THEN 'Signup' ELSE x.kind END,
       x.v, x.v, 'example.com', '/p' || ((x.v * 7 + x.n * 13) % 200),
       (ARRAY[NULL, 'www.google.com', 'duckduckgo.com', 'news.ycombinator.com', 't.co', 'www.reddit.com'])[1 + x.v % 6],
       (ARRAY[NULL, 'Google', 'DuckDuckGo', 'Hacker News', 'Twitter', 'Reddit'])[1 + x.v % 6],
       (ARRAY['Direct', 'Organic Search', 'Organic Search', 'Referral', 'Organic Social', 'Organic Social'])[1 + x.v % 6],
       CASE WHEN x.v % 9 = 0 THEN 'newsletter' END, CASE WHEN x.v % 9 = 0 THEN 'email' END, CASE WHEN x.v % 9 = 0 THEN 'launch' END,
       (ARRAY['US', 'DE', 'GB', 'FR', 'IN', 'BR', 'JP', 'CA', 'NL', 'ES', 'IT', 'SE', 'AU', 'PL', 'MX'])[1 + x.v % 15],
       'R' || x.v % 40, 'City ' || x.v % 300,
       (ARRAY['Chrome', 'Safari', 'Firefox', 'Edge', 'Samsung Internet', 'Opera'])[1 + x.v % 6], (120 + x.v % 25)::text,
       (ARRAY['Windows', 'macOS', 'iOS', 'Android', 'Linux'])[1 + x.v % 5], (10 + x.v % 5)::text,
       (ARRAY['desktop', 'mobile', 'tablet'])[1 + x.v % 3], (ARRAY[390, 820, 1440, 1920])[1 + x.v % 4], 900,
       CASE WHEN x.kind = 'engagement' THEN 1000 + (x.v * 37 + x.n) % 120000 END,
       CASE WHEN x.kind = 'engagement' THEN ((x.v + x.n) % 100)::smallint END,
       CASE WHEN x.kind = 'purchase' THEN 4900 END, CASE WHEN x.kind = 'purchase' THEN (ARRAY['USD', 'EUR'])[1 + x.v % 2] END,
       CASE WHEN x.kind = 'click' THEN jsonb_build_object('plan', (ARRAY['free', 'pro', 'team'])[1 + x.v % 3]) ELSE '{}' END
FROM (SELECT i, i / 5 + $4::bigint AS v, i % 5 AS n,
             $2::timestamptz + make_interval(secs => ((i / 5) * 977 % 86000) + (i % 5) * 40) AS ts,
             CASE WHEN i % 5 = 4 AND (i / 5) % 25 = 0 THEN 'click'
                  WHEN i % 5 = 4 AND (i / 5) % 60 = 1 THEN 'purchase'
                  WHEN i % 5 IN (1, 3) THEN 'engagement' ELSE 'pageview' END AS kind
      FROM generate_series(0, $3::bigint - 1) AS i) x";

/// The dashboard's requests for the last 30 days.
fn dashboard(site: SiteId) -> Vec<(&'static str, Value)> {
    let q = |metrics: Value, dims: Value, extra: Value| {
        let mut body = json!({"site_id": site.to_string(), "metrics": metrics, "date_range": "30d", "dimensions": dims});
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        body
    };
    let top = json!({"pagination": {"limit": 10}});
    vec![
        (
            "aggregate",
            q(
                json!(["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration"]),
                json!([]),
                json!({"include": {"comparisons": {"mode": "previous_period"}}}),
            ),
        ),
        ("timeseries", q(json!(["visitors", "pageviews"]), json!(["time:day"]), json!({"include": {"time_labels": true}}))),
        ("pages", q(json!(["visitors", "pageviews", "bounce_rate", "time_on_page"]), json!(["event:page"]), top.clone())),
        ("sources", q(json!(["visitors", "bounce_rate"]), json!(["visit:source"]), top.clone())),
        ("countries", q(json!(["visitors"]), json!(["visit:country"]), top.clone())),
        ("browsers", q(json!(["visitors"]), json!(["visit:browser"]), top.clone())),
        ("devices", q(json!(["visitors"]), json!(["visit:device"]), top.clone())),
        ("goals", q(json!(["visitors", "events", "conversion_rate", "total_revenue"]), json!(["event:goal"]), top)),
    ]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

/// The funnels timed: a broad first step (half the pages) over 30 and 7 days,
/// a narrow one (one page of 200) over 30 days, and that one with a visit
/// filter (which adds the visits relation to the statement).
fn funnels(site: SiteId) -> Vec<(&'static str, Value)> {
    let broad = json!([{"page": "/p1*"}, {"page": "/p*"}, {"goal": "Signup"}]);
    let narrow = json!([{"page": "/p17"}, {"page": "/p*"}, {"goal": "Signup"}]);
    let body = |range: &str, steps: &Value, filters: Value| {
        json!({"site_id": site.to_string(), "date_range": range, "steps": steps, "filters": filters})
    };
    vec![
        ("funnel_30d_broad", body("30d", &broad, json!([]))),
        ("funnel_7d_broad", body("7d", &broad, json!([]))),
        ("funnel_30d_narrow", body("30d", &narrow, json!([]))),
        ("funnel_30d_narrow_filtered", body("30d", &narrow, json!([["is", "visit:country", ["DE"]]]))),
    ]
}

/// Median and p95 of each funnel over raw events, printed as JSON.
async fn time_funnels(app: &TestApp, target: &StatsSite, events: i64, runs: usize) -> anyhow::Result<()> {
    let mut out = serde_json::Map::new();
    for (name, body) in funnels(target.id) {
        let request: FunnelRequest = serde_json::from_value(body)?;
        let mut times = Vec::with_capacity(runs);
        let mut answer = Value::Null;
        let mut error = None;
        // One warm-up run fills the buffer cache. A funnel past the statement
        // timeout is an error the API would answer too: reported, not fatal.
        for run in 0..runs + 1 {
            let one = Instant::now();
            match stats::funnel(&app.state.pool, target, request.clone(), Utc::now()).await {
                Ok(resp) => answer = json!(resp.steps.iter().map(|s| s.visits).collect::<Vec<_>>()),
                Err(e) => error = Some(e.to_string()),
            }
            if run > 0 {
                times.push(one.elapsed().as_secs_f64() * 1000.0);
            }
        }
        times.sort_by(f64::total_cmp);
        let figures = json!({"median_ms": percentile(&times, 0.5), "p95_ms": percentile(&times, 0.95), "visits_per_step": answer, "error": error});
        out.insert(name.to_owned(), figures);
    }
    println!("{}", json!({"bench": "stats_funnels", "events": events, "runs": runs, "queries": out}));
    Ok(())
}

pub async fn run(app: &TestApp, site: SiteId, events: u64, runs: usize, funnel_runs: usize, funnels_only: bool) -> anyhow::Result<()> {
    let client = app.db.client().await;
    client
        .execute(
            "INSERT INTO goals (id, site_id, kind, display_name, page_path, event_name, currency) VALUES
               (gen_random_uuid(), $1, 'pageview', 'Visit /p1', '/p1', NULL, NULL),
               (gen_random_uuid(), $1, 'pageview', 'Visit /p1*', '/p1*', NULL, NULL),
               (gen_random_uuid(), $1, 'event', 'Signup', NULL, 'Signup', NULL),
               (gen_random_uuid(), $1, 'revenue', 'Purchase', NULL, 'purchase', 'USD')",
            &[site.as_uuid()],
        )
        .await?;
    let today = Utc::now().date_naive();
    let per_day = events / DAYS as u64;
    let started = Instant::now();
    client.batch_execute("SET synchronous_commit = off").await?;
    for back in 1..=DAYS {
        let day = today - Duration::days(back);
        let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        // Visitor numbers differ per day, as daily-salted hashes do.
        let first_visitor = back * 10_000_000;
        client.execute(SEED_DAY, &[site.as_uuid(), &start, &(per_day as i64), &first_visitor]).await?;
    }
    client.batch_execute("VACUUM ANALYZE events").await?;
    let seeded = started.elapsed().as_secs_f64();
    let target = StatsSite { id: site, timezone: "UTC".into() };
    if funnels_only {
        let stored: i64 = client.query_one("SELECT count(*) FROM events", &[]).await?.get(0);
        println!("{}", json!({"bench": "stats_seed", "events": stored, "seed_seconds": seeded}));
        return time_funnels(app, &target, stored, funnel_runs).await;
    }
    let started = Instant::now();
    for back in 1..=DAYS {
        rollup::rollup_day(&app.state.pool, site, today - Duration::days(back)).await?;
    }
    client.batch_execute("VACUUM ANALYZE daily_rollups").await?;
    let rolled = started.elapsed().as_secs_f64();

    let requests: Vec<(&str, QueryRequest)> =
        dashboard(site).into_iter().map(|(n, b)| Ok((n, serde_json::from_value(b)?))).collect::<anyhow::Result<_>>()?;
    let mut sets = Vec::with_capacity(runs);
    let mut per_query: Vec<Vec<f64>> = vec![Vec::new(); requests.len()];
    for run in 0..runs + 3 {
        let set = Instant::now();
        for (i, (_, request)) in requests.iter().enumerate() {
            let one = Instant::now();
            let resp = stats::query(&app.state.pool, &target, request.clone(), Utc::now()).await?;
            anyhow::ensure!(resp.meta.source != "raw", "{} read raw events only; the dashboard set should read rollups", requests[i].0);
            if run >= 3 {
                per_query[i].push(one.elapsed().as_secs_f64() * 1000.0);
            }
        }
        // The first runs warm caches and connections.
        if run >= 3 {
            sets.push(set.elapsed().as_secs_f64() * 1000.0);
        }
    }
    sets.sort_by(f64::total_cmp);
    let queries: serde_json::Map<String, Value> = requests
        .iter()
        .zip(per_query.iter_mut())
        .map(|((name, _), times)| {
            times.sort_by(f64::total_cmp);
            ((*name).to_owned(), json!({"median_ms": percentile(times, 0.5), "p95_ms": percentile(times, 0.95)}))
        })
        .collect();
    let stored: i64 = client.query_one("SELECT count(*) FROM events", &[]).await?.get(0);
    println!(
        "{}",
        json!({"bench": "stats", "events": stored, "days": DAYS, "seed_seconds": seeded, "rollup_seconds": rolled, "runs": runs,
               "set_median_ms": percentile(&sets, 0.5), "set_p95_ms": percentile(&sets, 0.95), "queries": queries})
    );
    cached(app, &target, &requests, runs).await?;
    time_funnels(app, &target, stored, funnel_runs).await
}

/// The same set through the cache ([`cache::stats_query`]): no cache (the
/// engine), the in-process store, and Redis when `ENGAGETRACK_REDIS_URL` is set;
/// warm, so every cacheable answer is a hit.
async fn cached(app: &TestApp, target: &StatsSite, requests: &[(&str, QueryRequest)], runs: usize) -> anyhow::Result<()> {
    let mut stores: Vec<(&str, Option<Arc<dyn CacheStore>>)> =
        vec![("engine", None), ("in_process", Some(Arc::new(InProcessStore::default())))];
    if let Some(settings) = engagetrack_server::adapters::redis::RedisSettings::from_env() {
        stores.push(("redis", Some(Arc::new(engagetrack_server::adapters::redis::RedisCache::connect_lazily(&settings)?))));
    }
    let mut out = serde_json::Map::new();
    for (name, store) in stores {
        let mut per_query: Vec<Vec<f64>> = vec![Vec::new(); requests.len()];
        for run in 0..runs + 3 {
            for (i, (_, request)) in requests.iter().enumerate() {
                let one = Instant::now();
                match &store {
                    None => drop(stats::query(&app.state.pool, target, request.clone(), Utc::now()).await?),
                    Some(store) => drop(cache::stats_query(&app.state.pool, store.as_ref(), target, request.clone(), Utc::now()).await?),
                }
                if run >= 3 {
                    per_query[i].push(one.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
        let queries: serde_json::Map<String, Value> = requests
            .iter()
            .zip(per_query.iter_mut())
            .map(|((q, _), times)| {
                times.sort_by(f64::total_cmp);
                ((*q).to_owned(), json!({"median_ms": percentile(times, 0.5), "p95_ms": percentile(times, 0.95)}))
            })
            .collect();
        out.insert(name.to_owned(), Value::Object(queries));
    }
    println!("{}", json!({"bench": "stats_cache", "runs": runs, "stores": out}));
    Ok(())
}
