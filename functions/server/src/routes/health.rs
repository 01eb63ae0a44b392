use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics))
}

/// Prometheus scrapes this with `Authorization: Bearer <metrics-token>` (the
/// secret's hex). Without the secret configured the route does not exist.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let keys = state.keys.current();
    let Some(token) = keys.metrics_token.as_deref() else {
        return Err(ApiError::not_found("metrics are not configured (no `metrics-token` secret)"));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <metrics-token>"))?;
    let expected = hex::encode(token);
    if !bool::from(presented.trim().as_bytes().ct_eq(expected.as_bytes())) {
        return Err(ApiError::unauthorized("wrong metrics token"));
    }
    let m = crate::metrics::global();
    m.set_queue_depth(state.ingest.queue_depth());
    // Best effort: a scrape while the database is away still answers the rest.
    if let Ok(client) = state.pool.get().await
        && let Ok(row) = client.query_one("SELECT count(*) FROM mail_outbox WHERE status IN ('queued', 'sending')", &[]).await
    {
        m.set_mail_outbox(row.get(0));
    }
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode()).into_response())
}

/// Healthy means the database answers: without it nothing can be stored.
async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let client = state.pool.get().await.map_err(|e| ApiError::unavailable(format!("database: {e}")))?;
    client.query_one("SELECT 1", &[]).await.map_err(|e| ApiError::unavailable(format!("database: {e}")))?;
    Ok(Json(json!({ "status": "ok", "database": "ok" })))
}
