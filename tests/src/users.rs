//! People and HTTP calls for API tests: sign a user up through the real
//! endpoints (the verification link read from the mail outbox), keep their
//! access token, and call the API as them, as an API key or anonymously.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::TestApp;

/// A signed-up, verified, signed-in account.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub password: String,
    /// The organisation sign-up made for them (they own it).
    pub organization_id: Uuid,
    pub access_token: String,
    pub refresh_token: String,
}

/// A row of the `mail_outbox` table.
#[derive(Debug, Clone)]
pub struct OutboxMail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// The token of the first `token=` link in a mail body.
pub fn token_from_mail(body: &str) -> String {
    let start = body.find("token=").unwrap_or_else(|| panic!("no `token=` link in the mail: {body}")) + "token=".len();
    body[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

/// An answer: its status and its JSON body (Null when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// The body, after checking the status (the body is shown when it differs).
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self.body
    }

    /// The `{"error"}` reason, after checking the status.
    #[track_caller]
    pub fn expect_error(self, status: u16, reason_contains: &str) -> String {
        let body = self.expect(status);
        let reason = body["error"].as_str().unwrap_or_else(|| panic!("no `error` in {body}")).to_owned();
        assert!(reason.to_lowercase().contains(&reason_contains.to_lowercase()), "reason `{reason}` lacks `{reason_contains}`");
        reason
    }
}

/// Calls the app with an optional bearer token (an access token or `etk_` key).
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer { status, body }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PATCH, path, Some(&body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, None).await
    }

    /// A raw body with a content type, for malformed-input tests.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: &'static str) -> Answer {
        let mut request = self.http.post(format!("{}{path}", self.base)).header("content-type", content_type).body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Answer { status, body }
    }
}

impl TestApp {
    fn client(&self, token: Option<String>) -> ApiClient {
        ApiClient { http: reqwest::Client::new(), base: self.url(""), token }
    }

    pub fn anonymous(&self) -> ApiClient {
        self.client(None)
    }

    pub fn as_user(&self, user: &TestUser) -> ApiClient {
        self.client(Some(user.access_token.clone()))
    }

    /// As an API key or any other bearer token.
    pub fn with_bearer(&self, token: &str) -> ApiClient {
        self.client(Some(token.to_owned()))
    }

    /// Every mail sent to `to`, oldest first.
    pub async fn mails_to(&self, to: &str) -> Vec<OutboxMail> {
        let rows = self
            .db
            .client()
            .await
            .query("SELECT to_address, subject, body FROM mail_outbox WHERE to_address = $1 ORDER BY id", &[&to.to_lowercase()])
            .await
            .expect("read the outbox");
        rows.iter().map(|r| OutboxMail { to: r.get(0), subject: r.get(1), body: r.get(2) }).collect()
    }

    pub async fn last_mail_to(&self, to: &str) -> OutboxMail {
        self.mails_to(to).await.pop().unwrap_or_else(|| panic!("no mail to {to}"))
    }

    /// Signs up through `POST /api/auth/signup` without verifying: the user's id and personal organisation.
    pub async fn sign_up(&self, email: &str, password: &str) -> (Uuid, Uuid) {
        let body = self.anonymous().post("/api/auth/signup", json!({"email": email, "password": password})).await.expect(201);
        let id = |k: &str| body[k].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no `{k}` in {body}"));
        (id("user_id"), id("organization_id"))
    }

    /// Signs in through `POST /api/auth/login`: (access token, refresh token).
    pub async fn log_in(&self, email: &str, password: &str) -> (String, String) {
        let body = self.anonymous().post("/api/auth/login", json!({"email": email, "password": password})).await.expect(200);
        let s = |k: &str| body[k].as_str().unwrap_or_else(|| panic!("no `{k}` in {body}")).to_owned();
        (s("access_token"), s("refresh_token"))
    }

    /// Sign-up, the mailed verification link followed, sign-in: a user ready to call the API.
    pub async fn sign_up_verified(&self, email: &str) -> TestUser {
        // Random, so it passes the strength policy and differs per user.
        let password = format!("{}-Vx", engagetrack_server::accounts::random_password());
        let (id, organization_id) = self.sign_up(email, &password).await;
        let token = token_from_mail(&self.last_mail_to(email).await.body);
        self.anonymous().post("/api/auth/verify-email", json!({"token": token})).await.expect(200);
        let (access_token, refresh_token) = self.log_in(email, &password).await;
        TestUser { id, email: email.to_lowercase(), password, organization_id, access_token, refresh_token }
    }

    /// Puts a user in an organisation with a role directly in the database
    /// (test setup; the invitation flow has tests of its own).
    pub async fn add_member(&self, organization: Uuid, user: Uuid, role: &str) {
        self.db
            .client()
            .await
            .execute(
                "INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, $3)
                 ON CONFLICT (organization_id, user_id) DO UPDATE SET role = EXCLUDED.role",
                &[&organization, &user, &role],
            )
            .await
            .expect("add member");
    }
}
