//! The SQL of notices (tables in migrations/V10__notices.sql). Who a notice
//! concerns is written once, as [`HOLDERS`].

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::{NewNotice, Notice, NoticeLink, NoticeReport};

/// The accounts notice `n` concerns: not deleted, made before it was published.
const HOLDERS: &str = "u.deleted_at IS NULL AND u.created_at < n.published_at";

const NOTICE_COLUMNS: &str = "n.id, n.title, n.body, n.link, n.material, n.published_at";

fn notice(row: &Row) -> Notice {
    Notice { id: row.get(0), title: row.get(1), body: row.get(2), link: row.get(3), material: row.get(4), published_at: row.get(5) }
}

/// Inserts the notice, or finds the live one with the same title and body:
/// the notice and whether it was there already.
pub async fn insert_or_find(db: &impl GenericClient, new: &NewNotice, now: DateTime<Utc>) -> Result<(Notice, bool), tokio_postgres::Error> {
    let inserted = db
        .query_opt(
            &format!(
                "INSERT INTO notices AS n (title, body, link, material, published_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (title, md5(body)) WHERE withdrawn_at IS NULL DO NOTHING
                 RETURNING {NOTICE_COLUMNS}"
            ),
            &[&new.title.as_str(), &new.body.as_str(), &new.link.as_ref().map(NoticeLink::as_str), &new.material, &now],
        )
        .await?;
    if let Some(row) = inserted {
        return Ok((notice(&row), false));
    }
    let row = db
        .query_one(
            &format!("SELECT {NOTICE_COLUMNS} FROM notices n WHERE n.title = $1 AND md5(n.body) = md5($2) AND n.withdrawn_at IS NULL"),
            &[&new.title.as_str(), &new.body.as_str()],
        )
        .await?;
    Ok((notice(&row), true))
}

/// Records up to `limit` holders of a live material notice as mailed now
/// (those without a record yet, in id order): their ids and addresses. A
/// holder another transaction is recording meanwhile is left to it (the key
/// conflict waits for it, then skips).
pub async fn claim_recipients(
    db: &impl GenericClient,
    notice_id: i64,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Vec<(Uuid, String)>, tokio_postgres::Error> {
    let rows = db
        .query(
            &format!(
                "WITH claimed AS (
                    INSERT INTO notice_mailings (notice_id, user_id, mailed_at)
                    SELECT n.id, u.id, $3 FROM notices n JOIN users u ON {HOLDERS}
                    WHERE n.id = $1 AND n.material AND n.withdrawn_at IS NULL
                      AND NOT EXISTS (SELECT 1 FROM notice_mailings m WHERE m.notice_id = n.id AND m.user_id = u.id)
                    ORDER BY u.id LIMIT $2
                    ON CONFLICT DO NOTHING
                    RETURNING user_id)
                 SELECT u.id, u.email FROM claimed c JOIN users u ON u.id = c.user_id ORDER BY u.id"
            ),
            &[&notice_id, &limit, &now],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn set_outbox(db: &impl GenericClient, notice_id: i64, user: Uuid, outbox_id: i64) -> Result<(), tokio_postgres::Error> {
    db.execute("UPDATE notice_mailings SET outbox_id = $3 WHERE notice_id = $1 AND user_id = $2", &[&notice_id, &user, &outbox_id]).await?;
    Ok(())
}

/// Whether a live material notice has holders not recorded as mailed.
pub async fn any_unmailed(db: &impl GenericClient, notice_id: i64) -> Result<bool, tokio_postgres::Error> {
    let row = db
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM notices n JOIN users u ON {HOLDERS}
                 WHERE n.id = $1 AND n.material AND n.withdrawn_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM notice_mailings m WHERE m.notice_id = n.id AND m.user_id = u.id))"
            ),
            &[&notice_id],
        )
        .await?;
    Ok(row.get(0))
}

