//! The mail worker: drains the outbox over a [`MailTransport`], one message
//! per claim.
//!
//! What is guaranteed: a message is claimed by one sender at a time (the
//! lease), a sender that crashes before the server accepted leaves it to the
//! next claim after the lease, and every attempt carries the same
//! Message-ID. So each message is delivered once, except in one window: the
//! server answered 250 and the sender died (or lost the database) before it
//! marked the row sent. Then the next claim sends it again, as a second copy
//! with the same Message-ID, which receivers can recognise. Nothing can close
//! that window without the server's help; it is a few milliseconds wide.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;

use super::outbox::{self, Claimed};
use super::{DeliveryError, MailTransport};

/// One send (connect, TLS, AUTH, the data) is abandoned after this, well
/// inside [`outbox::LEASE`], so no two attempts at one message overlap.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(120);

/// When to try again after a temporary failure.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles with each attempt…
    pub first: Duration,
    /// …up to this.
    pub longest: Duration,
    /// A message not sent this long after it was queued is failed.
    pub give_up_after: Duration,
}

pub const RETRY: RetryPolicy =
    RetryPolicy { first: Duration::from_secs(30), longest: Duration::from_secs(3600), give_up_after: Duration::from_secs(24 * 3600) };

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    RetryAt(DateTime<Utc>),
    GiveUp,
}

impl RetryPolicy {
    /// After failed attempt `attempt` (1-based) at `now`: the next try, with
    /// jitter (`jitter` in 0..1) over the upper half of the doubled wait so
    /// that senders failing together do not retry together; or give up once
    /// the next try would fall past the bound.
    pub fn after_failure(&self, attempt: i32, created_at: DateTime<Utc>, now: DateTime<Utc>, jitter: f64) -> NextStep {
        let doublings = u32::try_from(attempt.saturating_sub(1)).unwrap_or(0).min(20);
        let wait = self.first.saturating_mul(1 << doublings).min(self.longest);
        let wait = wait.div_f64(2.0) + wait.div_f64(2.0).mul_f64(jitter.clamp(0.0, 1.0));
        let at = chrono::Duration::from_std(wait).ok().and_then(|wait| now.checked_add_signed(wait));
        match (at, self.deadline(created_at)) {
            (Some(at), Some(deadline)) if at <= deadline => NextStep::RetryAt(at),
            _ => NextStep::GiveUp,
        }
    }

    pub fn deadline(&self, created_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        chrono::Duration::from_std(self.give_up_after).ok().and_then(|d| created_at.checked_add_signed(d))
    }
}

/// What one drain did, for the job's summary.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Drained {
    pub sent: u32,
    pub retrying: u32,
    pub failed: u32,
    /// Claims this sender lost to another before it could mark them.
    pub lease_lost: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// Sends due messages until none is due or `limit` were tried. `started` is
/// the time at the call; later claims read it moved on by the time spent.
pub async fn drain(pool: &Pool, transport: &dyn MailTransport, started: DateTime<Utc>, limit: u32) -> Result<Drained, WorkerError> {
    let clock = Instant::now();
    let now = || started + chrono::Duration::from_std(clock.elapsed()).unwrap_or_else(|_| chrono::Duration::zero());
    let mut drained = Drained::default();
    for _ in 0..limit {
        let db = pool.get().await?;
        let Some(mail) = outbox::claim(&**db, now(), transport.message_id_domain()).await? else {
            break;
        };
        // The connection is not held through the send: a slow server must not starve the pool.
        drop(db);
        let outcome = attempt(transport, &mail, &now).await;
        let db = pool.get().await?;
        let kept = match &outcome {
            Outcome::Sent => outbox::mark_sent(&**db, &mail, now()).await?,
            Outcome::Retry { at, reason } => outbox::retry_at(&**db, &mail, *at, reason).await?,
            Outcome::Failed(reason) => outbox::mark_failed(&**db, &mail, reason).await?,
        };
        let to_domain = mail.to.rsplit('@').next().unwrap_or_default();
        // Logs name the recipient's domain only; servers often quote the whole address.
        let logged = |reason: &str| reason.replace(&mail.to, &format!("<…@{to_domain}>"));
        match (&outcome, kept) {
            (_, false) => {
                drained.lease_lost += 1;
                tracing::warn!(id = mail.id, attempt = mail.attempt, "mail lease lost before the outcome was written");
            }
            (Outcome::Sent, true) => {
                drained.sent += 1;
                tracing::info!(id = mail.id, attempt = mail.attempt, to_domain, subject = %mail.subject, "mail sent");
            }
            (Outcome::Retry { at, reason }, true) => {
                drained.retrying += 1;
                tracing::warn!(id = mail.id, attempt = mail.attempt, to_domain, %at, reason = logged(reason), "mail not sent; will retry");
            }
            (Outcome::Failed(reason), true) => {
                drained.failed += 1;
                tracing::error!(id = mail.id, attempt = mail.attempt, to_domain, reason = logged(reason), "mail failed; no more tries");
            }
        }
    }
    Ok(drained)
}

