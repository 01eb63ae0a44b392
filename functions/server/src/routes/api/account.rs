//! The signed-in user's own account: profile (rectification), password,
//! two-factor sign-in (TOTP), active sessions, export of everything we hold
//! about them (portability) and account deletion (erasure).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use totp_rs::{Algorithm, TOTP};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{Done, send_verification};
use axum::response::{IntoResponse, Response};

use super::{ApiPath, ApiQuery, ErrorBody, JsonBody, now};
use crate::blobs::{self, Delivery};
use crate::accounts::{self, TokenPurpose};
use crate::audit::{self, Action};
use crate::auth::credentials::{Email, NewPassword};
use crate::auth::refresh::{self, ActiveSession};
use crate::auth::SignedInUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me, delete_me))
        .routes(routes!(change_password))
        .routes(routes!(list_sessions))
        .routes(routes!(end_session))
        .routes(routes!(export_my_data))
        .routes(routes!(totp_setup))
        .routes(routes!(totp_enable))
        .routes(routes!(totp_disable))
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Membership {
    pub organization_id: Uuid,
    pub name: String,
    pub slug: String,
    pub role: String,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Profile {
    pub id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub email_verified: bool,
    pub totp_enabled: bool,
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
    pub organizations: Vec<Membership>,
}

async fn profile(db: &impl deadpool_postgres::GenericClient, user: Uuid) -> ApiResult<Profile> {
    let row = db
        .query_opt(
            "SELECT id, email, name, email_verified_at IS NOT NULL, totp_enabled_at IS NOT NULL, password_hash IS NOT NULL, created_at
             FROM users WHERE id = $1 AND deleted_at IS NULL",
            &[&user],
        )
        .await?
        .ok_or_else(|| ApiError::unauthorized("this account no longer exists"))?;
    let orgs = db
        .query(
            "SELECT o.id, o.name, o.slug, m.role FROM memberships m JOIN organizations o ON o.id = m.organization_id
             WHERE m.user_id = $1 AND o.deleted_at IS NULL ORDER BY o.created_at",
            &[&user],
        )
        .await?;
    Ok(Profile {
        id: row.get(0),
        email: row.get(1),
        name: row.get(2),
        email_verified: row.get(3),
        totp_enabled: row.get(4),
        has_password: row.get(5),
        created_at: row.get(6),
        organizations: orgs.iter().map(|r| Membership { organization_id: r.get(0), name: r.get(1), slug: r.get(2), role: r.get(3) }).collect(),
    })
}

#[utoipa::path(get, path = "/api/me", tag = "account",
    responses((status = 200, body = Profile), (status = 401, body = ErrorBody)))]
async fn me(State(state): State<AppState>, user: SignedInUser) -> ApiResult<Json<Profile>> {
    let db = state.pool.get().await?;
    Ok(Json(profile(&db, user.user_id).await?))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    pub name: Option<String>,
    /// Changing the email needs `current_password` and a new verification.
    pub email: Option<String>,
    pub current_password: Option<String>,
}

/// How recent a sign-in must be to stand in for a password an account does
/// not have (Google/GitHub only), before changes that could take it over.
pub const RECENT_SIGN_IN: chrono::Duration = chrono::Duration::minutes(10);

/// Confirms a sensitive change: the current password, or, for an account
/// without one, a sign-in made in the last few minutes (so a stolen access
/// token alone cannot change the email or set a password).
async fn check_password(db: &impl deadpool_postgres::GenericClient, user: SignedInUser, password: Option<&str>) -> ApiResult<()> {
    let hash: Option<String> = db.query_one("SELECT password_hash FROM users WHERE id = $1", &[&user.user_id]).await?.get(0);
    let Some(hash) = hash else {
        let signed_in_at: Option<DateTime<Utc>> = db
            .query_one("SELECT min(created_at) FROM refresh_tokens WHERE family_id = $1 AND user_id = $2", &[&user.session_id, &user.user_id])
            .await?
            .get(0);
        return match signed_in_at {
            Some(at) if now() - at <= RECENT_SIGN_IN => Ok(()),
            _ => Err(ApiError::forbidden("sign in again to confirm this change (your account has no password, so a recent sign-in stands for it)")),
        };
    };
    let password = password.ok_or_else(|| ApiError::bad_request("`current_password` is required for this change"))?;
    if accounts::verify_password_blocking(password.to_owned(), Some(hash)).await {
        Ok(())
    } else {
        Err(ApiError::forbidden("the current password is wrong"))
    }
}

