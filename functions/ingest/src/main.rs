//! The ingest Lambda: the server library's ingest router under `lambda_http`.
//! Cold start builds the state (pool, secrets) and nothing else: migrations
//! are a deploy step (the scheduler's `{"job": "migrate"}`), never here.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    engagetrack_server::telemetry::init();
    // Said in the log too: a function that exits at init shows only its log.
    let state = engagetrack_server::AppState::from_lambda_env().inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let router = engagetrack_server::routes::ingest(state).layer(axum::middleware::map_request(with_source_ip));
    lambda_http::run(router).await
}

/// API Gateway names the client in `requestContext.http.sourceIp`; it becomes
/// the request's peer address, as a socket's would be, so a visitor's own
/// `X-Forwarded-For` cannot stand in for it.
async fn with_source_ip(mut request: Request) -> Request {
    let source_ip = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.as_deref().and_then(|ip| ip.parse().ok()),
        _ => None,
    };
    if let Some(ip) = source_ip {
        request.extensions_mut().insert(ConnectInfo(SocketAddr::new(ip, 0)));
    }
    request
}
