//! The cache port: hot Stats API answers and the "is this sign-in still live"
//! check every authenticated request makes. Redis when `ENGAGETRACK_REDIS_URL`
//! is set ([`crate::adapters::redis`]), else [`InProcessStore`].
//!
//! The rule is "slower, never wrong": a cache that is down, slow or empty only
//! sends a call down the database path, with the same answer.
//!
//! Stats answers are keyed by everything the answer is a function of,
//! including a *data version* read from the database on every call (one cheap
//! query in place of the engine's several). Any change that can change the
//! answer (a day re-rolled, a late event marking a day dirty, a goal made,
//! renamed or deleted) changes the version and so the key: no invalidation
//! hook has to be remembered, and a cache of one process is as correct as one
//! shared by all. Only answers read wholly from rollups of past days are kept;
//! today's raw part never is.
//!
//! Live sessions are cached only in a store every process shares (Redis).
//! An entry holds the user's *session generation* seen before the database
//! said "live"; every revocation writes a new random generation after its
//! commit, so an entry filled before (or while) a session was revoked no
//! longer matches and is refused at once, whatever the order of the writes.
//! A cache of one process could not see another process's revocation, so it
//! caches no session at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::stats::{self, QueryRequest, QueryResponse, StatsError, StatsSite};

/// Every key starts so; a change of the entry formats bumps the version.
const PREFIX: &str = "et:v1";

/// How long a stats answer is kept. Entries are checked against the data
/// version on every read, so this bounds memory, not staleness.
pub const STATS_TTL: Duration = Duration::from_secs(15 * 60);
/// Answers larger than this are not cached (they are rare and would crowd out the rest).
pub const MAX_STATS_ENTRY: usize = 512 * 1024;
/// How long a live-session entry is trusted: the bound for a change made
/// behind the API's back (an operator's SQL); the API's own revocations are
/// seen at once.
pub const SESSION_TTL: Duration = Duration::from_secs(30);
/// The session generation outlives every entry made under it.
const GENERATION_TTL: Duration = Duration::from_secs(3600);
/// A fill slower than this is dropped rather than risk outliving a revocation.
const MAX_FILL_DELAY: Duration = Duration::from_secs(5);
/// How long a failed revocation write is retried: past this every entry
/// it could have left behind has expired.
const REVOKE_RETRY_FOR: Duration = Duration::from_secs(2 * SESSION_TTL.as_secs());

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("the cache is unreachable: {0}")]
    Unavailable(String),
    #[error("the cache did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the cache is skipped for a moment after failing")]
    Skipped,
    #[error("the cache URL is invalid: {0}")]
    Config(String),
}

/// How hard a write should try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// A fill: dropped while the store is known to be down.
    BestEffort,
    /// A revocation: always tried.
    Invalidation,
}

/// A key-value store with expiry. Adapters return errors; the policies
/// below treat every error as a miss.
#[async_trait::async_trait]
pub trait CacheStore: Send + Sync {
    /// True when every process of the deployment sees the same entries.
    fn shared(&self) -> bool;
    /// The values of `keys`, in order; `None` where absent.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, CacheError>;
    async fn set(&self, key: &str, value: &[u8], ttl: Duration, write: Write) -> Result<(), CacheError>;
}

/// The store when no Redis is configured: this process only, bounded.
pub struct InProcessStore {
    entries: Mutex<InProcessEntries>,
    max_bytes: usize,
}

#[derive(Default)]
struct InProcessEntries {
    map: HashMap<String, (Instant, Arc<[u8]>)>,
    bytes: usize,
}

impl InProcessStore {
    pub fn new(max_bytes: usize) -> Self {
        Self { entries: Mutex::new(InProcessEntries::default()), max_bytes }
    }
}

impl Default for InProcessStore {
    fn default() -> Self {
        Self::new(64 * 1024 * 1024)
    }
}

