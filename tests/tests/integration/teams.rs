//! Organisations and teams over HTTP: creating organisations, invitations
//! end to end, every role rule, ownership transfer, the audit log, API keys,
//! and other tenants seeing 404.

use engagetrack_tests::{TestApp, TestUser, token_from_mail};
use serde_json::{Value, json};
use uuid::Uuid;

async fn create_org(app: &TestApp, owner: &TestUser, name: &str, slug: &str) -> Uuid {
    let body = app.as_user(owner).post("/api/organizations", json!({"name": name, "slug": slug})).await.expect(201);
    body["id"].as_str().and_then(|s| s.parse().ok()).expect("org id")
}

fn role_of(members: &Value, user: Uuid) -> Option<String> {
    members.as_array()?.iter().find(|m| m["user_id"] == json!(user)).map(|m| m["role"].as_str().unwrap_or_default().to_owned())
}

async fn actions(app: &TestApp, owner: &TestUser, org: Uuid) -> Vec<String> {
    let page = app.as_user(owner).get(&format!("/api/organizations/{org}/audit-log?limit=200")).await.expect(200);
    page["entries"].as_array().expect("entries").iter().map(|e| e["action"].as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test]
async fn organizations_are_created_listed_and_changed() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up_verified("alice@example.com").await;
    let api = app.as_user(&alice);

    let mine = api.get("/api/organizations").await.expect(200);
    assert_eq!(mine.as_array().map(Vec::len), Some(1), "sign-up made a personal organisation: {mine}");
    assert_eq!(mine[0]["role"], "owner");

    let created = api.post("/api/organizations", json!({"name": "  Acme Inc  ", "slug": "acme"})).await.expect(201);
    assert_eq!(
        (created["name"].as_str(), created["slug"].as_str(), created["role"].as_str()),
        (Some("Acme Inc"), Some("acme"), Some("owner"))
    );
    let org = created["id"].as_str().unwrap_or_default().to_owned();
    api.post("/api/organizations", json!({"name": "Other", "slug": "acme"})).await.expect_error(409, "taken");
    let generated = api.post("/api/organizations", json!({"name": "Ünïcode Ltd"})).await.expect(201);
    assert!(generated["slug"].as_str().unwrap_or_default().starts_with("n-code-ltd-"), "{generated}");

    api.post("/api/organizations", json!({"name": "X", "slug": "Not A Slug"})).await.expect_error(400, "slug");
    api.post("/api/organizations", json!({"name": ""})).await.expect_error(400, "name");
    api.post("/api/organizations", json!({"slug": "no-name"})).await.expect_error(400, "name");
    api.post("/api/organizations", json!({"name": "X", "owner": "me"})).await.expect_error(400, "unknown field");
    api.post_raw("/api/organizations", "application/json", "{not json").await.expect(400);

    let changed = api
        .patch(&format!("/api/organizations/{org}"), json!({"name": "Acme", "slug": "acme-inc", "settings": {"week_starts_on": "monday"}}))
        .await
        .expect(200);
    assert_eq!((changed["name"].as_str(), changed["slug"].as_str()), (Some("Acme"), Some("acme-inc")));
    assert_eq!(changed["settings"]["week_starts_on"], "monday");
    api.patch(&format!("/api/organizations/{org}"), json!({"settings": [1, 2]})).await.expect_error(400, "settings");
    api.patch(&format!("/api/organizations/{org}"), json!({"slug": generated["slug"]})).await.expect_error(409, "taken");
    assert_eq!(api.get(&format!("/api/organizations/{org}")).await.expect(200)["slug"], "acme-inc");
    assert_eq!(api.get("/api/organizations").await.expect(200).as_array().map(Vec::len), Some(3));
    api.get("/api/organizations/not-a-uuid").await.expect(404);
    app.anonymous().get("/api/organizations").await.expect(401);
}

