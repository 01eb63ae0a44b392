//! The stats API through HTTP: `POST /api/v2/query` with the site named by
//! domain or id, as users of each role and as API keys; realtime; the CSV
//! export (audited); public share links with and without their password.

use chrono::{Duration, Utc};
use engagetrack_server::rollup;
use engagetrack_server::seed::{DEMO_DOMAIN, SeedOptions, seed_demo};
use engagetrack_server::stats::{self, QueryRequest, StatsSite};
use engagetrack_tests::TestApp;
use serde_json::{Value, json};
use uuid::Uuid;

async fn demo_org(app: &TestApp) -> Uuid {
    app.db.client().await.query_one("SELECT organization_id FROM sites WHERE domain = $1", &[&DEMO_DOMAIN]).await.unwrap().get(0)
}

pub(crate) async fn key_with(app: &TestApp, org: Uuid, scopes: &[&str]) -> String {
    let token = format!("etk_{}", Uuid::new_v4().simple());
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    app.db
        .client()
        .await
        .execute(
            "INSERT INTO api_keys (id, organization_id, name, prefix, key_hash, scopes) VALUES ($1, $2, 'test', 'etk_test', $3, $4)",
            &[&Uuid::new_v4(), &org, &engagetrack_server::auth::opaque::hash(&token), &scopes],
        )
        .await
        .unwrap();
    token
}

#[tokio::test]
async fn the_query_endpoint_answers_members_and_keys_with_the_engines_numbers() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let demo = seed_demo(&app.state, now, SeedOptions { days: 10, visitors: 150, seed: 3 }).await.unwrap().site_id;
    for back in 1..10 {
        rollup::rollup_day(&app.state.pool, demo, now.date_naive() - Duration::days(back)).await.unwrap();
    }
    let org = demo_org(&app).await;
    let viewer = app.sign_up_verified("viewer@example.com").await;
    let billing = app.sign_up_verified("billing@example.com").await;
    let outsider = app.sign_up_verified("outsider@example.com").await;
    app.add_member(org, viewer.id, "viewer").await;
    app.add_member(org, billing.id, "billing").await;

    let body = json!({"site_id": DEMO_DOMAIN, "metrics": ["visitors", "visits", "pageviews", "bounce_rate"], "date_range": "7d",
                      "dimensions": ["visit:source"], "order_by": [["visitors", "desc"]], "include": {"comparisons": {"mode": "previous_period"}}});
    let over_http = app.as_user(&viewer).post("/api/v2/query", body.clone()).await.expect(200);
    let request: QueryRequest = serde_json::from_value(body.clone()).unwrap();
    let direct = stats::query(&app.state.pool, &StatsSite { id: demo, timezone: "UTC".into() }, request, Utc::now()).await.unwrap();
    assert_eq!(over_http["results"], serde_json::to_value(&direct.results).unwrap());
    assert!(over_http["results"].as_array().unwrap().len() > 1, "{over_http}");
    assert!(over_http["results"][0]["comparison"].is_object());

    // The id names the site as well as the domain does.
    let mut by_id = body.clone();
    by_id["site_id"] = demo.to_string().into();
    assert_eq!(app.as_user(&viewer).post("/api/v2/query", by_id).await.expect(200)["results"], over_http["results"]);

    app.as_user(&billing).post("/api/v2/query", body.clone()).await.expect_error(403, "billing");
    app.as_user(&outsider).post("/api/v2/query", body.clone()).await.expect_error(404, "site not found");
    app.anonymous().post("/api/v2/query", body.clone()).await.expect(401);

    let stats_key = key_with(&app, org, &["stats:read"]).await;
    assert_eq!(app.with_bearer(&stats_key).post("/api/v2/query", body.clone()).await.expect(200)["results"], over_http["results"]);
    let sites_key = key_with(&app, org, &["sites:read"]).await;
    app.with_bearer(&sites_key).post("/api/v2/query", body.clone()).await.expect_error(403, "stats:read");
    let other_key = key_with(&app, outsider.organization_id, &["stats:read"]).await;
    app.with_bearer(&other_key).post("/api/v2/query", body.clone()).await.expect(404);

    // Bad queries are 400s with the engine's reason.
    let mut bad = body.clone();
    bad["metrics"] = json!(["visitorz"]);
    app.as_user(&viewer).post("/api/v2/query", bad).await.expect_error(400, "unknown metric `visitorz`");
    app.as_user(&viewer).post("/api/v2/query", json!({"site_id": DEMO_DOMAIN})).await.expect_error(400, "metrics");
    let mut injected = body.clone();
    injected["filters"] = json!([["is", "visit:source", ["'; DROP TABLE events; --"]]]);
    let answer = app.as_user(&viewer).post("/api/v2/query", injected).await.expect(200);
    assert_eq!(answer["results"], json!([]));
    assert!(app.count_events(demo).await > 0);

    // The demo's Signup events carry a `plan` property, rolled up and raw.
    let keys = app.as_user(&viewer).get(&format!("/api/sites/{DEMO_DOMAIN}/property-keys")).await.expect(200);
    assert_eq!(keys["keys"], json!(["plan"]));
    let realtime = app.as_user(&viewer).get(&format!("/api/sites/{DEMO_DOMAIN}/realtime")).await.expect(200);
    assert_eq!(realtime["pageviews_per_minute"].as_array().unwrap().len(), 30);
    app.as_user(&billing).get(&format!("/api/sites/{DEMO_DOMAIN}/realtime")).await.expect(403);
}

