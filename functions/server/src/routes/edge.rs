//! The edge routes: `GET /et.js` (the tracker) and `POST /api/e` (beacons).
//! The Cloudflare worker serves the same two paths at the edge; locally and
//! in the ingest Lambda these handlers do.

use std::sync::LazyLock;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use shared::Visit;
use shared::bots::RequestSignals;
use shared::beacon::MAX_BODY_BYTES;
use sha2::{Digest, Sha256};
use tower_http::cors::{Any, CorsLayer};

use crate::client_ip::{Transport, client_ip};
use crate::error::ApiError;
use crate::ingest::{Accepted, IngestError};
use crate::state::AppState;

/// The tracker from `sdk/`.
pub const TRACKER_JS: &str = include_str!("../../../../sdk/dist/et.js");
static TRACKER_ETAG: LazyLock<HeaderValue> =
    LazyLock::new(|| HeaderValue::from_str(&etag_of(TRACKER_JS.as_bytes())).unwrap_or(HeaderValue::from_static("\"0\"")));

/// With Plausible's Events API (`POST /api/event`, [`crate::plausible::events`])
/// beside `/api/e`: the local binary and the ingest Lambda serve both.
pub fn router() -> Router<AppState> {
    Router::new().route("/et.js", get(tracker)).route("/api/e", post(collect).layer(beacon_cors())).merge(crate::plausible::events::router())
}

/// Any site may post beacons; `text/plain` needs no preflight, JSON does.
pub(crate) fn beacon_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(86_400))
}

async fn tracker(headers: HeaderMap) -> Response {
    let etag = TRACKER_ETAG.clone();
    if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v == etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400, stale-while-revalidate=604800")),
            (header::ETAG, etag),
        ],
        TRACKER_JS,
    )
        .into_response()
}

async fn collect(state: State<AppState>, request: Request) -> Result<StatusCode, ApiError> {
    use crate::metrics::{Outcome, Path, Refusal, global};
    let answer = collect_beacon(state, request).await;
    let (outcome, reason) = match &answer {
        Ok(Accepted::Stored(_)) => (Outcome::Stored, Refusal::None),
        Ok(Accepted::Bot(_)) => (Outcome::Bot, Refusal::None),
        Ok(Accepted::Filtered) => (Outcome::Filtered, Refusal::None),
        Err(e) => (Outcome::Refused, refusal_of(e.status)),
    };
    global().count_ingest(Path::Beacon, outcome, reason, 1);
    answer.map(|_| StatusCode::ACCEPTED)
}

/// The refusal a beacon's error status stands for ([`ingest_error`] decides the status).
pub(crate) fn refusal_of(status: StatusCode) -> crate::metrics::Refusal {
    use crate::metrics::Refusal;
    match status {
        StatusCode::NOT_FOUND => Refusal::UnknownSite,
        StatusCode::FORBIDDEN => Refusal::InactiveSite,
        StatusCode::UNAUTHORIZED => Refusal::BadSignature,
        StatusCode::PAYMENT_REQUIRED => Refusal::OverQuota,
        StatusCode::TOO_MANY_REQUESTS => Refusal::RateLimited,
        s if s.is_server_error() => Refusal::Unavailable,
        _ => Refusal::Invalid,
    }
}

/// What a request's own headers tell the bot rules and the UA parser.
pub(crate) fn request_signals(headers: &HeaderMap) -> RequestSignals<'_> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    RequestSignals {
        headers_seen: true,
        accept_language: text(header::ACCEPT_LANGUAGE.as_str()),
        sec_ch_ua: text("sec-ch-ua"),
        sec_ch_ua_mobile: text("sec-ch-ua-mobile"),
        sec_ch_ua_platform: text("sec-ch-ua-platform"),
        // Looked up in the pipeline's hosting ranges, if it was given some.
        asn: None,
    }
}

async fn collect_beacon(State(state): State<AppState>, request: Request) -> Result<Accepted, ApiError> {
    let (parts, body) = request.into_parts();
    check_content_type(&parts.headers)?;
    let ip = client_ip(state.config.client_ip, &parts.headers, &Transport::of(&parts.extensions))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let signals = request_signals(&parts.headers);
    let body = read_limited(body).await?;
    state
        .ingest
        .accept_request(&body, Visit { ip, user_agent }, &signals, chrono::Utc::now())
        .await
        .inspect(|accepted| {
            if let Accepted::Bot(reason) = accepted {
                tracing::debug!(%reason, "bot dropped");
            }
        })
        .map_err(ingest_error)
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = ct.to_str().unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if essence == "text/plain" || essence == "application/json" {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the beacon as text/plain or application/json"))
    }
}

async fn read_limited(body: Body) -> Result<Bytes, ApiError> {
    read_at_most(body, MAX_BODY_BYTES).await
}

pub(crate) async fn read_at_most(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("body is larger than the {limit}-byte limit"))
    })
}

pub(crate) fn ingest_error(e: IngestError) -> ApiError {
    match e {
        IngestError::Beacon(e) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
        e @ IngestError::UnknownSite(_) => ApiError::not_found(e.to_string()),
        e @ IngestError::InactiveSite(_) => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
        e @ IngestError::OverQuota { .. } => ApiError::new(StatusCode::PAYMENT_REQUIRED, e.to_string()),
        e @ IngestError::RateLimited { .. } => ApiError::too_many_requests(e.to_string()).with_retry_after(1),
        IngestError::Unavailable(reason) => {
            tracing::warn!(%reason, "beacon not stored");
            ApiError::unavailable("storage is unavailable; retry later")
        }
    }
}

/// A strong validator: the first 96 bits of the script's SHA-256.
fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(bytes)[..12]))
}
