//! The four Lambda binaries run as Lambdas: each under the Runtime API
//! emulator of `engagetrack_tests::lambda_emulator` on loopback, driven with
//! API Gateway HTTP API (payload 2.0) events and EventBridge Scheduler
//! inputs, against a real PostgreSQL. Their answers must equal the local
//! router's for the same request, on the same database and secrets.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use engagetrack_server::jobs::Job;
use engagetrack_tests::lambda_emulator::{Function, HttpAnswer, HttpRequest, Lambda, Outcome, database_url, scheduled_job, send_local};
use engagetrack_tests::{TestApp, TestDb};
use serde_json::{Value, json};
use shared::batch::{self, Batch, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use shared::{EventId, Pipeline, Processed, Salt, SiteId, Visit};

const VISITOR_IP: &str = "203.0.113.147";
const SPOOFED_IP: &str = "192.0.2.201";
const VISITOR_UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0 LambdaDistinctUA-7q3z";

/// A function beside `app`: its database and its secret store. `RUST_LOG`
/// at its most verbose, so the log checks see everything a library might say.
async fn lambda_for(app: &TestApp, function: Function) -> Lambda {
    Lambda::start(
        function,
        &[
            ("DATABASE_URL", database_url(&app.db.config)),
            ("ENGAGETRACK_SECRETS_FILE", app.secrets_file().display().to_string()),
            ("RUST_LOG", "trace".into()),
        ],
    )
    .await
}

fn beacon(site: SiteId, path: &str) -> String {
    json!({"site": site.to_string(), "type": "pageview", "url": format!("https://example.com{path}"), "sid": "lambda-session", "referrer": ""})
        .to_string()
}

fn beacon_request(site: SiteId, path: &str) -> HttpRequest {
    HttpRequest::new("POST", "/api/e")
        .header("content-type", "text/plain;charset=UTF-8")
        .header("user-agent", VISITOR_UA)
        .header("origin", "https://example.com")
        .body(beacon(site, path))
        .source_ip(VISITOR_IP)
}

/// Every line a function wrote is one JSON object (CloudWatch's JSON log
/// format), and none holds the visitor's address or User-Agent.
fn assert_json_logs_without_visitor(lambda: &Lambda) {
    let logs = lambda.logs();
    assert!(!logs.trim().is_empty(), "{} logged nothing", lambda.function.binary());
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(entry["level"].is_string(), "no level in {line}");
    }
    for secret in [VISITOR_IP, SPOOFED_IP, VISITOR_UA, "LambdaDistinctUA"] {
        assert!(!logs.contains(secret), "{} logged `{secret}`:\n{logs}", lambda.function.binary());
    }
}

#[tokio::test]
async fn healthz_and_the_tracker_answer_as_the_local_binary() {
    let app = TestApp::spawn().await;
    let local = send_local(&app.url(""), &HttpRequest::new("GET", "/healthz")).await;
    assert_eq!(local.json(), json!({"status": "ok", "database": "ok"}));
    for function in [Function::Ingest, Function::Api, Function::Webhooks] {
        let mut lambda = lambda_for(&app, function).await;
        let answer = lambda.http(&HttpRequest::new("GET", "/healthz")).await;
        assert_eq!(answer.visible(), local.visible(), "{function:?}");
        assert_json_logs_without_visitor(&lambda);
    }
    // The tracker: text, so API Gateway gets it as text, with the same validator.
    let mut ingest = lambda_for(&app, Function::Ingest).await;
    let script = HttpRequest::new("GET", "/et.js");
    let (lambda, local) = (ingest.http(&script).await, send_local(&app.url(""), &script).await);
    assert_eq!(lambda.visible(), local.visible());
    assert_eq!(lambda.headers.get("etag"), local.headers.get("etag"));
    let etag = local.headers["etag"].clone();
    let again = ingest.http(&script.clone().header("if-none-match", &etag)).await;
    assert_eq!(again.status, 304);
}

