//! The HTTP surface, as routers that both hosts serve: `lambda_http` in AWS,
//! a TCP listener in the local binary. Each Lambda mounts its part; the local
//! binary mounts [`app`], all of them on one port.

pub mod api;
pub mod dashboard;
pub mod edge;
pub mod health;
pub mod host;
pub mod ingest;
pub mod webhooks;

use axum::Router;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

/// Everything, for the local binary.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(edge::router())
        .merge(ingest::router())
        .merge(api::router())
        .merge(dashboard::router())
        .merge(webhooks::router())
        .merge(health::router())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The ingest Lambda: signed batches from the edge, the beacon endpoint and the script.
pub fn ingest(state: AppState) -> Router {
    Router::new()
        .merge(edge::router())
        .merge(ingest::router())
        .merge(health::router())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The api Lambda: the dashboard API and the dashboard itself.
pub fn api(state: AppState) -> Router {
    Router::new().merge(api::router()).merge(dashboard::router()).merge(health::router()).layer(TraceLayer::new_for_http()).with_state(state)
}

/// The webhooks Lambda: billing providers.
pub fn webhooks(state: AppState) -> Router {
    Router::new().merge(webhooks::router()).merge(health::router()).layer(TraceLayer::new_for_http()).with_state(state)
}
