//! Imports over HTTP: files shaped exactly like each tool's export
//! (tests/fixtures/imports/) go in through `POST /api/sites/{id}/imports`
//! and show in the Stats API with `include.imports` (and not without); a
//! re-import of the same range replaces, another range adds, a corrupt file
//! is refused with its file name and line and leaves nothing, DELETE takes
//! an import's rows away; Umami's database is read from a real PostgreSQL
//! database holding Umami's v3 tables.

use engagetrack_tests::{TestApp, TestDb, TestUser};
use serde_json::{Value, json};
use shared::SiteId;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/imports").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn create_site(app: &TestApp, owner: &TestUser, domain: &str) -> SiteId {
    let site = app
        .as_user(owner)
        .post(&format!("/api/organizations/{}/sites", owner.organization_id), json!({"domain": domain, "timezone": "UTC"}))
        .await
        .expect(201);
    SiteId::from_uuid(site["id"].as_str().unwrap().parse().unwrap())
}

/// Uploads `body` as the file; answers the status and the JSON body.
async fn upload(app: &TestApp, user: &TestUser, site: SiteId, query: &str, body: Vec<u8>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(app.url(&format!("/api/sites/{site}/imports?{query}")))
        .bearer_auth(&user.access_token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn import_file(app: &TestApp, user: &TestUser, site: SiteId, source: &str, name: &str) -> Value {
    let (status, body) = upload(app, user, site, &format!("source={source}&file_name={name}"), fixture(name)).await;
    assert_eq!(status, 201, "{name}: {body}");
    assert_eq!(body["status"], "done", "{body}");
    body
}

/// A Stats API v2 query over whole days, with or without imported data.
async fn query(app: &TestApp, user: &TestUser, site: SiteId, range: [&str; 2], metrics: &[&str], dims: &[&str], imports: bool) -> Value {
    let mut q = json!({"site_id": site.to_string(), "metrics": metrics, "date_range": range, "dimensions": dims});
    if imports {
        q["include"] = json!({"imports": true});
    }
    app.as_user(user).post("/api/v2/query", q).await.expect(200)
}

/// `{dimension values joined by "|": metric values}` of an answer.
fn rows(answer: &Value) -> Vec<(String, Vec<Value>)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let key = r["dimensions"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect::<Vec<_>>().join("|");
            (key, r["metrics"].as_array().unwrap().clone())
        })
        .collect()
}

async fn imported_rows(app: &TestApp, site: SiteId) -> i64 {
    let db = app.db.client().await;
    let mut n = 0;
    for t in [
        "visitors",
        "sources",
        "pages",
        "entry_pages",
        "exit_pages",
        "custom_events",
        "locations",
        "devices",
        "browsers",
        "operating_systems",
    ] {
        let c: i64 =
            db.query_one(&format!("SELECT count(*) FROM imported_{t} WHERE site_id = $1"), &[site.as_uuid()]).await.unwrap().get(0);
        n += c;
    }
    n
}

const JAN: [&str; 2] = ["2024-01-01", "2024-01-31"];

