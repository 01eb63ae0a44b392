//! The whole production path on one machine: the scheduler Lambda binary
//! (under the Runtime API emulator) rotates the salts and publishes them to
//! the Cloudflare KV fake; what it published goes into the edge worker's
//! local KV (wrangler dev --local, workerd running edge-worker/build); the
//! worker's signed batches reach the ingest Lambda binary (under the
//! emulator) through a loopback bridge that plays API Gateway's HTTP API;
//! the ingest Lambda stores into PostgreSQL. Nothing leaves loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use engagetrack_server::AppConfig;
use engagetrack_server::edge_publish::CLOUDFLARE_API_TOKEN;
use engagetrack_tests::TestApp;
use engagetrack_tests::cloudflare_fake::FakeCloudflareKv;
use engagetrack_tests::lambda_emulator::{Function, HttpRequest, Lambda, database_url, scheduled_job};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::{Salt, VisitorHash};

use crate::edge_worker::{EdgeSetup, EdgeWorker};

const IP: &str = "203.0.113.87";
const UA_MARK: &str = "EdgeToLambdaUA-5v8q";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0 EdgeToLambdaUA-5v8q";
const SALTS_NS: &str = "ns-salts-e2e";
const SITES_NS: &str = "ns-sites-e2e";

/// What the bridge saw: each batch answer's status and body.
#[derive(Clone)]
struct Bridge {
    ingest: Arc<tokio::sync::Mutex<Lambda>>,
    answers: Arc<std::sync::Mutex<Vec<(u16, Value)>>>,
    requests: Arc<AtomicUsize>,
}

