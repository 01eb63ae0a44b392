//! Event quotas: how much of its period's quota an organisation has used,
//! the notices at 80 % and 100 %, and the pause past the grace margin.
//!
//! The count is kept on the subscription row by the `quota` job (rollups of
//! the period's past days plus today's raw events), so the ingest reads one
//! row per site lookup, never a sum. The quota itself is read live from the
//! plan: an upgrade, or a renewal that starts a new period, lifts a pause at
//! once. A paused or cancelled subscription falls back to the default plan.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::mail::{Mail, Mailer};

/// Past 100 % the ingest keeps storing for this much more, then pauses: a
/// burst near the end of a period loses nothing while the owner reacts.
pub const GRACE_PERCENT: i64 = 10;
/// The shares of the quota at which owners are told, once per period each.
pub const NOTICE_THRESHOLDS: [i16; 2] = [80, 100];
/// Periods of subscriptions no provider renews (the trial, a cancelled one).
pub const FREE_PERIOD_DAYS: i32 = 30;

/// Where an organisation stands in its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaState {
    /// Below 80 %.
    Ok,
    /// 80 % or more.
    Warning,
    /// 100 % or more, inside the grace margin: still stored.
    Exceeded,
    /// Past the grace margin: events are refused (402) and counted as dropped.
    Paused,
}

impl QuotaState {
    pub fn of(events: i64, quota: i64) -> Self {
        // In hundredths, so no float decides a boundary.
        let used = i128::from(events) * 100;
        let quota = i128::from(quota.max(1));
        if used >= quota * i128::from(100 + GRACE_PERCENT) {
            Self::Paused
        } else if used >= quota * 100 {
            Self::Exceeded
        } else if used >= quota * 80 {
            Self::Warning
        } else {
            Self::Ok
        }
    }
}

/// The thresholds `events` has reached.
pub fn reached(events: i64, quota: i64) -> impl Iterator<Item = i16> {
    NOTICE_THRESHOLDS.into_iter().filter(move |t| i128::from(events) * 100 >= i128::from(quota.max(1)) * i128::from(*t))
}

/// The effective plan of each subscription, its quota and its counted events
/// (0 when the count belongs to an earlier period). One definition, read by
/// the billing view, the ingest's site lookup and the limits.
pub const EFFECTIVE_PLAN_SQL: &str = "
    SELECT s.organization_id, s.current_period_start, s.current_period_end, p.id AS plan_id, p.name AS plan_name,
           p.monthly_events AS quota, p.max_sites, p.max_members,
           CASE WHEN s.usage_period_start = s.current_period_start THEN s.period_events ELSE 0 END AS events
    FROM subscriptions s
    JOIN plans p ON p.id = CASE WHEN s.status IN ('paused', 'cancelled') THEN (SELECT id FROM plans WHERE is_default) ELSE s.plan_id END";

/// The events an organisation stored since `start`: whole past days from the
/// rollups (cheap), today's from raw events (the rollup has not reached them).
/// The arguments are SQL expressions: the organisation id, the period start
/// (timestamptz) and today (date). One definition for the billing view and
/// the `quota` job.
pub fn period_events_sql(org: &str, start: &str, today: &str) -> String {
    format!(
        "(coalesce((SELECT sum(r.pageviews + r.events) FROM daily_rollups r JOIN sites st ON st.id = r.site_id
                    WHERE st.organization_id = {org} AND r.dimension = '' AND r.value = ''
                      AND r.day >= ({start})::date AND r.day < {today}), 0)
          + (SELECT count(*) FROM events e JOIN sites st ON st.id = e.site_id
             WHERE st.organization_id = {org} AND e.ts >= greatest({start}, ({today})::timestamptz)))::bigint"
    )
}

/// What the `quota` job did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QuotaRun {
    /// Free or ended subscriptions moved on to the period that contains now.
    pub periods_advanced: u64,
    pub organizations_counted: u64,
    pub notices: u64,
    pub mails: u64,
    pub paused: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
}

