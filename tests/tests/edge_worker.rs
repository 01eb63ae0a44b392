//! The real edge worker (Rust → wasm32, built by `scripts/build-worker.sh`)
//! under wrangler dev in local mode (workerd, KV and Queues simulated on
//! disk) on loopback, forwarding signed batches to a real `TestApp` and its
//! PostgreSQL. Nothing leaves the machine.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use engagetrack_tests::{TestApp, bad_beacons};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::{Salt, SiteId, VisitorHash};

const IP: &str = "203.0.113.219";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0 EdgeDistinctUA-9k2w";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const HEADLESS: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/142.0.0.0 Safari/537.36";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bundle and the tools must be there: a missing bundle is a failure, not a skip.
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
    assert!(
        wrangler.is_file(),
        "wrangler is missing from edge-worker/node_modules: run scripts/build-worker.sh (it installs the worker's npm tools)"
    );
    wrangler
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `wrangler dev --local` serving edge-worker/build on 127.0.0.1, its KV and
/// queue state in a temporary directory; the whole process group is ended on drop.
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

    /// `salts` are `(UTC day, salt)` put into the local SALTS namespace before the worker starts.
    async fn start(ingest: &str, signing_key_hex: &str, salts: &[(chrono::NaiveDate, &Salt)]) -> Self {
        Self::start_with_geo(ingest, signing_key_hex, salts, None).await
    }

    /// As [`EdgeWorker::start`], with a geo database put into the GEO namespace as `mmdb:0`.
    async fn start_with_geo(ingest: &str, signing_key_hex: &str, salts: &[(chrono::NaiveDate, &Salt)], geo: Option<&Path>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(file) = geo {
            let path = format!("--path={}", file.display());
            let out = Self::wrangler_command(dir.path(), &["kv", "key", "put", "mmdb:0", &path])
                .args(["--binding", "GEO", "--local"])
                .output()
                .expect("run wrangler kv key put");
            assert!(out.status.success(), "seeding GEO failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        for (day, salt) in salts {
            let key = format!("salt:{}", day.format("%Y-%m-%d"));
            let out = Self::wrangler_command(dir.path(), &["kv", "key", "put", &key, &hex(salt.as_bytes())])
                .args(["--binding", "SALTS", "--local"])
                .output()
                .expect("run wrangler kv key put");
            assert!(out.status.success(), "seeding {key} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
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
            if let Ok(r) = client.get(self.url("/et.js")).timeout(Duration::from_secs(5)).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
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

    async fn post(&self, content_type: &str, user_agent: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.post_from(IP, content_type, user_agent, body).await
    }

    async fn post_from(&self, ip: &str, content_type: &str, user_agent: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url("/api/e"))
            .header("content-type", content_type)
            .header("user-agent", user_agent)
            .header("origin", "https://customer.example")
            .header("cf-connecting-ip", ip)
            .body(body)
            .send()
            .await
            .expect("request to the worker")
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

fn pageview(site: SiteId) -> Value {
    json!({"site": site.to_string(), "type": "pageview", "url": "https://example.com/edge?utm_source=news",
           "referrer": "https://www.google.com/", "title": "Edge", "sid": "edge-s3ss10n", "w": 1280, "h": 800})
}

fn random_salt() -> Salt {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    Salt::from_bytes(bytes)
}

/// Today's and tomorrow's salt, so a run across midnight UTC still finds one.
fn days() -> [chrono::NaiveDate; 2] {
    let today = Utc::now().date_naive();
    [today, today.succ_opt().expect("tomorrow")]
}

async fn wait_for_events(app: &TestApp, site: SiteId, want: i64, worker: &EdgeWorker) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = app.count_events(site).await;
        if n >= want {
            return;
        }
        assert!(Instant::now() < deadline, "{n} of {want} events reached PostgreSQL within 30 s; worker log:\n{}", worker.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn beacons_go_through_the_wasm_worker_into_postgres_exactly_once() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let salt = random_salt();
    let [today, tomorrow] = days();
    let worker =
        EdgeWorker::start(&app.url(""), &hex(&app.edge_signing_key()), &[(today, &salt), (tomorrow, &salt)]).await;

    // The tracker, with a strong ETag and a long cache.
    let client = reqwest::Client::new();
    let script = client.get(worker.url("/et.js")).send().await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("application/javascript"));
    assert!(script.headers()["cache-control"].to_str().unwrap().contains("max-age=86400"));
    let etag = script.headers()["etag"].clone();
    assert!(etag.to_str().unwrap().starts_with('"'), "a strong ETag: {etag:?}");
    let served = script.text().await.unwrap();
    assert_eq!(served, std::fs::read_to_string(repo().join("sdk/dist/et.js")).unwrap(), "the worker serves sdk/dist/et.js");
    let again = client.get(worker.url("/et.js")).header("if-none-match", etag.clone()).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"], etag);

    // CORS preflight for JSON beacons from any site.
    let preflight = client
        .request(reqwest::Method::OPTIONS, worker.url("/api/e"))
        .header("origin", "https://customer.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert!(preflight.headers()["access-control-allow-methods"].to_str().unwrap().contains("POST"));

    // Bots are answered 202 and dropped before anything is forwarded.
    for bot in [GOOGLEBOT, HEADLESS, ""] {
        let r = worker.post("text/plain", bot, pageview(site).to_string()).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "bot UA {bot:?}");
    }

    // A pageview as text/plain (sendBeacon) and a click as JSON.
    let started = Utc::now();
    let r = worker.post("text/plain;charset=UTF-8", UA, pageview(site).to_string()).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let mut click = pageview(site);
    click["type"] = json!("click");
    click["name"] = json!("Signup");
    click["props"] = json!({"plan": "pro"});
    let r = worker.post("application/json", UA, click.to_string()).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    wait_for_events(&app, site, 2, &worker).await;
    // Retries must not duplicate: give any stray retry time to land, then count again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.count_events(site).await, 2, "exactly the two human events, once each; worker log:\n{}", worker.log());

    let rows = app
        .db
        .client()
        .await
        .query(
            "SELECT id, ts, event_type, hostname, pathname, referrer_host, utm_source, visitor_hash, \
                    country, region, city, browser \
             FROM events WHERE site_id = $1 ORDER BY event_type",
            &[site.as_uuid()],
        )
        .await
        .unwrap();
    let types: Vec<&str> = rows.iter().map(|r| r.get("event_type")).collect();
    assert_eq!(types, ["click", "pageview"]);
    let expected_visitor = VisitorHash::daily(&salt, site, IP.parse().unwrap(), UA).as_i64();
    for row in &rows {
        let id: uuid::Uuid = row.get("id");
        assert_eq!(id.get_version_num(), 7, "the worker gives UUIDv7 ids");
        let ts: chrono::DateTime<Utc> = row.get("ts");
        assert!(ts >= started - chrono::Duration::seconds(1) && ts <= Utc::now(), "ts {ts} is the edge's receive time");
        assert_eq!(row.get::<_, &str>("hostname"), "example.com");
        assert_eq!(row.get::<_, &str>("pathname"), "/edge");
        assert_eq!(row.get::<_, Option<&str>>("referrer_host"), Some("google.com"));
        assert_eq!(row.get::<_, Option<&str>>("utm_source"), Some("news"));
        assert_eq!(
            row.get::<_, i64>("visitor_hash"),
            expected_visitor,
            "hashed at the edge with the KV salt, CF-Connecting-IP and the UA"
        );
        assert_eq!(row.get::<_, Option<&str>>("browser"), Some("Firefox"), "enriched at the edge from the UA");
        // No geo database in GEO here: request.cf is the fallback. wrangler
        // dev (CLOUDFLARE_CF_FETCH_ENABLED=false) gives every request miniflare's
        // stand-in cf object, which places it in Austin, Texas.
        let place: [Option<&str>; 3] = [row.get("country"), row.get("region"), row.get("city")];
        assert_eq!(place, [Some("US"), Some("Texas"), Some("Austin")], "geo from request.cf");
    }

    // Privacy invariant 1: neither the IP nor the UA reaches storage or the worker's log.
    let dump = app.db.dump().await;
    assert!(dump.contains("Signup"), "the dump holds the events");
    let log = worker.log();
    for secret in [IP, "EdgeDistinctUA-9k2w", "Gecko/20100101"] {
        assert!(!dump.contains(secret), "{secret} reached the database");
        assert!(!log.contains(secret), "{secret} reached the worker's log");
    }
}

#[tokio::test]
async fn bad_beacons_get_4xx_with_reasons_from_the_worker() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let salt = random_salt();
    let [today, tomorrow] = days();
    let worker =
        EdgeWorker::start(&app.url(""), &hex(&app.edge_signing_key()), &[(today, &salt), (tomorrow, &salt)]).await;

    let cases: Vec<(&str, String, &str, StatusCode, &str)> = bad_beacons(site, &pageview(site))
        .into_iter()
        .map(|c| (c.name, c.body, c.content_type, StatusCode::from_u16(c.status).unwrap(), c.reason))
        .collect();
    for (name, body, content_type, status, reason) in cases {
        let response = worker.post(content_type, UA, body).await;
        assert_eq!(response.status(), status, "{name}");
        assert_eq!(response.headers()["access-control-allow-origin"], "*", "{name}: the page can read the reason");
        let error: Value = response.json().await.unwrap_or_else(|e| panic!("{name}: no JSON error body: {e}"));
        let message = error["error"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{name}: {message}");
    }

    // Cloudflare (and wrangler dev) always set CF-Connecting-IP, so a missing
    // header cannot reach the worker (the rules' unit tests cover it); one
    // that is not an address is refused, not hashed as if it were one.
    let r = reqwest::Client::new()
        .post(worker.url("/api/e"))
        .header("content-type", "text/plain")
        .header("user-agent", UA)
        .header("cf-connecting-ip", "not-an-address")
        .body(pageview(site).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("CF-Connecting-IP"));

    // The edge has no site directory: a beacon for an unknown site is
    // accepted there and refused by the ingest, so it is never stored.
    let mut unknown_site = pageview(site);
    unknown_site["site"] = json!("00000000-0000-4000-8000-000000000000");
    assert_eq!(worker.post("text/plain", UA, unknown_site.to_string()).await.status(), StatusCode::ACCEPTED);

    // A good beacon after the bad ones is the only row.
    assert_eq!(worker.post("text/plain", UA, pageview(site).to_string()).await.status(), StatusCode::ACCEPTED);
    wait_for_events(&app, site, 1, &worker).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.count_events(site).await, 1);
    let all: i64 = app.db.client().await.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get(0);
    assert_eq!(all, 1, "nothing else reached the events table");
}

#[tokio::test]
async fn without_the_days_salt_the_worker_answers_503_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let worker = EdgeWorker::start(&app.url(""), &hex(&app.edge_signing_key()), &[]).await;
    let r = worker.post("text/plain", UA, pageview(site).to_string()).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let error: Value = r.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("salt"), "{error}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.count_events(site).await, 0);
}

/// An ingest in front of the TestApp that answers the first `fail` batches
/// with 503 and forwards the rest unchanged (signature headers included);
/// it records every batch body it was sent.
struct FlakyIngest {
    addr: std::net::SocketAddr,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl FlakyIngest {
    async fn start(target: String, fail: usize) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = bodies.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let seen = seen.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let (head_len, content_length) = loop {
                        let Ok(n) = socket.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, len);
                        }
                    };
                    while buf.len() < head_len + content_length {
                        let Ok(n) = socket.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf[..head_len]).to_string();
                    let body = buf[head_len..head_len + content_length].to_vec();
                    let nth = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                        seen.len()
                    };
                    let status = if nth <= fail {
                        503
                    } else {
                        let mut request = reqwest::Client::new().post(format!("{target}/ingest/batch")).body(body);
                        for line in head.lines().skip(1) {
                            if let Some((name, value)) = line.split_once(':') {
                                let name = name.trim().to_ascii_lowercase();
                                if name.starts_with("x-engagetrack-") || name == "content-type" {
                                    request = request.header(name, value.trim());
                                }
                            }
                        }
                        request.send().await.map(|r| r.status().as_u16()).unwrap_or(502)
                    };
                    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = socket.write_all(reply.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { addr, bodies }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn batch_sizes(&self) -> Vec<usize> {
        self.bodies.lock().unwrap().iter().map(|b| b["events"].as_array().map_or(0, Vec::len)).collect()
    }

    fn event_ids(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
            .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Forwarding fails four times: the worker's in-request retries (with
/// backoff, inside wait_until) run out, the batch goes to RETRY_QUEUE, and
/// the queue consumer forwards it: one row, and every attempt carried the
/// same event id.
#[tokio::test]
async fn failed_forwards_are_retried_then_queued_and_stored_once() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let salt = random_salt();
    let [today, tomorrow] = days();
    let ingest = FlakyIngest::start(app.url(""), 4).await;
    let worker =
        EdgeWorker::start(&ingest.url(), &hex(&app.edge_signing_key()), &[(today, &salt), (tomorrow, &salt)]).await;

    let answered = Instant::now();
    assert_eq!(worker.post("text/plain", UA, pageview(site).to_string()).await.status(), StatusCode::ACCEPTED);
    assert!(answered.elapsed() < Duration::from_secs(2), "the worker answers before forwarding");

    let deadline = Instant::now() + Duration::from_secs(60);
    while app.count_events(site).await < 1 {
        assert!(
            Instant::now() < deadline,
            "not stored within 60 s after {} attempts; worker log:\n{}",
            ingest.event_ids().len(),
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.count_events(site).await, 1);
    let ids = ingest.event_ids();
    assert!(ids.len() >= 5, "4 refused attempts, then the one that stored: {ids:?}");
    assert!(ids.iter().all(|id| *id == ids[0]), "every retry carries the same event id: {ids:?}");
    let log = worker.log();
    assert!(log.contains("RETRY_QUEUE"), "the batch went through the queue; log:\n{log}");
}

/// Beacons arriving together in one isolate leave it as one signed batch
/// (a 100 ms window), and each is stored once.
#[tokio::test]
async fn beacons_arriving_together_share_a_batch() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let salt = random_salt();
    let [today, tomorrow] = days();
    let ingest = FlakyIngest::start(app.url(""), 0).await;
    let worker =
        EdgeWorker::start(&ingest.url(), &hex(&app.edge_signing_key()), &[(today, &salt), (tomorrow, &salt)]).await;

    let client = reqwest::Client::new();
    let mut posts = tokio::task::JoinSet::new();
    for n in 0..6 {
        let mut body = pageview(site);
        body["url"] = json!(format!("https://example.com/page-{n}"));
        let request = client
            .post(worker.url("/api/e"))
            .header("content-type", "text/plain")
            .header("user-agent", UA)
            .header("cf-connecting-ip", IP)
            .body(body.to_string());
        posts.spawn(async move { request.send().await.expect("post").status() });
    }
    while let Some(status) = posts.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::ACCEPTED);
    }
    wait_for_events(&app, site, 6, &worker).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.count_events(site).await, 6);
    let sizes = ingest.batch_sizes();
    assert_eq!(sizes.iter().sum::<usize>(), 6, "each event forwarded once: {sizes:?}");
    assert!(sizes.len() < 6, "concurrent beacons were batched together: {sizes:?}");
}

