//! Notices to account holders: what the privacy policy promises for a
//! material change ("via email or a dashboard notification").
//!
//! The operator publishes a notice (`engagetrack notice publish`). Who it
//! concerns: every account that existed when it was published and is not
//! deleted. A newer account accepted the policy in force at sign-up, so it
//! neither sees nor is mailed notices from before. Each holder sees the
//! notice in the dashboard until they dismiss it; a material notice is also
//! mailed to each holder once, as transactional mail (a legal notice, not
//! something one opts out of). Who saw, dismissed and was mailed what is in
//! `notice_views` and `notice_mailings` (migrations/V10__notices.sql).

pub mod store;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::mail::{Mail, MailError, Mailer};

/// Holders mailed per transaction: a crash loses at most one page's work,
/// and that page's records with it, so a rerun mails exactly the rest.
pub const MAIL_PAGE: i64 = 500;

/// A notice's title: one line (it is also the mail's subject), 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeTitle(String);

/// A notice's text, plain: 1 to 20,000 characters, no NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeBody(String);

/// Where the full text lives (the policy page): an absolute http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeLink(String);

pub const TITLE_MAX: usize = 200;
pub const BODY_MAX: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeInputError {
    #[error("the title is empty")]
    EmptyTitle,
    #[error("the title is longer than {TITLE_MAX} characters")]
    TitleTooLong,
    #[error("the title must be one line of text without control characters (it is the mail's subject)")]
    TitleNotOneLine,
    #[error("the body is empty")]
    EmptyBody,
    #[error("the body is longer than {BODY_MAX} characters")]
    BodyTooLong,
    #[error("the body must not contain NUL or other control characters except line breaks and tabs")]
    BodyControl,
    #[error("the link must be an absolute http(s) URL without spaces: {0:?}")]
    BadLink(String),
}

/// `raw` trimmed, when it is not empty, at most `max` characters, and free
/// of control characters but those `allowed`; else the matching error of
/// `[empty, too long, control]`.
fn checked_text(raw: &str, max: usize, allowed: fn(char) -> bool, errors: [NoticeInputError; 3]) -> Result<String, NoticeInputError> {
    let [empty, too_long, control] = errors;
    let text = raw.trim();
    if text.is_empty() {
        Err(empty)
    } else if text.chars().count() > max {
        Err(too_long)
    } else if text.chars().any(|c| c.is_control() && !allowed(c)) {
        Err(control)
    } else {
        Ok(text.to_owned())
    }
}

