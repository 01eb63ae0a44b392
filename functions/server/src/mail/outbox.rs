//! The `mail_outbox` table as a queue (see migrations/V8__mail_queue.sql for
//! the states). Each step after the claim names the attempt it belongs to,
//! so a sender whose lease ran out (and whose message another sender took
//! over) changes nothing.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::Mail;

/// How long a claimed message is left to its sender before another may take
/// it: far longer than one send may take ([`super::worker::SEND_TIMEOUT`]).
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(300);

/// Queues `mail`; its row's id.
pub async fn enqueue(db: &impl GenericClient, mail: &Mail) -> Result<i64, tokio_postgres::Error> {
    let row = db
        .query_one(
            "INSERT INTO mail_outbox (to_address, subject, body, html_body, list_unsubscribe) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&mail.to, &mail.subject, &mail.body, &mail.html, &mail.list_unsubscribe.as_ref().map(super::Unsubscribe::as_str)],
        )
        .await?;
    Ok(row.get(0))
}

/// A message this sender holds until `claimed_until`.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    /// 1 for the first try; names this claim in the steps after it.
    pub attempt: i32,
    /// `<…@domain>`, the same on every attempt.
    pub message_id: String,
    pub to: String,
    pub subject: String,
    /// `None` only for a row whose body was lost (it is failed at once).
    pub text: Option<String>,
    pub html: Option<String>,
    pub list_unsubscribe: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

/// Takes the next due message (queued and due, or sending with a lapsed
/// lease) for this sender. `FOR UPDATE SKIP LOCKED` makes concurrent senders
/// take different rows; the lease keeps a row from the next claim until its
/// sender marks it or the lease ends.
pub async fn claim(db: &impl GenericClient, now: DateTime<Utc>, message_id_domain: &str) -> Result<Option<Claimed>, tokio_postgres::Error> {
    let lease = LEASE.as_secs_f64();
    let row = db
        .query_opt(
            "UPDATE mail_outbox m SET
                status = 'sending',
                attempts = m.attempts + 1,
                claimed_until = $1::timestamptz + make_interval(secs => $2::float8),
                message_id = COALESCE(m.message_id, '<' || m.id || '.' || md5(random()::text || clock_timestamp()::text) || '@' || $3::text || '>')
             WHERE m.id = (
                SELECT id FROM mail_outbox
                WHERE status IN ('queued', 'sending') AND next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
                ORDER BY next_attempt_at, id
                LIMIT 1
                FOR UPDATE SKIP LOCKED)
             RETURNING m.id, m.attempts, m.message_id, m.to_address, m.subject, m.body, m.html_body, m.list_unsubscribe, m.created_at, m.last_error",
            &[&now, &lease, &message_id_domain],
        )
        .await?;
    Ok(row.map(|r| Claimed {
        id: r.get(0),
        attempt: r.get(1),
        message_id: r.get(2),
        to: r.get(3),
        subject: r.get(4),
        text: r.get(5),
        html: r.get(6),
        list_unsubscribe: r.get(7),
        created_at: r.get(8),
        last_error: r.get(9),
    }))
}

/// The server took it: keep who, what subject and the Message-ID, drop the
/// bodies (they hold the link's token). `false`: the lease was lost meanwhile.
pub async fn mark_sent(db: &impl GenericClient, mail: &Claimed, now: DateTime<Utc>) -> Result<bool, tokio_postgres::Error> {
    let n = db
        .execute(
            "UPDATE mail_outbox SET status = 'sent', sent_at = $3, body = NULL, html_body = NULL, claimed_until = NULL, last_error = NULL
             WHERE id = $1 AND attempts = $2 AND status = 'sending'",
            &[&mail.id, &mail.attempt, &now],
        )
        .await?;
    Ok(n == 1)
}

/// Back in the queue until `at`, with the reason of this failure.
pub async fn retry_at(db: &impl GenericClient, mail: &Claimed, at: DateTime<Utc>, reason: &str) -> Result<bool, tokio_postgres::Error> {
    let n = db
        .execute(
            "UPDATE mail_outbox SET status = 'queued', next_attempt_at = $3, claimed_until = NULL, last_error = $4
             WHERE id = $1 AND attempts = $2 AND status = 'sending'",
            &[&mail.id, &mail.attempt, &at, &reason],
        )
        .await?;
    Ok(n == 1)
}

/// No more tries: the reason stays, the bodies go.
pub async fn mark_failed(db: &impl GenericClient, mail: &Claimed, reason: &str) -> Result<bool, tokio_postgres::Error> {
    let n = db
        .execute(
            "UPDATE mail_outbox SET status = 'failed', body = NULL, html_body = NULL, claimed_until = NULL, last_error = $3
             WHERE id = $1 AND attempts = $2 AND status = 'sending'",
            &[&mail.id, &mail.attempt, &reason],
        )
        .await?;
    Ok(n == 1)
}