#[tokio::test]
async fn a_plausible_export_shows_with_imports_replaces_on_reimport_and_deletes() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up_verified("owner@imports.example").await;
    let site = create_site(&app, &owner, "imports.example").await;
    let visit_metrics = ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"];

    let first = import_file(&app, &owner, site, "plausible", "plausible_example_com_20240201.zip").await;
    assert_eq!(
        (first["source"].as_str(), first["range_start"].as_str(), first["range_end"].as_str()),
        (Some("plausible"), Some("2024-01-01"), Some("2024-01-31"))
    );
    assert_eq!(first["rows_done"], first["rows_total"]);
    let stored = imported_rows(&app, site).await;
    assert_eq!(stored, first["rows_total"].as_i64().unwrap());

    // The totals of imported_visitors: 17 visitors, 20 visits, 41 pageviews, 7 bounces, 720 s.
    let with = query(&app, &owner, site, JAN, &visit_metrics, &[], true).await;
    assert_eq!(rows(&with), vec![(String::new(), vec![json!(17), json!(20), json!(41), json!(35.0), json!(36)])]);
    assert_eq!(with["meta"]["imports_included"], true, "{}", with["meta"]);
    let without = query(&app, &owner, site, JAN, &visit_metrics, &[], false).await;
    assert_eq!(rows(&without)[0].1[0], json!(0));
    assert!(without["meta"].get("imports_included").is_none(), "{}", without["meta"]);

    // Breakdowns read their own table; a value the tool had none for is no row.
    let sources = query(&app, &owner, site, JAN, &["visitors", "visits"], &["visit:source"], true).await;
    assert_eq!(rows(&sources), vec![("Google".into(), vec![json!(7), json!(8)]), ("Hacker News".into(), vec![json!(5), json!(6)])]);
    let pages = query(&app, &owner, site, JAN, &["visitors", "pageviews"], &["event:page"], true).await;
    assert_eq!(rows(&pages), vec![("/".into(), vec![json!(14), json!(27)]), ("/pricing".into(), vec![json!(4), json!(12)])]);
    let days = query(&app, &owner, site, JAN, &["visitors"], &["time:day"], true).await;
    assert_eq!(rows(&days)[..2], [("2024-01-01".into(), vec![json!(10)]), ("2024-01-02".into(), vec![json!(5)])]);
    let places = query(&app, &owner, site, JAN, &["visitors"], &["visit:country", "visit:region"], true).await;
    assert_eq!(rows(&places), vec![("DE|DE-BE".into(), vec![json!(6)])], "FR has no region");
    let goals = query(&app, &owner, site, JAN, &["visitors", "events"], &["event:name"], true).await;
    assert_eq!(rows(&goals), vec![("Signup".into(), vec![json!(3), json!(4)]), ("Outbound Link: Click".into(), vec![json!(2), json!(2)])]);
    let filtered = app
        .as_user(&owner)
        .post(
            "/api/v2/query",
            json!({"site_id": site.to_string(), "metrics": ["visitors"], "date_range": JAN, "filters": [["is", "visit:device", ["Mobile"]]],
                   "include": {"imports": true}}),
        )
        .await
        .expect(200);
    assert_eq!(rows(&filtered)[0].1, vec![json!(3)]);

    // Goals: an event goal reads imported custom events, a pageview goal imported pages;
    // conversions are taken of the imported visitors.
    for goal in [
        json!({"kind": "event", "event_name": "Signup", "display_name": "Signed up"}),
        json!({"kind": "pageview", "page_path": "/pricing", "display_name": "Pricing"}),
    ] {
        app.as_user(&owner).post(&format!("/api/sites/{site}/goals"), goal).await.expect(201);
    }
    let conversions = query(&app, &owner, site, JAN, &["visitors", "events", "conversion_rate"], &["event:goal"], true).await;
    assert_eq!(
        rows(&conversions),
        vec![("Pricing".into(), vec![json!(4), json!(12), json!(23.53)]), ("Signed up".into(), vec![json!(3), json!(4), json!(17.65)])]
    );
    let one = app
        .as_user(&owner)
        .post(
            "/api/v2/query",
            json!({"site_id": site.to_string(), "metrics": ["visitors", "conversion_rate"], "date_range": JAN,
                   "filters": [["is", "event:goal", ["Signed up"]]], "include": {"imports": true}}),
        )
        .await
        .expect(200);
    assert_eq!(rows(&one), vec![(String::new(), vec![json!(3), json!(17.65)])]);

    // Two tables at once cannot be answered exactly: native data and a warning.
    let mixed = app
        .as_user(&owner)
        .post(
            "/api/v2/query",
            json!({"site_id": site.to_string(), "metrics": ["visitors"], "date_range": JAN, "dimensions": ["visit:source"],
                   "filters": [["is", "visit:country", ["DE"]]], "include": {"imports": true}}),
        )
        .await
        .expect(200);
    assert_eq!(mixed["meta"]["imports_included"], false);
    assert_eq!(mixed["meta"]["imports_skip_reason"], "unsupported_query");
    assert!(mixed["meta"]["imports_warning"].as_str().unwrap().contains("not supported"), "{}", mixed["meta"]);
    assert_eq!(rows(&mixed), vec![]);

    // Stats API v1's with_imported: the same imported totals, and v1's
    // top-level warning (beside native results) for a shape imports cannot answer.
    let v1 = "/api/v1/stats/aggregate?site_id=imports.example&period=custom&date=2024-01-01,2024-01-31&metrics=visitors,pageviews";
    let v1_with = app.as_user(&owner).get(&format!("{v1}&with_imported=true")).await.expect(200);
    assert_eq!(v1_with, json!({"results": {"visitors": {"value": 17}, "pageviews": {"value": 41}}}));
    let v1_without = app.as_user(&owner).get(v1).await.expect(200);
    assert_eq!(v1_without, json!({"results": {"visitors": {"value": 0}, "pageviews": {"value": 0}}}));
    let v1_mixed = app
        .as_user(&owner)
        .get("/api/v1/stats/breakdown?site_id=imports.example&period=custom&date=2024-01-01,2024-01-31&property=visit:source&filters=visit:country%3D%3DDE&with_imported=true")
        .await
        .expect(200);
    assert_eq!(v1_mixed["results"], json!([]), "{v1_mixed}");
    assert!(v1_mixed["warning"].as_str().unwrap_or_default().contains("not supported"), "{v1_mixed}");

    // The same export again replaces the first: nothing doubles.
    let again = import_file(&app, &owner, site, "plausible", "plausible_example_com_20240201.zip").await;
    assert_ne!(again["id"], first["id"]);
    assert_eq!(imported_rows(&app, site).await, stored);
    let list = app.as_user(&owner).get(&format!("/api/sites/{site}/imports")).await.expect(200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(rows(&query(&app, &owner, site, JAN, &["visitors"], &[], true).await)[0].1, vec![json!(17)]);

    // Another range adds.
    import_file(&app, &owner, site, "plausible", "plausible_example_com_20240301.zip").await;
    let two_months = query(&app, &owner, site, ["2024-01-01", "2024-02-29"], &["visitors"], &[], true).await;
    assert_eq!(rows(&two_months)[0].1, vec![json!(21)]);

    // A corrupt export is refused by file, line and column, and leaves nothing.
    let before = imported_rows(&app, site).await;
    let (status, body) =
        upload(&app, &owner, site, "source=plausible&file_name=plausible_corrupt_20240201.zip", fixture("plausible_corrupt_20240201.zip"))
            .await;
    assert_eq!(status, 422, "{body}");
    let reason = body["error"].as_str().unwrap();
    assert_eq!(reason, "imported_pages_20240101_20240131.csv, line 4, column 5: `visitors` is `five`, not a non-negative number");
    assert_eq!(imported_rows(&app, site).await, before);
    let list = app.as_user(&owner).get(&format!("/api/sites/{site}/imports")).await.expect(200);
    let failed: Vec<&Value> = list.as_array().unwrap().iter().filter(|i| i["status"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["error"], reason);
    assert_eq!(rows(&query(&app, &owner, site, JAN, &["visitors"], &[], true).await)[0].1, vec![json!(17)]);

    // GET one; DELETE takes its rows away.
    let id = again["id"].as_str().unwrap();
    let shown = app.as_user(&owner).get(&format!("/api/sites/{site}/imports/{id}")).await.expect(200);
    assert_eq!(shown["status"], "done");
    app.as_user(&owner).delete(&format!("/api/sites/{site}/imports/{id}")).await.expect(204);
    app.as_user(&owner).get(&format!("/api/sites/{site}/imports/{id}")).await.expect_error(404, "import not found");
    let after = query(&app, &owner, site, JAN, &["visitors"], &[], true).await;
    assert_eq!(rows(&after)[0].1, vec![json!(0)]);
    assert_eq!((&after["meta"]["imports_included"], &after["meta"]["imports_skip_reason"]), (&json!(false), &json!("out_of_range")));
    assert_eq!(imported_rows(&app, site).await, 1, "only February's row is left");
}

#[tokio::test]
async fn ga4_reports_bigquery_events_and_umami_csv_import() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up_verified("owner@ga4.example").await;
    let site = create_site(&app, &owner, "ga4.example").await;

    import_file(&app, &owner, site, "ga4", "ga4_run_report_visitors.json").await;
    let march = ["2024-03-01", "2024-03-02"];
    let totals = query(&app, &owner, site, march, &["visitors", "visits", "pageviews", "visit_duration"], &[], true).await;
    // 2500 + 300 s over 36 visits.
    assert_eq!(rows(&totals)[0].1, vec![json!(30), json!(36), json!(62), json!(78)]);
    import_file(&app, &owner, site, "ga4", "ga4_batch_reports.json").await;
    let sources = query(&app, &owner, site, march, &["visitors"], &["visit:source"], true).await;
    assert_eq!(rows(&sources), vec![("Google".into(), vec![json!(12)])], "(direct) is no source");
    let devices = query(&app, &owner, site, march, &["visitors"], &["visit:device"], true).await;
    assert_eq!(rows(&devices), vec![("Desktop".into(), vec![json!(15)]), ("Mobile".into(), vec![json!(5)])]);

    let bq = import_file(&app, &owner, site, "ga4-bigquery", "ga4_bigquery_events_20240403.ndjson").await;
    assert_eq!((bq["range_start"].as_str(), bq["range_end"].as_str()), (Some("2024-04-03"), Some("2024-04-04")));
    let april = ["2024-04-03", "2024-04-04"];
    let days = query(&app, &owner, site, april, &["visitors", "visits", "pageviews", "bounce_rate"], &["time:day"], true).await;
    assert_eq!(
        rows(&days),
        vec![
            ("2024-04-03".into(), vec![json!(2), json!(2), json!(3), json!(50.0)]),
            ("2024-04-04".into(), vec![json!(1), json!(1), json!(1), json!(100.0)])
        ]
    );
    let pages = query(&app, &owner, site, april, &["pageviews"], &["event:page"], true).await;
    assert_eq!(rows(&pages)[0], ("/".into(), vec![json!(2)]));
    let countries = query(&app, &owner, site, april, &["visitors"], &["visit:country"], true).await;
    assert_eq!(rows(&countries), vec![("DE".into(), vec![json!(2)]), ("FR".into(), vec![json!(1)])]);

    import_file(&app, &owner, site, "umami", "umami_website_event.csv").await;
    let may = ["2024-05-06", "2024-05-07"];
    let umami = query(&app, &owner, site, may, &["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"], &[], true).await;
    assert_eq!(rows(&umami)[0].1, vec![json!(2), json!(2), json!(3), json!(50.0), json!(120)]);
    let browsers = query(&app, &owner, site, may, &["visitors"], &["visit:browser"], true).await;
    assert_eq!(rows(&browsers), vec![("Chrome".into(), vec![json!(1)]), ("Safari".into(), vec![json!(1)])]);

    // Broken files say where.
    let (status, body) =
        upload(&app, &owner, site, "source=ga4-bigquery&file_name=events.ndjson", b"{\"event_date\": \"20240403\"\n".to_vec()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("events.ndjson, line 1, column"), "{body}");
    let (status, body) =
        upload(&app, &owner, site, "source=umami&file_name=report.zip", fixture("plausible_example_com_20240201.zip")).await;
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().contains("report export"), "{body}");
    let (status, body) = upload(&app, &owner, site, "source=matomo", b"x".to_vec()).await;
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().contains("unknown import source"), "{body}");
}

