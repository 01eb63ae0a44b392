//! Sign-in rate limits: failed attempts are counted per account and per
//! client address over a sliding window. The address is kept only as a keyed
//! hash, never as itself (privacy invariant: no IP addresses stored).

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};

use super::credentials::Email;

pub const WINDOW: Duration = Duration::minutes(15);
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 10;
pub const MAX_FAILURES_PER_IP: i64 = 50;

/// The two counters one sign-in attempt touches.
#[derive(Debug, Clone)]
pub struct LoginKeys {
    account: String,
    ip: String,
}

impl LoginKeys {
    pub fn new(email: &Email, ip: IpAddr, ip_hash_key: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(ip_hash_key);
        h.update(ip.to_string().as_bytes());
        Self { account: format!("account:{}", email.as_str()), ip: format!("ip:{}", hex::encode(&h.finalize()[..16])) }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Limited,
}

/// Counts this attempt as a failure *before* the (slow) password check, then
/// judges the count including it, so parallel guesses cannot all slip past a
/// check made before any of them was recorded. [`succeeded`] takes it back.
pub async fn attempt(db: &impl GenericClient, keys: &LoginKeys, now: DateTime<Utc>) -> Result<Verdict, tokio_postgres::Error> {
    record_failure(db, keys, now).await?;
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE key = $1), count(*) FILTER (WHERE key = $2)
             FROM login_failures WHERE key IN ($1, $2) AND failed_at > $3",
            &[&keys.account, &keys.ip, &(now - WINDOW)],
        )
        .await?;
    let (account, ip): (i64, i64) = (row.get(0), row.get(1));
    Ok(if account > MAX_FAILURES_PER_ACCOUNT || ip > MAX_FAILURES_PER_IP { Verdict::Limited } else { Verdict::Allowed })
}

/// The attempt was right: its provisional failure rows go, and the account's counter restarts.
pub async fn succeeded(db: &impl GenericClient, keys: &LoginKeys, now: DateTime<Utc>) -> Result<(), tokio_postgres::Error> {
    db.execute("DELETE FROM login_failures WHERE key = $1 OR (key = $2 AND failed_at = $3)", &[&keys.account, &keys.ip, &now]).await?;
    Ok(())
}

pub async fn record_failure(db: &impl GenericClient, keys: &LoginKeys, now: DateTime<Utc>) -> Result<(), tokio_postgres::Error> {
    db.execute("INSERT INTO login_failures (key, failed_at) VALUES ($1, $3), ($2, $3)", &[&keys.account, &keys.ip, &now]).await?;
    Ok(())
}
