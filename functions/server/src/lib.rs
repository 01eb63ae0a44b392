//! The EngageTrack server library. Every Lambda `main` and the local
//! `engagetrack` binary wire these pieces; none of them holds logic of its own.

pub mod accounts;
pub mod adapters;
pub mod audit;
pub mod beacon_rate;
pub mod auth;
pub mod billing;
pub mod blobs;
pub mod cache;
pub mod client_ip;
pub mod enrich;
pub mod edge_publish;
pub mod error;
pub mod field_cipher;
pub mod group_commit;
pub mod imports;
pub mod ingest;
pub mod jobs;
pub mod metrics;
pub mod mail;
pub mod notices;
pub mod oauth;
pub mod plausible;
pub mod reports;
pub mod retention;
pub mod rollup;
pub mod routes;
pub mod salt;
pub mod secrets;
pub mod seed;
pub mod sites;
pub mod stats;
pub mod state;
pub mod telemetry;
pub mod visitor_requests;

pub use routes::app;
pub use state::{AppConfig, AppState};

/// Serves [`app`] on a TCP listener until `shutdown` completes, with the
/// configured timeouts; the local binary and the integration tests both run it.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let timeouts = state.config.timeouts;
    routes::host::serve(listener, app(state), timeouts, shutdown).await
}
