//! The mailer port. Locally, mail goes to the `mail_outbox` table (and a log
//! line naming the recipient's domain and the subject, never the link); the
//! SMTP adapter of a later issue implements the same trait.

use deadpool_postgres::Pool;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
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
}

pub struct OutboxMailer {
    pool: Pool,
}

impl OutboxMailer {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let db = self.pool.get().await?;
        db.execute("INSERT INTO mail_outbox (to_address, subject, body) VALUES ($1, $2, $3)", &[&mail.to, &mail.subject, &mail.body])
            .await?;
        tracing::info!(to_domain = mail.to.rsplit('@').next().unwrap_or_default(), subject = %mail.subject, "mail queued in the outbox");
        Ok(())
    }
}