#[tokio::test]
async fn csv_export_and_share_links() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let demo = seed_demo(&app.state, now, SeedOptions { days: 5, visitors: 60, seed: 4 }).await.unwrap().site_id;
    let org = demo_org(&app).await;
    let editor = app.sign_up_verified("editor@example.com").await;
    app.add_member(org, editor.id, "editor").await;

    let res = reqwest::Client::new()
        .get(app.url(&format!("/api/sites/{demo}/export.csv?date_range=7d")))
        .bearer_auth(&editor.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(res.headers()["content-disposition"].to_str().unwrap().contains("stats.csv"));
    let csv = res.text().await.unwrap();
    assert!(csv.starts_with("section,key,visitors,visits,pageviews,bounce_rate,visit_duration\n"), "{csv}");
    let days_with_visits: i64 = app
        .db
        .client()
        .await
        .query_one(
            // "7d" is the seven whole days before today, as in Plausible.
            "SELECT count(DISTINCT (ts AT TIME ZONE 'UTC')::date) FROM events
             WHERE site_id = $1 AND event_type = 'pageview' AND ts >= $2 AND ts < $3",
            &[
                demo.as_uuid(),
                &(now.date_naive() - Duration::days(7)).and_hms_opt(0, 0, 0).unwrap().and_utc(),
                &now.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc(),
            ],
        )
        .await
        .unwrap()
        .get(0);
    assert!(days_with_visits >= 3);
    assert_eq!(csv.lines().filter(|l| l.starts_with("day,")).count() as i64, days_with_visits, "{csv}");
    let audited: i64 = app
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM audit_log WHERE action = 'site.stats_exported' AND actor_user_id = $1", &[&editor.id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
    app.as_user(&editor).get(&format!("/api/sites/{demo}/export.csv?date_range=nonsense")).await.expect_error(400, "date range");

    // A password-protected public link answers the same numbers, read-only, for its own site only.
    let link = app
        .as_user(&editor)
        .post(&format!("/api/sites/{demo}/shared-links"), json!({"name": "Board", "password": "a long secret"}))
        .await
        .expect(201);
    let slug = link["slug"].as_str().unwrap().to_owned();
    let query = json!({"metrics": ["visitors", "pageviews"], "date_range": "7d"});
    let client = reqwest::Client::new();
    let res = client.post(app.url(&format!("/api/shared/{slug}/query"))).json(&query).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = client
        .post(app.url(&format!("/api/shared/{slug}/query")))
        .header("x-share-password", "wrong one")
        .json(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let other = app.create_site().await;
    let mut elsewhere = query.clone();
    elsewhere["site_id"] = other.to_string().into();
    let res = client
        .post(app.url(&format!("/api/shared/{slug}/query")))
        .header("x-share-password", "a long secret")
        .json(&elsewhere)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let shared: Value = res.json().await.unwrap();
    let mut own = query.clone();
    own["site_id"] = demo.to_string().into();
    let signed_in = app.as_user(&editor).post("/api/v2/query", own).await.expect(200);
    assert_eq!(shared["results"], signed_in["results"], "the link shows its own site whatever the body names");
    assert!(shared["results"][0]["metrics"][0].as_i64().unwrap() > 0);
    let res = client.post(app.url("/api/shared/no-such-link/query")).json(&query).send().await.unwrap();
    assert_eq!(res.status(), 404);

    // Guessing the link's password is throttled: 20 misses, then even the right one waits.
    for _ in 0..19 {
        let res = client
            .post(app.url(&format!("/api/shared/{slug}/query")))
            .header("x-share-password", "guess")
            .json(&query)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    let res = client
        .post(app.url(&format!("/api/shared/{slug}/query")))
        .header("x-share-password", "a long secret")
        .json(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
}

/// PostgreSQL keeps no NUL character in text or jsonb: wherever one arrives,
/// the answer is a 400 with the reason, never a 500 (schemathesis found the
/// first one in organisation settings).
#[tokio::test]
async fn nul_characters_are_refused_with_a_reason() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up_verified("nul@example.com").await;
    let me = app.as_user(&owner);
    me.patch(&format!("/api/organizations/{}", owner.organization_id), json!({"settings": {"k": "a\u{0}b"}}))
        .await
        .expect_error(400, "NUL");
    me.patch(&format!("/api/organizations/{}", owner.organization_id), json!({"settings": {"a\u{0}": 1}})).await.expect_error(400, "NUL");
    let site = me
        .post(&format!("/api/organizations/{}/sites", owner.organization_id), json!({"domain": "nul.example.com", "timezone": "UTC"}))
        .await
        .expect(201);
    let query =
        json!({"site_id": site["id"], "metrics": ["visitors"], "date_range": "7d", "filters": [["is", "visit:source", ["x\u{0}y"]]]});
    me.post("/api/v2/query", query).await.expect_error(400, "NUL");
    let answer = me.post("/api/v2/query", json!({"site_id": "nul\u{0}.example.com", "metrics": ["visitors"], "date_range": "7d"})).await;
    assert!(answer.status.is_client_error(), "{} {}", answer.status, answer.body);
    // The organisation is unchanged and still answers.
    me.get(&format!("/api/organizations/{}", owner.organization_id)).await.expect(200);
}
