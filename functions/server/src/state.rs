//! What every handler shares, built once by a `main`.

use std::path::PathBuf;
use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::auth::jwt::AccessTokens;
use crate::field_cipher::FieldCipher;
use crate::mailer::{Mailer, OutboxMailer};
use crate::ingest::Ingest;
use crate::salt::PgSaltStore;
use crate::secrets::Secrets;
use shared::Pipeline;

#[derive(Debug, Clone, Default)]
pub struct AppConfig {
    /// Where the client address comes from (`ENGAGETRACK_CLIENT_IP`).
    pub client_ip: crate::client_ip::ClientIpMode,
    /// The Cloudflare KV namespaces the salts and the site list are published
    /// to; `None`: no edge, nothing is published.
    pub edge_kv: Option<crate::edge_publish::EdgeKvConfig>,
    /// MaxMind DB files (GeoIP2/GeoLite2 City or DB-IP city) for geolocation.
    pub geo_files: Vec<PathBuf>,
    /// Where users reach the dashboard; links in mail point here.
    pub public_url: String,
    /// Google / GitHub sign-in, where configured.
    pub oauth: Vec<crate::oauth::ProviderConfig>,
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
    /// Billing webhook signing secrets; a provider without one answers 404.
    pub webhook_secrets: Arc<crate::billing::WebhookSecrets>,
    /// Bearer token for `GET /metrics`; none: the route answers 404.
    pub metrics_token: Option<Arc<Vec<u8>>>,
    /// The worker's KV (salts, site list); a no-op when no edge is configured.
    pub edge: Arc<dyn crate::edge_publish::EdgeKv>,
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
    #[error(transparent)]
    ClientIp(#[from] crate::client_ip::ClientIpModeError),
    #[error(transparent)]
    EdgeKvConfig(#[from] crate::edge_publish::EdgeKvConfigError),
    #[error(transparent)]
    CloudflareKv(#[from] crate::adapters::cloudflare_kv::CloudflareKvError),
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
        let edge: Arc<dyn crate::edge_publish::EdgeKv> = match &config.edge_kv {
            Some(kv) => {
                let token = secret(crate::edge_publish::CLOUDFLARE_API_TOKEN)?;
                Arc::new(crate::adapters::cloudflare_kv::CloudflareKv::new(kv, &token)?)
            }
            None => Arc::new(crate::edge_publish::LocalEdgeKv),
        };
        Ok(Self {
            ingest,
            config: Arc::new(config),
            edge_signing_key: Arc::new(secret(crate::secrets::EDGE_SIGNING_KEY)?),
            access_tokens: Arc::new(AccessTokens::from_secrets(secrets)?),
            cipher,
            mailer: Arc::new(OutboxMailer::new(pool.clone())),
            ip_hash_key: Arc::new(secret(crate::secrets::IP_HASH_KEY)?),
            webhook_secrets: Arc::new(crate::billing::WebhookSecrets::from_secrets(secrets)),
            metrics_token: secrets.get(crate::secrets::METRICS_TOKEN).map(|t| Arc::new(t.to_vec())),
            edge,
            pool,
        })
    }

    /// For the Lambdas: `DATABASE_URL`, and secrets from the file named by
    /// `ENGAGETRACK_SECRETS_FILE`. They run behind API Gateway, so the client
    /// address is its `sourceIp` unless `ENGAGETRACK_CLIENT_IP` says otherwise.
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
        let client_ip = crate::client_ip::ClientIpMode::from_env_or(crate::client_ip::ClientIpMode::ApiGateway)?;
        let edge_kv = crate::edge_publish::EdgeKvConfig::from_env()?;
        Self::new(pool, &secrets, AppConfig { client_ip, edge_kv, geo_files, public_url, oauth })
    }
}
