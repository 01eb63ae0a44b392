//! The authorisation matrix: every operation of the OpenAPI document, called
//! without a token, as a member of another organisation, with each role,
//! and with API keys, expecting 401 / 404 / 403 exactly where it must.
//!
//! Each call gets a fresh organisation (every role, a site with a goal, an
//! invitation, an API key, a share link), so a call that changes or deletes
//! something cannot spoil the next.

use std::collections::{BTreeMap, BTreeSet};

use engagetrack_server::auth::{Permission, Role};
use engagetrack_tests::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

/// What an operation demands of its caller.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// Anyone, no token.
    Public,
    /// A signed-in person, about themself.
    SignedIn,
    /// A role in the organisation named by `{org_id}` with this permission.
    Org(Permission),
    /// As `Org`, for people only: API keys are refused (member lists hold emails).
    OrgPeople(Permission),
    /// A role in the organisation owning `{site_id}` with this permission.
    Site(Permission),
    /// As `Site`, for people only: API keys are refused (a person's own mail settings).
    SitePeople(Permission),
    /// Any signed-in user may call it; what it touches is decided by the body
    /// (accepting an invitation, listing one's own things).
    SignedInAny,
    /// People and API keys: a list filtered to what the caller may see.
    Listing,
}

use Need::*;
use Permission::*;