#[tokio::test]
async fn a_beacon_through_the_ingest_lambda_is_stored_once_and_no_ip_is_kept_or_logged() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let mut ingest = lambda_for(&app, Function::Ingest).await;
    let answer = ingest.http(&beacon_request(site, "/pricing")).await;
    // The local binary's answer to the same beacon, on another site of the same database.
    let other = app.create_site().await;
    let local = send_local(&app.url(""), &beacon_request(other, "/pricing").header("x-forwarded-for", VISITOR_IP)).await;
    assert_eq!((answer.status, answer.body.clone()), (local.status, local.body.clone()));
    assert_eq!(answer.status, 202);
    assert_eq!(app.count_events(site).await, 1, "one beacon, one row");
    let row = app.db.client().await.query_one("SELECT pathname, browser FROM events WHERE site_id = $1", &[site.as_uuid()]).await.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, Option<String>>(1)), ("/pricing".to_owned(), Some("Firefox".to_owned())));
    let dump = app.db.dump().await;
    assert!(!dump.contains(VISITOR_IP) && !dump.contains("LambdaDistinctUA"), "the address or UA reached storage");
    // Bad input is a 4xx with the local answer's reason, never a function error.
    for (name, request) in [
        ("not JSON", beacon_request(site, "/").body("{\"site\":")),
        ("form", beacon_request(site, "/").header("content-type", "application/x-www-form-urlencoded")),
    ] {
        let (lambda, local) = (ingest.http(&request).await, send_local(&app.url(""), &request).await);
        assert!((400..500).contains(&lambda.status), "{name}: {}", lambda.status);
        assert_eq!(lambda.visible(), local.visible(), "{name}");
    }
    assert_eq!(app.count_events(site).await, 1);
    assert_json_logs_without_visitor(&ingest);
}

#[tokio::test]
async fn a_spoofed_forwarded_for_does_not_change_the_visitor_hash() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let mut ingest = lambda_for(&app, Function::Ingest).await;
    let sends = [
        ("/a", None, VISITOR_IP),
        ("/b", Some(SPOOFED_IP), VISITOR_IP),
        ("/c", Some("198.51.100.77, 198.51.100.78"), VISITOR_IP),
        ("/d", Some(SPOOFED_IP), "203.0.113.148"),
    ];
    for (path, forwarded, source) in sends {
        let mut request = beacon_request(site, path).source_ip(source);
        if let Some(f) = forwarded {
            request = request.header("x-forwarded-for", f);
        }
        assert_eq!(ingest.http(&request).await.status, 202, "{path}");
    }
    let rows = app
        .db
        .client()
        .await
        .query("SELECT pathname, visitor_hash FROM events WHERE site_id = $1 ORDER BY pathname", &[site.as_uuid()])
        .await
        .unwrap();
    let hashes: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(hashes.len(), 4);
    assert_eq!((hashes[0], hashes[0]), (hashes[1], hashes[2]), "X-Forwarded-For changed the visitor");
    assert_ne!(hashes[0], hashes[3], "another sourceIp is another visitor");
    assert_json_logs_without_visitor(&ingest);
}

fn batch_of(site: SiteId, n: u8, at: DateTime<Utc>) -> Batch {
    let pipeline = Pipeline::default();
    let salt = Salt::from_bytes([7; 32]);
    let events = (0..n)
        .map(|i| {
            let body = beacon(site, &format!("/p{i}"));
            let visit = Visit { ip: "192.0.2.44".parse().unwrap(), user_agent: VISITOR_UA };
            let mut random = [5u8; 10];
            random[9] = i;
            match pipeline.process(body.as_bytes(), visit, &salt, EventId::new(at + Duration::seconds(i.into()), random)).unwrap() {
                Processed::Event(e) => *e,
                Processed::Bot(r) => panic!("{r}"),
            }
        })
        .collect();
    Batch { events }
}

