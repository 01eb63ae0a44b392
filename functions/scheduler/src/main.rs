//! The scheduler Lambda: EventBridge sends `{"job": "<name>"}`; the server
//! library's job runs and its summary is returned.

use engagetrack_server::AppState;
use engagetrack_server::jobs::Job;
use lambda_runtime::{LambdaEvent, service_fn};
use serde::Deserialize;

#[derive(Deserialize)]
struct Scheduled {
    job: String,
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    engagetrack_server::telemetry::init();
    let state = AppState::from_lambda_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Scheduled>| {
        let state = state.clone();
        async move {
            let job: Job = event.payload.job.parse()?;
            Ok::<_, lambda_runtime::Error>(job.run(&state, chrono::Utc::now()).await?)
        }
    }))
    .await
}
