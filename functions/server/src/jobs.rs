//! Scheduled jobs. The scheduler Lambda runs them on EventBridge schedules;
//! the local binary runs them on timers and from the command line.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::edge_publish;
use crate::state::AppState;

/// Messages one `send-mail` run tries at most (the next run takes the rest).
pub const MAIL_PER_RUN: u32 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Make today's and tomorrow's salts; destroy salts whose day is over;
    /// publish both to the edge and delete the destroyed days there.
    RotateSalt,
    /// Rewrite the edge's site list from the database (repairs drift left by
    /// a failed publish on site create/update/delete).
    SyncEdgeSites,
    /// Roll up today, yesterday and days with late events.
    Rollup,
    /// Delete raw events past retention, erase deleted accounts, trim the audit log.
    Retention,
    /// Count each organisation's events this period, send the 80 %/100 %
    /// notices, move free periods on, and write the quota drop counts.
    Quota,
    /// Send due mail from the outbox over SMTP (a no-op without SMTP).
    SendMail,
    /// Queue the weekly and monthly email reports that are due.
    SendReports,
    /// Queue traffic-spike alerts for members whose threshold is reached.
    SpikeAlerts,
    /// Queue the mail of material notices to holders not mailed yet: finishes
    /// a `notice publish` that stopped midway (a no-op when none did).
    NoticeMail,
}

impl Job {
    pub const ALL: &[Job] = &[
        Job::RotateSalt,
        Job::SyncEdgeSites,
        Job::Rollup,
        Job::Retention,
        Job::Quota,
        Job::SendMail,
        Job::SendReports,
        Job::SpikeAlerts,
        Job::NoticeMail,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::RotateSalt => "rotate-salt",
            Job::SyncEdgeSites => "sync-edge-sites",
            Job::Rollup => "rollup",
            Job::Retention => "retention",
            Job::Quota => "quota",
            Job::SendMail => "send-mail",
            Job::SendReports => "send-reports",
            Job::SpikeAlerts => "spike-alerts",
            Job::NoticeMail => "notice-mail",
        }
    }

    /// Runs the job; the summary is logged and returned to the scheduler.
    pub async fn run(self, state: &AppState, now: DateTime<Utc>) -> Result<Value, JobError> {
        let summary = match self {
            Job::RotateSalt => {
                let salts = state.ingest.salts();
                let destroyed = salts.rotate(now).await?;
                // The rotation is done either way; a publish failure fails the
                // job (so the scheduler alarms) and the next run repeats it.
                let edge = edge_publish::publish_salts(&*state.edge, &**salts, now, &destroyed, &edge_publish::BACKOFF).await?;
                json!({ "job": self.name(), "destroyed_salt_days": destroyed, "edge": edge })
            }
            Job::SyncEdgeSites => {
                let synced = edge_publish::sync_sites(&*state.edge, &state.pool, &edge_publish::BACKOFF).await?;
                json!({ "job": self.name(), "edge_configured": state.edge.is_configured(), "sites": synced })
            }
            Job::Rollup => {
                let days = crate::rollup::rollup_due(&state.pool, now, None).await?;
                json!({ "job": self.name(), "rolled_up": days })
            }
            Job::Retention => {
                let purged = crate::retention::run(&state.pool, now).await?;
                json!({ "job": self.name(), "purged": purged })
            }
            Job::Quota => {
                let run =
                    crate::billing::quota::run(&state.pool, &*state.mailer, state.ingest.quota_drops(), state.config.public_url(), now)
                        .await?;
                if run.paused > 0 {
                    // This process's ingest sees a new pause at once; others within the site cache's 30 s.
                    state.ingest.forget_sites();
                }
                json!({ "job": self.name(), "quota": run })
            }
            Job::SendMail => match state.mail_transport()? {
                Some(transport) => {
                    let drained = crate::mail::worker::drain(&state.pool, &*transport, now, MAIL_PER_RUN).await?;
                    json!({ "job": self.name(), "smtp_configured": true, "mail": drained })
                }
                None => json!({ "job": self.name(), "smtp_configured": false }),
            },
            Job::SendReports | Job::SpikeAlerts => {
                let key = crate::reports::token::LinkKey::new(state.keys.current().mail_link.as_deref()).ok();
                let (pool, mailer, public_url) = (&state.pool, &*state.mailer, state.config.public_url());
                let post = crate::reports::Post { pool, mailer, key: key.as_ref(), public_url };
                let run = match self {
                    Job::SendReports => crate::reports::send_reports(post, now).await?,
                    _ => crate::reports::send_spike_alerts(post, now).await?,
                };
                json!({ "job": self.name(), "mail": run })
            }
            Job::NoticeMail => {
                let public_url = Some(state.config.public_url.as_str()).filter(|u| !u.is_empty());
                let mailed = crate::notices::mail_pending(&state.pool, &*state.mailer, public_url).await?;
                json!({ "job": self.name(), "mailed": mailed })
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
    #[error("unknown job `{0}`; known jobs: rotate-salt, sync-edge-sites, rollup, retention, quota, send-mail, send-reports, spike-alerts, notice-mail")]
    Unknown(String),
    #[error("publishing to the edge failed: {0}")]
    EdgePublish(#[from] crate::edge_publish::EdgePublishError),
    #[error(transparent)]
    Salt(#[from] crate::salt::SaltError),
    #[error(transparent)]
    Rollup(#[from] crate::rollup::RollupError),
    #[error(transparent)]
    Quota(#[from] crate::billing::quota::QuotaError),
    #[error("mail: {0}")]
    Mail(#[from] crate::mail::worker::WorkerError),
    #[error("mail: {0}")]
    MailConfig(#[from] crate::state::StateError),
    #[error("reports: {0}")]
    Reports(#[from] crate::reports::ReportError),
    #[error("notices: {0}")]
    Notices(#[from] crate::notices::NoticeError),
}
