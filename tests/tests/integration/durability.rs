//! A 2xx means durable: PostgreSQL restarts in the middle of a load sent
//! over HTTP, senders retry on 503, and afterwards exactly N events are
//! stored, none twice. Runs against a private cluster the test can restart.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use engagetrack_server::adapters::postgres::local_cluster::{DB_NAME, LocalCluster};
use engagetrack_server::adapters::postgres as db;
use engagetrack_server::{AppConfig, AppState, secrets};
use shared::batch::{self, Batch, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use shared::{EventId, Pipeline, Processed, Salt, Visit};
use uuid::Uuid;

const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

struct Stack {
    cluster: Arc<LocalCluster>,
    state: AppState,
    base: String,
    site: Uuid,
    _dir: tempfile::TempDir,
}

async fn stack() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("pg");
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(&data)).await.unwrap().unwrap();
    cluster.ensure_database().await.unwrap();
    let pool = db::pool(&cluster.connection_string(DB_NAME), 8).unwrap();
    db::migrate(&pool).await.unwrap();
    let secrets = secrets::load_or_create_local(&dir.path().join("secrets.json")).unwrap();
    let state = AppState::new(pool, &secrets, AppConfig::default()).unwrap();
    let site = Uuid::new_v4();
    let client = state.pool.get().await.unwrap();
    let org = Uuid::new_v4();
    client.execute("INSERT INTO organizations (id, name, slug) VALUES ($1, 'o', 'o')", &[&org]).await.unwrap();
    client
        .execute("INSERT INTO sites (id, organization_id, domain, name) VALUES ($1, $2, 'example.com', 'e')", &[&site, &org])
        .await
        .unwrap();
    drop(client);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(engagetrack_server::serve(listener, state.clone(), std::future::pending()));
    Stack { cluster: Arc::new(cluster), state, base, site, _dir: dir }
}

/// Sends every request with retries (the sender's side of the contract);
/// restarts PostgreSQL once a third of them have been acknowledged.
async fn load_with_restart(stack: &Stack, requests: Vec<reqwest::RequestBuilder>) -> usize {
    let total = requests.len();
    let acked = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let queue = Arc::new(tokio::sync::Mutex::new(requests));
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (queue, acked, refused) = (queue.clone(), acked.clone(), refused.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let Some(request) = queue.lock().await.pop() else {
                    break;
                };
                let mut backoff = Duration::from_millis(20);
                for attempt in 0.. {
                    assert!(attempt < 200, "gave up on a request");
                    match request.try_clone().unwrap().send().await {
                        Ok(r) if r.status().is_success() => break,
                        Ok(r) if r.status() == 503 => refused.fetch_add(1, Ordering::Relaxed),
                        Ok(r) => panic!("unexpected {}: {}", r.status(), r.text().await.unwrap_or_default()),
                        Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                    };
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    while acked.load(Ordering::Relaxed) < total / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cluster = stack.cluster.clone();
    tokio::task::spawn_blocking(move || cluster.restart()).await.unwrap().unwrap();
    for s in senders {
        s.await.unwrap();
    }
    assert_eq!(acked.load(Ordering::Relaxed), total);
    refused.load(Ordering::Relaxed)
}

async fn count(stack: &Stack) -> (i64, i64) {
    let client = stack.state.pool.get().await.unwrap();
    let row = client
        .query_one("SELECT count(*), count(DISTINCT pathname) FROM events WHERE site_id = $1", &[&stack.site])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacons_survive_a_database_restart_exactly_once() {
    let stack = stack().await;
    const N: usize = 3_000;
    let http = reqwest::Client::new();
    let requests = (0..N)
        .map(|i| {
            let body = format!(r#"{{"site":"{}","type":"pageview","url":"https://example.com/p{i}","sid":"durable-{i:06}"}}"#, stack.site);
            http.post(format!("{}/api/e", stack.base)).header("content-type", "text/plain").header("user-agent", UA).body(body)
        })
        .collect();
    let refused = load_with_restart(&stack, requests).await;
    assert!(refused > 0, "the restart was felt (some requests got 503 and were retried)");
    assert_eq!(count(&stack).await, (N as i64, N as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_batches_survive_a_database_restart_exactly_once() {
    let stack = stack().await;
    let pipeline = Pipeline::default();
    let salt = Salt::from_bytes([1; 32]);
    let key = stack.state.keys.current().edge_signing_key().to_vec();
    let http = reqwest::Client::new();
    const BATCHES: usize = 120;
    const PER_BATCH: usize = 25;
    let requests = (0..BATCHES)
        .map(|b| {
            let events = (0..PER_BATCH)
                .map(|i| {
                    let n = b * PER_BATCH + i;
                    let body = format!(r#"{{"site":"{}","type":"pageview","url":"https://example.com/b{n}","sid":"batch-{b:04}"}}"#, stack.site);
                    let visit = Visit { ip: "198.51.100.9".parse().unwrap(), user_agent: UA };
                    let id = EventId::new(Utc::now(), rand_id(n));
                    match pipeline.process(body.as_bytes(), visit, &salt, id).unwrap() {
                        Processed::Event(e) => *e,
                        Processed::Bot(r) => panic!("{r}"),
                    }
                })
                .collect();
            let body = serde_json::to_vec(&Batch { events }).unwrap();
            let ts = Utc::now().timestamp();
            http.post(format!("{}/ingest/batch", stack.base))
                .header(TIMESTAMP_HEADER, ts.to_string())
                .header(SIGNATURE_HEADER, batch::sign(&key, ts, &body))
                .body(body)
        })
        .collect();
    load_with_restart(&stack, requests).await;
    let n = (BATCHES * PER_BATCH) as i64;
    assert_eq!(count(&stack).await, (n, n));
}

fn rand_id(n: usize) -> [u8; 10] {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&(n as u64).to_be_bytes());
    b[8] = 0xEE;
    b
}
