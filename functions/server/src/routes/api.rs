//! The dashboard API under `/api/` (accounts, sites, stats: the Dashboard API
//! issue). Until then every path here answers a JSON 404, so clients get a
//! reason rather than an empty page.

use axum::Router;
use axum::routing::any;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/{*rest}", any(no_such_route))
}

async fn no_such_route() -> ApiError {
    ApiError::not_found("no such API route")
}
