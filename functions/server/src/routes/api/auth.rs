//! Sign-up, email verification, sign-in, token refresh, sign-out and
//! password reset. Access tokens go in the JSON answer (the dashboard keeps
//! them in memory); refresh tokens too, and also in an httpOnly, Secure,
//! SameSite=Strict cookie scoped to `/api/auth`, so browser code never needs
//! to hold them.


use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{ErrorBody, JsonBody, Peer, now};
use crate::accounts::{self, TokenPurpose};
use crate::audit::{self, Action};
use crate::auth::credentials::{Email, NewPassword};
use crate::auth::jwt::ACCESS_TOKEN_TTL;
use crate::auth::rate_limit::{self, LoginKeys, Verdict};
use crate::auth::refresh::{self, Issued, RefreshError};
use crate::auth::SignedInUser;
use crate::client_ip::{Transport, client_ip};
use crate::error::{ApiError, ApiResult};
use crate::mailer::Mail;
use crate::state::AppState;

pub const REFRESH_COOKIE: &str = "et_refresh";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_up))
        .routes(routes!(verify_email))
        .routes(routes!(resend_verification))
        .routes(routes!(sign_in))
        .routes(routes!(refresh_tokens))
        .routes(routes!(sign_out))
        .routes(routes!(request_password_reset))
        .routes(routes!(confirm_password_reset))
}

impl From<crate::auth::credentials::CredentialError> for ApiError {
    fn from(e: crate::auth::credentials::CredentialError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<crate::accounts::PasswordHashError> for ApiError {
    fn from(e: crate::accounts::PasswordHashError) -> Self {
        ApiError::internal(e)
    }
}

impl From<crate::mailer::MailError> for ApiError {
    fn from(e: crate::mailer::MailError) -> Self {
        match e {
            crate::mailer::MailError::Pool(p) => p.into(),
            crate::mailer::MailError::Db(d) => d.into(),
        }
    }
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
    pub email: String,
    /// At least 10 characters, at most 72 bytes, and not easy to guess.
    pub password: String,
    pub name: Option<String>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct SignUpResponse {
    pub user_id: Uuid,
    pub email: String,
    pub organization_id: Uuid,
    /// A verification link was mailed; sign-in works once it is followed.
    pub verification_sent: bool,
}

/// A person's display name: trimmed, empty meaning none, at most 100 characters.
pub(crate) fn clean_name(name: Option<String>) -> ApiResult<Option<String>> {
    match name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) {
        Some(n) if n.chars().count() > 100 => Err(ApiError::bad_request("`name` must be at most 100 characters")),
        Some(n) if n.chars().any(char::is_control) => Err(ApiError::bad_request("`name` must not contain control characters")),
        other => Ok(other),
    }
}

pub(crate) async fn send_verification(state: &AppState, to: &Email, token: &str) -> ApiResult<()> {
    let link = format!("{}/verify-email?token={token}", state.config.public_url());
    state
        .mailer
        .send(Mail {
            to: to.as_str().to_owned(),
            subject: "Confirm your email address for EngageTrack".into(),
            body: format!("Welcome to EngageTrack.\n\nConfirm your email address by opening this link (valid for 48 hours):\n{link}\n\nIf you did not sign up, ignore this mail."),
        })
        .await?;
    Ok(())
}

#[utoipa::path(post, path = "/api/auth/signup", tag = "auth", security(()),
    request_body = SignUpRequest,
    responses((status = 201, body = SignUpResponse), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody, description = "too many sign-ups from this address")))]