/// Geo databases in the GEO namespace are read once per isolate and win over
/// request.cf; what they do not know still comes from request.cf.
#[tokio::test]
async fn the_geo_database_in_kv_places_visitors() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let salt = random_salt();
    let [today, tomorrow] = days();
    let geo = repo().join("shared/testdata/GeoIP2-City-Test.mmdb");
    let worker = EdgeWorker::start_with_geo(
        &app.url(""),
        &hex(&app.edge_signing_key()),
        &[(today, &salt), (tomorrow, &salt)],
        Some(&geo),
    )
    .await;
    for ip in ["81.2.69.142", "89.160.20.128"] {
        let r = worker.post_from(ip, "text/plain", UA, pageview(site).to_string()).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    wait_for_events(&app, site, 2, &worker).await;
    let rows = app
        .db
        .client()
        .await
        .query("SELECT country, region, city FROM events WHERE site_id = $1 ORDER BY country", &[site.as_uuid()])
        .await
        .unwrap();
    let places: Vec<[Option<String>; 3]> = rows.iter().map(|r| [r.get(0), r.get(1), r.get(2)]).collect();
    assert_eq!(places[0], [Some("GB".into()), Some("England".into()), Some("London".into())], "log:\n{}", worker.log());
    assert_eq!(places[1][0].as_deref(), Some("SE"));
    assert_eq!(places[1][2].as_deref(), Some("Linköping"));
}
