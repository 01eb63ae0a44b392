//! Sign-in rate limits: failed attempts are counted per account and per
//! client address over a sliding window. The address is kept only as a keyed
//! hash, never as itself (privacy invariant: no IP addresses stored).
//! The counters sit behind [`SignInLimiter`]: PostgreSQL locally
//! ([`PgSignInLimiter`]), DynamoDB in the cloud (`adapters::aws::dynamodb`).

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::{GenericClient, Pool};
use sha2::{Digest, Sha256};

use super::credentials::Email;

pub const WINDOW: Duration = Duration::minutes(15);
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 10;
pub const MAX_FAILURES_PER_IP: i64 = 50;
/// Sign-ups from one client address per [`WINDOW`]: each sends a mail and
/// makes an account, so a script signing up in a loop stops here.
pub const MAX_SIGN_UPS_PER_IP: i64 = 10;

/// The two counters one sign-in attempt touches.
#[derive(Debug, Clone)]
pub struct LoginKeys {
    account: String,
    ip: String,
}

impl LoginKeys {
    pub fn new(email: &Email, ip: IpAddr, ip_hash_key: &[u8]) -> Self {
        Self { account: format!("account:{}", email.as_str()), ip: address_key("ip", ip, ip_hash_key) }
    }

    /// The account's counter key.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The address's counter key (a keyed hash, never the address).
    pub fn ip(&self) -> &str {
        &self.ip
    }
}

/// The counter key of `kind` uses from a client address: a keyed hash, never the address.
fn address_key(kind: &str, ip: IpAddr, ip_hash_key: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(ip_hash_key);
    h.update(ip.to_string().as_bytes());
    format!("{kind}:{}", hex::encode(&h.finalize()[..16]))
}

/// The counter of sign-ups from this address.
pub fn sign_up_key(ip: IpAddr, ip_hash_key: &[u8]) -> String {
    address_key("signup", ip, ip_hash_key)
}

#[derive(Debug, thiserror::Error)]
#[error("the sign-in rate limiter is unavailable: {0}")]
pub struct RateLimitError(pub String);

/// Where failed sign-ins are counted. Both calls take the same `now`, so a
/// store can find the failure [`SignInLimiter::attempt`] recorded.
#[async_trait::async_trait]
pub trait SignInLimiter: Send + Sync {
    /// Counts this attempt as a failure *before* the (slow) password check,
    /// then judges the count including it, so parallel guesses cannot all
    /// slip past a check made before any of them was recorded.
    async fn attempt(&self, keys: &LoginKeys, now: DateTime<Utc>) -> Result<Verdict, RateLimitError>;
    /// The attempt was right: its provisional failure is taken back and the
    /// account's counter restarts.
    async fn succeeded(&self, keys: &LoginKeys, now: DateTime<Utc>) -> Result<(), RateLimitError>;
    /// Counts one use of `key` (a sign-up from an address, say) and judges
    /// the uses in the window, this one included, against `limit`.
    async fn count_use(&self, key: &str, limit: i64, now: DateTime<Utc>) -> Result<Verdict, RateLimitError>;
}

/// The rule every store applies to its counts (which include this attempt).
pub fn verdict(account_failures: i64, ip_failures: i64) -> Verdict {
    match (within(account_failures, MAX_FAILURES_PER_ACCOUNT), within(ip_failures, MAX_FAILURES_PER_IP)) {
        (Verdict::Allowed, Verdict::Allowed) => Verdict::Allowed,
        _ => Verdict::Limited,
    }
}

/// The local adapter: rows in `login_failures`.
pub struct PgSignInLimiter {
    pool: Pool,
}

impl PgSignInLimiter {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

fn pg_error(e: impl std::fmt::Display) -> RateLimitError {
    RateLimitError(e.to_string())
}

#[async_trait::async_trait]
impl SignInLimiter for PgSignInLimiter {
    async fn attempt(&self, keys: &LoginKeys, now: DateTime<Utc>) -> Result<Verdict, RateLimitError> {
        let db = self.pool.get().await.map_err(pg_error)?;
        attempt(&db, keys, now).await.map_err(pg_error)
    }

    async fn succeeded(&self, keys: &LoginKeys, now: DateTime<Utc>) -> Result<(), RateLimitError> {
        let db = self.pool.get().await.map_err(pg_error)?;
        succeeded(&db, keys, now).await.map_err(pg_error)
    }

    async fn count_use(&self, key: &str, limit: i64, now: DateTime<Utc>) -> Result<Verdict, RateLimitError> {
        let db = self.pool.get().await.map_err(pg_error)?;
        db.execute("INSERT INTO login_failures (key, failed_at) VALUES ($1, $2)", &[&key, &now]).await.map_err(pg_error)?;
        let uses: i64 = db
            .query_one("SELECT count(*) FROM login_failures WHERE key = $1 AND failed_at > $2", &[&key, &(now - WINDOW)])
            .await
            .map_err(pg_error)?
            .get(0);
        Ok(within(uses, limit))
    }
}

/// Uses counted with this one: over `limit` is limited.
pub fn within(uses: i64, limit: i64) -> Verdict {
    if uses > limit { Verdict::Limited } else { Verdict::Allowed }
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
    Ok(verdict(row.get(0), row.get(1)))
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