async fn sign_up(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<SignUpRequest>,
) -> ApiResult<(StatusCode, Json<SignUpResponse>)> {
    // Counted before anything slow (the password hash) or anything sent (the mail).
    let ip = client_ip(state.config.client_ip, &headers, &peer).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let key = rate_limit::sign_up_key(ip, &state.keys.current().ip_hash);
    if state.sign_in_limiter.count_use(&key, rate_limit::MAX_SIGN_UPS_PER_IP, now()).await? == Verdict::Limited {
        return Err(ApiError::too_many_requests("too many sign-ups from this address; wait 15 minutes"));
    }
    let email = Email::parse(&req.email)?;
    let name = clean_name(req.name)?;
    let password = NewPassword::parse(&req.password, &email, name.as_deref())?;
    let hash = accounts::hash_password_blocking(password.expose().to_owned()).await?;
    let now = now();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let user = Uuid::new_v4();
    let inserted = tx
        .execute(
            "INSERT INTO users (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email) DO NOTHING",
            &[&user, &email.as_str(), &name, &hash, &now],
        )
        .await?;
    if inserted == 0 {
        return Err(ApiError::conflict("an account with this email already exists; sign in or reset the password"));
    }
    let org = accounts::create_personal_organization(&tx, user, &email, name.as_deref()).await?;
    audit::record(&tx, Some(org), Some(user), Action::SignUp, None, serde_json::json!({})).await?;
    let token = accounts::issue_email_token(&tx, user, TokenPurpose::VerifyEmail, now).await?;
    tx.commit().await?;
    send_verification(&state, &email, &token).await?;
    Ok((StatusCode::CREATED, Json(SignUpResponse { user_id: user, email: email.as_str().to_owned(), organization_id: org, verification_sent: true })))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct TokenRequest {
    /// The token from the mailed link.
    pub token: String,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Done {
    pub ok: bool,
}

#[utoipa::path(post, path = "/api/auth/verify-email", tag = "auth", security(()),
    request_body = TokenRequest,
    responses((status = 200, body = Done), (status = 400, body = ErrorBody)))]
async fn verify_email(State(state): State<AppState>, JsonBody(req): JsonBody<TokenRequest>) -> ApiResult<Json<Done>> {
    let now = now();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let user = accounts::consume_email_token(&tx, &req.token, TokenPurpose::VerifyEmail, now)
        .await?
        .ok_or_else(|| ApiError::bad_request("the verification link is invalid, used or expired; ask for a new one"))?;
    tx.execute("UPDATE users SET email_verified_at = $2 WHERE id = $1", &[&user, &now]).await?;
    audit::record(&tx, None, Some(user), Action::EmailVerified, None, serde_json::json!({})).await?;
    tx.commit().await?;
    Ok(Json(Done { ok: true }))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct EmailRequest {
    pub email: String,
}

/// Always 202, whether or not the address has an account (no enumeration).
#[utoipa::path(post, path = "/api/auth/resend-verification", tag = "auth", security(()),
    request_body = EmailRequest,
    responses((status = 202, body = Done), (status = 400, body = ErrorBody)))]
async fn resend_verification(State(state): State<AppState>, JsonBody(req): JsonBody<EmailRequest>) -> ApiResult<(StatusCode, Json<Done>)> {
    let email = Email::parse(&req.email)?;
    let db = state.pool.get().await?;
    let user = db
        .query_opt(
            "SELECT id FROM users WHERE email = $1 AND email_verified_at IS NULL AND deleted_at IS NULL",
            &[&email.as_str()],
        )
        .await?;
    if let Some(row) = user {
        let token = accounts::issue_email_token(&db, row.get(0), TokenPurpose::VerifyEmail, now()).await?;
        send_verification(&state, &email, &token).await?;
    }
    Ok((StatusCode::ACCEPTED, Json(Done { ok: true })))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct SignInRequest {
    pub email: String,
    pub password: String,
    /// The 6-digit code from the authenticator app, when two-factor sign-in is on.
    pub totp_code: Option<String>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
    pub user_id: Uuid,
}

/// The token pair as JSON, with the refresh token also set as a cookie.
pub(crate) fn token_response(state: &AppState, issued: Issued, now: DateTime<Utc>) -> ApiResult<Response> {
    let access_token = state.access_tokens.issue(issued.user_id, issued.family_id, now).map_err(ApiError::internal)?;
    let cookie = cookie::Cookie::build((REFRESH_COOKIE, issued.token.clone()))
        .http_only(true)
        .secure(true)
        .same_site(cookie::SameSite::Strict)
        .path("/api/auth")
        .max_age(cookie::time::Duration::seconds((issued.expires_at - now).num_seconds()))
        .build();
    let body = TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_TTL.num_seconds(),
        refresh_token: issued.token,
        refresh_expires_at: issued.expires_at,
        user_id: issued.user_id,
    };
    let mut response = Json(body).into_response();
    let value = HeaderValue::from_str(&cookie.to_string()).map_err(ApiError::internal)?;
    response.headers_mut().insert(header::SET_COOKIE, value);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub(crate) fn login_keys(state: &AppState, headers: &HeaderMap, transport: &Transport, email: &Email) -> ApiResult<LoginKeys> {
    let ip = client_ip(state.config.client_ip, headers, transport).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(LoginKeys::new(email, ip, &state.keys.current().ip_hash))
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok())
}

