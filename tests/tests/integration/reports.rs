//! Email reports and traffic-spike alerts (issue 13 parts 2 and 5), end to
//! end: real PostgreSQL, the real jobs, the real SMTP sink (aiosmtpd). A
//! seeded week's report carries the Stats API's figures and the changes
//! against the seeded week before; repeated and concurrent runs send one
//! report; a member whose Monday morning has not come gets nothing yet; the
//! mailed one-click link unsubscribes without a session; spike alerts fire at
//! the threshold once an hour.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use engagetrack_server::AppConfig;
use engagetrack_server::jobs::Job;
use engagetrack_server::mail::worker::drain;
use engagetrack_server::rollup;
use engagetrack_tests::smtp_server::{Received, SinkOptions, SmtpSink};
use engagetrack_tests::{TestApp, TestUser};
use serde_json::{Value, json};
use shared::{EventId, Salt, SiteId, Visit};
use uuid::Uuid;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0";
static EVENT_NO: AtomicU64 = AtomicU64::new(1 << 40);

async fn app_with_smtp() -> (SmtpSink, TestApp) {
    let sink = SmtpSink::start(SinkOptions::default());
    let app = TestApp::spawn_with(AppConfig { smtp: Some(sink.settings()), ..AppConfig::default() }).await;
    (sink, app)
}

