//! DynamoDB adapters: the cloud [`SaltStore`] and the sign-in rate-limit
//! counters ([`SignInLimiter`]). Both tables carry a numeric TTL attribute
//! `expires_at` (epoch seconds). DynamoDB deletes expired items lazily (hours
//! or days late), so every read also treats an item past `expires_at` as gone.
//!
//! Tables (made by template.yaml):
//! - salts: partition key `day` (S, `YYYY-MM-DD`); `salt` (B, 32 bytes), `expires_at` (N).
//! - rate limits: partition key `key` (S), sort key `minute` (N, epoch
//!   minute); `failures` (N), `expires_at` (N).

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use shared::Salt;

use super::describe;
use crate::auth::rate_limit::{self, LoginKeys, RateLimitError, SignInLimiter, Verdict};
use crate::salt::{self, SaltError, SaltStore};

fn unavailable(e: impl std::error::Error + 'static) -> SaltError {
    SaltError::Unavailable(describe(&e))
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

/// The salt store on DynamoDB. Same rules as `PgSaltStore`: today's and
/// tomorrow's salts are made on first use with a conditional put, so two
/// Lambdas racing on a cold start agree on one salt; a salt is destroyed
/// when its day is over ([`salt::destroy_at`]), by the rotation job and,
/// should the job stop, by the table's TTL.
pub struct DynamoSaltStore {
    client: Client,
    table: String,
    /// Saves a read per event; pruned with the same rule as the table.
    cache: Mutex<HashMap<NaiveDate, Salt>>,
}

impl DynamoSaltStore {
    pub fn new(sdk: &SdkConfig, table: impl Into<String>) -> Self {
        Self { client: Client::new(sdk), table: table.into(), cache: Mutex::new(HashMap::new()) }
    }

    fn cached(&self, day: NaiveDate, now: DateTime<Utc>) -> Option<Salt> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = salt::oldest_live_day(now);
        cache.retain(|d, _| *d >= oldest);
        cache.get(&day).cloned()
    }

    /// The stored salt of `day`, unless missing or past its TTL.
    async fn read(&self, day: NaiveDate, now: DateTime<Utc>) -> Result<Option<Salt>, SaltError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("day", AttributeValue::S(day.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = answer.item else { return Ok(None) };
        if number(&item, "expires_at").is_none_or(|at| at <= now.timestamp()) {
            return Ok(None);
        }
        let bytes = item
            .get("salt")
            .and_then(|v| v.as_b().ok())
            .ok_or_else(|| SaltError::Unavailable(format!("the salt item of {day} has no `salt`")))?;
        Salt::try_from(bytes.as_ref()).map(Some).map_err(|e| SaltError::Unavailable(e.to_string()))
    }

    async fn get_or_create(&self, day: NaiveDate, now: DateTime<Utc>) -> Result<Salt, SaltError> {
        let fresh = salt::new_salt()?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("day", AttributeValue::S(day.to_string()))
            .item("salt", AttributeValue::B(Blob::new(fresh.as_bytes().to_vec())))
            .item("expires_at", AttributeValue::N(salt::destroy_at(day).timestamp().to_string()))
            .condition_expression("attribute_not_exists(#day)")
            .expression_attribute_names("#day", "day")
            .send()
            .await;
        match put {
            Ok(_) => Ok(fresh),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                // Another process made it first: everyone uses that one.
                self.read(day, now).await?.ok_or_else(|| SaltError::Unavailable(format!("the salt of {day} exists but is past its TTL")))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Every stored day, past its TTL or not (the table holds a handful).
    async fn stored_days(&self) -> Result<Vec<NaiveDate>, SaltError> {
        let mut days = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .projection_expression("#day")
                .expression_attribute_names("#day", "day")
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                if let Some(day) = item.get("day").and_then(|v| v.as_s().ok()).and_then(|s| s.parse().ok()) {
                    days.push(day);
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(days),
            }
        }
    }
}

#[async_trait::async_trait]
impl SaltStore for DynamoSaltStore {
    async fn salt_for(&self, day: NaiveDate, now: DateTime<Utc>) -> Result<Salt, SaltError> {
        if let Some(salt) = self.cached(day, now) {
            return Ok(salt);
        }
        let today = now.date_naive();
        if day < salt::oldest_live_day(now) || day > today + Duration::days(1) {
            return Err(SaltError::Expired(day));
        }
        let salt =
            if day >= today { self.get_or_create(day, now).await? } else { self.read(day, now).await?.ok_or(SaltError::Expired(day))? };
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(day, salt.clone());
        Ok(salt)
    }

    async fn rotate(&self, now: DateTime<Utc>) -> Result<Vec<NaiveDate>, SaltError> {
        let today = now.date_naive();
        self.get_or_create(today, now).await?;
        self.get_or_create(today + Duration::days(1), now).await?;
        let oldest = salt::oldest_live_day(now);
        let mut destroyed = Vec::new();
        for day in self.stored_days().await? {
            if day < oldest {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key("day", AttributeValue::S(day.to_string()))
                    .send()
                    .await
                    .map_err(unavailable)?;
                destroyed.push(day);
            }
        }
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).retain(|d, _| *d >= oldest);
        // The promise is checked, not assumed: no salt may outlive 48 hours.
        if let Some(day) = self.stored_days().await?.into_iter().min()
            && now - salt::day_start(day) > salt::MAX_LIFETIME
        {
            return Err(SaltError::TooOld(day));
        }
        destroyed.sort();
        Ok(destroyed)
    }
}

fn limiter_error(e: impl std::error::Error + 'static) -> RateLimitError {
    RateLimitError(describe(&e))
}

/// Sign-in failure counters on DynamoDB: one item per key and minute, bumped
/// with an atomic `ADD`, summed over the minutes of the window. The window
/// is thus [`rate_limit::WINDOW`] to the minute (Postgres counts to the
/// microsecond); the verdict rule is the same.
pub struct DynamoSignInLimiter {
    client: Client,
    table: String,
}

impl DynamoSignInLimiter {
    pub fn new(sdk: &SdkConfig, table: impl Into<String>) -> Self {
        Self { client: Client::new(sdk), table: table.into() }
    }

    async fn add(&self, key: &str, minute: i64, by: i64) -> Result<(), RateLimitError> {
        let expires = (minute + 1) * 60 + rate_limit::WINDOW.num_seconds();
        self.client
            .update_item()
            .table_name(&self.table)
            .key("key", AttributeValue::S(key.to_owned()))
            .key("minute", AttributeValue::N(minute.to_string()))
            .update_expression("ADD failures :by SET expires_at = :exp")
            .expression_attribute_values(":by", AttributeValue::N(by.to_string()))
            .expression_attribute_values(":exp", AttributeValue::N(expires.to_string()))
            .send()
            .await
            .map_err(limiter_error)?;
        Ok(())
    }

    /// (minute, failures) of `key` inside the window ending at `now`.
    async fn minutes(&self, key: &str, now: DateTime<Utc>) -> Result<Vec<(i64, i64)>, RateLimitError> {
        let since = minute_of(now - rate_limit::WINDOW);
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#key = :key AND #minute > :since")
                .expression_attribute_names("#key", "key")
                .expression_attribute_names("#minute", "minute")
                .expression_attribute_values(":key", AttributeValue::S(key.to_owned()))
                .expression_attribute_values(":since", AttributeValue::N(since.to_string()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(limiter_error)?;
            out.extend(page.items().iter().filter_map(|item| Some((number(item, "minute")?, number(item, "failures")?))));
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    async fn failures(&self, key: &str, now: DateTime<Utc>) -> Result<i64, RateLimitError> {
        Ok(self.minutes(key, now).await?.iter().map(|(_, n)| n).sum())
    }
}

fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

#[async_trait::async_trait]
impl SignInLimiter for DynamoSignInLimiter {
    async fn attempt(&self, keys: &LoginKeys, now: DateTime<Utc>) -> Result<Verdict, RateLimitError> {
        let minute = minute_of(now);
        self.add(keys.account(), minute, 1).await?;
        self.add(keys.ip(), minute, 1).await?;
        let account = self.failures(keys.account(), now).await?;
        let ip = self.failures(keys.ip(), now).await?;
        Ok(rate_limit::verdict(account, ip))
    }

    async fn succeeded(&self, keys: &LoginKeys, now: DateTime<Utc>) -> Result<(), RateLimitError> {
        // The account's counter restarts: every minute of it goes.
        let deletes: Vec<WriteRequest> = self
            .minutes(keys.account(), now)
            .await?
            .into_iter()
            .map(|(minute, _)| {
                let delete = DeleteRequest::builder()
                    .key("key", AttributeValue::S(keys.account().to_owned()))
                    .key("minute", AttributeValue::N(minute.to_string()))
                    .build()
                    .map_err(limiter_error)?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<_, RateLimitError>>()?;
        // A window has at most 16 minutes; one batch takes 25. What DynamoDB
        // leaves unprocessed (throttling) is sent again, a few times.
        let mut pending = deletes;
        for _ in 0..4 {
            if pending.is_empty() {
                break;
            }
            let answer = self.client.batch_write_item().request_items(&self.table, pending).send().await.map_err(limiter_error)?;
            pending = answer.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
        }
        if !pending.is_empty() {
            return Err(RateLimitError(format!("{} counter items were left unprocessed", pending.len())));
        }
        // The address keeps its other failures; only this attempt's is taken back.
        self.add(keys.ip(), minute_of(now), -1).await
    }

    async fn count_use(&self, key: &str, limit: i64, now: DateTime<Utc>) -> Result<Verdict, RateLimitError> {
        self.add(key, minute_of(now), 1).await?;
        Ok(rate_limit::within(self.failures(key, now).await?, limit))
    }
}
