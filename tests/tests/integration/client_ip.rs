//! Client address topology (`ENGAGETRACK_CLIENT_IP`), end to end through
//! `/api/e` into PostgreSQL: in each mode the visitor hash is made from the
//! address that mode believes, and a visitor's own `X-Forwarded-For` (or
//! `CF-Connecting-IP` where no Cloudflare stands in front) changes nothing.
//! The api-gateway mode is driven with a real API Gateway HTTP API v2 payload
//! through `lambda_http`'s own decoding and the ingest Lambda's router.

use chrono::Utc;
use engagetrack_server::AppConfig;
use engagetrack_server::client_ip::ClientIpMode;
use engagetrack_tests::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::{SiteId, VisitorHash};
use tower::ServiceExt;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0 ClientIpUA-4t8p";

fn pageview(site: SiteId) -> Value {
    json!({"site": site.to_string(), "type": "pageview", "url": "https://example.com/ip", "sid": "ip-s3ss10n"})
}

async fn app(mode: ClientIpMode) -> (TestApp, SiteId) {
    let app = TestApp::spawn_with(AppConfig { client_ip: mode, ..AppConfig::default() }).await;
    let site = app.create_site().await;
    (app, site)
}

async fn post(app: &TestApp, site: SiteId, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(app.url("/api/e")).header("content-type", "text/plain").header("user-agent", UA);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(pageview(site).to_string()).send().await.expect("post")
}

/// The visitor hash the server must have stored for a visit from `ip` today.
async fn expected_hash(app: &TestApp, site: SiteId, ip: &str) -> i64 {
    let salt = app.state.ingest.salts().salt_for(Utc::now().date_naive(), Utc::now()).await.expect("salt");
    VisitorHash::daily(&salt, site, ip.parse().expect("ip"), UA).as_i64()
}

/// Waits for `n` stored events (the local path commits in groups) and returns their hashes.
async fn stored_hashes(app: &TestApp, site: SiteId, n: usize) -> Vec<i64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let client = app.db.client().await;
        let rows = client.query("SELECT visitor_hash FROM events WHERE site_id = $1", &[site.as_uuid()]).await.expect("query");
        if rows.len() >= n || std::time::Instant::now() > deadline {
            return rows.iter().map(|r| r.get(0)).collect();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Headers a visitor can send to pretend to be someone else.
const SPOOFS: [&[(&str, &str)]; 3] = [
    &[],
    &[("x-forwarded-for", "198.51.100.11")],
    &[("x-forwarded-for", "198.51.100.12, 198.51.100.13"), ("cf-connecting-ip", "198.51.100.14")],
];

#[tokio::test]
async fn socket_mode_hashes_the_tcp_peer_whatever_the_headers_say() {
    let (app, site) = app(ClientIpMode::Socket).await;
    for spoof in SPOOFS {
        assert_eq!(post(&app, site, spoof).await.status(), StatusCode::ACCEPTED);
    }
    let want = expected_hash(&app, site, "127.0.0.1").await;
    assert_eq!(stored_hashes(&app, site, 3).await, [want; 3]);
}

#[tokio::test]
async fn proxy_mode_hashes_the_hop_our_proxy_appended_not_the_visitors_entries() {
    let (app, site) = app(ClientIpMode::Proxy).await;
    // What a trusted proxy forwards: whatever the visitor sent, then the peer it saw.
    for forwarded in ["203.0.113.10", "198.51.100.11, 203.0.113.10", "198.51.100.12, 10.0.0.9, 203.0.113.10"] {
        let r = post(&app, site, &[("x-forwarded-for", forwarded), ("cf-connecting-ip", "198.51.100.14")]).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let want = expected_hash(&app, site, "203.0.113.10").await;
    assert_eq!(stored_hashes(&app, site, 3).await, [want; 3]);
    let r = post(&app, site, &[("x-forwarded-for", "203.0.113.10, garbage")]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("X-Forwarded-For"));
}

#[tokio::test]
async fn cloudflare_mode_hashes_cf_connecting_ip_only() {
    let (app, site) = app(ClientIpMode::Cloudflare).await;
    for xff in [None, Some("198.51.100.11"), Some("198.51.100.12, 203.0.113.99")] {
        let mut headers = vec![("cf-connecting-ip", "203.0.113.20")];
        headers.extend(xff.map(|v| ("x-forwarded-for", v)));
        assert_eq!(post(&app, site, &headers).await.status(), StatusCode::ACCEPTED);
    }
    let want = expected_hash(&app, site, "203.0.113.20").await;
    assert_eq!(stored_hashes(&app, site, 3).await, [want; 3]);
    // Without the header the request did not come through Cloudflare: refused, with the reason.
    let r = post(&app, site, &[("x-forwarded-for", "203.0.113.20")]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("no CF-Connecting-IP header"));
}

/// An API Gateway HTTP API (payload 2.0) event, as the Lambda runtime hands it over.
fn gateway_event(site: SiteId, source_ip: Option<&str>) -> String {
    let mut http = json!({"method": "POST", "path": "/api/e", "protocol": "HTTP/1.1", "userAgent": UA});
    if let Some(ip) = source_ip {
        http["sourceIp"] = json!(ip);
    }
    json!({
        "version": "2.0",
        "routeKey": "POST /api/e",
        "rawPath": "/api/e",
        "rawQueryString": "",
        "headers": {
            "content-type": "text/plain",
            "user-agent": UA,
            // the visitor's own attempt, and what API Gateway itself appends
            "x-forwarded-for": format!("198.51.100.31, {}", source_ip.unwrap_or("198.51.100.32")),
            "cf-connecting-ip": "198.51.100.33",
            "host": "ingest.example"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api1",
            "domainName": "ingest.example",
            "domainPrefix": "ingest",
            "http": http,
            "requestId": "req-1",
            "routeKey": "POST /api/e",
            "stage": "$default",
            "time": "02/Dec/2026:12:00:00 +0000",
            "timeEpoch": 1_796_212_800_000u64
        },
        "body": pageview(site).to_string(),
        "isBase64Encoded": false
    })
    .to_string()
}

async fn through_the_lambda_router(app: &TestApp, event: &str) -> (StatusCode, String) {
    let request = lambda_http::request::from_str(event).expect("an API Gateway v2 event");
    let (parts, body) = request.into_parts();
    let request = axum::http::Request::from_parts(parts, axum::body::Body::from(body.to_vec()));
    let response = engagetrack_server::routes::ingest(app.state.clone()).oneshot(request).await.expect("router");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn api_gateway_mode_hashes_the_request_context_source_ip() {
    let (app, site) = app(ClientIpMode::ApiGateway).await;
    let (status, body) = through_the_lambda_router(&app, &gateway_event(site, Some("203.0.113.40"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let want = expected_hash(&app, site, "203.0.113.40").await;
    assert_eq!(stored_hashes(&app, site, 1).await, [want]);

    let (status, body) = through_the_lambda_router(&app, &gateway_event(site, None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("sourceIp"), "{body}");
    // Over plain HTTP (no request context) the mode refuses too: nothing else is believed.
    let r = post(&app, site, &[("x-forwarded-for", "203.0.113.40")]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(stored_hashes(&app, site, 1).await.len(), 1);
}