enum Outcome {
    Sent,
    Retry { at: DateTime<Utc>, reason: String },
    Failed(String),
}

/// `now` is read before the send (is it still in time?) and after it (the
/// backoff starts when the attempt ended, not when it began).
async fn attempt(transport: &dyn MailTransport, mail: &Claimed, now: &(dyn Fn() -> DateTime<Utc> + Sync)) -> Outcome {
    if mail.text.is_none() {
        return Outcome::Failed("the message has no body".into());
    }
    if RETRY.deadline(mail.created_at).is_none_or(|deadline| now() > deadline) {
        let last = mail.last_error.as_deref().unwrap_or("no attempt was made");
        return Outcome::Failed(format!("not sent within {} h of being queued; last error: {last}", RETRY.give_up_after.as_secs() / 3600));
    }
    let result = match tokio::time::timeout(SEND_TIMEOUT, transport.deliver(mail)).await {
        Ok(result) => result,
        Err(_) => Err(DeliveryError::Temporary(format!("no answer within {} s", SEND_TIMEOUT.as_secs()))),
    };
    match result {
        Ok(()) => Outcome::Sent,
        Err(DeliveryError::Permanent(reason)) => Outcome::Failed(reason),
        Err(DeliveryError::Temporary(reason)) => match RETRY.after_failure(mail.attempt, mail.created_at, now(), rand::random::<f64>()) {
            NextStep::RetryAt(at) => Outcome::Retry { at, reason },
            NextStep::GiveUp => Outcome::Failed(format!("gave up after {} attempts; last error: {reason}", mail.attempt)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("a valid time")
    }

    fn wait(step: NextStep, now: DateTime<Utc>) -> i64 {
        match step {
            NextStep::RetryAt(t) => (t - now).num_seconds(),
            NextStep::GiveUp => panic!("gave up"),
        }
    }

    #[test]
    fn waits_double_from_the_first_and_stop_at_the_longest() {
        let now = at(100);
        // jitter 1: the whole doubled wait; jitter 0: its half.
        let full: Vec<i64> = (1..=9).map(|n| wait(RETRY.after_failure(n, at(0), now, 1.0), now)).collect();
        assert_eq!(full, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        let half: Vec<i64> = (1..=3).map(|n| wait(RETRY.after_failure(n, at(0), now, 0.0), now)).collect();
        assert_eq!(half, [15, 30, 60]);
        assert_eq!(wait(RETRY.after_failure(1, at(0), now, 0.5), now), 22);
        // Out-of-range inputs stay bounded.
        assert_eq!(wait(RETRY.after_failure(i32::MAX, at(0), now, 7.0), now), 3600);
        assert_eq!(wait(RETRY.after_failure(-3, at(0), now, -1.0), now), 15);
    }

    #[test]
    fn gives_up_when_the_next_try_would_pass_the_bound() {
        let day = 24 * 3600;
        let now = at(day - 20);
        assert_eq!(RETRY.after_failure(1, at(0), now, 0.0), NextStep::RetryAt(at(day - 5)));
        assert_eq!(RETRY.after_failure(1, at(0), now, 1.0), NextStep::GiveUp);
        assert_eq!(RETRY.after_failure(1, at(0), at(day + 1), 0.0), NextStep::GiveUp);
    }
}
