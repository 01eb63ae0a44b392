//! The `engagetrack` binary as a user runs it: its private PostgreSQL
//! cluster, graceful stop on SIGTERM, data kept across restarts, and the
//! commands' output contracts.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use engagetrack_tests::TestDb;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_engagetrack");

/// A scratch directory the `postgres` user can enter (the cluster runs as
/// that user when the tests run as root).
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn engagetrack(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DATABASE_URL")
        .env("ENGAGETRACK_DATA_DIR", dir.join("pg"))
        .env("ENGAGETRACK_SECRETS_FILE", dir.join("secrets.json"))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn last_json_line(mut cmd: Command) -> Value {
    let out = cmd.output().await.unwrap();
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn serve(dir: &Path, port: u16) -> Child {
    let child = engagetrack(dir)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let health = format!("http://127.0.0.1:{port}/healthz");
    for _ in 0..240 {
        if reqwest::get(&health).await.is_ok_and(|r| r.status().is_success()) {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("serve did not become healthy");
}

async fn stop(mut child: Child) {
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("exits after SIGTERM").unwrap();
    assert!(status.success(), "serve exited with {status}");
}

async fn count_events(dir: &Path) -> i64 {
    let socket_dir = dir.join("pg.run");
    let conn = format!("host={} port=5432 user=engagetrack dbname=engagetrack", socket_dir.display());
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn serve_owns_a_private_cluster_stops_it_on_sigterm_and_keeps_data() {
    let dir = workdir();
    let mut seed = engagetrack(dir.path());
    seed.args(["seed-demo", "--days", "2", "--visitors", "30"]);
    let demo = last_json_line(seed).await;
    for key in ["site_id", "email", "password", "url"] {
        assert!(demo[key].is_string(), "{key} missing from {demo}");
    }
    assert!(!dir.path().join("pg/postmaster.pid").exists(), "seed-demo stops the cluster it started");

    let port = free_port();
    let server = serve(dir.path(), port).await;
    let seeded = count_events(dir.path()).await;
    assert!(seeded > 0);
    let beacon = format!(
        r#"{{"site":"{}","type":"pageview","url":"https://example.com/a","referrer":"https://www.google.com/","title":"A","sid":"cl1-s3ss10n","w":1920,"h":1080}}"#,
        demo["site_id"].as_str().unwrap()
    );
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/e"))
        .header("content-type", "text/plain")
        // A browser's UA: an empty one is dropped as a bot.
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0")
        .body(beacon)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(count_events(dir.path()).await, seeded + 1);
    stop(server).await;
    assert!(!dir.path().join("pg/postmaster.pid").exists(), "SIGTERM stops the private cluster");

    let server = serve(dir.path(), port).await;
    assert_eq!(count_events(dir.path()).await, seeded + 1, "data survives a restart");
    stop(server).await;
}

/// The connection string of a test database, for `DATABASE_URL`.
fn database_url(db: &TestDb) -> String {
    format!(
        "host={} port={} user={} dbname={}",
        match &db.config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        },
        db.config.get_ports().first().copied().unwrap_or(5432),
        db.config.get_user().unwrap_or("postgres"),
        db.name
    )
}

#[tokio::test]
async fn seed_demo_and_migrate_work_with_database_url_and_no_server() {
    let db = TestDb::create().await;
    let url = database_url(&db);
    let dir = workdir();
    let mut migrate = engagetrack(dir.path());
    migrate.env("DATABASE_URL", &url).arg("migrate");
    assert!(!last_json_line(migrate).await["applied"].as_array().unwrap().is_empty());
    let mut again = engagetrack(dir.path());
    again.env("DATABASE_URL", &url).arg("migrate");
    assert_eq!(last_json_line(again).await["applied"], serde_json::json!([]));

    let mut seed = engagetrack(dir.path());
    seed.env("DATABASE_URL", &url).args(["seed-demo", "--days", "3", "--visitors", "50", "--url", "http://127.0.0.1:9/"]);
    let demo = last_json_line(seed).await;
    assert_eq!(demo["url"], "http://127.0.0.1:9/");
    assert_eq!(demo["email"], "demo@engagetrack.test");
    let site: uuid::Uuid = demo["site_id"].as_str().unwrap().parse().unwrap();
    let stored: i64 = db.client().await.query_one("SELECT count(*) FROM events WHERE site_id = $1", &[&site]).await.unwrap().get(0);
    assert!(stored > 50);
    assert!(!dir.path().join("pg").exists(), "no private cluster when DATABASE_URL is set");
}

#[tokio::test]
async fn enrich_explains_each_line_with_the_edge_pipeline() {
    use tokio::io::AsyncWriteExt;
    let geo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata/GeoIP2-City-Test.mmdb");
    let mut child = Command::new(BIN)
        .args(["enrich", "--geo", geo])
        .env_remove("DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let input = concat!(
        r#"{"ua":"Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1","ip":"81.2.69.142","url":"https://shop.example/?utm_source=fb&utm_medium=paid_social&utm_campaign=bf","referrer":"https://l.facebook.com/"}"#,
        "\n",
        r#"{"ua":"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"}"#,
        "\n{}\n"
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    let first = &lines[0];
    for (key, want) in [
        ("bot", Value::Bool(false)),
        ("browser", "Safari".into()),
        ("os", "iOS".into()),
        ("device", "mobile".into()),
        ("source", "Facebook".into()),
        ("channel", "Paid Social".into()),
        ("utm_campaign", "bf".into()),
        ("country", "GB".into()),
        ("region", "England".into()),
        ("city", "London".into()),
    ] {
        assert_eq!(first[key], want, "{key} in {first}");
    }
    assert_eq!(lines[1]["bot"], true);
    assert_eq!(lines[1]["bot_reason"], "crawler list: bingbot");
    assert_eq!(lines[2]["bot"], true, "no UA at all is not a person");
    assert_eq!(lines[2]["channel"], "Direct");
}

/// A failed command: its stderr, after checking it exited non-zero.
async fn failure(mut cmd: Command) -> String {
    let out = cmd.output().await.unwrap();
    assert!(!out.status.success(), "succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test]
async fn notice_publish_mails_holders_once_and_list_counts_them_and_bad_input_is_refused() {
    let db = TestDb::create().await;
    let url = database_url(&db);
    let dir = workdir();
    let body = dir.path().join("notice.txt");
    std::fs::write(&body, "We changed how long exports are kept.\n").unwrap();
    let publish_linked = |title: &str, body: &Path, link: &str| {
        let mut cmd = engagetrack(dir.path());
        cmd.env("DATABASE_URL", &url).args(["notice", "publish", "--title", title, "--material", "--link", link]);
        cmd.arg("--body-file").arg(body);
        cmd
    };
    let publish = |title: &str, body: &Path| publish_linked(title, body, "https://engagetrack.test/privacy");

    // Refused before any database is touched (here: none is made).
    let mut no_db = publish("   ", &body);
    no_db.env_remove("DATABASE_URL");
    assert!(failure(no_db).await.contains("the title is empty"));
    assert!(failure(publish("Policy", &dir.path().join("missing.txt"))).await.contains("cannot read the body file"));
    assert!(failure(publish_linked("Policy", &body, "javascript:alert(1)")).await.contains("the link must be an absolute http(s) URL"));
    assert!(!dir.path().join("pg").exists(), "bad input started a database");

    let mut migrate = engagetrack(dir.path());
    migrate.env("DATABASE_URL", &url).arg("migrate");
    last_json_line(migrate).await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO users (id, email, created_at)
             SELECT gen_random_uuid(), name || '@example.com', now() - interval '1 day' FROM unnest(ARRAY['ann', 'bob']) name",
        )
        .await
        .unwrap();
    let published = last_json_line(publish("Privacy policy update", &body)).await;
    assert_eq!((published["mailed"].as_u64(), published["already_published"].as_bool()), (Some(2), Some(false)), "{published}");
    assert_eq!(published["notice"]["body"], "We changed how long exports are kept.");
    let again = last_json_line(publish("Privacy policy update", &body)).await;
    assert_eq!((again["mailed"].as_u64(), again["already_published"].as_bool()), (Some(0), Some(true)), "{again}");
    let mailed: i64 = db.client().await.query_one("SELECT count(*) FROM mail_outbox", &[]).await.unwrap().get(0);
    assert_eq!(mailed, 2);

    let mut list = engagetrack(dir.path());
    list.env("DATABASE_URL", &url).args(["notice", "list"]);
    let listed = last_json_line(list).await;
    let notice = &listed["notices"][0];
    assert_eq!(listed["notices"].as_array().map(Vec::len), Some(1), "{listed}");
    let counts = ["holders", "seen", "dismissed", "mailed"].map(|k| notice[k].as_i64());
    assert_eq!(counts, [Some(2), Some(0), Some(0), Some(2)], "{notice}");
    assert_eq!((notice["title"].as_str(), notice["material"].as_bool()), (Some("Privacy policy update"), Some(true)));

    let id = notice["id"].as_i64().unwrap().to_string();
    let mut withdraw = engagetrack(dir.path());
    withdraw.env("DATABASE_URL", &url).args(["notice", "withdraw", &id]);
    assert!(last_json_line(withdraw).await["withdrawn"]["withdrawn_at"].is_string());
    let mut unknown = engagetrack(dir.path());
    unknown.env("DATABASE_URL", &url).args(["notice", "withdraw", "987654321"]);
    assert!(failure(unknown).await.contains("no notice 987654321"));
}
