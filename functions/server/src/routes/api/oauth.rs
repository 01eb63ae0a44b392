//! Google and GitHub sign-in. `start` sends the browser to the provider;
//! `callback` checks the state, finishes the PKCE exchange, links the
//! provider account to ours (by provider id, else by verified email, else a
//! new account), sets the refresh cookie and sends the browser to the
//! dashboard, which trades the cookie for an access token.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{ApiPath, ErrorBody, now};
use crate::accounts;
use crate::audit::{self, Action};
use crate::auth::credentials::Email;
use crate::auth::opaque;
use crate::auth::refresh;
use crate::error::{ApiError, ApiResult};
use crate::oauth::{self, OAuthError, Provider, ProviderConfig, ProviderIdentity};
use crate::state::AppState;

const STATE_TTL: Duration = Duration::minutes(10);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(providers)).routes(routes!(start)).routes(routes!(callback))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Providers {
    /// The sign-in providers configured on this server: `google`, `github`.
    pub providers: Vec<&'static str>,
}

/// Which "Sign in with …" buttons the sign-in page shows.
#[utoipa::path(get, path = "/api/auth/providers", tag = "auth", security(()),
    responses((status = 200, body = Providers)))]
async fn providers(State(state): State<AppState>) -> axum::Json<Providers> {
    axum::Json(Providers { providers: state.config.oauth.iter().map(|c| c.provider.as_str()).collect() })
}

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        match e {
            OAuthError::Config(c) => ApiError::internal(c),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

fn provider_config<'a>(state: &'a AppState, name: &str) -> ApiResult<&'a ProviderConfig> {
    let provider = Provider::parse(name).ok_or_else(|| ApiError::not_found("unknown sign-in provider; use google or github"))?;
    state
        .config
        .oauth
        .iter()
        .find(|c| c.provider == provider)
        .ok_or_else(|| ApiError::not_found(format!("{} sign-in is not configured on this server", provider.as_str())))
}

fn callback_url(state: &AppState, provider: Provider) -> String {
    format!("{}/api/auth/oauth/{}/callback", state.config.public_url(), provider.as_str())
}

fn verifier_associated(state_hash: &[u8]) -> Vec<u8> {
    [b"oauth_states.pkce_verifier:".as_slice(), state_hash].concat()
}

/// Redirects to the provider's consent page.
#[utoipa::path(get, path = "/api/auth/oauth/{provider}/start", tag = "auth", security(()),
    params(("provider" = String, Path, description = "google or github")),
    responses((status = 303, description = "to the provider"), (status = 404, body = ErrorBody)))]
async fn start(State(state): State<AppState>, ApiPath(provider): ApiPath<String>) -> ApiResult<Response> {
    let config = provider_config(&state, &provider)?;
    let authorization = oauth::authorize(config, &callback_url(&state, config.provider))?;
    let state_hash = opaque::hash(&authorization.state);
    let sealed = state.cipher.encrypt(authorization.pkce_verifier.as_bytes(), &verifier_associated(&state_hash)).map_err(ApiError::internal)?;
    let now = now();
    let db = state.pool.get().await?;
    db.execute("DELETE FROM oauth_states WHERE expires_at < $1", &[&now]).await?;
    db.execute(
        "INSERT INTO oauth_states (state_hash, provider, pkce_verifier, expires_at) VALUES ($1, $2, $3, $4)",
        &[&state_hash, &config.provider.as_str(), &sealed, &(now + STATE_TTL)],
    )
    .await?;
    // The state also goes in a cookie, so a callback only completes in the
    // browser that started it (no signing someone into the attacker's account).
    let cookie = cookie::Cookie::build((STATE_COOKIE, authorization.state.clone()))
        .http_only(true)
        .secure(true)
        .same_site(cookie::SameSite::Lax)
        .path("/api/auth/oauth")
        .max_age(cookie::time::Duration::seconds(STATE_TTL.num_seconds()))
        .build();
    let mut response = Redirect::to(&authorization.url).into_response();
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie.to_string()).map_err(ApiError::internal)?);
    Ok(response)
}

const STATE_COOKIE: &str = "et_oauth_state";



