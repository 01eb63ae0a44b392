//! Mail: the mailer port every caller queues through, and the queue behind it.
//!
//! [`OutboxMailer`] writes each [`Mail`] into the `mail_outbox` table (and a
//! log line naming the recipient's domain and the subject, never the link).
//! Without SMTP configured that is where mail stays (local development reads
//! it there). With SMTP, [`worker`] drains the table as a queue over the
//! [`MailTransport`] port (the SMTP adapter, `adapters/smtp.rs`): claims under
//! a lease, retries with backoff, and drops the bodies once a message is done.

pub mod outbox;
pub mod worker;

pub(crate) mod html;

use std::sync::Arc;

use deadpool_postgres::Pool;

/// One message as callers write it: plain text, with the HTML alternative
/// made from it, and an unsubscribe link only where the mail is optional.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    /// The plain-text part.
    pub body: String,
    /// The HTML part.
    pub html: String,
    /// Where a `List-Unsubscribe` header points; `None` for mail a person
    /// cannot opt out of (verification, reset, invitation, quota notices).
    pub list_unsubscribe: Option<Unsubscribe>,
}

/// An `https://` link that stops this kind of mail for its recipient, for the
/// `List-Unsubscribe` header (and `List-Unsubscribe-Post`, RFC 8058: the link
/// must accept a `POST` with `List-Unsubscribe=One-Click`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unsubscribe(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an unsubscribe link must be an absolute http(s) URL without spaces, `<` or `>`: {0:?}")]
pub struct UnsubscribeError(String);

impl Unsubscribe {
    pub fn new(url: &str) -> Result<Self, UnsubscribeError> {
        let parsed = url::Url::parse(url).map_err(|_| UnsubscribeError(url.to_owned()))?;
        let fits_header = !url.contains(|c: char| c.is_whitespace() || c == '<' || c == '>' || !c.is_ascii());
        if !matches!(parsed.scheme(), "https" | "http") || !fits_header {
            return Err(UnsubscribeError(url.to_owned()));
        }
        Ok(Self(url.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Mail {
    /// A mail the recipient cannot opt out of: no `List-Unsubscribe`.
    pub fn transactional(to: impl Into<String>, subject: impl Into<String>, body: impl Into<String>) -> Self {
        let body = body.into();
        Self { to: to.into(), subject: subject.into(), html: html::from_text(&body), body, list_unsubscribe: None }
    }

    /// A mail the recipient may stop (reports, digests): with `List-Unsubscribe`.
    pub fn optional(to: impl Into<String>, subject: impl Into<String>, body: impl Into<String>, unsubscribe: Unsubscribe) -> Self {
        Self { list_unsubscribe: Some(unsubscribe), ..Self::transactional(to, subject, body) }
    }

    /// As [`Mail::optional`], with an HTML part of the caller's (tables, a
    /// chart) in place of the one made from the text; the caller escapes it.
    pub fn optional_with_html(
        to: impl Into<String>,
        subject: impl Into<String>,
        body: impl Into<String>,
        html: impl Into<String>,
        unsubscribe: Unsubscribe,
    ) -> Self {
        Self { to: to.into(), subject: subject.into(), body: body.into(), html: html.into(), list_unsubscribe: Some(unsubscribe) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

#[async_trait::async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: Mail) -> Result<(), MailError>;

    /// Queues `mail` inside the caller's transaction, so the caller's record
    /// of having mailed it (a unique key) commits with the queued message or
    /// not at all. The outbox row's id. Call [`Mailer::committed`] after the
    /// commit: the message is not visible to a sender before.
    async fn send_in(&self, tx: &tokio_postgres::Transaction<'_>, mail: &Mail) -> Result<i64, MailError>;

    /// Mail queued with [`Mailer::send_in`] was committed.
    fn committed(&self);
}

/// What sends a claimed message on (SMTP); the worker decides what an
/// answer means for the queue.
#[async_trait::async_trait]
pub trait MailTransport: Send + Sync {
    /// Hands one message to the server; `Ok` once it answered 250 to the data.
    async fn deliver(&self, mail: &outbox::Claimed) -> Result<(), DeliveryError>;
    /// The domain of the sender address, for Message-IDs.
    fn message_id_domain(&self) -> &str;
}

/// Why a delivery did not happen, as the queue needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth another try later: a 4xx, a refused or dropped connection, a
    /// timeout, a TLS or credentials problem the operator can fix.
    #[error("{0}")]
    Temporary(String),
    /// Retrying cannot help: a 5xx for this message, an unusable address.
    #[error("{0}")]
    Permanent(String),
}

pub struct OutboxMailer {
    pool: Pool,
    queued: Arc<tokio::sync::Notify>,
}

impl OutboxMailer {
    pub fn new(pool: Pool) -> Self {
        Self::with_signal(pool, Arc::default())
    }

    /// `queued` is notified after each insert, so a local worker sends at once.
    pub fn with_signal(pool: Pool, queued: Arc<tokio::sync::Notify>) -> Self {
        Self { pool, queued }
    }
}

#[async_trait::async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let db = self.pool.get().await?;
        outbox::enqueue(&**db, &mail).await?;
        self.queued.notify_one();
        log_queued(&mail);
        Ok(())
    }

    async fn send_in(&self, tx: &tokio_postgres::Transaction<'_>, mail: &Mail) -> Result<i64, MailError> {
        let id = outbox::enqueue(tx, mail).await?;
        log_queued(mail);
        Ok(id)
    }

    fn committed(&self) {
        self.queued.notify_one();
    }
}

fn log_queued(mail: &Mail) {
    tracing::info!(to_domain = mail.to.rsplit('@').next().unwrap_or_default(), subject = %mail.subject, "mail queued in the outbox");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsubscribe_links_are_absolute_web_urls_that_fit_the_header() {
        assert_eq!(
            Unsubscribe::new("https://example.com/u?t=abc").map(|u| u.as_str().to_owned()),
            Ok("https://example.com/u?t=abc".into())
        );
        for bad in ["/relative", "mailto:x@example.com", "https://example.com/a b", "https://example.com/>", "not a url"] {
            assert!(Unsubscribe::new(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn transactional_mail_has_no_unsubscribe_and_an_html_part() {
        let mail = Mail::transactional("a@example.com", "Hi", "Open https://example.com/x?token=1&a=2\n");
        assert_eq!(mail.list_unsubscribe, None);
        assert!(mail.html.contains(r#"<a href="https://example.com/x?token=1&amp;a=2">"#), "{}", mail.html);
        let optional = Mail::optional("a@example.com", "Hi", "x", Unsubscribe::new("https://example.com/u").expect("valid"));
        assert_eq!(optional.list_unsubscribe.map(|u| u.0), Some("https://example.com/u".into()));
    }
}