/// API Gateway's HTTP API in front of the ingest Lambda, on loopback: each
/// `POST /ingest/batch` becomes a payload 2.0 event (headers, the signature
/// ones included; the body base64-encoded when it is not text), and the
/// function's result becomes the HTTP answer.
async fn forward(State(bridge): State<Bridge>, headers: HeaderMap, body: Bytes) -> Response {
    bridge.requests.fetch_add(1, Ordering::SeqCst);
    let mut request = HttpRequest::new("POST", "/ingest/batch").source_ip("127.0.0.1");
    for (name, value) in &headers {
        if matches!(name.as_str(), "host" | "content-length" | "connection" | "transfer-encoding") {
            continue;
        }
        if let Ok(value) = value.to_str() {
            request = request.header(name.as_str(), value);
        }
    }
    request = match std::str::from_utf8(&body) {
        Ok(_) => request.body(body.to_vec()),
        Err(_) => request.body(body.to_vec()).base64(),
    };
    let answer = bridge.ingest.lock().await.http(&request).await;
    bridge.answers.lock().expect("answers").push((answer.status, serde_json::from_slice(&answer.body).unwrap_or(Value::Null)));
    let mut response = (AxumStatus::from_u16(answer.status).unwrap_or(AxumStatus::BAD_GATEWAY), answer.body).into_response();
    for (name, value) in &answer.headers {
        if matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection") {
            continue;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

async fn start_bridge(bridge: Bridge) -> SocketAddr {
    let router = axum::Router::new().route("/ingest/batch", axum::routing::post(forward)).with_state(bridge);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

fn salt_from_hex(text: &str) -> Salt {
    let bytes: [u8; 32] = hex::decode(text).expect("hex salt").try_into().expect("32-byte salt");
    Salt::from_bytes(bytes)
}

#[tokio::test]
async fn a_beacon_goes_worker_to_ingest_lambda_to_postgres_with_the_scheduler_lambdas_salt() {
    let fake = FakeCloudflareKv::start(&[SALTS_NS, SITES_NS]).await;
    // The TestApp gives the database (migrated) and the secrets file both
    // Lambdas read; its own HTTP server is not on the path.
    let app = TestApp::spawn_with_secrets(AppConfig::default(), &[(CLOUDFLARE_API_TOKEN, fake.token.as_bytes())]).await;
    let site = app.create_site().await;
    let env = |edge: bool| {
        let mut env = vec![
            ("DATABASE_URL", database_url(&app.db.config)),
            ("ENGAGETRACK_SECRETS_FILE", app.secrets_file().display().to_string()),
            ("RUST_LOG", "trace".into()),
        ];
        if edge {
            env.extend([
                ("ENGAGETRACK_CLOUDFLARE_API_URL", fake.api_url()),
                ("ENGAGETRACK_CF_ACCOUNT_ID", fake.account_id.clone()),
                ("ENGAGETRACK_KV_SALTS_NAMESPACE", SALTS_NS.into()),
                ("ENGAGETRACK_KV_SITES_NAMESPACE", SITES_NS.into()),
            ]);
        }
        env
    };

    // 1. The scheduler Lambda rotates and publishes today's and tomorrow's salt.
    let mut scheduler = Lambda::start(Function::Scheduler, &env(true)).await;
    let summary = scheduler.invoke_ok(&scheduled_job("rotate-salt")).await;
    let today = Utc::now().date_naive();
    let tomorrow = today.succ_opt().expect("tomorrow");
    assert_eq!(summary["edge"]["published"], json!([today, tomorrow]), "{summary}");
    assert_eq!(fake.auth_failures(), 0, "the bearer token is the hex-encoded cloudflare-api-token secret");
    let published = fake.entries(SALTS_NS);
    assert_eq!(published.keys().cloned().collect::<Vec<_>>(), [format!("salt:{today}"), format!("salt:{tomorrow}")]);

    // 2. The ingest Lambda behind the API Gateway bridge.
    let ingest = Lambda::start(Function::Ingest, &env(false)).await;
    let bridge = Bridge { ingest: Arc::new(tokio::sync::Mutex::new(ingest)), answers: Arc::default(), requests: Arc::default() };
    let bridge_addr = start_bridge(bridge.clone()).await;

    // 3. The worker, its SALTS KV holding exactly what the scheduler published.
    let worker = EdgeWorker::start_with(
        &format!("http://{bridge_addr}"),
        &hex::encode(app.edge_signing_key()),
        EdgeSetup { bulk: vec![("SALTS", fake.bulk_file(SALTS_NS))], ..EdgeSetup::default() },
    )
    .await;
    let beacon = json!({"site": site.to_string(), "type": "pageview", "url": "https://example.com/e2e?utm_source=news",
                        "referrer": "https://www.google.com/", "title": "E2E", "sid": "e2e-s3ss10n", "w": 1280, "h": 800});
    let r = reqwest::Client::new()
        .post(worker.url("/api/e"))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("user-agent", UA)
        .header("origin", "https://customer.example")
        .header("cf-connecting-ip", IP)
        .body(beacon.to_string())
        .send()
        .await
        .expect("beacon to the worker");
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.text().await);

    // 4. Exactly one row, once the worker has forwarded (and any stray retry landed).
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.count_events(site).await < 1 {
        assert!(
            Instant::now() < deadline,
            "no row within 30 s; bridge answers {:?}; worker log:\n{}",
            bridge.answers.lock().unwrap(),
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let client = app.db.client().await;
    let total: i64 = client.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get(0);
    assert_eq!(total, 1, "exactly one row; bridge answers {:?}", bridge.answers.lock().unwrap());
    let answers = bridge.answers.lock().unwrap().clone();
    assert!(bridge.requests.load(Ordering::SeqCst) >= 1);
    assert_eq!(answers[0], (200, json!({"stored": 1, "duplicates": 0, "rejected": 0, "over_quota": 0})), "the ingest Lambda's answer to the first batch");

    let row = client
        .query_one("SELECT ts, pathname, utm_source, browser, visitor_hash FROM events WHERE site_id = $1", &[site.as_uuid()])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>("pathname"), "/e2e");
    assert_eq!(row.get::<_, Option<&str>>("utm_source"), Some("news"));
    assert_eq!(row.get::<_, Option<&str>>("browser"), Some("Firefox"));
    // SHA-256(published salt | site | CF-Connecting-IP | UA) of the event's UTC day.
    let day: NaiveDate = row.get::<_, chrono::DateTime<Utc>>("ts").date_naive();
    let salt = salt_from_hex(&published[&format!("salt:{day}")].value);
    let expected = VisitorHash::daily(&salt, site, IP.parse().unwrap(), UA).as_i64();
    assert_eq!(row.get::<_, i64>("visitor_hash"), expected, "hashed with the salt the scheduler Lambda published");
    let server_salt = app.state.ingest.salts().salt_for(day, Utc::now()).await.unwrap();
    assert_eq!(server_salt.as_bytes(), salt.as_bytes(), "the edge's salt is the database's");

    // 5. Privacy invariant 1: the IP and the UA are nowhere.
    let dump = app.db.dump().await;
    assert!(dump.contains("/e2e"), "the dump holds the event");
    let ingest_logs = bridge.ingest.lock().await.logs();
    assert!(!ingest_logs.trim().is_empty(), "the ingest Lambda logged nothing");
    let places = [
        ("the database", dump),
        ("the worker's log", worker.log()),
        ("the scheduler Lambda's log", scheduler.logs()),
        ("the ingest Lambda's log", ingest_logs),
    ];
    for (place, text) in &places {
        for secret in [IP, UA_MARK, "Gecko/20100101"] {
            assert!(!text.contains(secret), "`{secret}` reached {place}");
        }
    }
}
