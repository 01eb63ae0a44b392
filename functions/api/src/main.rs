//! The api Lambda: the server library's api router under `lambda_http`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    engagetrack_server::telemetry::init();
    let state = engagetrack_server::AppState::from_lambda_env().await?;
    lambda_http::run(engagetrack_server::routes::api(state)).await
}
