//! Plausible's Events API (`POST /api/event`) with the payloads of Plausible's
//! own documentation and trackers: the answers Plausible gives (202 `ok`,
//! `x-plausible-dropped: 1`, 400 with a reason), and the counts in our Stats API
//! that Plausible would show for the same events.

use std::num::NonZeroU32;

use chrono::Utc;
use engagetrack_server::AppConfig;
use engagetrack_server::client_ip::ClientIpMode;
use engagetrack_server::stats::{self, QueryRequest, StatsSite};
use engagetrack_tests::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::SiteId;
use uuid::Uuid;

/// The User-Agent of Plausible's curl example.
const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/91.0.4472.124 Safari/537.36";

async fn proxy_app() -> TestApp {
    TestApp::spawn_with(AppConfig { client_ip: ClientIpMode::Proxy, ..AppConfig::default() }).await
}

/// A site with this domain, in an organisation of its own.
async fn site(app: &TestApp, domain: &str) -> SiteId {
    let client = app.db.client().await;
    let (org, site) = (Uuid::new_v4(), Uuid::new_v4());
    let slug = format!("org-{}", &org.simple().to_string()[..12]);
    client.execute("INSERT INTO organizations (id, name, slug) VALUES ($1, 'Test org', $2)", &[&org, &slug]).await.unwrap();
    client.execute("INSERT INTO sites (id, organization_id, domain, name) VALUES ($1, $2, $3, $3)", &[&site, &org, &domain]).await.unwrap();
    SiteId::from_uuid(site)
}

struct Answer {
    status: StatusCode,
    dropped: bool,
    cors: Option<String>,
    body: String,
}

async fn post_as(app: &TestApp, content_type: &str, ua: &str, forwarded_for: &str, body: impl Into<reqwest::Body>) -> Answer {
    let r = reqwest::Client::new()
        .post(app.url("/api/event"))
        .header("content-type", content_type)
        .header("user-agent", ua)
        .header("x-forwarded-for", forwarded_for)
        .header("origin", "https://dummy.site")
        .body(body)
        .send()
        .await
        .expect("request");
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (status, dropped, cors) =
        (r.status(), header("x-plausible-dropped").as_deref() == Some("1"), header("access-control-allow-origin"));
    Answer { status, dropped, cors, body: r.text().await.unwrap() }
}

async fn post(app: &TestApp, body: Value) -> Answer {
    post_as(app, "application/json", UA, "127.0.0.1", body.to_string()).await
}

fn recorded(a: &Answer) {
    assert_eq!((a.status, a.dropped, a.body.as_str()), (StatusCode::ACCEPTED, false, "ok"), "{}", a.body);
}

fn dropped(a: &Answer) {
    assert_eq!((a.status, a.dropped, a.body.as_str()), (StatusCode::ACCEPTED, true, "ok"), "{}", a.body);
}

async fn query(app: &TestApp, site: SiteId, body: Value) -> Vec<(Vec<String>, Vec<Value>)> {
    let mut body = body;
    body["site_id"] = json!(site.to_string());
    body["date_range"] = json!("day");
    let request: QueryRequest = serde_json::from_value(body).unwrap();
    let answer = stats::query(&app.state.pool, &StatsSite { id: site, timezone: "UTC".into() }, request, Utc::now()).await.unwrap();
    answer.results.into_iter().map(|r| (r.dimensions, r.metrics)).collect()
}

async fn totals(app: &TestApp, site: SiteId) -> Vec<Value> {
    query(app, site, json!({"metrics": ["visitors", "pageviews", "events"]})).await.remove(0).1
}

