//! The stats engine against real PostgreSQL: the rollup path and the raw path
//! give the same numbers; filters, goals and revenue match numbers computed
//! here in Rust from raw rows; no site sees another's data; bad requests are
//! typed errors.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use engagetrack_server::rollup;
use engagetrack_server::seed::{SeedOptions, seed_demo};
use engagetrack_server::stats::{self, QueryRequest, QueryResponse, Source, StatsError, StatsSite};
use engagetrack_tests::TestApp;
use serde_json::{Value, json};
use shared::{EventId, Salt, SiteId, Visit};

const DAYS: i64 = 45;
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0";
const FULL: &[&str] = &[
    "visitors",
    "visits",
    "pageviews",
    "views_per_visit",
    "bounce_rate",
    "visit_duration",
    "time_on_page",
    "scroll_depth",
    "events",
    "total_revenue",
    "average_revenue",
];

/// The demo site with 45 days of traffic and goals, every past day rolled
/// up, and a second site with traffic of its own.
struct Fixture {
    app: TestApp,
    demo: StatsSite,
    other: StatsSite,
    now: DateTime<Utc>,
}

impl Fixture {
    async fn new() -> Self {
        let app = TestApp::spawn().await;
        let now = Utc::now();
        let demo = seed_demo(&app.state, now, SeedOptions { days: DAYS as u32, visitors: 700, seed: 7 }).await.unwrap().site_id;
        add_goals(&app, demo).await;
        let other = app.create_site().await;
        for back in [1, 5, 20] {
            let at = (now - Duration::days(back)).date_naive().and_hms_opt(12, 0, 0).unwrap().and_utc();
            send(&app, other, at, "198.51.100.7", "/other-only", json!({})).await;
        }
        for back in 0..DAYS {
            rollup::rollup_day(&app.state.pool, demo, now.date_naive() - Duration::days(back)).await.unwrap();
            rollup::rollup_day(&app.state.pool, other, now.date_naive() - Duration::days(back)).await.unwrap();
        }
        let site = |id| StatsSite { id, timezone: "UTC".into() };
        Self { app, demo: site(demo), other: site(other), now }
    }

    async fn run(&self, site: &StatsSite, body: Value, source: Source) -> Result<QueryResponse, StatsError> {
        let request: QueryRequest = serde_json::from_value(body).expect("request shape");
        stats::query_with(&self.app.state.pool, site, request, self.now, source).await
    }

    async fn demo(&self, body: Value) -> QueryResponse {
        self.run(&self.demo, body.clone(), Source::Auto).await.unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    /// Both paths; asserts they agree and returns the automatic one.
    async fn both(&self, site: &StatsSite, body: Value) -> QueryResponse {
        let auto = self.run(site, body.clone(), Source::Auto).await.unwrap_or_else(|e| panic!("{body}: {e}"));
        let raw = self.run(site, body.clone(), Source::RawOnly).await.unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(raw.meta.source, "raw");
        assert_eq!(auto.results, raw.results, "rollups and raw events disagree on {body}");
        auto
    }

    fn today(&self) -> NaiveDate {
        self.now.date_naive()
    }
}

async fn add_goals(app: &TestApp, site: SiteId) {
    let client = app.db.client().await;
    // The test's own goal set, in place of the demo's.
    client.execute("DELETE FROM goals WHERE site_id = $1", &[site.as_uuid()]).await.unwrap();
    for (kind, name, path, event, currency) in [
        ("pageview", "Pricing", Some("/pricing"), None, None),
        ("pageview", "Blog", Some("/blog*"), None, None),
        ("event", "Signup", None, Some("Signup"), None),
        ("revenue", "Purchase", None, Some("purchase"), Some("USD")),
    ] {
        client
            .execute(
                "INSERT INTO goals (id, site_id, kind, display_name, page_path, event_name, currency, created_at)
                 VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, now() - interval '1 hour')",
                &[site.as_uuid(), &kind, &name, &path, &event, &currency],
            )
            .await
            .unwrap();
    }
}

static EVENT_NO: AtomicU64 = AtomicU64::new(1);

