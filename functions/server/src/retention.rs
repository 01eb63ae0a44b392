//! Retention and purges, run daily: raw events past their site's retention
//! (daily rollups are kept, as the privacy policy says), accounts and
//! organisations deleted more than 30 days ago with their personal data, and
//! audit-log entries older than two years.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::Pool;

pub const ACCOUNT_GRACE: Duration = Duration::days(30);
pub const AUDIT_LOG_KEEP: Duration = Duration::days(730);

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    pub events: u64,
    pub users: u64,
    pub organizations: u64,
    pub organization_events: u64,
    pub audit_log: u64,
    /// Spent or expired tokens, sign-in states, failure counters, old mail.
    pub expired_credentials: u64,
    /// Billing rows: records of erased organisations reduced to what tax law
    /// keeps, records past their 10 years, old webhook event ids.
    pub billing: u64,
}

/// Mail and tokens are kept only as long as they can be used (and a little
/// longer for refresh-token reuse detection).
pub const MAIL_KEEP: Duration = Duration::days(30);

async fn expire_credentials(tx: &deadpool_postgres::Transaction<'_>, now: DateTime<Utc>) -> Result<u64, tokio_postgres::Error> {
    let mut n = 0;
    n += tx.execute("DELETE FROM email_tokens WHERE expires_at < $1", &[&now]).await?;
    n += tx.execute("DELETE FROM oauth_states WHERE expires_at < $1", &[&now]).await?;
    n += tx.execute("DELETE FROM refresh_tokens WHERE expires_at < $1", &[&now]).await?;
    n += tx.execute("DELETE FROM invitations WHERE expires_at < $1", &[&(now - MAIL_KEEP)]).await?;
    n += tx.execute("DELETE FROM login_failures WHERE failed_at < $1", &[&(now - crate::auth::rate_limit::WINDOW)]).await?;
    n += tx.execute("DELETE FROM mail_outbox WHERE created_at < $1", &[&(now - MAIL_KEEP)]).await?;
    Ok(n)
}

pub async fn run(pool: &Pool, now: DateTime<Utc>) -> Result<Purged, crate::rollup::RollupError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // A pooled connection may carry the stats API's statement timeout; purges may run long.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    let events = tx
        .execute(
            "DELETE FROM events e USING sites s
             WHERE e.site_id = s.id AND e.ts < $1::timestamptz - make_interval(days => s.retention_days)",
            &[&now],
        )
        .await?;
    let cutoff = now - ACCOUNT_GRACE;
    // Events have no foreign key (they are append-only and partitioned), so
    // an erased organisation's events go explicitly, before its sites.
    let organization_events = tx
        .execute(
            "DELETE FROM events e USING sites s, organizations o
             WHERE e.site_id = s.id AND s.organization_id = o.id AND o.deleted_at < $1",
            &[&cutoff],
        )
        .await?;
    // Before the organisations go: their billing records stay, reduced.
    let billing = crate::billing::store::purge(&tx, cutoff, now).await?;
    let organizations = tx.execute("DELETE FROM organizations WHERE deleted_at < $1", &[&cutoff]).await?;
    // What names an erased person outside their row: mail to them, their
    // sign-in failure counter.
    tx.execute(
        "DELETE FROM mail_outbox m USING users u WHERE u.deleted_at < $1 AND m.to_address = u.email",
        &[&cutoff],
    )
    .await?;
    tx.execute(
        "DELETE FROM login_failures f USING users u WHERE u.deleted_at < $1 AND f.key = 'account:' || u.email",
        &[&cutoff],
    )
    .await?;
    let users = tx.execute("DELETE FROM users WHERE deleted_at < $1", &[&cutoff]).await?;
    let expired_credentials = expire_credentials(&tx, now).await?;
    let audit_log = tx.execute("DELETE FROM audit_log WHERE created_at < $1", &[&(now - AUDIT_LOG_KEEP)]).await?;
    tx.commit().await?;
    let purged = Purged { events, users, organizations, organization_events, audit_log, expired_credentials, billing };
    tracing::info!(?purged, "retention done");
    Ok(purged)
}
