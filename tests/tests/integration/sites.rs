//! Sites over HTTP: settings parsed and normalised, roles, goals, share
//! links (public, optionally password-protected), the installation check,
//! and bad input answered 400 with a reason.

use engagetrack_tests::{TestApp, TestUser};
use serde_json::{Value, json};

async fn site(app: &TestApp, owner: &TestUser, body: Value) -> Value {
    app.as_user(owner).post(&format!("/api/organizations/{}/sites", owner.organization_id), body).await.expect(201)
}

#[tokio::test]
async fn sites_are_created_normalised_listed_changed_and_deleted() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up_verified("alice@example.com").await;
    let a = app.as_user(&alice);
    let org = alice.organization_id;

    let created = site(
        &app,
        &alice,
        json!({"domain": "https://WWW.Example.com:8443/pricing?x=1", "timezone": "europe/paris", "retention_days": 30,
               "allowed_hostnames": ["*.Example.com", "example.com"], "excluded_paths": ["/admin/*"]}),
    )
    .await;
    assert_eq!(created["domain"], "www.example.com");
    assert_eq!(created["name"], "www.example.com", "the name defaults to the domain");
    assert_eq!(created["timezone"], "Europe/Paris", "PostgreSQL's spelling");
    assert_eq!(created["retention_days"], 30);
    assert_eq!(created["allowed_hostnames"], json!(["*.example.com", "example.com"]));
    assert_eq!(created["excluded_paths"], json!(["/admin/*"]));
    assert_eq!(created["organization_id"], json!(org));
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    a.post(&format!("/api/organizations/{org}/sites"), json!({"domain": "www.example.com"})).await.expect_error(409, "already has a site");

    let plain = site(&app, &alice, json!({"domain": "blog.example.org", "name": "Blog"})).await;
    assert_eq!((plain["timezone"].as_str(), plain["retention_days"].as_i64()), (Some("UTC"), Some(730)));

    let listed = a.get("/api/sites").await.expect(200);
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert!(listed.as_array().unwrap().iter().all(|s| s["role"] == "owner" && s["organization_id"] == json!(org)), "{listed}");

    // By id or by domain, as Plausible's API takes it.
    assert_eq!(a.get(&format!("/api/sites/{id}")).await.expect(200)["id"], json!(id));
    assert_eq!(a.get("/api/sites/WWW.example.com").await.expect(200)["id"], json!(id));

    let changed = a
        .patch(
            &format!("/api/sites/{id}"),
            json!({"name": "Main", "retention_days": 3650, "excluded_paths": [], "timezone": "America/New_York", "active": false}),
        )
        .await
        .expect(200);
    assert_eq!((changed["name"].as_str(), changed["retention_days"].as_i64()), (Some("Main"), Some(3650)));
    assert_eq!((changed["timezone"].as_str(), changed["active"].as_bool()), (Some("America/New_York"), Some(false)));
    assert_eq!(changed["excluded_paths"], json!([]));
    a.patch(&format!("/api/sites/{id}"), json!({"domain": "blog.example.org"})).await.expect_error(409, "already has a site");
    assert_eq!(a.patch(&format!("/api/sites/{id}"), json!({"domain": "example.net"})).await.expect(200)["domain"], "example.net");

    a.delete("/api/sites/example.net").await.expect(204);
    a.get(&format!("/api/sites/{id}")).await.expect(404);
    a.delete(&format!("/api/sites/{id}")).await.expect(404);
    assert_eq!(a.get("/api/sites").await.expect(200).as_array().map(Vec::len), Some(1));
    // The domain is free again after deletion.
    site(&app, &alice, json!({"domain": "example.net"})).await;

    let log = a.get(&format!("/api/organizations/{org}/audit-log?limit=200")).await.expect(200);
    let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for action in ["site.created", "site.changed", "site.deleted"] {
        assert!(actions.contains(&action), "{action} missing from {actions:?}");
    }
}