/// One event through the real ingest code (parse, anonymise, COPY).
pub(crate) async fn send(app: &TestApp, site: SiteId, at: DateTime<Utc>, ip: &str, path: &str, extra: Value) {
    let mut body = json!({"site": site.to_string(), "type": "pageview", "url": format!("https://example.com{path}"), "sid": format!("session-{}", ip.replace('.', "-"))});
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&EVENT_NO.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let visit = Visit { ip: ip.parse().unwrap(), user_agent: FIREFOX };
    let event = app
        .state
        .ingest
        .prepare(body.to_string().as_bytes(), visit, EventId::new(at, random), &Salt::from_bytes([5; 32]))
        .await
        .unwrap()
        .expect("not a bot");
    app.state.ingest.store().write(&[event]).await.unwrap();
}

fn req(site: &StatsSite, mut body: Value) -> Value {
    body["site_id"] = json!(site.id.to_string());
    body
}

/// A raw event with its session's attribution, sessions made here in Rust.
#[derive(Debug, Clone)]
struct Row {
    day: NaiveDate,
    visitor: i64,
    event_type: String,
    name: String,
    pathname: String,
    source: Option<String>,
    browser: Option<String>,
    device: Option<String>,
    revenue: Option<(i64, String)>,
}

async fn raw_rows(app: &TestApp, site: SiteId, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Row> {
    let rows = app
        .db
        .client()
        .await
        .query(
            "SELECT (ts AT TIME ZONE 'UTC')::date, visitor_hash, ts, event_type, name, pathname, referrer_source, browser, device,
                    revenue_minor, revenue_currency
             FROM events WHERE site_id = $1 AND ts >= $2 AND ts < $3 ORDER BY 1, visitor_hash, ts, id",
            &[site.as_uuid(), &start, &end],
        )
        .await
        .unwrap();
    let mut out: Vec<Row> = Vec::new();
    let mut session: Option<(NaiveDate, i64, DateTime<Utc>, Row)> = None;
    for r in rows {
        let (day, visitor, ts): (NaiveDate, i64, DateTime<Utc>) = (r.get(0), r.get(1), r.get(2));
        let mut row = Row {
            day,
            visitor,
            event_type: r.get(3),
            name: r.get(4),
            pathname: r.get(5),
            source: r.get(6),
            browser: r.get(7),
            device: r.get(8),
            revenue: r.get::<_, Option<i64>>(9).zip(r.get::<_, Option<String>>(10)),
        };
        let continues = matches!(&session, Some((d, v, last, _)) if *d == day && *v == visitor && ts - *last <= Duration::minutes(30));
        match &mut session {
            Some((_, _, last, first)) if continues => {
                *last = ts;
                (row.source, row.browser, row.device) = (first.source.clone(), first.browser.clone(), first.device.clone());
            }
            _ => session = Some((day, visitor, ts, row.clone())),
        }
        out.push(row);
    }
    out
}

/// (visitors summed over days, pageviews) of the selected events.
fn count(rows: &[Row], keep: impl Fn(&Row) -> bool) -> (i64, i64) {
    let selected: Vec<&Row> = rows.iter().filter(|r| keep(r)).collect();
    let visitors = selected.iter().map(|r| (r.day, r.visitor)).collect::<HashSet<_>>().len() as i64;
    (visitors, selected.iter().filter(|r| r.event_type == "pageview").count() as i64)
}

fn metric(resp: &QueryResponse, row: usize, i: usize) -> &Value {
    &resp.results[row].metrics[i]
}

fn day_start(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

#[tokio::test]
async fn rollups_and_raw_events_agree_on_every_breakdown() {
    let f = Fixture::new().await;
    let site = &f.demo;
    let mut bodies = vec![
        json!({"metrics": FULL, "date_range": "30d", "include": {"comparisons": {"mode": "previous_period"}}}),
        json!({"metrics": FULL, "date_range": "30d", "dimensions": ["time:day"], "include": {"time_labels": true, "comparisons": {"mode": "previous_period"}}}),
        json!({"metrics": ["visitors", "visits", "pageviews"], "date_range": "28d", "dimensions": ["time:week"]}),
        json!({"metrics": ["visitors", "bounce_rate"], "date_range": "30d", "dimensions": ["time:month"]}),
        json!({"metrics": ["visitors", "pageviews", "bounce_rate"], "date_range": "30d", "dimensions": ["time:day", "visit:source"]}),
        json!({"metrics": FULL.iter().filter(|m| **m != "views_per_visit").collect::<Vec<_>>(), "date_range": "30d", "dimensions": ["event:page"]}),
        json!({"metrics": ["visitors", "visits", "events", "total_revenue", "average_revenue"], "date_range": "30d", "dimensions": ["event:name"]}),
        json!({"metrics": ["visitors", "visits", "events"], "date_range": "30d", "dimensions": ["event:props:plan"]}),
        json!({"metrics": ["visitors", "events", "conversion_rate", "total_revenue"], "date_range": "30d", "dimensions": ["event:goal"]}),
    ];
    for d in [
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
    ] {
        bodies.push(json!({"metrics": FULL, "date_range": "30d", "dimensions": [format!("visit:{d}")],
                           "include": {"comparisons": {"mode": "previous_period"}}}));
    }
    for body in bodies {
        let resp = f.both(site, req(site, body.clone())).await;
        // A previous period reaching before the seeded days has empty days, with no rollups: raw, and cheap.
        let expected = if body["include"]["comparisons"].is_null() { "rollups" } else { "mixed" };
        assert_eq!(resp.meta.source, expected, "{body}");
        // The test database has no geo file: places are empty, everything else is not.
        let geo = ["visit:country", "visit:region", "visit:city"].iter().any(|d| body["dimensions"][0] == *d);
        assert!(geo || !resp.results.is_empty(), "{body}");
    }
    let totals = f.demo(req(site, json!({"metrics": ["visitors", "pageviews"], "date_range": "30d"}))).await;
    assert!(metric(&totals, 0, 0).as_i64().unwrap() > 300, "the month has traffic: {totals:?}");

    // A range that ends today: rolled-up days plus today's raw events.
    let range = json!([(f.today() - Duration::days(12)).to_string(), f.today().to_string()]);
    for dims in [json!([]), json!(["visit:country"]), json!(["time:day"]), json!(["event:page"])] {
        let resp = f
            .both(
                site,
                req(site, json!({"metrics": ["visitors", "visits", "pageviews", "bounce_rate"], "date_range": range, "dimensions": dims})),
            )
            .await;
        assert_eq!(resp.meta.source, "mixed", "{dims}");
    }
}

#[tokio::test]
async fn today_and_filters_match_counts_made_from_raw_rows() {
    let f = Fixture::new().await;
    let site = &f.demo;
    let today = f.today();
    let today_rows = raw_rows(&f.app, site.id, day_start(today), f.now + Duration::seconds(1)).await;
    let resp = f.demo(req(site, json!({"metrics": ["visitors", "pageviews"], "date_range": "day"}))).await;
    assert_eq!(resp.meta.source, "raw");
    let (v, p) = count(&today_rows, |_| true);
    assert!(v > 0, "the seed has traffic today");
    assert_eq!((metric(&resp, 0, 0).as_i64().unwrap(), metric(&resp, 0, 1).as_i64().unwrap()), (v, p));

    let start = today - Duration::days(30);
    let rows = raw_rows(&f.app, site.id, day_start(start), day_start(today)).await;
    let source = rows.iter().filter_map(|r| r.source.clone()).next().expect("referrer sources");
    let is = |x: &Option<String>, v: &str| x.as_deref() == Some(v);
    let cases: Vec<(Value, Box<dyn Fn(&Row) -> bool>)> = vec![
        (json!([["is", "visit:source", [source]]]), Box::new(|r: &Row| is(&r.source, &source))),
        (json!([["is_not", "visit:browser", ["Chrome"]]]), Box::new(|r: &Row| !is(&r.browser, "Chrome"))),
        (json!([["contains", "event:page", ["blog"]]]), Box::new(|r: &Row| r.pathname.contains("blog"))),
        (json!([["contains_not", "event:page", ["blog"]]]), Box::new(|r: &Row| !r.pathname.contains("blog"))),
        (
            json!([["matches", "event:page", ["^/docs(/|$)"]]]),
            Box::new(|r: &Row| r.pathname == "/docs" || r.pathname.starts_with("/docs/")),
        ),
        (json!([["matches_not", "event:page", ["^/$"]]]), Box::new(|r: &Row| r.pathname != "/")),
        (
            json!([["is", "visit:device", ["mobile"]], ["contains", "event:page", ["pric"]]]),
            Box::new(|r: &Row| is(&r.device, "mobile") && r.pathname.contains("pric")),
        ),
        (
            json!([["or", [["is", "visit:browser", ["Firefox"]], ["is", "visit:source", [source]]]]]),
            Box::new(|r: &Row| is(&r.browser, "Firefox") || is(&r.source, &source)),
        ),
        (json!([["not", ["is", "visit:device", ["mobile"]]]]), Box::new(|r: &Row| !is(&r.device, "mobile"))),
        (
            json!([[
                "and",
                [["not", ["is", "event:page", ["/"]]], ["or", [["is", "event:name", ["Signup"]], ["is", "event:page", ["/pricing"]]]]]
            ]]),
            Box::new(|r: &Row| r.pathname != "/" && (r.name == "Signup" || r.pathname == "/pricing")),
        ),
    ];
    for (filters, keep) in cases {
        let body = req(site, json!({"metrics": ["visitors", "pageviews"], "date_range": "30d", "filters": filters}));
        let resp = f.demo(body.clone()).await;
        assert_eq!(resp.meta.source, "raw", "filters read raw events");
        let (v, p) = count(&rows, keep);
        assert!(v > 0, "{filters} selects something");
        assert_eq!((metric(&resp, 0, 0).as_i64().unwrap(), metric(&resp, 0, 1).as_i64().unwrap()), (v, p), "{filters}");
    }

    // Hostile values are values, nothing more.
    let evil = "'; DROP TABLE events; --";
    let events_before = f.app.count_events(site.id).await;
    let resp = f.demo(req(site, json!({"metrics": ["visitors"], "date_range": "30d", "filters": [["is", "visit:country", [evil]], ["contains", "event:page", [evil]]]}))).await;
    assert_eq!(metric(&resp, 0, 0), &json!(0));
    let resp =
        f.demo(req(site, json!({"metrics": ["visitors"], "date_range": "30d", "dimensions": [format!("event:props:{evil}")]}))).await;
    assert!(resp.results.is_empty());
    assert_eq!(f.app.count_events(site.id).await, events_before, "the events table is intact");
}

#[tokio::test]
async fn goals_conversion_rates_and_revenue_match_raw_rows() {
    let f = Fixture::new().await;
    let site = &f.demo;
    let today = f.today();
    let rows = raw_rows(&f.app, site.id, day_start(today - Duration::days(30)), day_start(today)).await;
    let (total, _) = count(&rows, |_| true);
    let resp = f
        .demo(req(site, json!({"metrics": ["visitors", "events", "conversion_rate"], "date_range": "30d", "dimensions": ["event:goal"]})))
        .await;
    assert_eq!(resp.meta.source, "rollups");
    let by_goal: BTreeMap<&str, &Vec<Value>> = resp.results.iter().map(|r| (r.dimensions[0].as_str(), &r.metrics)).collect();
    let goal_rows: [(&str, Box<dyn Fn(&Row) -> bool>); 4] = [
        ("Pricing", Box::new(|r: &Row| r.event_type == "pageview" && r.pathname == "/pricing")),
        ("Blog", Box::new(|r: &Row| r.event_type == "pageview" && r.pathname.starts_with("/blog"))),
        ("Signup", Box::new(|r: &Row| r.event_type == "click" && r.name == "Signup")),
        ("Purchase", Box::new(|r: &Row| r.event_type == "purchase")),
    ];
    for (goal, matches) in goal_rows {
        let (visitors, _) = count(&rows, &matches);
        let conversions = rows.iter().filter(|r| matches(r)).count() as i64;
        let rate = (visitors as f64 / total as f64 * 10_000.0).round() / 100.0;
        let got = by_goal.get(goal).unwrap_or_else(|| panic!("{goal} in {resp:?}"));
        assert_eq!(**got, vec![json!(visitors), json!(conversions), json!(rate)], "{goal}");
    }

    // A goal filter with a breakdown: converted visitors of each source over that source's visitors.
    let resp = f
        .demo(req(
            site,
            json!({"metrics": ["visitors", "conversion_rate"], "date_range": "30d", "dimensions": ["visit:source"],
                                        "filters": [["is", "event:goal", ["Pricing"]]], "pagination": {"limit": 1}}),
        ))
        .await;
    let source = resp.results[0].dimensions[0].clone();
    let in_source = |r: &Row| r.source.as_deref() == Some(source.as_str());
    let (base, _) = count(&rows, in_source);
    let (converted, _) = count(&rows, |r| in_source(r) && r.event_type == "pageview" && r.pathname == "/pricing");
    assert_eq!(resp.results[0].metrics, vec![json!(converted), json!((converted as f64 / base as f64 * 10_000.0).round() / 100.0)]);

    // Revenue per currency, in major units.
    let resp = f.demo(req(site, json!({"metrics": ["total_revenue", "average_revenue"], "date_range": "30d"}))).await;
    let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (minor, cur) in rows.iter().filter_map(|r| r.revenue.clone()) {
        let e = expected.entry(cur).or_default();
        e.0 += minor;
        e.1 += 1;
    }
    assert!(expected.contains_key("USD") && expected.contains_key("EUR"), "the seed sells in two currencies: {expected:?}");
    for (cur, (sum, n)) in &expected {
        assert_eq!(metric(&resp, 0, 0)[cur], json!({"value": *sum as f64 / 100.0, "currency": cur}));
        assert_eq!(metric(&resp, 0, 1)[cur]["value"], json!(((*sum as f64 / *n as f64) / 100.0 * 100.0).round() / 100.0));
    }

    // A goal made after the rollups: its numbers come from raw events, and are right.
    f.app
        .db
        .client()
        .await
        .execute(
            "INSERT INTO goals (id, site_id, kind, display_name, page_path) VALUES (gen_random_uuid(), $1, 'pageview', 'Docs', '/docs*')",
            &[site.id.as_uuid()],
        )
        .await
        .unwrap();
    let body = req(site, json!({"metrics": ["visitors", "events", "conversion_rate"], "date_range": "30d", "dimensions": ["event:goal"]}));
    let resp = f.both(site, body).await;
    assert_eq!(resp.meta.source, "raw", "rollups older than the goal are not used for goals");
    let (docs, _) = count(&rows, |r| r.event_type == "pageview" && r.pathname.starts_with("/docs"));
    assert!(resp.results.iter().any(|r| r.dimensions == ["Docs"] && r.metrics[0] == json!(docs)));
}

#[tokio::test]
async fn pagination_order_and_other_sites() {
    let f = Fixture::new().await;
    let site = &f.demo;
    let all = f
        .demo(req(
            site,
            json!({"metrics": ["visitors", "pageviews"], "date_range": "30d", "dimensions": ["event:page"],
                                       "order_by": [["pageviews", "desc"]], "include": {"total_rows": true}}),
        ))
        .await;
    let pageviews: Vec<i64> = all.results.iter().map(|r| r.metrics[1].as_i64().unwrap()).collect();
    assert!(pageviews.windows(2).all(|w| w[0] >= w[1]), "{pageviews:?}");
    assert_eq!(all.meta.total_rows, Some(all.results.len() as u64));
    assert!(all.results.iter().all(|r| r.dimensions[0] != "/other-only"), "no other site's pages");
    let page = f.demo(req(site, json!({"metrics": ["visitors", "pageviews"], "date_range": "30d", "dimensions": ["event:page"],
                                        "order_by": [["pageviews", "desc"]], "pagination": {"limit": 3, "offset": 2}, "include": {"total_rows": true}}))).await;
    assert_eq!(page.results, all.results[2..5].to_vec());
    assert_eq!(page.meta.total_rows, all.meta.total_rows);
    let by_name = f
        .demo(req(
            site,
            json!({"metrics": ["visitors"], "date_range": "30d", "dimensions": ["event:page"], "order_by": [["event:page", "asc"]]}),
        ))
        .await;
    let names: Vec<&String> = by_name.results.iter().map(|r| &r.dimensions[0]).collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");

    // The other site sees its own three visits and nothing of the demo's traffic.
    let other = f
        .both(&f.other, req(&f.other, json!({"metrics": ["visitors", "pageviews"], "date_range": "30d", "dimensions": ["event:page"]})))
        .await;
    assert_eq!(other.results.len(), 1);
    assert_eq!(
        (other.results[0].dimensions.clone(), other.results[0].metrics.clone()),
        (vec!["/other-only".to_owned()], vec![json!(3), json!(3)])
    );
}

#[tokio::test]
async fn days_and_hours_are_the_site_timezone() {
    let app = TestApp::spawn().await;
    let id = app.create_site().await;
    let now = Utc::now();
    let d = now.date_naive() - Duration::days(10);
    let at = |day: NaiveDate, h: u32, m: u32| day.and_hms_opt(h, m, 0).unwrap().and_utc();
    // Tokyo is UTC+9 all year: 23:30 UTC is 08:30 the next day there.
    send(&app, id, at(d, 23, 30), "192.0.2.1", "/late", json!({})).await;
    send(&app, id, at(d, 14, 0), "192.0.2.2", "/early", json!({})).await;
    send(&app, id, at(d - Duration::days(2), 12, 0), "192.0.2.3", "/before", json!({})).await;
    for back in 0..14 {
        rollup::rollup_day(&app.state.pool, id, now.date_naive() - Duration::days(back)).await.unwrap();
    }
    let site = StatsSite { id, timezone: "Asia/Tokyo".into() };
    let run = |body: Value, source| {
        let request: QueryRequest = serde_json::from_value(req(&site, body)).unwrap();
        let (pool, site) = (app.state.pool.clone(), site.clone());
        async move { stats::query_with(&pool, &site, request, now, source).await.unwrap() }
    };
    let next = d + Duration::days(1);
    let resp = run(json!({"metrics": ["visitors"], "date_range": [d.to_string(), next.to_string()], "dimensions": ["time:day"], "include": {"time_labels": true}}), Source::Auto).await;
    let rows: Vec<(String, Value)> = resp.results.iter().map(|r| (r.dimensions[0].clone(), r.metrics[0].clone())).collect();
    assert_eq!(rows, vec![(d.to_string(), json!(1)), (next.to_string(), json!(1))]);
    assert_eq!(resp.meta.time_labels, Some(vec![d.to_string(), next.to_string()]));
    let resp = run(
        json!({"metrics": ["visitors"], "date_range": [next.to_string(), next.to_string()], "dimensions": ["time:hour"]}),
        Source::Auto,
    )
    .await;
    assert_eq!(resp.results.len(), 1);
    assert_eq!(resp.results[0].dimensions, vec![format!("{next} 08:00:00")]);
    // Local days cut UTC days: whole UTC days inside from rollups, the edges from raw events.
    let body =
        json!({"metrics": ["visitors", "visits", "pageviews"], "date_range": [(d - Duration::days(3)).to_string(), next.to_string()]});
    let auto = run(body.clone(), Source::Auto).await;
    assert_eq!(auto.meta.source, "mixed");
    assert_eq!(auto.results, run(body, Source::RawOnly).await.results);
    assert_eq!(auto.results[0].metrics, vec![json!(3), json!(3), json!(3)]);
}

#[tokio::test]
async fn bad_requests_are_typed_errors() {
    let app = TestApp::spawn().await;
    let site = StatsSite { id: app.create_site().await, timezone: "UTC".into() };
    let now = Utc::now();
    let cases = [
        (json!({"metrics": ["visitors", "sessions"], "date_range": "30d"}), "unknown metric `sessions`"),
        (json!({"metrics": ["visitors"], "date_range": "30d", "dimensions": ["visit:galaxy"]}), "unknown dimension `visit:galaxy`"),
        (json!({"metrics": ["visitors"], "date_range": ["2026-01-31", "2026-01-01"]}), "invalid date range"),
        (json!({"metrics": ["visitors"], "date_range": ["1990-01-01", "2026-01-01"]}), "at most 3660"),
        (
            json!({"metrics": ["visitors"], "date_range": "30d", "filters": [["matches", "event:page", ["(unclosed"]]]}),
            "invalid regular expression",
        ),
        (json!({"metrics": ["visitors"], "date_range": "30d", "pagination": {"limit": 0}}), "invalid pagination"),
        (json!({"metrics": ["conversion_rate"], "date_range": "30d"}), "needs an event:goal"),
        (json!({"metrics": ["bounce_rate"], "date_range": "30d", "dimensions": ["event:name"]}), "bounce_rate"),
        (json!({"metrics": ["visitors"], "date_range": "12mo", "dimensions": ["time:hour"]}), "too many time buckets"),
        (json!({"metrics": ["visitors"], "date_range": "30d", "filters": [["is", "event:goal", ["Nope"]]]}), "no goal named `Nope`"),
    ];
    for (body, message) in cases {
        let request: QueryRequest = serde_json::from_value(req(&site, body.clone())).unwrap();
        let err = stats::query(&app.state.pool, &site, request, now).await.expect_err(&body.to_string());
        assert!(err.is_client_error(), "{err}");
        assert!(err.to_string().contains(message), "{body}: {err}");
    }
    let bad_tz = StatsSite { timezone: "Mars/Olympus".into(), ..site.clone() };
    let request: QueryRequest = serde_json::from_value(req(&site, json!({"metrics": ["visitors"], "date_range": "day"}))).unwrap();
    let err = stats::query(&app.state.pool, &bad_tz, request, now).await.unwrap_err();
    assert!(matches!(err, StatsError::SiteTimezone(_)) && !err.is_client_error(), "{err}");
}

#[tokio::test]
async fn realtime_and_csv_export() {
    let app = TestApp::spawn().await;
    let id = app.create_site().await;
    let site = StatsSite { id, timezone: "UTC".into() };
    // Yesterday noon: the minutes before it are all one day, whenever the test runs.
    let now = (Utc::now() - Duration::days(1)).date_naive().and_hms_opt(12, 0, 0).unwrap().and_utc();
    send(&app, id, now - Duration::minutes(1), "192.0.2.10", "/live", json!({})).await;
    send(&app, id, now - Duration::minutes(2), "192.0.2.11", "/live", json!({})).await;
    send(&app, id, now - Duration::minutes(12), "192.0.2.12", "/earlier", json!({})).await;
    send(&app, id, now - Duration::minutes(1), "192.0.2.10", "/live", json!({"type": "click", "name": "Signup"})).await;
    let rt = stats::realtime(&app.state.pool, &site, now).await.unwrap();
    assert_eq!(rt.visitors, 2);
    assert_eq!(rt.pageviews_per_minute.len(), 30);
    assert_eq!(rt.pageviews_per_minute.iter().map(|m| m.pageviews).sum::<i64>(), 3);
    assert_eq!(rt.top_pages.iter().map(|p| (p.page.as_str(), p.visitors)).collect::<Vec<_>>(), vec![("/live", 2)]);
    assert_eq!(rt.recent_events.len(), 4);
    assert_eq!((rt.recent_events[0].event_type.as_str(), rt.recent_events[0].name.as_str()), ("click", "Signup"));
    let json = serde_json::to_string(&rt).unwrap();
    assert!(!json.contains("hash"), "no visitor hashes leave: {json}");

    let csv = stats::export_csv(&app.state.pool, &site, json!("day"), now).await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "section,key,visitors,visits,pageviews,bounce_rate,visit_duration");
    assert!(lines.contains(&format!("day,{},3,3,3,66.7,0", now.date_naive()).as_str()), "{csv}");
    assert!(lines.contains(&"page,/live,2,2,2,50.0,0"), "{csv}");
}
