//! Publishing to the edge: the daily salts and the site list the Cloudflare
//! worker reads from its KV namespaces `SALTS` and `SITES`.
//!
//! The port is [`EdgeKv`] (a key-value store in one of two namespaces); the
//! Cloudflare KV REST API adapter is `adapters::cloudflare_kv`, and the local
//! adapter [`LocalEdgeKv`] does nothing (a local run has no edge: beacons
//! reach `/api/e` of the server itself, which reads salts and sites from
//! PostgreSQL). The key formats live here, once; `edge-worker/src/rules.rs`
//! reads the same ones.
//!
//! - `SALTS`: `salt:YYYY-MM-DD` (UTC day) → 64 hex characters. Today's and
//!   tomorrow's are written by the rotation job with an absolute expiration
//!   (the day's end plus the grace hour, so at most 49 h after it is made), so a salt
//!   disappears from the edge by itself even if the job stops; destroyed days
//!   are deleted at once.
//! - `SITES`: `site:<uuid>` → `{"active":true|false}` for every site that is
//!   not deleted. Written on create/update, removed on delete, and rewritten
//!   whole by the `sync-edge-sites` job, which repairs any drift.
//!
//! A publish that fails is retried with backoff and logged. A site change
//! that still fails does not fail the API request that made it (the change is
//! committed; the sync job repairs the edge); a salt that cannot be published
//! fails the rotation job, so the scheduler's error alarm fires.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::Pool;
use shared::{Salt, SiteId};

