//! Attacks on the API, each made as an attacker would make it: access tokens
//! forged with the server's own key but a changed header or claims (`alg`
//! none, another algorithm, a wrong or missing `kid`, expired, not yet
//! valid, issued in the future, another issuer or audience), tokens of a
//! locked account, and bodies meant to hurt the parser (oversized, deeply
//! nested). Each gets a 4xx, never a 5xx, and never the account.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use engagetrack_tests::TestApp;
use engagetrack_tests::users::TestUser;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
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
