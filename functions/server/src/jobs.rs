//! Scheduled jobs. The scheduler Lambda runs them on EventBridge schedules;
//! the local binary runs them on timers and from the command line.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Make today's and tomorrow's salts; destroy salts whose day is over.
    RotateSalt,
}

impl Job {
    pub const ALL: &[Job] = &[Job::RotateSalt];

    pub fn name(self) -> &'static str {
        match self {
            Job::RotateSalt => "rotate-salt",
        }
    }

    /// Runs the job; the summary is logged and returned to the scheduler.
    pub async fn run(self, state: &AppState, now: DateTime<Utc>) -> Result<Value, JobError> {
        let summary = match self {
            Job::RotateSalt => {
                let destroyed = state.ingest.salts().rotate(now).await?;
                json!({ "job": self.name(), "destroyed_salt_days": destroyed })
            }
        };
        tracing::info!(job = self.name(), %summary, "job finished");
        Ok(summary)
    }
}

impl FromStr for Job {
    type Err = JobError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|j| j.name() == s).ok_or_else(|| JobError::Unknown(s.to_owned()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("unknown job `{0}`; known jobs: rotate-salt")]
    Unknown(String),
    #[error(transparent)]
    Salt(#[from] crate::salt::SaltError),
}
