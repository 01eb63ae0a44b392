//! The [`Caller`] extractor: who sent this API request. A JWT access token
//! names a signed-in user (and is refused once its session is revoked or the
//! account locked); an `etk_` API key names an organisation and its scopes.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::Utc;
use uuid::Uuid;

use super::opaque;
use crate::cache::{self, SessionSeen};
use crate::error::ApiError;
use crate::state::AppState;

pub const API_KEY_PREFIX: &str = "etk_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    #[serde(rename = "stats:read")]
    StatsRead,
    #[serde(rename = "sites:read")]
    SitesRead,
    #[serde(rename = "sites:write")]
    SitesWrite,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::StatsRead => "stats:read",
            Scope::SitesRead => "sites:read",
            Scope::SitesWrite => "sites:write",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Scope::StatsRead, Scope::SitesRead, Scope::SitesWrite].into_iter().find(|x| x.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedInUser {
    pub user_id: Uuid,
    /// The refresh-token family of this sign-in.
    pub session_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyCaller {
    pub key_id: Uuid,
    pub organization_id: Uuid,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    User(SignedInUser),
    ApiKey(ApiKeyCaller),
}

impl Caller {
    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Caller::User(u) => Some(u.user_id),
            Caller::ApiKey(_) => None,
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("sign in first: this endpoint needs an `Authorization: Bearer` access token or API key"))?;
    header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        if token.starts_with(API_KEY_PREFIX) {
            return api_key(state, token).await.map(Caller::ApiKey);
        }
        let claims = state.access_tokens.verify(token).map_err(|e| ApiError::unauthorized(e.to_string()))?;
        // Only a shared cache answers "live"; revocations replace its generation.
        let seen = cache::session_lookup(&*state.cache, claims.sub, claims.sid).await;
        if seen != SessionSeen::Live {
            let db = state.pool.get().await?;
            let live: bool = db
                .query_opt(
                    "SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE family_id = $2 AND user_id = $1 AND revoked_at IS NULL)
                     FROM users WHERE id = $1 AND locked_at IS NULL AND deleted_at IS NULL",
                    &[&claims.sub, &claims.sid],
                )
                .await?
                .map(|r| r.get(0))
                .unwrap_or(false);
            if !live {
                return Err(ApiError::unauthorized("this session was signed out; sign in again"));
            }
            cache::session_confirmed(&*state.cache, claims.sub, claims.sid, seen).await;
        }
        Ok(Caller::User(SignedInUser { user_id: claims.sub, session_id: claims.sid }))
    }
}

async fn api_key(state: &AppState, token: &str) -> Result<ApiKeyCaller, ApiError> {
    let db = state.pool.get().await?;
    let row = db
        .query_opt(
            "UPDATE api_keys SET last_used_at = $2 WHERE key_hash = $1 AND revoked_at IS NULL
             RETURNING id, organization_id, scopes",
            &[&opaque::hash(token), &Utc::now()],
        )
        .await?
        .ok_or_else(|| ApiError::unauthorized("the API key is invalid or revoked"))?;
    let scopes: Vec<String> = row.get(2);
    Ok(ApiKeyCaller { key_id: row.get(0), organization_id: row.get(1), scopes: scopes.iter().filter_map(|s| Scope::parse(s)).collect() })
}

/// For routes only a person may use (account, team management): API keys are refused.
impl FromRequestParts<AppState> for SignedInUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::User(u) => Ok(u),
            Caller::ApiKey(_) => Err(ApiError::forbidden("API keys cannot use this endpoint; sign in as a user")),
        }
    }
}