/// The `quota` job: periods, counts, notices (mailed to owners and billing
/// members), and a drop-counter flush.
pub async fn run(
    pool: &Pool,
    mailer: &dyn Mailer,
    drops: &QuotaDrops,
    public_url: &str,
    now: DateTime<Utc>,
) -> Result<QuotaRun, QuotaError> {
    drops.flush(pool).await?;
    let db = pool.get().await?;
    let mut out = QuotaRun { periods_advanced: advance_free_periods(&**db, now).await?, ..QuotaRun::default() };
    out.organizations_counted = count_usage(&**db, now).await?;
    // Only organisations at the first threshold or past it need a look.
    let rows = db
        .query(
            &format!(
                "SELECT organization_id, current_period_start, quota, events, plan_name FROM ({EFFECTIVE_PLAN_SQL}) q
                 WHERE q.events * 100 >= q.quota * {}",
                NOTICE_THRESHOLDS[0]
            ),
            &[],
        )
        .await?;
    for row in rows {
        let (org, period_start, quota, events): (Uuid, DateTime<Utc>, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
        let plan: String = row.get(4);
        if QuotaState::of(events, quota) == QuotaState::Paused {
            out.paused += 1;
        }
        for threshold in reached(events, quota) {
            let inserted = db
                .execute(
                    "INSERT INTO quota_notices (organization_id, period_start, threshold, events, quota) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT DO NOTHING",
                    &[&org, &period_start, &threshold, &events, &quota],
                )
                .await?;
            if inserted == 0 {
                continue;
            }
            out.notices += 1;
            let recipients = db
                .query(
                    "SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id
                     WHERE m.organization_id = $1 AND m.role IN ('owner', 'billing') AND u.deleted_at IS NULL ORDER BY u.email",
                    &[&org],
                )
                .await?;
            for r in &recipients {
                mailer.send(notice_mail(r.get(0), threshold, events, quota, &plan, public_url)).await?;
            }
            let sent = recipients.len() as i32;
            db.execute(
                "UPDATE quota_notices SET mailed_to = $4 WHERE organization_id = $1 AND period_start = $2 AND threshold = $3",
                &[&org, &period_start, &threshold, &sent],
            )
            .await?;
            out.mails += recipients.len() as u64;
        }
    }
    Ok(out)
}

fn notice_mail(to: String, threshold: i16, events: i64, quota: i64, plan: &str, public_url: &str) -> Mail {
    let link = format!("{}/billing", public_url.trim_end_matches('/'));
    let (subject, what) = if threshold >= 100 {
        (
            "Your EngageTrack event quota is used up".to_owned(),
            format!(
                "Your organisation has used its {quota} events for this period on the {plan} plan ({events} so far). \
                 Events are still stored up to {GRACE_PERCENT} % beyond the quota; after that they are refused and counted \
                 as dropped until the plan is upgraded or the next period starts."
            ),
        )
    } else {
        (
            format!("Your EngageTrack events have reached {threshold} % of the quota"),
            format!("Your organisation has used {events} of its {quota} events for this period on the {plan} plan."),
        )
    };
    Mail::transactional(to, subject, format!("{what}\n\nSee your usage and change the plan: {link}\n"))
}

/// Subscriptions no provider moves along (the trial, cancelled and paused
/// ones) get the 30-day window that contains `now`, anchored at their start.
async fn advance_free_periods(db: &impl GenericClient, now: DateTime<Utc>) -> Result<u64, tokio_postgres::Error> {
    db.execute(
        "UPDATE subscriptions SET
           current_period_start = current_period_start + make_interval(days => $2::int4 * (floor(extract(epoch FROM $1::timestamptz - current_period_start) / ($2::int4 * 86400)))::int),
           current_period_end = current_period_start + make_interval(days => $2::int4 * (floor(extract(epoch FROM $1::timestamptz - current_period_start) / ($2::int4 * 86400)))::int + $2::int4),
           updated_at = now()
         WHERE status IN ('trialing', 'cancelled', 'paused') AND current_period_end <= $1::timestamptz",
        &[&now, &FREE_PERIOD_DAYS],
    )
    .await
}

/// Counts every subscription's period: whole past days from the rollups,
/// today from raw events (the rollup has not reached them yet).
async fn count_usage(db: &impl GenericClient, now: DateTime<Utc>) -> Result<u64, tokio_postgres::Error> {
    let events = period_events_sql("s2.organization_id", "s2.current_period_start", "($1::timestamptz)::date");
    db.execute(
        &format!(
            "UPDATE subscriptions s SET period_events = u.events, usage_period_start = s.current_period_start, usage_counted_at = $1::timestamptz
             FROM (SELECT s2.organization_id, {events} AS events FROM subscriptions s2) u
             WHERE u.organization_id = s.organization_id"
        ),
        &[&now],
    )
    .await
}

/// Events refused for a used-up quota, counted in memory per organisation
/// and period and added to `quota_drops` about once a second (a busy paused
/// site would otherwise write one row update per refused beacon).
#[derive(Default)]
pub struct QuotaDrops(Mutex<HashMap<(Uuid, DateTime<Utc>), i64>>);

impl QuotaDrops {
    pub fn count(&self, organization: Uuid, period_start: DateTime<Utc>, n: i64) {
        let mut pending = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *pending.entry((organization, period_start)).or_default() += n;
    }

    pub fn pending(&self) -> i64 {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().sum()
    }

    /// Writes what was counted; on failure the counts go back for the next try.
    pub async fn flush(&self, pool: &Pool) -> Result<(), QuotaError> {
        let taken: Vec<_> = std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_iter().collect();
        if taken.is_empty() {
            return Ok(());
        }
        let written = async {
            let db = pool.get().await?;
            for ((org, period), n) in &taken {
                db.execute(
                    "INSERT INTO quota_drops (organization_id, period_start, dropped) VALUES ($1, $2, $3)
                     ON CONFLICT (organization_id, period_start) DO UPDATE SET dropped = quota_drops.dropped + EXCLUDED.dropped, last_dropped_at = now()",
                    &[org, period, n],
                )
                .await?;
            }
            Ok::<(), QuotaError>(())
        }
        .await;
        if written.is_err() {
            for ((org, period), n) in taken {
                self.count(org, period, n);
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_change_exactly_at_80_100_and_110_percent() {
        assert_eq!(QuotaState::of(0, 10_000), QuotaState::Ok);
        assert_eq!(QuotaState::of(7_999, 10_000), QuotaState::Ok);
        assert_eq!(QuotaState::of(8_000, 10_000), QuotaState::Warning);
        assert_eq!(QuotaState::of(9_999, 10_000), QuotaState::Warning);
        assert_eq!(QuotaState::of(10_000, 10_000), QuotaState::Exceeded);
        assert_eq!(QuotaState::of(10_999, 10_000), QuotaState::Exceeded);
        assert_eq!(QuotaState::of(11_000, 10_000), QuotaState::Paused);
        assert_eq!(QuotaState::of(i64::MAX, i64::MAX), QuotaState::Exceeded, "no overflow");
    }

    #[test]
    fn thresholds_reached() {
        assert_eq!(reached(7_999, 10_000).collect::<Vec<_>>(), Vec::<i16>::new());
        assert_eq!(reached(8_000, 10_000).collect::<Vec<_>>(), vec![80]);
        assert_eq!(reached(12_000, 10_000).collect::<Vec<_>>(), vec![80, 100]);
    }

    #[test]
    fn the_notice_names_the_numbers_and_the_link() {
        let mail = notice_mail("o@example.com".into(), 100, 10_200, 10_000, "Free trial", "https://app.example.com/");
        assert!(mail.subject.contains("used up"), "{}", mail.subject);
        assert!(mail.body.contains("10000 events") && mail.body.contains("10200"), "{}", mail.body);
        assert!(mail.body.contains("https://app.example.com/billing"), "{}", mail.body);
        let warning = notice_mail("o@example.com".into(), 80, 8_100, 10_000, "Free trial", "http://x");
        assert!(warning.subject.contains("80 %"), "{}", warning.subject);
    }

    #[test]
    fn drops_add_up_per_organisation_and_period() {
        let drops = QuotaDrops::default();
        let (org, period) = (Uuid::new_v4(), Utc::now());
        drops.count(org, period, 2);
        drops.count(org, period, 3);
        drops.count(Uuid::new_v4(), period, 1);
        assert_eq!(drops.pending(), 6);
    }
}