/// Everything queued, sent to the sink.
async fn deliver(app: &TestApp) {
    let transport = app.state.mail_transport().expect("transport").expect("SMTP is configured");
    drain(&app.state.pool, &*transport, Utc::now(), 200).await.expect("drain");
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// One beacon from `ip` (one visitor per IP and UTC day), stored as the ingest stores it.
async fn beacon(app: &TestApp, site: SiteId, at: DateTime<Utc>, ip: &str, body: Value) {
    let mut b = json!({"site": site.to_string(), "url": "https://reports.example/", "sid": format!("session-{}", ip.replace('.', "-"))});
    if let (Some(b), Value::Object(extra)) = (b.as_object_mut(), body) {
        b.extend(extra);
    }
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&EVENT_NO.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let visit = Visit { ip: ip.parse().expect("an IP"), user_agent: FIREFOX };
    let event = app
        .state
        .ingest
        .prepare(b.to_string().as_bytes(), visit, EventId::new(at, random), &Salt::from_bytes([5; 32]))
        .await
        .expect("a valid beacon")
        .expect("not a bot");
    app.state.ingest.store().write(&[event]).await.expect("stored");
}

async fn pageview(app: &TestApp, site: SiteId, at: &str, ip: &str, path: &str, referrer: Option<&str>) {
    let mut body = json!({"type": "pageview", "url": format!("https://reports.example{path}")});
    if let Some(r) = referrer {
        body["referrer"] = json!(r);
    }
    beacon(app, site, t(at), ip, body).await;
}

async fn engaged(app: &TestApp, site: SiteId, at: &str, ip: &str, path: &str, ms: i64) {
    beacon(app, site, t(at), ip, json!({"type": "engagement", "url": format!("https://reports.example{path}"), "ms": ms, "scroll": 50}))
        .await;
}

/// A site of Ann's organisation (UTC) with a `Signup` goal.
async fn site_of(app: &TestApp, owner: &TestUser) -> (SiteId, String) {
    let site = app
        .as_user(owner)
        .post(&format!("/api/organizations/{}/sites", owner.organization_id), json!({"domain": "reports.example", "timezone": "UTC"}))
        .await
        .expect(201);
    let id: Uuid = site["id"].as_str().and_then(|s| s.parse().ok()).expect("a site id");
    app.db
        .client()
        .await
        .execute(
            "INSERT INTO goals (id, site_id, kind, display_name, event_name, created_at)
             VALUES (gen_random_uuid(), $1, 'event', 'Signup', 'Signup', now() - interval '400 days')",
            &[&id],
        )
        .await
        .expect("goal");
    (SiteId::from_uuid(id), id.to_string())
}

/// Two weeks of traffic, rolled up as the `rollup` job does.
///
/// Week of Mon 23 Nov 2026: A (two pageviews, 60 s engaged, a signup) and B
/// (a bounce) on Monday, C (a bounce) on Wednesday, A again on Friday (two
/// pageviews, 28 s): 4 visitors, 4 visits, 6 pageviews, 2 bounces, 88 s.
/// Week of Mon 16 Nov: D (a bounce, 10 s) and E (a bounce): 2 visitors,
/// 2 pageviews, 2 bounces, 10 s.
async fn seed_two_weeks(app: &TestApp, site: SiteId) {
    let google = Some("https://www.google.com/");
    pageview(app, site, "2026-11-23T10:00:00Z", "192.0.2.1", "/", google).await;
    pageview(app, site, "2026-11-23T10:02:00Z", "192.0.2.1", "/pricing", None).await;
    engaged(app, site, "2026-11-23T10:03:00Z", "192.0.2.1", "/pricing", 60_000).await;
    beacon(
        app,
        site,
        t("2026-11-23T10:04:00Z"),
        "192.0.2.1",
        json!({"type": "custom", "name": "Signup", "url": "https://reports.example/pricing"}),
    )
    .await;
    pageview(app, site, "2026-11-23T12:00:00Z", "192.0.2.2", "/", None).await;
    pageview(app, site, "2026-11-25T09:00:00Z", "192.0.2.3", "/blog", google).await;
    pageview(app, site, "2026-11-27T15:00:00Z", "192.0.2.1", "/pricing", None).await;
    engaged(app, site, "2026-11-27T15:00:30Z", "192.0.2.1", "/pricing", 28_000).await;
    pageview(app, site, "2026-11-27T15:01:00Z", "192.0.2.1", "/", None).await;

    pageview(app, site, "2026-11-17T11:00:00Z", "192.0.2.4", "/", None).await;
    engaged(app, site, "2026-11-17T11:00:10Z", "192.0.2.4", "/", 10_000).await;
    pageview(app, site, "2026-11-19T11:00:00Z", "192.0.2.5", "/", None).await;
    for d in 16..=29 {
        rollup::rollup_day(&app.state.pool, site, day(&format!("2026-11-{d}"))).await.expect("rollup");
    }
}

async fn put_settings(app: &TestApp, user: &TestUser, site: &str, body: Value) -> Value {
    app.as_user(user).send(reqwest::Method::PUT, &format!("/api/sites/{site}/mail-settings"), Some(&body)).await.expect(200)
}

async fn run(app: &TestApp, job: Job, now: DateTime<Utc>) -> Value {
    job.run(&app.state, now).await.unwrap_or_else(|e| panic!("{}: {e}", job.name()))["mail"].clone()
}

fn reports_to(sink: &SmtpSink, to: &str) -> Vec<Received> {
    sink.received_by(to).into_iter().filter(|m| m.subject.contains(" report for ")).collect()
}

/// The `List-Unsubscribe` URL, without its angle brackets.
fn unsubscribe_url(mail: &Received) -> String {
    let header = mail.list_unsubscribe.as_deref().expect("a List-Unsubscribe header");
    assert_eq!(mail.list_unsubscribe_post.as_deref(), Some("List-Unsubscribe=One-Click"));
    header.trim_start_matches('<').trim_end_matches('>').to_owned()
}

const MONDAY_8_UTC: &str = "2026-11-30T08:00:00Z";

#[tokio::test]
async fn a_weekly_report_carries_the_stats_api_figures_once_at_each_members_monday_morning() {
    let (sink, app) = app_with_smtp().await;
    let ann = app.sign_up_verified("ann@example.com").await;
    let bob = app.sign_up_verified("bob@example.com").await;
    app.add_member(ann.organization_id, bob.id, "viewer").await;
    let (site, site_id) = site_of(&app, &ann).await;
    seed_two_weeks(&app, site).await;

    let saved =
        put_settings(&app, &ann, &site_id, json!({"weekly": true, "monthly": false, "spike_threshold": null, "timezone": "UTC"})).await;
    assert_eq!(saved, json!({"weekly": true, "monthly": false, "spike_threshold": null, "timezone": "UTC", "effective_timezone": "UTC"}));
    // Bob's Monday 07:00 is 15:00 UTC.
    let saved =
        put_settings(&app, &bob, "reports.example", json!({"weekly": true, "monthly": true, "timezone": "america/los_angeles"})).await;
    assert_eq!(saved["effective_timezone"], "America/Los_Angeles", "{saved}");

    // Two runs at once, then a third: Ann's report is queued once; Bob's is not due.
    let now = t(MONDAY_8_UTC);
    let (a, b) = tokio::join!(run(&app, Job::SendReports, now), run(&app, Job::SendReports, now));
    assert_eq!(a["queued"].as_u64().unwrap_or(0) + b["queued"].as_u64().unwrap_or(0), 1, "{a} {b}");
    assert_eq!(run(&app, Job::SendReports, now + Duration::minutes(15)).await["queued"], 0);
    deliver(&app).await;
    assert!(reports_to(&sink, "bob@example.com").is_empty(), "midnight in Los Angeles: not due");
    let mails = reports_to(&sink, "ann@example.com");
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.subject, "23 Nov – 29 Nov 2026 weekly report for reports.example");
    assert_eq!(mail.content_type, "multipart/alternative");

    // The figures are the Stats API's for the same dates, and the seeded ones.
    let query = |range: [&str; 2]| json!({"site_id": "reports.example", "metrics": ["visitors", "pageviews", "bounce_rate", "visit_duration"], "date_range": range});
    let api = app.as_user(&ann).post("/api/v2/query", query(["2026-11-23", "2026-11-29"])).await.expect(200);
    assert_eq!(api["results"][0]["metrics"], json!([4, 6, 50.0, 22]), "{api}");
    let before = app.as_user(&ann).post("/api/v2/query", query(["2026-11-16", "2026-11-22"])).await.expect(200);
    assert_eq!(before["results"][0]["metrics"], json!([2, 2, 100.0, 5]), "{before}");
    let text = mail.text.as_deref().expect("a text part");
    for line in [
        "Visitors: 4 (previous 2, change +100 %)",
        "Pageviews: 6 (previous 2, change +200 %)",
        "Bounce rate: 50.0 % (previous 100.0 %, change -50.0 pt)",
        "Visit duration: 22s (previous 5s, change +340 %)",
        "Compared with 16 Nov – 22 Nov 2026",
        "/: 3 visitors, 3 pageviews",
        "/pricing: 2 visitors, 2 pageviews",
        "Signup: 1 visitors, 1 conversions",
    ] {
        assert!(text.contains(line), "`{line}` is missing from:\n{text}");
    }
    let pages = app
        .as_user(&ann)
        .post(
            "/api/v2/query",
            json!({"site_id": site_id, "metrics": ["visitors", "pageviews"], "date_range": ["2026-11-23", "2026-11-29"], "dimensions": ["event:page"]}),
        )
        .await
        .expect(200);
    assert!(pages["results"].as_array().expect("rows").contains(&json!({"dimensions": ["/pricing"], "metrics": [2, 2]})), "{pages}");
    let sources = app
        .as_user(&ann)
        .post(
            "/api/v2/query",
            json!({"site_id": site_id, "metrics": ["visitors"], "date_range": ["2026-11-23", "2026-11-29"], "dimensions": ["visit:source"]}),
        )
        .await
        .expect(200);
    for row in sources["results"].as_array().expect("rows") {
        let line = format!("{}: {} visitors", row["dimensions"][0].as_str().unwrap_or_default(), row["metrics"][0]);
        assert!(text.contains(&line), "`{line}` (from the Stats API) is missing from:\n{text}");
    }
    // The daily chart: a bar per day, Monday 2 visitors, Wednesday and Friday 1.
    let html = mail.html.as_deref().expect("an HTML part");
    assert_eq!(html.matches("vertical-align:bottom;height:80px").count(), 7, "seven days: {html}");
    assert!(
        html.contains(r#"title="2026-11-23: 2""#) && html.contains(r#"title="2026-11-25: 1""#) && html.contains(r#"title="2026-11-24: 0""#)
    );
    assert!(!html.contains("<script") && !html.contains("<img"), "{html}");
    assert!(unsubscribe_url(mail).contains("/api/unsubscribe?token="));

    // Bob's Monday morning comes at 15:00 UTC: his weekly report, the same figures; his monthly waits for 1 December.
    assert_eq!(run(&app, Job::SendReports, t("2026-11-30T15:00:00Z")).await["queued"], 1);
    deliver(&app).await;
    let bobs = reports_to(&sink, "bob@example.com");
    assert_eq!(bobs.len(), 1);
    assert!(bobs[0].text.as_deref().is_some_and(|b| b.contains("Visitors: 4 (previous 2, change +100 %)")), "{:?}", bobs[0].text);
    assert_eq!(reports_to(&sink, "ann@example.com").len(), 1, "nothing more for Ann");

    // 1 December, 07:00 in Los Angeles: Bob's monthly report, November against October (no data: "new").
    assert_eq!(run(&app, Job::SendReports, t("2026-12-01T15:00:00Z")).await["queued"], 1);
    deliver(&app).await;
    let monthly = reports_to(&sink, "bob@example.com").pop().expect("the monthly report");
    assert_eq!(monthly.subject, "November 2026 monthly report for reports.example");
    let month = app.as_user(&bob).post("/api/v2/query", query(["2026-11-01", "2026-11-30"])).await.expect(200);
    assert_eq!(month["results"][0]["metrics"][0], 6, "{month}");
    let text = monthly.text.as_deref().unwrap_or_default();
    assert!(text.contains("Visitors: 6 (previous 0, change new)") && text.contains("Compared with October 2026"), "{text}");
    assert_eq!(monthly.html.as_deref().unwrap_or_default().matches("vertical-align:bottom;height:80px").count(), 30, "a bar per day");
}

#[tokio::test]
async fn the_mailed_link_unsubscribes_without_a_session_and_tampered_tokens_are_refused() {
    let (sink, app) = app_with_smtp().await;
    let ann = app.sign_up_verified("ann@example.com").await;
    let (site, site_id) = site_of(&app, &ann).await;
    seed_two_weeks(&app, site).await;
    put_settings(&app, &ann, &site_id, json!({"weekly": true, "monthly": false})).await;
    assert_eq!(run(&app, Job::SendReports, t(MONDAY_8_UTC)).await["queued"], 1);
    deliver(&app).await;
    let link = unsubscribe_url(&reports_to(&sink, "ann@example.com")[0]);
    let path = link.split_once("/api/").map(|(_, p)| format!("/api/{p}")).expect("an /api/ link");
    let http = reqwest::Client::new();

    // GET shows the page and changes nothing (link checkers follow GETs).
    let page = http.get(app.url(&path)).send().await.expect("GET");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().is_ok_and(|c| c.starts_with("text/html")));
    let page = page.text().await.expect("page");
    assert!(
        page.contains("Stop the weekly report of reports.example?") && page.contains(r#"name="List-Unsubscribe" value="One-Click""#),
        "{page}"
    );
    assert_eq!(app.as_user(&ann).get(&format!("/api/sites/{site_id}/mail-settings")).await.expect(200)["weekly"], true);

    // A tampered token (one character changed), a garbled one, none at all: refused with a reason, never 5xx.
    let token = path.split_once("token=").map(|(_, t)| t.to_owned()).expect("a token");
    let flipped: String = token.chars().enumerate().map(|(i, c)| if i == 30 { if c == 'A' { 'B' } else { 'A' } } else { c }).collect();
    for (bad, status) in [(flipped.as_str(), 403), ("garbled!", 400), ("", 400)] {
        let get = http.get(app.url(&format!("/api/unsubscribe?token={bad}"))).send().await.expect("GET");
        assert_eq!(get.status(), status, "GET {bad:?}");
        let post = http
            .post(app.url(&format!("/api/unsubscribe?token={bad}")))
            .form(&[("List-Unsubscribe", "One-Click")])
            .send()
            .await
            .expect("POST");
        assert_eq!(post.status(), status, "POST {bad:?}");
        assert!(post.text().await.unwrap_or_default().contains("This link does not work"));
    }
    // A POST without the RFC 8058 body does nothing.
    let post = http.post(app.url(&path)).form(&[("something", "else")]).send().await.expect("POST");
    assert_eq!(post.status(), 400);

    // One click, no session: unsubscribed; again: the same answer.
    for _ in 0..2 {
        let post = http.post(app.url(&path)).form(&[("List-Unsubscribe", "One-Click")]).send().await.expect("POST");
        assert_eq!(post.status(), 200);
        assert!(post.text().await.unwrap_or_default().contains("unsubscribed from the weekly report of reports.example"));
    }
    assert_eq!(app.as_user(&ann).get(&format!("/api/sites/{site_id}/mail-settings")).await.expect(200)["weekly"], false);

    // The next Monday's run sends her nothing.
    assert_eq!(run(&app, Job::SendReports, t("2026-12-07T08:00:00Z")).await["queued"], 0);
    deliver(&app).await;
    assert_eq!(reports_to(&sink, "ann@example.com").len(), 1);
}

#[tokio::test]
async fn mail_settings_check_their_input_and_the_callers_standing() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up_verified("ann@example.com").await;
    let (_, site_id) = site_of(&app, &ann).await;
    let path = format!("/api/sites/{site_id}/mail-settings");
    let fresh = app.as_user(&ann).get(&path).await.expect(200);
    assert_eq!(fresh, json!({"weekly": false, "monthly": false, "spike_threshold": null, "timezone": null, "effective_timezone": "UTC"}));
    let put = |body: Value| {
        let client = app.as_user(&ann);
        let path = path.clone();
        async move { client.send(reqwest::Method::PUT, &path, Some(&body)).await }
    };
    put(json!({"weekly": true, "monthly": false, "spike_threshold": 0})).await.expect_error(400, "spike_threshold");
    put(json!({"weekly": true, "monthly": false, "spike_threshold": 5_000_000})).await.expect_error(400, "spike_threshold");
    put(json!({"weekly": true, "monthly": false, "timezone": "Mars/Olympus"})).await.expect_error(400, "timezone");
    put(json!({"weekly": true})).await.expect_error(400, "monthly");
    put(json!({"weekly": true, "monthly": false, "colour": "red"})).await.expect_error(400, "colour");
    assert_eq!(app.as_user(&ann).get(&path).await.expect(200), fresh, "a refused PUT changes nothing");
    // What GET answers may be sent back as it is.
    let mut round_trip = fresh.clone();
    round_trip["spike_threshold"] = json!(25);
    assert_eq!(put(round_trip.clone()).await.expect(200), round_trip);
    // The data export holds them too.
    let export = app.as_user(&ann).get("/api/me/export").await.expect(200);
    assert_eq!(export["mail_subscriptions"][0]["site"], "reports.example", "{export}");
    assert_eq!(export["mail_subscriptions"][0]["spike_threshold"], 25, "{export}");

    // A stranger does not see the site; a billing member may not read its stats.
    let eve = app.sign_up_verified("eve@example.com").await;
    app.as_user(&eve).get(&path).await.expect(404);
    app.add_member(ann.organization_id, eve.id, "billing").await;
    app.as_user(&eve).get(&path).await.expect(403);
    app.anonymous().get(&path).await.expect(401);
}