#[tokio::test]
async fn bad_site_inputs_get_400_with_reasons() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up_verified("alice@example.com").await;
    let a = app.as_user(&alice);
    let create = format!("/api/organizations/{}/sites", alice.organization_id);
    let created = site(&app, &alice, json!({"domain": "ok.example.com"})).await;
    let patch = format!("/api/sites/{}", created["id"].as_str().unwrap_or_default());

    let cases: Vec<(Value, &str)> = vec![
        (json!({"domain": "localhost"}), "not a domain"),
        (json!({"domain": "192.168.1.1"}), "not a domain"),
        (json!({"domain": "ftp://example.com"}), "not a domain"),
        (json!({"domain": "exa mple.com"}), "not a domain"),
        (json!({"domain": "-bad-.com"}), "not a domain"),
        (json!({"domain": ""}), "not a domain"),
        (json!({"domain": "a.com", "timezone": "Mars/Olympus_Mons"}), "time zone"),
        (json!({"domain": "a.com", "timezone": "'; DROP TABLE sites; --"}), "time zone"),
        (json!({"domain": "a.com", "retention_days": 0}), "retention_days"),
        (json!({"domain": "a.com", "retention_days": 3651}), "retention_days"),
        (json!({"domain": "a.com", "retention_days": "forever"}), "retention_days"),
        (json!({"domain": "a.com", "retention_days": 99999999999i64}), "retention_days"),
        (json!({"domain": "a.com", "excluded_paths": ["admin"]}), "start with `/`"),
        (json!({"domain": "a.com", "excluded_paths": "/admin"}), "excluded_paths"),
        (json!({"domain": "a.com", "allowed_hostnames": ["not a host"]}), "allowed_hostnames"),
        (json!({"domain": "a.com", "allowed_hostnames": vec!["a.com"; 101]}), "at most 100"),
        (json!({"domain": "a.com", "name": ""}), "name"),
        (json!({"domain": "a.com", "colour": "red"}), "unknown field"),
        (json!({"name": "no domain"}), "domain"),
    ];
    for (body, reason) in &cases {
        a.post(&create, body.clone()).await.expect_error(400, reason);
        let mut as_patch = body.clone();
        if let Some(o) = as_patch.as_object_mut() {
            if o.get("domain") == Some(&json!("a.com")) {
                o.remove("domain");
            }
        }
        if as_patch.get("name") != Some(&json!("no domain")) {
            a.patch(&patch, as_patch.clone()).await.expect_error(400, reason);
        }
    }
    a.post_raw(&create, "application/json", "{\"domain\":").await.expect(400);
    a.post_raw(&create, "text/plain", "{\"domain\": \"a.com\"}").await.expect(415);
    // Nothing was made or changed by the refused requests.
    assert_eq!(a.get("/api/sites").await.expect(200).as_array().map(Vec::len), Some(1));
    assert_eq!(a.get(&patch).await.expect(200), created);
}

#[tokio::test]
async fn roles_decide_what_a_member_may_do_to_sites() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up_verified("alice@example.com").await;
    let vera = app.sign_up_verified("vera@example.com").await;
    let ed = app.sign_up_verified("ed@example.com").await;
    let org = alice.organization_id;
    app.add_member(org, vera.id, "viewer").await;
    app.add_member(org, ed.id, "editor").await;
    site(&app, &alice, json!({"domain": "acme.test"})).await;
    let (v, e) = (app.as_user(&vera), app.as_user(&ed));

    let listed = v.get("/api/sites").await.expect(200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "vera sees the team's site (her own personal org has none)");
    assert_eq!(listed[0]["role"], "viewer");
    v.get("/api/sites/acme.test").await.expect(200);
    v.get("/api/sites/acme.test/goals").await.expect(200);
    v.patch("/api/sites/acme.test", json!({"name": "x"})).await.expect_error(403, "viewer");
    v.post(&format!("/api/organizations/{org}/sites"), json!({"domain": "v.test"})).await.expect(403);
    v.post("/api/sites/acme.test/goals", json!({"kind": "event", "event_name": "x"})).await.expect(403);
    v.post("/api/sites/acme.test/shared-links", json!({})).await.expect(403);
    v.delete("/api/sites/acme.test").await.expect(403);

    e.patch("/api/sites/acme.test", json!({"name": "Acme"})).await.expect(200);
    e.post(&format!("/api/organizations/{org}/sites"), json!({"domain": "e.test"})).await.expect(201);
    e.post("/api/sites/acme.test/goals", json!({"kind": "event", "event_name": "x"})).await.expect(201);
    e.delete("/api/sites/acme.test").await.expect_error(403, "editor");
    app.as_user(&alice).delete("/api/sites/acme.test").await.expect(204);
    app.anonymous().get("/api/sites").await.expect(401);
}

