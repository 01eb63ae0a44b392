//! A local OAuth 2.0 provider that speaks Google's and GitHub's real wire
//! format on their real paths (authorization endpoint, form-encoded token
//! exchange with PKCE S256 and client authentication, user endpoints), so
//! the server's OAuth code runs unchanged against it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// The account that "signs in" at the provider next.
#[derive(Debug, Clone)]
pub struct FakeAccount {
    pub subject: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
}

struct Pending {
    challenge: String,
    redirect_uri: String,
    account: FakeAccount,
}

#[derive(Default)]
struct Inner {
    next: Option<FakeAccount>,
    codes: HashMap<String, Pending>,
    tokens: HashMap<String, FakeAccount>,
    /// Every rejected request, with the reason, for assertions.
    pub rejections: Vec<String>,
}

#[derive(Clone)]
struct Fake {
    client_id: String,
    client_secret: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct FakeProvider {
    pub addr: SocketAddr,
    pub client_id: String,
    pub client_secret: String,
    fake: Fake,
}

impl FakeProvider {
    pub async fn start() -> Self {
        let fake = Fake { client_id: "fake-client".into(), client_secret: "fake-secret".into(), inner: Arc::default() };
        let app = Router::new()
            .route("/o/oauth2/v2/auth", get(authorize))
            .route("/login/oauth/authorize", get(authorize))
            .route("/token", post(token))
            .route("/login/oauth/access_token", post(token))
            .route("/v1/userinfo", get(google_userinfo))
            .route("/user", get(github_user))
            .route("/user/emails", get(github_emails))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake provider");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, client_id: fake.client_id.clone(), client_secret: fake.client_secret.clone(), fake }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn sign_in_next_as(&self, account: FakeAccount) {
        self.fake.inner.lock().expect("lock").next = Some(account);
    }

    pub fn rejections(&self) -> Vec<String> {
        self.fake.inner.lock().expect("lock").rejections.clone()
    }
}

fn reject(fake: &Fake, status: StatusCode, error: &str, why: &str) -> Response {
    fake.inner.lock().expect("lock").rejections.push(format!("{error}: {why}"));
    (status, Json(serde_json::json!({"error": error, "error_description": why}))).into_response()
}

async fn authorize(State(fake): State<Fake>, Query(q): Query<HashMap<String, String>>) -> Response {
    let field = |k: &str| q.get(k).cloned().unwrap_or_default();
    if field("client_id") != fake.client_id {
        return reject(&fake, StatusCode::BAD_REQUEST, "invalid_client", "unknown client_id");
    }
    if field("response_type") != "code"
        || field("code_challenge_method") != "S256"
        || field("code_challenge").len() < 43
        || field("state").is_empty()
    {
        return reject(&fake, StatusCode::BAD_REQUEST, "invalid_request", "code flow with S256 PKCE and state required");
    }
    let Some(account) = fake.inner.lock().expect("lock").next.clone() else {
        return Redirect::to(&format!("{}?error=access_denied&state={}", field("redirect_uri"), field("state"))).into_response();
    };
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    fake.inner
        .lock()
        .expect("lock")
        .codes
        .insert(code.clone(), Pending { challenge: field("code_challenge"), redirect_uri: field("redirect_uri"), account });
    let sep = if field("redirect_uri").contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{}{sep}code={code}&state={}", field("redirect_uri"), field("state"))).into_response()
}

async fn token(State(fake): State<Fake>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    // RFC 6749 §2.3.1: HTTP Basic, or the credentials in the body.
    let (id, secret) = match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic ")) {
        Some(b) => {
            let decoded = String::from_utf8(STANDARD.decode(b).unwrap_or_default()).unwrap_or_default();
            let (i, s) = decoded.split_once(':').unwrap_or_default();
            (i.to_owned(), s.to_owned())
        }
        None => (field("client_id"), field("client_secret")),
    };
    if id != fake.client_id || secret != fake.client_secret {
        return reject(&fake, StatusCode::UNAUTHORIZED, "invalid_client", "bad client credentials");
    }
    if field("grant_type") != "authorization_code" {
        return reject(&fake, StatusCode::BAD_REQUEST, "unsupported_grant_type", "authorization_code only");
    }
    let Some(pending) = fake.inner.lock().expect("lock").codes.remove(&field("code")) else {
        return reject(&fake, StatusCode::BAD_REQUEST, "invalid_grant", "unknown or used code");
    };
    if pending.redirect_uri != field("redirect_uri") {
        return reject(&fake, StatusCode::BAD_REQUEST, "invalid_grant", "redirect_uri differs");
    }
    if URL_SAFE_NO_PAD.encode(Sha256::digest(field("code_verifier").as_bytes())) != pending.challenge {
        return reject(&fake, StatusCode::BAD_REQUEST, "invalid_grant", "PKCE verifier does not match");
    }
    let access = format!("fake-access-{}", uuid::Uuid::new_v4().simple());
    fake.inner.lock().expect("lock").tokens.insert(access.clone(), pending.account);
    Json(serde_json::json!({"access_token": access, "token_type": "bearer", "expires_in": 3599, "scope": "openid email profile"}))
        .into_response()
}

fn bearer_account(fake: &Fake, headers: &HeaderMap) -> Option<FakeAccount> {
    let token = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?;
    fake.inner.lock().expect("lock").tokens.get(token).cloned()
}

async fn google_userinfo(State(fake): State<Fake>, headers: HeaderMap) -> Response {
    match bearer_account(&fake, &headers) {
        Some(a) => Json(serde_json::json!({"sub": a.subject, "email": a.email, "email_verified": a.email_verified, "name": a.name}))
            .into_response(),
        None => reject(&fake, StatusCode::UNAUTHORIZED, "invalid_token", "unknown access token"),
    }
}

async fn github_user(State(fake): State<Fake>, headers: HeaderMap) -> Response {
    if headers.get(header::USER_AGENT).is_none() {
        return reject(&fake, StatusCode::FORBIDDEN, "user_agent_required", "GitHub's API refuses requests without a User-Agent");
    }
    match bearer_account(&fake, &headers) {
        Some(a) => Json(serde_json::json!({"id": a.subject.parse::<i64>().unwrap_or(1), "login": a.name.to_lowercase().replace(' ', ""), "name": a.name, "email": null})).into_response(),
        None => reject(&fake, StatusCode::UNAUTHORIZED, "invalid_token", "unknown access token"),
    }
}

async fn github_emails(State(fake): State<Fake>, headers: HeaderMap) -> Response {
    match bearer_account(&fake, &headers) {
        Some(a) => Json(serde_json::json!([
            {"email": format!("{}@users.noreply.github.com", a.subject), "primary": false, "verified": a.email_verified, "visibility": null},
            {"email": a.email, "primary": true, "verified": a.email_verified, "visibility": "private"}
        ]))
        .into_response(),
        None => reject(&fake, StatusCode::UNAUTHORIZED, "invalid_token", "unknown access token"),
    }
}