#[tokio::test]
async fn invitations_end_to_end() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up_verified("alice@example.com").await;
    let org = create_org(&app, &alice, "Acme", "acme").await;
    let admin = app.as_user(&alice);
    let invitations = format!("/api/organizations/{org}/invitations");

    let invited = admin.post(&invitations, json!({"email": "Bob@Example.com", "role": "editor"})).await.expect(201);
    assert_eq!((invited["email"].as_str(), invited["role"].as_str()), (Some("bob@example.com"), Some("editor")));
    assert!(invited.get("token").is_none() && invited.get("token_hash").is_none(), "the token is only in the mail: {invited}");
    let mail = app.last_mail_to("bob@example.com").await;
    assert!(mail.subject.contains("Acme"), "{}", mail.subject);
    assert!(mail.body.contains("/accept-invite?token="), "{}", mail.body);
    let bob_token = token_from_mail(&mail.body);
    let stored: Vec<u8> =
        app.db.client().await.query_one("SELECT token_hash FROM invitations WHERE email = 'bob@example.com'", &[]).await.unwrap().get(0);
    assert_ne!(stored, bob_token.as_bytes(), "only the hash is stored");

    let listed = admin.get(&invitations).await.expect(200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    admin.post(&invitations, json!({"email": "not-an-email", "role": "editor"})).await.expect_error(400, "email");
    admin.post(&invitations, json!({"email": "x@example.com", "role": "root"})).await.expect_error(400, "unknown role");

    let bob = app.sign_up_verified("bob@example.com").await;
    let carol = app.sign_up_verified("carol@example.com").await;
    // Someone else holding Bob's link cannot use it.
    app.as_user(&carol).post("/api/invitations/accept", json!({"token": bob_token})).await.expect_error(403, "another email");
    let joined = app.as_user(&bob).post("/api/invitations/accept", json!({"token": bob_token})).await.expect(200);
    assert_eq!(joined, json!({"organization_id": org, "role": "editor"}));
    let members = admin.get(&format!("/api/organizations/{org}/members")).await.expect(200);
    assert_eq!(role_of(&members, bob.id).as_deref(), Some("editor"));
    assert_eq!(admin.get(&invitations).await.expect(200), json!([]), "accepted invitations are no longer pending");
    // Single use.
    app.as_user(&bob).post("/api/invitations/accept", json!({"token": bob_token})).await.expect_error(400, "already used");
    app.as_user(&bob).post("/api/invitations/accept", json!({"token": "made-up"})).await.expect_error(400, "invalid");
    admin.post(&invitations, json!({"email": "bob@example.com", "role": "viewer"})).await.expect_error(409, "already a member");
    // An editor may not invite.
    app.as_user(&bob).post(&invitations, json!({"email": "x@example.com", "role": "viewer"})).await.expect(403);

    // Expired: older than 7 days.
    admin.post(&invitations, json!({"email": "carol@example.com", "role": "viewer"})).await.expect(201);
    let carol_token = token_from_mail(&app.last_mail_to("carol@example.com").await.body);
    app.db
        .client()
        .await
        .execute("UPDATE invitations SET expires_at = now() - interval '1 minute' WHERE email = 'carol@example.com'", &[])
        .await
        .unwrap();
    app.as_user(&carol).post("/api/invitations/accept", json!({"token": carol_token})).await.expect_error(400, "expired");
    let expires: chrono::DateTime<chrono::Utc> = app
        .db
        .client()
        .await
        .query_one("SELECT created_at + interval '7 days' FROM invitations WHERE email = 'carol@example.com'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(expires > chrono::Utc::now(), "invitations are made to last 7 days");

    // A new invitation replaces the old one; a revoked one is dead.
    let again = admin.post(&invitations, json!({"email": "carol@example.com", "role": "viewer"})).await.expect(201);
    let new_token = token_from_mail(&app.last_mail_to("carol@example.com").await.body);
    app.as_user(&carol).post("/api/invitations/accept", json!({"token": carol_token})).await.expect_error(400, "invalid");
    admin.delete(&format!("{invitations}/{}", again["id"].as_str().unwrap_or_default())).await.expect(204);
    app.as_user(&carol).post("/api/invitations/accept", json!({"token": new_token})).await.expect_error(400, "invalid");
    admin.delete(&format!("{invitations}/{}", again["id"].as_str().unwrap_or_default())).await.expect(404);

    let log = actions(&app, &alice, org).await;
    for action in ["member.invited", "member.invitation_accepted", "member.invitation_revoked"] {
        assert!(log.iter().any(|a| a == action), "{action} missing from {log:?}");
    }
}

#[tokio::test]
async fn role_rules_hold() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up_verified("alice@example.com").await;
    let bob = app.sign_up_verified("bob@example.com").await;
    let carol = app.sign_up_verified("carol@example.com").await;
    let org = create_org(&app, &alice, "Acme", "acme").await;
    app.add_member(org, bob.id, "admin").await;
    app.add_member(org, carol.id, "viewer").await;
    let member = |u: &TestUser| format!("/api/organizations/{org}/members/{}", u.id);
    let members = format!("/api/organizations/{org}/members");
    let (a, b, c) = (app.as_user(&alice), app.as_user(&bob), app.as_user(&carol));

    // A viewer sees the team but changes nothing.
    c.get(&members).await.expect(200);
    c.patch(&member(&bob), json!({"role": "viewer"})).await.expect(403);
    c.post(&format!("/api/organizations/{org}/invitations"), json!({"email": "x@example.com", "role": "viewer"})).await.expect(403);
    c.get(&format!("/api/organizations/{org}/audit-log")).await.expect(403);
    c.get(&format!("/api/organizations/{org}/api-keys")).await.expect(403);
    c.delete(&member(&bob)).await.expect(403);

    // Admins manage members but never owners, and never make owners.
    b.patch(&member(&alice), json!({"role": "viewer"})).await.expect_error(403, "owner");
    b.patch(&member(&carol), json!({"role": "owner"})).await.expect_error(403, "owner");
    b.post(&format!("/api/organizations/{org}/invitations"), json!({"email": "x@example.com", "role": "owner"}))
        .await
        .expect_error(403, "owner");
    b.delete(&member(&alice)).await.expect_error(403, "owner");
    b.patch(&member(&bob), json!({"role": "owner"})).await.expect_error(403, "own role");
    b.patch(&format!("/api/organizations/{org}"), json!({"name": "Mine now"})).await.expect(403);
    b.delete(&format!("/api/organizations/{org}")).await.expect(403);
    b.post(&format!("/api/organizations/{org}/transfer-ownership"), json!({"user_id": bob.id})).await.expect(403);
    assert_eq!(b.patch(&member(&carol), json!({"role": "editor"})).await.expect(200)["role"], "editor");
    b.patch(&member(&carol), json!({"role": "superuser"})).await.expect_error(400, "unknown role");
    b.patch(&format!("/api/organizations/{org}/members/{}", Uuid::new_v4()), json!({"role": "viewer"})).await.expect(404);

    // Nobody changes their own role; the last owner can neither leave nor be demoted.
    a.patch(&member(&alice), json!({"role": "admin"})).await.expect_error(403, "own role");
    a.delete(&member(&alice)).await.expect_error(409, "last owner");

    // Any member may leave.
    c.delete(&member(&carol)).await.expect(204);
    c.get(&format!("/api/organizations/{org}")).await.expect(404);

    // Ownership transfer: the new owner is an owner, the old one an admin.
    a.post(&format!("/api/organizations/{org}/transfer-ownership"), json!({"user_id": alice.id})).await.expect_error(400, "you");
    a.post(&format!("/api/organizations/{org}/transfer-ownership"), json!({"user_id": carol.id})).await.expect(404);
    a.post(&format!("/api/organizations/{org}/transfer-ownership"), json!({"user_id": bob.id})).await.expect(200);
    let list = a.get(&members).await.expect(200);
    assert_eq!((role_of(&list, bob.id).as_deref(), role_of(&list, alice.id).as_deref()), (Some("owner"), Some("admin")));
    a.patch(&format!("/api/organizations/{org}"), json!({"name": "Back"})).await.expect(403);
    b.delete(&member(&bob)).await.expect_error(409, "last owner");
    b.patch(&member(&bob), json!({"role": "admin"})).await.expect_error(403, "own role");

    // With two owners, one may demote the other; the last one stays.
    b.patch(&member(&alice), json!({"role": "owner"})).await.expect(200);
    a.patch(&member(&bob), json!({"role": "viewer"})).await.expect(200);
    a.delete(&member(&alice)).await.expect_error(409, "last owner");
    a.delete(&member(&bob)).await.expect(204);

    let log = actions(&app, &alice, org).await;
    for action in ["member.role_changed", "member.removed", "organization.ownership_transferred"] {
        assert!(log.iter().any(|x| x == action), "{action} missing from {log:?}");
    }

    // Deleting: the owner only; sites stop collecting, the organisation is gone.
    let site = a.post(&format!("/api/organizations/{org}/sites"), json!({"domain": "acme.test"})).await.expect(201);
    a.delete(&format!("/api/organizations/{org}")).await.expect(204);
    a.get(&format!("/api/organizations/{org}")).await.expect(404);
    a.get(&format!("/api/sites/{}", site["id"].as_str().unwrap_or_default())).await.expect(404);
    let active: bool = app.db.client().await.query_one("SELECT active FROM sites WHERE domain = 'acme.test'", &[]).await.unwrap().get(0);
    assert!(!active);
}

