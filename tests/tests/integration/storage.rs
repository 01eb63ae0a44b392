//! Storage: migrations, exactly-once writes, the salt store, the demo seed.

use chrono::{Duration, TimeZone, Utc};
use engagetrack_server::adapters::postgres as db;
use engagetrack_server::salt::{PgSaltStore, SaltStore};
use engagetrack_server::seed::{SeedOptions, seed_demo};
use engagetrack_tests::{TestApp, TestDb};
use shared::{EventId, Salt, Visit};

#[tokio::test]
async fn rerunning_migrations_is_a_no_op() {
    let test_db = TestDb::create().await;
    let pool = test_db.pool();
    let first = db::migrate(&pool).await.unwrap();
    assert!(!first.is_empty());
    let schema = |client: tokio_postgres::Client| async move {
        client
            .query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    let before = schema(test_db.client().await).await;
    assert!(db::migrate(&pool).await.unwrap().is_empty());
    assert_eq!(schema(test_db.client().await).await, before);
    for table in ["organizations", "users", "memberships", "sites", "events", "salts", "daily_rollups", "audit_log"] {
        assert!(before.iter().any(|t| t == table), "{table} missing from {before:?}");
    }
}

#[tokio::test]
async fn a_retried_batch_is_stored_once() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let salt = Salt::from_bytes([5; 32]);
    let visit =
        Visit { ip: "198.51.100.1".parse().unwrap(), user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0" };
    let mut batch = Vec::new();
    for n in 0..50 {
        let body = format!(r#"{{"site":"{site}","type":"pageview","url":"https://example.com/{n}","sid":"abcdefgh"}}"#);
        let id = EventId::new(Utc::now(), rand_bytes(n));
        batch.push(app.state.ingest.prepare(body.as_bytes(), visit, id, &salt).await.unwrap().expect("not a bot"));
    }
    let store = app.state.ingest.store();
    assert_eq!(store.write(&batch).await.unwrap(), 50);
    assert_eq!(store.write(&batch).await.unwrap(), 0, "a retry stores nothing new");
    let mut overlapping = batch[25..].to_vec();
    overlapping.extend(batch[..5].iter().cloned());
    assert_eq!(store.write(&overlapping).await.unwrap(), 0);
    assert_eq!(app.count_events(site).await, 50);
}

fn rand_bytes(n: u8) -> [u8; 10] {
    let mut b = [7u8; 10];
    b[9] = n;
    b
}

#[tokio::test]
async fn salts_rotate_daily_and_die_after_the_grace_hour() {
    let test_db = TestDb::create().await;
    let pool = test_db.pool();
    db::migrate(&pool).await.unwrap();
    let store = PgSaltStore::new(pool);
    let day0 = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let today = store.salt_for(day0.date_naive(), day0).await.unwrap();
    assert_eq!(store.salt_for(day0.date_naive(), day0).await.unwrap(), today, "stable within the day");
    store.rotate(day0).await.unwrap();

    let next_midnight = Utc.with_ymd_and_hms(2026, 3, 2, 0, 30, 0).unwrap();
    let tomorrow = store.salt_for(next_midnight.date_naive(), next_midnight).await.unwrap();
    assert_ne!(tomorrow, today, "a new day, a new salt");
    assert_eq!(store.rotate(next_midnight).await.unwrap(), vec![], "yesterday survives the grace hour");
    assert!(store.salt_for(day0.date_naive(), next_midnight).await.is_ok(), "late events of yesterday still hash");

    let after_grace = next_midnight + Duration::hours(1);
    assert_eq!(store.rotate(after_grace).await.unwrap(), vec![day0.date_naive()]);
    assert!(store.salt_for(day0.date_naive(), after_grace).await.is_err(), "nothing can recompute yesterday");

    // A week of rotations: never a salt older than 48 hours.
    for days in 2..9 {
        let now = day0 + Duration::days(days) + Duration::hours(3);
        store.rotate(now).await.unwrap();
        let oldest: Option<chrono::NaiveDate> = test_db.client().await.query_one("SELECT min(day) FROM salts", &[]).await.unwrap().get(0);
        let age = now - oldest.unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
        assert!(age < Duration::hours(48), "salt of {oldest:?} still alive at {now}");
    }
}

#[tokio::test]
async fn seed_demo_sends_a_month_through_the_ingest_path() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let options = SeedOptions { days: 30, visitors: 600, seed: 7 };
    let demo = seed_demo(&app.state, now, options).await.unwrap();
    assert!(demo.events_sent > 1_000, "{}", demo.events_sent);
    assert_eq!(demo.events_sent, demo.events_stored);
    let client = app.db.client().await;
    let row = client
        .query_one(
            "SELECT count(DISTINCT ts::date), count(DISTINCT pathname), count(DISTINCT referrer_host),
                    count(DISTINCT utm_campaign), count(DISTINCT screen_width), count(DISTINCT event_type),
                    count(DISTINCT (ts::date, visitor_hash))
             FROM events WHERE site_id = $1",
            &[demo.site_id.as_uuid()],
        )
        .await
        .unwrap();
    let n = |i| row.get::<_, i64>(i);
    assert!(n(0) >= 29, "spread over the month: {} days", n(0));
    assert!(n(1) >= 8 && n(2) >= 8 && n(3) >= 3 && n(4) >= 5 && n(5) >= 6);
    assert!(n(6) > 500, "daily unique visitors: {}", n(6));

    let login: String = client.query_one("SELECT password_hash FROM users WHERE email = $1", &[&demo.email]).await.unwrap().get(0);
    assert!(engagetrack_server::accounts::verify_password(&demo.password, &login));

    let again = seed_demo(&app.state, now, options).await.unwrap();
    assert_eq!((again.site_id, again.events_sent), (demo.site_id, 0), "a second run adds no traffic");
    assert_ne!(again.password, demo.password, "but resets the password it prints");
}

/// The schema that ships is plain PostgreSQL (TimescaleDB cannot be had on
/// this machine kind or on RDS; see README "Storage"): `events` is an
/// ordinary table with a BRIN index on `ts`, and a site's time range is read
/// through the primary key, not by scanning every site's rows.
#[tokio::test]
async fn the_shipped_schema_is_plain_postgresql_with_brin_on_event_time() {
    let test_db = TestDb::create().await;
    db::migrate(&test_db.pool()).await.unwrap();
    let client = test_db.client().await;
    let timescale: i64 = client.query_one("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'", &[]).await.unwrap().get(0);
    assert_eq!(timescale, 0, "the Timescale branch ran without the extension preloaded");
    let indexes: Vec<(String, String)> = client
        .query("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(indexes.iter().any(|(name, def)| name == "events_ts_brin" && def.contains("USING brin (ts)")), "{indexes:?}");
    assert!(indexes.iter().any(|(_, def)| def.contains("UNIQUE") && def.contains("(site_id, ts, id)")), "{indexes:?}");
    client.batch_execute("SET enable_seqscan = off").await.unwrap();
    let plan: String = client
        .query("EXPLAIN SELECT count(*) FROM events WHERE site_id = '00000000-0000-0000-0000-000000000001' AND ts >= now() - interval '1 day'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan.contains("events_pkey"), "a site's day is read by the primary key:\n{plan}");
}