#[tokio::test]
async fn umamis_database_is_read_directly() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up_verified("owner@umami-db.example").await;
    let site = create_site(&app, &owner, "umami-db.example").await;
    // Umami's v3 tables (prisma/schema.prisma), in a database of their own.
    let umami = TestDb::create().await;
    let website = uuid::Uuid::new_v4();
    let (s1, s2, v1, v2, v3) =
        (uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let db = umami.client().await;
    db.batch_execute(
        "CREATE TABLE session (session_id uuid PRIMARY KEY, website_id uuid NOT NULL, browser varchar(20), os varchar(20), device varchar(20),
                               screen varchar(11), language varchar(35), country char(2), region varchar(20), city varchar(50),
                               distinct_id varchar(50), created_at timestamptz DEFAULT now());
         CREATE TABLE website_event (event_id uuid PRIMARY KEY, website_id uuid NOT NULL, session_id uuid NOT NULL, visit_id uuid NOT NULL,
                               created_at timestamptz DEFAULT now(), url_path varchar(500) NOT NULL, url_query varchar(500),
                               utm_source varchar(255), utm_medium varchar(255), utm_campaign varchar(255), utm_content varchar(255),
                               utm_term varchar(255), referrer_path varchar(500), referrer_query varchar(500), referrer_domain varchar(500),
                               page_title varchar(500), gclid varchar(255), fbclid varchar(255), msclkid varchar(255), ttclid varchar(255),
                               li_fat_id varchar(255), twclid varchar(255), event_type integer DEFAULT 1 NOT NULL, event_name varchar(50),
                               tag varchar(50), hostname varchar(100));",
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO session (session_id, website_id, browser, os, device, country, region, city) VALUES
         ($1, $3, 'firefox', 'Linux', 'desktop', 'NL', 'NL-NH', 'Amsterdam'), ($2, $3, 'chrome', 'Android OS', 'mobile', 'BE', NULL, NULL)",
        &[&s1, &s2, &website],
    )
    .await
    .unwrap();
    let other_site = uuid::Uuid::new_v4();
    // (session, visit, created_at, url_path, event_type, event_name, website)
    type Event<'a> = (&'a uuid::Uuid, &'a uuid::Uuid, &'a str, &'a str, i32, Option<&'a str>, &'a uuid::Uuid);
    let events: [Event; 6] = [
        (&s1, &v1, "2024-06-10 08:00:00+00", "/", 1, None, &website),
        (&s1, &v1, "2024-06-10 08:05:00+00", "/docs", 1, None, &website),
        (&s1, &v1, "2024-06-10 08:06:00+00", "/docs", 2, Some("download"), &website),
        (&s1, &v2, "2024-06-11 20:00:00+00", "/", 1, None, &website),
        (&s2, &v3, "2024-06-11 21:00:00+00", "/blog", 1, None, &website),
        // Another website in the same database, and a day outside the range.
        (&s2, &v3, "2024-06-11 21:00:00+00", "/x", 1, None, &other_site),
    ];
    for (session, visit, at, path, kind, name, web) in events {
        db.execute(
            "INSERT INTO website_event (event_id, website_id, session_id, visit_id, created_at, url_path, event_type, event_name, hostname, referrer_domain)
             VALUES ($1, $2, $3, $4, $5::text::timestamptz, $6, $7, $8, 'umami-db.example', 'duckduckgo.com')",
            &[&uuid::Uuid::new_v4(), web, session, visit, &at, &path, &kind, &name],
        )
        .await
        .unwrap();
    }
    let mut url =
        url::Url::parse(&std::env::var("DATABASE_URL").unwrap_or_else(|_| engagetrack_tests::DEFAULT_ADMIN_URL.to_owned())).unwrap();
    url.set_path(&umami.name);
    let body = serde_json::to_vec(&json!({"database_url": url.to_string(), "website_id": website})).unwrap();
    let (status, import) = upload(&app, &owner, site, "source=umami-db&from=2024-06-01&to=2024-06-30", body).await;
    assert_eq!(status, 201, "{import}");
    assert!(import["origin"].as_str().unwrap().starts_with("umami database at "), "no credentials kept: {import}");
    let june = ["2024-06-01", "2024-06-30"];
    let totals = query(&app, &owner, site, june, &["visitors", "visits", "pageviews", "bounce_rate"], &[], true).await;
    // s1 on two days (a visitor per day), s2 once; v1 is no bounce (a custom event).
    assert_eq!(rows(&totals)[0].1, vec![json!(3), json!(3), json!(4), json!(66.7)]);
    let os = query(&app, &owner, site, june, &["visitors"], &["visit:os"], true).await;
    assert_eq!(rows(&os), vec![("GNU/Linux".into(), vec![json!(2)]), ("Android".into(), vec![json!(1)])]);
    let sources = query(&app, &owner, site, june, &["visits"], &["visit:source"], true).await;
    assert_eq!(rows(&sources), vec![("DuckDuckGo".into(), vec![json!(3)])]);

    // Umami v2 (no visit_id, hostname and subdivision1 on the session): visits split on 30-minute gaps.
    let v2 = TestDb::create().await;
    let db2 = v2.client().await;
    db2.batch_execute(
        "CREATE TABLE session (session_id uuid PRIMARY KEY, website_id uuid NOT NULL, hostname varchar(100), browser varchar(20), os varchar(20),
                               device varchar(20), screen varchar(11), language varchar(35), country char(2), subdivision1 varchar(20),
                               subdivision2 varchar(50), city varchar(50), created_at timestamptz DEFAULT now());
         CREATE TABLE website_event (event_id uuid PRIMARY KEY, website_id uuid NOT NULL, session_id uuid NOT NULL, created_at timestamptz DEFAULT now(),
                               url_path varchar(500) NOT NULL, url_query varchar(500), referrer_path varchar(500), referrer_query varchar(500),
                               referrer_domain varchar(500), page_title varchar(500), event_type integer DEFAULT 1 NOT NULL, event_name varchar(50));",
    )
    .await
    .unwrap();
    db2.execute(
        "INSERT INTO session (session_id, website_id, hostname, browser, os, device, country, subdivision1) VALUES ($1, $2, 'umami-db.example', 'safari', 'Mac OS', 'laptop', 'CH', 'CH-ZH')",
        &[&s1, &website],
    )
    .await
    .unwrap();
    for at in ["2024-07-01 10:00:00+00", "2024-07-01 10:10:00+00", "2024-07-01 11:00:00+00"] {
        db2.execute(
            "INSERT INTO website_event (event_id, website_id, session_id, created_at, url_path) VALUES ($1, $2, $3, $4::text::timestamptz, '/')",
            &[&uuid::Uuid::new_v4(), &website, &s1, &at],
        )
        .await
        .unwrap();
    }
    let mut url2 = url.clone();
    url2.set_path(&v2.name);
    let body = serde_json::to_vec(&json!({"database_url": url2.to_string(), "website_id": website})).unwrap();
    let (status, import) = upload(&app, &owner, site, "source=umami-db&from=2024-07-01&to=2024-07-31", body).await;
    assert_eq!(status, 201, "{import}");
    assert!(import["warnings"].to_string().contains("30-minute gaps"), "{import}");
    let july = ["2024-07-01", "2024-07-31"];
    let totals = query(&app, &owner, site, july, &["visitors", "visits", "pageviews"], &[], true).await;
    assert_eq!(rows(&totals)[0].1, vec![json!(1), json!(2), json!(3)]);
    let regions = query(&app, &owner, site, july, &["visitors"], &["visit:region"], true).await;
    assert_eq!(rows(&regions), vec![("CH-ZH".into(), vec![json!(1)])]);

    // A database that is not Umami's says so.
    let body =
        serde_json::to_vec(&json!({"database_url": url.to_string().replace(&umami.name, "postgres"), "website_id": website})).unwrap();
    let (status, answer) = upload(&app, &owner, site, "source=umami-db&from=2024-06-01&to=2024-06-30", body).await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("Umami"), "{answer}");
}

#[tokio::test]
async fn only_owners_and_admins_import() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up_verified("owner@import-roles.example").await;
    let site = create_site(&app, &owner, "import-roles.example").await;
    for (role, status) in [("admin", 201), ("editor", 403), ("viewer", 403)] {
        let member = app.sign_up_verified(&format!("{role}@import-roles.example")).await;
        app.add_member(owner.organization_id, member.id, role).await;
        let (got, body) =
            upload(&app, &member, site, "source=ga4&file_name=ga4_run_report_visitors.json", fixture("ga4_run_report_visitors.json")).await;
        assert_eq!(got, status, "{role}: {body}");
    }
    let outsider = app.sign_up_verified("outsider@elsewhere.example").await;
    let (got, _) = upload(&app, &outsider, site, "source=ga4", fixture("ga4_run_report_visitors.json")).await;
    assert_eq!(got, 404);
}
