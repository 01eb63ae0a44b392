//! `GET /metrics`: Prometheus text, only for the holder of the metrics token,
//! and its ingest counters follow what really happened to each beacon.
//! One test in this file: the registry is the process's, so counts are deltas.

use engagetrack_server::stats;
use engagetrack_tests::TestApp;
use reqwest::StatusCode;
use serde_json::json;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0";

/// The value of the sample line that starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

async fn scrape(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(app.url("/metrics"));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    request.send().await.expect("scrape")
}

async fn beacon(app: &TestApp, body: serde_json::Value, ua: &str) -> StatusCode {
    reqwest::Client::new()
        .post(app.url("/api/e"))
        .header("content-type", "text/plain")
        .header("user-agent", ua)
        .body(body.to_string())
        .send()
        .await
        .expect("beacon")
        .status()
}

#[tokio::test]
async fn metrics_need_the_token_and_count_each_outcome() {
    let app = TestApp::spawn().await;
    let token = hex::encode(app.state.keys.current().metrics_token.as_deref().expect("the local secrets file makes a metrics token"));

    let anonymous = scrape(&app, None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.text().await.unwrap().contains("Bearer"));
    assert_eq!(scrape(&app, Some("0000")).await.status(), StatusCode::UNAUTHORIZED);
    let wrong_same_length = "f".repeat(token.len());
    assert_eq!(scrape(&app, Some(&wrong_same_length)).await.status(), StatusCode::UNAUTHORIZED);

    let before = scrape(&app, Some(&token)).await;
    assert_eq!(before.status(), StatusCode::OK);
    assert!(before.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let before = before.text().await.unwrap();

    let site = app.create_site().await;
    let pageview = json!({"site": site.to_string(), "type": "pageview", "url": "https://example.com/a", "sid": "m3tr1cs-s1d"});
    assert_eq!(beacon(&app, pageview.clone(), UA).await, StatusCode::ACCEPTED);
    assert_eq!(beacon(&app, pageview.clone(), UA).await, StatusCode::ACCEPTED);
    assert_eq!(beacon(&app, pageview.clone(), "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)").await, StatusCode::ACCEPTED);
    let unknown = json!({"site": uuid::Uuid::new_v4().to_string(), "type": "pageview", "url": "https://example.com/", "sid": "m3tr1cs-s1d"});
    assert_eq!(beacon(&app, unknown, UA).await, StatusCode::NOT_FOUND);
    assert_eq!(beacon(&app, json!({"site": 1}), UA).await, StatusCode::BAD_REQUEST);
    assert_eq!(app.count_events(site).await, 2);
    let stats_site = stats::StatsSite { id: site, timezone: "UTC".into() };
    let request = stats::QueryRequest::from_json(br#"{"site_id": "example.com", "metrics": ["visitors"], "date_range": "day"}"#).unwrap();
    stats::query(&app.state.pool, &stats_site, request, chrono::Utc::now()).await.expect("stats query");

    let after = scrape(&app, Some(&token)).await.text().await.unwrap();
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(delta(r#"engagetrack_ingest_events_total{path="beacon",outcome="stored",reason=""}"#), 2.0, "{after}");
    assert_eq!(delta(r#"engagetrack_ingest_events_total{path="beacon",outcome="bot",reason=""}"#), 1.0, "{after}");
    assert_eq!(delta(r#"engagetrack_ingest_events_total{path="beacon",outcome="refused",reason="unknown_site"}"#), 1.0, "{after}");
    assert_eq!(delta(r#"engagetrack_ingest_events_total{path="beacon",outcome="refused",reason="invalid"}"#), 1.0, "{after}");
    assert!(delta("engagetrack_ingest_commit_seconds_count") >= 1.0, "{after}");
    assert!(after.contains("engagetrack_ingest_queue_depth 0"), "{after}");
    assert!(after.contains("engagetrack_mail_outbox_messages"), "{after}");
    assert_eq!(delta(r#"engagetrack_stats_query_seconds_count{kind="query"}"#), 1.0, "{after}");
    // The exposition names no address and no User-Agent.
    assert!(!after.contains("Googlebot") && !after.contains("127.0.0.1"), "{after}");
}