#[utoipa::path(post, path = "/api/auth/login", tag = "auth", security(()),
    request_body = SignInRequest,
    responses((status = 200, body = TokenResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn sign_in(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<SignInRequest>,
) -> ApiResult<Response> {
    let now = now();
    let email = Email::parse(&req.email)?;
    let keys = login_keys(&state, &headers, &peer, &email)?;
    if state.sign_in_limiter.attempt(&keys, now).await? == Verdict::Limited {
        return Err(ApiError::too_many_requests("too many failed sign-ins; wait 15 minutes or reset the password"));
    }
    let db = state.pool.get().await?;
    let row = db
        .query_opt(
            "SELECT id, password_hash, email_verified_at IS NOT NULL, totp_secret, totp_enabled_at IS NOT NULL
             FROM users WHERE email = $1 AND deleted_at IS NULL AND locked_at IS NULL",
            &[&email.as_str()],
        )
        .await?;
    let hash = row.as_ref().and_then(|r| r.get::<_, Option<String>>(1));
    let ok = accounts::verify_password_blocking(req.password.clone(), hash).await;
    let Some(row) = row.filter(|_| ok) else {
        if let Some(user) = db.query_opt("SELECT id FROM users WHERE email = $1", &[&email.as_str()]).await? {
            audit::record(&db, None, Some(user.get(0)), Action::SignInFailed, None, serde_json::json!({"reason": "password"})).await?;
        }
        return Err(ApiError::unauthorized("the email or password is wrong"));
    };
    let user: Uuid = row.get(0);
    if !row.get::<_, bool>(2) {
        return Err(ApiError::forbidden("confirm your email address first: follow the link we mailed you (or ask for a new one)"));
    }
    if row.get::<_, bool>(4) {
        let secret: Vec<u8> = row.get(3);
        let code = req.totp_code.as_deref().ok_or_else(|| ApiError::unauthorized("a two-factor code is required (`totp_code`)"))?;
        if !super::account::totp_code_valid(&state, &db, user, &secret, code, now).await? {
            audit::record(&db, None, Some(user), Action::SignInFailed, None, serde_json::json!({"reason": "totp"})).await?;
            return Err(ApiError::unauthorized("the two-factor code is wrong"));
        }
    }
    state.sign_in_limiter.succeeded(&keys, now).await?;
    let issued = refresh::start_family(&db, user, user_agent(&headers), now).await?;
    audit::record(&db, None, Some(user), Action::SignIn, None, serde_json::json!({"method": "password"})).await?;
    token_response(&state, issued, now)
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Db(d) => d.into(),
            other => ApiError::unauthorized(other.to_string()),
        }
    }
}

#[derive(Debug, Default, serde::Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// Omit it to use the `et_refresh` cookie.
    pub refresh_token: Option<String>,
}


#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", security(()),
    request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "the cookie was sent cross-site")))]
async fn refresh_tokens(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> ApiResult<Response> {
    let now = now();
    let body: RefreshRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RefreshRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let token = match body.refresh_token {
        Some(token) => token,
        None => {
            refuse_cross_site(&headers)?;
            super::cookie_value(&headers, REFRESH_COOKIE)
                .ok_or_else(|| ApiError::unauthorized("no refresh token: send `refresh_token` or the et_refresh cookie"))?
        }
    };
    let mut db = state.pool.get().await?;
    match refresh::rotate(&mut db, &token, now).await {
        Ok(issued) => token_response(&state, issued, now),
        Err(RefreshError::Reused { user_id, family_id }) => {
            crate::cache::sessions_revoked(&state.cache, user_id).await;
            audit::record(&db, None, Some(user_id), Action::RefreshTokenReused, Some(&family_id.to_string()), serde_json::json!({})).await?;
            Err(RefreshError::Reused { user_id, family_id }.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The refresh cookie is `SameSite=Strict`; this refuses a cross-site use of
/// it even where a browser would send it (CSRF): a fetch the browser marks
/// `Sec-Fetch-Site: cross-site`, or an `Origin` other than the `Host` asked.
fn refuse_cross_site(headers: &HeaderMap) -> ApiResult<()> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let refused = || ApiError::forbidden("a cross-site request may not use the et_refresh cookie");
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return Err(refused());
    }
    if let Some(origin) = text(header::ORIGIN) {
        let origin_host = url::Url::parse(origin).ok().and_then(|u| u.host_str().map(|h| match u.port() {
            Some(port) => format!("{h}:{port}"),
            None => h.to_owned(),
        }));
        if origin_host.is_none() || origin_host.as_deref() != text(header::HOST) {
            return Err(refused());
        }
    }
    Ok(())
}

fn clear_cookie() -> HeaderValue {
    let c = cookie::Cookie::build((REFRESH_COOKIE, "")).http_only(true).secure(true).same_site(cookie::SameSite::Strict).path("/api/auth").max_age(cookie::time::Duration::ZERO).build();
    HeaderValue::from_str(&c.to_string()).unwrap_or(HeaderValue::from_static("et_refresh=; Max-Age=0; Path=/api/auth"))
}

/// Ends this sign-in: its refresh tokens and its access tokens stop working.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn sign_out(State(state): State<AppState>, user: SignedInUser) -> ApiResult<Response> {
    let now = now();
    let db = state.pool.get().await?;
    refresh::revoke_family(&db, user.user_id, user.session_id, now).await?;
    crate::cache::sessions_revoked(&state.cache, user.user_id).await;
    audit::record(&db, None, Some(user.user_id), Action::SignOut, None, serde_json::json!({})).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(response)
}

/// Always 202 (no enumeration); a mail goes out when the account exists.
#[utoipa::path(post, path = "/api/auth/password-reset", tag = "auth", security(()),
    request_body = EmailRequest,
    responses((status = 202, body = Done), (status = 400, body = ErrorBody)))]