#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[utoipa::path(get, path = "/api/auth/oauth/{provider}/callback", tag = "auth", security(()),
    params(("provider" = String, Path, description = "google or github"), CallbackParams),
    responses((status = 303, description = "to the dashboard, with the refresh cookie set"), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn callback(
    State(state): State<AppState>,
    ApiPath(provider): ApiPath<String>,
    headers: axum::http::HeaderMap,
    Query(params): Query<CallbackParams>,
) -> ApiResult<Response> {
    let config = provider_config(&state, &provider)?;
    if let Some(error) = params.error {
        return Err(ApiError::bad_request(format!("the provider did not sign you in: {}", error.chars().take(100).collect::<String>())));
    }
    let (code, csrf) = params.code.zip(params.state).ok_or_else(|| ApiError::bad_request("`code` and `state` are required"))?;
    let bound = super::cookie_value(&headers, STATE_COOKIE).is_some_and(|c| opaque::hash(&c) == opaque::hash(&csrf));
    if !bound {
        return Err(ApiError::bad_request("this sign-in was started in another browser (or its cookie expired); start again"));
    }
    let verifier = take_state(&state, config.provider, &csrf).await?;
    let identity = oauth::complete(config, &callback_url(&state, config.provider), code, verifier).await?;
    let now = now();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let user = link_or_create(&state, &tx, config.provider, &identity).await?;
    let issued = refresh::start_family(&tx, user, None, now).await?;
    audit::record(&tx, None, Some(user), Action::SignIn, None, serde_json::json!({"method": config.provider.as_str()})).await?;
    tx.commit().await?;
    // Linking may have revoked an unproven account's sessions; after the commit, so no fill outlives it.
    crate::cache::sessions_revoked(&state.cache, user).await;
    // The JSON pair is of no use to a browser on a redirect; keep the cookie.
    let cookie = super::auth::token_response(&state, issued, now)?.headers().get(header::SET_COOKIE).cloned();
    let mut response = Redirect::to(&format!("{}/#/signed-in", state.config.public_url())).into_response();
    if let Some(cookie) = cookie {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let spent = cookie::Cookie::build((STATE_COOKIE, "")).http_only(true).secure(true).path("/api/auth/oauth").max_age(cookie::time::Duration::ZERO).build();
    if let Ok(v) = HeaderValue::from_str(&spent.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// The started sign-in this state belongs to, used up; its PKCE verifier.
async fn take_state(state: &AppState, provider: Provider, csrf: &str) -> ApiResult<String> {
    let hash = opaque::hash(csrf);
    let db = state.pool.get().await?;
    let sealed: Vec<u8> = db
        .query_opt(
            "DELETE FROM oauth_states WHERE state_hash = $1 AND provider = $2 AND expires_at > $3 RETURNING pkce_verifier",
            &[&hash, &provider.as_str(), &now()],
        )
        .await?
        .ok_or_else(|| ApiError::bad_request("the sign-in state is unknown or expired; start again"))?
        .get(0);
    let verifier = state.cipher.decrypt(&sealed, &verifier_associated(&hash)).map_err(ApiError::internal)?;
    String::from_utf8(verifier).map_err(ApiError::internal)
}

fn token_associated(provider: Provider, subject: &str) -> Vec<u8> {
    format!("oauth_identities.access_token:{}:{subject}", provider.as_str()).into_bytes()
}

async fn link_or_create(state: &AppState, tx: &deadpool_postgres::Transaction<'_>, provider: Provider, identity: &ProviderIdentity) -> ApiResult<Uuid> {
    let email = Email::parse(&identity.verified_email)?;
    let sealed = state.cipher.encrypt(identity.access_token.as_bytes(), &token_associated(provider, &identity.subject)).map_err(ApiError::internal)?;
    let linked = tx
        .query_opt("SELECT user_id FROM oauth_identities WHERE provider = $1 AND subject = $2", &[&provider.as_str(), &identity.subject])
        .await?;
    let user: Uuid = match linked {
        Some(row) => row.get(0),
        None => {
            let existing = tx.query_opt("SELECT id FROM users WHERE email = $1", &[&email.as_str()]).await?;
            match existing {
                // The provider vouches for the address, so it is verified here too.
                Some(row) => {
                    let id: Uuid = row.get(0);
                    // An account nobody has proven this address for may have been made by
                    // someone else in the owner's name (pre-account takeover): whatever
                    // credentials it has are dropped before the provider's owner gets it.
                    let unproven = tx
                        .execute(
                            "UPDATE users SET password_hash = NULL, totp_secret = NULL, totp_enabled_at = NULL
                             WHERE id = $1 AND email_verified_at IS NULL",
                            &[&id],
                        )
                        .await?;
                    if unproven > 0 {
                        refresh::revoke_all(tx, id, now()).await?;
                    }
                    tx.execute("UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1", &[&id]).await?;
                    id
                }
                None => {
                    let id = Uuid::new_v4();
                    tx.execute(
                        "INSERT INTO users (id, email, name, email_verified_at) VALUES ($1, $2, $3, now())",
                        &[&id, &email.as_str(), &identity.name.as_deref().map(|n| n.chars().take(100).collect::<String>())],
                    )
                    .await?;
                    let org = accounts::create_personal_organization(tx, id, &email, identity.name.as_deref()).await?;
                    audit::record(tx, Some(org), Some(id), Action::SignUp, None, serde_json::json!({"method": provider.as_str()})).await?;
                    id
                }
            }
        }
    };
    let row = tx
        .query_one("SELECT locked_at IS NULL AND deleted_at IS NULL, totp_enabled_at IS NOT NULL FROM users WHERE id = $1", &[&user])
        .await?;
    if !row.get::<_, bool>(0) {
        return Err(ApiError::forbidden("this account is locked"));
    }
    if row.get::<_, bool>(1) {
        // A provider sign-in would skip the second factor.
        return Err(ApiError::forbidden("this account uses two-factor sign-in: sign in with your password and code"));
    }
    tx.execute(
        "INSERT INTO oauth_identities (provider, subject, user_id, access_token) VALUES ($1, $2, $3, $4)
         ON CONFLICT (provider, subject) DO UPDATE SET access_token = EXCLUDED.access_token",
        &[&provider.as_str(), &identity.subject, &user, &sealed],
    )
    .await?;
    Ok(user)
}
