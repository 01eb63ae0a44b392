//! Plausible's Stats API v1 over HTTP against real PostgreSQL: a handful of
//! known events (two rolled-up days), each endpoint's exact JSON worked out by
//! hand from them, the same numbers as the v2 query they translate to, and a
//! 400 with its reason for every bad parameter.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use engagetrack_server::rollup;
use engagetrack_tests::TestApp;
use engagetrack_tests::users::ApiClient;
use serde_json::{Value, json};
use shared::SiteId;
use uuid::Uuid;

use crate::stats::send;
use crate::stats_http::key_with;

/// The domain `create_site` gives, which `send` puts in every event's URL.
const SITE: &str = "example.com";

fn at(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, h, m, 0).unwrap()
}

/// The seeded site: five visits on 2 and 3 November 2026 (UTC), both days rolled up.
///
/// | visit | events | source | screen |
/// |---|---|---|---|
/// | A, 2 Nov | `/`, `/pricing`, click Signup {plan: pro} | Google | Desktop |
/// | B, 2 Nov | `/blog/a` (bounce) | Google | Mobile |
/// | C, 2 Nov | `/`, `/blog/b` + 60 s engaged on it | direct | none |
/// | A, 3 Nov | `/pricing` (bounce) | Google | Desktop |
/// | D, 3 Nov | `/`, click Signup {plan: free} | Bing | Tablet |
///
/// So over both days: 5 visitors (summed per day), 5 visits, 7 pageviews,
/// 2 bounces (40%), 60 s engaged (12 s a visit), 2 events, 1.4 views a visit.
struct Seeded {
    app: TestApp,
    site: SiteId,
    key: String,
}

async fn seeded() -> Seeded {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let (a, b, c, d) = ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4");
    let google = "https://www.google.com/";
    let desktop = json!({"w": 1920, "h": 1080});
    let with = |base: Value, more: &Value| {
        let mut v = base;
        if let (Some(o), Some(m)) = (v.as_object_mut(), more.as_object()) {
            o.extend(m.clone());
        }
        v
    };
    send(&app, site, at(2, 10, 0), a, "/", with(json!({"referrer": google}), &desktop)).await;
    send(&app, site, at(2, 10, 1), a, "/pricing", desktop.clone()).await;
    send(&app, site, at(2, 10, 2), a, "/pricing", json!({"type": "click", "name": "Signup", "props": {"plan": "pro"}})).await;
    send(&app, site, at(2, 11, 0), b, "/blog/a", json!({"referrer": google, "w": 400, "h": 800})).await;
    send(&app, site, at(2, 12, 0), c, "/", json!({})).await;
    send(&app, site, at(2, 12, 5), c, "/blog/b", json!({})).await;
    send(&app, site, at(2, 12, 6), c, "/blog/b", json!({"type": "engagement", "ms": 60000, "scroll": 50})).await;
    send(&app, site, at(3, 9, 0), a, "/pricing", with(json!({"referrer": google}), &desktop)).await;
    send(&app, site, at(3, 15, 0), d, "/", json!({"referrer": "https://www.bing.com/", "w": 800, "h": 600})).await;
    send(&app, site, at(3, 15, 1), d, "/", json!({"type": "click", "name": "Signup", "props": {"plan": "free"}})).await;
    let db = app.db.client().await;
    for (kind, name, path, event) in [("event", "Signup", None, Some("Signup")), ("pageview", "Visit /pricing", Some("/pricing"), None)] {
        db.execute(
            "INSERT INTO goals (id, site_id, kind, display_name, page_path, event_name, created_at)
             VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, now() - interval '1 hour')",
            &[site.as_uuid(), &kind, &name, &path, &event],
        )
        .await
        .unwrap();
    }
    for day in [2, 3] {
        rollup::rollup_day(&app.state.pool, site, NaiveDate::from_ymd_opt(2026, 11, day).unwrap()).await.unwrap();
    }
    let org: Uuid = db.query_one("SELECT organization_id FROM sites WHERE id = $1", &[site.as_uuid()]).await.unwrap().get(0);
    let key = key_with(&app, org, &["stats:read"]).await;
    Seeded { app, site, key }
}