/// Every operation and what it needs. The first test proves this covers the
/// OpenAPI document exactly, so a new endpoint cannot skip the matrix.
const MATRIX: &[(&str, &str, Need)] = &[
    ("POST", "/api/auth/signup", Public),
    ("POST", "/api/auth/verify-email", Public),
    ("POST", "/api/auth/resend-verification", Public),
    ("POST", "/api/auth/login", Public),
    ("POST", "/api/auth/refresh", Public),
    ("POST", "/api/auth/logout", SignedIn),
    ("POST", "/api/auth/password-reset", Public),
    ("POST", "/api/auth/password-reset/confirm", Public),
    ("GET", "/api/auth/providers", Public),
    ("GET", "/api/auth/oauth/{provider}/start", Public),
    ("GET", "/api/auth/oauth/{provider}/callback", Public),
    ("GET", "/api/me", SignedIn),
    ("PATCH", "/api/me", SignedIn),
    ("DELETE", "/api/me", SignedIn),
    ("POST", "/api/me/password", SignedIn),
    ("GET", "/api/me/sessions", SignedIn),
    ("DELETE", "/api/me/sessions/{session_id}", SignedIn),
    ("GET", "/api/me/export", SignedIn),
    ("POST", "/api/me/totp/setup", SignedIn),
    ("POST", "/api/me/totp/enable", SignedIn),
    ("POST", "/api/me/totp/disable", SignedIn),
    ("GET", "/api/notices", SignedIn),
    ("POST", "/api/notices/{notice_id}/dismiss", SignedIn),
    ("GET", "/api/organizations", SignedInAny),
    ("POST", "/api/organizations", SignedInAny),
    ("GET", "/api/organizations/{org_id}", Org(ViewOrganization)),
    ("PATCH", "/api/organizations/{org_id}", Org(OwnOrganization)),
    ("DELETE", "/api/organizations/{org_id}", Org(OwnOrganization)),
    ("GET", "/api/organizations/{org_id}/members", OrgPeople(ViewOrganization)),
    ("PATCH", "/api/organizations/{org_id}/members/{user_id}", Org(ManageMembers)),
    ("DELETE", "/api/organizations/{org_id}/members/{user_id}", Org(ManageMembers)),
    ("POST", "/api/organizations/{org_id}/transfer-ownership", Org(OwnOrganization)),
    ("GET", "/api/organizations/{org_id}/invitations", Org(ManageMembers)),
    ("POST", "/api/organizations/{org_id}/invitations", Org(ManageMembers)),
    ("DELETE", "/api/organizations/{org_id}/invitations/{invitation_id}", Org(ManageMembers)),
    ("POST", "/api/invitations/accept", SignedInAny),
    ("GET", "/api/organizations/{org_id}/audit-log", Org(ViewAuditLog)),
    ("GET", "/api/organizations/{org_id}/api-keys", Org(ManageApiKeys)),
    ("POST", "/api/organizations/{org_id}/api-keys", Org(ManageApiKeys)),
    ("DELETE", "/api/organizations/{org_id}/api-keys/{key_id}", Org(ManageApiKeys)),
    ("GET", "/api/organizations/{org_id}/billing", Org(ManageBilling)),
    ("GET", "/api/organizations/{org_id}/billing/records", Org(ManageBilling)),
    ("GET", "/api/organizations/{org_id}/billing/details", Org(ManageBilling)),
    ("PUT", "/api/organizations/{org_id}/billing/details", Org(ManageBilling)),
    ("POST", "/api/organizations/{org_id}/billing/checkout", Org(ManageBilling)),
    ("POST", "/api/organizations/{org_id}/billing/portal", Org(ManageBilling)),
    ("GET", "/api/billing/plans", SignedIn),
    ("GET", "/api/sites", Listing),
    ("POST", "/api/organizations/{org_id}/sites", Org(EditSites)),
    ("GET", "/api/sites/{site_id}", Site(ViewOrganization)),
    ("PATCH", "/api/sites/{site_id}", Site(EditSites)),
    ("DELETE", "/api/sites/{site_id}", Site(DeleteSites)),
    ("GET", "/api/sites/{site_id}/installation", Site(ViewOrganization)),
    ("GET", "/api/sites/{site_id}/goals", Site(ViewOrganization)),
    ("POST", "/api/sites/{site_id}/goals", Site(EditSites)),
    ("DELETE", "/api/sites/{site_id}/goals/{goal_id}", Site(EditSites)),
    ("GET", "/api/sites/{site_id}/shared-links", Site(ViewStats)),
    ("POST", "/api/sites/{site_id}/shared-links", Site(EditSites)),
    ("DELETE", "/api/sites/{site_id}/shared-links/{link_id}", Site(EditSites)),
    ("GET", "/api/shared/{slug}", Public),
    ("POST", "/api/v2/query", Site(ViewStats)),
    ("POST", "/api/v2/funnel", Site(ViewStats)),
    ("GET", "/api/sites/{site_id}/realtime", Site(ViewStats)),
    ("GET", "/api/sites/{site_id}/property-keys", Site(ViewStats)),
    ("GET", "/api/sites/{site_id}/export.csv", Site(ViewStats)),
    ("POST", "/api/shared/{slug}/query", Public),
    ("GET", "/api/shared/{slug}/realtime", Public),
    ("GET", "/api/v1/stats/realtime/visitors", Site(ViewStats)),
    ("GET", "/api/v1/stats/aggregate", Site(ViewStats)),
    ("GET", "/api/v1/stats/timeseries", Site(ViewStats)),
    ("GET", "/api/v1/stats/breakdown", Site(ViewStats)),
    ("GET", "/api/sites/{site_id}/mail-settings", SitePeople(ViewStats)),
    ("PUT", "/api/sites/{site_id}/mail-settings", SitePeople(ViewStats)),
    ("GET", "/api/unsubscribe", Public),
    ("POST", "/api/unsubscribe", Public),
    ("POST", "/api/sites/{site_id}/visitor-requests/find", Site(AnswerVisitorRequests)),
    ("POST", "/api/sites/{site_id}/visitor-requests/export", Site(AnswerVisitorRequests)),
    ("POST", "/api/sites/{site_id}/visitor-requests/erase", Site(AnswerVisitorRequests)),
    ("POST", "/api/sites/{site_id}/imports", Site(ImportData)),
    ("GET", "/api/sites/{site_id}/imports", Site(ImportData)),
    ("GET", "/api/sites/{site_id}/imports/{import_id}", Site(ImportData)),
    ("DELETE", "/api/sites/{site_id}/imports/{import_id}", Site(ImportData)),
];

async fn openapi_operations(app: &TestApp) -> BTreeSet<(String, String)> {
    let doc: Value = reqwest::get(app.url("/api/openapi.json")).await.unwrap().json().await.unwrap();
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

#[tokio::test]
async fn the_matrix_covers_every_documented_operation() {
    let app = TestApp::spawn().await;
    let documented = openapi_operations(&app).await;
    let listed: BTreeSet<(String, String)> = MATRIX.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
    let missing: Vec<_> = documented.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&documented).collect();
    assert!(missing.is_empty(), "operations with no row in MATRIX: {missing:?}");
    assert!(stale.is_empty(), "MATRIX rows for operations that do not exist: {stale:?}");
}

/// A person with a live sign-in session and its access token.
struct Person {
    id: Uuid,
    token: String,
}

async fn person(app: &TestApp, label: &str) -> Person {
    let db = app.db.client().await;
    let id = Uuid::new_v4();
    let email = format!("{label}-{}@example.com", &id.simple().to_string()[..8]);
    db.execute("INSERT INTO users (id, email, name, email_verified_at) VALUES ($1, $2, $3, now())", &[&id, &email, &label])
        .await
        .unwrap();
    let family = Uuid::new_v4();
    let hash = engagetrack_server::auth::opaque::hash(&family.to_string());
    db.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) VALUES ($1, $2, $3, now() + interval '1 day')",
        &[&hash, &family, &id],
    )
    .await
    .unwrap();
    let token = app.state.access_tokens.issue(id, family, chrono::Utc::now()).unwrap();
    Person { id, token }
}