#[async_trait::async_trait]
impl CacheStore for InProcessStore {
    fn shared(&self) -> bool {
        false
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        let entries = self.entries.lock().map_err(|_| CacheError::Unavailable("poisoned".into()))?;
        let now = Instant::now();
        Ok(keys.iter().map(|k| entries.map.get(k).filter(|(until, _)| *until > now).map(|(_, v)| v.to_vec())).collect())
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration, _write: Write) -> Result<(), CacheError> {
        if value.len() + key.len() > self.max_bytes {
            return Ok(());
        }
        let mut entries = self.entries.lock().map_err(|_| CacheError::Unavailable("poisoned".into()))?;
        let now = Instant::now();
        if let Some((_, old)) = entries.map.remove(key) {
            entries.bytes -= old.len() + key.len();
        }
        if entries.bytes + value.len() + key.len() > self.max_bytes {
            // Expired entries first, then the ones closest to expiry.
            let mut by_expiry: Vec<(Instant, String)> = entries.map.iter().map(|(k, (until, _))| (*until, k.clone())).collect();
            by_expiry.sort();
            for (until, k) in by_expiry {
                if until > now && entries.bytes + value.len() + key.len() <= self.max_bytes {
                    break;
                }
                if let Some((_, old)) = entries.map.remove(&k) {
                    entries.bytes -= old.len() + k.len();
                }
            }
        }
        entries.bytes += value.len() + key.len();
        entries.map.insert(key.to_owned(), (now + ttl, Arc::from(value)));
        Ok(())
    }
}

// ---- Stats answers ----

/// What the answer to a query is a function of, besides the query itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsVersion {
    /// "Today" in the site's timezone: relative ranges (`7d`, `month`) move with it.
    pub today_local: NaiveDate,
    /// Today in UTC: the engine never reads a rollup of it or later.
    pub today_utc: NaiveDate,
    /// A digest of the site's rollups of past days (day and when each was
    /// rolled), its days marked dirty, and its goals.
    pub data: String,
}

/// The cache key of an answer: the site in clear (to find a site's entries),
/// the rest hashed.
pub fn stats_key(site: &StatsSite, request: &QueryRequest, version: &StatsVersion) -> String {
    let mut h = Sha256::new();
    for part in [site.timezone.as_bytes(), version.today_local.to_string().as_bytes(), version.today_utc.to_string().as_bytes(), version.data.as_bytes()] {
        // Length-prefixed, so no two different tuples hash alike.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    // The request's own serialisation: every field, in one fixed order.
    h.update(serde_json::to_vec(request).unwrap_or_default());
    format!("{PREFIX}:stats:{}:{}", site.id, hex::encode(h.finalize()))
}

/// The data version of a site, in one round trip: all index reads, no sums.
pub async fn stats_version(pool: &Pool, site: &StatsSite, now: DateTime<Utc>) -> Result<StatsVersion, StatsError> {
    let client = pool.get().await?;
    let today_utc = now.date_naive();
    let row = client
        .query_one(
            "SELECT ($2::timestamptz AT TIME ZONE $3)::date,
                    (SELECT md5(coalesce(string_agg(day::text || '@' || extract(epoch FROM rolled_up_at)::text, ',' ORDER BY day), ''))
                     FROM daily_rollups WHERE site_id = $1 AND dimension = '' AND value = '' AND day < $4),
                    (SELECT md5(coalesce(string_agg(day::text || '@' || extract(epoch FROM marked_at)::text, ',' ORDER BY day), ''))
                     FROM rollup_dirty WHERE site_id = $1),
                    (SELECT md5(coalesce(string_agg(g::text, ',' ORDER BY g.id), '')) FROM goals g WHERE g.site_id = $1),
                    (SELECT md5(coalesce(string_agg(i.id::text || '@' || i.status, ',' ORDER BY i.id), '')) FROM imports i WHERE i.site_id = $1)",
            &[site.id.as_uuid(), &now, &site.timezone, &today_utc],
        )
        .await?;
    let (rollups, dirty, goals, imports): (String, String, String, String) = (row.get(1), row.get(2), row.get(3), row.get(4));
    Ok(StatsVersion { today_local: row.get(0), today_utc, data: format!("r{rollups}.d{dirty}.g{goals}.i{imports}") })
}

/// An answer as JSON: from the cache, or fresh from the engine.
#[derive(Debug)]
pub enum StatsAnswer {
    Cached(Vec<u8>),
    Fresh(QueryResponse),
}

/// [`stats::query`] through the cache. The data version is read *before*
/// the engine runs: a change committed in between makes the stored entry
/// unreachable (the next reader sees the new version), never a stale hit.
pub async fn stats_query(pool: &Pool, cache: &dyn CacheStore, site: &StatsSite, request: QueryRequest, now: DateTime<Utc>) -> Result<StatsAnswer, StatsError> {
    let key = match stats_version(pool, site, now).await {
        Ok(version) => Some(stats_key(site, &request, &version)),
        // An unknown timezone and the like: the engine says it properly.
        Err(e) => {
            tracing::debug!(error = %e, "no stats cache key");
            None
        }
    };
    if let Some(key) = &key
        && let Ok(mut found) = cache.get_many(std::slice::from_ref(key)).await
        && let Some(Some(hit)) = found.pop()
    {
        return Ok(StatsAnswer::Cached(hit));
    }
    let response = stats::query(pool, site, request, now).await?;
    // "rollups": whole past days, all rolled up and clean. Anything with a
    // raw part (today, a dirty day, a filter) is answered fresh every time.
    if let Some(key) = key
        && response.meta.source == "rollups"
        && let Ok(bytes) = serde_json::to_vec(&response)
        && bytes.len() <= MAX_STATS_ENTRY
    {
        let _ = cache.set(&key, &bytes, STATS_TTL, Write::BestEffort).await;
    }
    Ok(StatsAnswer::Fresh(response))
}

// ---- Live sessions ----

fn session_key(user: Uuid, family: Uuid) -> String {
    // `{user}` is a hash tag: a user's keys share a slot in a Redis cluster,
    // so one MGET reads the entry and the generation.
    format!("{PREFIX}:session:{{{user}}}:{family}")
}

fn generation_key(user: Uuid) -> String {
    format!("{PREFIX}:session:{{{user}}}:generation")
}

/// What the cache knows of a sign-in before the database is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionSeen {
    /// Confirmed live under the current generation: no database read needed.
    Live,
    /// Ask the database; if it says live, remember it under this generation.
    Unknown { generation: Vec<u8>, asked: Instant },
    /// The cache cannot help (not shared, or down).
    NoCache,
}

