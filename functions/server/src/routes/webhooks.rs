//! Billing webhooks under `/webhooks/{provider}` (Stripe, Paddle,
//! LemonSqueezy, Polar). The raw body is taken as bytes, checked against the
//! provider's signature with its secret from the secret store, parsed into
//! one `BillingEvent` and applied once. A provider without a secret is not
//! configured: 404. A refused delivery gets a 4xx with the reason (the
//! provider's dashboard shows it) and changes nothing.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, response::IntoResponse};

use crate::billing::{self, Provider, WebhookError, store};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Provider events are small; anything bigger is not one.
const MAX_BODY: usize = 512 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/{provider}", post(receive))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        let status = match e {
            WebhookError::BadSignature | WebhookError::Stale { .. } => StatusCode::UNAUTHORIZED,
            WebhookError::MissingHeader(_) | WebhookError::MalformedHeader { .. } | WebhookError::BadPayload { .. } => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

async fn receive(State(state): State<AppState>, Path(provider): Path<String>, headers: HeaderMap, body: Bytes) -> ApiResult<impl IntoResponse> {
    let Some(provider) = Provider::parse(&provider) else {
        let name: String = provider.chars().take(40).collect();
        return Err(ApiError::not_found(format!("no webhook receiver for `{name}`")));
    };
    let keys = state.keys.current();
    let Some(secret) = keys.webhooks.get(provider) else {
        return Err(ApiError::not_found(format!(
            "{} webhooks are not configured (no `{}` in the secret store)",
            provider.as_str(),
            provider.webhook_secret_name()
        )));
    };
    let event = billing::verify_and_parse(provider, secret, &headers, &body, chrono::Utc::now()).inspect_err(|e| {
        tracing::warn!(provider = provider.as_str(), reason = %e, "webhook refused");
    })?;
    let outcome = store::apply(&state.pool, &state.cipher, &event).await?;
    Ok((StatusCode::OK, Json(outcome)))
}
