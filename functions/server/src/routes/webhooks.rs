//! Billing webhooks under `/webhooks/{provider}` (Stripe, Paddle,
//! LemonSqueezy, Polar: the billing issue). No provider is configured yet, so
//! each delivery gets a JSON 404 the provider's dashboard will show.

use axum::Router;
use axum::extract::Path;
use axum::routing::post;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/{provider}", post(unknown_provider))
}

async fn unknown_provider(Path(provider): Path<String>) -> ApiError {
    let provider: String = provider.chars().take(40).collect();
    ApiError::not_found(format!("no webhook receiver for `{provider}`"))
}
