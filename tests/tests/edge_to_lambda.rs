//! The whole production path on one machine: the scheduler Lambda binary
//! (under the Runtime API emulator) rotates the salts and publishes them to
//! the Cloudflare KV fake; what it published goes into the edge worker's
//! local KV (wrangler dev --local, workerd running edge-worker/build); the
//! worker's signed batches reach the ingest Lambda binary (under the
//! emulator) through a loopback bridge that plays API Gateway's HTTP API;
//! the ingest Lambda stores into PostgreSQL. Nothing leaves loopback.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

const IP: &str = "203.0.113.87";
const UA_MARK: &str = "EdgeToLambdaUA-5v8q";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0 EdgeToLambdaUA-5v8q";
const SALTS_NS: &str = "ns-salts-e2e";
const SITES_NS: &str = "ns-sites-e2e";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The bundle and wrangler must be there: a missing bundle is a failure, not a skip.
fn wrangler() -> PathBuf {
    let build = repo().join("edge-worker/build");
    let has_wasm = std::fs::read_dir(&build)
        .map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "wasm")))
        .unwrap_or(false);
    assert!(
        build.join("index.js").is_file() && has_wasm,
        "the edge worker bundle is missing from {}: run scripts/build-worker.sh (./dev test does)",
        build.display()
    );
    let wrangler = repo().join("edge-worker/node_modules/.bin/wrangler");
    assert!(wrangler.is_file(), "wrangler is missing from edge-worker/node_modules: run scripts/build-worker.sh");
    wrangler
}

/// `wrangler dev --local` on 127.0.0.1 with infra/wrangler.local.toml, its
/// KV and queue state in a temporary directory; the process group ends on drop.
/// (A slim copy of tests/tests/edge_worker.rs's, which is private to that test.)
struct EdgeWorker {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl EdgeWorker {
    fn wrangler_command(dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(wrangler());
        command
            .current_dir(repo().join("edge-worker"))
            .args(args)
            .arg("--config")
            .arg(repo().join("infra/wrangler.local.toml"))
            .arg("--persist-to")
            .arg(dir.join("state"))
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("WRANGLER_LOG_PATH", dir.join("wrangler-logs"));
        command
    }

    /// `salts` is a `wrangler kv bulk put` file for the SALTS binding (what the fake holds).
    async fn start(ingest: &str, signing_key_hex: &str, salts: &Value) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("salts.json");
        std::fs::write(&file, salts.to_string()).expect("write bulk file");
        let out = Self::wrangler_command(dir.path(), &["kv", "bulk", "put", &file.display().to_string()])
            .args(["--binding", "SALTS", "--local"])
            .output()
            .expect("run wrangler kv bulk put");
        assert!(out.status.success(), "seeding SALTS failed: {}", String::from_utf8_lossy(&out.stderr));
        // The signing key is a secret: an env file, not a command-line var.
        let secrets = dir.path().join("secrets.env");
        std::fs::write(&secrets, format!("EDGE_SIGNING_KEY={signing_key_hex}\n")).expect("write secrets");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("wrangler.log")).expect("log file");
        let mut command = Self::wrangler_command(
            dir.path(),
            &["dev", "--local", "--ip", "127.0.0.1", "--show-interactive-dev-session=false"],
        );
        command
            .args(["--port", &port.to_string(), "--inspector-port", &free_port().to_string()])
            .args(["--var", &format!("INGEST_URL:{ingest}")])
            .arg("--env-file")
            .arg(&secrets)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("start wrangler dev");
        let mut worker = Self { child, port, dir };
        worker.wait_ready().await;
        worker
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!("wrangler dev exited ({status}) before serving:\n{}", self.log());
            }
            if let Ok(r) = client.get(self.url("/et.js")).timeout(Duration::from_secs(5)).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(Instant::now() < deadline, "wrangler dev did not serve within 90 s:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(self.dir.path().join("wrangler.log")).and_then(|mut f| f.read_to_string(&mut text));
        text
    }
}

impl Drop for EdgeWorker {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

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
    bridge
        .answers
        .lock()
        .expect("answers")
        .push((answer.status, serde_json::from_slice(&answer.body).unwrap_or(Value::Null)));
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
    let bridge = Bridge {
        ingest: Arc::new(tokio::sync::Mutex::new(ingest)),
        answers: Arc::default(),
        requests: Arc::default(),
    };
    let bridge_addr = start_bridge(bridge.clone()).await;

    // 3. The worker, its SALTS KV holding exactly what the scheduler published.
    let worker = EdgeWorker::start(
        &format!("http://{bridge_addr}"),
        &hex::encode(app.edge_signing_key()),
        &fake.bulk_file(SALTS_NS),
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
    assert_eq!(answers[0], (200, json!({"stored": 1, "duplicates": 0, "rejected": 0})), "the ingest Lambda's answer to the first batch");

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