#[tokio::test]
async fn the_documented_payloads_give_plausibles_counts() {
    let app = proxy_app().await;
    let dummy = site(&app, "dummy.site").await;

    // Plausible's curl example: User-Agent and X-Forwarded-For name the visitor.
    let pageview = json!({"name": "pageview", "url": "http://dummy.site", "domain": "dummy.site"});
    recorded(&post(&app, pageview.clone()).await);
    recorded(&post(&app, pageview.clone()).await);
    recorded(&post_as(&app, "application/json", UA, "127.0.0.2", pageview.to_string()).await);
    assert_eq!(totals(&app, dummy).await, [json!(2), json!(3), json!(0)], "two visitors (two addresses), three pageviews");

    // A custom event with props; the old tracker's JSON-string `p` with short names, as text/plain.
    let signup =
        json!({"name": "Signup", "url": "http://dummy.site/register", "domain": "dummy.site", "props": {"plan": "pro", "seats": 3}});
    recorded(&post(&app, signup).await);
    let old_tracker = json!({"n": "Signup", "u": "http://dummy.site/register", "d": "dummy.site", "r": null, "w": 1280, "h": 0,
                             "p": "{\"plan\":\"free\"}"});
    recorded(&post_as(&app, "text/plain", UA, "127.0.0.2", old_tracker.to_string()).await);
    let plans = query(&app, dummy, json!({"metrics": ["visitors", "events"], "dimensions": ["event:props:plan"], "order_by": [["visitors", "desc"], ["event:props:plan", "asc"]]})).await;
    assert_eq!(plans, [(vec!["free".to_owned()], vec![json!(1), json!(1)]), (vec!["pro".to_owned()], vec![json!(1), json!(1)])]);

    // Revenue with a string amount counts; an invalid currency keeps the event without revenue.
    recorded(
        &post(
            &app,
            json!({"name": "Purchase", "url": "http://dummy.site/checkout", "domain": "dummy.site",
                               "revenue": {"amount": "15.99", "currency": "USD"}}),
        )
        .await,
    );
    recorded(
        &post(
            &app,
            json!({"n": "Purchase", "u": "http://dummy.site/checkout", "d": "dummy.site",
                               "$": {"amount": 10, "currency": "USD"}}),
        )
        .await,
    );
    recorded(
        &post(
            &app,
            json!({"name": "Purchase", "url": "http://dummy.site/checkout", "domain": "dummy.site",
                               "revenue": {"amount": "5.00", "currency": "ABC"}}),
        )
        .await,
    );
    let names = query(
        &app,
        dummy,
        json!({"metrics": ["visitors", "events", "total_revenue"], "dimensions": ["event:name"], "order_by": [["event:name", "asc"]]}),
    )
    .await;
    let purchase = names.iter().find(|(d, _)| d == &["Purchase"]).unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(purchase.1[..2], [json!(1), json!(3)], "one visitor, three purchases (the bad revenue one too)");
    assert_eq!(purchase.1[2]["USD"], json!({"value": 25.99, "currency": "USD"}));
    let signups = names.iter().find(|(d, _)| d == &["Signup"]).unwrap();
    assert_eq!(signups.1[..2], [json!(2), json!(2)]);
    assert_eq!(totals(&app, dummy).await, [json!(2), json!(3), json!(5)], "custom events are events, not pageviews");

    // A bot and an unknown domain: accepted, dropped, said so.
    dropped(&post_as(&app, "text/plain", "curl/8.5.0", "127.0.0.3", pageview.to_string()).await);
    let mut bot = pageview.clone();
    bot["url"] = json!("http://dummy.site/?from=bot");
    dropped(
        &post_as(
            &app,
            "text/plain",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "127.0.0.3",
            bot.to_string(),
        )
        .await,
    );
    dropped(&post(&app, json!({"name": "pageview", "url": "http://unknown.site/", "domain": "unknown.site"})).await);
    assert_eq!(totals(&app, dummy).await, [json!(2), json!(3), json!(5)], "nothing dropped was counted");
    assert_eq!(app.count_events(dummy).await, 8);
}

