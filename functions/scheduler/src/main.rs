//! The scheduler Lambda. EventBridge Scheduler delivers the schedule's input,
//! `{"job": "<name>"}` (template.yaml); the server library's job runs and its
//! summary is the function's result. `{"job": "migrate"}` is the deploy step
//! that applies migrations: no schedule sends it, and no other function
//! migrates, so a cold start never waits on (or races) a schema change.

use engagetrack_server::jobs::Job;
use engagetrack_server::AppState;
use engagetrack_server::adapters::postgres as db;
use lambda_runtime::{LambdaEvent, service_fn};
use serde::Deserialize;
use serde_json::{Value, json};

/// The schedule's input. Other fields (say a `scheduled_time` from the
/// scheduler's context attributes) are ignored: jobs read the clock.
#[derive(Deserialize)]
struct Scheduled {
    job: String,
}

const MIGRATE: &str = "migrate";

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    engagetrack_server::telemetry::init();
    // Said in the log too: a function that exits at init shows only its log.
    let state = AppState::from_lambda_env().await.inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Scheduled>| {
        let state = state.clone();
        async move { run(&state, &event.payload.job).await }
    }))
    .await
}

async fn run(state: &AppState, job: &str) -> Result<Value, lambda_runtime::Error> {
    if job == MIGRATE {
        let applied = db::migrate(&state.pool).await?;
        tracing::info!(job, applied = applied.len(), "job finished");
        return Ok(json!({ "job": MIGRATE, "applied": applied }));
    }
    let job: Job = job.parse()?;
    Ok(job.run(state, chrono::Utc::now()).await?)
}
