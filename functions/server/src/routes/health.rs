use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

/// Healthy means the database answers: without it nothing can be stored.
async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let client = state.pool.get().await.map_err(|e| ApiError::unavailable(format!("database: {e}")))?;
    client.query_one("SELECT 1", &[]).await.map_err(|e| ApiError::unavailable(format!("database: {e}")))?;
    Ok(Json(json!({ "status": "ok", "database": "ok" })))
}