fn signed_batch(key: &[u8], body: &[u8]) -> HttpRequest {
    let now = Utc::now().timestamp();
    HttpRequest::new("POST", "/ingest/batch")
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, &now.to_string())
        .header(SIGNATURE_HEADER, &batch::sign(key, now, body))
        .body(body.to_vec())
}

#[tokio::test]
async fn a_signed_batch_through_the_ingest_lambda_is_stored_once() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let body = serde_json::to_vec(&batch_of(site, 12, Utc::now())).unwrap();
    let mut ingest = lambda_for(&app, Function::Ingest).await;
    // API Gateway may hand the body over base64-encoded; the signature is over the bytes.
    let first = ingest.http(&signed_batch(&app.edge_signing_key(), &body).base64()).await;
    assert_eq!((first.status, first.json()), (200, json!({"stored": 12, "duplicates": 0, "rejected": 0, "over_quota": 0})));
    let replay = signed_batch(&app.edge_signing_key(), &body);
    let (lambda, local) = (ingest.http(&replay).await, send_local(&app.url(""), &replay).await);
    assert_eq!(lambda.json(), json!({"stored": 0, "duplicates": 12, "rejected": 0, "over_quota": 0}));
    assert_eq!(lambda.visible(), local.visible());
    assert_eq!(app.count_events(site).await, 12);
    for (name, request) in
        [("forged", signed_batch(b"not the key", &body)), ("unsigned", HttpRequest::new("POST", "/ingest/batch").body(body.clone()))]
    {
        let (lambda, local) = (ingest.http(&request).await, send_local(&app.url(""), &request).await);
        assert_eq!(lambda.status, 401, "{name}");
        assert_eq!(lambda.visible(), local.visible(), "{name}");
    }
    assert_eq!(app.count_events(site).await, 12);
}

#[tokio::test]
async fn the_api_lambda_answers_as_the_local_router() {
    let app = TestApp::spawn().await;
    let user = app.sign_up_verified("lambda.owner@example.com").await;
    let mut api = lambda_for(&app, Function::Api).await;
    let cases = [
        ("no token", HttpRequest::new("GET", "/api/me")),
        ("bad token", HttpRequest::new("GET", "/api/me").header("authorization", "Bearer not-a-token")),
        ("signed in", HttpRequest::new("GET", "/api/me").header("authorization", &format!("Bearer {}", user.access_token))),
        ("unknown route", HttpRequest::new("GET", "/api/no-such-thing?x=1")),
        ("providers", HttpRequest::new("GET", "/api/auth/providers")),
    ];
    for (name, request) in cases {
        let (lambda, local) = (api.http(&request).await, send_local(&app.url(""), &request).await);
        assert_eq!(lambda.visible(), local.visible(), "{name}");
        if name == "no token" {
            assert_eq!(lambda.status, 401);
            assert!(lambda.json()["error"].is_string(), "{:?}", lambda.json());
        }
        if name == "signed in" {
            assert_eq!(lambda.json()["email"], "lambda.owner@example.com");
        }
    }
    // A failed sign-in from the visitor's address: a 401, rate-limited by
    // the keyed hash of sourceIp, which is never stored or logged as is.
    let login = HttpRequest::new("POST", "/api/auth/login")
        .header("content-type", "application/json")
        .header("user-agent", VISITOR_UA)
        .body(json!({"email": user.email, "password": "wrong-password-123"}).to_string())
        .source_ip(VISITOR_IP);
    let (lambda, local) = (api.http(&login).await, send_local(&app.url(""), &login).await);
    assert_eq!(lambda.visible(), local.visible());
    assert_eq!(lambda.status, 401);
    assert!(!app.db.dump().await.contains(VISITOR_IP));
    assert_json_logs_without_visitor(&api);
}

