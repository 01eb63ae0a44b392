//! The salt store port and its PostgreSQL adapter. One salt per UTC day,
//! made from the OS random source, destroyed soon after its day ends
//! (privacy invariant 2). The AWS adapter (`adapters::aws::dynamodb`, with a
//! TTL attribute at [`destroy_at`]) implements the same trait.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use deadpool_postgres::Pool;
use shared::Salt;

/// How long after midnight (UTC) yesterday's salt still hashes late events.
pub const GRACE_AFTER_MIDNIGHT: Duration = Duration::hours(1);

#[derive(Debug, thiserror::Error)]
pub enum SaltError {
    #[error("salt store unavailable: {0}")]
    Unavailable(String),
    #[error("no salt exists for {0} and none may be made: it is not today or tomorrow")]
    Expired(NaiveDate),
    #[error("cannot get random bytes from the OS: {0}")]
    Random(String),
    #[error("the salt of {0} is older than 48 hours and still exists")]
    TooOld(NaiveDate),
}

#[async_trait::async_trait]
pub trait SaltStore: Send + Sync {
    /// The salt of `day`. Today's and tomorrow's are made on first use if the
    /// rotation has not made them yet; any other missing day is an error.
    async fn salt_for(&self, day: NaiveDate, now: DateTime<Utc>) -> Result<Salt, SaltError>;

    /// Makes the salts of today and tomorrow and destroys every salt whose
    /// day is over (yesterday's lives until [`GRACE_AFTER_MIDNIGHT`]).
    /// Returns the days destroyed.
    async fn rotate(&self, now: DateTime<Utc>) -> Result<Vec<NaiveDate>, SaltError>;
}

/// No salt may exist longer than this after its day starts (invariant 2).
pub const MAX_LIFETIME: Duration = Duration::hours(48);

pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// When the salt of `day` must be gone: the end of its grace hour after the
/// day (25 h after it starts, inside [`MAX_LIFETIME`]). Stores with a TTL
/// set it to this, so a salt dies even when the rotation job stops.
pub fn destroy_at(day: NaiveDate) -> DateTime<Utc> {
    (day_start(day) + Duration::days(1) + GRACE_AFTER_MIDNIGHT).min(day_start(day) + MAX_LIFETIME)
}

/// The oldest day whose salt may still exist at `now`.
pub fn oldest_live_day(now: DateTime<Utc>) -> NaiveDate {
    let today = now.date_naive();
    let since_midnight = now - today.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    if since_midnight < GRACE_AFTER_MIDNIGHT { today.pred_opt().unwrap_or(today) } else { today }
}

pub fn new_salt() -> Result<Salt, SaltError> {
    let mut bytes = [0u8; Salt::LEN];
    getrandom::fill(&mut bytes).map_err(|e| SaltError::Random(e.to_string()))?;
    Ok(Salt::from_bytes(bytes))
}

pub struct PgSaltStore {
    pool: Pool,
    /// Saves a query per event; pruned with the same rule as the table.
    cache: Mutex<HashMap<NaiveDate, Salt>>,
}

impl PgSaltStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool, cache: Mutex::new(HashMap::new()) }
    }

    fn cached(&self, day: NaiveDate, now: DateTime<Utc>) -> Option<Salt> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = oldest_live_day(now);
        cache.retain(|d, _| *d >= oldest);
        cache.get(&day).cloned()
    }

    async fn get_or_create(&self, day: NaiveDate) -> Result<Salt, SaltError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let fresh = new_salt()?;
        client
            .execute(
                "INSERT INTO salts (day, salt) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING",
                &[&day, &fresh.as_bytes().as_slice()],
            )
            .await
            .map_err(unavailable)?;
        let row = client.query_one("SELECT salt FROM salts WHERE day = $1", &[&day]).await.map_err(unavailable)?;
        Salt::try_from(row.get::<_, &[u8]>(0)).map_err(|e| SaltError::Unavailable(e.to_string()))
    }
}

fn unavailable(e: impl std::fmt::Display) -> SaltError {
    SaltError::Unavailable(e.to_string())
}

#[async_trait::async_trait]
impl SaltStore for PgSaltStore {
    async fn salt_for(&self, day: NaiveDate, now: DateTime<Utc>) -> Result<Salt, SaltError> {
        if let Some(salt) = self.cached(day, now) {
            return Ok(salt);
        }
        let today = now.date_naive();
        if day < oldest_live_day(now) || day > today + Duration::days(1) {
            return Err(SaltError::Expired(day));
        }
        let salt = if day >= today {
            self.get_or_create(day).await?
        } else {
            let client = self.pool.get().await.map_err(unavailable)?;
            let row = client.query_opt("SELECT salt FROM salts WHERE day = $1", &[&day]).await.map_err(unavailable)?;
            let row = row.ok_or(SaltError::Expired(day))?;
            Salt::try_from(row.get::<_, &[u8]>(0)).map_err(|e| SaltError::Unavailable(e.to_string()))?
        };
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(day, salt.clone());
        Ok(salt)
    }

    async fn rotate(&self, now: DateTime<Utc>) -> Result<Vec<NaiveDate>, SaltError> {
        let today = now.date_naive();
        self.get_or_create(today).await?;
        self.get_or_create(today + Duration::days(1)).await?;
        let oldest = oldest_live_day(now);
        let client = self.pool.get().await.map_err(unavailable)?;
        let rows = client
            .query("DELETE FROM salts WHERE day < $1 RETURNING day", &[&oldest])
            .await
            .map_err(unavailable)?;
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).retain(|d, _| *d >= oldest);
        // The promise is checked, not assumed: no salt may outlive 48 hours.
        let oldest_left: Option<NaiveDate> = client.query_one("SELECT min(day) FROM salts", &[]).await.map_err(unavailable)?.get(0);
        if let Some(day) = oldest_left {
            let age = now - day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
            if age > Duration::hours(48) {
                return Err(SaltError::TooOld(day));
            }
        }
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn yesterday_lives_one_hour_into_today() {
        let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 29, h, m, 0).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        assert_eq!(oldest_live_day(at(0, 0)), today.pred_opt().unwrap());
        assert_eq!(oldest_live_day(at(0, 59)), today.pred_opt().unwrap());
        assert_eq!(oldest_live_day(at(1, 0)), today);
        assert_eq!(oldest_live_day(at(23, 59)), today);
    }

    #[test]
    fn salts_are_random() {
        assert_ne!(new_salt().unwrap(), new_salt().unwrap());
    }
}
