//! Visitor requests over HTTP: find, export and erase one visitor's events
//! by identify() user id, identify() email and storage-mode visitor id, with
//! beacons sent through the real ingest (signed edge batches for past days,
//! `POST /api/e` for today). Erasing must take exactly the visitor's events
//! and their part of the rollups: a control site that never received the
//! visitor answers every Stats API query the same as the erased site.

use chrono::{Duration, NaiveDate, Utc};
use engagetrack_server::AppConfig;
use engagetrack_server::client_ip::ClientIpMode;
use engagetrack_server::rollup;
use engagetrack_server::visitor_requests::NormalisedEmail;
use engagetrack_tests::TestApp;
use engagetrack_tests::TestUser;
use serde_json::{Value, json};
use shared::batch::{self, Batch, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use shared::{EventId, Processed, Salt, SiteId, Visit};

use crate::rollups::rollup_table;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0";
const ANN_ID: &str = "user-ann-42";
const ANN_EMAIL: &str = "Ann.Lee@Example.com";
const VERA_VID: &str = "vera-visitor-id-0001";

/// One beacon: who sends it, when (days back, 0 = today through `POST /api/e`;
/// minutes after 10:00 UTC), from which address, in which session.
struct Hit {
    who: &'static str,
    days_back: i64,
    minute: i64,
    ip: &'static str,
    sid: &'static str,
    vid: Option<&'static str>,
    extra: Value,
}

fn page(path: &str, referrer: &str) -> Value {
    json!({"type": "pageview", "url": format!("https://a.example{path}"), "referrer": referrer})
}

fn identify(email: Option<&str>) -> Value {
    let mut user = json!({"id": ANN_ID});
    if let Some(email) = email {
        user["email"] = email.into();
        user["name"] = "Ann Lee".into();
    }
    json!({"type": "identify", "url": "https://a.example/signup", "user": user})
}

/// Ann is identified (user id in three sessions, email in the first), and
/// on day -2 shares her address and browser with Bob (one memory-mode hash);
/// Vera is in storage mode; Carl and Dana are anonymous.
fn hits() -> Vec<Hit> {
    let h = |who, days_back, minute, ip, sid, vid, extra| Hit { who, days_back, minute, ip, sid, vid, extra };
    vec![
        h("carl", 3, 0, "192.0.2.10", "carl-session-1", None, page("/", "https://www.google.com/")),
        h("carl", 3, 2, "192.0.2.10", "carl-session-1", None, page("/pricing", "")),
        h("vera", 3, 5, "192.0.2.20", "vera-session-1", Some(VERA_VID), page("/blog", "https://twitter.com/x")),
        h("vera", 3, 6, "192.0.2.20", "vera-session-1", Some(VERA_VID), page("/blog/post", "")),
        // The session begins before midnight UTC: another day's salt, another hash.
        h("ann", 3, 13 * 60 + 40, "192.0.2.30", "ann-session-1", None, page("/welcome", "")),
        h("ann", 2, 0, "192.0.2.30", "ann-session-1", None, page("/pricing", "https://www.google.com/")),
        h("ann", 2, 1, "192.0.2.30", "ann-session-1", None, identify(Some(&format!("  {ANN_EMAIL} ")))),
        h("ann", 2, 2, "192.0.2.30", "ann-session-1", None, page("/signup", "")),
        h("bob", 2, 5, "192.0.2.30", "bob-session-1", None, page("/pricing", "https://www.google.com/")),
        h("bob", 2, 6, "192.0.2.30", "bob-session-1", None, page("/docs", "")),
        h("ann", 1, 0, "192.0.2.31", "ann-session-2", None, page("/dashboard", "")),
        h("ann", 1, 1, "192.0.2.31", "ann-session-2", None, identify(None)),
        // A new address in the same page load: another hash, the same session.
        h("ann", 1, 2, "192.0.2.35", "ann-session-2", None, page("/settings", "")),
        h("vera", 1, 3, "192.0.2.21", "vera-session-2", Some(VERA_VID), page("/blog", "https://twitter.com/x")),
        h("carl", 1, 4, "192.0.2.10", "carl-session-2", None, page("/docs", "https://duckduckgo.com/")),
        h("ann", 0, 0, "192.0.2.32", "ann-session-3", None, page("/dashboard", "")),
        h("ann", 0, 0, "192.0.2.32", "ann-session-3", None, identify(None)),
        h("vera", 0, 0, "192.0.2.22", "vera-session-3", Some(VERA_VID), page("/blog", "https://twitter.com/x")),
        h("dana", 0, 0, "192.0.2.40", "dana-session-1", None, page("/", "https://www.bing.com/")),
    ]
}

fn body(site: SiteId, hit: &Hit) -> Value {
    let mut b = hit.extra.clone();
    b["site"] = site.to_string().into();
    b["sid"] = hit.sid.into();
    if let Some(vid) = hit.vid {
        b["vid"] = vid.into();
    }
    b
}

/// Sends the hits of everyone but `except` to `site`: past days as one signed
/// edge batch (the edge's own ids and salts), today one by one to `POST /api/e`.
async fn send(app: &TestApp, site: SiteId, except: &[&str]) {
    let today = Utc::now().date_naive();
    let mut past = Vec::new();
    let http = reqwest::Client::new();
    for (n, hit) in hits().iter().enumerate().filter(|(_, h)| !except.contains(&h.who)) {
        let b = body(site, hit);
        if hit.days_back == 0 {
            let r = http
                .post(app.url("/api/e"))
                .header("content-type", "text/plain")
                .header("user-agent", UA)
                .header("x-forwarded-for", hit.ip)
                .body(b.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
            continue;
        }
        let at = (today - Duration::days(hit.days_back)).and_hms_opt(10, 0, 0).unwrap().and_utc() + Duration::minutes(hit.minute);
        let id = EventId::new(at, [n as u8; 10]);
        let salt = Salt::from_bytes([hit.days_back as u8; 32]);
        let visit = Visit { ip: hit.ip.parse().unwrap(), user_agent: UA };
        match app.state.ingest.pipeline().process(b.to_string().as_bytes(), visit, &salt, id).unwrap() {
            Processed::Event(e) => past.push(*e),
            Processed::Bot(r) => panic!("{r}"),
        }
    }
    let payload = serde_json::to_vec(&Batch { events: past }).unwrap();
    let now = Utc::now().timestamp();
    let r = http
        .post(app.url("/ingest/batch"))
        .header(TIMESTAMP_HEADER, now.to_string())
        .header(SIGNATURE_HEADER, batch::sign(&app.edge_signing_key(), now, &payload))
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

fn days() -> Vec<NaiveDate> {
    let today = Utc::now().date_naive();
    (0..=3).map(|back| today - Duration::days(back)).collect()
}

async fn create_site(app: &TestApp, owner: &TestUser, domain: &str, timezone: &str) -> SiteId {
    let site = app
        .as_user(owner)
        .post(&format!("/api/organizations/{}/sites", owner.organization_id), json!({"domain": domain, "timezone": timezone}))
        .await
        .expect(201);
    SiteId::from_uuid(site["id"].as_str().unwrap().parse().unwrap())
}

/// The Stats API's answers the test compares: an aggregate, a daily
/// timeseries, and breakdowns by page and by source, over the four days.
async fn stats(app: &TestApp, owner: &TestUser, site: SiteId) -> Vec<Value> {
    let today = Utc::now().date_naive();
    let range = json!([(today - Duration::days(3)).to_string(), today.to_string()]);
    let queries = [
        json!({"metrics": ["visitors", "visits", "pageviews", "bounce_rate", "views_per_visit"]}),
        json!({"metrics": ["visitors", "visits", "pageviews"], "dimensions": ["time:day"]}),
        json!({"metrics": ["visitors", "pageviews"], "dimensions": ["event:page"]}),
        json!({"metrics": ["visitors", "visits"], "dimensions": ["visit:source"]}),
    ];
    let mut answers = Vec::new();
    for mut q in queries {
        q["site_id"] = site.to_string().into();
        q["date_range"] = range.clone();
        answers.push(app.as_user(owner).post("/api/v2/query", q).await.expect(200)["results"].clone());
    }
    answers
}

fn path(site: SiteId, action: &str) -> String {
    format!("/api/sites/{site}/visitor-requests/{action}")
}

#[tokio::test]
async fn find_export_and_erase_by_each_key_take_exactly_the_visitor() {
    let app = TestApp::spawn_with(AppConfig { client_ip: ClientIpMode::Proxy, ..AppConfig::default() }).await;
    let owner = app.sign_up_verified("owner@visitors.example").await;
    let site = create_site(&app, &owner, "a.example", "UTC").await;
    // The control: the same traffic without Ann and Vera.
    let control = create_site(&app, &owner, "control.example", "UTC").await;
    send(&app, site, &[]).await;
    send(&app, control, &["ann", "vera"]).await;
    for day in days().into_iter().skip(1) {
        rollup::rollup_day(&app.state.pool, site, day).await.unwrap();
        rollup::rollup_day(&app.state.pool, control, day).await.unwrap();
    }
    let as_owner = app.as_user(&owner);

    // Find, by each key.
    let by_user = as_owner.post(&path(site, "find"), json!({"user_id": ANN_ID})).await.expect(200);
    assert_eq!(
        (&by_user["key_kind"], &by_user["events"], &by_user["sessions"], &by_user["days"]),
        (&json!("user_id"), &json!(9), &json!(3), &json!(4))
    );
    // The email is matched trimmed and case-insensitively, on the identify of the first session.
    let by_email = as_owner.post(&path(site, "find"), json!({"email": "ann.lee@EXAMPLE.com"})).await.expect(200);
    assert_eq!((&by_email["events"], &by_email["sessions"], &by_email["days"]), (&json!(4), &json!(1), &json!(2)), "{by_email}");
    let by_vid = as_owner.post(&path(site, "find"), json!({"visitor_id": VERA_VID})).await.expect(200);
    assert_eq!((&by_vid["events"], &by_vid["sessions"], &by_vid["days"]), (&json!(4), &json!(3), &json!(3)), "{by_vid}");
    assert!(by_vid["first_seen"].as_str().unwrap() < by_vid["last_seen"].as_str().unwrap());
    let nobody = as_owner.post(&path(site, "find"), json!({"user_id": "nobody"})).await.expect(200);
    assert_eq!((&nobody["events"], &nobody["first_seen"]), (&json!(0), &Value::Null));

    // Export: the visitor's events, the identify details decrypted.
    let export = as_owner.post(&path(site, "export"), json!({"email": ANN_EMAIL})).await.expect(200);
    assert_eq!(export["count"], 4);
    let events = export["events"].as_array().unwrap();
    let ident = events.iter().find(|e| e["event_type"] == "identify").expect("the identify event");
    assert_eq!(ident["details"]["email"], format!("  {ANN_EMAIL} "), "as the site sent it");
    assert_eq!((&ident["details"]["name"], &ident["user_id"]), (&json!("Ann Lee"), &json!(ANN_ID)));
    assert!(events.iter().all(|e| e.get("visitor_hash").is_none() && e.get("sensitive").is_none() && e.get("email_key").is_none()));
    assert_eq!(events.iter().map(|e| e["pathname"].as_str().unwrap()).collect::<Vec<_>>(), ["/welcome", "/pricing", "/signup", "/signup"]);
    let vera = as_owner.post(&path(site, "export"), json!({"visitor_id": VERA_VID})).await.expect(200);
    assert_eq!(vera["count"], 4);

    // Erase Ann by user id: exactly her 9 events, her 4 days re-rolled.
    let before = stats(&app, &owner, site).await;
    assert_ne!(before, stats(&app, &owner, control).await, "the control differs while Ann and Vera are in");
    let pageviews = |answers: &[Value]| answers[0][0]["metrics"][2].as_i64().unwrap();
    let erased = as_owner.post(&path(site, "erase"), json!({"user_id": ANN_ID})).await.expect(200);
    assert_eq!((&erased["events"], &erased["sessions"]), (&json!(9), &json!(3)));
    let today = Utc::now().date_naive();
    let expected_days: Vec<String> = (0..=3).rev().map(|b| (today - Duration::days(b)).to_string()).collect();
    assert_eq!(erased["rerolled_days"], json!(expected_days));
    assert_eq!(erased["pending_days"], json!([]));
    let after_ann = stats(&app, &owner, site).await;
    assert_eq!(pageviews(&before) - pageviews(&after_ann), 6, "Ann's six pageviews, and only those");
    // Bob shared Ann's memory-mode hash on day -2 and keeps his events.
    let bob: i64 = app
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE site_id = $1 AND session_hash = $2",
            &[site.as_uuid(), &shared::SessionHash::new(site, "bob-session-1").as_i64()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(bob, 2);
    assert_eq!(as_owner.post(&path(site, "find"), json!({"user_id": ANN_ID})).await.expect(200)["events"], 0);
    assert_eq!(as_owner.post(&path(site, "find"), json!({"email": ANN_EMAIL})).await.expect(200)["events"], 0);

    // Erase Vera by her storage-mode id: the site now answers as the control.
    let erased = as_owner.post(&path(site, "erase"), json!({"visitor_id": VERA_VID})).await.expect(200);
    assert_eq!(erased["events"], 4);
    rollup::rollup_day(&app.state.pool, control, today).await.unwrap();
    assert_eq!(stats(&app, &owner, site).await, stats(&app, &owner, control).await, "every other visitor's numbers are unchanged");
    assert_eq!(rollup_table(&app, site).await, rollup_table(&app, control).await, "the rollups hold no trace of Ann or Vera");
    // And they are what a fresh rollup of the remaining raw events gives.
    let kept = rollup_table(&app, site).await;
    for day in days() {
        rollup::rollup_day(&app.state.pool, site, day).await.unwrap();
    }
    assert_eq!(rollup_table(&app, site).await, kept);
    let dirty: i64 =
        app.db.client().await.query_one("SELECT count(*) FROM rollup_dirty WHERE site_id = $1", &[site.as_uuid()]).await.unwrap().get(0);
    assert_eq!(dirty, 0, "every erased day was rebuilt");

    // The audit log: one row per request, with the key's kind, never the key.
    let client = app.db.client().await;
    let rows = client.query("SELECT action, details FROM audit_log WHERE action LIKE 'visitor_request.%' ORDER BY id", &[]).await.unwrap();
    let actions: Vec<(String, String)> =
        rows.iter().map(|r| (r.get(0), r.get::<_, Value>(1)["key_kind"].as_str().unwrap().to_owned())).collect();
    let expect = |a: &str, k: &str| (format!("visitor_request.{a}"), k.to_owned());
    assert_eq!(
        actions,
        [
            expect("found", "user_id"),
            expect("found", "email"),
            expect("found", "visitor_id"),
            expect("found", "user_id"),
            expect("exported", "email"),
            expect("exported", "visitor_id"),
            expect("erased", "user_id"),
            expect("found", "user_id"),
            expect("found", "email"),
            expect("erased", "visitor_id"),
        ]
    );
    let erase_row: Value = rows[6].get(1);
    assert_eq!((&erase_row["events"], &erase_row["site"]), (&json!(9), &json!(site.to_string())));
    assert_eq!(rows[0].get::<_, Value>(1)["key_digest"], rows[7].get::<_, Value>(1)["key_digest"], "one visitor, one digest");
    assert_ne!(rows[0].get::<_, Value>(1)["key_digest"], rows[3].get::<_, Value>(1)["key_digest"], "another visitor, another digest");
    let audit: String = client.query_one("SELECT string_agg(a::text, ' ') FROM audit_log a", &[]).await.unwrap().get(0);
    for secret in [ANN_ID, "ann.lee", VERA_VID, "nobody"] {
        assert!(!audit.to_lowercase().contains(&secret.to_lowercase()), "{secret} is in the audit log");
    }
}

#[tokio::test]
async fn only_owners_and_admins_of_the_site_may_ask_and_the_key_must_name_someone() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up_verified("owner@roles.example").await;
    let site = create_site(&app, &owner, "roles.example", "UTC").await;
    let ask = json!({"user_id": ANN_ID});
    for role in ["admin", "editor", "viewer", "billing"] {
        let member = app.sign_up_verified(&format!("{role}@roles.example")).await;
        app.add_member(owner.organization_id, member.id, role).await;
        for action in ["find", "export", "erase"] {
            let answer = app.as_user(&member).post(&path(site, action), ask.clone()).await;
            if role == "admin" {
                answer.expect(200);
            } else {
                answer.expect_error(403, "does not allow");
            }
        }
    }
    let outsider = app.sign_up_verified("outsider@elsewhere.example").await;
    app.as_user(&outsider).post(&path(site, "erase"), ask.clone()).await.expect_error(404, "site not found");
    app.anonymous().post(&path(site, "find"), ask.clone()).await.expect(401);

    let as_owner = app.as_user(&owner);
    as_owner
        .post(&path(site, "find"), json!({"user_id": "a", "visitor_id": VERA_VID}))
        .await
        .expect_error(422, "got user_id and visitor_id");
    as_owner.post(&path(site, "find"), json!({})).await.expect_error(422, "memory mode stores no IP address");
    as_owner.post(&path(site, "erase"), json!({"ip_address": "192.0.2.1"})).await.expect_error(422, "memory mode stores no IP address");
    as_owner.post(&path(site, "find"), json!({"visitor_id": "short"})).await.expect_error(422, "16 to 64 characters");
    as_owner.post(&path(site, "find"), json!({"email": "not-an-address"})).await.expect_error(422, "`email`");
    as_owner.post(&path(site, "find"), json!({"user_id": ""})).await.expect_error(422, "`user_id`");
    as_owner.post(&path(site, "find"), json!({"ip": "192.0.2.1"})).await.expect_error(400, "unknown field");
    as_owner.post(&path(site, "find"), json!({"user_id": 7})).await.expect(400);
    as_owner.post_raw(&path(site, "find"), "application/json", "{").await.expect(400);
    // No audit row for a refused request.
    let n: i64 =
        app.db.client().await.query_one("SELECT count(*) FROM audit_log WHERE action LIKE 'visitor_request.%'", &[]).await.unwrap().get(0);
    assert_eq!(n, 3, "the admin's three requests only");
}

#[tokio::test]
async fn an_identify_email_is_stored_only_encrypted_and_as_a_keyed_hash() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let distinctive = "Privacy.Probe-7Q@Example.org";
    for b in [
        json!({"site": site.to_string(), "type": "identify", "url": "https://example.com/", "sid": "probe-session", "user": {"id": "probe", "email": distinctive}}),
        json!({"site": site.to_string(), "type": "pageview", "url": "https://example.com/", "sid": "probe-session"}),
    ] {
        let r = reqwest::Client::new()
            .post(app.url("/api/e"))
            .header("content-type", "text/plain")
            .header("user-agent", UA)
            .body(b.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let dump = app.db.dump().await.to_lowercase();
    assert!(dump.contains("identify"), "the dump holds the events");
    assert!(!dump.contains("privacy.probe"), "the email reached the database in plaintext");
    let rows = app.db.client().await.query("SELECT event_type, email_key FROM events ORDER BY event_type", &[]).await.unwrap();
    let keys: Vec<(String, Option<Vec<u8>>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected = app.state.visitor_lookup.email_key(&NormalisedEmail::new(distinctive)).expect("the local store has the key");
    assert_eq!(keys, [("identify".to_owned(), Some(expected)), ("pageview".to_owned(), None)]);
    // The hash is keyed: a plain SHA-256 of the address is not it.
    use sha2::Digest;
    assert_ne!(keys[0].1.as_deref(), Some(sha2::Sha256::digest(distinctive.to_lowercase()).as_slice()));
}

/// Rollups are kept per UTC day; a site in another time zone reads its own
/// days from them and from raw events. Erasing re-rolls the UTC days, and
/// the site still answers as its control in its own days.
#[tokio::test]
async fn a_site_in_another_time_zone_answers_as_its_control_after_an_erase() {
    let app = TestApp::spawn_with(AppConfig { client_ip: ClientIpMode::Proxy, ..AppConfig::default() }).await;
    let owner = app.sign_up_verified("owner@tokyo.example").await;
    let site = create_site(&app, &owner, "tokyo.example", "Asia/Tokyo").await;
    let control = create_site(&app, &owner, "tokyo-control.example", "Asia/Tokyo").await;
    send(&app, site, &[]).await;
    send(&app, control, &["ann", "vera"]).await;
    for day in days() {
        rollup::rollup_day(&app.state.pool, site, day).await.unwrap();
        rollup::rollup_day(&app.state.pool, control, day).await.unwrap();
    }
    assert_ne!(stats(&app, &owner, site).await, stats(&app, &owner, control).await);
    for key in [json!({"user_id": ANN_ID}), json!({"visitor_id": VERA_VID})] {
        let erased = app.as_user(&owner).post(&path(site, "erase"), key).await.expect(200);
        assert_eq!(erased["pending_days"], json!([]), "{erased}");
    }
    assert_eq!(stats(&app, &owner, site).await, stats(&app, &owner, control).await);
    assert_eq!(rollup_table(&app, site).await, rollup_table(&app, control).await);
}