#[tokio::test]
async fn goals_of_each_kind() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up_verified("alice@example.com").await;
    let a = app.as_user(&alice);
    site(&app, &alice, json!({"domain": "shop.test"})).await;
    let goals = "/api/sites/shop.test/goals";

    let visit = a.post(goals, json!({"kind": "pageview", "page_path": "/thanks/*"})).await.expect(201);
    assert_eq!((visit["display_name"].as_str(), visit["page_path"].as_str()), (Some("Visit /thanks/*"), Some("/thanks/*")));
    let signup = a.post(goals, json!({"kind": "event", "event_name": "Signup"})).await.expect(201);
    assert_eq!(signup["display_name"], "Signup");
    let revenue =
        a.post(goals, json!({"kind": "revenue", "event_name": "Purchase", "currency": "eur", "display_name": "Sales"})).await.expect(201);
    assert_eq!((revenue["currency"].as_str(), revenue["display_name"].as_str()), (Some("EUR"), Some("Sales")));
    a.post(goals, json!({"kind": "event", "event_name": "Signup"})).await.expect_error(409, "already has a goal");

    for (body, reason) in [
        (json!({"kind": "pageview"}), "page_path"),
        (json!({"kind": "pageview", "page_path": "thanks"}), "start with `/`"),
        (json!({"kind": "pageview", "page_path": "/a", "event_name": "x"}), "does not apply"),
        (json!({"kind": "event"}), "event_name"),
        (json!({"kind": "event", "event_name": "x", "currency": "EUR"}), "does not apply"),
        (json!({"kind": "revenue", "event_name": "x"}), "currency"),
        (json!({"kind": "revenue", "event_name": "x", "currency": "EURO"}), "ISO 4217"),
        (json!({"kind": "click", "event_name": "x"}), "unknown goal kind"),
        (json!({"kind": "event", "event_name": "x".repeat(121)}), "event_name"),
        (json!({"kind": "event", "event_name": "x", "display_name": ""}), "display_name"),
    ] {
        a.post(goals, body).await.expect_error(400, reason);
    }

    let listed = a.get(goals).await.expect(200);
    assert_eq!(listed.as_array().map(Vec::len), Some(3));
    let id = signup["id"].as_str().unwrap_or_default();
    a.delete(&format!("{goals}/{id}")).await.expect(204);
    a.delete(&format!("{goals}/{id}")).await.expect(404);
    assert_eq!(a.get(goals).await.expect(200).as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn share_links_are_public_and_optionally_password_protected() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up_verified("alice@example.com").await;
    let a = app.as_user(&alice);
    site(&app, &alice, json!({"domain": "open.test", "name": "Open Stats", "timezone": "Asia/Tokyo"})).await;
    let links = "/api/sites/open.test/shared-links";
    let public = app.anonymous();

    let open = a.post(links, json!({"name": "For the newsletter"})).await.expect(201);
    let slug = open["slug"].as_str().unwrap_or_default().to_owned();
    assert!(slug.len() >= 40, "unguessable: {slug}");
    assert!(open["url"].as_str().unwrap_or_default().ends_with(&format!("/share/{slug}")));
    assert_eq!(open["password_protected"], false);
    let shown = public.get(&format!("/api/shared/{slug}")).await.expect(200);
    assert_eq!(shown, json!({"domain": "open.test", "name": "Open Stats", "timezone": "Asia/Tokyo", "link_name": "For the newsletter"}));

    let locked = a.post(links, json!({"password": "open sesame"})).await.expect(201);
    assert_eq!(locked["password_protected"], true);
    let locked_slug = locked["slug"].as_str().unwrap_or_default().to_owned();
    public.get(&format!("/api/shared/{locked_slug}")).await.expect_error(401, "password");
    public.get(&format!("/api/shared/{locked_slug}?password=wrong-one")).await.expect_error(401, "wrong");
    assert_eq!(public.get(&format!("/api/shared/{locked_slug}?password=open%20sesame")).await.expect(200)["domain"], "open.test");
    let with_header = reqwest::Client::new()
        .get(app.url(&format!("/api/shared/{locked_slug}")))
        .header("X-Share-Password", "open sesame")
        .send()
        .await
        .unwrap();
    assert_eq!(with_header.status().as_u16(), 200);
    let dump = app.db.dump().await;
    assert!(!dump.contains("open sesame"), "the password is stored as a bcrypt hash");

    a.post(links, json!({"password": "short"})).await.expect_error(400, "password");
    public.get("/api/shared/not-a-real-slug").await.expect(404);
    public.get(links).await.expect(401);

    let listed = a.get(links).await.expect(200);
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert!(!listed.to_string().contains("$2b$"), "no hashes in the list");
    a.delete(&format!("{links}/{}", open["id"].as_str().unwrap_or_default())).await.expect(204);
    public.get(&format!("/api/shared/{slug}")).await.expect(404);
    // A deleted site's links die with it.
    a.delete("/api/sites/open.test").await.expect(204);
    public.get(&format!("/api/shared/{locked_slug}?password=open%20sesame")).await.expect(404);
}

