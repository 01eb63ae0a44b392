//! The integration-test harness: the real app on a random port, against a
//! fresh, uniquely named database on the PostgreSQL at `DATABASE_URL` (or
//! 127.0.0.1:5432), dropped again when the test ends.

use std::net::SocketAddr;

pub mod users;
pub use users::{Answer, ApiClient, OutboxMail, TestUser, token_from_mail};

use engagetrack_server::adapters::{AdapterConfig, Ports};
use engagetrack_server::adapters::postgres as db;
use engagetrack_server::{AppConfig, AppState};
use shared::SiteId;
use tokio_postgres::{Client, Config, NoTls};
use uuid::Uuid;

pub mod cloudflare_fake;
pub mod lambda_emulator;
pub mod moto;
pub mod oauth_fake;
pub mod payment_api_fake;
pub mod payment_fakes;
pub mod redis_server;
pub mod smtp_server;
pub mod soak;
pub mod test_ca;

/// A loopback port nothing listens on now, for a server a test starts as a child process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Builds `(package, binary)` pairs in debug (a no-op when fresh) and
/// returns each binary's path by name, so a test never runs a stale one.
pub fn cargo_build(binaries: &[(&str, &str)]) -> std::collections::HashMap<String, std::path::PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).args(["build", "--message-format=json-render-diagnostics"]);
    for (package, binary) in binaries {
        command.args(["-p", package, "--bin", binary]);
    }
    let output = command.stderr(std::process::Stdio::inherit()).output().expect("run cargo build");
    assert!(output.status.success(), "cargo build of {binaries:?} failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| Some((m["target"]["name"].as_str()?.to_owned(), std::path::PathBuf::from(m["executable"].as_str()?))))
        .collect()
}

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server every test database is made on.
pub fn admin_config() -> Config {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
    url.parse().unwrap_or_else(|e| panic!("DATABASE_URL is not a PostgreSQL connection string: {e}"))
}

async fn connect(config: &Config) -> Client {
    let (client, connection) =
        config.connect(NoTls).await.unwrap_or_else(|e| panic!("cannot reach PostgreSQL for tests ({e}); start it or set DATABASE_URL"));
    tokio::spawn(connection);
    client
}

/// A database of its own for one test, migrated; dropped on `Drop`.
pub struct TestDb {
    pub name: String,
    pub config: Config,
}

impl TestDb {
    pub async fn create() -> Self {
        let admin = admin_config();
        let name = format!("et_test_{}", Uuid::new_v4().simple());
        connect(&admin).await.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        let mut config = admin.clone();
        config.dbname(&name);
        Self { name, config }
    }

    pub async fn client(&self) -> Client {
        connect(&self.config).await
    }

    pub fn pool(&self) -> db::Pool {
        db::pool_from_config(self.config.clone(), 8).expect("pool")
    }

    /// Every row of every table in the public schema, as JSON text: what a
    /// database dump would show.
    pub async fn dump(&self) -> String {
        let client = self.client().await;
        let tables = client.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", &[]).await.expect("list tables");
        let mut dump = String::new();
        for t in tables {
            let table: String = t.get(0);
            let rows = client.query(&format!("SELECT row_to_json(t)::text FROM \"{table}\" t"), &[]).await.expect("dump table");
            for r in rows {
                dump.push_str(&table);
                dump.push(' ');
                dump.push_str(r.get::<_, &str>(0));
                dump.push('\n');
            }
        }
        dump
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async context; a thread of its own can block.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let client = connect(&admin_config()).await;
                let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub db: TestDb,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _secrets_dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(AppConfig::default()).await
    }

    pub async fn spawn_with(config: AppConfig) -> Self {
        Self::spawn_with_secrets(config, &[]).await
    }

    /// As [`TestApp::spawn_with`], with named secrets (e.g. `cloudflare-api-token`,
    /// webhook secrets) in the local secret store besides the generated ones.
    pub async fn spawn_with_secrets(config: AppConfig, extra: &[(&str, &[u8])]) -> Self {
        Self::spawn_with_adapters_and_secrets(config, AdapterConfig::default(), extra).await
    }

    /// The app with the adapters `adapters` names (e.g. moto's DynamoDB and
    /// S3); a secrets file in a temp dir unless it names a secret store.
    pub async fn spawn_with_adapters(config: AppConfig, adapters: AdapterConfig) -> Self {
        Self::spawn_with_adapters_and_secrets(config, adapters, &[]).await
    }

