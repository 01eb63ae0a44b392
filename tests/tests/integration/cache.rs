//! The cache (hot stats answers, live-session checks) against a real
//! `redis-server` on loopback, and the in-process store: hits, invalidation
//! on a re-roll and on goal changes, revocations seen at once by another
//! process, and the same answers whether Redis is up, killed mid-sequence
//! or back again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use engagetrack_server::adapters::redis::{RedisCache, RedisSettings};
use engagetrack_server::cache::{CacheStore, InProcessStore, Write};
use engagetrack_server::rollup;
use engagetrack_server::seed::{DEMO_DOMAIN, SeedOptions, seed_demo};
use engagetrack_server::stats::{self, QueryRequest, StatsSite};
use engagetrack_server::{AppConfig, AppState};
use engagetrack_tests::redis_server::RedisServer;
use engagetrack_tests::{TestApp, TestUser};
use reqwest::Method;
use serde_json::{Value, json};
use shared::SiteId;
use uuid::Uuid;

async fn app_with(redis: Option<&RedisServer>) -> TestApp {
    TestApp::spawn_with(AppConfig { redis: redis.map(RedisServer::settings), ..AppConfig::default() }).await
}

/// The demo site with ten days of traffic, the nine past ones rolled up,
/// and a viewer of it.
async fn demo(app: &TestApp) -> (SiteId, TestUser) {
    let now = Utc::now();
    let site = seed_demo(&app.state, now, SeedOptions { days: 10, visitors: 120, seed: 11 }).await.unwrap().site_id;
    roll_past_days(app, site).await;
    let org: Uuid = app.db.client().await.query_one("SELECT organization_id FROM sites WHERE id = $1", &[site.as_uuid()]).await.unwrap().get(0);
    let viewer = app.sign_up_verified(&format!("viewer-{}@example.com", Uuid::new_v4().simple())).await;
    app.add_member(org, viewer.id, "viewer").await;
    (site, viewer)
}

async fn roll_past_days(app: &TestApp, site: SiteId) {
    for back in 1..10 {
        rollup::rollup_day(&app.state.pool, site, Utc::now().date_naive() - chrono::Duration::days(back)).await.unwrap();
    }
}

fn yesterday() -> NaiveDate {
    Utc::now().date_naive() - chrono::Duration::days(1)
}

/// What the engine answers now, without any cache.
async fn engine(app: &TestApp, site: SiteId, body: &Value) -> Value {
    let request: QueryRequest = serde_json::from_value(body.clone()).unwrap();
    let answer = stats::query(&app.state.pool, &StatsSite { id: site, timezone: "UTC".into() }, request, Utc::now()).await.unwrap();
    serde_json::to_value(answer).unwrap()
}

async fn ask(app: &TestApp, user: &TestUser, body: &Value) -> Value {
    app.as_user(user).post("/api/v2/query", body.clone()).await.expect(200)
}

/// Another process of the same deployment: the same database and keys, a cache store of its own.
async fn second_process(app: &TestApp, cache: Arc<dyn CacheStore>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let state = AppState { cache, ..app.state.clone() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = engagetrack_server::serve(listener, state, async { drop(rx.await) }).await;
    });
    (base, tx)
}

