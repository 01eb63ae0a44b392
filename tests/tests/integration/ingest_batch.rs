//! Signed batches from the edge (`POST /ingest/batch`), and the enrichment
//! the local beacon path stores.

use chrono::Utc;
use engagetrack_server::AppConfig;
use engagetrack_server::client_ip::ClientIpMode;
use engagetrack_tests::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::batch::{self, Batch, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use shared::{EventId, Pipeline, Processed, Salt, SiteId, Visit};

const CHROME: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

fn events(site: SiteId, n: u8) -> Batch {
    let pipeline = Pipeline::default();
    let salt = Salt::from_bytes([9; 32]);
    let events = (0..n)
        .map(|i| {
            let body = format!(r#"{{"site":"{site}","type":"pageview","url":"https://example.com/p{i}","sid":"batch-session"}}"#);
            let visit = Visit { ip: "192.0.2.44".parse().unwrap(), user_agent: CHROME };
            let mut random = [3u8; 10];
            random[9] = i;
            match pipeline.process(body.as_bytes(), visit, &salt, EventId::new(Utc::now(), random)).unwrap() {
                Processed::Event(e) => *e,
                Processed::Bot(r) => panic!("{r}"),
            }
        })
        .collect();
    Batch { events }
}

async fn send(app: &TestApp, body: &[u8], key: &[u8], timestamp: i64) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/ingest/batch"))
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, batch::sign(key, timestamp, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_signed_batch_is_stored_once_and_a_replay_changes_nothing() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let body = serde_json::to_vec(&events(site, 20)).unwrap();
    let now = Utc::now().timestamp();
    let first = send(&app, &body, &app.edge_signing_key(), now).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.json::<Value>().await.unwrap(), json!({"stored": 20, "duplicates": 0, "rejected": 0, "over_quota": 0}));
    let replay = send(&app, &body, &app.edge_signing_key(), now).await;
    assert_eq!(replay.json::<Value>().await.unwrap(), json!({"stored": 0, "duplicates": 20, "rejected": 0, "over_quota": 0}));
    assert_eq!(app.count_events(site).await, 20);
    let browser: Option<String> =
        app.db.client().await.query_one("SELECT browser FROM events WHERE site_id = $1 LIMIT 1", &[site.as_uuid()]).await.unwrap().get(0);
    assert_eq!(browser.as_deref(), Some("Chrome"), "enrichment travels in the batch");
}

#[tokio::test]
async fn unsigned_forged_or_stale_batches_are_refused() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let body = serde_json::to_vec(&events(site, 3)).unwrap();
    let now = Utc::now().timestamp();
    let cases = [
        ("wrong key", send(&app, &body, b"not the key", now).await, "does not match"),
        ("stale", send(&app, &body, &app.edge_signing_key(), now - 3600).await, "window"),
        ("unsigned", reqwest::Client::new().post(app.url("/ingest/batch")).body(body.clone()).send().await.unwrap(), "missing"),
    ];
    for (name, response, reason) in cases {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert!(response.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains(reason), "{name}");
    }
    let garbage = send(&app, b"{\"events\": 7}", &app.edge_signing_key(), now).await;
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    let mut bad = events(site, 2);
    bad.events[1].scroll_depth = Some(400);
    let invalid = send(&app, &serde_json::to_vec(&bad).unwrap(), &app.edge_signing_key(), now).await;
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    assert!(invalid.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("engagement out of bounds"));
    assert_eq!(app.count_events(site).await, 0);
}

#[tokio::test]
async fn events_of_unknown_sites_are_counted_as_rejected() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let mut batch = events(site, 2);
    batch.events.extend(events(SiteId::from_uuid(uuid_v4()), 3).events);
    let body = serde_json::to_vec(&batch).unwrap();
    let response = send(&app, &body, &app.edge_signing_key(), Utc::now().timestamp()).await;
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"stored": 2, "duplicates": 0, "rejected": 3, "over_quota": 0}));
}

fn uuid_v4() -> uuid::Uuid {
    uuid::Uuid::from_u128(0x1234_5678_9abc_4def_8123_456789abcdef)
}

#[tokio::test]
async fn the_beacon_path_enriches_and_drops_bots() {
    let geo = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/testdata/GeoIP2-City-Test.mmdb").into();
    let app = TestApp::spawn_with(AppConfig { client_ip: ClientIpMode::Proxy, geo_files: vec![geo], ..AppConfig::default() }).await;
    let site = app.create_site().await;
    let beacon = json!({"site": site.to_string(), "type": "pageview", "sid": "enrich-sess",
                        "url": "https://example.com/?utm_source=newsletter&utm_medium=email", "referrer": ""});
    let post = |ua: &'static str| {
        let body = beacon.to_string();
        let url = app.url("/api/e");
        async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "text/plain")
                .header("user-agent", ua)
                .header("x-forwarded-for", "81.2.69.142")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(post(CHROME).await, StatusCode::ACCEPTED);
    assert_eq!(post("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)").await, StatusCode::ACCEPTED);
    assert_eq!(
        post("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/142.0.0.0 Safari/537.36").await,
        StatusCode::ACCEPTED
    );
    assert_eq!(app.count_events(site).await, 1, "bots answered 202 but not stored");
    let row = app
        .db
        .client()
        .await
        .query_one(
            "SELECT browser, browser_version, os, device, referrer_source, channel, country, region, city, utm_source FROM events WHERE site_id = $1",
            &[site.as_uuid()],
        )
        .await
        .unwrap();
    let got: Vec<Option<String>> = (0..10).map(|i| row.get(i)).collect();
    let want = ["Chrome", "142", "macOS", "desktop", "newsletter", "Email", "GB", "England", "London", "newsletter"];
    assert_eq!(got, want.map(|s| Some(s.to_owned())));
}
