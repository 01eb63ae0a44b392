//! The walking skeleton over HTTP: a beacon goes in, is anonymised, stored
//! once, and can be counted; bad input gets a 4xx with a reason.

use chrono::Utc;
use engagetrack_server::AppConfig;
use engagetrack_server::client_ip::ClientIpMode;
use engagetrack_tests::{TestApp, bad_beacons};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::{Salt, VisitorHash};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0 DistinctUA-7x3q";

fn pageview(site: impl ToString) -> Value {
    json!({"site": site.to_string(), "type": "pageview", "url": "https://example.com/a",
           "referrer": "https://www.google.com/", "title": "A", "sid": "s3ss10n-r4nd0m", "w": 1920, "h": 1080})
}

async fn post(app: &TestApp, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/api/e"))
        .header("content-type", content_type)
        .header("user-agent", UA)
        .body(body)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn a_pageview_is_stored_once_as_text_plain_or_json() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let body = pageview(site).to_string();
    assert_eq!(post(&app, "text/plain;charset=UTF-8", body.clone()).await.status(), StatusCode::ACCEPTED);
    assert_eq!(app.count_events(site).await, 1);
    assert_eq!(post(&app, "application/json", body).await.status(), StatusCode::ACCEPTED);
    assert_eq!(app.count_events(site).await, 2);

    let row = app
        .db
        .client()
        .await
        .query_one(
            "SELECT event_type, hostname, pathname, referrer_host, screen_width, ts FROM events WHERE site_id = $1 LIMIT 1",
            &[site.as_uuid()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "pageview");
    assert_eq!(row.get::<_, &str>(1), "example.com");
    assert_eq!(row.get::<_, &str>(2), "/a");
    assert_eq!(row.get::<_, Option<&str>>(3), Some("google.com"));
    assert_eq!(row.get::<_, Option<i32>>(4), Some(1920));
    let ts: chrono::DateTime<Utc> = row.get(5);
    assert!((Utc::now() - ts).num_seconds().abs() < 60);
}

#[tokio::test]
async fn bad_bodies_get_4xx_with_reasons() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let mut unknown_site = pageview(site);
    unknown_site["site"] = json!("00000000-0000-4000-8000-000000000000");
    let mut cases: Vec<(&str, String, &str, StatusCode, &str)> = bad_beacons(site, &pageview(site))
        .into_iter()
        .map(|c| (c.name, c.body, c.content_type, StatusCode::from_u16(c.status).unwrap(), c.reason))
        .collect();
    // Only the local server knows its sites; the edge answers 202 and the ingest rejects.
    cases.push(("unknown site", unknown_site.to_string(), "text/plain", StatusCode::NOT_FOUND, "unknown site"));
    for (name, body, content_type, status, reason) in cases {
        let response = post(&app, content_type, body).await;
        assert_eq!(response.status(), status, "{name}");
        let error: Value = response.json().await.unwrap_or_else(|e| panic!("{name}: no JSON error body: {e}"));
        let message = error["error"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{name}: {message}");
    }
    assert_eq!(app.count_events(site).await, 0);
}

#[tokio::test]
async fn an_inactive_site_is_refused() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    app.db.client().await.execute("UPDATE sites SET active = false WHERE id = $1", &[site.as_uuid()]).await.unwrap();
    let response = post(&app, "text/plain", pageview(site).to_string()).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count_events(site).await, 0);
}

/// Privacy invariants 1 and 2 for this path: the visitor hash is SHA-256 of
/// the day's salt, site, IP and UA, and neither the IP nor the UA (nor the
/// sensitive mailto address) appears anywhere in the database.
#[tokio::test]
async fn the_ip_and_user_agent_never_reach_storage() {
    let app = TestApp::spawn_with(AppConfig { client_ip: ClientIpMode::Proxy, ..AppConfig::default() }).await;
    let site = app.create_site().await;
    let ip = "203.0.113.187";
    let mut mailto = pageview(site);
    mailto["type"] = json!("mailto");
    mailto["target"] = json!("private.person@example.org");
    for body in [pageview(site), mailto] {
        let response = reqwest::Client::new()
            .post(app.url("/api/e"))
            .header("content-type", "text/plain")
            .header("user-agent", UA)
            // the visitor wrote the first entry; the trusted proxy appended the last
            .header("x-forwarded-for", format!("198.51.100.1, {ip}"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let dump = app.db.dump().await;
    assert!(dump.contains("pageview"), "the dump holds the events");
    for secret in [ip, "DistinctUA-7x3q", "Gecko/20100101", "private.person"] {
        assert!(!dump.contains(secret), "{secret} reached the database");
    }

    let client = app.db.client().await;
    let salt_row = client.query_one("SELECT salt FROM salts WHERE day = (now() AT TIME ZONE 'UTC')::date", &[]).await.unwrap();
    let salt = Salt::try_from(salt_row.get::<_, &[u8]>(0)).unwrap();
    let stored: i64 = client
        .query_one("SELECT visitor_hash FROM events WHERE site_id = $1 AND event_type = 'pageview'", &[site.as_uuid()])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, VisitorHash::daily(&salt, site, ip.parse().unwrap(), UA).as_i64());
    let sealed: Option<Vec<u8>> = client.query_one("SELECT sensitive FROM events WHERE event_type = 'mailto'", &[]).await.unwrap().get(0);
    assert!(sealed.is_some_and(|s| s.len() > 28), "the mailto address is stored encrypted");
}

#[tokio::test]
async fn same_visitor_same_hash_other_site_other_hash() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.create_site().await, app.create_site().await);
    for site in [a, a, b] {
        assert_eq!(post(&app, "text/plain", pageview(site).to_string()).await.status(), StatusCode::ACCEPTED);
    }
    let client = app.db.client().await;
    let hashes = |site: shared::SiteId| {
        let client = &client;
        async move {
            client
                .query("SELECT DISTINCT visitor_hash FROM events WHERE site_id = $1", &[site.as_uuid()])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i64>(0))
                .collect::<Vec<_>>()
        }
    };
    let (ha, hb) = (hashes(a).await, hashes(b).await);
    assert_eq!(ha.len(), 1, "one visitor on site a");
    assert_ne!(ha, hb);
}

#[tokio::test]
async fn the_tracker_is_served_with_an_etag() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::new();
    let first = client.get(app.url("/et.js")).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.headers()["content-type"].to_str().unwrap().starts_with("application/javascript"));
    assert!(first.headers()["cache-control"].to_str().unwrap().contains("max-age="));
    let etag = first.headers()["etag"].clone();
    assert!(first.text().await.unwrap().contains("/api/e"));
    let again = client.get(app.url("/et.js")).header("if-none-match", etag).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn cors_lets_any_site_post() {
    let app = TestApp::spawn().await;
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, app.url("/api/e"))
        .header("origin", "https://customer.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn health_and_unknown_routes_answer_json() {
    let app = TestApp::spawn().await;
    let health: Value = reqwest::get(app.url("/healthz")).await.unwrap().json().await.unwrap();
    assert_eq!(health["database"], "ok");
    let api = reqwest::get(app.url("/api/nope")).await.unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    assert_eq!(api.json::<Value>().await.unwrap()["error"], "no such API route");
    let hook = reqwest::Client::new().post(app.url("/webhooks/stripe")).send().await.unwrap();
    assert_eq!(hook.status(), StatusCode::NOT_FOUND);
    assert!(hook.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("stripe"));
}
