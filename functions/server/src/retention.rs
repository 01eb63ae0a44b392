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
}

pub async fn run(pool: &Pool, now: DateTime<Utc>) -> Result<Purged, crate::rollup::RollupError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
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
    let organizations = tx.execute("DELETE FROM organizations WHERE deleted_at < $1", &[&cutoff]).await?;
    let users = tx.execute("DELETE FROM users WHERE deleted_at < $1", &[&cutoff]).await?;
    let audit_log = tx.execute("DELETE FROM audit_log WHERE created_at < $1", &[&(now - AUDIT_LOG_KEEP)]).await?;
    tx.commit().await?;
    let purged = Purged { events, users, organizations, organization_events, audit_log };
    tracing::info!(?purged, "retention done");
    Ok(purged)
}
