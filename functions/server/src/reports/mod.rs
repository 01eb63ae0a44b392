//! Email reports and traffic-spike alerts, opted into per site by members of
//! its organisation (`mail_subscriptions`).
//!
//! - Reports: weekly (the previous Monday–Sunday) and monthly (the previous
//!   calendar month), in the site's timezone, due from [`SEND_FROM_HOUR`] on
//!   the member's local Monday / first of the month. The figures are Stats
//!   API answers ([`figures`]), so they equal what the API gives. A row in
//!   `report_deliveries`, inserted in the transaction that queues the mail,
//!   makes each (site, member, frequency, period) one mail however often the
//!   job runs.
//! - Alerts: when the realtime view's current visitors reach the member's
//!   threshold; at most one per hour per (site, member), claimed in SQL.
//!
//! Every mail carries a signed one-click unsubscribe link ([`token`]).

pub mod figures;
pub mod render;
pub mod store;
pub mod token;

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, NaiveDateTime, Timelike, Utc, Weekday};
use deadpool_postgres::Pool;

use crate::mail::{Mail, MailError, Mailer, Unsubscribe};
use token::{LinkKey, Subscription};

/// Reports go out from this local hour of the due day.
pub const SEND_FROM_HOUR: u32 = 7;
/// Reports one `send-reports` run queues at most (the next run takes the rest).
pub const REPORTS_PER_RUN: usize = 500;
/// Rows in each top list of a report.
pub const TOP_ROWS: u64 = 5;
/// Largest spike threshold the settings take.
pub const MAX_SPIKE_THRESHOLD: i32 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    Weekly,
    Monthly,
}

impl Frequency {
    pub const ALL: [Frequency; 2] = [Frequency::Weekly, Frequency::Monthly];

    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Weekly => "weekly",
            Frequency::Monthly => "monthly",
        }
    }
}

/// Whole local days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Period {
    pub frequency: Frequency,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Period {
    /// The last whole period that ended before `day`'s own period began.
    pub fn before(frequency: Frequency, day: NaiveDate) -> Self {
        match frequency {
            Frequency::Weekly => {
                let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
                Self { frequency, start: monday - Duration::days(7), end: monday - Duration::days(1) }
            }
            Frequency::Monthly => {
                let first = day.with_day(1).unwrap_or(day);
                let start = first.checked_sub_months(Months::new(1)).unwrap_or(first);
                Self { frequency, start, end: first - Duration::days(1) }
            }
        }
    }

    /// The period just before this one, for the changes.
    pub fn previous(&self) -> Self {
        Self::before(self.frequency, self.start)
    }

    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }

    /// "24 Nov – 30 Nov 2025" / "November 2025".
    pub fn label(&self) -> String {
        match self.frequency {
            Frequency::Weekly => format!("{} – {}", self.start.format("%-d %b"), self.end.format("%-d %b %Y")),
            Frequency::Monthly => self.start.format("%B %Y").to_string(),
        }
    }
}

/// The report due now, if any. `member_local` is the member's wall clock,
/// `site_today` the site's date. A report is due from [`SEND_FROM_HOUR`] on
/// the member's Monday (first of the month) to the end of the day after, a
/// catch-up for runs missed; and only once the period is over in the site's
/// timezone too (a member far east of the site would otherwise get a week
/// whose Sunday has not ended there).
pub fn due(frequency: Frequency, member_local: NaiveDateTime, site_today: NaiveDate) -> Option<Period> {
    let day = member_local.date();
    let (first_day, second_day) = match frequency {
        Frequency::Weekly => (day.weekday() == Weekday::Mon, day.weekday() == Weekday::Tue),
        Frequency::Monthly => (day.day() == 1, day.day() == 2),
    };
    let in_window = (first_day && member_local.hour() >= SEND_FROM_HOUR) || second_day;
    let period = Period::before(frequency, day);
    (in_window && site_today > period.end).then_some(period)
}

/// A threshold as the settings take it: 1 to [`MAX_SPIKE_THRESHOLD`] visitors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SpikeThreshold(i32);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`spike_threshold` must be 1 to {MAX_SPIKE_THRESHOLD} current visitors, or null for no alerts (got {0})")]
pub struct ThresholdError(pub i64);

impl SpikeThreshold {
    pub fn new(visitors: i64) -> Result<Self, ThresholdError> {
        i32::try_from(visitors).ok().filter(|v| (1..=MAX_SPIKE_THRESHOLD).contains(v)).map(Self).ok_or(ThresholdError(visitors))
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// A member's choices for one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Choices {
    pub weekly: bool,
    pub monthly: bool,
    pub spike_threshold: Option<SpikeThreshold>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error("stats: {0}")]
    Stats(#[from] crate::stats::StatsError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Link(#[from] token::TokenError),
    #[error("the unsubscribe link is not a valid URL: {0}")]
    Unsubscribe(#[from] crate::mail::UnsubscribeError),
}

/// What a `send-reports` or `spike-alerts` run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Run {
    /// Subscriptions looked at.
    pub checked: u64,
    /// Mails queued.
    pub queued: u64,
    /// Due, but another run had queued it already.
    pub already_sent: u64,
}

/// What a reports or alerts run mails with.
#[derive(Clone, Copy)]
pub struct Post<'a> {
    pub pool: &'a Pool,
    pub mailer: &'a dyn Mailer,
    /// `None` without `mail-link-key`: a run fails only when it has mail to send.
    pub key: Option<&'a LinkKey>,
    /// Where links in the mail point.
    pub public_url: &'a str,
}

