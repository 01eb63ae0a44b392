//! What every handler shares, built once by a `main`.

use std::path::PathBuf;
use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::auth::jwt::AccessTokens;
use crate::cache::{CacheStore, InProcessStore};
use crate::field_cipher::FieldCipher;
use crate::mailer::{Mailer, OutboxMailer};
use crate::ingest::Ingest;
use crate::salt::PgSaltStore;
use crate::secrets::Secrets;
use shared::Pipeline;

#[derive(Debug, Clone, Default)]
pub struct AppConfig {
    /// Take the client address from `CF-Connecting-IP` / `X-Forwarded-For`.
    pub trust_proxy: bool,
    /// MaxMind DB files (GeoIP2/GeoLite2 City or DB-IP city) for geolocation.
    pub geo_files: Vec<PathBuf>,
    /// Where users reach the dashboard; links in mail point here.
    pub public_url: String,
    /// Google / GitHub sign-in, where configured.
    pub oauth: Vec<crate::oauth::ProviderConfig>,
    /// `ENGAGETRACK_REDIS_URL`: the shared cache; none means a cache of this process.
    pub redis_url: Option<String>,
}

impl AppConfig {
    pub fn public_url(&self) -> &str {
        if self.public_url.is_empty() { "http://127.0.0.1:8080" } else { self.public_url.trim_end_matches('/') }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub ingest: Arc<Ingest>,
    pub config: Arc<AppConfig>,
    /// Verifies the edge's signed batches.
    pub edge_signing_key: Arc<Vec<u8>>,
    pub access_tokens: Arc<AccessTokens>,
    pub cipher: Arc<FieldCipher>,
    pub mailer: Arc<dyn Mailer>,
    /// Keys the hash of client addresses for sign-in rate limits.
    pub ip_hash_key: Arc<Vec<u8>>,
    /// Hot stats answers and live-session checks (see [`crate::cache`]).
    pub cache: Arc<dyn CacheStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error(transparent)]
    Cipher(#[from] crate::field_cipher::CipherError),
    #[error("{0} is not set")]
    MissingEnv(&'static str),
    #[error("cannot read the geo database {path}: {reason}")]
    Geo { path: PathBuf, reason: String },
    #[error(transparent)]
    Jwt(#[from] crate::auth::jwt::JwtError),
    #[error("the secret store has no `{0}`")]
    MissingSecret(&'static str),
    #[error("ENGAGETRACK_REDIS_URL: {0}")]
    Cache(#[from] crate::cache::CacheError),
}

/// Redis when a URL is given, else a cache of this process.
pub fn cache_store(redis_url: Option<&str>) -> Result<Arc<dyn CacheStore>, StateError> {
    Ok(match redis_url.map(str::trim).filter(|u| !u.is_empty()) {
        Some(url) => Arc::new(crate::adapters::redis::RedisCache::connect_lazily(url)?),
        None => Arc::new(InProcessStore::default()),
    })
}

/// Loads the geo databases named in the configuration into memory.
pub fn load_pipeline(geo_files: &[PathBuf]) -> Result<Pipeline, StateError> {
    let mut geo = shared::geo::GeoDatabases::new();
    for path in geo_files {
        let bytes = std::fs::read(path).map_err(|e| StateError::Geo { path: path.clone(), reason: e.to_string() })?;
        geo.add(bytes).map_err(|e| StateError::Geo { path: path.clone(), reason: e.to_string() })?;
    }
    Ok(Pipeline::new(geo))
}

impl AppState {
    pub fn new(pool: Pool, secrets: &Secrets, config: AppConfig) -> Result<Self, StateError> {
        let cipher = Arc::new(FieldCipher::from_secrets(secrets)?);
        let salts = Arc::new(PgSaltStore::new(pool.clone()));
        let pipeline = Arc::new(load_pipeline(&config.geo_files)?);
        let ingest = Arc::new(Ingest::new(pool.clone(), pipeline, salts, cipher.clone()));
        let secret = |name: &'static str| secrets.get(name).map(<[u8]>::to_vec).ok_or(StateError::MissingSecret(name));
        let cache = cache_store(config.redis_url.as_deref())?;
        Ok(Self {
            cache,
            ingest,
            config: Arc::new(config),
            edge_signing_key: Arc::new(secret(crate::secrets::EDGE_SIGNING_KEY)?),
            access_tokens: Arc::new(AccessTokens::from_secrets(secrets)?),
            cipher,
            mailer: Arc::new(OutboxMailer::new(pool.clone())),
            ip_hash_key: Arc::new(secret(crate::secrets::IP_HASH_KEY)?),
            pool,
        })
    }

    /// For the Lambdas: `DATABASE_URL`, and secrets from the file named by
    /// `ENGAGETRACK_SECRETS_FILE`. They run behind API Gateway, a trusted proxy.
    pub fn from_lambda_env() -> Result<Self, StateError> {
        let url = std::env::var("DATABASE_URL").map_err(|_| StateError::MissingEnv("DATABASE_URL"))?;
        let pool = crate::db::pool(&url, 4)?;
        let secrets_file = std::env::var_os("ENGAGETRACK_SECRETS_FILE")
            .map(PathBuf::from)
            .ok_or(StateError::MissingEnv("ENGAGETRACK_SECRETS_FILE"))?;
        let secrets = crate::secrets::load_or_create_local(&secrets_file)?;
        let geo_files = std::env::var("ENGAGETRACK_GEO").map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
        let public_url = std::env::var("ENGAGETRACK_PUBLIC_URL").unwrap_or_default();
        let oauth = crate::oauth::ProviderConfig::from_env();
        let redis_url = std::env::var("ENGAGETRACK_REDIS_URL").ok();
        Self::new(pool, &secrets, AppConfig { trust_proxy: true, geo_files, public_url, oauth, redis_url })
    }
}
