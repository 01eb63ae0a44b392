//! Plausible's Events API (`POST /api/event`): its payload parsed onto our beacon.
//!
//! The HTTP glue only: the payload's rules and its conversion live in
//! `shared::plausible_event`, and each beacon goes through [`crate::ingest::Ingest`]
//! exactly as one on `POST /api/e` does (client address, bots, anonymisation,
//! geo, site filters, rate limit, group commit). Answers are Plausible's:
//! `202 ok`, with `x-plausible-dropped: 1` when nothing was recorded.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use shared::Visit;
use shared::beacon::MAX_BODY_BYTES;
use shared::plausible_event::{PlausibleEvent, PlausibleEventError, SiteRef};

use crate::client_ip::{Transport, client_ip};
use crate::error::ApiError;
use crate::ingest::{Accepted, IngestError};
use crate::metrics::{Outcome, Path, Refusal, global};
use crate::routes::edge::{beacon_cors, ingest_error, read_at_most, refusal_of, request_signals};
use crate::state::AppState;

/// Plausible's header for "accepted, and not recorded" (bot, unknown site, …).
pub const DROPPED_HEADER: &str = "x-plausible-dropped";

pub fn router() -> Router<AppState> {
    Router::new().route("/api/event", post(collect).layer(beacon_cors()))
}

/// What became of one event, over all the sites it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Stored for this many sites.
    Stored(u64),
    Dropped(Outcome, Refusal),
}

async fn collect(State(state): State<AppState>, request: Request) -> Response {
    let answer = deliver(&state, request).await;
    let (outcome, reason, n) = match &answer {
        Ok(Delivery::Stored(n)) => (Outcome::Stored, Refusal::None, *n),
        Ok(Delivery::Dropped(outcome, reason)) => (*outcome, *reason, 1),
        Err(e) => (Outcome::Refused, refusal_of(e.status), 1),
    };
    global().count_ingest(Path::Plausible, outcome, reason, n);
    let text = [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))];
    match answer {
        Ok(Delivery::Stored(_)) => (StatusCode::ACCEPTED, text, "ok").into_response(),
        Ok(Delivery::Dropped(..)) => (StatusCode::ACCEPTED, text, [(DROPPED_HEADER, HeaderValue::from_static("1"))], "ok").into_response(),
        Err(e) => e.into_response(),
    }
}

async fn deliver(state: &AppState, request: Request) -> Result<Delivery, ApiError> {
    let (parts, body) = request.into_parts();
    let ip = client_ip(state.config.client_ip, &parts.headers, &Transport::of(&parts.extensions))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    // JSON whatever the Content-Type says: Plausible's tracker sends text/plain.
    let body = read_at_most(body, MAX_BODY_BYTES).await?;
    let event = PlausibleEvent::parse(&body).map_err(|e| match e {
        PlausibleEventError::TooLarge(_) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        e => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
    })?;
    let visit = Visit { ip, user_agent };
    let signals = request_signals(&parts.headers);
    let now = chrono::Utc::now();
    let mut stored = 0;
    let mut dropped = Delivery::Dropped(Outcome::Refused, Refusal::UnknownSite);
    for site in &event.sites {
        let site = match site {
            SiteRef::Id(id) => Some(*id),
            SiteRef::Domain(domain) => state.ingest.site_for_domain(domain).await.map_err(ingest_error)?,
        };
        let Some(site) = site else { continue };
        match state.ingest.accept_beacon(event.to_beacon(site, rand::random()), visit, &signals, now).await {
            Ok(Accepted::Stored(_)) => stored += 1,
            Ok(Accepted::Bot(reason)) => {
                tracing::debug!(%reason, "bot dropped");
                dropped = Delivery::Dropped(Outcome::Bot, Refusal::None);
            }
            Ok(Accepted::Filtered) => dropped = Delivery::Dropped(Outcome::Filtered, Refusal::None),
            // Plausible answers 202 for a site that takes no events, and says it dropped them.
            Err(IngestError::UnknownSite(_)) => dropped = Delivery::Dropped(Outcome::Refused, Refusal::UnknownSite),
            Err(IngestError::InactiveSite(_)) => dropped = Delivery::Dropped(Outcome::Refused, Refusal::InactiveSite),
            Err(IngestError::OverQuota { .. }) => dropped = Delivery::Dropped(Outcome::Refused, Refusal::OverQuota),
            // Rate limited or storage away: the sender should retry.
            Err(e) => return Err(ingest_error(e)),
        }
    }
    Ok(if stored > 0 { Delivery::Stored(stored) } else { dropped })
}
