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
    /// Take the client address from `CF-Connecting-IP` / `X-Forwarded-For`.
    pub trust_proxy: bool,
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
        Ok(Self {
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
    /// `ENGAGETRACK_SECRETS_FILE`. Nothing here touches the database: the
    /// pool connects on first use, and migrations are a deploy step (the
    /// scheduler's `migrate` job), so a cold start never runs them.
    pub fn from_lambda_env() -> Result<Self, StateError> {
        let url = std::env::var("DATABASE_URL").map_err(|_| StateError::MissingEnv("DATABASE_URL"))?;
        let pool = lambda::pool(&url)?;
        let secrets_file = std::env::var_os("ENGAGETRACK_SECRETS_FILE")
            .map(PathBuf::from)
            .ok_or(StateError::MissingEnv("ENGAGETRACK_SECRETS_FILE"))?;
        let secrets = crate::secrets::load_or_create_local(&secrets_file)?;
        let geo_files = std::env::var("ENGAGETRACK_GEO").map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
        let public_url = std::env::var("ENGAGETRACK_PUBLIC_URL").unwrap_or_default();
        let oauth = crate::oauth::ProviderConfig::from_env();
        // The Lambda mains make API Gateway's `requestContext.http.sourceIp`
        // the peer address; headers a visitor can write are not believed.
        Self::new(pool, &secrets, AppConfig { trust_proxy: false, geo_files, public_url, oauth })
    }
}

/// The Lambdas' database settings. One instance serves one request at a
/// time, and thousands of instances may run, so each keeps at most two
/// connections (a handler's and the group-commit writer's), gives up quickly
/// when the database is away (the route answers 503), and checks a connection
/// before reuse, since a frozen instance's connection may have been closed by
/// RDS Proxy's idle timeout. No session state is set here: RDS Proxy pins a
/// client connection that runs a session-level `SET`.
pub mod lambda {
    use std::time::Duration;

    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
    use tokio_postgres::NoTls;

    use crate::db::DbError;

    pub const POOL_SIZE: usize = 2;
    /// Waiting for a free connection, connecting, and checking one before reuse.
    pub const WAIT: Duration = Duration::from_secs(2);
    pub const CONNECT: Duration = Duration::from_secs(3);
    pub const CHECK: Duration = Duration::from_secs(2);

    pub fn pool(database_url: &str) -> Result<Pool, DbError> {
        let mut config: tokio_postgres::Config = database_url.parse().map_err(DbError::BadUrl)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT);
        }
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Verified });
        Pool::builder(manager)
            .max_size(POOL_SIZE)
            .timeouts(Timeouts { wait: Some(WAIT), create: Some(CONNECT), recycle: Some(CHECK) })
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Pool(e.to_string()))
    }
}