/// One organisation with everything an operation may name.
struct World {
    org: Uuid,
    site: Uuid,
    goal: Uuid,
    invitation: Uuid,
    api_key: Uuid,
    shared_link: Uuid,
    shared_slug: String,
    /// A viewer whose role or membership the call may change.
    target: Uuid,
    /// An API key of this organisation with every scope.
    key_token: String,
}

/// Which permissions an API key (with every scope) may exercise.
fn key_may(p: Permission) -> bool {
    matches!(p, ViewStats | ViewOrganization | EditSites)
}

async fn api_key(app: &TestApp, org: Uuid) -> String {
    let token = format!("etk_{}", Uuid::new_v4().simple());
    app.db
        .client()
        .await
        .execute(
            "INSERT INTO api_keys (id, organization_id, name, prefix, key_hash, scopes) VALUES ($1, $2, 'all', 'etk_all', $3, '{stats:read,sites:read,sites:write}')",
            &[&Uuid::new_v4(), &org, &engagetrack_server::auth::opaque::hash(&token)],
        )
        .await
        .unwrap();
    token
}

struct Cast {
    by_role: BTreeMap<&'static str, Person>,
    outsider: Person,
    outsider_org: Uuid,
    target: Person,
}

async fn cast(app: &TestApp) -> Cast {
    let mut by_role = BTreeMap::new();
    for role in Role::ALL {
        by_role.insert(role.as_str(), person(app, role.as_str()).await);
    }
    let outsider = person(app, "outsider").await;
    let outsider_org = Uuid::new_v4();
    let db = app.db.client().await;
    db.execute("INSERT INTO organizations (id, name, slug) VALUES ($1, 'Elsewhere', $2)", &[&outsider_org, &format!("else-{}", outsider_org.simple())])
        .await
        .unwrap();
    db.execute("INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, 'owner')", &[&outsider_org, &outsider.id]).await.unwrap();
    db.execute("INSERT INTO sites (id, organization_id, domain, name) VALUES ($1, $2, 'elsewhere.example', 'Elsewhere')", &[&Uuid::new_v4(), &outsider_org])
        .await
        .unwrap();
    let target = person(app, "target").await;
    Cast { by_role, outsider, outsider_org, target }
}

async fn world(app: &TestApp, cast: &Cast) -> World {
    let db = app.db.client().await;
    let org = Uuid::new_v4();
    db.execute("INSERT INTO organizations (id, name, slug) VALUES ($1, 'Acme', $2)", &[&org, &format!("acme-{}", org.simple())]).await.unwrap();
    for (role, p) in &cast.by_role {
        db.execute("INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, $3)", &[&org, &p.id, role]).await.unwrap();
    }
    db.execute("INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, 'viewer')", &[&org, &cast.target.id]).await.unwrap();
    let site = Uuid::new_v4();
    let domain = format!("s{}.example", &site.simple().to_string()[..10]);
    db.execute("INSERT INTO sites (id, organization_id, domain, name) VALUES ($1, $2, $3, 'Acme site')", &[&site, &org, &domain]).await.unwrap();
    let goal = Uuid::new_v4();
    db.execute("INSERT INTO goals (id, site_id, kind, display_name, event_name) VALUES ($1, $2, 'event', 'Signup', 'signup')", &[&goal, &site])
        .await
        .unwrap();
    let invitation = Uuid::new_v4();
    db.execute(
        "INSERT INTO invitations (id, organization_id, email, role, token_hash, expires_at) VALUES ($1, $2, 'new@example.com', 'viewer', $3, now() + interval '1 day')",
        &[&invitation, &org, &Uuid::new_v4().as_bytes().to_vec()],
    )
    .await
    .unwrap();
    let api_key = Uuid::new_v4();
    db.execute(
        "INSERT INTO api_keys (id, organization_id, name, prefix, key_hash, scopes) VALUES ($1, $2, 'k', 'etk_xxxx', $3, '{stats:read}')",
        &[&api_key, &org, &Uuid::new_v4().as_bytes().to_vec()],
    )
    .await
    .unwrap();
    let shared_link = Uuid::new_v4();
    let shared_slug = format!("share{}", shared_link.simple());
    db.execute("INSERT INTO share_links (id, site_id, slug) VALUES ($1, $2, $3)", &[&shared_link, &site, &shared_slug]).await.unwrap();
    let key_token = self::api_key(app, org).await;
    World { org, site, goal, invitation, api_key, shared_link, shared_slug, target: cast.target.id, key_token }
}

