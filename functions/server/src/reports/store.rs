//! The SQL of reports and alerts: the members' choices, the delivery claims,
//! and the unsubscribe. Only members whose role may view the site's stats
//! are mailed (a member demoted to `billing` stops getting numbers).

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::token::{Kind, Subscription};
use super::{Choices, Frequency, Period, SpikeThreshold};
use crate::auth::{Permission, Role};
use crate::stats::StatsSite;

/// The roles that may read stats, as `auth::roles` says, for SQL.
fn stats_roles() -> Vec<String> {
    Role::ALL.iter().filter(|r| r.allows(Permission::ViewStats)).map(|r| r.to_string()).collect()
}

/// A member subscribed to a report of a site, with the clocks that decide whether it is due.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub site_id: Uuid,
    pub site_domain: String,
    pub site_timezone: String,
    pub user_id: Uuid,
    pub email: String,
    pub weekly: bool,
    pub monthly: bool,
    /// The member's wall clock now (their timezone, else the site's).
    pub member_local: NaiveDateTime,
    /// Today in the site's timezone.
    pub site_today: NaiveDate,
}

impl Candidate {
    pub fn wants(&self, frequency: Frequency) -> bool {
        match frequency {
            Frequency::Weekly => self.weekly,
            Frequency::Monthly => self.monthly,
        }
    }

    pub fn stats_site(&self) -> StatsSite {
        StatsSite { id: shared::SiteId::from_uuid(self.site_id), timezone: self.site_timezone.clone() }
    }
}

/// Every report subscription of a member who may still read the site.
pub async fn report_candidates(db: &impl GenericClient, now: DateTime<Utc>) -> Result<Vec<Candidate>, tokio_postgres::Error> {
    let rows = db
        .query(
            "SELECT ms.site_id, s.domain, s.timezone, ms.user_id, u.email, ms.weekly, ms.monthly,
                    ($1::timestamptz AT TIME ZONE coalesce(u.timezone, s.timezone)), ($1::timestamptz AT TIME ZONE s.timezone)::date
             FROM mail_subscriptions ms
             JOIN sites s ON s.id = ms.site_id AND s.deleted_at IS NULL
             JOIN organizations o ON o.id = s.organization_id AND o.deleted_at IS NULL
             JOIN users u ON u.id = ms.user_id AND u.deleted_at IS NULL
             JOIN memberships m ON m.organization_id = s.organization_id AND m.user_id = ms.user_id AND m.role = ANY($2)
             WHERE ms.weekly OR ms.monthly
             ORDER BY ms.site_id, ms.user_id",
            &[&now, &stats_roles()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Candidate {
            site_id: r.get(0),
            site_domain: r.get(1),
            site_timezone: r.get(2),
            user_id: r.get(3),
            email: r.get(4),
            weekly: r.get(5),
            monthly: r.get(6),
            member_local: r.get(7),
            site_today: r.get(8),
        })
        .collect())
}

/// Whether this period's report was queued already (a cheap look before the
/// figures are computed; [`claim_delivery`] is what decides).
pub async fn delivered(db: &impl GenericClient, c: &Candidate, p: Period) -> Result<bool, tokio_postgres::Error> {
    let row = db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM report_deliveries WHERE site_id = $1 AND user_id = $2 AND frequency = $3 AND period_start = $4)",
            &[&c.site_id, &c.user_id, &p.frequency.as_str(), &p.start],
        )
        .await?;
    Ok(row.get(0))
}

/// Claims the delivery; `false` when another run holds it. Called in the
/// transaction that queues the mail: a second claimant waits on the first's
/// row and then finds it there, so each period is mailed once.
pub async fn claim_delivery(db: &impl GenericClient, c: &Candidate, p: Period) -> Result<bool, tokio_postgres::Error> {
    let n = db
        .execute(
            "INSERT INTO report_deliveries (site_id, user_id, frequency, period_start, period_end) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
            &[&c.site_id, &c.user_id, &p.frequency.as_str(), &p.start, &p.end],
        )
        .await?;
    Ok(n == 1)
}

/// A site at least one member wants spike alerts of.
#[derive(Debug, Clone)]
pub struct SpikeSite {
    pub id: Uuid,
    pub domain: String,
    /// Members with a threshold set.
    pub members: u64,
}