/// The generation before any revocation (or after its key expired).
const NO_GENERATION: &[u8] = b"-";

pub async fn session_lookup(cache: &dyn CacheStore, user: Uuid, family: Uuid) -> SessionSeen {
    if !cache.shared() {
        return SessionSeen::NoCache;
    }
    match cache.get_many(&[session_key(user, family), generation_key(user)]).await.as_deref() {
        Ok([entry, generation]) => {
            let generation = generation.clone().unwrap_or_else(|| NO_GENERATION.to_vec());
            match entry {
                Some(e) if *e == generation => SessionSeen::Live,
                _ => SessionSeen::Unknown { generation, asked: Instant::now() },
            }
        }
        _ => SessionSeen::NoCache,
    }
}

/// After the database said "live": remember it under the generation seen before asking.
pub async fn session_confirmed(cache: &dyn CacheStore, user: Uuid, family: Uuid, seen: SessionSeen) {
    if let SessionSeen::Unknown { generation, asked } = seen
        && asked.elapsed() < MAX_FILL_DELAY
    {
        let _ = cache.set(&session_key(user, family), &generation, SESSION_TTL, Write::BestEffort).await;
    }
}

/// Call after a commit that revoked any of the user's sessions (or locked or
/// deleted the account): every cached "live" of theirs stops counting. A
/// failed write is retried in the background for as long as an entry could
/// outlive it.
pub async fn sessions_revoked(cache: &Arc<dyn CacheStore>, user: Uuid) {
    if !cache.shared() {
        return;
    }
    let generation = Uuid::new_v4().to_string().into_bytes();
    let key = generation_key(user);
    if cache.set(&key, &generation, GENERATION_TTL, Write::Invalidation).await.is_ok() {
        return;
    }
    let cache = cache.clone();
    tokio::spawn(async move {
        let start = Instant::now();
        while start.elapsed() < REVOKE_RETRY_FOR {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if cache.set(&key, &generation, GENERATION_TTL, Write::Invalidation).await.is_ok() {
                return;
            }
        }
        tracing::warn!(%user, "could not record a session revocation in the cache; it holds no entry older than {REVOKE_RETRY_FOR:?}");
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::SiteId;

    fn site(tz: &str) -> StatsSite {
        StatsSite { id: SiteId::from_uuid(Uuid::from_u128(7)), timezone: tz.into() }
    }

    fn version(data: &str, local: u32, utc: u32) -> StatsVersion {
        StatsVersion {
            today_local: NaiveDate::from_ymd_opt(2026, 3, local).unwrap(),
            today_utc: NaiveDate::from_ymd_opt(2026, 3, utc).unwrap(),
            data: data.into(),
        }
    }

    fn request(body: serde_json::Value) -> QueryRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn a_stats_key_changes_with_every_input_and_only_then() {
        let q = request(serde_json::json!({"site_id": "example.com", "metrics": ["visitors"], "date_range": "7d"}));
        let base = stats_key(&site("UTC"), &q, &version("a", 5, 5));
        assert_eq!(base, stats_key(&site("UTC"), &q.clone(), &version("a", 5, 5)), "the same inputs, the same key");
        assert!(base.starts_with("et:v1:stats:00000000-0000-0000-0000-000000000007:"), "{base}");
        let others = [
            stats_key(&site("Europe/Berlin"), &q, &version("a", 5, 5)),
            stats_key(&site("UTC"), &q, &version("b", 5, 5)),
            stats_key(&site("UTC"), &q, &version("a", 6, 5)),
            stats_key(&site("UTC"), &q, &version("a", 5, 6)),
            stats_key(&site("UTC"), &request(serde_json::json!({"site_id": "example.com", "metrics": ["visitors"], "date_range": "30d"})), &version("a", 5, 5)),
            stats_key(&site("UTC"), &request(serde_json::json!({"site_id": "example.com", "metrics": ["visits"], "date_range": "7d"})), &version("a", 5, 5)),
            stats_key(&site("UTC"), &request(serde_json::json!({"site_id": "example.com", "metrics": ["visitors"], "date_range": "7d", "dimensions": ["visit:source"]})), &version("a", 5, 5)),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_ne!(*other, base, "input {i} must change the key");
        }
        // Field order in the body does not matter: the parsed request is hashed.
        let reordered = request(serde_json::json!({"date_range": "7d", "metrics": ["visitors"], "site_id": "example.com"}));
        assert_eq!(stats_key(&site("UTC"), &reordered, &version("a", 5, 5)), base);
        // Parts are length-prefixed: moving a character between them changes the key.
        assert_ne!(stats_key(&site("UTC"), &q, &version("ab", 5, 5)), stats_key(&site("UTCa"), &q, &version("b", 5, 5)));
    }

    #[test]
    fn session_keys_share_the_users_hash_tag() {
        let (user, family) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(session_key(user, family), format!("et:v1:session:{{{user}}}:{family}"));
        assert_eq!(generation_key(user), format!("et:v1:session:{{{user}}}:generation"));
        assert_ne!(session_key(user, family), session_key(family, user));
    }

    #[tokio::test]
    async fn the_in_process_store_expires_bounds_and_caches_no_session() {
        let store = InProcessStore::new(100);
        store.set("a", b"1234567890", Duration::from_secs(60), Write::BestEffort).await.unwrap();
        store.set("b", b"x", Duration::from_millis(1), Write::BestEffort).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let got = store.get_many(&["a".into(), "b".into(), "c".into()]).await.unwrap();
        assert_eq!(got, vec![Some(b"1234567890".to_vec()), None, None]);
        // Over the byte budget, the entries nearest to expiry go first.
        store.set("c", &[0; 60], Duration::from_secs(10), Write::BestEffort).await.unwrap();
        store.set("d", &[1; 60], Duration::from_secs(20), Write::BestEffort).await.unwrap();
        let got = store.get_many(&["a".into(), "c".into(), "d".into()]).await.unwrap();
        assert_eq!(got, vec![Some(b"1234567890".to_vec()), None, Some(vec![1; 60])]);
        assert!(store.entries.lock().unwrap().bytes <= 100);
        // Too big for the budget: not kept, not an error.
        store.set("e", &[2; 200], Duration::from_secs(20), Write::BestEffort).await.unwrap();
        assert_eq!(store.get_many(&["e".into()]).await.unwrap(), vec![None]);
        assert_eq!(session_lookup(&store, Uuid::from_u128(1), Uuid::from_u128(2)).await, SessionSeen::NoCache);
    }
}