#[tokio::test]
async fn bad_payloads_get_400_or_413_with_a_reason_and_cors_like_api_e() {
    let app = proxy_app().await;
    let dummy = site(&app, "dummy.site").await;
    let cases: [(&str, String, StatusCode, &str); 7] = [
        ("bad JSON", "{\"name\": \"pageview\",".into(), StatusCode::BAD_REQUEST, "invalid JSON"),
        ("not an object", "[1]".into(), StatusCode::BAD_REQUEST, "JSON object"),
        ("missing url", json!({"name": "pageview", "domain": "dummy.site"}).to_string(), StatusCode::BAD_REQUEST, "`url` is required"),
        (
            "missing name",
            json!({"url": "http://dummy.site/", "domain": "dummy.site"}).to_string(),
            StatusCode::BAD_REQUEST,
            "`name` is required",
        ),
        (
            "bad url",
            json!({"name": "pageview", "url": "dummy", "domain": "dummy.site"}).to_string(),
            StatusCode::BAD_REQUEST,
            "`url` is not a URL",
        ),
        (
            "blank domain",
            json!({"name": "pageview", "url": "http://dummy.site/", "domain": ""}).to_string(),
            StatusCode::BAD_REQUEST,
            "can't be blank",
        ),
        (
            "too large",
            format!("{{\"name\":\"pageview\",\"url\":\"http://dummy.site/\",\"x\":\"{}\"}}", "a".repeat(20_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
        ),
    ];
    for (name, body, status, reason) in cases {
        let a = post_as(&app, "text/plain", UA, "127.0.0.1", body).await;
        assert_eq!(a.status, status, "{name}: {}", a.body);
        let error: Value = serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{name}: no JSON error: {e}: {}", a.body));
        assert!(error["error"].as_str().unwrap_or_default().contains(reason), "{name}: {}", a.body);
        assert_eq!(a.cors.as_deref(), Some("*"), "{name}: a browser must be able to read the answer");
    }
    assert_eq!(app.count_events(dummy).await, 0);
    let ok = post(&app, json!({"name": "pageview", "url": "http://dummy.site/", "domain": "dummy.site"})).await;
    assert_eq!(ok.cors.as_deref(), Some("*"));
}

#[tokio::test]
async fn automatic_events_domains_and_site_ids_map_onto_ours() {
    let app = proxy_app().await;
    let a = site(&app, "a.example").await;
    let b = site(&app, "www.b.example").await;
    let inactive = site(&app, "inactive.example").await;
    app.db.client().await.execute("UPDATE sites SET active = false WHERE id = $1", &[inactive.as_uuid()]).await.unwrap();

    // A comma-separated list records the event for each site; `www.` is no part of a domain; a site id names its site.
    recorded(&post(&app, json!({"n": "pageview", "u": "https://www.a.example/docs#intro", "d": "www.a.example,b.example"})).await);
    recorded(&post(&app, json!({"n": "pageview", "u": "https://a.example/"})).await);
    recorded(&post(&app, json!({"n": "pageview", "u": "https://elsewhere.example/", "d": b.to_string()})).await);
    dropped(&post(&app, json!({"n": "pageview", "u": "https://inactive.example/"})).await);
    assert_eq!((app.count_events(a).await, app.count_events(b).await, app.count_events(inactive).await), (2, 2, 0));

    // A pageview's props (the tracker's `customProperties`) are kept: filters on them count its pageviews.
    recorded(&post(&app, json!({"n": "pageview", "u": "https://a.example/authors", "d": "a.example", "p": {"author": "ann"}})).await);
    let by_ann = json!({"metrics": ["visitors", "pageviews"], "filters": [["is", "event:props:author", ["ann"]]]});
    assert_eq!(query(&app, a, by_ann).await, [(vec![], vec![json!(1), json!(1)])]);

    // The tracker's automatic events become what our own script records.
    let events = [
        json!({"n": "Outbound Link: Click", "u": "https://a.example/docs", "d": "a.example", "p": {"url": "https://github.com/x"}}),
        json!({"n": "File Download", "u": "https://a.example/docs", "d": "a.example", "p": {"url": "https://a.example/guide.pdf"}}),
        json!({"n": "Form: Submission", "u": "https://a.example/contact", "d": "a.example"}),
        json!({"n": "engagement", "u": "https://a.example/docs", "d": "a.example", "sd": 80, "e": 15000, "v": 36}),
        json!({"n": "404", "u": "https://a.example/nope", "d": "a.example", "p": {"path": "/nope"}, "i": false}),
    ];
    for e in events {
        recorded(&post(&app, e).await);
    }
    let rows = app
        .db
        .client()
        .await
        .query(
            "SELECT event_type, name, pathname, target, engaged_ms, scroll_depth, props::text FROM events
             WHERE site_id = $1 AND event_type <> 'pageview' ORDER BY ts, id",
            &[a.as_uuid()],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, String, Option<String>, Option<i32>, Option<i16>, String)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6))).collect();
    let row = |t: &str, n: &str, p: &str, target: Option<&str>, ms: Option<i32>, sd: Option<i16>, props: &str| {
        (t.to_owned(), n.to_owned(), p.to_owned(), target.map(str::to_owned), ms, sd, props.to_owned())
    };
    assert_eq!(
        got,
        [
            row("outbound", "outbound", "/docs", Some("https://github.com/x"), None, None, "{}"),
            row("download", "download", "/docs", Some("https://a.example/guide.pdf"), None, None, "{}"),
            row("form", "form", "/contact", None, None, None, "{}"),
            row("engagement", "engagement", "/docs", None, Some(15000), Some(80), "{}"),
            row("custom", "404", "/nope", None, None, None, r#"{"path": "/nope"}"#),
        ]
    );
}