use crate::salt::{GRACE_AFTER_MIDNIGHT, SaltStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeNamespace {
    Salts,
    Sites,
}

impl EdgeNamespace {
    /// The worker's binding name.
    pub fn binding(self) -> &'static str {
        match self {
            Self::Salts => "SALTS",
            Self::Sites => "SITES",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EdgePublishError {
    /// Network trouble, a 5xx or a 429: worth another try.
    #[error("the edge KV is unavailable: {0}")]
    Unavailable(String),
    /// The KV API read the request and will not take it (bad token, unknown
    /// namespace, bad value): retrying cannot help.
    #[error("the edge KV refused the request ({status}): {reason}")]
    Refused { status: u16, reason: String },
    #[error(transparent)]
    Salt(#[from] crate::salt::SaltError),
    #[error(transparent)]
    Db(#[from] crate::adapters::postgres::DbError),
}

impl EdgePublishError {
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Salt(_) | Self::Db(_))
    }
}

/// One value to write, with an optional absolute expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub key: String,
    pub value: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key-value store at the edge.
#[async_trait::async_trait]
pub trait EdgeKv: Send + Sync {
    /// `false` for the local no-op adapter: nothing is published.
    fn is_configured(&self) -> bool;
    async fn put(&self, namespace: EdgeNamespace, entry: &KvEntry) -> Result<(), EdgePublishError>;
    /// Many values in as few requests as the store allows.
    async fn put_many(&self, namespace: EdgeNamespace, entries: &[KvEntry]) -> Result<(), EdgePublishError>;
    /// Deleting a key that is not there succeeds.
    async fn delete(&self, namespace: EdgeNamespace, key: &str) -> Result<(), EdgePublishError>;
    /// Every key starting with `prefix`.
    async fn keys(&self, namespace: EdgeNamespace, prefix: &str) -> Result<Vec<String>, EdgePublishError>;
}

/// Where the Cloudflare KV REST API is and which namespaces to write; the
/// API token is the secret `cloudflare-api-token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeKvConfig {
    /// `https://api.cloudflare.com/client/v4` unless `ENGAGETRACK_CLOUDFLARE_API_URL` says otherwise.
    pub api_url: String,
    pub account_id: String,
    pub salts_namespace: String,
    pub sites_namespace: String,
}

pub const DEFAULT_CLOUDFLARE_API_URL: &str = "https://api.cloudflare.com/client/v4";
/// The secret holding the Cloudflare API token (KV read/write on the two namespaces).
pub const CLOUDFLARE_API_TOKEN: &str = "cloudflare-api-token";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("ENGAGETRACK_CF_ACCOUNT_ID is set, so {0} must be set too")]
pub struct EdgeKvConfigError(pub &'static str);

impl EdgeKvConfig {
    /// `None` (publish nothing) unless `ENGAGETRACK_CF_ACCOUNT_ID` is set;
    /// then both namespace ids are required.
    pub fn from_env() -> Result<Option<Self>, EdgeKvConfigError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let Some(account_id) = var("ENGAGETRACK_CF_ACCOUNT_ID") else { return Ok(None) };
        let required = |name: &'static str| var(name).ok_or(EdgeKvConfigError(name));
        Ok(Some(Self {
            api_url: var("ENGAGETRACK_CLOUDFLARE_API_URL").unwrap_or_else(|| DEFAULT_CLOUDFLARE_API_URL.to_owned()),
            account_id,
            salts_namespace: required("ENGAGETRACK_KV_SALTS_NAMESPACE")?,
            sites_namespace: required("ENGAGETRACK_KV_SITES_NAMESPACE")?,
        }))
    }
}

/// The local adapter: no edge, nothing to publish.
pub struct LocalEdgeKv;

#[async_trait::async_trait]
impl EdgeKv for LocalEdgeKv {
    fn is_configured(&self) -> bool {
        false
    }

    async fn put(&self, namespace: EdgeNamespace, entry: &KvEntry) -> Result<(), EdgePublishError> {
        tracing::debug!(namespace = namespace.binding(), key = %entry.key, "no edge configured; not published");
        Ok(())
    }

    async fn put_many(&self, namespace: EdgeNamespace, entries: &[KvEntry]) -> Result<(), EdgePublishError> {
        tracing::debug!(namespace = namespace.binding(), n = entries.len(), "no edge configured; not published");
        Ok(())
    }

    async fn delete(&self, namespace: EdgeNamespace, key: &str) -> Result<(), EdgePublishError> {
        tracing::debug!(namespace = namespace.binding(), key, "no edge configured; nothing to delete");
        Ok(())
    }

    async fn keys(&self, _: EdgeNamespace, _: &str) -> Result<Vec<String>, EdgePublishError> {
        Ok(Vec::new())
    }
}

pub fn salt_key(day: NaiveDate) -> String {
    format!("salt:{}", day.format("%Y-%m-%d"))
}

pub const SITE_PREFIX: &str = "site:";

pub fn site_key(site: SiteId) -> String {
    format!("{SITE_PREFIX}{site}")
}

pub fn site_value(active: bool) -> String {
    serde_json::json!({ "active": active }).to_string()
}

/// When the edge copy of `day`'s salt expires by itself: the end of the day
/// plus the grace hour the server also allows (the worker itself only ever
/// reads the current day's salt).
pub fn salt_expiry(day: NaiveDate) -> DateTime<Utc> {
    let next = day.succ_opt().unwrap_or(day);
    next.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc() + GRACE_AFTER_MIDNIGHT
}

/// Waits before each attempt: immediate, then 200 ms, 1 s, 3 s (about 4 s in
/// all, short enough to stay inside an API request).
pub const BACKOFF: [Duration; 4] =
    [Duration::ZERO, Duration::from_millis(200), Duration::from_secs(1), Duration::from_secs(3)];

/// Runs `attempt` until it succeeds, fails for good, or [`BACKOFF`] runs out;
/// every failure is logged with `what`.
pub async fn with_retry<T, F, Fut>(what: &str, backoff: &[Duration], mut attempt: F) -> Result<T, EdgePublishError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, EdgePublishError>>,
{
    let mut last = None;
    for (n, wait) in backoff.iter().enumerate() {
        if !wait.is_zero() {
            tokio::time::sleep(*wait).await;
        }
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::warn!(what, attempt = n + 1, error = %e, "edge publish failed");
                if !e.retryable() {
                    return Err(e);
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| EdgePublishError::Unavailable("no attempt made".into())))
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PublishedSalts {
    pub published: Vec<NaiveDate>,
    pub deleted: Vec<NaiveDate>,
}

/// After a rotation: puts today's and tomorrow's salts into `SALTS` and
/// deletes the days the rotation destroyed.
pub async fn publish_salts(
    kv: &dyn EdgeKv,
    salts: &dyn SaltStore,
    now: DateTime<Utc>,
    destroyed: &[NaiveDate],
    backoff: &[Duration],
) -> Result<PublishedSalts, EdgePublishError> {
    if !kv.is_configured() {
        return Ok(PublishedSalts { published: Vec::new(), deleted: Vec::new() });
    }
    let today = now.date_naive();
    let days = [today, today.succ_opt().unwrap_or(today)];
    for day in days {
        let salt: Salt = salts.salt_for(day, now).await?;
        let entry = KvEntry { key: salt_key(day), value: hex::encode(salt.as_bytes()), expires_at: Some(salt_expiry(day)) };
        with_retry(&entry.key, backoff, || kv.put(EdgeNamespace::Salts, &entry)).await?;
    }
    for day in destroyed {
        let key = salt_key(*day);
        with_retry(&key, backoff, || kv.delete(EdgeNamespace::Salts, &key)).await?;
    }
    Ok(PublishedSalts { published: days.to_vec(), deleted: destroyed.to_vec() })
}

/// A site was created or changed (`Some(active)`) or deleted (`None`): the
/// edge learns it. Never fails the caller: the change is committed already,
/// so a failure is logged and left to the sync job.
pub async fn site_changed(kv: &dyn EdgeKv, site: SiteId, active: Option<bool>) {
    if !kv.is_configured() {
        return;
    }
    let key = site_key(site);
    let result = match active {
        Some(active) => {
            let entry = KvEntry { key: key.clone(), value: site_value(active), expires_at: None };
            with_retry(&key, &BACKOFF, || kv.put(EdgeNamespace::Sites, &entry)).await
        }
        None => with_retry(&key, &BACKOFF, || kv.delete(EdgeNamespace::Sites, &key)).await,
    };
    if let Err(e) = result {
        tracing::error!(%site, error = %e, "the edge site list is out of date for this site; the sync-edge-sites job will repair it");
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncedSites {
    pub written: usize,
    pub removed: usize,
}

/// Makes `SITES` hold exactly the sites that are not deleted: writes every
/// one (so a changed `active` flag is repaired too) and removes the rest.
pub async fn sync_sites(kv: &dyn EdgeKv, pool: &Pool, backoff: &[Duration]) -> Result<SyncedSites, EdgePublishError> {
    if !kv.is_configured() {
        return Ok(SyncedSites { written: 0, removed: 0 });
    }
    let client = pool.get().await.map_err(crate::adapters::postgres::DbError::from)?;
    let rows = client
        .query("SELECT id, active FROM sites WHERE deleted_at IS NULL ORDER BY id", &[])
        .await
        .map_err(crate::adapters::postgres::DbError::from)?;
    drop(client);
    let entries: Vec<KvEntry> = rows
        .iter()
        .map(|r| KvEntry {
            key: site_key(SiteId::from_uuid(r.get(0))),
            value: site_value(r.get(1)),
            expires_at: None,
        })
        .collect();
    with_retry("site list", backoff, || kv.put_many(EdgeNamespace::Sites, &entries)).await?;
    let live: HashSet<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    let present = with_retry("site list keys", backoff, || kv.keys(EdgeNamespace::Sites, SITE_PREFIX)).await?;
    let mut removed = 0;
    for key in present.iter().filter(|k| !live.contains(k.as_str())) {
        with_retry(key, backoff, || kv.delete(EdgeNamespace::Sites, key)).await?;
        removed += 1;
    }
    Ok(SyncedSites { written: entries.len(), removed })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::TimeZone;

    use super::*;

    #[test]
    fn keys_and_values_match_the_worker() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        assert_eq!(salt_key(day), "salt:2026-12-02");
        let site = SiteId::from_uuid(uuid::Uuid::from_u128(1));
        assert_eq!(site_key(site), format!("site:{}", uuid::Uuid::from_u128(1)));
        assert_eq!(site_value(true), r#"{"active":true}"#);
    }

    #[test]
    fn a_salt_expires_at_the_grace_hour_after_its_day() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        assert_eq!(salt_expiry(day), Utc.with_ymd_and_hms(2027, 1, 1, 1, 0, 0).unwrap());
        // Tomorrow's salt, made at the earliest moment (00:00 today), lives 49 h
        // from its making but only 25 h from the start of its own day: the
        // 48 h limit of privacy invariant 2 counts from the day.
        let start_of_day = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
        assert!(salt_expiry(day) - start_of_day <= chrono::Duration::hours(48));
    }

    /// A store that fails the first `fail` calls.
    struct Flaky {
        fail: usize,
        calls: AtomicUsize,
        refused: bool,
        puts: Mutex<Vec<KvEntry>>,
    }

    #[async_trait::async_trait]
    impl EdgeKv for Flaky {
        fn is_configured(&self) -> bool {
            true
        }
        async fn put(&self, _: EdgeNamespace, entry: &KvEntry) -> Result<(), EdgePublishError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail {
                return Err(if self.refused {
                    EdgePublishError::Refused { status: 403, reason: "bad token".into() }
                } else {
                    EdgePublishError::Unavailable("down".into())
                });
            }
            self.puts.lock().unwrap().push(entry.clone());
            Ok(())
        }
        async fn put_many(&self, ns: EdgeNamespace, entries: &[KvEntry]) -> Result<(), EdgePublishError> {
            for e in entries {
                self.put(ns, e).await?;
            }
            Ok(())
        }
        async fn delete(&self, _: EdgeNamespace, _: &str) -> Result<(), EdgePublishError> {
            Ok(())
        }
        async fn keys(&self, _: EdgeNamespace, _: &str) -> Result<Vec<String>, EdgePublishError> {
            Ok(Vec::new())
        }
    }

    fn flaky(fail: usize, refused: bool) -> Flaky {
        Flaky { fail, calls: AtomicUsize::new(0), refused, puts: Mutex::new(Vec::new()) }
    }

    const FAST: [Duration; 3] = [Duration::ZERO, Duration::from_millis(1), Duration::from_millis(1)];

    #[tokio::test]
    async fn transient_failures_are_retried_and_refusals_are_not() {
        let entry = KvEntry { key: "site:x".into(), value: "{}".into(), expires_at: None };
        let kv = flaky(2, false);
        with_retry("x", &FAST, || kv.put(EdgeNamespace::Sites, &entry)).await.unwrap();
        assert_eq!(kv.calls.load(Ordering::SeqCst), 3);
        assert_eq!(kv.puts.lock().unwrap().len(), 1);

        let kv = flaky(5, false);
        let err = with_retry("x", &FAST, || kv.put(EdgeNamespace::Sites, &entry)).await.unwrap_err();
        assert!(matches!(err, EdgePublishError::Unavailable(_)));
        assert_eq!(kv.calls.load(Ordering::SeqCst), FAST.len());

        let kv = flaky(5, true);
        let err = with_retry("x", &FAST, || kv.put(EdgeNamespace::Sites, &entry)).await.unwrap_err();
        assert!(matches!(err, EdgePublishError::Refused { status: 403, .. }));
        assert_eq!(kv.calls.load(Ordering::SeqCst), 1, "a refusal is not retried");
    }

    #[tokio::test]
    async fn the_local_adapter_publishes_nothing() {
        let kv = LocalEdgeKv;
        assert!(!kv.is_configured());
        site_changed(&kv, SiteId::from_uuid(uuid::Uuid::from_u128(7)), Some(true)).await;
        assert!(kv.keys(EdgeNamespace::Sites, SITE_PREFIX).await.unwrap().is_empty());
    }
}