/// `n` visitors with a pageview a minute before `at`.
async fn visitors_at(app: &TestApp, site: SiteId, at: DateTime<Utc>, n: u8, offset: u8) {
    for i in 0..n {
        let body = json!({"type": "pageview", "url": "https://reports.example/live"});
        beacon(app, site, at - Duration::minutes(1), &format!("198.51.100.{}", offset + i), body).await;
    }
}

#[tokio::test]
async fn a_spike_alert_fires_at_the_threshold_once_an_hour() {
    let (sink, app) = app_with_smtp().await;
    let ann = app.sign_up_verified("ann@example.com").await;
    let bob = app.sign_up_verified("bob@example.com").await;
    app.add_member(ann.organization_id, bob.id, "editor").await;
    let (site, site_id) = site_of(&app, &ann).await;
    put_settings(&app, &ann, &site_id, json!({"weekly": false, "monthly": false, "spike_threshold": 3})).await;
    put_settings(&app, &bob, &site_id, json!({"weekly": false, "monthly": false, "spike_threshold": 4})).await;
    let alerts = |to: &str| sink.received_by(to).into_iter().filter(|m| m.subject.starts_with("Traffic spike")).count();

    // Two visitors: below both thresholds.
    let now = Utc::now();
    visitors_at(&app, site, now, 2, 1).await;
    assert_eq!(run(&app, Job::SpikeAlerts, now).await["queued"], 0);
    // A third: Ann's threshold, as the realtime view counts it; two runs at once send her one alert.
    visitors_at(&app, site, now, 1, 3).await;
    let realtime = app.as_user(&ann).get(&format!("/api/sites/{site_id}/realtime")).await.expect(200);
    assert_eq!(realtime["visitors"], 3, "{realtime}");
    let (a, b) = tokio::join!(run(&app, Job::SpikeAlerts, now), run(&app, Job::SpikeAlerts, now));
    assert_eq!(a["queued"].as_u64().unwrap_or(0) + b["queued"].as_u64().unwrap_or(0), 1, "{a} {b}");
    deliver(&app).await;
    assert_eq!((alerts("ann@example.com"), alerts("bob@example.com")), (1, 0));
    let mail = sink.received_by("ann@example.com").into_iter().find(|m| m.subject.starts_with("Traffic spike")).expect("the alert");
    assert_eq!(mail.subject, "Traffic spike on reports.example: 3 visitors now");
    assert!(unsubscribe_url(&mail).contains("/api/unsubscribe?token="));

    // Still busy ten and fifty-nine minutes later: no second alert within the hour.
    for minutes in [10, 59] {
        let later = now + Duration::minutes(minutes);
        visitors_at(&app, site, later, 3, 10).await;
        assert_eq!(run(&app, Job::SpikeAlerts, later).await["queued"], 0, "{minutes} min");
    }
    // An hour on: again; four visitors reach Bob's threshold too.
    let hour = now + Duration::minutes(61);
    visitors_at(&app, site, hour, 4, 20).await;
    assert_eq!(run(&app, Job::SpikeAlerts, hour).await["queued"], 2);
    deliver(&app).await;
    assert_eq!((alerts("ann@example.com"), alerts("bob@example.com")), (2, 1));

    // Unsubscribed through Bob's link: his alerts stop, Ann's go on.
    let bobs = sink.received_by("bob@example.com").into_iter().find(|m| m.subject.starts_with("Traffic spike")).expect("Bob's alert");
    let link = unsubscribe_url(&bobs);
    let path = link.split_once("/api/").map(|(_, p)| format!("/api/{p}")).expect("an /api/ link");
    let post = reqwest::Client::new().post(app.url(&path)).form(&[("List-Unsubscribe", "One-Click")]).send().await.expect("POST");
    assert_eq!(post.status(), 200);
    let settings = app.as_user(&bob).get(&format!("/api/sites/{site_id}/mail-settings")).await.expect(200);
    assert_eq!(settings["spike_threshold"], Value::Null);
    let two_hours = now + Duration::minutes(125);
    visitors_at(&app, site, two_hours, 4, 30).await;
    assert_eq!(run(&app, Job::SpikeAlerts, two_hours).await["queued"], 1);
}