/// The path with every `{param}` filled from the world.
fn fill(path: &str, w: &World) -> String {
    let id_for = |before: &str| match before {
        "invitations" => w.invitation,
        "api-keys" => w.api_key,
        "shared-links" => w.shared_link,
        _ => Uuid::new_v4(),
    };
    let segments: Vec<&str> = path.split('/').collect();
    let mut out = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let v = match *seg {
            "{org_id}" => w.org.to_string(),
            "{site_id}" => w.site.to_string(),
            "{goal_id}" => w.goal.to_string(),
            "{user_id}" => w.target.to_string(),
            "{slug}" => w.shared_slug.clone(),
            "{provider}" => "google".into(),
            "{session_id}" => Uuid::new_v4().to_string(),
            "{invitation_id}" => w.invitation.to_string(),
            "{key_id}" => w.api_key.to_string(),
            "{link_id}" => w.shared_link.to_string(),
            "{import_id}" => Uuid::new_v4().to_string(),
            "{id}" => id_for(segments[i - 1]).to_string(),
            other => other.to_owned(),
        };
        out.push(v);
    }
    let path = out.join("/");
    // Plausible's Stats API v1 names the site in the query string.
    match path.strip_prefix("/api/v1/stats/") {
        Some("breakdown") => format!("{path}?site_id={}&property=visit:source", w.site),
        Some(_) => format!("{path}?site_id={}", w.site),
        None => path,
    }
}

/// A valid body for the operation, so that what answers is the access
/// check and not the input validation.
fn body_for(method: &str, path: &str, w: &World) -> Value {
    let unique = Uuid::new_v4().simple().to_string();
    match (method, path) {
        ("POST", "/api/organizations") => json!({"name": "New team"}),
        ("PATCH", "/api/organizations/{org_id}") => json!({"name": "Renamed"}),
        ("PATCH", "/api/organizations/{org_id}/members/{user_id}") => json!({"role": "editor"}),
        ("POST", "/api/organizations/{org_id}/transfer-ownership") => json!({"user_id": w.target}),
        ("POST", "/api/organizations/{org_id}/invitations") => {
            json!({"email": format!("{unique}@example.com"), "role": "viewer"})
        }
        ("POST", "/api/organizations/{org_id}/api-keys") => {
            json!({"name": "ci", "scopes": ["stats:read"]})
        }
        ("POST", "/api/organizations/{org_id}/sites") => {
            json!({"domain": format!("{}.example.com", &unique[..12]), "timezone": "UTC"})
        }
        ("PATCH", "/api/sites/{site_id}") => json!({"name": "Renamed"}),
        ("POST", "/api/sites/{site_id}/goals") => {
            json!({"kind": "event", "event_name": format!("e{}", &unique[..8])})
        }
        ("POST", "/api/invitations/accept") => json!({"token": "not-a-real-token"}),
        ("POST", "/api/organizations/{org_id}/billing/checkout") => {
            json!({"plan_id": "growth", "provider": "stripe"})
        }
        ("PATCH", "/api/me") => json!({"name": "Someone"}),
        ("PUT", "/api/sites/{site_id}/mail-settings") => json!({"weekly": true, "monthly": false}),
        ("PUT", "/api/organizations/{org_id}/billing/details") => {
            json!({"country": "DE", "city": "Berlin", "postal_code": "10115", "address_lines": ["Invalidenstr. 1"]})
        }
        // The site is named in the body here, as Plausible's API does.
        ("POST", "/api/v2/query") => {
            json!({"site_id": w.site.to_string(), "metrics": ["visitors"], "date_range": "7d"})
        }
        ("POST", "/api/v2/funnel") => {
            json!({"site_id": w.site.to_string(), "date_range": "7d", "steps": [{"page": "/"}, {"page": "/pricing"}]})
        }
        ("POST", "/api/shared/{slug}/query") => {
            json!({"metrics": ["visitors"], "date_range": "7d"})
        }
        (_, p) if p.starts_with("/api/sites/{site_id}/visitor-requests/") => json!({"user_id": "u-1"}),
        _ => json!({}),
    }
}

