//! The real edge worker (Rust → wasm32, built by `scripts/build-worker.sh`)
//! under wrangler dev in local mode (workerd, KV and Queues simulated on
//! disk) on loopback, forwarding signed batches to a real `TestApp` and its
//! PostgreSQL. Nothing leaves the machine.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use engagetrack_server::AppConfig;
use engagetrack_server::edge_publish::{CLOUDFLARE_API_TOKEN, EdgeKvConfig};
use engagetrack_server::jobs::Job;
use engagetrack_tests::cloudflare_fake::FakeCloudflareKv;
use engagetrack_tests::{TestApp, bad_beacons, free_port};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::{Salt, SiteId, VisitorHash};

const IP: &str = "203.0.113.219";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0 EdgeDistinctUA-9k2w";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const HEADLESS: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/142.0.0.0 Safari/537.36";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// The bundle and the tools must be there: a missing bundle is a failure, not a skip.
fn wrangler() -> PathBuf {
    let build = repo().join("edge-worker/build");
    let has_wasm =
        std::fs::read_dir(&build).map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "wasm"))).unwrap_or(false);
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

/// `wrangler dev --local` serving edge-worker/build on 127.0.0.1, its KV and
/// queue state in a temporary directory; the whole process group is ended on drop.
/// edge_to_lambda.rs starts it in front of the ingest Lambda.
pub(crate) struct EdgeWorker {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// What the worker's local KV holds before it starts, and whether it has a `SITES` binding.
#[derive(Default)]
pub(crate) struct EdgeSetup<'a> {
    pub(crate) salts: &'a [(chrono::NaiveDate, &'a Salt)],
    pub(crate) geo: Option<&'a Path>,
    /// `(binding, wrangler kv bulk put file)`: e.g. what the Cloudflare KV fake holds.
    pub(crate) bulk: Vec<(&'static str, Value)>,
    /// With a `SITES` binding the worker enforces the site list; without, it takes every site.
    pub(crate) sites_binding: bool,
}

/// infra/wrangler.local.toml, or (with `sites_binding`) a copy of it in `dir` with a SITES namespace added.
fn config_file(dir: &Path) -> PathBuf {
    let own = dir.join("wrangler.toml");
    if own.is_file() { own } else { repo().join("infra/wrangler.local.toml") }
}

fn write_config_with_sites(dir: &Path) {
    let local = std::fs::read_to_string(repo().join("infra/wrangler.local.toml")).expect("read wrangler.local.toml");
    let main = format!("main = \"{}\"", repo().join("edge-worker/build/index.js").display());
    assert!(local.contains("main = \"../edge-worker/build/index.js\""), "wrangler.local.toml's main moved");
    let text = local.replace("main = \"../edge-worker/build/index.js\"", &main)
        + "\n[[kv_namespaces]]\nbinding = \"SITES\"\nid = \"engagetrack-local-sites\"\n";
    std::fs::write(dir.join("wrangler.toml"), text).expect("write config");
}

impl EdgeWorker {
    fn wrangler_command(dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(wrangler());
        command
            .current_dir(repo().join("edge-worker"))
            .args(args)
            .arg("--config")
            .arg(config_file(dir))
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
        Self::start_with(ingest, signing_key_hex, EdgeSetup { salts, geo, ..EdgeSetup::default() }).await
    }