    async fn spawn_with_adapters_and_secrets(config: AppConfig, mut adapters: AdapterConfig, extra: &[(&str, &[u8])]) -> Self {
        let db = TestDb::create().await;
        let pool = db.pool();
        db::migrate(&pool).await.expect("migrations");
        let secrets_dir = tempfile::tempdir().expect("tempdir");
        let secrets_file = secrets_dir.path().join("secrets.json");
        if !extra.is_empty() {
            use std::os::unix::fs::OpenOptionsExt;
            let map: serde_json::Map<String, serde_json::Value> =
                extra.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(hex::encode(v)))).collect();
            let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&secrets_file).expect("secrets file");
            serde_json::to_writer(file, &map).expect("write secrets");
        }
        if adapters.secret_id.is_none() {
            adapters.secrets_file = Some(secrets_file);
        }
        if adapters.blob_dir.is_none() {
            adapters.blob_dir = Some(secrets_dir.path().join("blobs"));
        }
        let ports = Ports::from_config(&pool, &adapters).await.expect("adapters");
        let secrets = ports.secrets.current().await.expect("secrets");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = config;
        if config.public_url.is_empty() {
            config.public_url = format!("http://{addr}");
        }
        let state = AppState::with_ports(pool, &secrets, config, ports).expect("state");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serving = state.clone();
        tokio::spawn(async move {
            let _ = engagetrack_server::serve(listener, serving, async { drop(rx.await) }).await;
        });
        Self { addr, state, db, shutdown: Some(tx), _secrets_dir: secrets_dir }
    }

    /// The local secret store this app loaded (a Lambda started beside it reads the same).
    pub fn secrets_file(&self) -> std::path::PathBuf {
        self._secrets_dir.path().join("secrets.json")
    }

    /// The key the edge signs batches with, as the server holds it.
    pub fn edge_signing_key(&self) -> Vec<u8> {
        self.state.keys.current().edge_signing_key().to_vec()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A fresh organisation with one active site.
    pub async fn create_site(&self) -> SiteId {
        let client = self.db.client().await;
        let org = Uuid::new_v4();
        let site = Uuid::new_v4();
        let slug = format!("org-{}", &org.simple().to_string()[..12]);
        client.execute("INSERT INTO organizations (id, name, slug) VALUES ($1, 'Test org', $2)", &[&org, &slug]).await.expect("org");
        client
            .execute("INSERT INTO sites (id, organization_id, domain, name) VALUES ($1, $2, 'example.com', 'Example')", &[&site, &org])
            .await
            .expect("site");
        SiteId::from_uuid(site)
    }

    pub async fn count_events(&self, site: SiteId) -> i64 {
        self.db.client().await.query_one("SELECT count(*) FROM events WHERE site_id = $1", &[site.as_uuid()]).await.expect("count").get(0)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// One bad beacon and what every beacon endpoint (the local server, the edge
/// worker) must answer: the status and a piece of the `{"error"}` reason.
pub struct BadBeacon {
    pub name: &'static str,
    pub body: String,
    pub content_type: &'static str,
    pub status: u16,
    pub reason: &'static str,
}

/// The bad bodies both beacon endpoints are tested with. `pageview` is a
/// valid pageview for a known site; each case spoils it one way.
pub fn bad_beacons(site: SiteId, pageview: &serde_json::Value) -> Vec<BadBeacon> {
    let spoiled = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut b = pageview.clone();
        change(&mut b);
        b.to_string()
    };
    let oversize = serde_json::json!({"site": site.to_string(), "type": "pageview", "url": "https://example.com/",
                                      "sid": "abcdefgh", "title": "x".repeat(20_000)});
    let case = |name, body, content_type, status, reason| BadBeacon { name, body, content_type, status, reason };
    vec![
        case("wrong types", spoiled(&|b| b["w"] = "wide".into()), "text/plain", 400, "invalid type"),
        case("missing site", spoiled(&|b| drop(b.as_object_mut().map(|o| o.remove("site")))), "text/plain", 400, "`site` is required"),
        case("invalid JSON", "{\"site\":".into(), "text/plain", 400, "invalid JSON"),
        case("unknown type", spoiled(&|b| b["type"] = "pageviewz".into()), "text/plain", 400, "unknown event type `pageviewz`"),
        case("oversize", oversize.to_string(), "text/plain", 413, "limit"),
        case("form encoding", pageview.to_string(), "application/x-www-form-urlencoded", 415, "text/plain"),
        case("empty", String::new(), "text/plain", 400, "invalid JSON"),
        case("not an object", "[1,2]".into(), "text/plain", 400, "invalid JSON"),
    ]
}