impl NoticeTitle {
    /// One line: no line break or other control character survives the trim.
    pub fn parse(raw: &str) -> Result<Self, NoticeInputError> {
        use NoticeInputError::*;
        checked_text(raw, TITLE_MAX, |_| false, [EmptyTitle, TitleTooLong, TitleNotOneLine]).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl NoticeBody {
    /// Blank space around goes (a file's last newline); line breaks and tabs
    /// inside stay, since the text is shown and mailed as written.
    pub fn parse(raw: &str) -> Result<Self, NoticeInputError> {
        use NoticeInputError::*;
        checked_text(raw, BODY_MAX, |c| matches!(c, '\n' | '\r' | '\t'), [EmptyBody, BodyTooLong, BodyControl]).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl NoticeLink {
    pub fn parse(raw: &str) -> Result<Self, NoticeInputError> {
        let bad = || NoticeInputError::BadLink(raw.to_owned());
        let url = url::Url::parse(raw.trim()).map_err(|_| bad())?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() || raw.trim().contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(Self(url.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A notice as the operator asks for it, every part already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotice {
    pub title: NoticeTitle,
    pub body: NoticeBody,
    pub link: Option<NoticeLink>,
    /// Mailed to every holder as well as shown in the dashboard.
    pub material: bool,
}

impl NewNotice {
    pub fn parse(title: &str, body: &str, link: Option<&str>, material: bool) -> Result<Self, NoticeInputError> {
        Ok(Self {
            title: NoticeTitle::parse(title)?,
            body: NoticeBody::parse(body)?,
            link: link.map(NoticeLink::parse).transpose()?,
            material,
        })
    }
}

/// A published notice, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Notice {
    pub id: i64,
    pub title: String,
    /// Plain text; line breaks are the author's.
    pub body: String,
    pub link: Option<String>,
    /// A material change: it was also mailed to every account holder.
    pub material: bool,
    pub published_at: DateTime<Utc>,
}

/// A notice with what became of it, for the operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NoticeReport {
    #[serde(flatten)]
    pub notice: Notice,
    pub withdrawn_at: Option<DateTime<Utc>>,
    /// Accounts it concerns now: not deleted, made before it was published.
    pub holders: i64,
    /// Holders whose dashboard fetched it at least once.
    pub seen: i64,
    pub dismissed: i64,
    /// Holders it was queued to as mail (only material notices are mailed).
    pub mailed: i64,
}

/// What `publish` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    pub notice: Notice,
    /// The same title and body were live already (a retry): that notice is
    /// kept, and only its holders not yet mailed are mailed now.
    pub already_published: bool,
    /// Mails queued by this run.
    pub mailed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error(transparent)]
    Input(#[from] NoticeInputError),
    #[error("no notice {0}")]
    NotFound(i64),
    #[error("notice {0} has this title and body but differs in --material or --link; withdraw it first (engagetrack notice withdraw {0})")]
    Differs(i64),
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error("mail: {0}")]
    Mail(#[from] MailError),
}

/// Publishes `new` (or finds it live already), then, when it is material,
/// mails every holder not yet mailed. `public_url`: the dashboard named in
/// the mail, when known.
pub async fn publish(
    pool: &Pool,
    mailer: &dyn Mailer,
    new: &NewNotice,
    public_url: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Published, NoticeError> {
    let db = pool.get().await?;
    let (notice, already_published) = store::insert_or_find(&**db, new, now).await?;
    drop(db);
    if notice.material != new.material || notice.link.as_deref() != new.link.as_ref().map(NoticeLink::as_str) {
        return Err(NoticeError::Differs(notice.id));
    }
    let mailed = if notice.material { mail_holders(pool, mailer, &notice, public_url, MAIL_PAGE).await? } else { 0 };
    tracing::info!(notice = notice.id, already_published, mailed, material = notice.material, "notice published");
    Ok(Published { notice, already_published, mailed })
}

/// Mails `notice` to its holders not yet mailed, `page` per transaction; the
/// number queued. Safe to run again and beside another run: each page's
/// `notice_mailings` rows are inserted with the outbox rows in one
/// transaction, and a holder whose row exists (or is being inserted by the
/// other run) is skipped.
pub async fn mail_holders(
    pool: &Pool,
    mailer: &dyn Mailer,
    notice: &Notice,
    public_url: Option<&str>,
    page: i64,
) -> Result<u64, NoticeError> {
    // A page of none would never end the loop.
    let page = page.max(1);
    let mut mailed = 0;
    loop {
        let mut db = pool.get().await?;
        let tx = db.transaction().await?;
        let claimed = store::claim_recipients(&*tx, notice.id, page, Utc::now()).await?;
        for (user, email) in &claimed {
            let outbox = mailer.send_in(&tx, &notice_mail(email, notice, public_url)).await?;
            store::set_outbox(&*tx, notice.id, *user, outbox).await?;
        }
        tx.commit().await?;
        mailer.committed();
        mailed += claimed.len() as u64;
        if !claimed.is_empty() {
            tracing::info!(notice = notice.id, page = claimed.len(), mailed, "notice mail queued");
        }
        // An empty page is either the end or a page a concurrent run took
        // first (and committed, so the next look skips it).
        if claimed.is_empty() && !store::any_unmailed(&**db, notice.id).await? {
            return Ok(mailed);
        }
    }
}

/// Finishes every live material notice's mailing (a publish that crashed
/// midway): the scheduler's `notice-mail` job. The mails queued.
pub async fn mail_pending(pool: &Pool, mailer: &dyn Mailer, public_url: Option<&str>) -> Result<u64, NoticeError> {
    let pending = store::pending_mailings(&**pool.get().await?).await?;
    let mut mailed = 0;
    for notice in &pending {
        mailed += mail_holders(pool, mailer, notice, public_url, MAIL_PAGE).await?;
    }
    Ok(mailed)
}

/// The mail of a material notice: its text, its link, and why it came.
pub fn notice_mail(to: &str, notice: &Notice, public_url: Option<&str>) -> Mail {
    let mut text = format!("{}\n", notice.body);
    if let Some(link) = &notice.link {
        text.push_str(&format!("\nRead more: {link}\n"));
    }
    if let Some(url) = public_url {
        text.push_str(&format!("\nThe notice is also in your dashboard: {}/\n", url.trim_end_matches('/')));
    }
    text.push_str("\nYou receive this because you hold an EngageTrack account: notices of material changes go to every account holder.\n");
    Mail::transactional(to, format!("EngageTrack: {}", notice.title), text)
}

/// The signed-in holder's notices not dismissed yet, oldest first; each is
/// recorded as seen (the first time only).
pub async fn for_holder(pool: &Pool, user: Uuid, now: DateTime<Utc>) -> Result<Vec<Notice>, NoticeError> {
    let db = pool.get().await?;
    let notices = store::undismissed(&**db, user).await?;
    store::record_seen(&**db, user, &notices.iter().map(|n| n.id).collect::<Vec<_>>(), now).await?;
    Ok(notices)
}

/// Dismisses notice `id` for `user` (again: no change). `NotFound` when no
/// such notice concerns them; a withdrawn one may still be dismissed.
pub async fn dismiss(pool: &Pool, user: Uuid, id: i64, now: DateTime<Utc>) -> Result<(), NoticeError> {
    let db = pool.get().await?;
    if store::dismiss(&**db, user, id, now).await? { Ok(()) } else { Err(NoticeError::NotFound(id)) }
}

/// Stops showing notice `id` (and mailing it, for pages not yet queued).
pub async fn withdraw(pool: &Pool, id: i64, now: DateTime<Utc>) -> Result<NoticeReport, NoticeError> {
    let db = pool.get().await?;
    store::withdraw(&**db, id, now).await?;
    store::report(&**db, Some(id)).await?.pop().ok_or(NoticeError::NotFound(id))
}

/// Every notice, newest last, with its counts.
pub async fn list(pool: &Pool) -> Result<Vec<NoticeReport>, NoticeError> {
    Ok(store::report(&**pool.get().await?, None).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_one_trimmed_line_of_bounded_length() {
        assert_eq!(NoticeTitle::parse("  Privacy policy  ").map(|t| t.0), Ok("Privacy policy".into()));
        assert_eq!(NoticeTitle::parse(" \n "), Err(NoticeInputError::EmptyTitle));
        assert_eq!(NoticeTitle::parse("a\nb"), Err(NoticeInputError::TitleNotOneLine));
        assert_eq!(NoticeTitle::parse(&"é".repeat(TITLE_MAX)).map(|t| t.0.chars().count()), Ok(TITLE_MAX));
        assert_eq!(NoticeTitle::parse(&"x".repeat(TITLE_MAX + 1)), Err(NoticeInputError::TitleTooLong));
    }

    #[test]
    fn bodies_keep_their_lines_and_refuse_nul() {
        assert_eq!(NoticeBody::parse("\nLine one\n\nLine two\n").map(|b| b.0), Ok("Line one\n\nLine two".into()));
        assert_eq!(NoticeBody::parse("   "), Err(NoticeInputError::EmptyBody));
        assert_eq!(NoticeBody::parse("a\0b"), Err(NoticeInputError::BodyControl));
        assert_eq!(NoticeBody::parse(&"x".repeat(BODY_MAX + 1)), Err(NoticeInputError::BodyTooLong));
    }

    #[test]
    fn links_are_absolute_web_urls() {
        assert_eq!(NoticeLink::parse("https://example.com/privacy").map(|l| l.0), Ok("https://example.com/privacy".into()));
        for bad in ["/privacy", "mailto:a@example.com", "javascript:alert(1)", "https://exa mple.com/", "not a url"] {
            assert!(NoticeLink::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn the_mail_carries_the_text_the_link_and_the_reason_and_cannot_be_opted_out_of() {
        let notice = Notice {
            id: 1,
            title: "Privacy policy update".into(),
            body: "We changed section 4.".into(),
            link: Some("https://example.com/privacy".into()),
            material: true,
            published_at: Utc::now(),
        };
        let mail = notice_mail("ann@example.com", &notice, Some("https://app.example.com/"));
        assert_eq!(mail.subject, "EngageTrack: Privacy policy update");
        assert!(mail.body.starts_with("We changed section 4.\n\nRead more: https://example.com/privacy\n"), "{}", mail.body);
        assert!(mail.body.contains("dashboard: https://app.example.com/\n"), "{}", mail.body);
        assert_eq!(mail.list_unsubscribe, None);
    }
}