pub async fn spike_sites(db: &impl GenericClient) -> Result<Vec<SpikeSite>, tokio_postgres::Error> {
    let rows = db
        .query(
            "SELECT s.id, s.domain, count(*) FROM mail_subscriptions ms JOIN sites s ON s.id = ms.site_id AND s.deleted_at IS NULL
             WHERE ms.spike_threshold IS NOT NULL GROUP BY s.id, s.domain ORDER BY s.id",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| SpikeSite { id: r.get(0), domain: r.get(1), members: r.get::<_, i64>(2).unsigned_abs() }).collect())
}

/// A member whose alert was just claimed.
#[derive(Debug, Clone)]
pub struct Alerted {
    pub user_id: Uuid,
    pub email: String,
    pub threshold: i32,
}

/// Claims an alert for each member of the site at or below `visitors` whose
/// last alert is an hour old or more, in one statement: a concurrent run
/// blocks on the same rows, re-reads `spike_alerted_at` and claims none.
pub async fn claim_spike_alerts(
    db: &impl GenericClient,
    site: Uuid,
    visitors: i64,
    now: DateTime<Utc>,
) -> Result<Vec<Alerted>, tokio_postgres::Error> {
    let rows = db
        .query(
            "UPDATE mail_subscriptions ms SET spike_alerted_at = $3
             FROM sites s, users u, memberships m
             WHERE ms.site_id = $1 AND ms.spike_threshold <= $2::int8
               AND (ms.spike_alerted_at IS NULL OR ms.spike_alerted_at <= $3::timestamptz - interval '1 hour')
               AND s.id = ms.site_id AND u.id = ms.user_id AND u.deleted_at IS NULL
               AND m.organization_id = s.organization_id AND m.user_id = ms.user_id AND m.role = ANY($4)
             RETURNING ms.user_id, u.email, ms.spike_threshold",
            &[&site, &visitors, &now, &stats_roles()],
        )
        .await?;
    Ok(rows.iter().map(|r| Alerted { user_id: r.get(0), email: r.get(1), threshold: r.get(2) }).collect())
}

/// A member's choices for a site (all off when never set) and their own timezone.
pub async fn choices(db: &impl GenericClient, site: Uuid, user: Uuid) -> Result<(Choices, Option<String>), tokio_postgres::Error> {
    let row = db
        .query_one(
            "SELECT ms.weekly, ms.monthly, ms.spike_threshold, u.timezone FROM users u
             LEFT JOIN mail_subscriptions ms ON ms.user_id = u.id AND ms.site_id = $1 WHERE u.id = $2",
            &[&site, &user],
        )
        .await?;
    let threshold: Option<i32> = row.get(2);
    let choices = Choices {
        weekly: row.get::<_, Option<bool>>(0).unwrap_or(false),
        monthly: row.get::<_, Option<bool>>(1).unwrap_or(false),
        // The table's CHECK keeps stored values valid.
        spike_threshold: threshold.and_then(|t| SpikeThreshold::new(t.into()).ok()),
    };
    Ok((choices, row.get(3)))
}

/// Writes a member's choices for a site. Setting a threshold again (or
/// changing it) keeps the time of the last alert: the hour between alerts holds.
pub async fn save_choices(db: &impl GenericClient, site: Uuid, user: Uuid, c: Choices) -> Result<(), tokio_postgres::Error> {
    db.execute(
        "INSERT INTO mail_subscriptions (site_id, user_id, weekly, monthly, spike_threshold) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (site_id, user_id) DO UPDATE SET weekly = EXCLUDED.weekly, monthly = EXCLUDED.monthly,
             spike_threshold = EXCLUDED.spike_threshold, updated_at = now()",
        &[&site, &user, &c.weekly, &c.monthly, &c.spike_threshold.map(SpikeThreshold::get)],
    )
    .await?;
    Ok(())
}

/// The user's own timezone (a name PostgreSQL knows), or `None` to follow each site's.
pub async fn save_user_timezone(db: &impl GenericClient, user: Uuid, timezone: Option<&str>) -> Result<(), tokio_postgres::Error> {
    db.execute("UPDATE users SET timezone = $2 WHERE id = $1", &[&user, &timezone]).await?;
    Ok(())
}

/// Stops what a link names; `false` when it was already stopped (or never on).
pub async fn unsubscribe(db: &impl GenericClient, s: &Subscription) -> Result<bool, tokio_postgres::Error> {
    let set = match s.kind {
        Kind::Report(Frequency::Weekly) => "weekly = false WHERE weekly",
        Kind::Report(Frequency::Monthly) => "monthly = false WHERE monthly",
        Kind::SpikeAlert => "spike_threshold = NULL WHERE spike_threshold IS NOT NULL",
    };
    let n = db
        .execute(
            &format!("UPDATE mail_subscriptions SET updated_at = now(), {set} AND site_id = $1 AND user_id = $2"),
            &[&s.site_id, &s.user_id],
        )
        .await?;
    Ok(n == 1)
}

/// The domain of a site a link names (for the confirmation page), if it still exists.
pub async fn site_domain(db: &impl GenericClient, site: Uuid) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(db.query_opt("SELECT domain FROM sites WHERE id = $1 AND deleted_at IS NULL", &[&site]).await?.map(|r| r.get(0)))
}