/// Live material notices with holders not mailed yet.
pub async fn pending_mailings(db: &impl GenericClient) -> Result<Vec<Notice>, tokio_postgres::Error> {
    let rows = db
        .query(
            &format!(
                "SELECT {NOTICE_COLUMNS} FROM notices n
                 WHERE n.material AND n.withdrawn_at IS NULL
                   AND EXISTS (SELECT 1 FROM users u WHERE {HOLDERS}
                     AND NOT EXISTS (SELECT 1 FROM notice_mailings m WHERE m.notice_id = n.id AND m.user_id = u.id))
                 ORDER BY n.id"
            ),
            &[],
        )
        .await?;
    Ok(rows.iter().map(notice).collect())
}

/// The live notices concerning `user` that they have not dismissed, oldest first.
pub async fn undismissed(db: &impl GenericClient, user: Uuid) -> Result<Vec<Notice>, tokio_postgres::Error> {
    let rows = db
        .query(
            &format!(
                "SELECT {NOTICE_COLUMNS} FROM notices n JOIN users u ON u.id = $1 AND {HOLDERS}
                 WHERE n.withdrawn_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM notice_views v WHERE v.notice_id = n.id AND v.user_id = u.id AND v.dismissed_at IS NOT NULL)
                 ORDER BY n.published_at, n.id"
            ),
            &[&user],
        )
        .await?;
    Ok(rows.iter().map(notice).collect())
}

/// The first time `user` was shown each notice; later showings change nothing.
pub async fn record_seen(db: &impl GenericClient, user: Uuid, notices: &[i64], now: DateTime<Utc>) -> Result<(), tokio_postgres::Error> {
    if notices.is_empty() {
        return Ok(());
    }
    db.execute(
        "INSERT INTO notice_views (notice_id, user_id, first_seen_at) SELECT unnest($1::bigint[]), $2, $3 ON CONFLICT DO NOTHING",
        &[&notices, &user, &now],
    )
    .await?;
    Ok(())
}

/// Marks notice `id` dismissed by `user` (keeping the first time);
/// `false` when no such notice concerns them.
pub async fn dismiss(db: &impl GenericClient, user: Uuid, id: i64, now: DateTime<Utc>) -> Result<bool, tokio_postgres::Error> {
    let n = db
        .execute(
            &format!(
                "INSERT INTO notice_views (notice_id, user_id, first_seen_at, dismissed_at)
                 SELECT n.id, u.id, $3, $3 FROM notices n JOIN users u ON u.id = $1 AND {HOLDERS} WHERE n.id = $2
                 ON CONFLICT (notice_id, user_id) DO UPDATE SET dismissed_at = COALESCE(notice_views.dismissed_at, EXCLUDED.dismissed_at)"
            ),
            &[&user, &id, &now],
        )
        .await?;
    Ok(n == 1)
}

/// Sets `withdrawn_at` (once); a notice withdrawn already keeps its time.
pub async fn withdraw(db: &impl GenericClient, id: i64, now: DateTime<Utc>) -> Result<(), tokio_postgres::Error> {
    db.execute("UPDATE notices SET withdrawn_at = COALESCE(withdrawn_at, $2) WHERE id = $1", &[&id, &now]).await?;
    Ok(())
}

/// Notices (all, or the one `id`) with their counts, in publishing order.
pub async fn report(db: &impl GenericClient, id: Option<i64>) -> Result<Vec<NoticeReport>, tokio_postgres::Error> {
    let rows = db
        .query(
            &format!(
                "SELECT {NOTICE_COLUMNS}, n.withdrawn_at,
                    (SELECT count(*) FROM users u WHERE {HOLDERS}),
                    (SELECT count(*) FROM notice_views v WHERE v.notice_id = n.id),
                    (SELECT count(*) FROM notice_views v WHERE v.notice_id = n.id AND v.dismissed_at IS NOT NULL),
                    (SELECT count(*) FROM notice_mailings m WHERE m.notice_id = n.id)
                 FROM notices n WHERE $1::bigint IS NULL OR n.id = $1 ORDER BY n.id"
            ),
            &[&id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| NoticeReport {
            notice: notice(r),
            withdrawn_at: r.get(6),
            holders: r.get(7),
            seen: r.get(8),
            dismissed: r.get(9),
            mailed: r.get(10),
        })
        .collect())
}
