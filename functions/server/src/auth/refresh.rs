//! Refresh tokens: long-lived, opaque, stored hashed, rotated on every use.
//! A sign-in starts a family; each refresh retires the presented token and
//! issues the next one of the family. A retired token presented again means
//! it was copied: the whole family is revoked, so the thief's copy and the
//! owner's current token both stop working.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::opaque::{self, OpaqueToken};

pub const REFRESH_TOKEN_TTL: Duration = Duration::days(30);

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is invalid, expired or revoked")]
    Invalid,
    #[error("the refresh token was already used; every session of this sign-in is revoked")]
    Reused { user_id: Uuid, family_id: Uuid },
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

#[derive(Debug)]
pub struct Issued {
    pub token: String,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// Starts a family for a fresh sign-in.
pub async fn start_family(db: &impl GenericClient, user_id: Uuid, user_agent: Option<&str>, now: DateTime<Utc>) -> Result<Issued, RefreshError> {
    insert(db, user_id, Uuid::new_v4(), user_agent, now).await
}

async fn insert(db: &impl GenericClient, user_id: Uuid, family_id: Uuid, user_agent: Option<&str>, now: DateTime<Utc>) -> Result<Issued, RefreshError> {
    let t = OpaqueToken::generate("etr_");
    let expires_at = now + REFRESH_TOKEN_TTL;
    let agent = user_agent.map(|a| a.chars().take(200).collect::<String>());
    db.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at, user_agent, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&t.hash, &family_id, &user_id, &expires_at, &agent, &now],
    )
    .await?;
    Ok(Issued { token: t.token, family_id, user_id, expires_at })
}

/// Retires `token` and issues its successor, in one transaction (the row
/// lock makes two concurrent uses of one token count as a reuse).
pub async fn rotate(client: &mut deadpool_postgres::Client, token: &str, now: DateTime<Utc>) -> Result<Issued, RefreshError> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT r.family_id, r.user_id, r.expires_at, r.rotated_at, r.revoked_at, r.user_agent,
                    u.locked_at IS NULL AND u.deleted_at IS NULL AS active
             FROM refresh_tokens r JOIN users u ON u.id = r.user_id
             WHERE r.token_hash = $1 FOR UPDATE OF r",
            &[&opaque::hash(token)],
        )
        .await?
        .ok_or(RefreshError::Invalid)?;
    let (family_id, user_id): (Uuid, Uuid) = (row.get(0), row.get(1));
    let expires_at: DateTime<Utc> = row.get(2);
    let rotated_at: Option<DateTime<Utc>> = row.get(3);
    let revoked_at: Option<DateTime<Utc>> = row.get(4);
    let user_agent: Option<String> = row.get(5);
    let active: bool = row.get(6);
    if revoked_at.is_some() || expires_at <= now || !active {
        return Err(RefreshError::Invalid);
    }
    if rotated_at.is_some() {
        revoke_family_in(&tx, family_id, now).await?;
        tx.commit().await?;
        return Err(RefreshError::Reused { user_id, family_id });
    }
    tx.execute("UPDATE refresh_tokens SET rotated_at = $2 WHERE token_hash = $1", &[&opaque::hash(token), &now]).await?;
    let next = insert(&tx, user_id, family_id, user_agent.as_deref(), now).await?;
    tx.commit().await?;
    Ok(next)
}

async fn revoke_family_in(db: &impl GenericClient, family_id: Uuid, now: DateTime<Utc>) -> Result<u64, tokio_postgres::Error> {
    db.execute("UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL", &[&family_id, &now]).await
}

/// Signs one session out (logout, or "end this session" in the account page).
pub async fn revoke_family(db: &impl GenericClient, user_id: Uuid, family_id: Uuid, now: DateTime<Utc>) -> Result<u64, tokio_postgres::Error> {
    db.execute(
        "UPDATE refresh_tokens SET revoked_at = $3 WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL",
        &[&family_id, &user_id, &now],
    )
    .await
}

/// Signs every session of a user out (password change or reset, account deletion).
pub async fn revoke_all(db: &impl GenericClient, user_id: Uuid, now: DateTime<Utc>) -> Result<u64, tokio_postgres::Error> {
    db.execute("UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", &[&user_id, &now]).await
}

#[derive(Debug, serde::Serialize)]
pub struct ActiveSession {
    pub id: Uuid,
    pub user_agent: Option<String>,
    pub signed_in_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub current: bool,
}

/// The user's signed-in sessions (families with a live token).
pub async fn active_sessions(db: &impl GenericClient, user_id: Uuid, current: Uuid, now: DateTime<Utc>) -> Result<Vec<ActiveSession>, tokio_postgres::Error> {
    let rows = db
        .query(
            "SELECT family_id, (array_agg(user_agent ORDER BY created_at DESC))[1], min(created_at), max(created_at)
             FROM refresh_tokens WHERE user_id = $1
             GROUP BY family_id
             HAVING bool_or(revoked_at IS NULL AND rotated_at IS NULL AND expires_at > $2) AND bool_and(revoked_at IS NULL)
             ORDER BY max(created_at) DESC",
            &[&user_id, &now],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ActiveSession { id: r.get(0), user_agent: r.get(1), signed_in_at: r.get(2), last_used_at: r.get(3), current: r.get::<_, Uuid>(0) == current })
        .collect())
}
