//! The api Lambda: the server library's api router under `lambda_http`.
//! Cold start builds the state (pool, secrets) and nothing else: migrations
//! are a deploy step (the scheduler's `{"job": "migrate"}`), never here.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    engagetrack_server::telemetry::init();
    // Said in the log too: a function that exits at init shows only its log.
    // The client address is API Gateway's `requestContext.http.sourceIp`
    // (ENGAGETRACK_CLIENT_IP defaults to `api-gateway` here; see client_ip.rs).
    let state = engagetrack_server::AppState::from_lambda_env().await.inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    lambda_http::run(engagetrack_server::routes::api(state)).await
}