#[utoipa::path(patch, path = "/api/me", tag = "account", request_body = UpdateProfile,
    responses((status = 200, body = Profile), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_me(State(state): State<AppState>, user: SignedInUser, JsonBody(req): JsonBody<UpdateProfile>) -> ApiResult<Json<Profile>> {
    let now = now();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    if let Some(name) = req.name {
        let name = super::auth::clean_name(Some(name))?;
        tx.execute("UPDATE users SET name = $2 WHERE id = $1", &[&user.user_id, &name]).await?;
        audit::record(&tx, None, Some(user.user_id), Action::ProfileChanged, None, serde_json::json!({"fields": ["name"]})).await?;
    }
    let mut verify = None;
    if let Some(email) = req.email {
        let email = Email::parse(&email)?;
        check_password(&tx, user, req.current_password.as_deref()).await?;
        let taken = tx.query_opt("SELECT 1 FROM users WHERE email = $1 AND id <> $2", &[&email.as_str(), &user.user_id]).await?;
        if taken.is_some() {
            return Err(ApiError::conflict("another account uses this email"));
        }
        let changed = tx
            .execute("UPDATE users SET email = $2, email_verified_at = NULL WHERE id = $1 AND email <> $2", &[&user.user_id, &email.as_str()])
            .await?;
        if changed > 0 {
            audit::record(&tx, None, Some(user.user_id), Action::EmailChanged, None, serde_json::json!({})).await?;
            verify = Some((email, accounts::issue_email_token(&tx, user.user_id, TokenPurpose::VerifyEmail, now).await?));
        }
    }
    tx.commit().await?;
    if let Some((email, token)) = verify {
        send_verification(&state, &email, &token).await?;
    }
    Ok(Json(profile(&db, user.user_id).await?))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct ChangePassword {
    /// Not needed when the account has no password yet (OAuth sign-up).
    pub current_password: Option<String>,
    pub new_password: String,
}

/// Sets a new password and signs every other session out.
#[utoipa::path(post, path = "/api/me/password", tag = "account", request_body = ChangePassword,
    responses((status = 200, body = Done), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn change_password(State(state): State<AppState>, user: SignedInUser, JsonBody(req): JsonBody<ChangePassword>) -> ApiResult<Json<Done>> {
    let now = now();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    check_password(&tx, user, req.current_password.as_deref()).await?;
    let row = tx.query_one("SELECT email, name FROM users WHERE id = $1", &[&user.user_id]).await?;
    let email = Email::parse(row.get::<_, &str>(0))?;
    let password = NewPassword::parse(&req.new_password, &email, row.get::<_, Option<&str>>(1))?;
    let hash = accounts::hash_password_blocking(password.expose().to_owned()).await?;
    tx.execute("UPDATE users SET password_hash = $2, password_changed_at = $3 WHERE id = $1", &[&user.user_id, &hash, &now]).await?;
    tx.execute(
        "UPDATE refresh_tokens SET revoked_at = $3 WHERE user_id = $1 AND family_id <> $2 AND revoked_at IS NULL",
        &[&user.user_id, &user.session_id, &now],
    )
    .await?;
    audit::record(&tx, None, Some(user.user_id), Action::PasswordChanged, None, serde_json::json!({})).await?;
    tx.commit().await?;
    crate::cache::sessions_revoked(&state.cache, user.user_id).await;
    Ok(Json(Done { ok: true }))
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub user_agent: Option<String>,
    pub signed_in_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub current: bool,
}

impl From<ActiveSession> for SessionView {
    fn from(s: ActiveSession) -> Self {
        Self { id: s.id, user_agent: s.user_agent, signed_in_at: s.signed_in_at, last_used_at: s.last_used_at, current: s.current }
    }
}

#[utoipa::path(get, path = "/api/me/sessions", tag = "account",
    responses((status = 200, body = Vec<SessionView>), (status = 401, body = ErrorBody)))]
async fn list_sessions(State(state): State<AppState>, user: SignedInUser) -> ApiResult<Json<Vec<SessionView>>> {
    let db = state.pool.get().await?;
    let sessions = refresh::active_sessions(&db, user.user_id, user.session_id, now()).await?;
    Ok(Json(sessions.into_iter().map(SessionView::from).collect()))
}

#[utoipa::path(delete, path = "/api/me/sessions/{session_id}", tag = "account",
    params(("session_id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn end_session(State(state): State<AppState>, user: SignedInUser, ApiPath(session_id): ApiPath<Uuid>) -> ApiResult<StatusCode> {
    let db = state.pool.get().await?;
    if refresh::revoke_family(&db, user.user_id, session_id, now()).await? == 0 {
        return Err(ApiError::not_found("no such active session"));
    }
    crate::cache::sessions_revoked(&state.cache, user.user_id).await;
    audit::record(&db, None, Some(user.user_id), Action::SignOut, Some(&session_id.to_string()), serde_json::json!({"ended_from": user.session_id})).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Everything EngageTrack holds about the signed-in person, as JSON
/// (GDPR art. 20). Visitors of their sites are not people we can name, so
/// site statistics are exported per site as CSV instead.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct ExportParams {
    /// `direct` (default): the JSON itself; `link`: `{url, expires_at}`, a presigned link (needs a bucket).
    #[param(value_type = Option<Delivery>)]
    delivery: Option<Delivery>,
}

#[utoipa::path(get, path = "/api/me/export", tag = "account", params(ExportParams),
    responses((status = 200, body = Object, description = "the export, or with `delivery=link` an ExportLink"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn export_my_data(State(state): State<AppState>, user: SignedInUser, ApiQuery(params): ApiQuery<ExportParams>) -> ApiResult<Response> {
    let db = state.pool.get().await?;
    let one = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[&user.user_id]).await.map(|r| r.get::<_, serde_json::Value>(0)) }
    };
    let export = serde_json::json!({
        "exported_at": now(),
        "account": one("SELECT to_jsonb(u) - 'password_hash' - 'totp_secret' FROM users u WHERE id = $1").await?,
        "organizations": one("SELECT coalesce(jsonb_agg(jsonb_build_object('id', o.id, 'name', o.name, 'slug', o.slug, 'role', m.role, 'joined_at', m.created_at)), '[]')
                              FROM memberships m JOIN organizations o ON o.id = m.organization_id WHERE m.user_id = $1").await?,
        "sites": one("SELECT coalesce(jsonb_agg(jsonb_build_object('id', s.id, 'domain', s.domain, 'name', s.name, 'timezone', s.timezone, 'created_at', s.created_at)), '[]')
                      FROM sites s JOIN memberships m ON m.organization_id = s.organization_id WHERE m.user_id = $1 AND s.deleted_at IS NULL").await?,
        "sign_in_sessions": one("SELECT coalesce(jsonb_agg(jsonb_build_object('session', family_id, 'user_agent', user_agent, 'created_at', created_at, 'expires_at', expires_at, 'revoked_at', revoked_at) ORDER BY created_at), '[]')
                                 FROM refresh_tokens WHERE user_id = $1").await?,
        "linked_sign_in_providers": one("SELECT coalesce(jsonb_agg(jsonb_build_object('provider', provider, 'linked_at', created_at)), '[]') FROM oauth_identities WHERE user_id = $1").await?,
        "api_keys_created": one("SELECT coalesce(jsonb_agg(jsonb_build_object('name', name, 'prefix', prefix, 'scopes', scopes, 'created_at', created_at, 'revoked_at', revoked_at)), '[]') FROM api_keys WHERE created_by = $1").await?,
        "mail_subscriptions": one("SELECT coalesce(jsonb_agg(jsonb_build_object('site', s.domain, 'weekly', ms.weekly, 'monthly', ms.monthly, 'spike_threshold', ms.spike_threshold, 'last_spike_alert_at', ms.spike_alerted_at)), '[]')
                                   FROM mail_subscriptions ms JOIN sites s ON s.id = ms.site_id WHERE ms.user_id = $1").await?,
        "invitations_sent": one("SELECT coalesce(jsonb_agg(jsonb_build_object('email', email, 'role', role, 'created_at', created_at, 'accepted_at', accepted_at)), '[]') FROM invitations WHERE invited_by = $1").await?,
        "audit_log": one("SELECT coalesce(jsonb_agg(jsonb_build_object('action', action, 'target', target, 'details', details, 'at', created_at) ORDER BY id), '[]')
                          FROM (SELECT DISTINCT ON (action, created_at) * FROM audit_log WHERE actor_user_id = $1) a").await?,
        "notices": one("SELECT coalesce(jsonb_agg(jsonb_build_object('notice', n.id, 'title', n.title, 'first_seen_at', v.first_seen_at, 'dismissed_at', v.dismissed_at, 'mailed_at', m.mailed_at) ORDER BY n.id), '[]')
                        FROM notices n LEFT JOIN notice_views v ON v.notice_id = n.id AND v.user_id = $1 LEFT JOIN notice_mailings m ON m.notice_id = n.id AND m.user_id = $1
                        WHERE v.user_id IS NOT NULL OR m.user_id IS NOT NULL").await?,
    });
    audit::record(&db, None, Some(user.user_id), Action::DataExported, None, serde_json::json!({})).await?;
    if params.delivery.unwrap_or_default() == Delivery::Link {
        let bytes = serde_json::to_vec_pretty(&export).map_err(ApiError::internal)?;
        let link = blobs::export_link(&*state.blobs, "engagetrack-export.json", "application/json", bytes).await?;
        return Ok(Json(link.ok_or_else(|| ApiError::bad_request(blobs::NO_LINKS))?).into_response());
    }
    Ok(Json(export).into_response())
}

#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct DeleteAccount {
    /// The account's email, typed again to confirm.
    pub confirm_email: String,
    /// Required when the account has a password.
    pub password: Option<String>,
}

/// Locks the account at once (no sign-in, every session ends); the
/// retention job erases it and its personal data 30 days later.
/// Organisations it alone belongs to are deleted with it; one it owns alone
/// but shares with others must get another owner first.
#[utoipa::path(delete, path = "/api/me", tag = "account", request_body = DeleteAccount,
    responses((status = 202, body = Done), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_me(State(state): State<AppState>, user: SignedInUser, JsonBody(req): JsonBody<DeleteAccount>) -> ApiResult<(StatusCode, Json<Done>)> {
    let now = now();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let email: String = tx.query_one("SELECT email FROM users WHERE id = $1", &[&user.user_id]).await?.get(0);
    if Email::parse(&req.confirm_email).ok().as_ref().map(Email::as_str) != Some(email.as_str()) {
        return Err(ApiError::bad_request("`confirm_email` must be this account's email"));
    }
    check_password(&tx, user, req.password.as_deref()).await?;
    let orgs = tx
        .query(
            "SELECT o.id, o.name,
                    (SELECT count(*) FROM memberships x WHERE x.organization_id = o.id AND x.role = 'owner' AND x.user_id <> $1),
                    (SELECT count(*) FROM memberships x WHERE x.organization_id = o.id AND x.user_id <> $1)
             FROM memberships m JOIN organizations o ON o.id = m.organization_id
             WHERE m.user_id = $1 AND m.role = 'owner' AND o.deleted_at IS NULL",
            &[&user.user_id],
        )
        .await?;
    for org in &orgs {
        let (id, name, other_owners, other_members): (Uuid, String, i64, i64) = (org.get(0), org.get(1), org.get(2), org.get(3));
        if other_owners == 0 && other_members > 0 {
            return Err(ApiError::conflict(format!("you are the only owner of “{name}”: transfer ownership first, or remove its other members")));
        }
        if other_members == 0 {
            tx.execute("UPDATE organizations SET deleted_at = $2 WHERE id = $1", &[&id, &now]).await?;
            tx.execute("UPDATE sites SET deleted_at = $2, active = false WHERE organization_id = $1 AND deleted_at IS NULL", &[&id, &now]).await?;
        }
    }
    audit::record(&tx, None, Some(user.user_id), Action::AccountDeleted, None, serde_json::json!({})).await?;
    tx.execute("UPDATE users SET locked_at = $2, deleted_at = $2 WHERE id = $1", &[&user.user_id, &now]).await?;
    // Out of every team at once, so a deleted owner never counts as one.
    tx.execute("DELETE FROM memberships WHERE user_id = $1", &[&user.user_id]).await?;
    refresh::revoke_all(&tx, user.user_id, now).await?;
    tx.commit().await?;
    crate::cache::sessions_revoked(&state.cache, user.user_id).await;
    Ok((StatusCode::ACCEPTED, Json(Done { ok: true })))
}

fn totp(secret: Vec<u8>, email: String) -> ApiResult<TOTP> {
    TOTP::new(Algorithm::SHA1, 6, 1, 30, secret, Some("EngageTrack".into()), email).map_err(ApiError::internal)
}

fn totp_associated(user: Uuid) -> Vec<u8> {
    [b"users.totp_secret:".as_slice(), user.as_bytes()].concat()
}

/// Checks a code against the user's (encrypted) TOTP secret, one 30-second
/// step of skew each way; a code is accepted once (its step must be newer
/// than the last accepted one), so a phished code cannot be replayed.
pub(crate) async fn totp_code_valid(
    state: &AppState,
    db: &impl deadpool_postgres::GenericClient,
    user: Uuid,
    sealed: &[u8],
    code: &str,
    now: DateTime<Utc>,
) -> ApiResult<bool> {
    let secret = state.cipher.decrypt(sealed, &totp_associated(user)).map_err(ApiError::internal)?;
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(false);
    }
    let t = totp(secret, String::new())?;
    let now = u64::try_from(now.timestamp()).unwrap_or_default();
    let Some(step) = [now.saturating_sub(30), now, now + 30].into_iter().find(|at| t.generate(*at) == code).map(|at| (at / 30) as i64) else {
        return Ok(false);
    };
    let fresh = db
        .execute("UPDATE users SET totp_last_step = $2 WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)", &[&user, &step])
        .await?;
    Ok(fresh == 1)
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct TotpSetup {
    /// Base32, for typing into an authenticator app.
    pub secret: String,
    /// `otpauth://` URL, for a QR code.
    pub otpauth_url: String,
}

/// Makes a new secret (not yet required at sign-in: confirm it with a code first).
#[utoipa::path(post, path = "/api/me/totp/setup", tag = "account",
    responses((status = 200, body = TotpSetup), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn totp_setup(State(state): State<AppState>, user: SignedInUser) -> ApiResult<Json<TotpSetup>> {
    let db = state.pool.get().await?;
    let row = db.query_one("SELECT email, totp_enabled_at IS NOT NULL FROM users WHERE id = $1", &[&user.user_id]).await?;
    if row.get::<_, bool>(1) {
        return Err(ApiError::conflict("two-factor sign-in is already on; turn it off first to make a new secret"));
    }
    let mut secret = vec![0u8; 20];
    rand::fill(secret.as_mut_slice());
    let sealed = state.cipher.encrypt(&secret, &totp_associated(user.user_id)).map_err(ApiError::internal)?;
    db.execute("UPDATE users SET totp_secret = $2, totp_last_step = NULL WHERE id = $1", &[&user.user_id, &sealed]).await?;
    let t = totp(secret, row.get(0))?;
    Ok(Json(TotpSetup { secret: t.get_secret_base32(), otpauth_url: t.get_url() }))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct TotpCode {
    pub code: String,
}

#[utoipa::path(post, path = "/api/me/totp/enable", tag = "account", request_body = TotpCode,
    responses((status = 200, body = Done), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn totp_enable(State(state): State<AppState>, user: SignedInUser, JsonBody(req): JsonBody<TotpCode>) -> ApiResult<Json<Done>> {
    let now = now();
    let db = state.pool.get().await?;
    let sealed: Option<Vec<u8>> = db.query_one("SELECT totp_secret FROM users WHERE id = $1", &[&user.user_id]).await?.get(0);
    let sealed = sealed.ok_or_else(|| ApiError::bad_request("start with POST /api/me/totp/setup"))?;
    if !totp_code_valid(&state, &db, user.user_id, &sealed, &req.code, now).await? {
        return Err(ApiError::bad_request("the code is wrong; check the authenticator app's clock"));
    }
    db.execute("UPDATE users SET totp_enabled_at = $2 WHERE id = $1", &[&user.user_id, &now]).await?;
    audit::record(&db, None, Some(user.user_id), Action::TotpEnabled, None, serde_json::json!({})).await?;
    Ok(Json(Done { ok: true }))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct TotpDisable {
    pub current_password: Option<String>,
    pub code: String,
}

#[utoipa::path(post, path = "/api/me/totp/disable", tag = "account", request_body = TotpDisable,
    responses((status = 200, body = Done), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn totp_disable(State(state): State<AppState>, user: SignedInUser, JsonBody(req): JsonBody<TotpDisable>) -> ApiResult<Json<Done>> {
    let now = now();
    let db = state.pool.get().await?;
    check_password(&db, user, req.current_password.as_deref()).await?;
    let sealed: Option<Vec<u8>> = db.query_one("SELECT totp_secret FROM users WHERE id = $1 AND totp_enabled_at IS NOT NULL", &[&user.user_id]).await?.get(0);
    let sealed = sealed.ok_or_else(|| ApiError::bad_request("two-factor sign-in is not on"))?;
    if !totp_code_valid(&state, &db, user.user_id, &sealed, &req.code, now).await? {
        return Err(ApiError::bad_request("the code is wrong (or was already used)"));
    }
    db.execute("UPDATE users SET totp_secret = NULL, totp_enabled_at = NULL WHERE id = $1", &[&user.user_id]).await?;
    audit::record(&db, None, Some(user.user_id), Action::TotpDisabled, None, serde_json::json!({})).await?;
    Ok(Json(Done { ok: true }))
}