#[tokio::test]
async fn the_rate_limit_of_api_e_holds_here_too() {
    let app = TestApp::spawn_with(AppConfig { site_beacon_rate: NonZeroU32::new(3), ..AppConfig::default() }).await;
    site(&app, "dummy.site").await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(post(&app, json!({"name": "pageview", "url": "http://dummy.site/", "domain": "dummy.site"})).await.status);
    }
    assert!(statuses.contains(&StatusCode::ACCEPTED) && statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
}

/// The cloud path: API Gateway hands `/api/event` to the ingest function
/// (template.yaml), which answers as the local binary does.
#[tokio::test]
async fn the_ingest_lambda_serves_api_event_as_the_local_binary() {
    use engagetrack_tests::lambda_emulator::{Function, HttpRequest, Lambda, database_url, send_local};
    let app = TestApp::spawn().await;
    let dummy = site(&app, "dummy.site").await;
    let mut ingest = Lambda::start(
        Function::Ingest,
        &[("DATABASE_URL", database_url(&app.db.config)), ("ENGAGETRACK_SECRETS_FILE", app.secrets_file().display().to_string())],
    )
    .await;
    let request = |body: Value| {
        HttpRequest::new("POST", "/api/event")
            .header("content-type", "text/plain")
            .header("user-agent", UA)
            .body(body.to_string())
            .source_ip("203.0.113.9")
    };
    for (body, dropped) in [
        (json!({"n": "pageview", "u": "https://dummy.site/lambda", "d": "dummy.site"}), None),
        (json!({"n": "pageview", "u": "https://unknown.site/"}), Some("1")),
    ] {
        let (lambda, local) = (ingest.http(&request(body.clone())).await, send_local(&app.url(""), &request(body)).await);
        assert_eq!(lambda.visible(), local.visible());
        assert_eq!((lambda.status, lambda.headers.get("x-plausible-dropped").map(String::as_str)), (202, dropped));
    }
    let bad = request(json!({"n": "pageview"}));
    let (lambda, local) = (ingest.http(&bad).await, send_local(&app.url(""), &bad).await);
    assert_eq!((lambda.status, lambda.visible()), (400, local.visible()));
    assert_eq!(app.count_events(dummy).await, 2, "one from the Lambda, one from the local binary");
}
