//! Attacks on the API, each made as an attacker would make it: access tokens
//! forged with the server's own key but a changed header or claims (`alg`
//! none, another algorithm, a wrong or missing `kid`, expired, not yet
//! valid, issued in the future, another issuer or audience), tokens of a
//! locked or deleted account, reused refresh tokens, sessions outliving a
//! password change, CSRF on the refresh cookie, share links and API keys
//! reaching past what they name, bodies meant to hurt the parser (oversized,
//! deeply nested), slowloris connections and trickled bodies, and floods of
//! sign-ups and beacons. Each gets a 4xx (or a closed connection), never a
//! 5xx, and never the account.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::num::NonZeroU32;
use std::time::Duration;

use chrono::Utc;
use engagetrack_server::AppConfig;
use engagetrack_server::client_ip::ClientIpMode;
use engagetrack_server::routes::host::Timeouts;
use engagetrack_tests::TestApp;
use engagetrack_tests::users::TestUser;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

/// The server's `jwt-key-1`, read from its secrets file as an insider would have it.
fn jwt_key(app: &TestApp) -> Vec<u8> {
    let secrets: Value = serde_json::from_slice(&std::fs::read(app.secrets_file()).expect("secrets file")).expect("json");
    hex::decode(secrets["jwt-key-1"].as_str().expect("jwt-key-1")).expect("hex")
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A token with this header and these claims, HMAC-SHA256-signed with `key`.
fn forge(header: &Value, claims: &Value, key: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// The claims of the user's real token (its session family stays live).
fn claims_of(user: &TestUser) -> Value {
    let payload = user.access_token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("claims")
}

async fn me(app: &TestApp, token: &str) -> (u16, String) {
    let res = reqwest::Client::new().get(app.url("/api/me")).bearer_auth(token).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn forged_access_tokens_are_refused_even_with_the_servers_key() {
    let app = TestApp::spawn().await;
    let user = app.sign_up_verified(&format!("target-{}@example.com", Uuid::new_v4().simple())).await;
    let key = jwt_key(&app);
    let claims = claims_of(&user);
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": "1"});
    // The forge itself is right: the same header and claims pass.
    assert_eq!(me(&app, &forge(&header, &claims, &key)).await.0, 200, "the control token must be accepted");

    let now = Utc::now().timestamp();
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        c
    };
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT", "kid": "1"})), b64(&claims));
    let cases: Vec<(&str, String)> = vec![
        ("alg none, no signature", unsigned),
        ("alg none, with the HMAC", forge(&json!({"alg": "none", "typ": "JWT", "kid": "1"}), &claims, &key)),
        // HS/RS confusion: an RS256 header whose "signature" is an HMAC with the shared key.
        ("alg RS256", forge(&json!({"alg": "RS256", "typ": "JWT", "kid": "1"}), &claims, &key)),
        ("alg HS512", forge(&json!({"alg": "HS512", "typ": "JWT", "kid": "1"}), &claims, &key)),
        ("a kid the server does not hold", forge(&json!({"alg": "HS256", "typ": "JWT", "kid": "2"}), &claims, &key)),
        ("no kid", forge(&json!({"alg": "HS256", "typ": "JWT"}), &claims, &key)),
        ("a path as kid", forge(&json!({"alg": "HS256", "typ": "JWT", "kid": "../../dev/null"}), &claims, &key)),
        ("expired", forge(&header, &with("exp", json!(now - 60)), &key)),
        ("not valid yet (nbf)", forge(&header, &with("nbf", json!(now + 3_600)), &key)),
        ("issued in the future", forge(&header, &with("iat", json!(now + 3_600)), &key)),
        ("another issuer", forge(&header, &with("iss", json!("someone-else")), &key)),
        ("another audience", forge(&header, &with("aud", json!("another-api")), &key)),
        ("no expiry", {
            let mut c = claims.clone();
            c.as_object_mut().unwrap().remove("exp");
            forge(&header, &c, &key)
        }),
        ("another user in a live session", forge(&header, &with("sub", json!(Uuid::new_v4())), &key)),
        ("a session that never existed", forge(&header, &with("sid", json!(Uuid::new_v4())), &key)),
        ("signed with another key", forge(&header, &claims, b"not the server's key, 32 bytes!!")),
        ("garbage", "ey.ey.ey".to_owned()),
    ];
    let mut wrong = Vec::new();
    for (case, token) in cases {
        let (status, body) = me(&app, &token).await;
        if status != 401 {
            wrong.push(format!("{case}: {status} {body}"));
        }
    }
    assert!(wrong.is_empty(), "forged tokens accepted or answered wrongly:\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn a_locked_accounts_tokens_stop_working_at_once() {
    let app = TestApp::spawn().await;
    let user = app.sign_up_verified(&format!("locked-{}@example.com", Uuid::new_v4().simple())).await;
    assert_eq!(me(&app, &user.access_token).await.0, 200);
    app.db.client().await.execute("UPDATE users SET locked_at = now() WHERE id = $1", &[&user.id]).await.unwrap();
    assert_eq!(me(&app, &user.access_token).await.0, 401, "the access token of a locked account");
    let refresh = reqwest::Client::new()
        .post(app.url("/api/auth/refresh"))
        .json(&json!({"refresh_token": user.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status().as_u16(), 401, "{}", refresh.text().await.unwrap());
}

#[tokio::test]
async fn bodies_built_to_hurt_the_parser_get_4xx_and_the_server_stays_up() {
    let app = TestApp::spawn().await;
    let user = app.sign_up_verified(&format!("parser-{}@example.com", Uuid::new_v4().simple())).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Vec<u8>| {
        http.post(app.url(path)).bearer_auth(&user.access_token).header("content-type", "application/json").body(body).send()
    };
    let sites = format!("/api/organizations/{}/sites", user.organization_id);

    // 16 MB of JSON: refused by size, not read whole.
    let big = format!(r#"{{"domain": "example.com", "name": "{}"}}"#, "a".repeat(16 * 1024 * 1024));
    let res = post(&sites, big.into_bytes()).await.unwrap();
    assert_eq!(res.status().as_u16(), 413, "{}", res.text().await.unwrap());
    // 100,000 nested arrays: the parser's depth limit, a 400.
    let deep = format!(r#"{{"domain": "example.com", "name": {}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    let res = post(&sites, deep.into_bytes()).await.unwrap();
    assert_eq!(res.status().as_u16(), 400, "{}", res.text().await.unwrap());
    // A beacon nested deep, at the ingest.
    let beacon = format!(r#"{{"site": "{}", "type": "event", "name": "x", "props": {}{}}}"#, Uuid::new_v4(), "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let res = http.post(app.url("/api/e")).header("content-type", "text/plain").body(beacon).send().await.unwrap();
    assert!(res.status().is_client_error(), "{}: {}", res.status(), res.text().await.unwrap());

    // Still serving.
    assert_eq!(me(&app, &user.access_token).await.0, 200);
}

/// CSRF: the refresh cookie is `SameSite=Strict`, and even where a browser
/// would send it cross-site the server refuses that use, without spending it.
#[tokio::test]
async fn the_refresh_cookie_is_refused_cross_site_and_not_spent() {
    let app = TestApp::spawn().await;
    let user = app.sign_up_verified(&format!("csrf-{}@example.com", Uuid::new_v4().simple())).await;
    let cookie = format!("et_refresh={}", user.refresh_token);
    let refresh = |extra: Vec<(&'static str, String)>| {
        let mut req = reqwest::Client::new().post(app.url("/api/auth/refresh")).header("cookie", cookie.clone());
        for (k, v) in extra {
            req = req.header(k, v);
        }
        req.send()
    };
    for (case, headers) in [
        ("another origin", vec![("origin", "https://evil.example".to_owned())]),
        ("an opaque origin", vec![("origin", "null".to_owned())]),
        ("a cross-site fetch", vec![("sec-fetch-site", "cross-site".to_owned())]),
    ] {
        let res = refresh(headers).await.unwrap();
        assert_eq!(res.status().as_u16(), 403, "{case}: {}", res.text().await.unwrap());
    }
    // The same origin, as the dashboard sends it: the (unspent) token rotates.
    let res = refresh(vec![("origin", app.url("")), ("sec-fetch-site", "same-origin".to_owned())]).await.unwrap();
    assert_eq!(res.status().as_u16(), 200, "{}", res.text().await.unwrap());
}

/// A browser's User-Agent: a beacon without one is dropped as a bot (with a 202).
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0";

/// `n` pageviews on `site` at `domain`, stored before this returns (the beacon is durable before its 2xx).
async fn pageviews(app: &TestApp, site: &str, domain: &str, n: usize) {
    let http = reqwest::Client::new();
    for i in 0..n {
        let beacon = json!({"site": site, "type": "pageview", "url": format!("https://{domain}/p{i}"), "sid": format!("scope-{i}-{}", Uuid::new_v4().simple())});
        let res = http.post(app.url("/api/e")).header("content-type", "text/plain").header("user-agent", BROWSER).body(beacon.to_string()).send().await.unwrap();
        assert!(res.status().is_success(), "beacon: {} {}", res.status(), res.text().await.unwrap());
    }
}

async fn pageviews_answered(res: engagetrack_tests::users::Answer) -> i64 {
    let body = res.expect(200);
    body["results"][0]["metrics"][0].as_i64().unwrap_or_else(|| panic!("no pageviews in {body}"))
}

const PAGEVIEWS_TODAY: &str = r#"{"metrics": ["pageviews"], "date_range": "day"}"#;

/// Two tenants with a site on the same domain (the other tenant's is the
/// older), each with its own traffic: what a share link or an API key of the
/// first may see of the second.
struct Tenants {
    owner: TestUser,
    domain: String,
    site: String,
    other_site: String,
}

async fn tenants(app: &TestApp) -> Tenants {
    let domain = format!("same-{}.example", &Uuid::new_v4().simple().to_string()[..10]);
    let other_owner = app.sign_up_verified(&format!("other-{}@example.com", Uuid::new_v4().simple())).await;
    let other_site = app
        .as_user(&other_owner)
        .post(&format!("/api/organizations/{}/sites", other_owner.organization_id), json!({"domain": domain}))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let owner = app.sign_up_verified(&format!("owner-{}@example.com", Uuid::new_v4().simple())).await;
    let site = app.as_user(&owner).post(&format!("/api/organizations/{}/sites", owner.organization_id), json!({"domain": domain})).await.expect(201)
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    pageviews(app, &site, &domain, 3).await;
    pageviews(app, &other_site, &domain, 5).await;
    Tenants { owner, domain, site, other_site }
}

/// A share link opens one site's stats, read-only: naming another site in
/// the body, using the slug as a bearer token, or keeping a deleted link
/// reaches nothing more.
#[tokio::test]
async fn a_share_link_opens_its_site_and_nothing_else() {
    let app = TestApp::spawn().await;
    let t = tenants(&app).await;
    let owner = app.as_user(&t.owner);
    let link = owner.post(&format!("/api/sites/{}/shared-links", t.site), json!({"name": "public"})).await.expect(201);
    let slug = link["slug"].as_str().unwrap().to_owned();
    let anonymous = app.anonymous();
    let shared_path = format!("/api/shared/{slug}/query");
    let shared = |body: Value| anonymous.post(&shared_path, body);
    let today: Value = serde_json::from_str(PAGEVIEWS_TODAY).unwrap();

    assert_eq!(pageviews_answered(shared(today.clone()).await).await, 3, "the shared site's own pageviews");
    for (case, site_ref) in [("the other site's id", t.other_site.clone()), ("the domain both tenants use", t.domain.clone())] {
        let mut body = today.clone();
        body["site_id"] = json!(site_ref);
        assert_eq!(pageviews_answered(shared(body).await).await, 3, "{case} in the body is ignored");
    }
    // A duplicated key is read once, and the link's site still wins.
    let twice = format!(r#"{{"site_id": "{}", "metrics": ["pageviews"], "date_range": "day", "site_id": "{}"}}"#, t.other_site, t.other_site);
    let res = reqwest::Client::new().post(app.url(&format!("/api/shared/{slug}/query"))).header("content-type", "application/json").body(twice).send().await.unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert!(status == 400 || body["results"][0]["metrics"][0] == json!(3), "duplicate site_id: {status} {body}");
    // The realtime view is of the shared site too.
    anonymous.get(&format!("/api/shared/{slug}/realtime")).await.expect(200);

    // The slug is no credential for the authenticated API.
    let as_slug = app.with_bearer(&slug);
    let mut body = today.clone();
    body["site_id"] = json!(t.site);
    as_slug.post("/api/v2/query", body).await.expect_error(401, "");
    as_slug.get(&format!("/api/sites/{}", t.site)).await.expect_error(401, "");
    // Nor does it list the site's other links, or reach the export.
    anonymous.get(&format!("/api/sites/{}/shared-links", t.site)).await.expect_error(401, "");
    anonymous.get(&format!("/api/sites/{}/export.csv?date_range=day", t.site)).await.expect_error(401, "");
    // Guessed slugs are not found, whatever their shape.
    for guess in ["x", "%27%20OR%201%3D1--", "..%2F..%2Fetc%2Fpasswd", &"a".repeat(200), &slug.to_uppercase()] {
        let res = anonymous.post(&format!("/api/shared/{guess}/query"), today.clone()).await;
        assert_eq!(res.status.as_u16(), 404, "slug {guess:?}: {}", res.body);
    }

    // Deleted: the link stops at once (no cached answer outlives it).
    let link_id = link["id"].as_str().unwrap();
    let res = owner.delete(&format!("/api/sites/{}/shared-links/{link_id}", t.site)).await;
    assert!(res.status.is_success(), "delete the link: {} {}", res.status, res.body);
    shared(today.clone()).await.expect_error(404, "no such shared dashboard");

    // A link of a deleted site stops with it.
    let link = owner.post(&format!("/api/sites/{}/shared-links", t.site), json!({})).await.expect(201);
    let slug = link["slug"].as_str().unwrap();
    assert_eq!(pageviews_answered(anonymous.post(&format!("/api/shared/{slug}/query"), today.clone()).await).await, 3);
    let res = owner.delete(&format!("/api/sites/{}", t.site)).await;
    assert!(res.status.is_success(), "delete the site: {} {}", res.status, res.body);
    anonymous.post(&format!("/api/shared/{slug}/query"), today).await.expect_error(404, "no such shared dashboard");
    // The other tenant's numbers were never touched.
    assert_eq!(app.count_events(shared::SiteId::from_uuid(t.other_site.parse().unwrap())).await, 5);
}

/// A password-protected link: without the password or with a wrong one,
/// 401; guessing is throttled per link, and while throttled even the right
/// password waits (so a guesser cannot tell when it hit).
#[tokio::test]
async fn a_password_protected_share_link_withstands_guessing() {
    let app = TestApp::spawn().await;
    let t = tenants(&app).await;
    let link = app
        .as_user(&t.owner)
        .post(&format!("/api/sites/{}/shared-links", t.site), json!({"password": "correct horse battery"}))
        .await
        .expect(201);
    let slug = link["slug"].as_str().unwrap().to_owned();
    let today: Value = serde_json::from_str(PAGEVIEWS_TODAY).unwrap();
    let http = reqwest::Client::new();
    let ask = |password: Option<&str>| {
        let mut req = http.post(app.url(&format!("/api/shared/{slug}/query"))).json(&today);
        if let Some(p) = password {
            req = req.header("x-share-password", p);
        }
        req.send()
    };
    assert_eq!(ask(None).await.unwrap().status().as_u16(), 401, "no password");
    assert_eq!(ask(Some("correct horse battery")).await.unwrap().status().as_u16(), 200, "the password");
    let mut statuses = Vec::new();
    for i in 0..25 {
        statuses.push(ask(Some(&format!("guess number {i}"))).await.unwrap().status().as_u16());
    }
    assert!(statuses[..20].iter().all(|s| *s == 401), "the first 20 wrong guesses: {statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "guesses past 20: {statuses:?}");
    let res = ask(Some("correct horse battery")).await.unwrap();
    assert_eq!(res.status().as_u16(), 429, "the right password while throttled: {}", res.text().await.unwrap());
}

/// An API key stays inside its organisation and its scopes: a domain it
/// shares with another tenant resolves to its own site, a revoked key or one
/// of a deleted organisation stops at once, and person-only endpoints refuse it.
#[tokio::test]
async fn an_api_key_cannot_reach_past_its_organisation_or_outlive_revocation() {
    let app = TestApp::spawn().await;
    let t = tenants(&app).await;
    let owner = app.as_user(&t.owner);
    let keys = format!("/api/organizations/{}/api-keys", t.owner.organization_id);
    let created = owner.post(&keys, json!({"name": "stats", "scopes": ["stats:read"]})).await.expect(201);
    let key = app.with_bearer(created["key"].as_str().unwrap());
    let query = |site_ref: &str| {
        let mut body: Value = serde_json::from_str(PAGEVIEWS_TODAY).unwrap();
        body["site_id"] = json!(site_ref);
        key.post("/api/v2/query", body)
    };

    assert_eq!(pageviews_answered(query(&t.site).await).await, 3, "its own site by id");
    // Both tenants have the domain (the other's is older): the key's own site answers.
    assert_eq!(pageviews_answered(query(&t.domain).await).await, 3, "the shared domain resolves inside the key's organisation");
    assert_eq!(pageviews_answered(query(&t.domain.to_uppercase()).await).await, 3, "the domain in capitals");
    query(&t.other_site).await.expect_error(404, "site not found");
    // The listing holds only its organisation's sites.
    let listed = key.get("/api/sites").await;
    if listed.status.is_success() {
        let text = listed.body.to_string();
        assert!(text.contains(&t.site) && !text.contains(&t.other_site), "the key's listing: {text}");
    } else {
        assert_eq!(listed.status.as_u16(), 403, "a stats-only key's listing: {}", listed.body);
    }
    // Scopes: reading stats is not editing sites, and no key mints keys or acts as a person.
    key.patch(&format!("/api/sites/{}", t.site), json!({"name": "renamed"})).await.expect_error(403, "sites:write");
    key.post(&keys, json!({"name": "escalate", "scopes": ["sites:write"]})).await.expect_error(403, "");
    key.get("/api/me").await.expect_error(403, "");
    key.post("/api/organizations", json!({"name": "mine now"})).await.expect_error(403, "");

    // Revoked: the next call is refused.
    let id = created["id"].as_str().unwrap();
    let res = owner.delete(&format!("{keys}/{id}")).await;
    assert!(res.status.is_success(), "revoke: {} {}", res.status, res.body);
    query(&t.site).await.expect_error(401, "revoked");

    // A key of an organisation that is deleted stops with it.
    let team = owner.post("/api/organizations", json!({"name": "Team"})).await.expect(201);
    let team_id = team["id"].as_str().unwrap();
    let team_site = owner.post(&format!("/api/organizations/{team_id}/sites"), json!({"domain": "team.example"})).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let team_key = owner.post(&format!("/api/organizations/{team_id}/api-keys"), json!({"name": "t", "scopes": ["stats:read", "sites:read"]})).await.expect(201);
    let team_key = app.with_bearer(team_key["key"].as_str().unwrap());
    team_key.get(&format!("/api/sites/{team_site}")).await.expect(200);
    let res = owner.delete(&format!("/api/organizations/{team_id}")).await;
    assert!(res.status.is_success(), "delete the team: {} {}", res.status, res.body);
    team_key.get(&format!("/api/sites/{team_site}")).await.expect_error(401, "");
    team_key.get(&format!("/api/organizations/{team_id}")).await.expect_error(401, "");
}

fn short_timeouts() -> AppConfig {
    AppConfig { timeouts: Timeouts { header_read: Duration::from_secs(1), request: Duration::from_secs(2) }, ..AppConfig::default() }
}

/// Reads what the server sends until it closes the connection (or `limit` passes).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read_all).await.ok().map(|()| String::from_utf8_lossy(&seen).into_owned())
}

/// Slowloris: a few hundred connections that send their headers a line at a
/// time and never finish are cut off after the header-read timeout, while
/// requests from others are answered all along.
#[tokio::test]
async fn slowloris_connections_are_cut_off_and_others_are_served_meanwhile() {
    let app = TestApp::spawn_with(short_timeouts()).await;
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(b"POST /api/e HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
        slow.push(stream);
    }
    // One more header line each, as a slowloris client keeps them alive.
    tokio::time::sleep(Duration::from_millis(400)).await;
    for stream in &mut slow {
        let _ = stream.write_all(b"X-Keep: going\r\n").await;
    }
    let started = std::time::Instant::now();
    let res = reqwest::Client::new().get(app.url("/healthz")).send().await.unwrap();
    assert!(res.status().is_success(), "a normal request while 300 slow ones hang: {}", res.status());
    let answered_in = started.elapsed();
    let mut still_open = 0;
    for stream in &mut slow {
        // Cut off: closed, with a 408 or without a word; never an answer to the request.
        match read_until_closed(stream, Duration::from_secs(10)).await {
            Some(said) => assert!(said.is_empty() || said.starts_with("HTTP/1.1 408"), "a slow connection was told: {said}"),
            None => still_open += 1,
        }
    }
    assert_eq!(still_open, 0, "slow connections still open 10 s after a 1 s header-read timeout");
    // Not a timed assertion on speed: only that the healthy request did not wait for the slow ones to be cut off.
    assert!(answered_in < Duration::from_secs(1), "the healthy request waited {answered_in:?}, as long as the slow ones' timeout");
}

/// A body sent a byte at a time gets a 408 at the request timeout; the
/// beacon it carried is not stored, and the server goes on serving.
#[tokio::test]
async fn a_trickled_body_gets_408() {
    let app = TestApp::spawn_with(short_timeouts()).await;
    let site = app.create_site().await;
    let beacon = json!({"site": site.to_string(), "type": "pageview", "url": "https://example.com/slow", "sid": "trickle-sid-1"}).to_string();
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!("POST /api/e HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {BROWSER}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n", beacon.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let body = beacon.clone().into_bytes();
    let trickle = tokio::spawn(async move {
        for byte in body {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(n @ 1..) = reader.read(&mut buf).await {
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "a body trickled past the 2 s request timeout was answered: {answer:?}");
    assert_eq!(app.count_events(site).await, 0, "the cut-off beacon is not stored");
    let res = reqwest::Client::new().post(app.url("/api/e")).header("content-type", "text/plain").header("user-agent", BROWSER).body(beacon).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 202, "the same beacon sent at once");
    assert_eq!(app.count_events(site).await, 1);
}

/// Sign-ups are limited per client address (each makes an account and sends
/// a mail): the eleventh in 15 minutes gets a 429; another address is not held up.
#[tokio::test]
async fn sign_ups_are_rate_limited_per_address() {
    let app = TestApp::spawn_with(AppConfig { client_ip: ClientIpMode::Proxy, ..AppConfig::default() }).await;
    let sign_up = |from: &'static str, n: usize| {
        reqwest::Client::new()
            .post(app.url("/api/auth/signup"))
            .header("x-forwarded-for", from)
            .json(&json!({"email": format!("loop-{n}-{}@example.com", Uuid::new_v4().simple()), "password": "a long and unguessable passphrase"}))
            .send()
    };
    for n in 0..10 {
        let res = sign_up("203.0.113.7", n).await.unwrap();
        assert_eq!(res.status().as_u16(), 201, "sign-up {n}: {}", res.text().await.unwrap());
    }
    let res = sign_up("203.0.113.7", 10).await.unwrap();
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("too many sign-ups"), "{body}");
    let res = sign_up("198.51.100.20", 11).await.unwrap();
    assert_eq!(res.status().as_u16(), 201, "another address: {}", res.text().await.unwrap());
    // No account was made for the refused one, and no address is kept.
    let db = app.db.client().await;
    let accounts: i64 = db.query_one("SELECT count(*) FROM users", &[]).await.unwrap().get(0);
    assert_eq!(accounts, 11);
    let dump = app.db.dump().await;
    assert!(!dump.contains("203.0.113.7") && !dump.contains("198.51.100.20"), "a client address was stored");
}

/// A site sending more beacons a second than its limit gets 429 with
/// `Retry-After: 1` past its burst; every 202 is stored, other sites are
/// not held up, and the site is admitted again a moment later.
#[tokio::test]
async fn beacons_past_a_sites_rate_get_429_and_other_sites_go_on() {
    let app = TestApp::spawn_with(AppConfig { site_beacon_rate: NonZeroU32::new(5), ..AppConfig::default() }).await;
    let (busy, quiet) = (app.create_site().await, app.create_site().await);
    let http = reqwest::Client::new();
    let send = |site: shared::SiteId, n: usize| {
        let beacon = json!({"site": site.to_string(), "type": "pageview", "url": format!("https://example.com/{n}"), "sid": format!("flood-sid-{n}")});
        http.post(app.url("/api/e")).header("content-type", "text/plain").header("user-agent", BROWSER).body(beacon.to_string()).send()
    };
    let (mut accepted, mut limited) = (0, 0);
    for n in 0..40 {
        let res = send(busy, n).await.unwrap();
        match res.status().as_u16() {
            202 => accepted += 1,
            429 => {
                assert_eq!(res.headers()["retry-after"], "1");
                let body: Value = res.json().await.unwrap();
                assert!(body["error"].as_str().unwrap().contains("more than 5 beacons a second"), "{body}");
                limited += 1;
            }
            other => panic!("beacon {n}: {other} {}", res.text().await.unwrap()),
        }
    }
    assert!(limited > 0 && accepted >= 10, "a burst of 10, then refusals: {accepted} accepted, {limited} limited");
    assert_eq!(app.count_events(busy).await, accepted, "every accepted beacon is stored, no refused one is");
    for n in 0..5 {
        assert_eq!(send(quiet, n).await.unwrap().status().as_u16(), 202, "another site is not held up");
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(send(busy, 99).await.unwrap().status().as_u16(), 202, "admitted again after a second");
    let metrics = engagetrack_server::metrics::global().encode();
    assert!(metrics.contains("reason=\"rate_limited\""), "the refusals are counted by reason");
}

async fn refresh_with(app: &TestApp, token: &str) -> (u16, Value) {
    let res = reqwest::Client::new().post(app.url("/api/auth/refresh")).json(&json!({"refresh_token": token})).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// Stolen refresh tokens and old sessions: a spent token presented again
/// kills its whole family (the thief's new tokens and the owner's); a
/// password change ends every other session; a deleted account's tokens die.
#[tokio::test]
async fn reused_refresh_tokens_password_changes_and_deletion_end_sessions() {
    let app = TestApp::spawn().await;
    let user = app.sign_up_verified(&format!("family-{}@example.com", Uuid::new_v4().simple())).await;
    // The thief refreshes first with a copied token; the owner's later use is a reuse.
    let (status, stolen) = refresh_with(&app, &user.refresh_token).await;
    assert_eq!(status, 200);
    let thief_access = stolen["access_token"].as_str().unwrap().to_owned();
    let thief_refresh = stolen["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(refresh_with(&app, &user.refresh_token).await.0, 401, "a spent refresh token");
    assert_eq!(refresh_with(&app, &thief_refresh).await.0, 401, "the family died with the reuse");
    assert_eq!(me(&app, &thief_access).await.0, 401, "the family's access tokens died too");
    assert_eq!(me(&app, &user.access_token).await.0, 401);

    // Two live sessions; a password change from one ends the other.
    let (here, _) = app.log_in(&user.email, &user.password).await;
    let (there, there_refresh) = app.log_in(&user.email, &user.password).await;
    let new_password = format!("{}-Nw", engagetrack_server::accounts::random_password());
    app.with_bearer(&here)
        .post("/api/me/password", json!({"current_password": user.password, "new_password": new_password}))
        .await
        .expect(200);
    assert_eq!(me(&app, &there).await.0, 401, "the other session's access token after a password change");
    assert_eq!(refresh_with(&app, &there_refresh).await.0, 401, "the other session's refresh token after a password change");
    app.anonymous().post("/api/auth/login", json!({"email": user.email, "password": user.password})).await.expect_error(401, "");

    // Deleted: the access and refresh tokens of every session stop.
    let (access, refresh) = app.log_in(&user.email, &new_password).await;
    let res = app.with_bearer(&access).send(reqwest::Method::DELETE, "/api/me", Some(&json!({"confirm_email": user.email, "password": new_password}))).await;
    assert!(res.status.is_success(), "delete: {} {}", res.status, res.body);
    assert_eq!(me(&app, &access).await.0, 401, "a deleted account's access token");
    assert_eq!(refresh_with(&app, &refresh).await.0, 401, "a deleted account's refresh token");
}