impl Seeded {
    fn api(&self) -> ApiClient {
        self.app.with_bearer(&self.key)
    }

    /// `GET /api/v1/stats/<endpoint>?site_id=example.com&<query>`, expecting 200.
    async fn v1(&self, endpoint: &str, query: &str) -> Value {
        self.api().get(&format!("/api/v1/stats/{endpoint}?site_id={SITE}&{query}")).await.expect(200)
    }

    async fn v1_error(&self, endpoint: &str, query: &str, reason: &str) {
        let path = format!("/api/v1/stats/{endpoint}?site_id={SITE}&{query}");
        self.api().get(&path).await.expect_error(400, reason);
    }

    async fn v2(&self, mut body: Value) -> Value {
        body["site_id"] = json!(SITE);
        self.api().post("/api/v2/query", body).await.expect(200)
    }
}

/// Both seeded days, as a v1 custom period.
const BOTH_DAYS: &str = "period=custom&date=2026-11-02,2026-11-03";

#[tokio::test]
async fn aggregate_timeseries_and_breakdown_answer_plausibles_shapes() {
    let s = seeded().await;

    let all = s
        .v1("aggregate", &format!("{BOTH_DAYS}&metrics=visitors,visits,pageviews,views_per_visit,bounce_rate,visit_duration,events"))
        .await;
    assert_eq!(
        all,
        json!({"results": {
            "visitors": {"value": 5}, "visits": {"value": 5}, "pageviews": {"value": 7}, "views_per_visit": {"value": 1.4},
            "bounce_rate": {"value": 40}, "visit_duration": {"value": 12}, "events": {"value": 2}
        }})
    );
    // The default metric is visitors; the same numbers without the rollups (a filter forces raw events).
    assert_eq!(s.v1("aggregate", BOTH_DAYS).await, json!({"results": {"visitors": {"value": 5}}}));
    assert_eq!(
        s.v1("aggregate", &format!("{BOTH_DAYS}&filters=visit:source==Google%7CBing")).await,
        json!({"results": {"visitors": {"value": 4}}})
    );
    assert_eq!(
        s.v1("aggregate", &format!("{BOTH_DAYS}&metrics=visitors,pageviews&filters=event:page%3D%3D%2Fblog*")).await,
        json!({"results": {"visitors": {"value": 2}, "pageviews": {"value": 2}}})
    );
    assert_eq!(
        s.v1("aggregate", &format!("{BOTH_DAYS}&metrics=visitors,pageviews&filters=event:page!=/blog/*;visit:device==Desktop")).await,
        json!({"results": {"visitors": {"value": 2}, "pageviews": {"value": 3}}})
    );
    assert_eq!(
        s.v1("aggregate", &format!("{BOTH_DAYS}&metrics=visitors,conversion_rate&filters=event:goal==Visit+/pricing")).await,
        json!({"results": {"visitors": {"value": 2}, "conversion_rate": {"value": 40.0}}})
    );
    assert_eq!(
        s.v1("aggregate", &format!("{BOTH_DAYS}&metrics=time_on_page&filters=event:page==/blog/b")).await,
        json!({"results": {"time_on_page": {"value": 60}}})
    );
    assert_eq!(
        s.v1("aggregate", "period=day&date=2026-11-03&metrics=visitors,bounce_rate,pageviews&compare=previous_period").await,
        json!({"results": {
            "visitors": {"value": 2, "comparison_value": 3, "change": -33},
            "bounce_rate": {"value": 50, "comparison_value": 33, "change": 17},
            "pageviews": {"value": 2, "comparison_value": 5, "change": -60}
        }})
    );
    // 7d ends on its date: 28 Oct to 3 Nov holds both days.
    assert_eq!(s.v1("aggregate", "period=7d&date=2026-11-03&metrics=visits").await, json!({"results": {"visits": {"value": 5}}}));

    let days = s.v1("timeseries", "period=custom&date=2026-11-01,2026-11-03&metrics=visitors,pageviews,bounce_rate").await;
    assert_eq!(
        days,
        json!({"results": [
            {"date": "2026-11-01", "visitors": 0, "pageviews": 0, "bounce_rate": 0},
            {"date": "2026-11-02", "visitors": 3, "pageviews": 5, "bounce_rate": 33},
            {"date": "2026-11-03", "visitors": 2, "pageviews": 2, "bounce_rate": 50}
        ]})
    );
    let hours = s.v1("timeseries", "period=day&date=2026-11-03").await;
    let hours = hours["results"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    for (h, bucket) in hours.iter().enumerate() {
        let visitors = if h == 9 || h == 15 { 1 } else { 0 };
        assert_eq!(bucket, &json!({"date": format!("2026-11-03 {h:02}:00:00"), "visitors": visitors}));
    }
    let months = s.v1("timeseries", "period=6mo&date=2026-11-20").await;
    let months = months["results"].as_array().unwrap();
    assert_eq!(months.len(), 6);
    assert_eq!(months[0], json!({"date": "2026-06-01", "visitors": 0}));
    assert_eq!(months[5], json!({"date": "2026-11-01", "visitors": 5}));

    assert_eq!(
        s.v1("breakdown", &format!("{BOTH_DAYS}&property=visit:source&metrics=visitors,bounce_rate")).await,
        json!({"results": [{"source": "Google", "visitors": 3, "bounce_rate": 67}, {"source": "Bing", "visitors": 1, "bounce_rate": 0}]})
    );
    assert_eq!(
        s.v1("breakdown", &format!("{BOTH_DAYS}&property=event:page&metrics=visitors,pageviews")).await,
        json!({"results": [
            {"page": "/", "visitors": 3, "pageviews": 3}, {"page": "/pricing", "visitors": 2, "pageviews": 2},
            {"page": "/blog/a", "visitors": 1, "pageviews": 1}, {"page": "/blog/b", "visitors": 1, "pageviews": 1}
        ]})
    );
    assert_eq!(
        s.v1("breakdown", &format!("{BOTH_DAYS}&property=event:page&limit=2&page=2")).await,
        json!({"results": [{"page": "/blog/a", "visitors": 1}, {"page": "/blog/b", "visitors": 1}]})
    );
    assert_eq!(
        s.v1("breakdown", &format!("{BOTH_DAYS}&property=event:goal&metrics=visitors,events,conversion_rate")).await,
        json!({"results": [
            {"goal": "Signup", "visitors": 2, "events": 2, "conversion_rate": 40.0},
            {"goal": "Visit /pricing", "visitors": 2, "events": 2, "conversion_rate": 40.0}
        ]})
    );
    assert_eq!(
        s.v1("breakdown", &format!("{BOTH_DAYS}&property=event:props:plan")).await,
        json!({"results": [{"plan": "free", "visitors": 1}, {"plan": "pro", "visitors": 1}]})
    );
    assert_eq!(
        s.v1("breakdown", &format!("{BOTH_DAYS}&property=visit:device")).await,
        json!({"results": [{"device": "Desktop", "visitors": 2}, {"device": "Mobile", "visitors": 1}, {"device": "Tablet", "visitors": 1}]})
    );
    assert_eq!(
        s.v1("breakdown", "period=day&date=2026-11-03&property=visit:source&compare=previous_period").await,
        json!({"results": [
            {"source": "Bing", "visitors": 1, "comparison": {"visitors": 0, "change": {"visitors": 100}}},
            {"source": "Google", "visitors": 1, "comparison": {"visitors": 2, "change": {"visitors": -50}}}
        ]})
    );
    let versions = s.v1("breakdown", &format!("{BOTH_DAYS}&property=visit:browser_version")).await;
    let row = &versions["results"][0];
    assert_eq!((&row["browser"], &row["visitors"]), (&json!("Firefox"), &json!(5)), "{versions}");
    let version = row["browser_version"].as_str().unwrap();
    assert!(version.starts_with("145") && !version.contains("Firefox"), "{versions}");
    assert_eq!(
        s.v1("breakdown", &format!("{BOTH_DAYS}&property=visit:browser_version&filters=visit:browser_version=={version}")).await["results"]
            [0]["visitors"],
        json!(5)
    );

    // A current visitor: a bare integer.
    send(&s.app, s.site, Utc::now() - Duration::seconds(5), "192.0.2.9", "/now", json!({})).await;
    let now = s.api().get(&format!("/api/v1/stats/realtime/visitors?site_id={SITE}")).await.expect(200);
    assert_eq!(now, json!(1));

    // `day` is today in the site's timezone: at any hour one of these two is on another date than UTC.
    let db = s.app.db.client().await;
    for tz in ["Pacific/Kiritimati", "Pacific/Pago_Pago"] {
        db.execute("UPDATE sites SET timezone = $2 WHERE id = $1", &[s.site.as_uuid(), &tz]).await.unwrap();
        let local: NaiveDate = db.query_one("SELECT (now() AT TIME ZONE $1)::date", &[&tz]).await.unwrap().get(0);
        assert_eq!(s.v1("aggregate", "period=day").await, json!({"results": {"visitors": {"value": 1}}}), "{tz}");
        let hours = s.v1("timeseries", "period=day").await;
        assert_eq!(hours["results"][0]["date"], json!(format!("{local} 00:00:00")), "{tz}");
        assert_eq!(hours["results"].as_array().unwrap().len(), 24, "{tz}");
    }
}

#[tokio::test]
async fn v1_answers_are_the_v2_answers_to_the_same_query() {
    let s = seeded().await;
    let range = json!(["2026-11-01", "2026-11-03"]);
    let v1_range = "period=custom&date=2026-11-01,2026-11-03";
    let metrics = ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"];
    let round = |m: &str, v: &Value| match m {
        "bounce_rate" | "visit_duration" => json!(v.as_f64().unwrap().round() as i64),
        _ => v.clone(),
    };

    let v2 = s.v2(json!({"metrics": metrics, "date_range": range, "filters": [["is", "visit:source", ["Google"]]]})).await;
    let v1 = s.v1("aggregate", &format!("{v1_range}&metrics={}&filters=visit:source==Google", metrics.join(","))).await;
    for (i, m) in metrics.iter().enumerate() {
        assert_eq!(v1["results"][m]["value"], round(m, &v2["results"][0]["metrics"][i]), "{m}: {v1} vs {v2}");
    }

    let v2 = s.v2(json!({"metrics": metrics, "date_range": range, "dimensions": ["time:day"], "include": {"time_labels": true}})).await;
    let v1 = s.v1("timeseries", &format!("{v1_range}&metrics={}", metrics.join(","))).await;
    for row in v2["results"].as_array().unwrap() {
        let bucket = v1["results"].as_array().unwrap().iter().find(|b| b["date"] == row["dimensions"][0]).unwrap();
        for (i, m) in metrics.iter().enumerate() {
            assert_eq!(bucket[m], round(m, &row["metrics"][i]), "{m} on {}", row["dimensions"][0]);
        }
    }
    assert_eq!(v1["results"].as_array().unwrap().len(), v2["meta"]["time_labels"].as_array().unwrap().len());

    for (property, dimension, key) in [
        ("visit:entry_page", "visit:entry_page", "entry_page"),
        ("visit:exit_page", "visit:exit_page", "exit_page"),
        ("visit:device", "visit:screen", "device"),
    ] {
        let v2 =
            s.v2(json!({"metrics": metrics, "date_range": range, "dimensions": [dimension], "order_by": [["visitors", "desc"]]})).await;
        let v1 = s.v1("breakdown", &format!("{v1_range}&metrics={}&property={property}", metrics.join(","))).await;
        let (v1_rows, v2_rows) = (v1["results"].as_array().unwrap(), v2["results"].as_array().unwrap());
        assert_eq!(v1_rows.len(), v2_rows.len(), "{property}");
        assert!(!v1_rows.is_empty());
        for (a, b) in v1_rows.iter().zip(v2_rows) {
            assert_eq!(a[key], b["dimensions"][0], "{property}");
            for (i, m) in metrics.iter().enumerate() {
                assert_eq!(a[m], round(m, &b["metrics"][i]), "{property} {m}");
            }
        }
    }
}

#[tokio::test]
async fn bad_parameters_and_callers_are_refused_with_reasons() {
    let s = seeded().await;
    for (endpoint, query, reason) in [
        ("aggregate", "period=3d", "invalid period `3d`"),
        ("aggregate", "period=custom", "needs `date="),
        ("aggregate", "period=custom&date=2026-11-03,2026-11-01", "ends before it starts"),
        ("aggregate", "date=2026-13-01", "not a date"),
        ("aggregate", "metrics=visitors,visitors", "listed twice"),
        ("aggregate", "metrics=sessions", "unknown metric `sessions`"),
        ("aggregate", "metrics=scroll_depth", "not a Stats API v1 metric"),
        ("aggregate", "metrics=bounce_rate&filters=event:name==Signup", "session metric `bounce_rate`"),
        ("aggregate", "metrics=conversion_rate", "needs an `event:goal`"),
        ("aggregate", "metrics=time_on_page", "needs an `event:page`"),
        ("aggregate", "filters=event:page", "property==value"),
        ("aggregate", "filters=visit:planet==Mars", "unknown property `visit:planet`"),
        ("aggregate", "filters=visit:country!=DE%7CFR", "one value"),
        ("aggregate", "filters=event:goal==Nope", "no goal named `Nope`"),
        ("aggregate", "filters=event:goal!=Signup", "`==` only"),
        ("aggregate", "compare=year_over_year", "only `previous_period`"),
        ("aggregate", "with_imported=maybe", "`true` or `false`"),
        ("aggregate", "interval=day", "does not apply"),
        ("aggregate", "metric=visitors", "unknown field `metric`"),
        ("aggregate", "period=custom&date=1990-01-01,2026-01-01", "at most 3660"),
        ("timeseries", "interval=week", "invalid interval `week`"),
        ("timeseries", "compare=previous_period", "does not apply"),
        ("breakdown", "", "`property` parameter is required"),
        ("breakdown", "property=event:hostname", "event:hostname"),
        ("breakdown", "property=visit:planet", "unknown property"),
        ("breakdown", "property=visit:source&limit=0", "invalid limit"),
        ("breakdown", "property=visit:source&limit=1001", "invalid limit"),
        ("breakdown", "property=visit:source&page=0", "invalid page"),
        ("breakdown", "property=visit:source&metrics=views_per_visit", "not available in breakdowns"),
        ("realtime/visitors", "period=day", "unknown field `period`"),
        // PostgreSQL keeps no NUL character: a reason, never a 500.
        ("aggregate", "filters=event:page==/a%00b", "NUL"),
        ("aggregate", "filters=event:page==/a%00*", "NUL"),
    ] {
        s.v1_error(endpoint, query, reason).await;
    }
    s.api().get("/api/v1/stats/aggregate").await.expect_error(400, "`site_id` parameter is required");
    s.api().get("/api/v1/stats/realtime/visitors").await.expect_error(400, "`site_id` parameter is required");
    s.api().get("/api/v1/stats/aggregate?site_id=nowhere.example").await.expect_error(404, "site not found");
    let nul = s.api().get("/api/v1/stats/aggregate?site_id=example%00.com").await;
    assert!(nul.status.is_client_error(), "{} {}", nul.status, nul.body);
    s.app.anonymous().get(&format!("/api/v1/stats/aggregate?site_id={SITE}")).await.expect(401);
    s.app.with_bearer("etk_not-a-key").get(&format!("/api/v1/stats/aggregate?site_id={SITE}")).await.expect(401);
    let org: Uuid =
        s.app.db.client().await.query_one("SELECT organization_id FROM sites WHERE id = $1", &[s.site.as_uuid()]).await.unwrap().get(0);
    let sites_only = key_with(&s.app, org, &["sites:read"]).await;
    s.app
        .with_bearer(&sites_only)
        .get(&format!("/api/v1/stats/breakdown?site_id={SITE}&property=visit:source"))
        .await
        .expect_error(403, "stats:read");
    // The site's id names it as well as its domain does.
    let by_id = s.api().get(&format!("/api/v1/stats/aggregate?site_id={}&{BOTH_DAYS}", s.site)).await.expect(200);
    assert_eq!(by_id, json!({"results": {"visitors": {"value": 5}}}));
}