impl Post<'_> {
    /// The one-click link of a subscription.
    pub fn unsubscribe_link(&self, subscription: &Subscription) -> Result<Unsubscribe, ReportError> {
        let key = self.key.ok_or(token::TokenError::NoKey)?;
        let url = format!("{}/api/unsubscribe?token={}", self.public_url.trim_end_matches('/'), key.sign(subscription));
        Ok(Unsubscribe::new(&url)?)
    }

    /// An optional mail to `to` about `subscription`; `render` makes its
    /// (text, HTML) from the unsubscribe link.
    fn mail(
        &self,
        to: &str,
        subject: String,
        subscription: Subscription,
        render: impl FnOnce(&str) -> (String, String),
    ) -> Result<Mail, ReportError> {
        let link = self.unsubscribe_link(&subscription)?;
        let (text, html) = render(link.as_str());
        Ok(Mail::optional_with_html(to, subject, text, html, link))
    }
}

/// What became of one due report.
enum Sent {
    Queued,
    AlreadySent,
}

/// The `send-reports` job: every due report not yet queued, queued once. A
/// report that fails (its site's stats, say) is logged and the others still
/// go; the run then fails with the first error, so the scheduler alarms.
pub async fn send_reports(post: Post<'_>, now: DateTime<Utc>) -> Result<Run, ReportError> {
    let mut run = Run::default();
    // One site's report is the same for each of its members: computed once a run.
    let mut reports: HashMap<(uuid::Uuid, Period), figures::Report> = HashMap::new();
    let mut first_error = None;
    let candidates = store::report_candidates(&**post.pool.get().await?, now).await?;
    for c in candidates {
        run.checked += 1;
        if run.queued as usize >= REPORTS_PER_RUN {
            break;
        }
        for frequency in Frequency::ALL {
            let Some(period) = due(frequency, c.member_local, c.site_today).filter(|_| c.wants(frequency)) else { continue };
            match send_report(post, &c, period, &mut reports, now).await {
                Ok(Sent::Queued) => run.queued += 1,
                Ok(Sent::AlreadySent) => run.already_sent += 1,
                Err(e) => {
                    tracing::error!(site = %c.site_id, frequency = frequency.as_str(), error = %e, "a report could not be queued");
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    first_error.map_or(Ok(run), Err)
}

async fn send_report(
    post: Post<'_>,
    c: &store::Candidate,
    period: Period,
    reports: &mut HashMap<(uuid::Uuid, Period), figures::Report>,
    now: DateTime<Utc>,
) -> Result<Sent, ReportError> {
    if store::delivered(&**post.pool.get().await?, c, period).await? {
        return Ok(Sent::AlreadySent);
    }
    // Computed outside the claiming transaction: stats reads may take seconds.
    let report = match reports.entry((c.site_id, period)) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => e.insert(figures::report(post.pool, &c.stats_site(), period, now).await?),
    };
    let subscription = Subscription { site_id: c.site_id, user_id: c.user_id, kind: token::Kind::Report(period.frequency) };
    let subject = format!("{} {} report for {}", period.label(), period.frequency.as_str(), c.site_domain);
    let mail = post.mail(&c.email, subject, subscription, |link| render::report(&c.site_domain, report, post.public_url, link))?;
    let mut db = post.pool.get().await?;
    let tx = db.transaction().await?;
    if !store::claim_delivery(&*tx, c, period).await? {
        return Ok(Sent::AlreadySent);
    }
    post.mailer.send_in(&tx, &mail).await?;
    tx.commit().await?;
    post.mailer.committed();
    Ok(Sent::Queued)
}

/// The `spike-alerts` job: for each site with a threshold set, its current
/// visitors; an alert to each member at or past their threshold whose last
/// alert is an hour old or more, claimed and queued in one transaction.
pub async fn send_spike_alerts(post: Post<'_>, now: DateTime<Utc>) -> Result<Run, ReportError> {
    let mut run = Run::default();
    let mut first_error = None;
    for site in store::spike_sites(&**post.pool.get().await?).await? {
        run.checked += site.members;
        match alert_site(post, &site, now).await {
            Ok(queued) => run.queued += queued,
            Err(e) => {
                tracing::error!(site = %site.id, error = %e, "spike alerts could not be queued");
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(run), Err)
}

/// One site's alerts; the claims and the mail commit together or not at all.
async fn alert_site(post: Post<'_>, site: &store::SpikeSite, now: DateTime<Utc>) -> Result<u64, ReportError> {
    let visitors = crate::stats::current_visitors(post.pool, shared::SiteId::from_uuid(site.id), now).await?;
    let mut db = post.pool.get().await?;
    let tx = db.transaction().await?;
    let claimed = store::claim_spike_alerts(&*tx, site.id, visitors, now).await?;
    for member in &claimed {
        let subscription = Subscription { site_id: site.id, user_id: member.user_id, kind: token::Kind::SpikeAlert };
        let subject = format!("Traffic spike on {}: {visitors} visitors now", site.domain);
        let mail = post.mail(&member.email, subject, subscription, |link| {
            render::spike(&site.domain, visitors, member.threshold, post.public_url, link)
        })?;
        post.mailer.send_in(&tx, &mail).await?;
    }
    tx.commit().await?;
    if !claimed.is_empty() {
        post.mailer.committed();
    }
    Ok(claimed.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("a date")
    }

    fn at(y: i32, m: u32, day: u32, h: u32) -> NaiveDateTime {
        d(y, m, day).and_hms_opt(h, 0, 0).expect("a time")
    }

    #[test]
    fn weekly_is_the_previous_monday_to_sunday_from_seven_on_monday() {
        // Monday 2026-03-30, after Europe's change to summer time on Sunday 29 March:
        // the week is still seven local days (167 hours there), Monday to Sunday.
        let week = Period { frequency: Frequency::Weekly, start: d(2026, 3, 23), end: d(2026, 3, 29) };
        assert_eq!(due(Frequency::Weekly, at(2026, 3, 30, 7), d(2026, 3, 30)), Some(week));
        assert_eq!(week.days(), 7);
        assert_eq!(due(Frequency::Weekly, at(2026, 3, 30, 6), d(2026, 3, 30)), None, "before 07:00");
        assert_eq!(due(Frequency::Weekly, at(2026, 3, 31, 23), d(2026, 3, 31)), Some(week), "Tuesday catches up");
        assert_eq!(due(Frequency::Weekly, at(2026, 4, 1, 9), d(2026, 4, 1)), None, "Wednesday is too late");
        assert_eq!(due(Frequency::Weekly, at(2026, 3, 29, 12), d(2026, 3, 29)), None, "Sunday");
        // The site's Sunday is not over yet (a member far east of it).
        assert_eq!(due(Frequency::Weekly, at(2026, 3, 30, 8), d(2026, 3, 29)), None);
        // The autumn change (25 October 2026) makes a 169-hour week, still 7 days.
        let autumn = due(Frequency::Weekly, at(2026, 10, 26, 7), d(2026, 10, 26)).expect("due");
        assert_eq!((autumn.start, autumn.end), (d(2026, 10, 19), d(2026, 10, 25)));
        assert_eq!(autumn.previous(), Period { frequency: Frequency::Weekly, start: d(2026, 10, 12), end: d(2026, 10, 18) });
        // Across a year end.
        let new_year = due(Frequency::Weekly, at(2027, 1, 4, 10), d(2027, 1, 4)).expect("due");
        assert_eq!((new_year.start, new_year.end), (d(2026, 12, 28), d(2027, 1, 3)));
    }

    #[test]
    fn monthly_is_the_previous_calendar_month_from_the_first() {
        let feb = due(Frequency::Monthly, at(2028, 3, 1, 7), d(2028, 3, 1)).expect("due");
        assert_eq!((feb.start, feb.end, feb.days()), (d(2028, 2, 1), d(2028, 2, 29), 29), "a leap February");
        assert_eq!(feb.previous(), Period { frequency: Frequency::Monthly, start: d(2028, 1, 1), end: d(2028, 1, 31) });
        let dec = due(Frequency::Monthly, at(2027, 1, 2, 0), d(2027, 1, 2)).expect("the 2nd catches up");
        assert_eq!((dec.start, dec.end), (d(2026, 12, 1), d(2026, 12, 31)));
        assert_eq!(dec.previous().start, d(2026, 11, 1));
        assert_eq!(dec.previous().end, d(2026, 11, 30));
        assert_eq!(due(Frequency::Monthly, at(2027, 1, 1, 6), d(2027, 1, 1)), None, "before 07:00");
        assert_eq!(due(Frequency::Monthly, at(2027, 1, 3, 9), d(2027, 1, 3)), None);
        assert_eq!(due(Frequency::Monthly, at(2027, 1, 1, 9), d(2026, 12, 31)), None, "December not over at the site");
        // A month whose length differs from the one before (March 31 days, February 28).
        let march = Period::before(Frequency::Monthly, d(2027, 4, 15));
        assert_eq!((march.start, march.end, march.previous().end), (d(2027, 3, 1), d(2027, 3, 31), d(2027, 2, 28)));
        assert_eq!(march.label(), "March 2027");
    }

    #[test]
    fn thresholds_are_positive_and_bounded() {
        assert_eq!(SpikeThreshold::new(1).map(SpikeThreshold::get), Ok(1));
        assert_eq!(SpikeThreshold::new(1_000_000).map(SpikeThreshold::get), Ok(1_000_000));
        for bad in [0, -5, 1_000_001, i64::MAX] {
            assert_eq!(SpikeThreshold::new(bad), Err(ThresholdError(bad)));
        }
    }
}