#[tokio::test]
async fn the_webhooks_lambda_answers_as_the_local_router() {
    let app = TestApp::spawn().await;
    let mut webhooks = lambda_for(&app, Function::Webhooks).await;
    for provider in ["stripe", "paddle", "lemonsqueezy", "polar"] {
        let delivery = HttpRequest::new("POST", &format!("/webhooks/{provider}"))
            .header("content-type", "application/json")
            .header("stripe-signature", "t=1,v1=00")
            .body(r#"{"id":"evt_1","type":"customer.subscription.updated"}"#);
        let (lambda, local) = (webhooks.http(&delivery).await, send_local(&app.url(""), &delivery).await);
        assert_eq!(lambda.visible(), local.visible(), "{provider}");
        assert!((400..500).contains(&lambda.status), "{provider}: {}", lambda.status);
    }
    assert_json_logs_without_visitor(&webhooks);
}

/// Two databases in the same state (the same site id too): the scheduler
/// Lambda runs each job on one, the local job runner on the other, and the
/// summaries and what they left in the database must be equal.
const SEEDED_SITE: u128 = 0x0193_0000_0000_7000_8000_0000_0000_5173;

async fn seeded_app(now: DateTime<Utc>) -> TestApp {
    let app = TestApp::spawn().await;
    let client = app.db.client().await;
    let (org, site) = (uuid::Uuid::from_u128(SEEDED_SITE + 1), uuid::Uuid::from_u128(SEEDED_SITE));
    client.execute("INSERT INTO organizations (id, name, slug) VALUES ($1, 'Seeded', 'seeded')", &[&org]).await.unwrap();
    client
        .execute(
            "INSERT INTO sites (id, organization_id, domain, name, retention_days) VALUES ($1, $2, 'example.com', 'Example', 30)",
            &[&site, &org],
        )
        .await
        .unwrap();
    // A salt whose day is long over (rotation destroys it), and events of
    // yesterday (the rollup) and of three months ago (retention purges them).
    client
        .execute("INSERT INTO salts (day, salt) VALUES ($1, $2)", &[&(now.date_naive() - Duration::days(5)), &vec![1u8; 32]])
        .await
        .unwrap();
    let site = SiteId::from_uuid(site);
    let yesterday = (now - Duration::days(1)).date_naive().and_hms_opt(12, 0, 0).unwrap().and_utc();
    let mut batch = batch_of(site, 6, yesterday);
    batch.events.extend(batch_of(site, 3, now - Duration::days(90)).events);
    let outcome = app.state.ingest.accept_batch(batch).await.unwrap();
    assert_eq!(outcome.stored, 9);
    app
}

async fn rollups(app: &TestApp) -> Vec<String> {
    let rows = app
        .db
        .client()
        .await
        .query("SELECT (to_jsonb(d) - 'rolled_up_at')::text FROM daily_rollups d ORDER BY day, dimension, value", &[])
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn scheduler_jobs_give_the_local_results() {
    let now = Utc::now();
    let (lambda_app, local_app) = (seeded_app(now).await, seeded_app(now).await);
    let mut scheduler = lambda_for(&lambda_app, Function::Scheduler).await;
    for job in [Job::RotateSalt, Job::Rollup, Job::Retention] {
        let from_lambda = scheduler.invoke_ok(&scheduled_job(job.name())).await;
        let local = job.run(&local_app.state, Utc::now()).await.unwrap();
        assert_eq!(from_lambda, local, "{}", job.name());
    }
    let site = SiteId::from_uuid(uuid::Uuid::from_u128(SEEDED_SITE));
    for app in [&lambda_app, &local_app] {
        let client = app.db.client().await;
        let salt_days: BTreeSet<chrono::NaiveDate> =
            client.query("SELECT day FROM salts", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        assert!(salt_days.contains(&now.date_naive()) && salt_days.contains(&(now.date_naive() + Duration::days(1))));
        assert!(!salt_days.contains(&(now.date_naive() - Duration::days(5))), "the old salt outlived rotation");
        assert_eq!(app.count_events(site).await, 6, "retention kept yesterday and purged the old events");
    }
    let rolled = rollups(&lambda_app).await;
    assert!(rolled.iter().any(|r| r.contains(&(now - Duration::days(1)).date_naive().to_string())), "yesterday was rolled up");
    assert_eq!(rolled, rollups(&local_app).await);
    // An unknown job and a malformed input are function errors, reported
    // through /error, and the function keeps serving.
    match scheduler.invoke(&scheduled_job("defragment")).await.unwrap() {
        Outcome::Error { body, .. } => {
            assert!(body["errorMessage"].as_str().unwrap_or_default().contains("unknown job `defragment`"), "{body}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(scheduler.invoke(&json!({"schedule": "nightly"})).await.unwrap(), Outcome::Error { .. }));
    let again = scheduler.invoke_ok(&scheduled_job("rotate-salt")).await;
    // No edge is configured here: nothing published, nothing deleted.
    assert_eq!(again, json!({"job": "rotate-salt", "destroyed_salt_days": [], "edge": {"published": [], "deleted": []}}));
    assert_json_logs_without_visitor(&scheduler);
}

async fn connections_to(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

async fn has_migrations(db: &TestDb) -> bool {
    db.client().await.query_one("SELECT to_regclass('public.refinery_schema_history') IS NOT NULL", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_cold_start_runs_no_migrations_and_migrate_is_a_deploy_step() {
    let db = TestDb::create().await;
    let secrets = tempfile::tempdir().unwrap();
    let env = [
        ("DATABASE_URL", database_url(&db.config)),
        ("ENGAGETRACK_SECRETS_FILE", secrets.path().join("secrets.json").display().to_string()),
    ];
    let mut ingest = Lambda::start(Function::Ingest, &env).await;
    for _ in 0..5 {
        assert_eq!(ingest.http(&HttpRequest::new("GET", "/healthz")).await.status, 200);
    }
    assert!(!has_migrations(&db).await, "a cold start or a request ran migrations");
    assert!(connections_to(&db).await <= 2, "a Lambda keeps at most two connections");
    let mut scheduler = Lambda::start(Function::Scheduler, &env).await;
    let first = scheduler.invoke_ok(&scheduled_job("migrate")).await;
    assert_eq!(first["job"], "migrate");
    assert!(!first["applied"].as_array().unwrap().is_empty(), "{first}");
    assert!(has_migrations(&db).await);
    assert_eq!(scheduler.invoke_ok(&scheduled_job("migrate")).await, json!({"job": "migrate", "applied": []}));
    // The ingest function needed no restart to see the schema.
    let site = uuid::Uuid::new_v4();
    let answer = ingest.http(&beacon_request(SiteId::from_uuid(site), "/")).await;
    assert_eq!(answer.status, 404, "an unknown site, now that there is a sites table: {:?}", answer.visible());
}

#[tokio::test]
async fn a_function_that_cannot_start_says_why() {
    let mut ingest = Lambda::start(Function::Ingest, &[]).await;
    match ingest.invoke(&HttpRequest::new("GET", "/healthz").event()).await {
        Err(engagetrack_tests::lambda_emulator::InvokeError::Exited { logs, .. }) => {
            assert!(logs.contains("DATABASE_URL is not set"), "{logs}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn api_gateway_answers_decode_like_the_local_ones() {
    // The emulator's own decoding: a base64 result and multi-value headers.
    let result = json!({"statusCode": 201, "headers": {"Content-Type": "application/octet-stream"},
                        "multiValueHeaders": {"set-cookie": ["a=1", "b=2"]}, "body": "AAEC", "isBase64Encoded": true});
    let answer = HttpAnswer::from_result(&result);
    assert_eq!((answer.status, answer.body.as_slice()), (201, &[0u8, 1, 2][..]));
    assert_eq!(answer.headers["set-cookie"], "a=1, b=2");
    assert_eq!(answer.content_type.as_deref(), Some("application/octet-stream"));
}
