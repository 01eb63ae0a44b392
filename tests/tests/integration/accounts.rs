//! Accounts and tokens through HTTP against real PostgreSQL: sign-up,
//! verification, sign-in, refresh rotation and reuse detection, sign-out,
//! rate limits, password reset, TOTP, OAuth against a local fake provider,
//! export and deletion, and sensitive fields absent from a database dump.

use chrono::{Duration, Utc};
use engagetrack_server::AppConfig;
use engagetrack_server::oauth::{Provider, ProviderConfig};
use engagetrack_tests::TestApp;
use engagetrack_tests::oauth_fake::{FakeAccount, FakeProvider};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "violet anchor drifts 42 lanterns";

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn post(app: &TestApp, path: &str, body: Value, bearer: Option<&str>) -> (StatusCode, Value) {
    let mut req = client().post(app.url(path)).json(&body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, path: &str, bearer: &str) -> (StatusCode, Value) {
    let res = client().get(app.url(path)).bearer_auth(bearer).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The token in the newest mail to `to` whose link contains `path`.
async fn mailed_token(app: &TestApp, to: &str, path: &str) -> Option<String> {
    let rows = app.db.client().await.query("SELECT body FROM mail_outbox WHERE to_address = $1 ORDER BY id DESC", &[&to]).await.unwrap();
    rows.iter().map(|r| r.get::<_, String>(0)).find_map(|body| {
        let at = body.find(&format!("{path}?token="))?;
        let rest = &body[at + path.len() + 7..];
        Some(rest.split_whitespace().next()?.to_owned())
    })
}

async fn mail_count(app: &TestApp, to: &str) -> i64 {
    app.db.client().await.query_one("SELECT count(*) FROM mail_outbox WHERE to_address = $1", &[&to]).await.unwrap().get(0)
}

async fn sign_up_and_verify(app: &TestApp, email: &str) {
    let (status, body) = post(app, "/api/auth/signup", json!({"email": email, "password": PASSWORD, "name": "Ada Lovelace"}), None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = mailed_token(app, &email.to_lowercase(), "/verify-email").await.expect("verification mail");
    let (status, _) = post(app, "/api/auth/verify-email", json!({"token": token}), None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn login(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    post(app, "/api/auth/login", json!({"email": email, "password": password}), None).await
}

#[tokio::test]
async fn sign_up_verify_sign_in_refresh_and_sign_out() {
    let app = TestApp::spawn().await;
    let (status, body) = post(&app, "/api/auth/signup", json!({"email": "Ada@Example.com", "password": PASSWORD}), None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["email"], "ada@example.com");
    // Not yet verified: no sign-in.
    let (status, body) = login(&app, "ada@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("confirm your email"));
    let token = mailed_token(&app, "ada@example.com", "/verify-email").await.unwrap();
    assert_eq!(post(&app, "/api/auth/verify-email", json!({"token": token}), None).await.0, StatusCode::OK);
    // Single use.
    assert_eq!(post(&app, "/api/auth/verify-email", json!({"token": token}), None).await.0, StatusCode::BAD_REQUEST);

    let (status, tokens) = login(&app, "ADA@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["expires_in"], 900);
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let (status, me) = get(&app, "/api/me", &access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["organizations"][0]["role"], "owner");

    // Refresh rotates: the new pair works, and the old refresh token is spent.
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (status, second) = post(&app, "/api/auth/refresh", json!({"refresh_token": first}), None).await;
    assert_eq!(status, StatusCode::OK);
    let second_refresh = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first);
    // Reusing the spent token revokes the whole family, the current one included.
    let (status, body) = post(&app, "/api/auth/refresh", json!({"refresh_token": first}), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().unwrap().contains("already used"));
    assert_eq!(post(&app, "/api/auth/refresh", json!({"refresh_token": second_refresh}), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&app, "/api/me", second["access_token"].as_str().unwrap()).await.0, StatusCode::UNAUTHORIZED);

    // The cookie path: sign in, refresh with the cookie only, sign out.
    let res =
        client().post(app.url("/api/auth/login")).json(&json!({"email": "ada@example.com", "password": PASSWORD})).send().await.unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/api/auth"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let pair = cookie.split(';').next().unwrap().to_owned();
    let res = client().post(app.url("/api/auth/refresh")).header("cookie", &pair).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(get(&app, "/api/me", &access).await.0, StatusCode::OK);
    let res = client().post(app.url("/api/auth/logout")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    // Signed out: the access token dies with its session.
    assert_eq!(get(&app, "/api/me", &access).await.0, StatusCode::UNAUTHORIZED);

    let dump = app.db.dump().await;
    assert!(!dump.contains(&first) && !dump.contains(&second_refresh), "refresh tokens are stored hashed");
    assert!(!dump.contains(PASSWORD));
}

#[tokio::test]
async fn bad_sign_ups_are_refused_with_reasons() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"email": "not-an-email", "password": PASSWORD}), StatusCode::BAD_REQUEST, "valid email"),
        (json!({"email": "a@example.com", "password": "short"}), StatusCode::BAD_REQUEST, "at least 10"),
        (json!({"email": "a@example.com", "password": "password1234"}), StatusCode::BAD_REQUEST, "too easy to guess"),
        (json!({"email": "a@example.com", "password": "x".repeat(80)}), StatusCode::BAD_REQUEST, "at most 72"),
        (json!({"email": "a@example.com"}), StatusCode::BAD_REQUEST, "password"),
        (json!({"email": "a@example.com", "password": PASSWORD, "role": "admin"}), StatusCode::BAD_REQUEST, "unknown field"),
    ];
    for (body, status, reason) in cases {
        let (got, answer) = post(&app, "/api/auth/signup", body.clone(), None).await;
        assert_eq!(got, status, "{body}");
        assert!(answer["error"].as_str().unwrap_or_default().contains(reason), "{body}: {answer}");
    }
    let res = client().post(app.url("/api/auth/signup")).body("{").header("content-type", "application/json").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = client().post(app.url("/api/auth/signup")).body("email=a").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    sign_up_and_verify(&app, "taken@example.com").await;
    let (status, _) = post(&app, "/api/auth/signup", json!({"email": "TAKEN@example.com", "password": PASSWORD}), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn failed_sign_ins_are_rate_limited_per_account() {
    let app = TestApp::spawn().await;
    sign_up_and_verify(&app, "target@example.com").await;
    for _ in 0..10 {
        assert_eq!(login(&app, "target@example.com", "wrong password!").await.0, StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused while the limit holds.
    let (status, body) = login(&app, "target@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // Unknown accounts answer exactly like wrong passwords.
    let (status, body) = login(&app, "nobody@example.com", PASSWORD).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (StatusCode::UNAUTHORIZED, "the email or password is wrong"));
    let failures: i64 =
        app.db.client().await.query_one("SELECT count(*) FROM audit_log WHERE action = 'auth.sign_in_failed'", &[]).await.unwrap().get(0);
    assert_eq!(failures, 10);
    // The mail outbox holds links to the (loopback) dashboard; no other row
    // may hold the client's address.
    let dump = app.db.dump().await;
    let leaks: Vec<&str> = dump.lines().filter(|l| !l.starts_with("mail_outbox ") && l.contains("127.0.0.1")).collect();
    assert!(leaks.is_empty(), "the client address is kept only as a keyed hash: {leaks:?}");
}

#[tokio::test]
async fn password_reset_is_single_use_and_signs_every_session_out() {
    let app = TestApp::spawn().await;
    sign_up_and_verify(&app, "reset@example.com").await;
    let (_, old) = login(&app, "reset@example.com", PASSWORD).await;
    // Unknown address: the same answer, no mail.
    assert_eq!(post(&app, "/api/auth/password-reset", json!({"email": "ghost@example.com"}), None).await.0, StatusCode::ACCEPTED);
    assert_eq!(mail_count(&app, "ghost@example.com").await, 0);
    assert_eq!(post(&app, "/api/auth/password-reset", json!({"email": "reset@example.com"}), None).await.0, StatusCode::ACCEPTED);
    let token = mailed_token(&app, "reset@example.com", "/reset-password").await.unwrap();
    // A weak password is refused and the link stays usable.
    let (status, _) = post(&app, "/api/auth/password-reset/confirm", json!({"token": token, "password": "resetreset"}), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let new_password = "quiet harbour 77 copper kites";
    let (status, _) = post(&app, "/api/auth/password-reset/confirm", json!({"token": token, "password": new_password}), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        post(&app, "/api/auth/password-reset/confirm", json!({"token": token, "password": "another fine 99 password"}), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "single use");
    assert_eq!(get(&app, "/api/me", old["access_token"].as_str().unwrap()).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(post(&app, "/api/auth/refresh", json!({"refresh_token": old["refresh_token"]}), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login(&app, "reset@example.com", PASSWORD).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login(&app, "reset@example.com", new_password).await.0, StatusCode::OK);
    // An expired link is refused.
    post(&app, "/api/auth/password-reset", json!({"email": "reset@example.com"}), None).await;
    let token = mailed_token(&app, "reset@example.com", "/reset-password").await.unwrap();
    app.db
        .client()
        .await
        .execute("UPDATE email_tokens SET expires_at = now() - interval '1 second' WHERE used_at IS NULL", &[])
        .await
        .unwrap();
    let (status, _) =
        post(&app, "/api/auth/password-reset/confirm", json!({"token": token, "password": "another fine 99 password"}), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn totp_second_factor_is_required_once_enabled() {
    let app = TestApp::spawn().await;
    sign_up_and_verify(&app, "totp@example.com").await;
    let (_, tokens) = login(&app, "totp@example.com", PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    let (status, setup) = post(&app, "/api/me/totp/setup", json!({}), Some(access)).await;
    assert_eq!(status, StatusCode::OK, "{setup}");
    let secret = totp_rs::Secret::Encoded(setup["secret"].as_str().unwrap().into()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret, None, String::new()).unwrap();
    assert_eq!(post(&app, "/api/me/totp/enable", json!({"code": "000000"}), Some(access)).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(post(&app, "/api/me/totp/enable", json!({"code": totp.generate_current().unwrap()}), Some(access)).await.0, StatusCode::OK);
    let (status, body) = login(&app, "totp@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().unwrap().contains("two-factor code is required"));
    let with = |code: String| json!({"email": "totp@example.com", "password": PASSWORD, "totp_code": code});
    assert_eq!(post(&app, "/api/auth/login", with("123456".into()), None).await.0, StatusCode::UNAUTHORIZED);
    // The enabling code's step is spent; the next step's code (within the skew) signs in, once.
    let next = totp.generate(chrono::Utc::now().timestamp() as u64 + 30);
    assert_eq!(post(&app, "/api/auth/login", with(next.clone()), None).await.0, StatusCode::OK);
    let (status, body) = post(&app, "/api/auth/login", with(next), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a TOTP code is good once: {body}");
    assert!(!app.db.dump().await.contains(setup["secret"].as_str().unwrap()));
}

async fn oauth_app(fake: &FakeProvider) -> TestApp {
    let oauth = [Provider::Google, Provider::GitHub]
        .into_iter()
        .map(|p| ProviderConfig::new(p, fake.client_id.clone(), fake.client_secret.clone(), Some(&fake.base_url())))
        .collect();
    TestApp::spawn_with(AppConfig { oauth, ..AppConfig::default() }).await
}

/// Runs the browser's part: start → provider → callback; the callback's answer.
async fn oauth_round_trip(app: &TestApp, provider: &str) -> reqwest::Response {
    let start = client().get(app.url(&format!("/api/auth/oauth/{provider}/start"))).send().await.unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let state_cookie = start.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert!(state_cookie.starts_with("et_oauth_state="));
    let at_provider = start.headers()["location"].to_str().unwrap().to_owned();
    let back = client().get(&at_provider).send().await.unwrap();
    assert!(back.status().is_redirection(), "{}", back.status());
    let callback = back.headers()["location"].to_str().unwrap().to_owned();
    assert!(callback.starts_with(&app.url(&format!("/api/auth/oauth/{provider}/callback"))));
    client().get(&callback).header("cookie", state_cookie).send().await.unwrap()
}

async fn access_from_cookie(app: &TestApp, res: &reqwest::Response) -> String {
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let res = client().post(app.url("/api/auth/refresh")).header("cookie", cookie).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn oauth_signs_up_links_by_verified_email_and_checks_state() {
    let fake = FakeProvider::start().await;
    let app = oauth_app(&fake).await;

    // Google, a new person: an account is made, verified, with an organisation.
    fake.sign_in_next_as(FakeAccount {
        subject: "g-1".into(),
        email: "grace@example.com".into(),
        email_verified: true,
        name: "Grace Hopper".into(),
    });
    let res = oauth_round_trip(&app, "google").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{:?}", fake.rejections());
    let access = access_from_cookie(&app, &res).await;
    let (_, me) = get(&app, "/api/me", &access).await;
    assert_eq!(
        (me["email"].as_str(), me["email_verified"].as_bool(), me["has_password"].as_bool()),
        (Some("grace@example.com"), Some(true), Some(false))
    );
    // Without a password, a recent sign-in confirms sensitive changes; an old session (a stolen
    // access token, say) cannot set a password or move the account to another address.
    let grace_id: uuid::Uuid = me["id"].as_str().unwrap().parse().unwrap();
    app.db
        .client()
        .await
        .execute("UPDATE refresh_tokens SET created_at = now() - interval '1 hour' WHERE user_id = $1", &[&grace_id])
        .await
        .unwrap();
    let res = client().patch(app.url("/api/me")).bearer_auth(&access).json(&json!({"email": "thief@example.com"})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.unwrap().contains("sign in again"));
    let (status, _) = post(&app, "/api/me/password", json!({"new_password": "stolen token 4 new password"}), Some(&access)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.db.client().await.execute("UPDATE refresh_tokens SET created_at = now() WHERE user_id = $1", &[&grace_id]).await.unwrap();
    let (status, body) = post(&app, "/api/me/password", json!({"new_password": "grace sets 4 a real password"}), Some(&access)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(login(&app, "grace@example.com", "grace sets 4 a real password").await.0, StatusCode::OK);

    // GitHub, an existing password account with the same verified email: linked, not duplicated.
    sign_up_and_verify(&app, "ada@example.com").await;
    fake.sign_in_next_as(FakeAccount { subject: "4242".into(), email: "ada@example.com".into(), email_verified: true, name: "Ada".into() });
    let res = oauth_round_trip(&app, "github").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{:?}", fake.rejections());
    let access = access_from_cookie(&app, &res).await;
    let (_, me) = get(&app, "/api/me", &access).await;
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["has_password"], true);
    let users: i64 = app.db.client().await.query_one("SELECT count(*) FROM users", &[]).await.unwrap().get(0);
    assert_eq!(users, 2);

    // Unverified email at the provider: refused with the reason.
    fake.sign_in_next_as(FakeAccount {
        subject: "4243".into(),
        email: "eve@example.com".into(),
        email_verified: false,
        name: "Eve".into(),
    });
    let res = oauth_round_trip(&app, "github").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("no verified email"));

    // A forged or replayed state is refused before any exchange.
    let res = client()
        .get(app.url("/api/auth/oauth/google/callback?code=x&state=forged"))
        .header("cookie", "et_oauth_state=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // A callback opened in a browser that did not start the sign-in (login CSRF) is refused.
    fake.sign_in_next_as(FakeAccount {
        subject: "g-1".into(),
        email: "grace@example.com".into(),
        email_verified: true,
        name: "Grace Hopper".into(),
    });
    let start = client().get(app.url("/api/auth/oauth/google/start")).send().await.unwrap();
    let back = client().get(start.headers()["location"].to_str().unwrap()).send().await.unwrap();
    let res = client().get(back.headers()["location"].to_str().unwrap()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("another browser"));

    // Pre-account takeover: someone signs up (unverified) with a victim's address and a password
    // of their own; when the victim signs in with Google, that password stops working.
    let (status, _) = post(&app, "/api/auth/signup", json!({"email": "victim@example.com", "password": PASSWORD}), None).await;
    assert_eq!(status, StatusCode::CREATED);
    fake.sign_in_next_as(FakeAccount {
        subject: "g-victim".into(),
        email: "victim@example.com".into(),
        email_verified: true,
        name: "Victim".into(),
    });
    let res = oauth_round_trip(&app, "google").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(login(&app, "victim@example.com", PASSWORD).await.0, StatusCode::UNAUTHORIZED, "the squatter's password is gone");
    assert_eq!(client().get(app.url("/api/auth/oauth/gitlab/start")).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // Provider tokens are stored encrypted.
    let stored: i64 =
        app.db.client().await.query_one("SELECT count(*) FROM oauth_identities WHERE access_token IS NOT NULL", &[]).await.unwrap().get(0);
    assert_eq!(stored, 3);
    assert!(!app.db.dump().await.contains("fake-access-"));
}

#[tokio::test]
async fn export_and_deletion_follow_the_gdpr_rights() {
    let app = TestApp::spawn().await;
    sign_up_and_verify(&app, "leaving@example.com").await;
    let (_, tokens) = login(&app, "leaving@example.com", PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    // Rectification.
    let res = client().patch(app.url("/api/me")).bearer_auth(&access).json(&json!({"name": "Ada King"})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (status, export) = get(&app, "/api/me/export", &access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(export["account"]["email"], "leaving@example.com");
    assert_eq!(export["account"]["name"], "Ada King");
    assert!(export["account"].get("password_hash").is_none());
    assert_eq!(export["organizations"][0]["role"], "owner");
    assert!(export["audit_log"].as_array().unwrap().iter().any(|e| e["action"] == "auth.sign_in"));

    let res = client()
        .delete(app.url("/api/me"))
        .bearer_auth(&access)
        .json(&json!({"confirm_email": "other@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = client()
        .delete(app.url("/api/me"))
        .bearer_auth(&access)
        .json(&json!({"confirm_email": "leaving@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    // Locked at once.
    assert_eq!(get(&app, "/api/me", &access).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login(&app, "leaving@example.com", PASSWORD).await.0, StatusCode::UNAUTHORIZED);
    // Erased by the purge 30 days later.
    let purged = engagetrack_server::retention::run(&app.state.pool, Utc::now() + Duration::days(31)).await.unwrap();
    assert_eq!(purged.users, 1);
    assert!(!app.db.dump().await.contains("leaving@example.com"));
}

#[tokio::test]
async fn sensitive_fields_never_reach_the_database_in_plaintext() {
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    let beacons = [
        json!({"site": site.to_string(), "type": "identify", "url": "https://example.com/", "sid": "abcdefgh",
               "user": {"id": "u-1", "email": "secret.person@example.org", "name": "Secret Person", "avatar": "https://cdn.example.org/secret-avatar.png"}}),
        json!({"site": site.to_string(), "type": "tel", "url": "https://example.com/", "sid": "abcdefgh", "target": "+44 20 7946 0991"}),
    ];
    for b in &beacons {
        let res = client()
            .post(app.url("/api/e"))
            .header("content-type", "text/plain")
            .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36")
            .body(b.to_string())
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.status());
    }
    let sealed: i64 = app.db.client().await.query_one("SELECT count(*) FROM events WHERE sensitive IS NOT NULL", &[]).await.unwrap().get(0);
    assert_eq!(sealed, 2, "both events keep their details, encrypted");
    let dump = app.db.dump().await;
    for plaintext in ["secret.person@example.org", "Secret Person", "secret-avatar.png", "7946 0991"] {
        assert!(!dump.contains(plaintext), "{plaintext} is in the dump");
    }
}

#[tokio::test]
async fn sessions_are_listed_and_can_be_ended_one_by_one() {
    let app = TestApp::spawn().await;
    sign_up_and_verify(&app, "two-devices@example.com").await;
    let (_, laptop) = login(&app, "two-devices@example.com", PASSWORD).await;
    let (_, phone) = login(&app, "two-devices@example.com", PASSWORD).await;
    let laptop_access = laptop["access_token"].as_str().unwrap();
    let (status, sessions) = get(&app, "/api/me/sessions", laptop_access).await;
    assert_eq!(status, StatusCode::OK);
    let sessions = sessions.as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let other = sessions.iter().find(|s| s["current"] == false).unwrap()["id"].as_str().unwrap().to_owned();
    let res = client().delete(app.url(&format!("/api/me/sessions/{other}"))).bearer_auth(laptop_access).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // The phone is signed out: its access and refresh tokens both stop working.
    assert_eq!(get(&app, "/api/me", phone["access_token"].as_str().unwrap()).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(post(&app, "/api/auth/refresh", json!({"refresh_token": phone["refresh_token"]}), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&app, "/api/me", laptop_access).await.0, StatusCode::OK);
    let res =
        client().delete(app.url(&format!("/api/me/sessions/{}", uuid::Uuid::new_v4()))).bearer_auth(laptop_access).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/api/me/sessions", laptop_access).await.1.as_array().unwrap().len(), 1);
}