#[tokio::test]
async fn installation_check_flips_after_a_beacon() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up_verified("alice@example.com").await;
    let created = site(&app, &alice, json!({"domain": "example.com"})).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let check = format!("/api/sites/{id}/installation");
    let a = app.as_user(&alice);

    assert_eq!(a.get(&check).await.expect(200), json!({"seen": false, "last_event_at": null, "events_last_24h": 0}));
    let beacon = json!({"site": id, "type": "pageview", "url": "https://example.com/", "sid": "s3ss10n-r4nd0m", "w": 1280, "h": 800});
    let sent = reqwest::Client::new()
        .post(app.url("/api/e"))
        .header("content-type", "text/plain")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0")
        .body(beacon.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status().as_u16(), 202);
    let seen = a.get(&check).await.expect(200);
    assert_eq!((seen["seen"].as_bool(), seen["events_last_24h"].as_i64()), (Some(true), Some(1)), "{seen}");
    assert!(seen["last_event_at"].is_string());
}

#[tokio::test]
async fn the_ingest_honours_allowed_hostnames_and_excluded_paths() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up_verified("alice@example.com").await;
    let created = site(
        &app,
        &alice,
        json!({"domain": "example.com", "allowed_hostnames": ["example.com", "*.example.com"], "excluded_paths": ["/admin/*"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let send = |url: &'static str, kind: &'static str| {
        let mut body = json!({"site": id, "type": kind, "url": url, "sid": "s3ss10n-r4nd0m"});
        if kind == "custom" {
            body["name"] = json!("Signup");
        }
        let body = body.to_string();
        let request = reqwest::Client::new()
            .post(app.url("/api/e"))
            .header("content-type", "text/plain")
            .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0")
            .body(body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // Dropped ones still answer 202: the sender learns nothing.
    assert_eq!(send("https://copycat.test/", "pageview").await, 202);
    assert_eq!(send("https://example.com/admin/users", "pageview").await, 202);
    let stored = || async {
        app.db
            .client()
            .await
            .query_one("SELECT count(*) FROM events WHERE site_id = $1::text::uuid", &[&id])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(stored().await, 0);
    assert_eq!(send("https://example.com/pricing", "pageview").await, 202);
    assert_eq!(send("https://shop.example.com/", "pageview").await, 202);
    assert_eq!(send("https://example.com/admin/users", "custom").await, 202);
    assert_eq!(stored().await, 3, "allowed hosts count; a custom event on an excluded path counts too");
}

/// Deleting an organisation locks its row, then its sites; a site change
/// that locked the site's row first and the organisation's after (its audit
/// row's foreign key) deadlocked with it and answered 503 (schemathesis
/// found it). Site changes now take the organisation first, so one waits.
#[tokio::test]
async fn a_site_change_racing_an_organisation_wide_change_waits_instead_of_deadlocking() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up_verified("alice@example.com").await;
    let org = alice.organization_id;
    let id = site(&app, &alice, json!({"domain": "race.example.com"})).await["id"].as_str().unwrap_or_default().to_owned();
    for (patch, delete) in [(true, false), (false, true)] {
        let mut client = app.db.client().await;
        let org_wide = client.transaction().await.unwrap();
        org_wide.execute("SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE", &[&org]).await.unwrap();
        let a = app.as_user(&alice);
        let site_change = async {
            if patch {
                a.patch(&format!("/api/sites/{id}"), json!({"name": "Race", "retention_days": 90})).await.expect(200);
            }
            if delete {
                a.delete(&format!("/api/sites/{id}")).await.expect(204);
            }
        };
        let organisation_change = async {
            // Long enough for the site change to reach its first lock.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let touched = org_wide.execute("UPDATE sites SET active = active WHERE organization_id = $1", &[&org]).await;
            org_wide.commit().await.map(|()| touched)
        };
        let ((), committed) = tokio::join!(site_change, organisation_change);
        assert!(committed.is_ok(), "the organisation-wide change failed: {committed:?}");
    }
}