#[tokio::test]
async fn other_tenants_get_404_everywhere() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up_verified("alice@example.com").await;
    let mallory = app.sign_up_verified("mallory@example.com").await;
    let org = alice.organization_id;
    let a = app.as_user(&alice);
    let site = a.post(&format!("/api/organizations/{org}/sites"), json!({"domain": "alice.test"})).await.expect(201);
    let site_id = site["id"].as_str().unwrap_or_default().to_owned();
    let goal = a.post(&format!("/api/sites/{site_id}/goals"), json!({"kind": "event", "event_name": "Signup"})).await.expect(201);
    let link = a.post(&format!("/api/sites/{site_id}/shared-links"), json!({})).await.expect(201);
    let key = a.post(&format!("/api/organizations/{org}/api-keys"), json!({"name": "k", "scopes": ["sites:read"]})).await.expect(201);
    let inv =
        a.post(&format!("/api/organizations/{org}/invitations"), json!({"email": "x@example.com", "role": "viewer"})).await.expect(201);
    let (goal_id, link_id, key_id, inv_id) = (&goal["id"], &link["id"], &key["id"], &inv["id"]);
    let (goal_id, link_id, key_id, inv_id) = (
        goal_id.as_str().unwrap_or_default(),
        link_id.as_str().unwrap_or_default(),
        key_id.as_str().unwrap_or_default(),
        inv_id.as_str().unwrap_or_default(),
    );

    let m = app.as_user(&mallory);
    let o = format!("/api/organizations/{org}");
    let cases: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", o.clone(), None),
        ("PATCH", o.clone(), Some(json!({"name": "pwned"}))),
        ("DELETE", o.clone(), None),
        ("GET", format!("{o}/members"), None),
        ("PATCH", format!("{o}/members/{}", alice.id), Some(json!({"role": "viewer"}))),
        ("DELETE", format!("{o}/members/{}", alice.id), None),
        ("POST", format!("{o}/transfer-ownership"), Some(json!({"user_id": mallory.id}))),
        ("GET", format!("{o}/invitations"), None),
        ("POST", format!("{o}/invitations"), Some(json!({"email": "mallory@example.com", "role": "owner"}))),
        ("DELETE", format!("{o}/invitations/{inv_id}"), None),
        ("GET", format!("{o}/audit-log"), None),
        ("GET", format!("{o}/api-keys"), None),
        ("POST", format!("{o}/api-keys"), Some(json!({"name": "k", "scopes": ["stats:read"]}))),
        ("DELETE", format!("{o}/api-keys/{key_id}"), None),
        ("POST", format!("{o}/sites"), Some(json!({"domain": "evil.test"}))),
        ("GET", format!("/api/sites/{site_id}"), None),
        ("GET", "/api/sites/alice.test".into(), None),
        ("PATCH", format!("/api/sites/{site_id}"), Some(json!({"name": "pwned"}))),
        ("DELETE", format!("/api/sites/{site_id}"), None),
        ("GET", format!("/api/sites/{site_id}/installation"), None),
        ("GET", format!("/api/sites/{site_id}/goals"), None),
        ("POST", format!("/api/sites/{site_id}/goals"), Some(json!({"kind": "event", "event_name": "x"}))),
        ("DELETE", format!("/api/sites/{site_id}/goals/{goal_id}"), None),
        ("GET", format!("/api/sites/{site_id}/shared-links"), None),
        ("POST", format!("/api/sites/{site_id}/shared-links"), Some(json!({}))),
        ("DELETE", format!("/api/sites/{site_id}/shared-links/{link_id}"), None),
    ];
    for (method, path, body) in &cases {
        let answer = m.send(method.parse().unwrap(), path, body.as_ref()).await;
        assert_eq!(answer.status.as_u16(), 404, "{method} {path}: {}", answer.body);
    }
    let visible = m.get("/api/sites").await.expect(200);
    assert_eq!(visible, json!([]), "mallory sees none of alice's sites");
    // Nothing changed for alice.
    assert_eq!(a.get(&format!("/api/sites/{site_id}")).await.expect(200)["name"], "alice.test");
    assert_eq!(a.get(&format!("/api/sites/{site_id}/goals")).await.expect(200).as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn api_keys_are_scoped_shown_once_and_revocable() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up_verified("alice@example.com").await;
    let bob = app.sign_up_verified("bob@example.com").await;
    let org = alice.organization_id;
    let a = app.as_user(&alice);
    let keys = format!("/api/organizations/{org}/api-keys");
    a.post(&format!("/api/organizations/{org}/sites"), json!({"domain": "alice.test"})).await.expect(201);
    let bobs_site = app
        .as_user(&bob)
        .post(&format!("/api/organizations/{}/sites", bob.organization_id), json!({"domain": "bob.test"}))
        .await
        .expect(201);

    let created = a.post(&keys, json!({"name": "Reporting", "scopes": ["sites:read", "stats:read"]})).await.expect(201);
    let key = created["key"].as_str().unwrap_or_default().to_owned();
    assert!(key.starts_with("etk_") && key.len() > 40, "{key}");
    assert!(key.starts_with(created["prefix"].as_str().unwrap_or("-")));
    let listed = a.get(&keys).await.expect(200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert!(listed[0].get("key").is_none() && listed[0].get("key_hash").is_none(), "{listed}");
    assert!(!listed.to_string().contains(&key[12..]), "the list never shows the key");
    let dump = app.db.dump().await;
    assert!(!dump.contains(&key), "only a hash of the key is stored");

    let as_key = app.with_bearer(&key);
    let sites = as_key.get("/api/sites").await.expect(200);
    assert_eq!(sites.as_array().map(Vec::len), Some(1));
    assert_eq!(sites[0]["domain"], "alice.test");
    assert_eq!(sites[0]["organization_id"], json!(org));
    as_key.get("/api/sites/alice.test").await.expect(200);
    as_key.get(&format!("/api/sites/{}", bobs_site["id"].as_str().unwrap_or_default())).await.expect(404);
    as_key.patch("/api/sites/alice.test", json!({"name": "x"})).await.expect_error(403, "sites:write");
    as_key.get(&keys).await.expect(403);
    as_key.get("/api/organizations").await.expect(403);

    let stats_only = a.post(&keys, json!({"name": "Stats", "scopes": ["stats:read"]})).await.expect(201);
    app.with_bearer(stats_only["key"].as_str().unwrap_or_default()).get("/api/sites").await.expect_error(403, "sites:read");
    let writer = a.post(&keys, json!({"name": "Writer", "scopes": ["sites:write"]})).await.expect(201);
    let w = app.with_bearer(writer["key"].as_str().unwrap_or_default());
    w.post(&format!("/api/organizations/{org}/sites"), json!({"domain": "by-key.test"})).await.expect(201);
    w.delete("/api/sites/by-key.test").await.expect(403);

    a.post(&keys, json!({"name": "x", "scopes": []})).await.expect_error(400, "scopes");
    a.post(&keys, json!({"name": "x", "scopes": ["admin"]})).await.expect_error(400, "unknown scope");
    a.post(&keys, json!({"name": " ", "scopes": ["stats:read"]})).await.expect_error(400, "name");
    // Only owners and admins manage keys.
    app.add_member(org, bob.id, "editor").await;
    app.as_user(&bob).get(&keys).await.expect(403);
    app.as_user(&bob).post(&keys, json!({"name": "x", "scopes": ["stats:read"]})).await.expect(403);

    a.delete(&format!("{keys}/{}", created["id"].as_str().unwrap_or_default())).await.expect(204);
    as_key.get("/api/sites").await.expect_error(401, "revoked");
    a.delete(&format!("{keys}/{}", created["id"].as_str().unwrap_or_default())).await.expect(404);
    let listed = a.get(&keys).await.expect(200);
    assert!(listed.as_array().unwrap().iter().any(|k| k["id"] == created["id"] && !k["revoked_at"].is_null()));
    let log = actions(&app, &alice, org).await;
    assert!(log.iter().any(|x| x == "api_key.created") && log.iter().any(|x| x == "api_key.revoked"), "{log:?}");
}

#[tokio::test]
async fn audit_log_pages_backwards() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up_verified("alice@example.com").await;
    let org = alice.organization_id;
    let a = app.as_user(&alice);
    for i in 0..3 {
        a.patch(&format!("/api/organizations/{org}"), json!({"name": format!("Name {i}")})).await.expect(200);
    }
    let log = format!("/api/organizations/{org}/audit-log");
    let first = a.get(&format!("{log}?limit=2")).await.expect(200);
    let entries = first["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["action"], "organization.changed");
    assert_eq!(entries[0]["actor_email"], "alice@example.com");
    assert!(entries[0]["id"].as_i64() > entries[1]["id"].as_i64(), "newest first");
    let before = first["next_before"].as_i64().expect("next_before");
    let second = a.get(&format!("{log}?limit=2&before={before}")).await.expect(200);
    assert!(second["entries"].as_array().unwrap().iter().all(|e| e["id"].as_i64().unwrap_or(i64::MAX) < before));
    a.get(&format!("{log}?limit=0")).await.expect_error(400, "limit");
    a.get(&format!("{log}?limit=abc")).await.expect(400);
    a.get(&format!("{log}?before=x")).await.expect(400);
}

#[tokio::test]
async fn the_openapi_document_lists_the_team_and_site_routes() {
    let app = TestApp::spawn().await;
    let doc = app.anonymous().get("/api/openapi.json").await.expect(200);
    for path in [
        "/api/organizations",
        "/api/organizations/{org_id}/members/{user_id}",
        "/api/organizations/{org_id}/transfer-ownership",
        "/api/invitations/accept",
        "/api/organizations/{org_id}/api-keys/{key_id}",
        "/api/sites",
        "/api/sites/{site_id}/installation",
        "/api/sites/{site_id}/shared-links/{link_id}",
        "/api/shared/{slug}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    assert!(doc["components"]["schemas"].get("SiteWithRole").is_some());
}
