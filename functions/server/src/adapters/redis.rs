//! Redis (ElastiCache) adapter of the cache port ([`crate::cache::CacheStore`]).
//!
//! Every command has a short deadline; a failure opens a breaker for
//! [`BREAKER_OPEN`] so that a Redis that is down costs the requests of that
//! moment nothing (they go straight to the database), then the next command
//! tries again, and the connection manager reconnects. Warnings are rate
//! limited: one per [`WARN_EVERY`] while Redis stays away, one note when it
//! is back.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::cache::{CacheError, CacheStore, Write};

/// What one command may take, connecting included.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(150);
/// How long Redis is skipped after a failure.
pub const BREAKER_OPEN: Duration = Duration::from_millis(500);
const WARN_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Health {
    skip_until: Option<Instant>,
    last_warning: Option<Instant>,
    down: bool,
}

/// Where the shared cache is: `ENGAGETRACK_REDIS_URL`, and for `rediss://`
/// with a private CA, `ENGAGETRACK_REDIS_CA_FILE` (PEM). Without a CA file a
/// `rediss://` server is verified against the public roots (ElastiCache's
/// certificates chain to Amazon's public roots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub url: String,
    pub ca_file: Option<PathBuf>,
}

impl RedisSettings {
    pub fn url(url: impl Into<String>) -> Self {
        Self { url: url.into(), ca_file: None }
    }

    /// None when no URL is set: the cache is then this process's own.
    pub fn from_env() -> Option<Self> {
        let var = |name| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        Some(Self { url: var("ENGAGETRACK_REDIS_URL")?, ca_file: var("ENGAGETRACK_REDIS_CA_FILE").map(PathBuf::from) })
    }

    fn encrypted(&self) -> bool {
        self.url.starts_with("rediss://")
    }

    fn client(&self) -> Result<::redis::Client, CacheError> {
        let invalid = |e: ::redis::RedisError| CacheError::Config(e.to_string());
        if !self.encrypted() {
            if self.ca_file.is_some() {
                return Err(CacheError::Config(
                    "ENGAGETRACK_REDIS_CA_FILE is set but the URL is redis:// (plaintext); use rediss://".into(),
                ));
            }
            return ::redis::Client::open(self.url.as_str()).map_err(invalid);
        }
        // The tree's rustls carries ring only; say so once for the process
        // (a provider already installed is as good).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let Some(path) = &self.ca_file else {
            return ::redis::Client::open(self.url.as_str()).map_err(invalid);
        };
        let pem = std::fs::read(path)
            .map_err(|e| CacheError::Config(format!("cannot read ENGAGETRACK_REDIS_CA_FILE {}: {e}", path.display())))?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(CacheError::Config(format!("ENGAGETRACK_REDIS_CA_FILE {} holds no PEM certificate", path.display())));
        }
        let certificates = ::redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
        ::redis::Client::build_with_tls(self.url.as_str(), certificates).map_err(invalid)
    }
}

pub struct RedisCache {
    connection: ConnectionManager,
    health: Mutex<Health>,
}

impl RedisCache {
    /// Parses the URL (`redis[s]://[[user]:password@]host[:port][/db]`) and
    /// prepares a connection made on first use: a Redis that is away at
    /// start-up delays nothing and fails nothing. A `rediss://` server whose
    /// certificate does not verify is a failed connection, never plaintext.
    pub fn connect_lazily(settings: &RedisSettings) -> Result<Self, CacheError> {
        let client = settings.client()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            // Reconnecting is the breaker's rhythm, not the manager's retries.
            .set_number_of_retries(0);
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(|e| CacheError::Config(e.to_string()))?;
        Ok(Self { connection, health: Mutex::new(Health::default()) })
    }

    fn skipping(&self) -> bool {
        self.health.lock().map(|h| h.skip_until.is_some_and(|t| Instant::now() < t)).unwrap_or(false)
    }

    fn succeeded(&self) {
        if let Ok(mut h) = self.health.lock()
            && h.down
        {
            *h = Health::default();
            tracing::info!("Redis answers again; the cache is back in use");
        }
    }

    fn failed(&self, error: &CacheError) {
        let Ok(mut h) = self.health.lock() else {
            return;
        };
        let now = Instant::now();
        h.down = true;
        h.skip_until = Some(now + BREAKER_OPEN);
        if h.last_warning.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
            h.last_warning = Some(now);
            tracing::warn!(%error, "Redis is unavailable; answering from the database until it is back");
        }
    }

    async fn run<T: ::redis::FromRedisValue>(&self, cmd: &::redis::Cmd, write: Write) -> Result<T, CacheError> {
        if write == Write::BestEffort && self.skipping() {
            return Err(CacheError::Skipped);
        }
        let mut connection = self.connection.clone();
        let result = match tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async::<T>(&mut connection)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CacheError::Unavailable(e.to_string())),
            Err(_) => Err(CacheError::Timeout(COMMAND_TIMEOUT)),
        };
        match &result {
            Ok(_) => self.succeeded(),
            Err(e) => self.failed(e),
        }
        result
    }
}

#[async_trait::async_trait]
impl CacheStore for RedisCache {
    fn shared(&self) -> bool {
        true
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        let values: Vec<Option<Vec<u8>>> = self.run(::redis::cmd("MGET").arg(keys), Write::BestEffort).await?;
        if values.len() != keys.len() {
            return Err(CacheError::Unavailable(format!("MGET of {} keys answered {} values", keys.len(), values.len())));
        }
        Ok(values)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration, write: Write) -> Result<(), CacheError> {
        let millis = ttl.as_millis().max(1) as u64;
        self.run::<()>(::redis::cmd("SET").arg(key).arg(value).arg("PX").arg(millis), write).await
    }
}