    pub(crate) async fn start_with(ingest: &str, signing_key_hex: &str, setup: EdgeSetup<'_>) -> Self {
        let EdgeSetup { salts, geo, bulk, sites_binding } = setup;
        let dir = tempfile::tempdir().expect("tempdir");
        if sites_binding {
            write_config_with_sites(dir.path());
        }
        for (binding, entries) in &bulk {
            // The same JSON the KV bulk API takes; wrangler writes it into the worker's local KV.
            let file = dir.path().join(format!("{binding}.json"));
            std::fs::write(&file, entries.to_string()).expect("write bulk file");
            let out = Self::wrangler_command(dir.path(), &["kv", "bulk", "put", &file.display().to_string()])
                .args(["--binding", binding, "--local"])
                .output()
                .expect("run wrangler kv bulk put");
            assert!(out.status.success(), "seeding {binding} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
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
            let out = Self::wrangler_command(dir.path(), &["kv", "key", "put", &key, &hex::encode(salt.as_bytes())])
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
        let mut command =
            Self::wrangler_command(dir.path(), &["dev", "--local", "--ip", "127.0.0.1", "--show-interactive-dev-session=false"]);
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

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(self.dir.path().join("wrangler.log")).and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    async fn post(&self, content_type: &str, user_agent: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.post_from(IP, content_type, user_agent, body).await
    }

    async fn post_from(&self, ip: &str, content_type: &str, user_agent: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.post_with(&[("cf-connecting-ip", ip)], content_type, user_agent, body).await
    }

    /// A beacon with extra headers (a client address, spoofed forwarding headers).
    async fn post_with(
        &self,
        headers: &[(&str, &str)],
        content_type: &str,
        user_agent: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(self.url("/api/e"))
            .header("content-type", content_type)
            .header("user-agent", user_agent)
            .header("origin", "https://customer.example");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(body).send().await.expect("request to the worker")
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
    let worker = EdgeWorker::start(&app.url(""), &hex::encode(&app.edge_signing_key()), &[(today, &salt), (tomorrow, &salt)]).await;

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
        assert_eq!(row.get::<_, i64>("visitor_hash"), expected_visitor, "hashed at the edge with the KV salt, CF-Connecting-IP and the UA");
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
    let worker = EdgeWorker::start(&app.url(""), &hex::encode(&app.edge_signing_key()), &[(today, &salt), (tomorrow, &salt)]).await;

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
    let worker = EdgeWorker::start(&app.url(""), &hex::encode(&app.edge_signing_key()), &[]).await;
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
    let worker = EdgeWorker::start(&ingest.url(), &hex::encode(&app.edge_signing_key()), &[(today, &salt), (tomorrow, &salt)]).await;

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
    let worker = EdgeWorker::start(&ingest.url(), &hex::encode(&app.edge_signing_key()), &[(today, &salt), (tomorrow, &salt)]).await;

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
    let worker =
        EdgeWorker::start_with_geo(&app.url(""), &hex::encode(&app.edge_signing_key()), &[(today, &salt), (tomorrow, &salt)], Some(&geo))
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

const SALTS_NS: &str = "ns-salts-0001";
const SITES_NS: &str = "ns-sites-0001";

/// A TestApp that publishes to the Cloudflare KV fake, with the API token in its secret store.
async fn app_publishing_to(fake: &FakeCloudflareKv) -> TestApp {
    let edge_kv = EdgeKvConfig {
        api_url: fake.api_url(),
        account_id: fake.account_id.clone(),
        salts_namespace: SALTS_NS.into(),
        sites_namespace: SITES_NS.into(),
    };
    let config = AppConfig { edge_kv: Some(edge_kv), ..AppConfig::default() };
    TestApp::spawn_with_secrets(config, &[(CLOUDFLARE_API_TOKEN, fake.token.as_bytes())]).await
}

async fn visitor_hashes(app: &TestApp, site: SiteId) -> Vec<i64> {
    let client = app.db.client().await;
    let rows = client.query("SELECT visitor_hash FROM events WHERE site_id = $1", &[site.as_uuid()]).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// Item 3 of the deployment issue, salts: the rotation job publishes today's
/// and tomorrow's salt through the KV REST API (retrying a 503), with an
/// expiry of its own, and deletes destroyed days; the worker's local KV then
/// serves exactly that, and the worker hashes with it: the stored visitor
/// hash is SHA-256(published salt | site | CF-Connecting-IP | UA), whatever
/// X-Forwarded-For the visitor sends.
#[tokio::test]
async fn salts_published_by_the_rotation_job_hash_beacons_at_the_edge() {
    let fake = FakeCloudflareKv::start(&[SALTS_NS, SITES_NS]).await;
    let app = app_publishing_to(&fake).await;
    let site = app.create_site().await;
    let now = Utc::now();
    let [today, tomorrow] = days();
    // A day long over, still in the database and at the edge: the rotation destroys both.
    let old_day = today - chrono::Duration::days(3);
    let client = app.db.client().await;
    client.execute("INSERT INTO salts (day, salt) VALUES ($1, $2)", &[&old_day, &vec![7u8; 32]]).await.unwrap();
    fake.insert(SALTS_NS, &format!("salt:{old_day}"), &"07".repeat(32));

    fake.fail_next(2, 503);
    let summary = Job::RotateSalt.run(&app.state, now).await.expect("rotation and publish");
    assert_eq!(summary["destroyed_salt_days"], json!([old_day]), "{summary}");
    assert_eq!(summary["edge"]["published"], json!([today, tomorrow]), "{summary}");
    assert_eq!(summary["edge"]["deleted"], json!([old_day]), "{summary}");
    let log = fake.log();
    assert_eq!(log.iter().filter(|l| **l == format!("PUT {SALTS_NS} salt:{today}")).count(), 3, "two 503s, then stored: {log:?}");
    assert!(log.contains(&format!("DELETE {SALTS_NS} salt:{old_day}")), "{log:?}");
    assert_eq!(fake.auth_failures(), 0, "the bearer token is the cloudflare-api-token secret");

    let published = fake.entries(SALTS_NS);
    assert_eq!(published.keys().cloned().collect::<Vec<_>>(), [format!("salt:{today}"), format!("salt:{tomorrow}")]);
    for day in [today, tomorrow] {
        let entry = &published[&format!("salt:{day}")];
        let server_salt = app.state.ingest.salts().salt_for(day, now).await.unwrap();
        assert_eq!(entry.value, hex::encode(server_salt.as_bytes()), "the edge gets the server's salt of {day}");
        let expires = entry.expiration.expect("a salt expires by itself at the edge");
        let day_start = day.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
        assert_eq!(expires, day_start + 25 * 3600, "the end of {day} plus the grace hour");
        assert!(expires - day_start <= 48 * 3600, "within 48 h of its day (privacy invariant 2)");
    }

    // The worker's own local KV serves what was published.
    let worker = EdgeWorker::start_with(
        &app.url(""),
        &hex::encode(&app.edge_signing_key()),
        EdgeSetup { bulk: vec![("SALTS", fake.bulk_file(SALTS_NS))], ..EdgeSetup::default() },
    )
    .await;
    let spoofs = [None, Some("198.51.100.23"), Some("198.51.100.24, 10.9.8.7")];
    for spoof in spoofs {
        let mut headers = vec![("cf-connecting-ip", IP)];
        if let Some(xff) = spoof {
            headers.push(("x-forwarded-for", xff));
        }
        let r = worker.post_with(&headers, "text/plain", UA, pageview(site).to_string()).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.text().await);
    }
    wait_for_events(&app, site, 3, &worker).await;
    let salt = app.state.ingest.salts().salt_for(Utc::now().date_naive(), Utc::now()).await.unwrap();
    // SHA-256(salt | site | ip | ua) with the server's salt of the day, as the server computes it.
    let expected = VisitorHash::daily(&salt, site, IP.parse().unwrap(), UA).as_i64();
    assert_eq!(visitor_hashes(&app, site).await, [expected; 3], "X-Forwarded-For never changes the hash; log:\n{}", worker.log());
}

/// Item 3, site list: the API publishes a site on create, updates it on
/// pause and removes it on delete (retrying a 503); with a SITES binding the
/// worker refuses the others itself, 4xx with the reason, before anything
/// is forwarded. The sync job repairs drift (a site the API never published,
/// a stale key).
#[tokio::test]
async fn the_edge_refuses_sites_missing_from_the_published_list() {
    let fake = FakeCloudflareKv::start(&[SALTS_NS, SITES_NS]).await;
    let app = app_publishing_to(&fake).await;
    let owner = app.sign_up_verified("edge-owner@example.com").await;
    let api = app.as_user(&owner);
    let create = |domain: &str| {
        let path = format!("/api/organizations/{}/sites", owner.organization_id);
        let body = json!({ "domain": domain });
        let api = &api;
        async move { api.post(&path, body).await.expect(201)["id"].as_str().unwrap().parse::<SiteId>().unwrap() }
    };
    fake.fail_next(1, 503);
    let live = create("live.example").await;
    let paused = create("paused.example").await;
    let deleted = create("deleted.example").await;
    api.patch(&format!("/api/sites/{paused}"), json!({"active": false})).await.expect(200);
    api.delete(&format!("/api/sites/{deleted}")).await.expect(204);
    let sites = fake.entries(SITES_NS);
    assert_eq!(sites[&format!("site:{live}")].value, r#"{"active":true}"#, "published on create despite a 503");
    assert_eq!(sites[&format!("site:{paused}")].value, r#"{"active":false}"#);
    assert!(!sites.contains_key(&format!("site:{deleted}")), "removed on delete: {sites:?}");

    // Drift: a site made behind the API's back, and a key nobody owns.
    let unpublished = app.create_site().await;
    let stale = SiteId::from_uuid(uuid::Uuid::new_v4());
    fake.insert(SITES_NS, &format!("site:{stale}"), r#"{"active":true}"#);
    let summary = Job::SyncEdgeSites.run(&app.state, Utc::now()).await.expect("sync");
    assert_eq!(summary["sites"], json!({"written": 3, "removed": 1}), "{summary}");
    let sites = fake.entries(SITES_NS);
    assert!(sites.contains_key(&format!("site:{unpublished}")) && !sites.contains_key(&format!("site:{stale}")), "{sites:?}");

    Job::RotateSalt.run(&app.state, Utc::now()).await.expect("salts");
    let worker = EdgeWorker::start_with(
        &app.url(""),
        &hex::encode(&app.edge_signing_key()),
        EdgeSetup {
            bulk: vec![("SALTS", fake.bulk_file(SALTS_NS)), ("SITES", fake.bulk_file(SITES_NS))],
            sites_binding: true,
            ..EdgeSetup::default()
        },
    )
    .await;
    let never = SiteId::from_uuid(uuid::Uuid::new_v4());
    for (site, status, reason) in [
        (deleted, StatusCode::NOT_FOUND, "unknown site"),
        (stale, StatusCode::NOT_FOUND, "unknown site"),
        (never, StatusCode::NOT_FOUND, "unknown site"),
        (paused, StatusCode::FORBIDDEN, "not accepting events"),
    ] {
        let r = worker.post("text/plain", UA, pageview(site).to_string()).await;
        assert_eq!(r.status(), status, "site {site}");
        assert_eq!(r.headers()["access-control-allow-origin"], "*", "the refusal is readable cross-origin");
        let body: Value = r.json().await.unwrap();
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason) && error.contains(&site.to_string()), "{site}: {body}");
    }
    for site in [live, unpublished] {
        assert_eq!(worker.post("text/plain", UA, pageview(site).to_string()).await.status(), StatusCode::ACCEPTED);
    }
    wait_for_events(&app, live, 1, &worker).await;
    wait_for_events(&app, unpublished, 1, &worker).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let total: i64 = app.db.client().await.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get(0);
    assert_eq!(total, 2, "nothing of the refused sites was forwarded; log:\n{}", worker.log());
}

/// A KV API that keeps refusing does not fail the API request: the site is
/// created (201), the failure is logged, and the sync job repairs the edge.
#[tokio::test]
async fn a_failed_site_publish_does_not_fail_the_request_and_the_sync_repairs_it() {
    let fake = FakeCloudflareKv::start(&[SALTS_NS, SITES_NS]).await;
    let app = app_publishing_to(&fake).await;
    let owner = app.sign_up_verified("edge-flaky@example.com").await;
    fake.fail_next(100, 500);
    let started = Instant::now();
    let created = app
        .as_user(&owner)
        .post(&format!("/api/organizations/{}/sites", owner.organization_id), json!({"domain": "flaky.example"}))
        .await
        .expect(201);
    assert!(started.elapsed() < Duration::from_secs(10), "the retries are bounded: {:?}", started.elapsed());
    let site: SiteId = created["id"].as_str().unwrap().parse().unwrap();
    let attempts = fake.log().iter().filter(|l| l.starts_with(&format!("PUT {SITES_NS} site:{site}"))).count();
    assert_eq!(attempts, engagetrack_server::edge_publish::BACKOFF.len(), "retried with backoff");
    assert!(fake.entries(SITES_NS).is_empty());

    fake.fail_next(0, 500);
    Job::SyncEdgeSites.run(&app.state, Utc::now()).await.expect("sync");
    assert_eq!(fake.entries(SITES_NS)[&format!("site:{site}")].value, r#"{"active":true}"#);
}

/// The fake is Cloudflare-shaped: a wrong token is refused with the envelope,
/// and the rotation job reports the failure instead of passing.
#[tokio::test]
async fn a_wrong_token_fails_the_rotation_job_with_cloudflares_reason() {
    let fake = FakeCloudflareKv::start(&[SALTS_NS, SITES_NS]).await;
    let edge_kv = EdgeKvConfig {
        api_url: fake.api_url(),
        account_id: fake.account_id.clone(),
        salts_namespace: SALTS_NS.into(),
        sites_namespace: SITES_NS.into(),
    };
    let config = AppConfig { edge_kv: Some(edge_kv), ..AppConfig::default() };
    let app = TestApp::spawn_with_secrets(config, &[(CLOUDFLARE_API_TOKEN, b"not-the-token")]).await;
    let err = Job::RotateSalt.run(&app.state, Utc::now()).await.unwrap_err().to_string();
    assert!(err.contains("403") && err.contains("10000 Authentication error"), "{err}");
    assert_eq!(fake.auth_failures(), 1, "a refusal is not retried");
    assert!(fake.entries(SALTS_NS).is_empty());
}
