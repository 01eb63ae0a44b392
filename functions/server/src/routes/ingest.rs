//! `POST /ingest/batch`: signed batches of anonymised events from the edge.
//! A 2xx means every event in it is durable (or was already stored).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use shared::batch::{self, Batch, SIGNATURE_HEADER, TIMESTAMP_HEADER};

use super::edge::{ingest_error, read_at_most};
use crate::error::ApiError;
use crate::ingest::BatchOutcome;
use crate::state::AppState;

/// 5,000 events of about a kilobyte each, with room to spare.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/ingest/batch", post(receive_batch))
}

async fn receive_batch(state: State<AppState>, request: Request) -> Result<Json<BatchOutcome>, ApiError> {
    use crate::metrics::{Outcome, Path, Refusal, global};
    let answer = receive_signed_batch(state, request).await;
    match &answer {
        Ok(Json(outcome)) => {
            global().count_ingest(Path::Batch, Outcome::Stored, Refusal::None, outcome.stored);
            global().count_ingest(Path::Batch, Outcome::Duplicate, Refusal::None, outcome.duplicates);
            global().count_ingest(Path::Batch, Outcome::Refused, Refusal::SiteNotAccepting, outcome.rejected);
            global().count_ingest(Path::Batch, Outcome::Refused, Refusal::OverQuota, outcome.over_quota);
        }
        // A refused batch counts once: its events were never read.
        Err(e) => global().count_ingest(Path::Batch, Outcome::Refused, super::edge::refusal_of(e.status), 1),
    }
    answer
}

async fn receive_signed_batch(State(state): State<AppState>, request: Request) -> Result<Json<BatchOutcome>, ApiError> {
    let (parts, body) = request.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let unauthorized = |m: String| ApiError::new(StatusCode::UNAUTHORIZED, m);
    let timestamp = header(TIMESTAMP_HEADER).ok_or_else(|| unauthorized(format!("missing {TIMESTAMP_HEADER}")))?;
    let signature = header(SIGNATURE_HEADER).ok_or_else(|| unauthorized(format!("missing {SIGNATURE_HEADER}")))?;
    let body = read_at_most(body, MAX_BATCH_BYTES).await?;
    state
        .keys
        .current()
        .verify_batch(&timestamp, &signature, &body, chrono::Utc::now().timestamp())
        .map_err(|e| unauthorized(e.to_string()))?;
    let batch: Batch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("not a batch: {e}")))?;
    if batch.events.len() > batch::MAX_EVENTS {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("at most {} events per batch", batch::MAX_EVENTS)));
    }
    // Checked again here: the edge may run another version, or be wrong.
    if let Some(e) = batch.events.iter().find_map(|e| e.validate().err()) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, e.to_string()));
    }
    state.ingest.accept_batch(batch).await.map(Json).map_err(ingest_error)
}