async fn call(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> (StatusCode, String) {
    call_with(app, method, path, token, json!({})).await
}

async fn call_with(app: &TestApp, method: &str, path: &str, token: Option<&str>, body: Value) -> (StatusCode, String) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut req = client.request(method.parse().unwrap(), app.url(path));
    if method != "GET" {
        req = req.json(&body);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap_or_default())
}

#[tokio::test]
async fn every_operation_answers_each_caller_as_its_role_allows() {
    let app = TestApp::spawn().await;
    let cast = cast(&app).await;
    let mut wrong = Vec::new();
    for (method, path, need) in MATRIX {
        // No token at all.
        let w = world(&app, &cast).await;
        let (status, body) = call(&app, method, &fill(path, &w), None).await;
        let public = matches!(need, Public);
        if !public && status != StatusCode::UNAUTHORIZED {
            wrong.push(format!("{method} {path} without a token: {status} {body}"));
        }
        if status.is_server_error() {
            wrong.push(format!("{method} {path} without a token: {status} {body}"));
        }
        let permission = match need {
            Org(p) | Site(p) | OrgPeople(p) | SitePeople(p) => *p,
            Public => continue,
            SignedIn | SignedInAny | Listing => {
                // A throwaway person: the call may sign them out or lock them.
                let someone = person(&app, "someone").await;
                let (status, body) = call_with(&app, method, &fill(path, &w), Some(&someone.token), body_for(method, path, &w)).await;
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN || status.is_server_error() {
                    wrong.push(format!("{method} {path} signed in: {status} {body}"));
                }
                let w = world(&app, &cast).await;
                let (status, body) = call_with(&app, method, &fill(path, &w), Some(&w.key_token), body_for(method, path, &w)).await;
                if !matches!(need, Listing) && status != StatusCode::FORBIDDEN {
                    wrong.push(format!("{method} {path} with an API key (people only): {status} {body}"));
                }
                continue;
            }
        };
        // A member of another organisation: not found, whatever their role there.
        let w = world(&app, &cast).await;
        let (status, body) = call_with(&app, method, &fill(path, &w), Some(&cast.outsider.token), body_for(method, path, &w)).await;
        if status != StatusCode::NOT_FOUND {
            wrong.push(format!("{method} {path} as an outsider: {status} {body}"));
        }
        for role in Role::ALL {
            let w = world(&app, &cast).await;
            let token = &cast.by_role[role.as_str()].token;
            let (status, body) = call_with(&app, method, &fill(path, &w), Some(token), body_for(method, path, &w)).await;
            let access_denied = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                || (status == StatusCode::NOT_FOUND && (body.contains("organization not found") || body.contains("site not found")));
            let ok = if role.allows(permission) { !access_denied } else { status == StatusCode::FORBIDDEN };
            if !ok || status.is_server_error() {
                wrong.push(format!("{method} {path} as {role}: {status} {body}"));
            }
        }
    }
    let _ = cast.outsider_org;
    assert!(wrong.is_empty(), "{} wrong answers:\n{}", wrong.len(), wrong.join("\n"));
}

#[tokio::test]
async fn api_keys_reach_only_their_organisation_and_scopes() {
    let app = TestApp::spawn().await;
    let cast = cast(&app).await;
    let outsider_key = api_key(&app, cast.outsider_org).await;
    let mut wrong = Vec::new();
    for (method, path, need) in MATRIX {
        let (Org(permission) | Site(permission) | OrgPeople(permission) | SitePeople(permission)) = need else {
            continue;
        };
        let key_may = |p| key_may(p) && !matches!(need, OrgPeople(_) | SitePeople(_));
        let w = world(&app, &cast).await;
        let (status, body) = call_with(&app, method, &fill(path, &w), Some(&outsider_key), body_for(method, path, &w)).await;
        // Endpoints no key may use refuse every key alike, which tells nothing about the organisation.
        let expected_ok = if key_may(*permission) { status == StatusCode::NOT_FOUND } else { matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) };
        if !expected_ok {
            wrong.push(format!("{method} {path} with another organisation's key: {status} {body}"));
        }
        let w = world(&app, &cast).await;
        let (status, body) = call_with(&app, method, &fill(path, &w), Some(&w.key_token), body_for(method, path, &w)).await;
        let access_denied = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            || (status == StatusCode::NOT_FOUND && (body.contains("organization not found") || body.contains("site not found")));
        let ok = if key_may(*permission) { !access_denied } else { status == StatusCode::FORBIDDEN };
        if !ok || status.is_server_error() {
            wrong.push(format!("{method} {path} with this organisation's key: {status} {body}"));
        }
    }
    assert!(wrong.is_empty(), "{} wrong answers:\n{}", wrong.len(), wrong.join("\n"));
}