async fn request_password_reset(State(state): State<AppState>, JsonBody(req): JsonBody<EmailRequest>) -> ApiResult<(StatusCode, Json<Done>)> {
    let email = Email::parse(&req.email)?;
    let db = state.pool.get().await?;
    let user = db.query_opt("SELECT id FROM users WHERE email = $1 AND deleted_at IS NULL AND locked_at IS NULL", &[&email.as_str()]).await?;
    if let Some(row) = user {
        let token = accounts::issue_email_token(&db, row.get(0), TokenPurpose::ResetPassword, now()).await?;
        let link = format!("{}/reset-password?token={token}", state.config.public_url());
        state
            .mailer
            .send(Mail {
                to: email.as_str().to_owned(),
                subject: "Reset your EngageTrack password".into(),
                body: format!("Someone asked to reset the password of this EngageTrack account.\n\nChoose a new password here (valid for one hour, once):\n{link}\n\nIf it was not you, ignore this mail; your password stays as it is."),
            })
            .await?;
    }
    Ok((StatusCode::ACCEPTED, Json(Done { ok: true })))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct ResetPasswordRequest {
    pub token: String,
    pub password: String,
}

/// Sets the new password and signs every session out.
#[utoipa::path(post, path = "/api/auth/password-reset/confirm", tag = "auth", security(()),
    request_body = ResetPasswordRequest,
    responses((status = 200, body = Done), (status = 400, body = ErrorBody)))]
async fn confirm_password_reset(State(state): State<AppState>, JsonBody(req): JsonBody<ResetPasswordRequest>) -> ApiResult<Json<Done>> {
    let now = now();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let invalid = || ApiError::bad_request("the reset link is invalid, used or expired; ask for a new one");
    let user = accounts::consume_email_token(&tx, &req.token, TokenPurpose::ResetPassword, now).await?.ok_or_else(invalid)?;
    let row = tx.query_one("SELECT email, name FROM users WHERE id = $1", &[&user]).await?;
    let email = Email::parse(row.get::<_, &str>(0))?;
    let password = NewPassword::parse(&req.password, &email, row.get::<_, Option<&str>>(1))?;
    let hash = accounts::hash_password_blocking(password.expose().to_owned()).await?;
    // Following the mailed link also proves the address.
    tx.execute(
        "UPDATE users SET password_hash = $2, password_changed_at = $3, email_verified_at = coalesce(email_verified_at, $3) WHERE id = $1",
        &[&user, &hash, &now],
    )
    .await?;
    refresh::revoke_all(&tx, user, now).await?;
    tx.execute("DELETE FROM login_failures WHERE key = $1", &[&format!("account:{}", email.as_str())]).await?;
    audit::record(&tx, None, Some(user), Action::PasswordReset, None, serde_json::json!({})).await?;
    tx.commit().await?;
    crate::cache::sessions_revoked(&state.cache, user).await;
    Ok(Json(Done { ok: true }))
}