async fn status_at(base: &str, token: &str, method: Method, path: &str) -> u16 {
    reqwest::Client::new().request(method, format!("{base}{path}")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

/// Rollup numbers changed behind the engine's back (no re-roll): a cached
/// answer does not see it, the engine does. This is how a test tells a hit.
async fn tamper_with_rollups(app: &TestApp, site: SiteId) {
    app.db
        .client()
        .await
        .execute("UPDATE daily_rollups SET pageviews = pageviews + 1000, visitors = visitors + 1000 WHERE site_id = $1 AND day = $2", &[site.as_uuid(), &yesterday()])
        .await
        .unwrap();
}

/// Copies of some of yesterday's pageviews as new visitors, written the way
/// no ingest would (no day marked dirty): only a re-roll brings them in.
async fn add_raw_pageviews(app: &TestApp, site: SiteId, day: NaiveDate, n: i64) {
    let start = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
    app.db
        .client()
        .await
        .execute(
            "INSERT INTO events
             SELECT (jsonb_populate_record(NULL::events, to_jsonb(e) || jsonb_build_object(
                        'id', gen_random_uuid(), 'visitor_hash', e.visitor_hash + 987654321, 'session_hash', e.session_hash + 987654321))).*
             FROM (SELECT * FROM events WHERE site_id = $1 AND ts >= $2 AND ts < $3 AND event_type = 'pageview' ORDER BY ts LIMIT $4) e",
            &[site.as_uuid(), &start, &(start + chrono::Duration::days(1)), &n],
        )
        .await
        .unwrap();
}

fn pages_7d(site: &str) -> Value {
    json!({"site_id": site, "metrics": ["visitors", "pageviews"], "date_range": "7d", "dimensions": ["event:page"]})
}

async fn stats_answers_are_cached_until_the_data_changes(redis: Option<&RedisServer>) {
    let app = app_with(redis).await;
    let (site, viewer) = demo(&app).await;
    let stats_keys = || redis.map(|r| r.keys("et:v1:stats:*").len());
    let body = pages_7d(DEMO_DOMAIN);

    let first = ask(&app, &viewer, &body).await;
    assert_eq!(first["meta"]["source"], "rollups", "{first}");
    assert_eq!(first, engine(&app, site, &body).await);
    if let Some(n) = stats_keys() {
        assert_eq!(n, 1, "the answer is stored in Redis");
    }

    // A hit: numbers changed behind the engine's back are not seen...
    tamper_with_rollups(&app, site).await;
    assert_ne!(engine(&app, site, &body).await, first, "the tampering changes the engine's answer");
    assert_eq!(ask(&app, &viewer, &body).await, first, "the cached answer is served");
    // ...but a re-roll of the day is, at once: here it also brings in events the rollup lacked.
    add_raw_pageviews(&app, site, yesterday(), 25).await;
    rollup::rollup_day(&app.state.pool, site, yesterday()).await.unwrap();
    let rerolled = engine(&app, site, &body).await;
    assert_ne!(rerolled["results"], first["results"], "the re-roll counted the added pageviews");
    assert_eq!(ask(&app, &viewer, &body).await, rerolled);

    // A late event marks its day dirty: that day is read raw, and the answer follows at once.
    add_raw_pageviews(&app, site, yesterday() - chrono::Duration::days(1), 10).await;
    app.db
        .client()
        .await
        .execute("INSERT INTO rollup_dirty (site_id, day) VALUES ($1, $2)", &[site.as_uuid(), &(yesterday() - chrono::Duration::days(1))])
        .await
        .unwrap();
    let late = ask(&app, &viewer, &body).await;
    assert_eq!(late, engine(&app, site, &body).await);
    assert_ne!(late["results"], rerolled["results"]);
    assert_eq!(late["meta"]["source"], "mixed");
    roll_past_days(&app, site).await;

    // Goals: the breakdown by goal follows a goal made, and one deleted, at once.
    let goals = json!({"site_id": DEMO_DOMAIN, "metrics": ["visitors"], "date_range": "7d", "dimensions": ["event:goal"]});
    let before = ask(&app, &viewer, &goals).await;
    assert_eq!(before["meta"]["source"], "rollups", "{before}");
    assert_eq!(ask(&app, &viewer, &goals).await, before);
    let owner_org: Uuid = app.db.client().await.query_one("SELECT organization_id FROM sites WHERE id = $1", &[site.as_uuid()]).await.unwrap().get(0);
    let editor = app.sign_up_verified(&format!("editor-{}@example.com", Uuid::new_v4().simple())).await;
    app.add_member(owner_org, editor.id, "editor").await;
    let goal = app
        .as_user(&editor)
        .post(&format!("/api/sites/{site}/goals"), json!({"kind": "pageview", "page_path": "/*", "display_name": "Any page"}))
        .await
        .expect(201);
    let with_goal = ask(&app, &viewer, &goals).await;
    assert_eq!(with_goal, engine(&app, site, &goals).await);
    assert!(with_goal["results"].as_array().unwrap().iter().any(|r| r["dimensions"][0] == "Any page"), "{with_goal}");
    // Rolled up again, the answer is cached again; deleting a goal (which
    // leaves its rollup rows in place) still changes it at once.
    roll_past_days(&app, site).await;
    let rolled = ask(&app, &viewer, &goals).await;
    assert_eq!(rolled["meta"]["source"], "rollups");
    assert_eq!(ask(&app, &viewer, &goals).await, rolled);
    app.as_user(&editor).delete(&format!("/api/sites/{site}/goals/{}", goal["id"].as_str().unwrap())).await.expect(204);
    let without = ask(&app, &viewer, &goals).await;
    assert_eq!(without, engine(&app, site, &goals).await);
    assert!(!without["results"].as_array().unwrap().iter().any(|r| r["dimensions"][0] == "Any page"), "{without}");

    // Today is read raw and never cached: a new event shows in the next answer.
    let today = json!({"site_id": DEMO_DOMAIN, "metrics": ["pageviews"], "date_range": "day"});
    let cached_before = stats_keys();
    let now_answer = ask(&app, &viewer, &today).await;
    assert_ne!(now_answer["meta"]["source"], "rollups");
    assert_eq!(stats_keys(), cached_before, "nothing of today is stored");
    add_raw_pageviews(&app, site, Utc::now().date_naive(), 3).await;
    let later = ask(&app, &viewer, &today).await;
    assert_eq!(later, engine(&app, site, &today).await);
    assert_ne!(later["results"], now_answer["results"]);
}

#[tokio::test]
async fn redis_caches_stats_answers_until_the_data_changes() {
    let redis = RedisServer::start();
    stats_answers_are_cached_until_the_data_changes(Some(&redis)).await;
}

/// ElastiCache with in-transit encryption: the same rules over `rediss://`.
#[tokio::test]
async fn redis_over_tls_caches_stats_answers_until_the_data_changes() {
    let redis = RedisServer::start_tls();
    stats_answers_are_cached_until_the_data_changes(Some(&redis)).await;
}

/// `rediss://` is verified: an unknown issuer or another host name fails the
/// command (the answer then comes from the database), never plaintext.
#[tokio::test]
async fn rediss_is_verified_and_never_falls_back_to_plaintext() {
    let redis = RedisServer::start_tls();
    let ttl = Duration::from_secs(60);
    let verified = RedisCache::connect_lazily(&redis.settings()).unwrap();
    verified.set("et:tls-probe", b"sealed", ttl, Write::Invalidation).await.expect("a write over verified TLS");
    assert_eq!(verified.get_many(&["et:tls-probe".to_owned()]).await.unwrap(), vec![Some(b"sealed".to_vec())]);
    assert!(redis.command(&["GET", "et:tls-probe"]).unwrap().contains("sealed"), "the TLS port's server stored it");

    let refused = [
        ("public roots only", RedisSettings::url(redis.tls_url("localhost")), "UnknownIssuer"),
        (
            "an IP not in the certificate",
            RedisSettings { url: redis.tls_url("127.0.0.1"), ca_file: Some(redis.ca_file()) },
            "not valid for name",
        ),
    ];
    for (case, settings, reason) in refused {
        let cache = RedisCache::connect_lazily(&settings).unwrap();
        let err = cache.set("et:tls-refused", b"x", ttl, Write::Invalidation).await.expect_err(case);
        assert!(err.to_string().contains(reason), "{case}: {err}");
    }
    assert!(redis.keys("et:tls-refused").is_empty(), "nothing written without verification");

    // A CA file with a plaintext URL is a configuration error, not a silent downgrade.
    let plaintext = RedisSettings { url: redis.url(), ca_file: Some(redis.ca_file()) };
    let err = RedisCache::connect_lazily(&plaintext).err().expect("refused");
    assert!(err.to_string().contains("rediss://"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let err =
        RedisCache::connect_lazily(&RedisSettings { url: redis.tls_url("localhost"), ca_file: Some(not_pem) }).err().expect("refused");
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}

#[tokio::test]
async fn the_in_process_cache_follows_the_same_rules() {
    stats_answers_are_cached_until_the_data_changes(None).await;
}

/// Another process's cached answer cannot go stale: the data version is
/// read from the database, so a re-roll made elsewhere is seen.
#[tokio::test]
async fn an_in_process_cache_sees_a_reroll_made_by_another_process() {
    let app = app_with(None).await;
    let (site, viewer) = demo(&app).await;
    let (other, _stop) = second_process(&app, Arc::new(InProcessStore::default())).await;
    let body = pages_7d(DEMO_DOMAIN);
    let ask_other = || async {
        let r = reqwest::Client::new().post(format!("{other}/api/v2/query")).bearer_auth(&viewer.access_token).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    let first = ask_other().await;
    assert_eq!(ask_other().await, first);
    // The "scheduler" (this process) re-rolls a day with more events in it.
    add_raw_pageviews(&app, site, yesterday(), 25).await;
    rollup::rollup_day(&app.state.pool, site, yesterday()).await.unwrap();
    let after = ask_other().await;
    assert_ne!(after["results"], first["results"]);
    assert_eq!(after, engine(&app, site, &body).await);
}

#[tokio::test]
async fn revoked_sessions_are_refused_at_once_by_every_process_sharing_redis() {
    let redis = RedisServer::start();
    let app = app_with(Some(&redis)).await;
    let other_cache: Arc<dyn CacheStore> = Arc::new(RedisCache::connect_lazily(&redis.settings()).unwrap());
    let (other, _stop) = second_process(&app, other_cache).await;
    let user = app.sign_up_verified("sessions@example.com").await;
    let (second_token, _) = app.log_in(&user.email, &user.password).await;
    let (third_token, _) = app.log_in(&user.email, &user.password).await;

    for token in [&user.access_token, &second_token, &third_token] {
        assert_eq!(status_at(&other, token, Method::GET, "/api/me").await, 200);
        assert_eq!(status_at(&app.url(""), token, Method::GET, "/api/me").await, 200);
    }
    assert_eq!(redis.keys("et:v1:session:*").len(), 3, "one live entry per session: {:?}", redis.keys("*"));

    // A hit: a revocation written behind the API's back (no invalidation)
    // is not seen until the entry expires (SESSION_TTL); the API's own are, below.
    let db = app.db.client().await;
    db.execute("UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1", &[&user.id]).await.unwrap();
    assert_eq!(status_at(&other, &second_token, Method::GET, "/api/me").await, 200, "served from the cache");
    db.execute("UPDATE refresh_tokens SET revoked_at = NULL WHERE user_id = $1", &[&user.id]).await.unwrap();

    // Logout in one process: the other refuses that session at once, and keeps the rest.
    assert_eq!(status_at(&app.url(""), &user.access_token, Method::POST, "/api/auth/logout").await, 204);
    assert_eq!(status_at(&other, &user.access_token, Method::GET, "/api/me").await, 401);
    assert_eq!(status_at(&other, &second_token, Method::GET, "/api/me").await, 200);

    // A password change signs every other session out, everywhere, at once.
    let changed = reqwest::Client::new()
        .post(app.url("/api/me/password"))
        .bearer_auth(&second_token)
        .json(&json!({"current_password": user.password, "new_password": "another long Passphrase 42"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200, "{}", changed.text().await.unwrap());
    assert_eq!(status_at(&other, &third_token, Method::GET, "/api/me").await, 401);
    assert_eq!(status_at(&other, &second_token, Method::GET, "/api/me").await, 200, "the session that changed it stays");

    // A deleted (locked) account is refused at once.
    let deleted = reqwest::Client::new()
        .delete(app.url("/api/me"))
        .bearer_auth(&second_token)
        .json(&json!({"confirm_email": user.email, "password": "another long Passphrase 42"}))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.text().await.unwrap());
    assert_eq!(status_at(&other, &second_token, Method::GET, "/api/me").await, 401);
}

#[tokio::test]
async fn without_redis_no_process_caches_a_session() {
    let app = app_with(None).await;
    let (other, _stop) = second_process(&app, Arc::new(InProcessStore::default())).await;
    let user = app.sign_up_verified("local-sessions@example.com").await;
    for _ in 0..3 {
        assert_eq!(status_at(&other, &user.access_token, Method::GET, "/api/me").await, 200);
    }
    // Even behind the API's back: every request asks the database.
    let db = app.db.client().await;
    db.execute("UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1", &[&user.id]).await.unwrap();
    assert_eq!(status_at(&other, &user.access_token, Method::GET, "/api/me").await, 401);
    db.execute("UPDATE refresh_tokens SET revoked_at = NULL WHERE user_id = $1", &[&user.id]).await.unwrap();
    assert_eq!(status_at(&other, &user.access_token, Method::GET, "/api/me").await, 200);
    assert_eq!(status_at(&app.url(""), &user.access_token, Method::POST, "/api/auth/logout").await, 204);
    assert_eq!(status_at(&other, &user.access_token, Method::GET, "/api/me").await, 401);
}

/// One pass of a dashboard session: stats queries (cacheable and not) and
/// authenticated reads. Each answer is (status, body), timed.
async fn dashboard_pass(app: &TestApp, viewer: &TestUser, revoked: &str) -> Vec<(u16, Value)> {
    let site = DEMO_DOMAIN;
    let queries = [
        pages_7d(site),
        json!({"site_id": site, "metrics": ["visitors", "visits", "bounce_rate", "visit_duration"], "date_range": "7d",
               "include": {"comparisons": {"mode": "previous_period"}}}),
        json!({"site_id": site, "metrics": ["visitors"], "date_range": "7d", "dimensions": ["visit:source"], "pagination": {"limit": 5}}),
        json!({"site_id": site, "metrics": ["visitors", "pageviews"], "date_range": "7d", "dimensions": ["time:day"]}),
        json!({"site_id": site, "metrics": ["pageviews"], "date_range": "day"}),
        json!({"site_id": site, "metrics": ["visitors"], "date_range": "7d", "filters": [["is", "visit:country", ["DE"]]]}),
    ];
    let mut out = Vec::new();
    for q in &queries {
        let started = Instant::now();
        let a = app.as_user(viewer).post("/api/v2/query", q.clone()).await;
        assert!(started.elapsed() < Duration::from_secs(3), "a query took {:?}", started.elapsed());
        out.push((a.status.as_u16(), a.body));
        let me = app.as_user(viewer).get("/api/me").await;
        out.push((me.status.as_u16(), me.body));
    }
    let gone = app.with_bearer(revoked).get("/api/me").await;
    out.push((gone.status.as_u16(), gone.body));
    out
}

#[tokio::test]
async fn killing_redis_mid_sequence_changes_no_answer() {
    let mut redis = RedisServer::start();
    let app = app_with(Some(&redis)).await;
    let (_, viewer) = demo(&app).await;
    let (doomed, _) = app.log_in(&viewer.email, &viewer.password).await;
    assert_eq!(app.with_bearer(&doomed).get("/api/me").await.status, 200, "the doomed session is cached as live");

    // Signed out while Redis is up; then the reference answers, cold and warm.
    assert_eq!(app.with_bearer(&doomed).post("/api/auth/logout", json!({})).await.status, 204);
    let reference = dashboard_pass(&app, &viewer, &doomed).await;
    assert!(reference.iter().all(|(s, _)| *s == 200 || *s == 401), "{reference:?}");
    assert_eq!(reference.last().unwrap().0, 401);
    assert!(!redis.keys("et:v1:stats:*").is_empty() && !redis.keys("et:v1:session:*").is_empty());
    assert_eq!(dashboard_pass(&app, &viewer, &doomed).await, reference, "warm");

    // Killed (SIGKILL) in the middle of a pass.
    let site = DEMO_DOMAIN;
    let mut mid = Vec::new();
    for (n, q) in [pages_7d(site), json!({"site_id": site, "metrics": ["visitors"], "date_range": "7d", "dimensions": ["visit:source"], "pagination": {"limit": 5}})]
        .iter()
        .enumerate()
    {
        if n == 1 {
            redis.kill();
        }
        mid.push(app.as_user(&viewer).post("/api/v2/query", q.clone()).await.expect(200));
        app.as_user(&viewer).get("/api/me").await.expect(200);
    }
    assert_eq!(mid[0], reference[0].1);
    assert_eq!(mid[1], reference[4].1);
    let started = Instant::now();
    assert_eq!(dashboard_pass(&app, &viewer, &doomed).await, reference, "while Redis is down");
    assert!(started.elapsed() < Duration::from_secs(10), "the database path took {:?}", started.elapsed());

    // A sign-out while Redis is down is refused at once too (the database says so).
    let (while_down, _) = app.log_in(&viewer.email, &viewer.password).await;
    assert_eq!(app.with_bearer(&while_down).get("/api/me").await.status, 200);
    assert_eq!(app.with_bearer(&while_down).post("/api/auth/logout", json!({})).await.status, 204);
    assert_eq!(app.with_bearer(&while_down).get("/api/me").await.status, 401);

    // Back (empty): the same answers, and the cache fills again.
    redis.restart();
    tokio::time::sleep(engagetrack_server::adapters::redis::BREAKER_OPEN + Duration::from_millis(100)).await;
    assert_eq!(dashboard_pass(&app, &viewer, &doomed).await, reference, "after the restart");
    assert_eq!(dashboard_pass(&app, &viewer, &doomed).await, reference, "warm again");
    assert!(!redis.keys("et:v1:stats:*").is_empty(), "reconnected: answers are stored again");
    assert!(!redis.keys("et:v1:session:*").is_empty(), "reconnected: sessions are stored again");
    assert_eq!(app.with_bearer(&while_down).get("/api/me").await.status, 401);
}

/// A Redis that accepts connections and never answers: each call waits at
/// most the command timeout, then the database answers.
#[tokio::test]
async fn an_unresponsive_or_absent_redis_costs_a_timeout_not_an_answer() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("redis://{}/", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("redis://{}/", closed.local_addr().unwrap());
    drop(closed);

    for url in [silent_url, closed_url] {
        let app = TestApp::spawn_with(AppConfig { redis: Some(RedisSettings::url(url.clone())), ..AppConfig::default() }).await;
        let (site, viewer) = demo(&app).await;
        let body = pages_7d(DEMO_DOMAIN);
        for _ in 0..3 {
            let started = Instant::now();
            assert_eq!(ask(&app, &viewer, &body).await, engine(&app, site, &body).await, "{url}");
            app.as_user(&viewer).get("/api/me").await.expect(200);
            assert!(started.elapsed() < Duration::from_secs(2), "{url}: {:?}", started.elapsed());
        }
        assert_eq!(app.as_user(&viewer).post("/api/auth/logout", json!({})).await.status, 204);
        assert_eq!(app.as_user(&viewer).get("/api/me").await.status, 401);
    }
}