#[tokio::test]
async fn without_mail_link_key_runs_fail_only_when_there_is_mail_and_links_answer_503() {
    // An empty value is no key (the local file would otherwise make one).
    let app = TestApp::spawn_with_secrets(AppConfig::default(), &[("mail-link-key", b"")]).await;
    let ann = app.sign_up_verified("ann@example.com").await;
    let (site, site_id) = site_of(&app, &ann).await;
    seed_two_weeks(&app, site).await;
    assert_eq!(run(&app, Job::SendReports, t(MONDAY_8_UTC)).await["queued"], 0, "nothing due: the run succeeds");
    put_settings(&app, &ann, &site_id, json!({"weekly": true, "monthly": false})).await;
    let e = Job::SendReports.run(&app.state, t(MONDAY_8_UTC)).await.expect_err("a report is due and cannot be signed");
    assert!(e.to_string().contains("mail-link-key"), "{e}");
    let delivered: i64 = app.db.client().await.query_one("SELECT count(*) FROM report_deliveries", &[]).await.expect("count").get(0);
    assert_eq!(delivered, 0, "nothing was claimed, so the next run with a key sends it");
    let page = reqwest::get(app.url("/api/unsubscribe?token=abc")).await.expect("GET");
    assert_eq!(page.status(), 503);
    assert!(page.text().await.unwrap_or_default().contains("mail-link-key"));
}
